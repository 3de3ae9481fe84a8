//! claworc's parts that most instances share: [`inject`]'s own values for the
//! inputs they depend on (the configuration, the session IDs, the SSH port,
//! the user's `known_hosts` ConfigMap), made and serialized once per thread
//! and kept for the inputs last asked. [`crate::partial`] writes their text
//! into the patch and compares templates with it (kept scanned, for
//! [`crate::scan::same`]). Making them for every request was a fifth of
//! `/mutate`'s work; the answers are the same either way
//! (`tests/partial_props.rs` compares them with the typed review's).

use std::cell::RefCell;
use std::rc::Rc;
use std::thread::LocalKey;

use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::settings::StrictHostKeyChecking;
use claworc_contract::{Settings, known_hosts};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSecurityContext, SecurityContext, Volume, VolumeMount};

use crate::inject::{self, Config};
use crate::json::extend;
use crate::scan::Scanned;

/// One of the shared parts: inject's value, and its JSON text, scanned.
pub struct Part<T> {
    pub value: T,
    pub json: Scanned,
}

impl<T> Part<T> {
    pub fn text(&self) -> &[u8] {
        self.json.text().as_bytes()
    }
}

/// The parts of one kind kept on a thread, with the inputs each was made from.
type Kept<K, T> = RefCell<Vec<(K, Rc<Part<T>>)>>;

/// Parts kept per thread and kind, at most this many (then they are made afresh).
const KEPT: usize = 16;

thread_local! {
    static INSTALLERS: Kept<(String, (i64, i64)), Container> = const { RefCell::new(Vec::new()) };
    static SIDECARS: Kept<(u16, (i64, i64)), Container> = const { RefCell::new(Vec::new()) };
    static VOLUMES: Kept<Option<String>, Vec<Volume>> = const { RefCell::new(Vec::new()) };
    static HARDENED_PODS: Kept<(i64, i64), Option<PodSecurityContext>> = const { RefCell::new(Vec::new()) };
    static HARDENED_CONTAINERS: Kept<(), Option<SecurityContext>> = const { RefCell::new(Vec::new()) };
    static KEYS_VOLUMES: Kept<(), Volume> = const { RefCell::new(Vec::new()) };
    static SIDECAR_OWN_MOUNTS: Kept<(), Vec<VolumeMount>> = const { RefCell::new(Vec::new()) };
    static SIDECAR_SETTINGS_ENVS: Kept<(SshdConfig, StrictHostKeyChecking), Vec<EnvVar>> = const { RefCell::new(Vec::new()) };
    static KNOWN_HOSTS_MOUNTS: Kept<bool, Vec<VolumeMount>> = const { RefCell::new(Vec::new()) };
    static KNOWN_HOSTS_DATA: Kept<Vec<String>, String> = const { RefCell::new(Vec::new()) };
}

/// The part kept for the inputs `is` matches, else `make`'s, kept under `key`.
fn kept<K, T: serde::Serialize>(
    store: &'static LocalKey<Kept<K, T>>,
    is: impl Fn(&K) -> bool,
    key: impl FnOnce() -> K,
    make: impl FnOnce() -> T,
) -> Rc<Part<T>> {
    store.with_borrow_mut(|parts| {
        if let Some((_, part)) = parts.iter().find(|(k, _)| is(k)) {
            return part.clone();
        }
        let value = make();
        let mut text = Vec::with_capacity(1024);
        let _ = extend(&mut text, &value);
        let json = String::from_utf8(text).ok().and_then(Scanned::parse).expect("inject's values are JSON");
        let part = Rc::new(Part { value, json });
        if parts.len() == KEPT {
            parts.clear();
        }
        parts.push((key(), part.clone()));
        part
    })
}

/// [`inject::installer`].
pub fn installer(cfg: &Config, ids: (i64, i64)) -> Rc<Part<Container>> {
    kept(
        &INSTALLERS,
        |(image, i)| *image == cfg.sidecar_image && *i == ids,
        || (cfg.sidecar_image.clone(), ids),
        || inject::installer(cfg, ids),
    )
}

/// [`inject::sidecar_fixed`].
pub fn sidecar_fixed(ssh_port: u16, ids: (i64, i64)) -> Rc<Part<Container>> {
    kept(&SIDECARS, |k| *k == (ssh_port, ids), || (ssh_port, ids), || inject::sidecar_fixed(ssh_port, ids))
}

