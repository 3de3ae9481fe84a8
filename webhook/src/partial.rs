//! The common answers, read from a borrowed, partial model of the review.
//!
//! Nearly every request is an opted-in Deployment that is allowed: `/mutate`
//! of a new one (the whole injected template as its patch), `/mutate` and
//! `/validate` of one already injected (no patch). For those, parsing the
//! whole object into k8s-openapi values, and writing the template back from
//! them, cost more than everything else the webhook does. Here the pod
//! template is read as far as the checks and injection read it, typed as
//! [`validate`] and [`inject`] read it (the same k8s-openapi values, the same
//! functions), and every other field is kept as the raw JSON it arrived as:
//! compared byte for byte, and copied into the patch as it came.
//!
//! This model only ever *allows*. Whatever it does not model (an object that
//! is not opted in, or being deleted, an ephemeral container, a key given
//! twice, a body it cannot read) and whatever any rule would deny is answered
//! by the typed review ([`crate::review`]), which writes every denial; so is
//! a template that differs from what injection makes (its message names the
//! fields) and one injected by another release (whose release fields the
//! typed review compares). `tests/partial_props.rs` checks that both models
//! answer alike wherever this one answers.
//!
//! One difference is accepted: a field this model keeps raw is not checked
//! against its schema, so a hand-written body with, say, `"resources": 5` is
//! answered here where the typed reader would call it malformed. kube-apiserver
//! sends only objects it has decoded, and it decodes the patched object again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use claworc_contract::Settings;
use claworc_contract::names::*;
use k8s_openapi::api::core::v1::{Container, PodSecurityContext, Volume};
use kube::core::TypeMeta;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::Deserialize;
use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::inject::{self, Config, PodContainer};
use crate::json::{extend, write_str};
use crate::validate::{self, Verdict};

/// An answer, and what the server logs of the request.
pub struct Answer<'b> {
    pub response: AdmissionResponse,
    pub uid: Cow<'b, str>,
    pub namespace: Cow<'b, str>,
    pub name: Cow<'b, str>,
    pub operation: &'static str,
    pub dry_run: bool,
}

/// `/mutate`: the patch that injects claworc, or none when the template is
/// already what injection makes. `None`: for [`crate::review::mutate`].
pub fn mutate<'b>(body: &'b [u8], cfg: &Config) -> Option<Answer<'b>> {
    let (request, object, settings) = read(body)?;
    let mut template = object.spec.template;
    let stored_version = template.metadata.as_ref().and_then(|m| m.annotations.as_ref()?.get(ANNOTATION_INJECTED));
    let patch = if stored_version == Some(&cfg.version) {
        let want = template.injected(&object.metadata.name.0, &settings, cfg);
        (want != template).then(|| want.patch())
    } else {
        // Injection writes this version: the template changes for certain.
        template.inject(&object.metadata.name.0, &settings, cfg);
        Some(template.patch())
    };
    let mut response = allowed(&request.uid.0);
    if let Some(patch) = patch {
        response = response.with_patch(json_patch::Patch(Vec::new())).ok()?;
        response.patch = Some(patch);
    }
    Some(request.answer(response))
}

/// `/validate`: allowed, with its warnings, when no rule denies the object
/// and its template is what injection makes. `None`: for [`crate::review::validate`].
pub fn validate<'b>(body: &'b [u8], cfg: &Config) -> Option<Answer<'b>> {
    let (request, object, settings) = read(body)?;
    let template = &object.spec.template;
    if template.injected(&object.metadata.name.0, &settings, cfg) != *template {
        return None;
    }
    let mut verdict = Verdict::default();
    let strategy = object.spec.strategy.as_ref().and_then(|s| s.type_.as_ref()).map(|t| &*t.0);
    let volumes = template.spec.as_ref().into_iter().flat_map(|p| p.volumes.iter().flatten());
    validate::warn_about(strategy, volumes, &settings, &mut verdict);
    let mut response = allowed(&request.uid.0);
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    Some(request.answer(response))
}

