//! The common answers, read from a borrowed, partial model of the review:
//! `/mutate` of an opted-in Deployment that is allowed (the whole injected
//! template as the patch, or no patch when this release injected it and it is
//! still what injection makes) and `/validate` of one this release injected.
//!
//! Parsing the whole object into k8s-openapi values, and writing the template
//! back from them, cost more than everything else the webhook does. Here the
//! body is read once by [`scan`] (one small reader: in the server, the code a
//! request runs costs beside its instructions), and the pod template only as
//! far as the rules and injection read it: strings borrowed from the body; the
//! security contexts as the k8s-openapi values that [`validate`]'s rules and
//! [`inject`]'s functions take; every other field kept as the text it arrived
//! as. The patch is written straight from that: the user's fields as they
//! came, claworc's parts as [`written`] keeps them (serialized from
//! [`inject`]'s own values), and the sidecar's fields drawn from its target
//! (image, environment, shared mounts, home: what
//! [`inject::sidecar_from_workload`] makes) written from the target's model
//! with [`inject`]'s rules for them. The re-check compares the template with what
//! injection makes piece by piece: claworc's init containers and volumes with
//! the text injection writes ([`scan::same`]), the rest as values.
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

use claworc_contract::Settings;
use claworc_contract::instance::opts_in;
use claworc_contract::names::*;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSecurityContext, SecurityContext, VolumeMount};
use kube::core::admission::Operation;

use crate::inject::{self, Config, Home, SharedMount};
use crate::json::{extend, write_str};
use crate::scan::{self, Doc, Kind, Val};
use crate::validate::{self, Verdict};
use crate::written::Part;
use crate::{wire, written};

/// The answer (allowed, with its patch or warnings), and what the server logs of the request.
pub struct Answer<'b> {
    /// The AdmissionReview to send ([`wire::allowed_review`]).
    pub review: Vec<u8>,
    /// Whether it carries a patch.
    pub patched: bool,
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
    let (doc, request, object, settings) = read(body, cfg)?;
    let template = &object.spec.template;
    let stored_version =
        value_of(template.metadata.as_ref().and_then(|m| m.annotations.as_deref()), ANNOTATION_INJECTED);
    if stored_version == Some(&*cfg.version) {
        // Injected by this release: no patch if it is still what injection makes.
        return template.is_injected(&doc, &object.metadata.name.0, &settings, cfg)?.then(|| request.answer(None, &[]));
    }
    let patch = template.injected_patch(&object.metadata.name.0, &settings, cfg)?;
    Some(request.answer(Some(&patch), &[]))
}

/// `/validate`: allowed, with its warnings, when no rule denies the object and
/// its template is what this release's injection makes. `None`: for
/// [`crate::review::validate`] (which also judges another release's template).
pub fn validate<'b>(body: &'b [u8], cfg: &Config) -> Option<Answer<'b>> {
    let (doc, request, object, settings) = read(body, cfg)?;
    let template = &object.spec.template;
    if !template.is_injected(&doc, &object.metadata.name.0, &settings, cfg)? {
        return None;
    }
    let mut verdict = Verdict::default();
    let strategy = object.spec.strategy_type.as_ref().map(|t| &*t.0);
    let volumes = template.spec.iter().flat_map(|p| p.volumes.iter().flatten());
    let claims = volumes.flat_map(|v| &v.rest).any(|(k, v)| k.0 == "persistentVolumeClaim" && v.0 != "null");
    validate::warn_about(strategy, claims, &settings, &mut verdict);
    Some(request.answer(None, &verdict.warnings))
}

