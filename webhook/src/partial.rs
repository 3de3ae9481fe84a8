//! The common answers, read from a borrowed, partial model of the review:
//! `/mutate` of an opted-in Deployment that is allowed (the whole injected
//! template as the patch, or no patch when this release injected it and it is
//! still what injection makes) and `/validate` of one this release injected.
//!
//! Parsing the whole object into k8s-openapi values, and writing the template
//! back from them, cost more than everything else the webhook does. Here the
//! pod template is read only as far as the rules and injection read it:
//! strings borrowed from the body; the security contexts, the init containers
//! and claworc's volumes as the k8s-openapi values that [`validate`]'s rules
//! and [`inject`]'s functions take; every other field kept as the raw JSON it
//! arrived as. The patch is written straight from that: the user's fields as
//! they came, claworc's parts serialized from [`inject`]'s own values. The
//! re-check compares the template with what injection makes piece by piece,
//! with the same values.
//!
//! This model only ever *allows*. Whatever it does not model (an object that
//! is not opted in, or being deleted; a template another release injected; an
//! ephemeral container; a key given twice; a body it cannot read), whatever any
//! rule would deny and every template that differs from what injection makes
//! are answered by the typed review ([`crate::review`]), which writes every
//! denial with the fields it names. `tests/partial_props.rs` checks that
//! wherever this model answers, the typed review allows too, with the same
//! warnings and a patch that stores the same Deployment; `tests/fuzz.rs`
//! checks the decision on every fuzzed body.
//!
//! One difference is accepted: a field this model keeps raw is not checked
//! against its schema, so a hand-written body with, say, `"resources": 5` is
//! answered here where the typed reader would call it malformed.
//! kube-apiserver sends only objects it has decoded, and decodes a patched
//! object again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use claworc_contract::Settings;
use claworc_contract::instance::opts_in;
use claworc_contract::names::*;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSecurityContext, SecurityContext, Volume, VolumeMount};
use kube::core::TypeMeta;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::Deserialize;
use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::inject::{self, Config, Home};
use crate::json::{extend, write_str};
use crate::validate::{self, Verdict};
use crate::{wire, written};

/// The answer (allowed, with its patch or warnings), and what the server logs of the request.
pub struct Answer<'b> {
    pub response: AdmissionResponse,
    pub uid: Cow<'b, str>,
    pub namespace: Cow<'b, str>,
    pub name: Cow<'b, str>,
    pub operation: &'static str,
    pub dry_run: bool,
}

/// `/mutate`: the patch that injects claworc, or none when this release
/// injected the template and injection would leave it as it is. `None`: for
/// [`crate::review::mutate`].
pub fn mutate<'b>(body: &'b [u8], cfg: &Config) -> Option<Answer<'b>> {
    let (request, mut object, settings) = read(body)?;
    let template = &mut object.spec.template;
    let stored_version = template.metadata.as_ref().and_then(|m| m.annotations.as_ref()?.get(ANNOTATION_INJECTED));
    let response = allowed(&request.uid.0);
    if stored_version == Some(&cfg.version) {
        // Injected by this release: no patch if it is still what injection makes.
        return template.is_injected(&object.metadata.name.0, &settings, cfg)?.then(|| request.answer(response));
    }
    let patch = template.injected_patch(&object.metadata.name.0, &settings, cfg)?;
    let mut response = response.with_patch(json_patch::Patch(Vec::new())).ok()?;
    response.patch = Some(patch);
    Some(request.answer(response))
}

