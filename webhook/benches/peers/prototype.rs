//! Not the product: the next step for issue 9's throughput target, measured
//! before it is built. `/mutate` on a borrowed, partial model of the review
//! (strings borrowed from the body, every field no check or injection reads
//! kept as raw JSON and copied verbatim) with the injected parts written
//! straight into the patch as JSON, instead of k8s-openapi values.
//!
//! Only as much of the webhook as the benchmarks' fixtures need: a subset of
//! the checks, the first container as the target, a home in a shared volume,
//! no user known_hosts ConfigMap, no user init containers. [`matches_webhook`]
//! checks that its answer is the webhook's for the fixture at hand (the webhook's
//! `/validate` allows the result and its `/mutate` leaves it as it is); the
//! benchmarks print that verdict beside its figures.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::names::*;
use claworc_contract::{Settings, known_hosts};
use claworc_webhook::inject;
use claworc_webhook::json::{to_vec, write_str};
use claworc_webhook::validate::ALLOWED_VOLUME_TYPES;
use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

type Map<'a> = BTreeMap<Key<'a>, Key<'a>>;

#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone, Debug)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Req<'a>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Req<'a> {
    #[serde(borrow)]
    uid: Key<'a>,
    #[serde(borrow)]
    object: Obj<'a>,
}
#[derive(Deserialize)]
struct Obj<'a> {
    #[serde(borrow)]
    metadata: Meta<'a>,
    #[serde(borrow)]
    spec: Spec<'a>,
}
#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    name: Key<'a>,
    #[serde(borrow, default)]
    annotations: Map<'a>,
}
#[derive(Deserialize)]
struct Spec<'a> {
    replicas: Option<i32>,
    #[serde(borrow)]
    template: Template<'a>,
}
#[derive(Deserialize)]
struct Template<'a> {
    #[serde(borrow, default)]
    metadata: TMeta<'a>,
    #[serde(borrow)]
    spec: Pod<'a>,
}
#[derive(Deserialize, Default)]
struct TMeta<'a> {
    #[serde(borrow, default)]
    labels: Map<'a>,
    #[serde(borrow, default)]
    annotations: Map<'a>,
}

#[derive(Default)]
struct Pod<'a> {
    containers: Vec<Ctr<'a>>,
    init: Vec<Ctr<'a>>,
    volumes: Vec<Vol<'a>>,
    sc: Option<PodSecurityContext>,
    host: [Option<bool>; 3],
    rest: Vec<(Key<'a>, &'a RawValue)>,
}

#[derive(Default)]
struct Ctr<'a> {
    name: Key<'a>,
    image: Option<Key<'a>>,
    pull: Option<Key<'a>>,
    sc: Option<SecurityContext>,
    mounts: Vec<Mount<'a>>,
    env: Vec<Env<'a>>,
    env_from: Option<&'a RawValue>,
    working_dir: Option<Key<'a>>,
    ports: Vec<Port<'a>>,
    rest: Vec<(Key<'a>, &'a RawValue)>,
}

impl Default for Key<'_> {
    fn default() -> Self {
        Key(Cow::Borrowed(""))
    }
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Mount<'a> {
    #[serde(borrow)]
    name: Key<'a>,
    #[serde(borrow)]
    mount_path: Key<'a>,
    #[serde(borrow, default)]
    sub_path: Option<Key<'a>>,
    #[serde(default)]
    read_only: Option<bool>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Env<'a> {
    #[serde(borrow)]
    name: Key<'a>,
    #[serde(borrow, default)]
    value: Option<Key<'a>>,
    #[serde(borrow, default)]
    value_from: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Port<'a> {
    container_port: i32,
    #[serde(default)]
    host_port: Option<i32>,
    #[serde(borrow, default)]
    name: Option<Key<'a>>,
    #[serde(borrow, default)]
    protocol: Option<Key<'a>>,
}