/// The body's scanned document, the request, its opted-in object and its
/// settings, when no rule denies it.
fn read<'b>(body: &'b [u8], cfg: &Config) -> Option<(Doc<'b>, Request<'b>, Object<'b>, Settings)> {
    let doc = Doc::parse(std::str::from_utf8(body).ok()?)?;
    let mut request = read_review(doc.root())?;
    let object = request.object.take()?;
    if request.uid.0.is_empty()
        || !is_deployment(object.api_version.as_ref(), object.kind.as_ref())
        || request.old_object.as_ref().is_some_and(|o| !is_deployment(o.api_version.as_ref(), o.kind.as_ref()))
        || object.metadata.deletion_timestamp
        || !opts_in(object.metadata.labels.as_ref()?.iter().rev().find(|(k, _)| k.0 == LABEL_SSH).map(|(_, v)| &*v.0))
        || object.metadata.name.0.is_empty()
    {
        return None;
    }
    let annotations = object.metadata.annotations.iter().flatten().map(|(k, v)| (&*k.0, &*v.0));
    let settings = Settings::from_pairs(&object.metadata.name.0, annotations).ok()?;
    if object.denies(&settings, cfg) {
        return None;
    }
    Some((doc, request, object, settings))
}

/// What [`crate::wire`] requires of an object's `apiVersion` and `kind`.
fn is_deployment(api_version: Option<&Str>, kind: Option<&Str>) -> bool {
    api_version.is_none_or(|v| v.0 == <Deployment as Resource>::API_VERSION)
        && kind.is_none_or(|k| k.0 == <Deployment as Resource>::KIND)
}

// ---- the model ----

/// A string of the body: borrowed unless it was written with escapes.
#[derive(Default)]
struct Str<'a>(Cow<'a, str>);

/// A field no check or injection reads, as the body wrote it.
#[derive(Clone, Copy)]
struct Raw<'a>(&'a str);

/// The fields of an object no check or injection reads, in the body's order.
type Rest<'a> = Vec<(Str<'a>, Raw<'a>)>;

/// What [`crate::wire`] requires of a request is required here too, so that
/// what it calls malformed is not answered here.
struct Request<'a> {
    uid: Str<'a>,
    name: Str<'a>,
    namespace: Option<Str<'a>>,
    operation: Operation,
    object: Option<Object<'a>>,
    old_object: Option<Types<'a>>,
    dry_run: Option<bool>,
}

impl<'b> Request<'b> {
    /// Allowed, with this patch or these warnings.
    fn answer(self, patch: Option<&[u8]>, warnings: &[String]) -> Answer<'b> {
        Answer {
            review: wire::allowed_review(&self.uid.0, patch, warnings),
            patched: patch.is_some(),
            uid: self.uid.0,
            namespace: self.namespace.map_or(Cow::Borrowed(""), |n| n.0),
            name: self.name.0,
            operation: crate::wire::operation(&self.operation),
            dry_run: self.dry_run.unwrap_or_default(),
        }
    }
}

#[derive(Default)]
struct Types<'a> {
    api_version: Option<Str<'a>>,
    kind: Option<Str<'a>>,
}

#[derive(Default)]
struct Object<'a> {
    api_version: Option<Str<'a>>,
    kind: Option<Str<'a>>,
    metadata: Meta<'a>,
    spec: Spec<'a>,
}

#[derive(Default)]
struct Meta<'a> {
    name: Str<'a>,
    /// Labels and annotations as given (of a key given twice, the last counts).
    labels: Option<Vec<(Str<'a>, Str<'a>)>>,
    annotations: Option<Vec<(Str<'a>, Str<'a>)>>,
    deletion_timestamp: bool,
}

#[derive(Default)]
struct Spec<'a> {
    replicas: Option<i32>,
    strategy_type: Option<Str<'a>>,
    template: Template<'a>,
}

#[derive(Default)]
struct Template<'a> {
    metadata: Option<TemplateMeta<'a>>,
    spec: Option<Pod<'a>>,
}

#[derive(Default)]
struct TemplateMeta<'a> {
    /// Labels and annotations as given (a key given twice: for the typed review).
    labels: Option<Vec<(Str<'a>, Str<'a>)>>,
    annotations: Option<Vec<(Str<'a>, Str<'a>)>>,
    rest: Rest<'a>,
}

#[derive(Default)]
struct Pod<'a> {
    containers: Vec<Ctr<'a>>,
    init_containers: Option<Vec<Init<'a>>>,
    volumes: Option<Vec<Vol<'a>>>,
    security_context: Option<PodSecurityContext>,
    host: [Option<bool>; 3],
    rest: Rest<'a>,
}