/// `/validate`: allowed, with its warnings, when no rule denies the object and
/// its template is what this release's injection makes. `None`: for
/// [`crate::review::validate`] (which also judges another release's template).
pub fn validate<'b>(body: &'b [u8], cfg: &Config) -> Option<Answer<'b>> {
    let (request, mut object, settings) = read(body)?;
    if !object.spec.template.is_injected(&object.metadata.name.0, &settings, cfg)? {
        return None;
    }
    let template = &object.spec.template;
    let mut verdict = Verdict::default();
    let strategy = object.spec.strategy.as_ref().and_then(|s| s.type_.as_ref()).map(|t| &*t.0);
    let volumes = template.spec.iter().flat_map(|p| p.volumes.iter().flatten());
    let claims = volumes.flat_map(|v| &v.rest).any(|(k, v)| k.0 == "persistentVolumeClaim" && v.0.get() != "null");
    validate::warn_about(strategy, claims, &settings, &mut verdict);
    let mut response = allowed(&request.uid.0);
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    Some(request.answer(response))
}

/// The request, its opted-in object and its settings, when no rule denies it.
fn read(body: &[u8]) -> Option<(Request<'_>, Object<'_>, Settings)> {
    let review: Review = serde_json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    if review.api_version?.0 != wire::API_VERSION || review.kind?.0 != wire::KIND {
        return None;
    }
    let mut request = review.request?;
    let object = request.object.take()?;
    if request.uid.0.is_empty()
        || !is_deployment(object.api_version.as_ref(), object.kind.as_ref())
        || request.old_object.as_ref().is_some_and(|o| !is_deployment(o.api_version.as_ref(), o.kind.as_ref()))
        || object.metadata.deletion_timestamp.is_some()
        || !opts_in(object.metadata.labels.as_ref()?.get(&Str(LABEL_SSH.into())).map(|v| &*v.0))
        || object.metadata.name.0.is_empty()
    {
        return None;
    }
    let annotations: BTreeMap<String, String> = object
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.0.starts_with(PREFIX))
        .map(|(k, v)| (k.0.to_string(), v.0.to_string()))
        .collect();
    let settings = Settings::from_annotations(&object.metadata.name.0, &annotations).ok()?;
    if object.denies(&settings) {
        return None;
    }
    Some((request, object, settings))
}

/// What [`crate::wire`] requires of an object's `apiVersion` and `kind`.
fn is_deployment(api_version: Option<&Str>, kind: Option<&Str>) -> bool {
    api_version.is_none_or(|v| v.0 == <Deployment as Resource>::API_VERSION)
        && kind.is_none_or(|k| k.0 == <Deployment as Resource>::KIND)
}

/// An allowed response (to be given its patch or warnings).
fn allowed(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.types = TypeMeta { api_version: wire::API_VERSION.into(), kind: wire::KIND.into() };
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Default::default();
    response
}

// ---- the model ----

/// A string of the body: borrowed unless it was written with escapes.
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// A field no check or injection reads, as the body wrote it.
#[derive(Clone, Copy)]
struct Raw<'a>(&'a RawValue);

/// The fields of an object no check or injection reads, in the body's order.
type Rest<'a> = Vec<(Str<'a>, Raw<'a>)>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    #[serde(borrow)]
    api_version: Option<Str<'a>>,
    #[serde(borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

/// What [`crate::wire`] requires of a request is required here too (the
/// same types), so that what it calls malformed is not answered here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    uid: Str<'a>,
    #[serde(rename = "kind")]
    _kind: kube::core::GroupVersionKind,
    #[serde(rename = "resource")]
    _resource: kube::core::GroupVersionResource,
    #[serde(borrow, default)]
    name: Str<'a>,
    #[serde(borrow, default)]
    namespace: Option<Str<'a>>,
    operation: Operation,
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
    #[serde(borrow, default)]
    object: Option<Object<'a>>,
    #[serde(borrow, default)]
    old_object: Option<Types<'a>>,
    #[serde(default)]
    dry_run: Option<bool>,
}

