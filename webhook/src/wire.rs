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
const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// Parses an `admission.k8s.io/v1` AdmissionReview carrying a Deployment.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<Deployment>, String> {
    // kube-core's `AdmissionReview` flattens its `TypeMeta`, which makes serde
    // buffer the whole review (the Deployments included) in a generic tree and
    // parse it a second time from there: this struct reads it in one pass.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Review {
        api_version: Option<String>,
        kind: Option<String>,
        request: Option<AdmissionRequest<Deployment>>,
    }
    match serde_json::from_slice::<Review>(body) {
        Ok(review) => {
            check_types(review.api_version.as_deref(), review.kind.as_deref())?;
            let mut request = review.request.ok_or_else(|| "the AdmissionReview has no \"request\"".to_string())?;
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
    use base64::Engine as _;
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
    let mut out = Vec::with_capacity(512 + extra);
    serde_json::to_writer(&mut out, &Review { api_version, kind, response: &response })?;
    if let Some(patch) = patch {
        // `out` is `{…,"response":{…}}`: the patch goes before the two closing braces.
        debug_assert!(out.ends_with(b"}}"));
        out.truncate(out.len() - 2);
        out.extend_from_slice(br#","patch":""#);
        let start = out.len();
        let len = base64::encoded_len(patch.len(), true).ok_or_else(|| serde::ser::Error::custom("patch too large"))?;
        out.resize(start + len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(&patch, &mut out[start..])
            .map_err(|e| serde::ser::Error::custom(format!("base64: {e}")))?;
        out.truncate(start + written);
        out.extend_from_slice(br#""}}"#);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
