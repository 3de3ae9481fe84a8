//! The `admission.k8s.io/v1` wire format, apart from the server that moves the bytes:
//! parsing an AdmissionReview (a wrong apiVersion or kind is named as such before any
//! complaint about the schema) and encoding the answer with the kube-rs workaround
//! for the patch (kube-rs/kube#1781: written as base64, as the apiserver reads it).

use k8s_openapi::api::apps::v1::Deployment;
use kube::core::TypeMeta;
#[cfg(test)]
use kube::core::admission::AdmissionReview;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

/// The `apiVersion` and `kind` the webhook answers.
pub(crate) const API_VERSION: &str = "admission.k8s.io/v1";
pub(crate) const KIND: &str = "AdmissionReview";

/// Parses an `admission.k8s.io/v1` AdmissionReview carrying a Deployment. The
/// old object of an UPDATE is read only as far as telling whether it is an
/// instance needs (see `OldObject`).
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<Deployment>, String> {
    // kube-core's `AdmissionReview` flattens its `TypeMeta`, which makes serde
    // buffer the whole review (the Deployments included) in a generic tree and
    // parse it a second time from there: this struct reads it in one pass.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Review {
        api_version: Option<String>,
        kind: Option<String>,
        request: Option<Request>,
    }
    // The body's UTF-8 is checked once, in bulk: read from bytes, serde_json
    // checks each string again (a tenth of a validation's instructions).
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<Review>(text),
        Err(_) => serde_json::from_slice::<Review>(body),
    };
    match parsed {
        Ok(review) => {
            check_types(review.api_version.as_deref(), review.kind.as_deref())?;
            let mut request: AdmissionRequest<Deployment> =
                review.request.ok_or_else(|| "the AdmissionReview has no \"request\"".to_string())?.into();
            if request.uid.is_empty() {
                return Err("request.uid is empty".into());
            }
            request.types = TypeMeta { api_version: API_VERSION.into(), kind: KIND.into() };
            Ok(request)
        }
        Err(e) => {
            // A wrong apiVersion or kind deserves that answer rather than a
            // complaint about some field of another schema.
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Types {
                api_version: Option<String>,
                kind: Option<String>,
            }
            if let Ok(types) = serde_json::from_slice::<Types>(body) {
                check_types(types.api_version.as_deref(), types.kind.as_deref())?;
            }
            Err(describe_json_error(&e))
        }
    }
}

/// kube-core's `AdmissionRequest`, read as its own `Deserialize` reads it but
/// for what the webhook never reads: `options` (a generic JSON tree) and the
/// Deployments' `metadata.managedFields` and `status` are skipped, not built.
/// On a real request (`kubectl apply` writes managedFields as large as the
/// object) that is most of the metadata.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: kube::core::GroupVersionKind,
    resource: kube::core::GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<kube::core::GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<kube::core::GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    #[serde(default)]
    object: Option<Object>,
    #[serde(default)]
    old_object: Option<OldObject>,
    #[serde(default)]
    dry_run: bool,
}

impl From<Request> for AdmissionRequest<Deployment> {
    fn from(r: Request) -> Self {
        AdmissionRequest {
            types: TypeMeta::default(),
            uid: r.uid,
            kind: r.kind,
            resource: r.resource,
            sub_resource: r.sub_resource,
            request_kind: r.request_kind,
            request_resource: r.request_resource,
            request_sub_resource: r.request_sub_resource,
            name: r.name,
            namespace: r.namespace,
            operation: r.operation,
            user_info: r.user_info,
            object: r.object.map(Object::into_deployment),
            old_object: r.old_object.map(OldObject::into_deployment),
            dry_run: r.dry_run,
            options: None,
        }
    }
}

/// A Deployment as k8s-openapi's `Deserialize` reads it (the same checks of
/// `apiVersion` and `kind`, the same defaults), without `status` and
/// `metadata.managedFields` (unknown fields are skipped, as there).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    #[serde(default, deserialize_with = "deployment_api_version")]
    api_version: (),
    #[serde(default, deserialize_with = "deployment_kind")]
    kind: (),
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    spec: Option<k8s_openapi::api::apps::v1::DeploymentSpec>,
}