/// The request, its opted-in object and its settings, when no rule denies it.
fn read(body: &[u8]) -> Option<(Request<'_>, Object<'_>, Settings)> {
    let review: Review = serde_json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    if review.api_version?.0 != "admission.k8s.io/v1" || review.kind?.0 != "AdmissionReview" {
        return None;
    }
    let mut request = review.request?;
    let object = request.object.take()?;
    if request.uid.0.is_empty()
        || !is_deployment(object.api_version.as_ref(), object.kind.as_ref())
        || request.old_object.as_ref().is_some_and(|o| !is_deployment(o.api_version.as_ref(), o.kind.as_ref()))
        || object.metadata.deletion_timestamp.is_some()
        || object.metadata.labels.as_ref()?.get(&Str(LABEL_SSH.into())).map(|v| &*v.0) != Some(SSH_ENABLED)
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
    api_version.is_none_or(|v| v.0 == "apps/v1") && kind.is_none_or(|k| k.0 == "Deployment")
}

/// An allowed response (to be given a patch or warnings).
fn allowed(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.types = TypeMeta { api_version: "admission.k8s.io/v1".into(), kind: "AdmissionReview".into() };
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Default::default();
    response
}

// ---- the model ----

/// A string of the body: borrowed unless it was written with escapes.
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone, Debug, Default)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// A field no check or injection reads, as the body wrote it.
#[derive(Clone, Copy, Debug)]
struct Raw<'a>(&'a RawValue);

impl PartialEq for Raw<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

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

#[derive(Deserialize, Clone, PartialEq, Debug)]
struct Template<'a> {
    #[serde(borrow, default)]
    metadata: Option<TemplateMeta<'a>>,
    #[serde(borrow, default)]
    spec: Option<Pod<'a>>,
}

#[derive(Clone, PartialEq, Default, Debug)]
struct TemplateMeta<'a> {
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    rest: Rest<'a>,
}

#[derive(Clone, PartialEq, Default, Debug)]
struct Pod<'a> {
    containers: Vec<Ctr<'a>>,
    init_containers: Option<Vec<Ctr<'a>>>,
    volumes: Option<Vec<Volume>>,
    security_context: Option<PodSecurityContext>,
    host: [Option<bool>; 3],
    rest: Rest<'a>,
}

/// A container: the fields checks and injection read as k8s-openapi's
/// `Container` does, the rest raw; an init container is read whole.
#[derive(Clone, PartialEq, Default, Debug)]
struct Ctr<'a> {
    c: Container,
    rest: Rest<'a>,
}

impl From<Container> for Ctr<'_> {
    fn from(c: Container) -> Self {
        Ctr { c, rest: Vec::new() }
    }
}

impl PodContainer for Ctr<'_> {
    fn container(&self) -> &Container {
        &self.c
    }
    fn container_mut(&mut self) -> &mut Container {
        &mut self.c
    }
}

/// A `Deserialize` for a model with typed fields and a rest: `$field` maps a
/// key to a statement reading its value, or falls through to the rest. A key
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
    // Read whole: claworc's two are compared whole, and the user's are few.
    "initContainers" => {
        let init: Option<Vec<Container>> = m.next_value()?;
        p.init_containers = init.map(|init| init.into_iter().map(Ctr::from).collect());
    },
    "volumes" => p.volumes = m.next_value()?,
    "securityContext" => p.security_context = m.next_value()?,
    "hostNetwork" => p.host[0] = m.next_value()?,
    "hostPID" => p.host[1] = m.next_value()?,
    "hostIPC" => p.host[2] = m.next_value()?,
    // Not modelled (and not in a Deployment's template as kube-apiserver stores it).
    "ephemeralContainers" => return Err(A::Error::custom("ephemeral containers")),
});

read_object!(Ctr, |m, c, key| {
    "name" => c.c.name = m.next_value()?,
    "image" => c.c.image = m.next_value()?,
    "imagePullPolicy" => c.c.image_pull_policy = m.next_value()?,
    "workingDir" => c.c.working_dir = m.next_value()?,
    "securityContext" => c.c.security_context = m.next_value()?,
    "env" => c.c.env = m.next_value()?,
    "envFrom" => c.c.env_from = m.next_value()?,
    "volumeMounts" => c.c.volume_mounts = m.next_value()?,
    "ports" => c.c.ports = m.next_value()?,
});

// ---- the rules and injection, on the model ----