/// An init container: its name, and the rest as written. claworc's are
/// compared with what injection makes as they are; the user's (few) are read
/// whole when a rule or injection needs them.
#[derive(Default)]
struct Init<'a> {
    name: Str<'a>,
    raw: Raw<'a>,
    /// Its place in the scanned body.
    at: usize,
}

impl Init<'_> {
    fn typed(&self) -> Option<Container> {
        serde_json::from_str(self.raw.0).ok()
    }
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
    /// Its place in the scanned body: claworc's are compared whole.
    at: usize,
}

impl Default for Raw<'_> {
    fn default() -> Self {
        Raw("null")
    }
}

// ---- reading the model from the scanned body ----
//
// As serde reads the typed review: `null` is an absent optional field, a
// required one missing or of another type is an error (`None`), and a key
// given twice in an object read here is an error too (the typed reader and
// kube-apiserver could read another value than the checks did). Maps of
// labels and annotations keep the last of a key given twice, as serde does.

/// Each member of the object `v` given to `read` (which answers whether it
/// reads that key; `None`: an error), the others kept as the rest.
#[inline(never)]
fn read_members<'d, 'a>(v: Val<'d, 'a>, read: &mut dyn FnMut(&str, Val<'d, 'a>) -> Option<bool>) -> Option<Rest<'a>> {
    if v.kind() != Kind::Object || v.repeats_a_key() {
        return None;
    }
    let mut rest = Vec::new();
    for (key, value) in v.members() {
        if !read(&key, value)? {
            rest.push((Str(key), Raw(value.raw())));
        }
    }
    Some(rest)
}

/// Reads an object whose every member is read by `read` (the unread are ignored).
fn read_struct<'d, 'a>(v: Val<'d, 'a>, read: &mut dyn FnMut(&str, Val<'d, 'a>) -> Option<()>) -> Option<()> {
    read_members(v, &mut |k, v| read(k, v).map(|()| true)).map(drop)
}

/// `Some(x)` for `null`, else `read`'s.
fn opt<'d, 'a, T>(v: Val<'d, 'a>, read: impl FnOnce(Val<'d, 'a>) -> Option<T>) -> Option<Option<T>> {
    if v.is_null() { Some(None) } else { read(v).map(Some) }
}

fn str<'a>(v: Val<'_, 'a>) -> Option<Str<'a>> {
    v.str().map(Str)
}

fn list<'d, 'a, T>(v: Val<'d, 'a>, read: fn(Val<'d, 'a>) -> Option<T>) -> Option<Vec<T>> {
    if v.kind() != Kind::Array {
        return None;
    }
    let mut out = Vec::new();
    for v in v.children() {
        out.push(read(v)?);
    }
    Some(out)
}

/// A security context: `{}` as none (what injection and the rules make of
/// either is the same), others as k8s-openapi reads them.
fn security_context<T: serde::de::DeserializeOwned>(v: Val) -> Option<Option<T>> {
    if v.kind() == Kind::Object && v.members().next().is_none() { Some(None) } else { typed(v) }
}

/// A k8s-openapi value, read from its text by serde.
fn typed<T: serde::de::DeserializeOwned>(v: Val) -> Option<T> {
    serde_json::from_str(v.raw()).ok()
}

fn string_pairs<'a>(v: Val<'_, 'a>) -> Option<Vec<(Str<'a>, Str<'a>)>> {
    (v.kind() == Kind::Object).then(|| v.members().map(|(k, v)| Some((Str(k), str(v)?))).collect()).flatten()
}

/// [`string_pairs`], none given twice.
fn unique_pairs<'a>(v: Val<'_, 'a>) -> Option<Vec<(Str<'a>, Str<'a>)>> {
    if v.repeats_a_key() { None } else { string_pairs(v) }
}

/// The review's request, when it is an AdmissionReview as [`crate::wire`] reads one.
fn read_review<'a>(v: Val<'_, 'a>) -> Option<Request<'a>> {
    let (mut api_version, mut kind, mut request) = (None, None, None);
    read_struct(v, &mut |k, v| {
        match k {
            "apiVersion" => api_version = opt(v, str)?,
            "kind" => kind = opt(v, str)?,
            "request" => request = opt(v, read_request)?,
            _ => {}
        }
        Some(())
    })?;
    (api_version?.0 == wire::API_VERSION && kind?.0 == wire::KIND).then_some(request?)
}

