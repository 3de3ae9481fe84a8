//! AdmissionRequest → AdmissionResponse, for `POST /mutate` and `POST /validate`.
//! Pure: dry-run requests are answered the same way, and nothing is written.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};

use crate::inject::{self, Config};
use crate::validate;

/// The mutating response: a JSONPatch that injects claworc into an opted-in
/// Deployment; no patch for one that is already injected or did not opt in;
/// a denial for what validation refuses anyway, before injection would hide it
/// (e.g. by setting `allowPrivilegeEscalation: false` over the user's `true`).
pub fn mutate(req: &AdmissionRequest<Deployment>, cfg: &Config) -> AdmissionResponse {
    let res = AdmissionResponse::from(req);
    let Some(d) = req.object.as_ref().filter(|d| inject::opted_in(d)) else {
        return res;
    };
    let refused = validate::before_injection(d).denials;
    let settings = match inject::settings(d) {
        Ok(s) if refused.is_empty() => s,
        _ => return res.deny(join(refused)),
    };
    let injected = inject::inject_template(d, &settings, cfg);
    if injected == d.spec.template {
        return res;
    }
    // Injection changes only the pod template, so the patch is one `replace` of
    // it: cheaper than diffing two JSON trees, and the same on every call.
    #[derive(serde::Serialize)]
    struct Replace<'a> {
        op: &'static str,
        path: &'static str,
        value: &'a PodTemplateSpec,
    }
    let replace = [Replace { op: "replace", path: "/spec/template", value: &injected }];
    // kube-core keeps `patchType` private: `with_patch` sets it, then the bytes are ours.
    match (serde_json::to_vec(&replace), res.with_patch(json_patch::Patch(Vec::new()))) {
        (Ok(patch), Ok(mut res)) => {
            res.patch = Some(patch);
            res
        }
        _ => AdmissionResponse::from(req).deny("claworc: internal error: the patch could not be serialized"),
    }
}

/// The validating response: denials joined into one message, warnings as
/// AdmissionResponse warnings (kubectl prints them).
pub fn validate(req: &AdmissionRequest<Deployment>, cfg: &Config) -> AdmissionResponse {
    let mut res = AdmissionResponse::from(req);
    let Some(d) = req.object.as_ref() else {
        return res;
    };
    let verdict = validate::validate(d, cfg);
    if !verdict.warnings.is_empty() {
        res.warnings = Some(verdict.warnings);
    }
    if verdict.denials.is_empty() { res } else { res.deny(join(verdict.denials)) }
}

fn join(messages: impl IntoIterator<Item = String>) -> String {
    let messages: Vec<String> = messages.into_iter().collect();
    format!("claworc: {}", messages.join("; "))
}

#[cfg(test)]
mod tests {
    use kube::core::admission::AdmissionReview;
    use serde_json::json;

    use super::*;
    use crate::inject::tests::{deployment, injected};

    fn request(d: &Deployment) -> AdmissionRequest<Deployment> {
        let review: AdmissionReview<Deployment> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "box", "namespace": "dev", "operation": "CREATE",
                "userInfo": {"username": "dev"}, "object": d, "dryRun": false
            }
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    fn patched(d: &Deployment) -> Option<Deployment> {
        let res = mutate(&request(d), &Config::default());
        assert!(res.allowed, "{:?}", res.result);
        let patch: json_patch::Patch = serde_json::from_slice(res.patch.as_ref()?).unwrap();
        let mut v = serde_json::to_value(d).unwrap();
        json_patch::patch(&mut v, &patch).unwrap();
        Some(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn the_patch_turns_the_deployment_into_the_injected_one() {
        let d = deployment(json!({}));
        assert_eq!(patched(&d), Some(injected(&d)));
    }

    #[test]
    fn an_injected_or_unrelated_deployment_gets_no_patch() {
        assert_eq!(patched(&injected(&deployment(json!({})))), None);
        let mut plain = deployment(json!({}));
        plain.metadata.labels = None;
        assert_eq!(patched(&plain), None);
    }

    #[test]
    fn the_patch_is_the_same_every_time() {
        let d = deployment(json!({"claworc.io/known-hosts-configmap": "hosts"}));
        let patch = |d| mutate(&request(d), &Config::default()).patch;
        assert_eq!(patch(&d), patch(&d));
    }

    #[test]
    fn unreadable_annotations_are_denied_at_mutation() {
        let res = mutate(&request(&deployment(json!({"claworc.io/ssh-port": "22"}))), &Config::default());
        assert!(!res.allowed);
        assert!(res.result.message.contains("claworc.io/ssh-port"), "{}", res.result.message);
    }

    #[test]
    fn what_injection_would_hide_is_denied_at_mutation() {
        for (key, value) in
            [("privileged", json!(true)), ("allowPrivilegeEscalation", json!(true)), ("runAsNonRoot", json!(false))]
        {
            let mut v = serde_json::to_value(deployment(json!({}))).unwrap();
            v.pointer_mut("/spec/template/spec/containers/0").unwrap()["securityContext"] = json!({key: value});
            let res = mutate(&request(&serde_json::from_value(v).unwrap()), &Config::default());
            assert!(
                !res.allowed && res.result.message.contains(&format!("securityContext.{key}")),
                "{key}: {}",
                res.result.message
            );
        }
    }

    #[test]
    fn validation_returns_warnings_and_denials() {
        let res = validate(&request(&injected(&deployment(json!({})))), &Config::default());
        assert!(res.allowed);
        assert!(res.warnings.unwrap().iter().any(|w| w.contains("host-key-fingerprint")));
        let mut d = injected(&deployment(json!({})));
        d.spec.replicas = Some(2);
        let res = validate(&request(&d), &Config::default());
        assert!(!res.allowed && res.result.message.contains("spec.replicas"), "{}", res.result.message);
    }
}