impl Object<'_> {
    /// Whether any rule denies the object before injection (what
    /// [`validate::before_injection`] checks, read from this model).
    fn denies(&self, settings: &Settings) -> bool {
        let mut v = Verdict::default();
        let (Some(pod), false) = (&self.spec.template.spec, self.spec.replicas.is_some_and(|r| !(0..=1).contains(&r)))
        else {
            return true;
        };
        validate::check_host_namespaces(pod.host, &mut v);
        for vol in pod.volumes.iter().flatten() {
            validate::check_volume(vol, &mut v);
        }
        if let Some(sc) = &pod.security_context {
            validate::check_pod_security_context(sc, &mut v);
        }
        let annotations = self.spec.template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
        validate::check_apparmor_annotations(annotations, &mut v);
        let init = pod.init_containers.iter().flatten().map(|c| ("initContainers", &c.c));
        for (kind, c) in pod.containers.iter().map(|c| ("containers", &c.c)).chain(init) {
            let (sc, ports, mounts) = (c.security_context.as_ref(), c.ports.as_deref(), c.volume_mounts.as_deref());
            validate::check_container_entry(kind, &c.name, sc, ports, mounts, &mut v);
        }
        let names = pod.containers.iter().map(|c| c.c.name.as_str());
        !v.denials.is_empty() || inject::target_index_of(names, settings).is_none()
    }
}

impl<'a> Template<'a> {
    /// What injection makes of this template ([`inject::inject_template`]).
    fn injected(&self, name: &str, settings: &Settings, cfg: &Config) -> Template<'a> {
        let pod = self.spec.as_ref().map(|p| Pod {
            init_containers: p
                .init_containers
                .as_ref()
                .map(|init| init.iter().filter(|c| !inject::is_claworc_container(&c.c.name)).cloned().collect()),
            containers: p.containers.clone(),
            volumes: p.volumes.clone(),
            security_context: p.security_context.clone(),
            host: p.host,
            rest: p.rest.clone(),
        });
        let mut t = Template { metadata: self.metadata.clone(), spec: pod };
        t.inject(name, settings, cfg);
        t
    }

    /// Injects in place ([`inject::inject_into`]).
    fn inject(&mut self, name: &str, settings: &Settings, cfg: &Config) {
        let meta = self.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(Default::default);
        inject::mark_template(labels, meta.annotations.get_or_insert_with(Default::default), Some(name), settings, cfg);
        let p = self.spec.get_or_insert_with(Default::default);
        let pod = inject::Pod {
            containers: &mut p.containers,
            init_containers: &mut p.init_containers,
            volumes: &mut p.volumes,
            security_context: &mut p.security_context,
        };
        inject::inject_pod(pod, settings, cfg);
    }

    /// The JSONPatch that replaces the object's pod template with this one.
    fn patch(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        out.extend_from_slice(br#"[{"op":"replace","path":"/spec/template","value":"#);
        let mut o = Obj::new(&mut out);
        if let Some(m) = &self.metadata {
            o.key("metadata");
            let mut meta = Obj::new(o.out);
            meta.typed("labels", &m.labels);
            meta.typed("annotations", &m.annotations);
            meta.rest(&m.rest);
            meta.end();
        }
        if let Some(p) = &self.spec {
            o.key("spec");
            let mut pod = Obj::new(o.out);
            pod.key("containers");
            ctrs(pod.out, &p.containers);
            if let Some(init) = &p.init_containers {
                pod.key("initContainers");
                ctrs(pod.out, init);
            }
            pod.typed("volumes", &p.volumes);
            pod.typed("securityContext", &p.security_context);
            for (key, on) in ["hostNetwork", "hostPID", "hostIPC"].into_iter().zip(p.host) {
                pod.typed(key, &on);
            }
            pod.rest(&p.rest);
            pod.end();
        }
        o.end();
        out.extend_from_slice(b"}]");
        out
    }
}

fn ctrs(out: &mut Vec<u8>, containers: &[Ctr]) {
    out.push(b'[');
    for (i, c) in containers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // The typed fields as k8s-openapi writes them (`name` always, so the
        // object is never empty), then the rest.
        let _ = extend(out, &c.c);
        out.pop();
        let mut o = Obj { out, first: false };
        o.rest(&c.rest);
        o.end();
    }
    out.push(b']');
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

    /// A typed field, left out when `None` (as k8s-openapi leaves it out).
    fn typed<T: serde::Serialize>(&mut self, key: &str, value: &Option<T>) {
        if let Some(value) = value {
            self.key(key);
            let _ = extend(self.out, value);
        }
    }

    fn rest(&mut self, rest: &Rest) {
        for (key, value) in rest {
            self.key(&key.0);
            self.out.extend_from_slice(value.0.get().as_bytes());
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}
