//! The handlers the benchmarks compare the webhook with, one copy for both
//! (`benches/cost.rs` in-process, `benches/https.rs` behind the same server).

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

// The shipped binary's allocator, configured as there, for every handler
// compared here (the webhook's, the floor and the kube-rs example alike).
claworc_allocator::global_allocator!();

/// The floor: parse `AdmissionReview<DynamicObject>`, allow.
pub fn floor(body: &[u8]) -> Vec<u8> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
    let req: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
    serde_json::to_vec(&AdmissionResponse::from(&req).into_review()).unwrap()
}

/// What kube-rs's `examples/admission_controller.rs` does for each request: the
/// floor plus one label added as a JSONPatch (`with_patch`), answered `into_review()`.
pub fn kube_rs_example(body: &[u8]) -> Vec<u8> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
    let req: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
    let mut res = AdmissionResponse::from(&req);
    if let Some(obj) = &req.object {
        let mut ops = Vec::new();
        if obj.metadata.labels.is_none() {
            ops.push(serde_json::json!({"op": "add", "path": "/metadata/labels", "value": {}}));
        }
        ops.push(serde_json::json!({"op": "add", "path": "/metadata/labels/admission", "value": "modified-by-admission-controller"}));
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        res = res.with_patch(patch).unwrap();
    }
    serde_json::to_vec(&res.into_review()).unwrap()
}