#[derive(Default)]
struct Vol<'a> {
    name: Key<'a>,
    rest: Vec<(Key<'a>, &'a RawValue)>,
}

macro_rules! visit {
    ($ty:ident, $visitor:ident, |$m:ident, $v:ident, $k:ident| $body:block) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map($visitor(PhantomData))
            }
        }
        struct $visitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for $visitor<'a> {
            type Value = $ty<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut $m: A) -> Result<$ty<'a>, A::Error> {
                #[allow(unused_mut)]
                let mut $v = $ty::default();
                while let Some($k) = $m.next_key::<Key<'de>>()? {
                    $body
                }
                Ok($v)
            }
        }
    };
}

visit!(Pod, PodV, |m, p, k| {
    match &*k.0 {
        "containers" => p.containers = m.next_value()?,
        "initContainers" => p.init = m.next_value::<Option<_>>()?.unwrap_or_default(),
        "volumes" => p.volumes = m.next_value::<Option<_>>()?.unwrap_or_default(),
        "securityContext" => p.sc = m.next_value()?,
        "hostNetwork" => p.host[0] = m.next_value()?,
        "hostPID" => p.host[1] = m.next_value()?,
        "hostIPC" => p.host[2] = m.next_value()?,
        _ => p.rest.push((k, m.next_value()?)),
    }
});

visit!(Ctr, CtrV, |m, c, k| {
    match &*k.0 {
        "name" => c.name = m.next_value()?,
        "image" => c.image = m.next_value()?,
        "imagePullPolicy" => c.pull = m.next_value()?,
        "securityContext" => c.sc = m.next_value()?,
        "volumeMounts" => c.mounts = m.next_value::<Option<_>>()?.unwrap_or_default(),
        "env" => c.env = m.next_value::<Option<_>>()?.unwrap_or_default(),
        "envFrom" => c.env_from = m.next_value()?,
        "workingDir" => c.working_dir = m.next_value()?,
        "ports" => c.ports = m.next_value::<Option<_>>()?.unwrap_or_default(),
        _ => c.rest.push((k, m.next_value()?)),
    }
});

visit!(Vol, VolV, |m, v, k| {
    match &*k.0 {
        "name" => v.name = m.next_value()?,
        _ => v.rest.push((k, m.next_value()?)),
    }
});

fn checks(o: &Obj, denials: &mut Vec<String>) {
    if o.spec.replicas.is_some_and(|r| !(0..=1).contains(&r)) {
        denials.push("replicas".into());
    }
    let p = &o.spec.template.spec;
    if p.host.contains(&Some(true)) {
        denials.push("host".into());
    }
    for v in &p.volumes {
        if v.rest.iter().any(|(k, _)| !ALLOWED_VOLUME_TYPES.contains(&&*k.0)) {
            denials.push("volume".into());
        }
    }
    if let Some(sc) = &p.sc
        && (sc.run_as_user == Some(0) || sc.run_as_group == Some(0) || sc.fs_group == Some(0))
    {
        denials.push("root".into());
    }
    for c in p.containers.iter().chain(&p.init) {
        if c.ports.iter().any(|p| p.host_port.is_some_and(|h| h != 0)) {
            denials.push("hostPort".into());
        }
        if let Some(sc) = &c.sc
            && (sc.privileged == Some(true) || sc.allow_privilege_escalation == Some(true))
        {
            denials.push("privileged".into());
        }
        for m in &c.mounts {
            if inject::clean_path(&m.mount_path.0).is_none() {
                denials.push("mount".into());
            }
        }
    }
}