impl<'b> Request<'b> {
    fn answer(self, response: AdmissionResponse) -> Answer<'b> {
        Answer {
            response,
            uid: self.uid.0,
            namespace: self.namespace.map_or(Cow::Borrowed(""), |n| n.0),
            name: self.name.0,
            operation: crate::wire::operation(&self.operation),
            dry_run: self.dry_run.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Types<'a> {
    #[serde(borrow, default)]
    api_version: Option<Str<'a>>,
    #[serde(borrow, default)]
    kind: Option<Str<'a>>,
}

/// Not `#[serde(flatten)]`ing [`Types`]: serde would buffer the whole object first.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    #[serde(borrow, default)]
    api_version: Option<Str<'a>>,
    #[serde(borrow, default)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    metadata: Meta<'a>,
    #[serde(borrow)]
    spec: Spec<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(borrow, default)]
    name: Str<'a>,
    #[serde(borrow, default)]
    labels: Option<BTreeMap<Str<'a>, Str<'a>>>,
    #[serde(borrow, default)]
    annotations: Option<BTreeMap<Str<'a>, Str<'a>>>,
    #[serde(borrow, default)]
    deletion_timestamp: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Spec<'a> {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(borrow, default)]
    strategy: Option<Strategy<'a>>,
    #[serde(borrow)]
    template: Template<'a>,
}

#[derive(Deserialize)]
struct Strategy<'a> {
    #[serde(borrow, rename = "type", default)]
    type_: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Template<'a> {
    #[serde(borrow, default)]
    metadata: Option<TemplateMeta<'a>>,
    #[serde(borrow, default)]
    spec: Option<Pod<'a>>,
}

#[derive(Default)]
struct TemplateMeta<'a> {
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    rest: Rest<'a>,
}

#[derive(Default)]
struct Pod<'a> {
    containers: Vec<Ctr<'a>>,
    /// Read whole: claworc's are compared whole, and the user's are few.
    init_containers: Option<Vec<Container>>,
    volumes: Option<Vec<Vol<'a>>>,
    security_context: Option<PodSecurityContext>,
    host: [Option<bool>; 3],
    rest: Rest<'a>,
}

/// A container: what the rules and injection read, and the rest.
#[derive(Default)]
struct Ctr<'a> {
    name: Str<'a>,
    image: Option<Str<'a>>,
    image_pull_policy: Option<Str<'a>>,
    working_dir: Option<Str<'a>>,
    security_context: Option<SecurityContext>,
    env: Option<Vec<Env<'a>>>,
    env_from: Option<Raw<'a>>,
    volume_mounts: Option<Vec<Mount<'a>>>,
    ports: Option<Vec<Port<'a>>>,
    rest: Rest<'a>,
}

#[derive(Default)]
struct Env<'a> {
    name: Str<'a>,
    value: Option<Str<'a>>,
    value_from: Option<Raw<'a>>,
    rest: Rest<'a>,
}

#[derive(Default)]
struct Mount<'a> {
    name: Str<'a>,
    mount_path: Str<'a>,
    sub_path: Option<Str<'a>>,
    read_only: Option<bool>,
    rest: Rest<'a>,
}

#[derive(Default)]
struct Port<'a> {
    container_port: i32,
    host_port: Option<i32>,
    rest: Rest<'a>,
}

/// A volume: its name, and its source types as the rest's keys.
#[derive(Default)]
struct Vol<'a> {
    name: Str<'a>,
    rest: Rest<'a>,
    /// As it arrived: claworc's are compared whole.
    raw: Option<Raw<'a>>,
}

/// A `Deserialize` for a model with typed fields and a rest: each listed key
/// is read by its statement, any other goes to the rest as raw JSON. A key
/// given twice is an error (the typed reader and kube-apiserver could read
/// another value than the checks did).
macro_rules! read_object {
    ($ty:ident, |$map:ident, $value:ident, $key:ident| { $($name:literal => $read:expr,)* }) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $ty<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<$ty<'a>, A::Error> {
                        let mut $value = $ty::default();
                        let mut seen = [false; [$($name),*].len()];
                        while let Some($key) = $map.next_key::<Str<'de>>()? {
                            match [$($name),*].iter().position(|n| *n == $key.0) {
                                Some(i) if std::mem::replace(&mut seen[i], true) => {
                                    return Err(A::Error::custom("a key given twice"));
                                }
                                Some(_) => match &*$key.0 { $($name => $read,)* _ => unreachable!() },
                                None if $value.rest.iter().any(|(k, _)| *k == $key) => {
                                    return Err(A::Error::custom("a key given twice"));
                                }
                                None => $value.rest.push(($key, Raw($map.next_value()?))),
                            }
                        }
                        Ok($value)
                    }
                }
                d.deserialize_map(V(PhantomData))
            }
        }
    };
}

