//! AdmissionRequest → AdmissionResponse, for `POST /mutate` and `POST /validate`.
//! Pure: dry-run requests are answered the same way, and nothing is written.
//!
//! Which requests are about claworc at all is [`claworc_contract::instance`]'s
//! rule: an UPDATE is judged when the old *or* the new object is an instance,
//! so removing the opt-in label never skips the checks; it opts out, and
//! mutation then removes every claworc marker. An object being deleted is
//! never denied (its finalizers must be removable whatever it holds).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};

use claworc_contract::instance::{is_instance, opted_in};
use claworc_contract::names::ANNOTATION_INJECTED;

use crate::inject::{self, Config};
use crate::validate::{self, Verdict};

/// What a request asks of the webhook.
enum Subject<'a> {
    /// Nothing claworc cares about (or an object being deleted).
    Unrelated,
    /// An opted-in Deployment.
    OptedIn(&'a Deployment),
    /// A Deployment that is or was an instance and does not carry the opt-in label.
    OptingOut(&'a Deployment),
}

/// The old object is only asked whether it is an instance: from the wire it
/// carries nothing else ([`crate::wire::parse_review`]).
fn subject(req: &AdmissionRequest<Deployment>) -> Subject<'_> {
    let Some(d) = req.object.as_ref() else { return Subject::Unrelated };
    if d.metadata.deletion_timestamp.is_some() {
        return Subject::Unrelated;
    }
    if opted_in(d) {
        Subject::OptedIn(d)
    } else if is_instance(d) || req.old_object.as_ref().is_some_and(is_instance) {
        Subject::OptingOut(d)
    } else {
        Subject::Unrelated
    }
}

/// The mutating response: a JSONPatch that injects claworc into an opted-in
/// Deployment, or removes every claworc marker from one that opts out; no
/// patch when nothing changes; a denial for what validation refuses anyway,
/// before injection would hide it (e.g. by setting
/// `allowPrivilegeEscalation: false` over the user's `true`).
pub fn mutate(req: &AdmissionRequest<Deployment>, cfg: &Config) -> AdmissionResponse {
    mutate_taking_template(&mut req.clone(), cfg)
}

/// [`mutate`] for a caller that no longer needs the request's pod template
/// (the server): the template of `req.object` may be taken (left empty) and
/// injected in place, rather than copied first. The answer is [`mutate`]'s,
/// which is this on a copy.
pub fn mutate_taking_template(req: &mut AdmissionRequest<Deployment>, cfg: &Config) -> AdmissionResponse {
    let res = AdmissionResponse::from(&*req);
    let settings = match subject(req) {
        Subject::Unrelated => return res,
        Subject::OptingOut(d) => {
            let template = inject::remove(d);
            return if template == d.spec.template { res } else { patch_template(req, res, &template) };
        }
        Subject::OptedIn(d) => match validate::before_injection(d) {
            Ok(s) => s,
            Err(refused) => return res.deny(join(refused)),
        },
    };
    let Some(d) = req.object.as_mut() else { return res };
    // Injection always writes this version into the template: a template
    // without it changes for certain, and its original is not needed to tell.
    let stored_version =
        d.spec.template.metadata.as_ref().and_then(|m| m.annotations.as_ref()?.get(ANNOTATION_INJECTED));
    if stored_version != Some(&cfg.version) {
        let template = std::mem::take(&mut d.spec.template);
        let injected = inject::inject_into(template, d.metadata.name.as_deref(), &settings, cfg);
        return patch_template(req, res, &injected);
    }
    let injected = inject::inject_template(d, &settings, cfg);
    if injected == d.spec.template { res } else { patch_template(req, res, &injected) }
}

/// Allows the request with its object's pod template replaced by `template`.
fn patch_template(
    req: &AdmissionRequest<Deployment>,
    res: AdmissionResponse,
    template: &PodTemplateSpec,
) -> AdmissionResponse {
    // Injection changes only the pod template, so the patch is one `replace` of
    // it: cheaper than diffing two JSON trees, and the same on every call.
    #[derive(serde::Serialize)]
    struct Replace<'a> {
        op: &'static str,
        path: &'static str,
        value: &'a PodTemplateSpec,
    }
    let replace = [Replace { op: "replace", path: "/spec/template", value: template }];
    // kube-core keeps `patchType` private: `with_patch` sets it, then the bytes are ours.
    // Sized for an injected template, so that the buffer does not grow step by step.
    match (crate::json::to_vec(&replace, 8 * 1024), res.with_patch(json_patch::Patch(Vec::new()))) {
        (Ok(patch), Ok(mut res)) => {
            res.patch = Some(patch);
            res
        }
        _ => AdmissionResponse::from(req).deny("claworc: internal error: the patch could not be serialized"),
    }
}