fn read_request<'a>(v: Val<'_, 'a>) -> Option<Request<'a>> {
    let (mut uid, mut name, mut namespace, mut operation, mut object, mut old_object, mut dry_run) =
        (None, None, None, None, None, None, None);
    let (mut kind, mut resource, mut user_info) = (false, false, false);
    read_struct(v, &mut |k, v| {
        match k {
            "uid" => uid = Some(str(v)?),
            "kind" => kind = gvk(v, "kind")?,
            "resource" => resource = gvk(v, "resource")?,
            "name" => name = Some(str(v)?),
            "namespace" => namespace = opt(v, str)?,
            "operation" => operation = Some(read_operation(v)?),
            "userInfo" => user_info = true,
            "object" => object = opt(v, read_object)?,
            "oldObject" => old_object = opt(v, read_types)?,
            "dryRun" => dry_run = opt(v, |v| v.bool())?,
            _ => {}
        }
        Some(())
    })?;
    (kind && resource && user_info).then_some(Request {
        uid: uid?,
        name: name.unwrap_or_default(),
        namespace,
        operation: operation?,
        object,
        old_object,
        dry_run,
    })
}

/// A GroupVersionKind (`last` "kind") or GroupVersionResource ("resource"): three strings.
fn gvk(v: Val, last: &str) -> Option<bool> {
    let mut found = [false; 3];
    read_struct(v, &mut |k, v| {
        if let Some(i) = ["group", "version", last].iter().position(|n| *n == k) {
            v.str()?;
            found[i] = true;
        }
        Some(())
    })?;
    Some(found == [true; 3])
}

fn read_operation(v: Val) -> Option<Operation> {
    match &*v.str()? {
        "CREATE" => Some(Operation::Create),
        "UPDATE" => Some(Operation::Update),
        "DELETE" => Some(Operation::Delete),
        "CONNECT" => Some(Operation::Connect),
        _ => None,
    }
}

fn read_types<'a>(v: Val<'_, 'a>) -> Option<Types<'a>> {
    let mut t = Types::default();
    read_struct(v, &mut |k, v| {
        match k {
            "apiVersion" => t.api_version = opt(v, str)?,
            "kind" => t.kind = opt(v, str)?,
            _ => {}
        }
        Some(())
    })?;
    Some(t)
}

fn read_object<'a>(v: Val<'_, 'a>) -> Option<Object<'a>> {
    let mut o = Object::default();
    let (mut metadata, mut spec) = (false, false);
    read_struct(v, &mut |k, v| {
        match k {
            "apiVersion" => o.api_version = opt(v, str)?,
            "kind" => o.kind = opt(v, str)?,
            "metadata" => (o.metadata, metadata) = (read_meta(v)?, true),
            "spec" => (o.spec, spec) = (read_spec(v)?, true),
            _ => {}
        }
        Some(())
    })?;
    (metadata && spec).then_some(o)
}

fn read_meta<'a>(v: Val<'_, 'a>) -> Option<Meta<'a>> {
    let mut m = Meta::default();
    read_struct(v, &mut |k, v| {
        match k {
            "name" => m.name = str(v)?,
            "labels" => m.labels = opt(v, string_pairs)?,
            "annotations" => m.annotations = opt(v, string_pairs)?,
            "deletionTimestamp" => m.deletion_timestamp = !v.is_null(),
            _ => {}
        }
        Some(())
    })?;
    Some(m)
}

fn read_spec<'a>(v: Val<'_, 'a>) -> Option<Spec<'a>> {
    let mut s = Spec::default();
    let mut template = false;
    read_struct(v, &mut |k, v| {
        match k {
            "replicas" => s.replicas = opt(v, |v| v.int())?,
            "strategy" => s.strategy_type = opt(v, read_strategy_type)?.flatten(),
            "template" => (s.template, template) = (read_template(v)?, true),
            _ => {}
        }
        Some(())
    })?;
    template.then_some(s)
}

