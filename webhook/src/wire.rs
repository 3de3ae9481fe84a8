//! The `admission.k8s.io/v1` wire format, apart from the server that moves the bytes:
//! parsing an AdmissionReview (a wrong apiVersion or kind is named as such before any
//! complaint about the schema) and encoding the answer with the kube-rs workaround
//! for the patch (kube-rs/kube#1781: written as base64, as the apiserver reads it).

use k8s_openapi::api::apps::v1::Deployment;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

/// The `apiVersion` and `kind` the webhook answers.
const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// Parses an `admission.k8s.io/v1` AdmissionReview carrying a Deployment.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<Deployment>, String> {
    match serde_json::from_slice::<AdmissionReview<Deployment>>(body) {
        Ok(review) => {
            check_types(Some(&review.types.api_version), Some(&review.types.kind))?;
            let request: AdmissionRequest<Deployment> =
                review.try_into().map_err(|_| "the AdmissionReview has no \"request\"".to_string())?;
            if request.uid.is_empty() {
                return Err("request.uid is empty".into());
            }
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
pub fn review_json(mut response: AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Review<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        response: Answer<'a>,
    }
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        #[serde(flatten)]
        response: &'a AdmissionResponse,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<k8s_openapi::ByteString>,
    }
    let patch = response.patch.take().map(k8s_openapi::ByteString);
    let (api_version, kind) = (&response.types.api_version, &response.types.kind);
    serde_json::to_vec(&Review { api_version, kind, response: Answer { response: &response, patch } })
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
}