/// [`inject::claworc_volumes_fixed`].
pub fn claworc_volumes_fixed(known_hosts_configmap: Option<&str>) -> Rc<Part<Vec<Volume>>> {
    kept(
        &VOLUMES,
        |k| k.as_deref() == known_hosts_configmap,
        || known_hosts_configmap.map(Into::into),
        || inject::claworc_volumes_fixed(known_hosts_configmap),
    )
}

/// [`inject::harden_pod`] of a pod with no security context of its own (or
/// an empty one, as kube-apiserver writes it).
pub fn hardened_pod(run_as: (i64, i64)) -> Rc<Part<Option<PodSecurityContext>>> {
    kept(
        &HARDENED_PODS,
        |k| *k == run_as,
        || run_as,
        || {
            let mut sc = None;
            inject::harden_pod(&mut sc, run_as);
            sc
        },
    )
}

/// [`inject::harden_container`] of a container with no security context of its own.
pub fn hardened_container() -> Rc<Part<Option<SecurityContext>>> {
    kept(
        &HARDENED_CONTAINERS,
        |_| true,
        || (),
        || {
            let mut sc = None;
            inject::harden_container(&mut sc);
            sc
        },
    )
}

/// A Secret's name no Secret has: where [`write_keys_volume`] writes the instance's.
const SECRET_HOLE: &str = "\0";
/// [`SECRET_HOLE`] as JSON writes it.
const SECRET_HOLE_JSON: &[u8] = br#""\u0000""#;

/// Appends [`inject::keys_volume`]'s text for `secret`: the kept text of the
/// volume for a name no Secret has (`SECRET_HOLE`), with `secret` in its place.
pub fn write_keys_volume(out: &mut Vec<u8>, secret: &str) {
    let part = kept(&KEYS_VOLUMES, |_| true, || (), || inject::keys_volume(SECRET_HOLE));
    let hole = SECRET_HOLE_JSON;
    let text = part.text();
    let at = text.windows(hole.len()).position(|w| w == hole).expect("the keys volume names its Secret");
    out.extend_from_slice(&text[..at]);
    crate::json::write_str(out, secret);
    out.extend_from_slice(&text[at + hole.len()..]);
}

/// Appends [`inject::installer`]'s text.
pub fn write_installer(out: &mut Vec<u8>, cfg: &Config, ids: (i64, i64)) {
    out.extend_from_slice(installer(cfg, ids).text());
}

/// Appends [`inject::sidecar`]'s text: [`sidecar_fixed`]'s with the fields
/// `from_workload` writes (an object: [`inject::sidecar_from_workload`]'s) added to it.
pub fn write_sidecar(out: &mut Vec<u8>, ssh_port: u16, ids: (i64, i64), from_workload: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(sidecar_fixed(ssh_port, ids).text());
    // `{…fixed}` and `{…from the workload}` (neither empty) make `{…fixed,…from the workload}`.
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.push(b',');
    let start = out.len();
    from_workload(out);
    debug_assert_eq!(out.get(start), Some(&b'{'));
    out.remove(start);
}

/// [`inject::sidecar_own_mounts`].
pub fn sidecar_own_mounts() -> Rc<Part<Vec<VolumeMount>>> {
    kept(&SIDECAR_OWN_MOUNTS, |_| true, || (), inject::sidecar_own_mounts)
}

/// [`inject::sidecar_settings_env`] for these settings, kept by what it reads of them.
pub fn sidecar_settings_env(s: &Settings) -> Rc<Part<Vec<EnvVar>>> {
    let key = (SshdConfig::from_settings(s), s.strict_host_key_checking);
    kept(&SIDECAR_SETTINGS_ENVS, |k| *k == key, || key.clone(), || inject::sidecar_settings_env(s))
}

/// [`inject::known_hosts_mounts`] for these settings (which read only whether
/// a `known_hosts` ConfigMap is given).
pub fn known_hosts_mounts(s: &Settings) -> Rc<Part<Vec<VolumeMount>>> {
    let user = s.known_hosts_configmap.is_some();
    kept(&KNOWN_HOSTS_MOUNTS, |k| *k == user, || user, || inject::known_hosts_mounts(s))
}

/// [`known_hosts::lines_for`] these hosts: the `known_hosts` data annotation.
pub fn known_hosts_data(hosts: &[String]) -> Rc<Part<String>> {
    kept(&KNOWN_HOSTS_DATA, |k| k == hosts, || hosts.to_vec(), || known_hosts::lines_for(hosts))
}

/// The elements of a kept list, as text: comma-separated, without the brackets.
pub fn elements<T>(list: &Part<Vec<T>>) -> &[u8] {
    let text = list.text();
    &text[1..text.len() - 1]
}