fn raw(out: &mut Vec<u8>, rest: &[(Key, &RawValue)]) {
    for (k, v) in rest {
        out.push(b',');
        write_str(out, &k.0);
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
}

fn typed<T: serde::Serialize>(out: &mut Vec<u8>, key: &str, v: &T) {
    out.push(b',');
    write_str(out, key);
    out.push(b':');
    out.extend_from_slice(&to_vec(v, 256).unwrap());
}

fn field(out: &mut Vec<u8>, key: &str, v: &str) {
    out.push(b',');
    write_str(out, key);
    out.push(b':');
    write_str(out, v);
}

/// A mount injection adds: volume, path, subPath, readOnly.
type Extra<'s> = (&'s str, &'s str, Option<&'s str>, bool);

fn mount(out: &mut Vec<u8>, name: &str, path: &str, sub: Option<&str>, read_only: Option<bool>) {
    out.extend_from_slice(b"{\"name\":");
    write_str(out, name);
    field(out, "mountPath", path);
    if let Some(s) = sub {
        field(out, "subPath", s);
    }
    if let Some(r) = read_only {
        out.extend_from_slice(if r { b",\"readOnly\":true" } else { b",\"readOnly\":false" });
    }
    out.push(b'}');
}

fn mounts<'s>(out: &mut Vec<u8>, before: &[Extra<'s>], ms: &'s [Mount<'_>], after: &[Extra<'s>]) {
    out.extend_from_slice(b",\"volumeMounts\":[");
    let injected = |&(name, path, sub, ro): &Extra<'s>| -> (&'s str, &'s str, Option<&'s str>, Option<bool>) {
        (name, path, sub, ro.then_some(true))
    };
    let theirs = ms.iter().map(|m| (&*m.name.0, &*m.mount_path.0, m.sub_path.as_ref().map(|s| &*s.0), m.read_only));
    let all = before.iter().map(injected).chain(theirs).chain(after.iter().map(injected));
    for (i, (name, path, sub, ro)) in all.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        mount(out, name, path, sub, ro);
    }
    out.push(b']');
}