impl Object {
    fn into_deployment(self) -> Deployment {
        let ((), ()) = (self.api_version, self.kind);
        Deployment {
            metadata: self.metadata.map(Metadata::into_object_meta).unwrap_or_default(),
            spec: self.spec.unwrap_or_default(),
            status: None,
        }
    }
}

/// The old object of an UPDATE, read only as far as
/// [`is_instance`](claworc_contract::instance::is_instance) looks, which is all
/// that the review reads of it (an UPDATE is judged when the old or the new
/// object is an instance): the Deployment's labels, the pod template's labels
/// and annotations, and the names of its containers and volumes. On an UPDATE
/// the old object is as large as the new one, and reading it in full cost as
/// much as the rest of the request.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OldObject {
    #[serde(default, deserialize_with = "deployment_api_version")]
    api_version: (),
    #[serde(default, deserialize_with = "deployment_kind")]
    kind: (),
    #[serde(default)]
    metadata: Option<OldMetadata>,
    #[serde(default)]
    spec: Option<OldSpec>,
}

#[derive(serde::Deserialize)]
struct OldMetadata {
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
struct OldSpec {
    #[serde(default)]
    template: Option<OldTemplate>,
}

#[derive(serde::Deserialize)]
struct OldTemplate {
    #[serde(default)]
    metadata: Option<OldTemplateMetadata>,
    #[serde(default)]
    spec: Option<OldPod>,
}

#[derive(serde::Deserialize)]
struct OldTemplateMetadata {
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OldPod {
    #[serde(default)]
    containers: Vec<Named>,
    #[serde(default)]
    init_containers: Option<Vec<Named>>,
    #[serde(default)]
    ephemeral_containers: Option<Vec<Named>>,
    #[serde(default)]
    volumes: Option<Vec<Named>>,
}

#[derive(serde::Deserialize)]
struct Named {
    #[serde(default)]
    name: String,
}

impl OldObject {
    /// A Deployment holding only what was read: enough for `is_instance`, and
    /// for nothing else.
    fn into_deployment(self) -> Deployment {
        use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec, PodTemplateSpec, Volume};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let ((), ()) = (self.api_version, self.kind);
        let template = self.spec.and_then(|s| s.template);
        let container = |n: Named| Container { name: n.name, ..Default::default() };
        let pod = |p: OldPod| PodSpec {
            containers: p.containers.into_iter().map(container).collect(),
            init_containers: p.init_containers.map(|c| c.into_iter().map(container).collect()),
            ephemeral_containers: p
                .ephemeral_containers
                .map(|c| c.into_iter().map(|n| EphemeralContainer { name: n.name, ..Default::default() }).collect()),
            volumes: p.volumes.map(|v| v.into_iter().map(|n| Volume { name: n.name, ..Default::default() }).collect()),
            ..Default::default()
        };
        let template = template.map(|t| PodTemplateSpec {
            metadata: t.metadata.map(|m| ObjectMeta {
                labels: m.labels,
                annotations: m.annotations,
                ..Default::default()
            }),
            spec: t.spec.map(pod),
        });
        Deployment {
            metadata: ObjectMeta { labels: self.metadata.and_then(|m| m.labels), ..Default::default() },
            spec: k8s_openapi::api::apps::v1::DeploymentSpec {
                template: template.unwrap_or_default(),
                ..Default::default()
            },
            status: None,
        }
    }
}

fn expect_str<'de, D: serde::Deserializer<'de>>(d: D, want: &'static str) -> Result<(), D::Error> {
    use serde::Deserialize as _;
    let got = std::borrow::Cow::<str>::deserialize(d)?;
    if got != want {
        return Err(serde::de::Error::invalid_value(serde::de::Unexpected::Str(&got), &want));
    }
    Ok(())
}

fn deployment_api_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    expect_str(d, <Deployment as k8s_openapi::Resource>::API_VERSION)
}

fn deployment_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    expect_str(d, <Deployment as k8s_openapi::Resource>::KIND)
}