/// Appends [`inject::claworc_volumes`]'s text as elements of a list
/// (comma-separated, without the brackets).
pub fn write_claworc_volumes(out: &mut Vec<u8>, s: &Settings) {
    write_keys_volume(out, &s.ssh_secret);
    out.push(b',');
    out.extend_from_slice(elements(&claworc_volumes_fixed(s.known_hosts_configmap.as_deref())));
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

    fn json(value: &impl serde::Serialize) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    /// What is written and kept is inject's value, made afresh or kept, for
    /// every key a second request could find kept under the first's.
    #[test]
    fn parts_are_what_inject_makes_kept_or_not() {
        let cfg = Config::default();
        let other_cfg = Config { sidecar_image: "example.com/sshd:1".into(), ..Config::default() };
        for s in [
            settings(&[]),
            settings(&[("claworc.io/ssh-port", "2022")]),
            settings(&[("claworc.io/known-hosts-configmap", "hosts")]),
            settings(&[("claworc.io/known-hosts-configmap", "other")]),
            settings(&[("claworc.io/forward-ports", "9000")]),
            settings(&[("claworc.io/strict-host-key-checking", "accept-new")]),
            settings(&[("claworc.io/known-hosts", "gitlab")]),
        ] {
            for (cfg, ids) in [(&cfg, (1000, 1000)), (&other_cfg, (1000, 1000)), (&cfg, (2000, 3000))] {
                let target = target();
                let home = inject::home(&target);
                for _ in 0..2 {
                    assert_eq!(installer(cfg, ids).value, inject::installer(cfg, ids));
                    assert_eq!(sidecar_fixed(s.ssh_port, ids).value, inject::sidecar_fixed(s.ssh_port, ids));
                    let cm = s.known_hosts_configmap.as_deref();
                    assert_eq!(claworc_volumes_fixed(cm).value, inject::claworc_volumes_fixed(cm));

                    let mut pod = None;
                    inject::harden_pod(&mut pod, ids);
                    assert_eq!(hardened_pod(ids).value, pod);
                    let mut container = None;
                    inject::harden_container(&mut container);
                    assert_eq!(hardened_container().value, container);
                    assert_eq!(sidecar_own_mounts().value, inject::sidecar_own_mounts());
                    assert_eq!(sidecar_settings_env(&s).value, inject::sidecar_settings_env(&s));
                    assert_eq!(known_hosts_mounts(&s).value, inject::known_hosts_mounts(&s));
                    assert_eq!(known_hosts_data(&s.known_hosts).value, known_hosts::lines_for(&s.known_hosts));

                    let mut out = Vec::new();
                    write_installer(&mut out, cfg, ids);
                    assert_eq!(out, json(&inject::installer(cfg, ids)));
                    out.clear();
                    write_sidecar(&mut out, s.ssh_port, ids, |out| {
                        extend(out, &inject::sidecar_from_workload(&s, &target, &home)).unwrap()
                    });
                    let have: Value = serde_json::from_slice(&out).unwrap();
                    assert_eq!(have, serde_json::to_value(inject::sidecar(&s, &target, &home, ids)).unwrap());
                    out = b"[".to_vec();
                    write_claworc_volumes(&mut out, &s);
                    out.push(b']');
                    assert_eq!(out, json(&inject::claworc_volumes(&s)));
                }
            }
        }
    }

    /// The hole the keys volume's kept text leaves for the Secret's name is
    /// written as JSON writes that name.
    #[test]
    fn the_secret_hole_is_written_as_json_writes_it() {
        let mut hole = Vec::new();
        crate::json::write_str(&mut hole, SECRET_HOLE);
        assert_eq!(hole, SECRET_HOLE_JSON);
    }

    /// The two halves of the sidecar set no field in common (else its text
    /// would give a key twice).
    #[test]
    fn the_sidecars_halves_are_disjoint() {
        let s = settings(&[]);
        let target = target();
        let fixed = serde_json::to_value(inject::sidecar_fixed(s.ssh_port, (1, 1))).unwrap();
        let from_workload = inject::sidecar_from_workload(&s, &target, &inject::home(&target));
        let from_workload = serde_json::to_value(from_workload).unwrap();
        let (fixed, from_workload) = (fixed.as_object().unwrap(), from_workload.as_object().unwrap());
        assert!(!fixed.is_empty() && !from_workload.is_empty());
        assert!(fixed.keys().all(|k| !from_workload.contains_key(k)), "{fixed:?} {from_workload:?}");
    }
}
