//! claworc's parts that most instances share, as JSON text: [`inject`]'s own
//! values for the inputs they depend on (the configuration, the session IDs,
//! the SSH port, the user's `known_hosts` ConfigMap), serialized once per
//! thread and kept for the inputs last asked. Building and serializing them
//! for every request was a fifth of `/mutate`'s work; the text is the same
//! either way (`tests/partial_props.rs` compares the patches).

use std::cell::RefCell;

use claworc_contract::Settings;
use k8s_openapi::api::core::v1::Container;

use crate::inject::{self, Config, Home};
use crate::json::extend;

/// What a kept text was made from.
#[derive(PartialEq)]
enum Key {
    Installer { image: String, ids: (i64, i64) },
    SidecarFixed { port: u16, ids: (i64, i64) },
    VolumesFixed { known_hosts_configmap: Option<String> },
}

/// Texts kept per thread, at most this many (then they are made afresh).
const KEPT: usize = 16;

thread_local! {
    static TEXTS: RefCell<Vec<(Key, Box<[u8]>)>> = const { RefCell::new(Vec::new()) };
}

/// Appends the text kept for `key`, making it first if there is none.
fn write_kept(out: &mut Vec<u8>, key: Key, make: impl FnOnce() -> Vec<u8>) {
    TEXTS.with_borrow_mut(|texts| {
        if let Some((_, text)) = texts.iter().find(|(k, _)| *k == key) {
            out.extend_from_slice(text);
            return;
        }
        let text = make().into_boxed_slice();
        out.extend_from_slice(&text);
        if texts.len() == KEPT {
            texts.clear();
        }
        texts.push((key, text));
    });
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let _ = extend(&mut out, value);
    out
}

/// [`inject::installer`].
pub fn installer(out: &mut Vec<u8>, cfg: &Config, ids: (i64, i64)) {
    let key = Key::Installer { image: cfg.sidecar_image.clone(), ids };
    write_kept(out, key, || json(&inject::installer(cfg, ids)));
}

/// [`inject::sidecar`]: [`inject::sidecar_fixed`] kept, with the fields of
/// [`inject::sidecar_from_workload`] added to it.
pub fn sidecar(out: &mut Vec<u8>, s: &Settings, target: &Container, home: &Home, ids: (i64, i64)) {
    let key = Key::SidecarFixed { port: s.ssh_port, ids };
    write_kept(out, key, || json(&inject::sidecar_fixed(s.ssh_port, ids)));
    // `{…fixed}` and `{…from the workload}` (neither empty) make `{…fixed,…from the workload}`.
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.push(b',');
    let start = out.len();
    let _ = extend(out, &inject::sidecar_from_workload(s, target, home));
    debug_assert_eq!(out.get(start), Some(&b'{'));
    out.remove(start);
}

/// [`inject::claworc_volumes`], as elements of a list (comma-separated, no brackets).
pub fn claworc_volumes(out: &mut Vec<u8>, s: &Settings) {
    let _ = extend(out, &inject::keys_volume(&s.ssh_secret));
    out.push(b',');
    let configmap = s.known_hosts_configmap.clone();
    write_kept(out, Key::VolumesFixed { known_hosts_configmap: configmap }, || {
        let volumes = json(&inject::claworc_volumes_fixed(s.known_hosts_configmap.as_deref()));
        // Without the list's brackets.
        volumes[1..volumes.len() - 1].to_vec()
    });
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn settings(annotations: &[(&str, &str)]) -> Settings {
        let a = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_annotations("box", &a).unwrap()
    }

    fn target() -> Container {
        serde_json::from_value(serde_json::json!({
            "name": "app", "image": "busybox", "workingDir": "/w",
            "env": [{"name": "A", "value": "1"}, {"name": "HOME", "value": "/data/me"}],
            "envFrom": [{"configMapRef": {"name": "cm"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }))
        .unwrap()
    }

    /// The text written is inject's value serialized, whether kept or made,
    /// for every key a second request could find kept under the first's.
    #[test]
    fn writes_what_inject_makes_kept_or_not() {
        let cfg = Config::default();
        let other_cfg = Config { sidecar_image: "example.com/sshd:1".into(), ..Config::default() };
        for s in [
            settings(&[]),
            settings(&[("claworc.io/ssh-port", "2022")]),
            settings(&[("claworc.io/known-hosts-configmap", "hosts")]),
            settings(&[("claworc.io/known-hosts-configmap", "other")]),
        ] {
            for (cfg, ids) in [(&cfg, (1000, 1000)), (&other_cfg, (1000, 1000)), (&cfg, (2000, 3000))] {
                let target = target();
                let home = inject::home(&target);
                for _ in 0..2 {
                    let mut out = Vec::new();
                    installer(&mut out, cfg, ids);
                    assert_eq!(out, json(&inject::installer(cfg, ids)));
                    out.clear();
                    sidecar(&mut out, &s, &target, &home, ids);
                    let have: Value = serde_json::from_slice(&out).unwrap();
                    assert_eq!(have, serde_json::to_value(inject::sidecar(&s, &target, &home, ids)).unwrap());
                    out.clear();
                    out.push(b'[');
                    claworc_volumes(&mut out, &s);
                    out.push(b']');
                    assert_eq!(out, json(&inject::claworc_volumes(&s)));
                }
            }
        }
    }

    /// The two halves of the sidecar set no field in common (else its text
    /// would give a key twice).
    #[test]
    fn the_sidecars_halves_are_disjoint() {
        let s = settings(&[]);
        let target = target();
        let fixed = serde_json::to_value(inject::sidecar_fixed(s.ssh_port, (1, 1))).unwrap();
        let from_workload =
            serde_json::to_value(inject::sidecar_from_workload(&s, &target, &inject::home(&target))).unwrap();
        let (fixed, from_workload) = (fixed.as_object().unwrap(), from_workload.as_object().unwrap());
        assert!(!fixed.is_empty() && !from_workload.is_empty());
        assert!(fixed.keys().all(|k| !from_workload.contains_key(k)), "{fixed:?} {from_workload:?}");
    }
}