fn env(out: &mut Vec<u8>, es: &[Env], extra: &[(&str, &str)]) {
    out.extend_from_slice(b",\"env\":[");
    let mut first = true;
    for e in es {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_str(out, &e.name.0);
        if let Some(v) = &e.value {
            field(out, "value", &v.0);
        }
        if let Some(v) = e.value_from {
            out.extend_from_slice(b",\"valueFrom\":");
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
    }
    for (name, value) in extra {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_str(out, name);
        field(out, "value", value);
        out.push(b'}');
    }
    out.push(b']');
}

/// The injected containers' security context for the fixtures' session IDs (1000:1000).
const LOCKED: &str = r#","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"privileged":false,"readOnlyRootFilesystem":true,"runAsGroup":1000,"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}}"#;

/// Whether the prototype's answer to `opted_in` is the webhook's: its patch,
/// applied, is allowed by the webhook's `/validate` and left unchanged by its
/// `/mutate`. `webhook` answers a body as `server::admit` does.
pub fn matches_webhook(opted_in: &[u8], webhook: impl Fn(&[u8], bool) -> Vec<u8>) -> Result<(), String> {
    use serde_json::Value;
    let answer: Value = serde_json::from_slice(&mutate(opted_in)).map_err(|e| e.to_string())?;
    let patch: k8s_openapi::ByteString =
        serde_json::from_value(answer["response"]["patch"].clone()).map_err(|e| e.to_string())?;
    let patch: json_patch::Patch = serde_json::from_slice(&patch.0).map_err(|e| e.to_string())?;
    let mut review: Value = serde_json::from_slice(opted_in).map_err(|e| e.to_string())?;
    json_patch::patch(&mut review["request"]["object"], &patch).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
    let validated: Value = serde_json::from_slice(&webhook(&body, false)).map_err(|e| e.to_string())?;
    if validated["response"]["allowed"] != true {
        return Err(format!("/validate refuses its result: {}", validated["response"]["status"]["message"]));
    }
    let mutated: Value = serde_json::from_slice(&webhook(&body, true)).map_err(|e| e.to_string())?;
    if !mutated["response"]["patch"].is_null() {
        return Err("/mutate would still patch its result".into());
    }
    Ok(())
}

/// The prototype's `/mutate`: the answer's bytes.
pub fn mutate(body: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    let review: Review = serde_json::from_str(text).unwrap();
    let req = review.request;
    let o = &req.object;
    let mut denials = Vec::new();
    checks(o, &mut denials);
    let annotations: BTreeMap<String, String> =
        o.metadata.annotations.iter().map(|(k, v)| (k.0.to_string(), v.0.to_string())).collect();
    let s = Settings::from_annotations(&o.metadata.name.0, &annotations).unwrap();
    assert!(denials.is_empty(), "{denials:?}");
    let t = &o.spec.template;
    let p = &t.spec;
    let git = inject::git_ssh_command(&s);

    let mut out = Vec::with_capacity(6 * 1024);
    out.extend_from_slice(br#"[{"op":"replace","path":"/spec/template","value":{"metadata":{"labels":{"#);
    let mut first = true;
    let egress = s.egress.as_str();
    let claworc_labels = [
        (LABEL_MANAGED_BY, MANAGED_BY),
        (LABEL_EGRESS, egress),
        (LABEL_INSTANCE, &*o.metadata.name.0),
        (LABEL_SSH, SSH_ENABLED),
    ];
    for (k, v) in t.metadata.labels.iter().map(|(k, v)| (&*k.0, &*v.0)).chain(claworc_labels) {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(&mut out, k);
        out.push(b':');
        write_str(&mut out, v);
    }
    out.extend_from_slice(b"},\"annotations\":{");
    let lines = known_hosts::lines_for(&s.known_hosts);
    let mut first = true;
    for (k, v) in t
        .metadata
        .annotations
        .iter()
        .map(|(k, v)| (&*k.0, &*v.0))
        .chain([(ANNOTATION_INJECTED, claworc_contract::VERSION), (ANNOTATION_KNOWN_HOSTS_DATA, lines.as_str())])
    {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(&mut out, k);
        out.push(b':');
        write_str(&mut out, v);
    }
    out.extend_from_slice(b"}},\"spec\":{\"containers\":[");
    let kh = [(VOLUME_KNOWN_HOSTS, KNOWN_HOSTS_PATH, Some("known_hosts"), true)];
    for (i, c) in p.containers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_str(&mut out, &c.name.0);
        if let Some(v) = &c.image {
            field(&mut out, "image", &v.0);
        }
        if let Some(v) = &c.pull {
            field(&mut out, "imagePullPolicy", &v.0);
        }
        if let Some(v) = &c.working_dir {
            field(&mut out, "workingDir", &v.0);
        }
        if !c.ports.is_empty() {
            out.extend_from_slice(b",\"ports\":[");
            for (j, port) in c.ports.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(format!("{{\"containerPort\":{}", port.container_port).as_bytes());
                if let Some(n) = &port.name {
                    field(&mut out, "name", &n.0);
                }
                if let Some(n) = &port.protocol {
                    field(&mut out, "protocol", &n.0);
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        let mut sc = c.sc.clone();
        inject::harden_container(&mut sc);
        typed(&mut out, "securityContext", &sc);
        env(&mut out, &c.env, &[(ENV_GIT_SSH_COMMAND, &git)]);
        mounts(&mut out, &[], &c.mounts, &kh);
        raw(&mut out, &c.rest);
        out.push(b'}');
    }
    let target = &p.containers[0];
    let config = SshdConfig::from_settings(&s).render();
    let pull = target.pull.as_ref().map_or("IfNotPresent", |p| &p.0);
    out.extend_from_slice(b"],\"initContainers\":[{\"name\":\"claworc-sshd-install\"");
    field(&mut out, "image", SIDECAR_IMAGE);
    out.extend_from_slice(br#","imagePullPolicy":"IfNotPresent","command":["/claworc-sshd","install","/run/claworc/claworc-sshd"],"resources":{"limits":{"cpu":"200m","memory":"64Mi"},"requests":{"cpu":"10m","memory":"16Mi"}}"#);
    out.extend_from_slice(LOCKED.as_bytes());
    out.extend_from_slice(br#","volumeMounts":[{"mountPath":"/run/claworc","name":"claworc-run"}],"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"},{"name":"claworc-sshd""#);
    if let Some(v) = &target.image {
        field(&mut out, "image", &v.0);
    }
    field(&mut out, "imagePullPolicy", pull);
    out.extend_from_slice(br#","restartPolicy":"Always","command":["/run/claworc/claworc-sshd"]"#);
    if let Some(v) = &target.working_dir {
        field(&mut out, "workingDir", &v.0);
    }
    let kept: Vec<Env> = target.env.iter().filter(|e| !inject::SIDECAR_ENV.contains(&&*e.name.0)).cloned().collect();
    let home = "/home/claw";
    env(&mut out, &kept, &[(ENV_SSHD_CONFIG, &config), (ENV_GIT_SSH_COMMAND, &git), ("HOME", home)]);
    out.extend_from_slice(
        format!(r#","ports":[{{"containerPort":{},"name":"claworc-ssh","protocol":"TCP"}}]"#, s.ssh_port).as_bytes(),
    );
    out.extend_from_slice(
        br#","resources":{"limits":{"cpu":"2","memory":"2Gi"},"requests":{"cpu":"10m","memory":"32Mi"}}"#,
    );
    out.extend_from_slice(LOCKED.as_bytes());
    let shared: Vec<Mount> = target.mounts.iter().filter(|m| inject::shareable(&m.mount_path.0)).cloned().collect();
    let own = [
        (VOLUME_KEYS, KEYS_DIR, None, true),
        (VOLUME_RUN, RUN_DIR, None, true),
        (VOLUME_NO_TOKEN, SERVICE_ACCOUNT_TOKEN_DIR, None, true),
    ];
    mounts(&mut out, &own, &shared, &kh);
    out.extend_from_slice(
        format!(
            r#","readinessProbe":{{"exec":{{"command":["/run/claworc/claworc-sshd","probe","{}"]}},"failureThreshold":3,"periodSeconds":3,"successThreshold":1,"timeoutSeconds":3}}"#,
            s.ssh_port
        )
        .as_bytes(),
    );
    out.extend_from_slice(br#","terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}]"#);
    out.extend_from_slice(b",\"volumes\":[");
    for (i, v) in p.volumes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_str(&mut out, &v.name.0);
        raw(&mut out, &v.rest);
        out.push(b'}');
    }
    out.extend_from_slice(b",{\"name\":\"claworc-ssh-keys\",\"secret\":{\"defaultMode\":288,\"secretName\":");
    write_str(&mut out, &s.ssh_secret);
    out.extend_from_slice(br#"}},{"emptyDir":{"sizeLimit":"64Mi"},"name":"claworc-run"},{"emptyDir":{"medium":"Memory","sizeLimit":"1Ki"},"name":"claworc-no-token"},{"downwardAPI":{"defaultMode":420,"items":[{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.annotations['claworc.io/known-hosts-data']"},"path":"known_hosts"}]},"name":"claworc-known-hosts"}]"#);
    let mut sc = p.sc.clone();
    inject::harden_pod(&mut sc, &s);
    typed(&mut out, "securityContext", &sc);
    raw(&mut out, &p.rest);
    out.extend_from_slice(b"}}}]");

    let mut answer = Vec::with_capacity(out.len() * 4 / 3 + 256);
    answer.extend_from_slice(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#);
    write_str(&mut answer, &req.uid.0);
    answer.extend_from_slice(br#","allowed":true,"status":{},"patchType":"JSONPatch","patch":""#);
    claworc_webhook::wire::encode_base64(&mut answer, &out);
    answer.extend_from_slice(b"\"}}");
    answer
}