/// `ObjectMeta` without `managedFields` (skipped unread, like any other key not listed).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    creation_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    #[serde(default)]
    deletion_grace_period_seconds: Option<i64>,
    #[serde(default)]
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    self_link: Option<String>,
    #[serde(default)]
    uid: Option<String>,
}

impl Metadata {
    fn into_object_meta(self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            annotations: self.annotations,
            creation_timestamp: self.creation_timestamp,
            deletion_grace_period_seconds: self.deletion_grace_period_seconds,
            deletion_timestamp: self.deletion_timestamp,
            finalizers: self.finalizers,
            generate_name: self.generate_name,
            generation: self.generation,
            labels: self.labels,
            managed_fields: None,
            name: self.name,
            namespace: self.namespace,
            owner_references: self.owner_references,
            resource_version: self.resource_version,
            self_link: self.self_link,
            uid: self.uid,
        }
    }
}

fn check_types(api_version: Option<&str>, kind: Option<&str>) -> Result<(), String> {
    if api_version == Some(API_VERSION) && kind == Some(KIND) {
        return Ok(());
    }
    Err(format!(
        "expected apiVersion {API_VERSION:?} and kind {KIND:?}, got apiVersion {:?} and kind {:?}",
        api_version.unwrap_or(""),
        kind.unwrap_or("")
    ))
}

fn describe_json_error(e: &serde_json::Error) -> String {
    format!("malformed AdmissionReview: {e}")
}