/// A Deployment strategy's `type`.
fn read_strategy_type<'a>(v: Val<'_, 'a>) -> Option<Option<Str<'a>>> {
    let mut t = None;
    read_struct(v, &mut |k, v| {
        if k == "type" {
            t = opt(v, str)?;
        }
        Some(())
    })?;
    Some(t)
}

fn read_template<'a>(v: Val<'_, 'a>) -> Option<Template<'a>> {
    let mut t = Template::default();
    read_struct(v, &mut |k, v| {
        match k {
            "metadata" => t.metadata = opt(v, read_template_meta)?,
            "spec" => t.spec = opt(v, read_pod)?,
            _ => {}
        }
        Some(())
    })?;
    Some(t)
}

fn read_template_meta<'a>(v: Val<'_, 'a>) -> Option<TemplateMeta<'a>> {
    let mut t = TemplateMeta::default();
    t.rest = read_members(v, &mut |k, v| {
        match k {
            "labels" => t.labels = opt(v, unique_pairs)?,
            "annotations" => t.annotations = opt(v, unique_pairs)?,
            _ => return Some(false),
        }
        Some(true)
    })?;
    Some(t)
}

fn read_pod<'a>(v: Val<'_, 'a>) -> Option<Pod<'a>> {
    let mut p = Pod::default();
    p.rest = read_members(v, &mut |k, v| {
        match k {
            "containers" => p.containers = opt(v, |v| list(v, read_container))?.unwrap_or_default(),
            "initContainers" => p.init_containers = opt(v, |v| list(v, read_init))?,
            "volumes" => p.volumes = opt(v, |v| list(v, read_volume))?,
            "securityContext" => p.security_context = security_context(v)?,
            "hostNetwork" => p.host[0] = opt(v, |v| v.bool())?,
            "hostPID" => p.host[1] = opt(v, |v| v.bool())?,
            "hostIPC" => p.host[2] = opt(v, |v| v.bool())?,
            // Not modelled (and not in a Deployment's template as kube-apiserver stores it).
            "ephemeralContainers" => return None,
            _ => return Some(false),
        }
        Some(true)
    })?;
    Some(p)
}

fn read_container<'a>(v: Val<'_, 'a>) -> Option<Ctr<'a>> {
    let mut c = Ctr::default();
    c.rest = read_members(v, &mut |k, v| {
        match k {
            "name" => c.name = str(v)?,
            "image" => c.image = opt(v, str)?,
            "imagePullPolicy" => c.image_pull_policy = opt(v, str)?,
            "workingDir" => c.working_dir = opt(v, str)?,
            "securityContext" => c.security_context = security_context(v)?,
            "env" => c.env = opt(v, |v| list(v, read_env))?,
            "envFrom" => c.env_from = opt(v, |v| Some(Raw(v.raw())))?,
            "volumeMounts" => c.volume_mounts = opt(v, |v| list(v, read_mount))?,
            "ports" => c.ports = opt(v, |v| list(v, read_port))?,
            _ => return Some(false),
        }
        Some(true)
    })?;
    Some(c)
}

fn read_init<'a>(v: Val<'_, 'a>) -> Option<Init<'a>> {
    let mut init = Init { raw: Raw(v.raw()), at: v.index(), ..Init::default() };
    let mut named = false;
    read_struct(v, &mut |k, v| {
        if k == "name" {
            (init.name, named) = (str(v)?, true);
        }
        Some(())
    })?;
    named.then_some(init)
}

fn read_env<'a>(v: Val<'_, 'a>) -> Option<Env<'a>> {
    let mut e = Env::default();
    e.rest = read_members(v, &mut |k, v| {
        match k {
            "name" => e.name = str(v)?,
            "value" => e.value = opt(v, str)?,
            "valueFrom" => e.value_from = opt(v, |v| Some(Raw(v.raw())))?,
            _ => return Some(false),
        }
        Some(true)
    })?;
    Some(e)
}