read_object!(TemplateMeta, |m, t, key| {
    "labels" => t.labels = m.next_value()?,
    "annotations" => t.annotations = m.next_value()?,
});

read_object!(Pod, |m, p, key| {
    "containers" => p.containers = m.next_value::<Option<_>>()?.unwrap_or_default(),
    "initContainers" => p.init_containers = m.next_value()?,
    "volumes" => p.volumes = kept_whole(m.next_value()?, |v: &mut Vol<'a>, raw| v.raw = Some(raw))?,
    "securityContext" => p.security_context = m.next_value()?,
    "hostNetwork" => p.host[0] = m.next_value()?,
    "hostPID" => p.host[1] = m.next_value()?,
    "hostIPC" => p.host[2] = m.next_value()?,
    // Not modelled (and not in a Deployment's template as kube-apiserver stores it).
    "ephemeralContainers" => return Err(A::Error::custom("ephemeral containers")),
});

read_object!(Ctr, |m, c, key| {
    "name" => c.name = m.next_value()?,
    "image" => c.image = m.next_value()?,
    "imagePullPolicy" => c.image_pull_policy = m.next_value()?,
    "workingDir" => c.working_dir = m.next_value()?,
    "securityContext" => c.security_context = m.next_value()?,
    "env" => c.env = m.next_value()?,
    "envFrom" => c.env_from = m.next_value::<Option<&RawValue>>()?.map(Raw),
    "volumeMounts" => c.volume_mounts = m.next_value()?,
    "ports" => c.ports = m.next_value()?,
});

read_object!(Env, |m, e, key| {
    "name" => e.name = m.next_value()?,
    "value" => e.value = m.next_value()?,
    "valueFrom" => e.value_from = m.next_value::<Option<&RawValue>>()?.map(Raw),
});

read_object!(Mount, |m, v, key| {
    "name" => v.name = m.next_value()?,
    "mountPath" => v.mount_path = m.next_value()?,
    "subPath" => v.sub_path = m.next_value()?,
    "readOnly" => v.read_only = m.next_value()?,
});

read_object!(Port, |m, p, key| {
    "containerPort" => p.container_port = m.next_value()?,
    "hostPort" => p.host_port = m.next_value()?,
});

read_object!(Vol, |m, v, key| {
    "name" => v.name = m.next_value()?,
});

/// Each element of a list read from its raw JSON, which `keep` stores in it.
fn kept_whole<'a, T: Deserialize<'a>, E: serde::de::Error>(
    list: Option<Vec<&'a RawValue>>,
    keep: impl Fn(&mut T, Raw<'a>),
) -> Result<Option<Vec<T>>, E> {
    let Some(list) = list else { return Ok(None) };
    let mut out = Vec::with_capacity(list.len());
    for raw in list {
        let mut item: T = serde_json::from_str(raw.get()).map_err(E::custom)?;
        keep(&mut item, Raw(raw));
        out.push(item);
    }
    Ok(Some(out))
}

// ---- the rules and injection, on the model ----

impl Object<'_> {
    /// Whether any rule denies the object before injection (what
    /// [`validate::before_injection`] checks, read from this model). A volume
    /// field that is `null` or unknown counts as a source type here, which
    /// only sends the request to the typed review.
    fn denies(&self, settings: &Settings) -> bool {
        let mut v = Verdict::default();
        let Some(pod) = &self.spec.template.spec else { return true };
        validate::check_replicas(self.spec.replicas, &mut v);
        validate::check_host_namespaces(pod.host, &mut v);
        for vol in pod.volumes.iter().flatten() {
            validate::check_volume_kinds(&vol.name.0, vol.rest.iter().map(|(k, _)| &*k.0), &mut v);
        }
        if let Some(sc) = &pod.security_context {
            validate::check_pod_security_context(sc, &mut v);
        }
        let annotations = self.spec.template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
        validate::check_apparmor_annotations(annotations, &mut v);
        for c in &pod.containers {
            let ports = c.ports.iter().flatten().map(|p| (p.container_port, p.host_port));
            let mounts = c.volume_mounts.iter().flatten().map(|m| (&*m.name.0, &*m.mount_path.0));
            validate::check_container_entry(
                "containers",
                &c.name.0,
                c.security_context.as_ref(),
                ports,
                mounts,
                &mut v,
            );
        }
        for c in pod.init_containers.iter().flatten() {
            let ports = c.ports.iter().flatten().map(|p| (p.container_port, p.host_port));
            let mounts = c.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str()));
            validate::check_container_entry(
                "initContainers",
                &c.name,
                c.security_context.as_ref(),
                ports,
                mounts,
                &mut v,
            );
        }
        let names = pod.containers.iter().map(|c| &*c.name.0);
        !v.denials.is_empty() || inject::target_index_of(names, settings).is_none()
    }
}