pub(crate) fn operation(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// `response.into_review()` as JSON, with the patch base64-encoded as the
/// apiserver requires (Go `[]byte`). kube-core serializes `Vec<u8>` as an array
/// of numbers, which the apiserver refuses (kube-rs/kube#1781).
///
/// The base64 text is written straight into the output: it never needs JSON
/// escaping, and serializing it as a string (scanned byte by byte for escapes)
/// cost a quarter of a mutation's CPU time.
pub fn review_json(mut response: AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Review<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        response: &'a AdmissionResponse,
    }
    let patch = response.patch.take();
    let (api_version, kind) = (&response.types.api_version, &response.types.kind);
    let extra = patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4 + 16);
    let mut out = crate::json::to_vec(&Review { api_version, kind, response: &response }, 512 + extra)?;
    if let Some(patch) = patch {
        // `out` is `{…,"response":{…}}`: the patch goes before the two closing braces.
        debug_assert!(out.ends_with(b"}}"));
        out.truncate(out.len() - 2);
        out.extend_from_slice(br#","patch":""#);
        encode_base64(&mut out, &patch);
        out.extend_from_slice(br#""}}"#);
    }
    Ok(out)
}

/// What [`review_json`] writes for an allowed response with this uid, JSONPatch
/// and warnings, written directly (for [`crate::partial`]: kube-core's
/// response, its `Status` and their serializers are code each request runs).
pub fn allowed_review(uid: &str, patch: Option<&[u8]>, warnings: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + patch.map_or(0, |p| p.len().div_ceil(3) * 4));
    out.extend_from_slice(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#);
    crate::json::write_str(&mut out, uid);
    out.extend_from_slice(br#","allowed":true,"status":{}"#);
    if patch.is_some() {
        out.extend_from_slice(br#","patchType":"JSONPatch""#);
    }
    if !warnings.is_empty() {
        out.extend_from_slice(br#","warnings":["#);
        for (i, w) in warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::json::write_str(&mut out, w);
        }
        out.push(b']');
    }
    if let Some(patch) = patch {
        out.extend_from_slice(br#","patch":""#);
        encode_base64(&mut out, patch);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
    out
}

/// Appends `data` in standard base64 with padding.
fn encode_base64(out: &mut Vec<u8>, data: &[u8]) {
    base64_simd::STANDARD.encode_append(data, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allowed answer written directly is, byte for byte, kube-core's
    /// response as [`review_json`] writes it.
    #[test]
    fn the_allowed_review_is_kube_cores() {
        let warnings = ["one \"quoted\" warning".to_string(), "another\n".to_string()];
        for uid in ["6f0c7a6e-3f5e-4a0b-9d6c-1c9f1c2b7a11", "an \"odd\" uid\u{1}"] {
            for patch in [None, Some(&b"[{\"op\":\"add\",\"path\":\"/a\",\"value\":1}]"[..])] {
                for warnings in [&[][..], &warnings[..1], &warnings[..]] {
                    let mut response = AdmissionResponse::invalid("");
                    response.uid = uid.into();
                    response.allowed = true;
                    response.result = Default::default();
                    if let Some(patch) = patch {
                        response = response.with_patch(serde_json::from_slice(patch).unwrap()).unwrap();
                    }
                    if !warnings.is_empty() {
                        response.warnings = Some(warnings.to_vec());
                    }
                    let want = String::from_utf8(review_json(response).unwrap()).unwrap();
                    let have = String::from_utf8(allowed_review(uid, patch, warnings)).unwrap();
                    assert_eq!(have, want);
                }
            }
        }
    }

    #[test]
    fn refuses_wrong_kinds_and_missing_parts() {
        assert!(parse_review(b"{").unwrap_err().contains("malformed"));
        assert!(parse_review(br#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap_err().contains("expected apiVersion"));
        assert!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#)
                .unwrap_err()
                .contains("expected apiVersion")
        );
        assert!(
            parse_review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
                .unwrap_err()
                .contains("no \"request\"")
        );
        assert!(parse_review(b"[]").is_err());
        assert!(parse_review(b"null").is_err());
    }

    /// The old object of an UPDATE is read only as far as `is_instance` looks:
    /// with and without each claworc marker, it answers as the whole object does.
    #[test]
    fn the_old_object_answers_is_instance_as_the_whole_one() {
        use claworc_contract::instance::is_instance;
        use serde_json::{Value, json};
        let fixture = |name: &str| -> Value {
            let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let plain = fixture("admission-not-opted-in.json")["request"]["object"].clone();
        let opted_in = fixture("admission-opted-in.json");
        let injected = {
            let req = parse_review(&serde_json::to_vec(&opted_in).unwrap()).unwrap();
            let res = crate::review::mutate(&req, &crate::inject::Config::default());
            let patch: json_patch::Patch = serde_json::from_slice(res.patch.as_ref().unwrap()).unwrap();
            let mut object = opted_in["request"]["object"].clone();
            json_patch::patch(&mut object, &patch).unwrap();
            object
        };
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut o = plain.clone();
            edit(&mut o);
            o
        };
        let push = |list: &mut Value, item: Value| {
            if list.is_null() {
                *list = json!([]);
            }
            list.as_array_mut().unwrap().push(item);
        };
        let cases = [
            (plain.clone(), false),
            (opted_in["request"]["object"].clone(), true),
            (fixture("admission-kubectl-apply.json")["request"]["object"].clone(), true),
            (injected, true),
            (with(&|o| o["metadata"]["labels"]["claworc.io/ssh"] = json!("disabled")), true),
            (with(&|o| o["spec"]["template"]["metadata"]["labels"]["claworc.io/instance"] = json!("x")), true),
            (with(&|o| o["spec"]["template"]["metadata"]["annotations"]["claworc.io/injected"] = json!("0.1.0")), true),
            (with(&|o| push(&mut o["spec"]["template"]["spec"]["containers"], json!({"name": "claworc-sshd"}))), true),
            (
                with(&|o| push(&mut o["spec"]["template"]["spec"]["initContainers"], json!({"name": "claworc-sshd"}))),
                true,
            ),
            (
                with(&|o| {
                    push(
                        &mut o["spec"]["template"]["spec"]["ephemeralContainers"],
                        json!({"name": "claworc-sshd-install"}),
                    )
                }),
                true,
            ),
            (
                with(&|o| {
                    push(&mut o["spec"]["template"]["spec"]["volumes"], json!({"name": "claworc-run", "emptyDir": {}}))
                }),
                true,
            ),
            (
                with(&|o| push(&mut o["spec"]["template"]["spec"]["volumes"], json!({"name": "data", "emptyDir": {}}))),
                false,
            ),
            (with(&|o| o["metadata"]["annotations"]["claworc.io/ssh-port"] = json!("2222")), false),
        ];
        for (i, (old, instance)) in cases.into_iter().enumerate() {
            let whole: Deployment = serde_json::from_value(old.clone()).unwrap();
            let mut review = fixture("admission-not-opted-in.json");
            review["request"]["operation"] = json!("UPDATE");
            review["request"]["oldObject"] = old;
            let req = parse_review(&serde_json::to_vec(&review).unwrap()).unwrap();
            let read = req.old_object.expect("the old object");
            assert_eq!(is_instance(&whole), instance, "case {i}: the whole object");
            assert_eq!(is_instance(&read), instance, "case {i}: the old object as read");
        }
        // Its apiVersion and kind are still checked.
        let mut review = fixture("admission-not-opted-in.json");
        review["request"]["oldObject"] = json!({"apiVersion": "v1", "kind": "Pod"});
        assert!(parse_review(&serde_json::to_vec(&review).unwrap()).unwrap_err().contains("malformed"));
    }

    #[test]
    fn base64_as_the_standard_writes_it() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).cycle().take(1000).collect();
        for len in 0..data.len() {
            let mut ours = b"x".to_vec();
            encode_base64(&mut ours, &data[..len]);
            assert_eq!(ours[1..], *base64::engine::general_purpose::STANDARD.encode(&data[..len]).as_bytes(), "{len}");
        }
    }

    #[test]
    fn encodes_the_patch_in_base64() {
        let review: AdmissionReview<Deployment> = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "request": {
                "uid": "u1",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "operation": "CREATE", "userInfo": {}, "object": null, "oldObject": null
            }
        }))
        .unwrap();
        let req: AdmissionRequest<Deployment> = review.try_into().unwrap();
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::json!([{"op": "add", "path": "/a", "value": 1}])).unwrap();
        let res = AdmissionResponse::from(&req).with_patch(patch).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&review_json(res).unwrap()).unwrap();
        assert_eq!(json["response"]["patch"], "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d");
        assert_eq!(json["response"]["patchType"], "JSONPatch");
        assert_eq!(json["response"]["uid"], "u1");
        assert_eq!(json["apiVersion"], API_VERSION);
    }

    /// The base64 text is spliced into the serialized review: every length (with
    /// and without padding), with warnings and without a patch, the answer is
    /// JSON and the patch decodes to the bytes given.
    #[test]
    fn the_spliced_patch_decodes_to_the_bytes_given() {
        use base64::Engine as _;
        let review: AdmissionReview<Deployment> = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "request": {
                "uid": "u\"2", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "operation": "CREATE", "userInfo": {}, "object": null, "oldObject": null
            }
        }))
        .unwrap();
        let req: AdmissionRequest<Deployment> = review.try_into().unwrap();
        for len in [0, 1, 2, 3, 4, 5, 300] {
            let value = "é\"\n".repeat(len);
            let patch: json_patch::Patch =
                serde_json::from_value(serde_json::json!([{"op": "add", "path": "/a", "value": value}])).unwrap();
            let mut res = AdmissionResponse::from(&req).with_patch(patch).unwrap();
            res.warnings = Some(vec!["careful \"here\"".into()]);
            let sent = res.patch.clone().unwrap();
            let json: serde_json::Value = serde_json::from_slice(&review_json(res).unwrap()).unwrap();
            let text = json["response"]["patch"].as_str().unwrap();
            assert_eq!(base64::engine::general_purpose::STANDARD.decode(text).unwrap(), sent, "{len}");
            assert_eq!(json["response"]["warnings"][0], "careful \"here\"");
            assert_eq!(json["response"]["uid"], "u\"2");
        }
        let json: serde_json::Value =
            serde_json::from_slice(&review_json(AdmissionResponse::from(&req).deny("no")).unwrap()).unwrap();
        assert!(json["response"].get("patch").is_none() && json["response"]["allowed"] == false, "{json}");
    }
}