fn read_mount<'a>(v: Val<'_, 'a>) -> Option<Mount<'a>> {
    let mut m = Mount::default();
    m.rest = read_members(v, &mut |k, v| {
        match k {
            "name" => m.name = str(v)?,
            "mountPath" => m.mount_path = str(v)?,
            "subPath" => m.sub_path = opt(v, str)?,
            "readOnly" => m.read_only = opt(v, |v| v.bool())?,
            _ => return Some(false),
        }
        Some(true)
    })?;
    Some(m)
}

fn read_port<'a>(v: Val<'_, 'a>) -> Option<Port<'a>> {
    let mut p = Port::default();
    p.rest = read_members(v, &mut |k, v| {
        match k {
            "containerPort" => p.container_port = v.int()?,
            "hostPort" => p.host_port = opt(v, |v| v.int())?,
            _ => return Some(false),
        }
        Some(true)
    })?;
    Some(p)
}

fn read_volume<'a>(v: Val<'_, 'a>) -> Option<Vol<'a>> {
    let mut vol = Vol { at: v.index(), ..Vol::default() };
    vol.rest = read_members(v, &mut |k, v| {
        if k != "name" {
            return Some(false);
        }
        vol.name = str(v)?;
        Some(true)
    })?;
    Some(vol)
}

// ---- the rules and injection, on the model ----