impl Template<'_> {
    /// The JSONPatch that replaces the object's pod template with the injected
    /// one: what [`inject::inject_into`] makes, written from this model.
    /// `None` when a raw field the sidecar copies cannot be read.
    fn injected_patch(&self, name: &str, s: &Settings, cfg: &Config) -> Option<Vec<u8>> {
        let pod = self.spec.as_ref()?;
        let target = &pod.containers[inject::target_index_of(pod.containers.iter().map(|c| &*c.name.0), s)?];
        let target = target.typed()?;
        // The hardened context of a pod without one of its own is kept written.
        let run_as = (s.run_as_user, s.run_as_group);
        let plain = pod.security_context.as_ref().is_none_or(|sc| *sc == PodSecurityContext::default());
        let kept = plain.then(|| written::hardened_pod(run_as));
        let mut made = None;
        if !plain {
            made = pod.security_context.clone();
            inject::harden_pod(&mut made, run_as);
        }
        let security_context = kept.as_ref().map_or(made.as_ref(), |k| k.value.as_ref());
        let home = inject::home(&target);
        let ids = inject::session_ids(security_context, &target, s);
        let git = inject::git_ssh_command(s);
        let known_hosts = inject::known_hosts_mounts(s);

        let mut out = Vec::with_capacity(8 * 1024);
        out.extend_from_slice(br#"[{"op":"replace","path":"/spec/template","value":"#);
        let mut t = Obj::new(&mut out);
        t.key("metadata");
        let mut meta = Obj::new(t.out);
        let (mut labels, mut annotations, rest) = match &self.metadata {
            Some(m) => (m.labels.clone().unwrap_or_default(), m.annotations.clone().unwrap_or_default(), &m.rest[..]),
            None => Default::default(),
        };
        inject::mark_template(&mut labels, &mut annotations, Some(name), s, cfg);
        meta.typed("labels", &Some(labels));
        meta.typed("annotations", &Some(annotations));
        meta.rest(rest);
        meta.end();

        t.key("spec");
        let mut spec = Obj::new(t.out);
        spec.key("containers");
        let mut list = List::new(spec.out);
        for c in &pod.containers {
            c.write_injected(list.next(), &git, &known_hosts);
        }
        list.end();
        spec.key("initContainers");
        let mut list = List::new(spec.out);
        written::write_installer(list.next(), cfg, ids);
        written::write_sidecar(list.next(), s, &target, &home, ids);
        for c in pod.init_containers.iter().flatten().filter(|c| !inject::is_claworc_container(&c.name)) {
            let _ = extend(list.next(), &injected_init(c, s));
        }
        list.end();
        spec.key("volumes");
        let mut list = List::new(spec.out);
        for v in pod.volumes.iter().flatten().filter(|v| !inject::VOLUMES.contains(&&*v.name.0)) {
            let mut o = Obj::new(list.next());
            o.str("name", &v.name.0);
            o.rest(&v.rest);
            o.end();
        }
        written::write_claworc_volumes(list.next(), s);
        if home == Home::EmptyDir {
            let _ = extend(list.next(), &inject::home_volume());
        }
        list.end();
        match &kept {
            Some(kept) => spec.written("securityContext", &kept.text),
            None => spec.typed("securityContext", &made),
        }
        for (key, on) in ["hostNetwork", "hostPID", "hostIPC"].into_iter().zip(pod.host) {
            spec.typed(key, &on);
        }
        spec.rest(&pod.rest);
        spec.end();
        t.end();
        out.extend_from_slice(b"}]");
        Some(out)
    }
}