/// The validating response: a full re-check of an opted-in Deployment, and no
/// claworc marker left on one that opted out. Denials are joined into one
/// message, warnings become AdmissionResponse warnings (kubectl prints them).
pub fn validate(req: &AdmissionRequest<Deployment>, cfg: &Config) -> AdmissionResponse {
    let mut res = AdmissionResponse::from(req);
    let verdict: Verdict = match subject(req) {
        Subject::Unrelated => return res,
        Subject::OptingOut(d) => validate::opted_out(d),
        Subject::OptedIn(d) => validate::validate(d, cfg),
    };
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
        update(None, d)
    }

    /// A CREATE (no old object) or an UPDATE from `old`.
    fn update(old: Option<&Deployment>, d: &Deployment) -> AdmissionRequest<Deployment> {
        let review: AdmissionReview<Deployment> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "box", "namespace": "dev", "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                "userInfo": {"username": "dev"}, "object": d, "oldObject": old, "dryRun": false
            }
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    /// The object as stored after `req`'s mutation, or `None` if there was no patch.
    fn apply(req: &AdmissionRequest<Deployment>) -> Option<Deployment> {
        let res = mutate(req, &Config::default());
        assert!(res.allowed, "{:?}", res.result);
        let patch: json_patch::Patch = serde_json::from_slice(res.patch.as_ref()?).unwrap();
        let mut v = serde_json::to_value(req.object.as_ref().unwrap()).unwrap();
        json_patch::patch(&mut v, &patch).unwrap();
        Some(serde_json::from_value(v).unwrap())
    }

    fn patched(d: &Deployment) -> Option<Deployment> {
        apply(&request(d))
    }

    #[test]
    fn opting_out_removes_every_marker_and_nothing_else() {
        let plain = deployment(json!({}));
        let old = injected(&plain);
        // The attacker's UPDATE: the label goes, privilege comes, the sidecar is swapped.
        let mut v = serde_json::to_value(&old).unwrap();
        v["metadata"]["labels"] = json!({});
        v.pointer_mut("/spec/template/spec/containers/0").unwrap()["securityContext"]["privileged"] = json!(true);
        v.pointer_mut("/spec/template/spec/initContainers/0").unwrap()["image"] = json!("evil:1");
        v["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        let new: Deployment = serde_json::from_value(v).unwrap();
        let stored = apply(&update(Some(&old), &new)).expect("opting out is patched");
        assert!(!claworc_contract::instance::has_markers(&stored.spec.template), "{stored:#?}");
        let pod = stored.spec.template.spec.as_ref().unwrap();
        assert!(
            pod.init_containers.iter().flatten().all(|c| !c.name.starts_with("claworc-sshd")),
            "sidecar and installer"
        );
        assert!(pod.volumes.iter().flatten().all(|v| !v.name.starts_with("claworc-")));
        assert_eq!(pod.host_network, Some(true), "what remains is the user's own Deployment");
        assert_eq!(
            pod.volumes.as_ref().unwrap().len(),
            plain.spec.template.spec.as_ref().unwrap().volumes.as_ref().unwrap().len()
        );
        assert!(pod.containers.iter().all(|c| c.env.iter().flatten().all(|e| e.name != "GIT_SSH_COMMAND")));
        // And /validate agrees with what mutation left, and refuses what it did not.
        assert!(validate(&update(Some(&old), &stored), &Config::default()).allowed);
        let res = validate(&update(Some(&old), &new), &Config::default());
        assert!(!res.allowed && res.result.message.contains("claworc markers remain"), "{}", res.result.message);
    }

    #[test]
    fn opting_out_keeps_the_labels_the_selector_needs() {
        // As `kubectl claworc create` makes it: the selector is claworc.io/instance.
        let mut plain = deployment(json!({}));
        let selector = std::collections::BTreeMap::from([("claworc.io/instance".to_string(), "box".to_string())]);
        plain.spec.selector.match_labels = Some(selector.clone());
        plain.spec.template.metadata.as_mut().unwrap().labels = Some(selector.clone());
        let old = injected(&plain);
        let mut new = old.clone();
        new.metadata.labels = None;
        let stored = apply(&update(Some(&old), &new)).expect("opting out is patched");
        let labels = stored.spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(labels, selector, "the selector still matches, the NetworkPolicies' labels are gone");
        assert!(
            stored
                .spec
                .template
                .spec
                .as_ref()
                .unwrap()
                .init_containers
                .iter()
                .flatten()
                .all(|c| c.name != "claworc-sshd")
        );
        assert!(validate(&update(Some(&old), &stored), &Config::default()).allowed);
        assert!(mutate(&update(Some(&stored), &stored), &Config::default()).patch.is_none(), "stable");
    }

    #[test]
    fn a_template_marker_without_the_label_is_removed() {
        let mut d = deployment(json!({}));
        d.metadata.labels = None;
        d.spec
            .template
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("claworc.io/instance".into(), "other".into());
        let stored = patched(&d).expect("the marker is removed");
        assert!(!stored.spec.template.metadata.unwrap().labels.unwrap().contains_key("claworc.io/instance"));
    }

    #[test]
    fn an_object_being_deleted_is_never_denied() {
        let mut d = injected(&deployment(json!({})));
        d.spec.replicas = Some(5);
        d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        let req = update(Some(&d), &d);
        assert!(mutate(&req, &Config::default()).allowed);
        assert!(validate(&req, &Config::default()).allowed);
    }

    #[test]
    fn generate_name_alone_is_denied_up_front() {
        let mut d = deployment(json!({}));
        d.metadata.name = None;
        d.metadata.generate_name = Some("box-".into());
        let res = mutate(&request(&d), &Config::default());
        assert!(!res.allowed && res.result.message.contains("metadata.name: missing"), "{}", res.result.message);
    }

    #[test]
    fn the_patch_turns_the_deployment_into_the_injected_one() {
        let d = deployment(json!({}));
        assert_eq!(patched(&d), Some(injected(&d)));
    }

    #[test]
    fn a_template_injected_by_another_release_is_patched_into_this_ones() {
        // The template is taken, not copied, when it will change for certain:
        // the other release's sidecar and installer must still go.
        let d = deployment(json!({}));
        let old = Config { sidecar_image: "ghcr.io/claworc/sshd:0.0.9".into(), version: "0.0.9".into() };
        let by_old = inject::inject(&d, &inject::settings(&d).unwrap(), &old);
        assert_eq!(patched(&by_old), Some(injected(&d)));
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