impl Object<'_> {
    /// Whether any rule denies the object before injection (what
    /// [`validate::before_injection`] checks, read from this model). A volume
    /// field that is `null` or unknown counts as a source type here, which
    /// only sends the request to the typed review.
    fn denies(&self, settings: &Settings, cfg: &Config) -> bool {
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
        let annotations = self.spec.template.metadata.as_ref().and_then(|m| m.annotations.as_deref());
        validate::check_apparmor_annotations(annotations.into_iter().flatten().map(|(k, v)| (&*k.0, &*v.0)), &mut v);
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
        // claworc's own in a template this release injected are compared
        // whole with what injection makes, which these rules allow.
        let this_release = value_of(annotations, ANNOTATION_INJECTED) == Some(&*cfg.version);
        for init in pod.init_containers.iter().flatten() {
            if this_release && inject::is_claworc_container(&init.name.0) {
                continue;
            }
            let Some(c) = init.typed() else { return true };
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
        let home = target.home();
        let ids = inject::session_ids(security_context, target.security_context.as_ref(), s);
        let git = inject::git_ssh_command(s);
        let known_hosts = written::known_hosts_mounts(s);

        let mut out = Vec::with_capacity(8 * 1024);
        out.extend_from_slice(br#"[{"op":"replace","path":"/spec/template","value":"#);
        let mut t = Obj::new(&mut out);
        t.key("metadata");
        let mut meta = Obj::new(t.out);
        let (labels, annotations, rest) = match &self.metadata {
            Some(m) => (m.labels.as_deref(), m.annotations.as_deref(), &m.rest[..]),
            None => Default::default(),
        };
        let known_hosts_data = written::known_hosts_data(&s.known_hosts);
        meta.key("labels");
        write_marked(meta.out, labels, &inject::template_labels(Some(name), s));
        meta.key("annotations");
        write_marked(meta.out, annotations, &inject::template_annotations(cfg, &known_hosts_data.value));
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
        written::write_sidecar(list.next(), s.ssh_port, ids, |out| {
            target.write_from_workload(out, s, &home, &known_hosts)
        });
        for init in pod.init_containers.iter().flatten().filter(|c| !inject::is_claworc_container(&c.name.0)) {
            let _ = extend(list.next(), &injected_init(init.typed()?, s));
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
            Some(kept) => spec.written("securityContext", kept.text()),
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
    fn is_injected(&self, doc: &Doc, name: &str, s: &Settings, cfg: &Config) -> Option<bool> {
        let (Some(meta), Some(pod)) = (&self.metadata, &self.spec) else { return Some(false) };
        let (Some(labels), Some(annotations)) = (&meta.labels, &meta.annotations) else { return Some(false) };
        let known_hosts_data = written::known_hosts_data(&s.known_hosts);
        if !is_marked(labels, &inject::template_labels(Some(name), s))
            || !is_marked(annotations, &inject::template_annotations(cfg, &known_hosts_data.value))
        {
            return Some(false);
        }
        let mut security_context = pod.security_context.clone();
        inject::harden_pod(&mut security_context, (s.run_as_user, s.run_as_group));
        if security_context != pod.security_context {
            return Some(false);
        }
        let git = inject::git_ssh_command(s);
        let known_hosts = written::known_hosts_mounts(s);
        if !pod.containers.iter().all(|c| c.is_injected_workload(&git, &known_hosts.value)) {
            return Some(false);
        }
        let target = &pod.containers[inject::target_index_of(pod.containers.iter().map(|c| &*c.name.0), s)?];
        let home = target.home();
        let ids = inject::session_ids(security_context.as_ref(), target.security_context.as_ref(), s);
        // [installer, sidecar, the user's init containers…], each as injection makes it.
        let init = pod.init_containers.as_deref().unwrap_or_default();
        let [installer, sidecar, user @ ..] = init else { return Some(false) };
        let want_installer = written::installer(cfg, ids);
        if !scan::same(doc.get(installer.at)?, want_installer.json.doc().root()) {
            return Some(false);
        }
        // The sidecar: its fixed fields, and those drawn from the workload.
        let fixed = written::sidecar_fixed(s.ssh_port, ids);
        let mut from_workload = Vec::with_capacity(2048);
        target.write_from_workload(&mut from_workload, s, &home, &known_hosts);
        let from_workload = Doc::parse(std::str::from_utf8(&from_workload).ok()?)?;
        if !scan::same_as_union(doc.get(sidecar.at)?, &[fixed.json.doc().root(), from_workload.root()]) {
            return Some(false);
        }
        for init in user {
            let c = init.typed()?;
            if inject::is_claworc_container(&c.name) || injected_init(c.clone(), s) != c {
                return Some(false);
            }
        }
        // [the user's volumes…, claworc's…, the home emptyDir if it needs one].
        let mut extra = b"[".to_vec();
        written::write_keys_volume(&mut extra, &s.ssh_secret);
        if home == Home::EmptyDir {
            extra.push(b',');
            let _ = extend(&mut extra, &inject::home_volume());
        }
        extra.push(b']');
        let extra = Doc::parse(std::str::from_utf8(&extra).ok()?)?;
        let fixed = written::claworc_volumes_fixed(s.known_hosts_configmap.as_deref());
        let fixed = fixed.json.doc();
        let mut extra_volumes = extra.root().children();
        let keys = extra_volumes.next()?;
        let want: Vec<Val> = std::iter::once(keys).chain(fixed.root().children()).chain(extra_volumes).collect();
        let volumes = pod.volumes.as_deref().unwrap_or_default();
        let Some(users) = volumes.len().checked_sub(want.len()) else { return Some(false) };
        let (user, claworc) = volumes.split_at(users);
        if user.iter().any(|v| inject::VOLUMES.contains(&&*v.name.0)) {
            return Some(false);
        }
        for (have, want) in claworc.iter().zip(want) {
            if !scan::same(doc.get(have.at)?, want) {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// A template's labels or annotations with injection's `marks` set: the
/// others as given, then the marks (see [`inject::mark_template`]).
fn write_marked(out: &mut Vec<u8>, given: Option<&[(Str, Str)]>, marks: &[(&str, &str)]) {
    let mut o = Obj::new(out);
    for (key, value) in given.into_iter().flatten().filter(|(k, _)| !marks.iter().any(|(m, _)| k.0 == *m)) {
        o.str(&key.0, &value.0);
    }
    for (key, value) in marks {
        o.str(key, value);
    }
    o.end();
}

/// Whether setting `marks` would leave these labels or annotations (read
/// without a key given twice) as they are.
fn is_marked(given: &[(Str, Str)], marks: &[(&str, &str)]) -> bool {
    marks.iter().all(|(key, value)| given.iter().any(|(k, v)| k.0 == *key && v.0 == *value))
}

/// The value given for `key` among labels or annotations.
fn value_of<'p>(given: Option<&'p [(Str, Str)]>, key: &str) -> Option<&'p str> {
    given?.iter().rev().find(|(k, _)| k.0 == key).map(|(_, v)| &*v.0)
}

/// A user's init container as injection leaves it (see `inject::set_known_hosts`).
fn injected_init(mut c: Container, s: &Settings) -> Container {
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
    fn write_injected(&self, out: &mut Vec<u8>, git: &str, known_hosts: &Part<Vec<VolumeMount>>) {
        let mut o = Obj::new(out);
        o.str("name", &self.name.0);
        o.opt_str("image", &self.image);
        o.opt_str("imagePullPolicy", &self.image_pull_policy);
        o.opt_str("workingDir", &self.working_dir);
        if self.security_context.is_none() {
            o.written("securityContext", written::hardened_container().text());
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
        let mut var = Obj::new(list.next());
        var.str("name", ENV_GIT_SSH_COMMAND);
        var.str("value", git);
        var.end();
        list.end();
        o.raw("envFrom", self.env_from);
        o.key("volumeMounts");
        let mut list = List::new(o.out);
        let kept = |m: &&Mount| m.name.0 != VOLUME_KNOWN_HOSTS && m.name.0 != VOLUME_KNOWN_HOSTS_USER;
        for m in self.volume_mounts.iter().flatten().filter(kept) {
            m.write(list.next());
        }
        list.elements(written::elements(known_hosts));
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

    /// [`inject::home`] of this container.
    fn home(&self) -> Home {
        let env_home = self.env.iter().flatten().find(|e| e.name.0 == "HOME" && e.value_from.is_none());
        let shared: Vec<SharedMount> = self
            .shared_mounts()
            .map(|m| SharedMount { name: &m.name.0, path: &m.mount_path.0, sub_path: m.sub_path.is_some() })
            .collect();
        inject::home_of(env_home.and_then(|e| e.value.as_ref()).map(|v| &*v.0), &shared)
    }

    /// [`inject::shared_mounts`] of this container.
    fn shared_mounts(&self) -> impl Iterator<Item = &Mount<'_>> {
        self.volume_mounts.iter().flatten().filter(|m| inject::is_shared(&m.name.0, &m.mount_path.0))
    }

    /// [`inject::sidecar_from_workload`]'s text, written from this container
    /// as the target: its fields as they came, the settings' parts as
    /// [`written`] keeps them (`known_hosts`: [`written::known_hosts_mounts`]).
    fn write_from_workload(&self, out: &mut Vec<u8>, s: &Settings, home: &Home, known_hosts: &Part<Vec<VolumeMount>>) {
        let mut o = Obj::new(out);
        o.opt_str("image", &self.image);
        let (image, policy) = (self.image.as_ref().map(|v| &*v.0), self.image_pull_policy.as_ref().map(|v| &*v.0));
        o.str("imagePullPolicy", &inject::pull_policy(image, policy));
        o.opt_str("workingDir", &self.working_dir);
        o.key("env");
        let mut list = List::new(o.out);
        for e in self.env.iter().flatten().filter(|e| !inject::SIDECAR_ENV.contains(&&*e.name.0)) {
            e.write(list.next());
        }
        list.elements(written::elements(&written::sidecar_settings_env(s)));
        let mut var = Obj::new(list.next());
        var.str("name", "HOME");
        var.str("value", home.path());
        var.end();
        list.end();
        o.raw("envFrom", self.env_from);
        o.key("volumeMounts");
        let mut list = List::new(o.out);
        list.elements(written::elements(&written::sidecar_own_mounts()));
        for m in self.shared_mounts() {
            m.write(list.next());
        }
        if *home == Home::EmptyDir {
            let _ = extend(list.next(), &inject::home_mount());
        }
        list.elements(written::elements(known_hosts));
        list.end();
        o.end();
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

    /// Elements already written as JSON (comma-separated, without brackets).
    fn elements(&mut self, text: &[u8]) {
        if !text.is_empty() {
            self.next().extend_from_slice(text);
        }
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

    #[inline(never)]
    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        write_str(self.out, key);
        self.out.push(b':');
    }

    #[inline(never)]
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
            self.out.extend_from_slice(v.0.as_bytes());
        }
    }

    fn rest(&mut self, rest: &[(Str, Raw)]) {
        for (key, value) in rest {
            self.key(&key.0);
            self.out.extend_from_slice(value.0.as_bytes());
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}