impl Template<'_> {
    /// Whether injection would leave this template as it is (what
    /// [`inject::inject_template`] compared with the template checks), read
    /// from this model. `None` when a raw field the sidecar copies cannot be read.
    /// The sidecar is compared in place and left without its workload fields.
    fn is_injected(&mut self, name: &str, s: &Settings, cfg: &Config) -> Option<bool> {
        let (Some(meta), Some(pod)) = (&self.metadata, &mut self.spec) else { return Some(false) };
        let (Some(labels), Some(annotations)) = (&meta.labels, &meta.annotations) else { return Some(false) };
        let (mut want_labels, mut want_annotations) = (labels.clone(), annotations.clone());
        inject::mark_template(&mut want_labels, &mut want_annotations, Some(name), s, cfg);
        if want_labels != *labels || want_annotations != *annotations {
            return Some(false);
        }
        let mut security_context = pod.security_context.clone();
        inject::harden_pod(&mut security_context, (s.run_as_user, s.run_as_group));
        if security_context != pod.security_context {
            return Some(false);
        }
        let git = inject::git_ssh_command(s);
        let known_hosts = inject::known_hosts_mounts(s);
        if !pod.containers.iter().all(|c| c.is_injected_workload(&git, &known_hosts)) {
            return Some(false);
        }
        let target = &pod.containers[inject::target_index_of(pod.containers.iter().map(|c| &*c.name.0), s)?];
        let target = target.typed()?;
        let home = inject::home(&target);
        let ids = inject::session_ids(security_context.as_ref(), &target, s);
        // [installer, sidecar, the user's init containers…], each as injection makes it.
        let init = pod.init_containers.as_deref_mut().unwrap_or_default();
        let [installer, sidecar, user @ ..] = init else { return Some(false) };
        let from_workload = inject::sidecar_from_workload(s, &target, &home);
        if *installer != written::installer(cfg, ids).value
            || !inject::take_is_sidecar(sidecar, &written::sidecar_fixed(s.ssh_port, ids).value, &from_workload)
        {
            return Some(false);
        }
        if !user.iter().all(|c| !inject::is_claworc_container(&c.name) && injected_init(c, s) == *c) {
            return Some(false);
        }
        // [the user's volumes…, claworc's…, the home emptyDir if it needs one].
        let keys = inject::keys_volume(&s.ssh_secret);
        let fixed = written::claworc_volumes_fixed(s.known_hosts_configmap.as_deref());
        let home_volume = (home == Home::EmptyDir).then(inject::home_volume);
        let want: Vec<&Volume> = std::iter::once(&keys).chain(&fixed.value).chain(&home_volume).collect();
        let volumes = pod.volumes.as_deref().unwrap_or_default();
        let Some(users) = volumes.len().checked_sub(want.len()) else { return Some(false) };
        let (user, claworc) = volumes.split_at(users);
        if user.iter().any(|v| inject::VOLUMES.contains(&&*v.name.0)) {
            return Some(false);
        }
        for (have, want) in claworc.iter().zip(want) {
            let have: Volume = serde_json::from_str(have.raw?.0.get()).ok()?;
            if have != *want {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// A user's init container as injection leaves it (see `inject::set_known_hosts`).
fn injected_init(c: &Container, s: &Settings) -> Container {
    let mut c = c.clone();
    inject::harden_container(&mut c.security_context);
    inject::set_known_hosts(&mut c, s);
    c
}

impl Ctr<'_> {
    /// Whether injection leaves this workload container as it is: hardened,
    /// `GIT_SSH_COMMAND` last among its variables and the `known_hosts`
    /// mounts last among its mounts, each once (see [`Ctr::write_injected`]).
    fn is_injected_workload(&self, git: &str, known_hosts: &[VolumeMount]) -> bool {
        let mut security_context = self.security_context.clone();
        inject::harden_container(&mut security_context);
        if security_context != self.security_context {
            return false;
        }
        let Some([env @ .., last]) = self.env.as_deref() else { return false };
        let git_var = last.name.0 == ENV_GIT_SSH_COMMAND
            && last.value.as_ref().is_some_and(|v| v.0 == git)
            && last.value_from.is_none()
            && last.rest.is_empty();
        if !git_var || env.iter().any(|e| e.name.0 == ENV_GIT_SSH_COMMAND) {
            return false;
        }
        let mounts = self.volume_mounts.as_deref().unwrap_or_default();
        let Some(users) = mounts.len().checked_sub(known_hosts.len()) else { return false };
        let (user, ours) = mounts.split_at(users);
        let is_known_hosts = |m: &Mount| m.name.0 == VOLUME_KNOWN_HOSTS || m.name.0 == VOLUME_KNOWN_HOSTS_USER;
        !user.iter().any(is_known_hosts)
            && ours.iter().zip(known_hosts).all(|(have, want)| {
                have.name.0 == want.name
                    && have.mount_path.0 == want.mount_path
                    && have.sub_path.as_ref().map(|p| &*p.0) == want.sub_path.as_deref()
                    && have.read_only == want.read_only
                    && have.rest.is_empty()
            })
    }

    /// This container as injection leaves a workload container: hardened,
    /// with `known_hosts` mounted and `GIT_SSH_COMMAND` set (see `inject::set_known_hosts`).
    fn write_injected(&self, out: &mut Vec<u8>, git: &str, known_hosts: &[VolumeMount]) {
        let mut o = Obj::new(out);
        o.str("name", &self.name.0);
        o.opt_str("image", &self.image);
        o.opt_str("imagePullPolicy", &self.image_pull_policy);
        o.opt_str("workingDir", &self.working_dir);
        if self.security_context.is_none() {
            o.written("securityContext", &written::hardened_container().text);
        } else {
            let mut security_context = self.security_context.clone();
            inject::harden_container(&mut security_context);
            o.typed("securityContext", &security_context);
        }
        o.key("env");
        let mut list = List::new(o.out);
        for e in self.env.iter().flatten().filter(|e| e.name.0 != ENV_GIT_SSH_COMMAND) {
            e.write(list.next());
        }
        let _ = extend(
            list.next(),
            &EnvVar { name: ENV_GIT_SSH_COMMAND.into(), value: Some(git.into()), value_from: None },
        );
        list.end();
        o.raw("envFrom", self.env_from);
        o.key("volumeMounts");
        let mut list = List::new(o.out);
        let kept = |m: &&Mount| m.name.0 != VOLUME_KNOWN_HOSTS && m.name.0 != VOLUME_KNOWN_HOSTS_USER;
        for m in self.volume_mounts.iter().flatten().filter(kept) {
            m.write(list.next());
        }
        for m in known_hosts {
            let _ = extend(list.next(), m);
        }
        list.end();
        if let Some(ports) = &self.ports {
            o.key("ports");
            let mut list = List::new(o.out);
            for p in ports {
                let mut po = Obj::new(list.next());
                po.typed("containerPort", &Some(p.container_port));
                po.typed("hostPort", &p.host_port);
                po.rest(&p.rest);
                po.end();
            }
            list.end();
        }
        o.rest(&self.rest);
        o.end();
    }

    /// The fields of this container the sidecar copies, as a k8s-openapi
    /// `Container` for [`inject::sidecar`] (`None` when a raw one cannot be read).
    fn typed(&self) -> Option<Container> {
        let owned = |s: &Option<Str>| s.as_ref().map(|s| s.0.to_string());
        let env = self.env.as_ref().map(|env| {
            env.iter()
                .map(|e| {
                    Some(EnvVar {
                        name: e.name.0.to_string(),
                        value: owned(&e.value),
                        value_from: e.value_from.map(|r| serde_json::from_str(r.0.get())).transpose().ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()
        });
        let mounts = self.volume_mounts.as_ref().map(|mounts| {
            mounts
                .iter()
                .map(|m| {
                    if m.rest.is_empty() {
                        return Some(VolumeMount {
                            name: m.name.0.to_string(),
                            mount_path: m.mount_path.0.to_string(),
                            sub_path: owned(&m.sub_path),
                            read_only: m.read_only,
                            ..Default::default()
                        });
                    }
                    // The fields this model keeps raw (mountPropagation, subPathExpr…), read as written.
                    let mut json = Vec::new();
                    m.write(&mut json);
                    serde_json::from_slice::<VolumeMount>(&json).ok()
                })
                .collect::<Option<Vec<_>>>()
        });
        Some(Container {
            name: self.name.0.to_string(),
            image: owned(&self.image),
            image_pull_policy: owned(&self.image_pull_policy),
            working_dir: owned(&self.working_dir),
            security_context: self.security_context.clone(),
            env: match env {
                Some(env) => Some(env?),
                None => None,
            },
            env_from: self.env_from.map(|r| serde_json::from_str(r.0.get())).transpose().ok()?,
            volume_mounts: match mounts {
                Some(mounts) => Some(mounts?),
                None => None,
            },
            ..Default::default()
        })
    }
}

impl Env<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        o.str("name", &self.name.0);
        o.opt_str("value", &self.value);
        o.raw("valueFrom", self.value_from);
        o.rest(&self.rest);
        o.end();
    }
}

impl Mount<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        o.str("name", &self.name.0);
        o.str("mountPath", &self.mount_path.0);
        o.opt_str("subPath", &self.sub_path);
        o.typed("readOnly", &self.read_only);
        o.rest(&self.rest);
        o.end();
    }
}

/// A JSON array being written.
struct List<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> List<'o> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'[');
        List { out, first: true }
    }

    /// Where the next element goes.
    fn next(&mut self) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out
    }

    fn end(self) {
        self.out.push(b']');
    }
}

/// A JSON object being written.
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        write_str(self.out, key);
        self.out.push(b':');
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_str(self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: &Option<Str>) {
        if let Some(v) = value {
            self.str(key, &v.0);
        }
    }

    /// A typed field, left out when `None` (as k8s-openapi leaves it out).
    fn typed<T: serde::Serialize>(&mut self, key: &str, value: &Option<T>) {
        if let Some(value) = value {
            self.key(key);
            let _ = extend(self.out, value);
        }
    }

    /// A field already written as JSON.
    fn written(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(json);
    }

    fn raw(&mut self, key: &str, value: Option<Raw>) {
        if let Some(v) = value {
            self.key(key);
            self.out.extend_from_slice(v.0.get().as_bytes());
        }
    }

    fn rest(&mut self, rest: &[(Str, Raw)]) {
        for (key, value) in rest {
            self.key(&key.0);
            self.out.extend_from_slice(value.0.get().as_bytes());
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}
