//! Validation: what an opted-in Deployment may not be, and what is unwise.
//!
//! Every denial names the field and how to fix it; [`RULES`] lists them all
//! for docs/webhook.md.

use claworc_contract::Settings;
use claworc_contract::names::SIDECAR;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::inject::{self, Config};

/// The capabilities Pod Security `restricted` lets a container add.
pub const ALLOWED_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];

/// The outcome of validating one Deployment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
}

/// One rule, as documented: the field it looks at and what it refuses.
pub struct Rule {
    pub field: &'static str,
    pub refuses: &'static str,
}

/// Every rule [`validate`] enforces besides the annotation checks of
/// `claworc_contract::settings` (unknown keys, malformed values).
pub const RULES: &[Rule] = &[
    Rule { field: "spec.replicas", refuses: "anything but 0 or 1" },
    Rule { field: "spec.template.spec.hostNetwork / hostPID / hostIPC", refuses: "true" },
    Rule { field: "spec.template.spec.volumes[*].hostPath", refuses: "any hostPath volume" },
    Rule { field: "spec.template.spec.securityContext.runAsUser", refuses: "0 (root)" },
    Rule { field: "spec.template.spec.securityContext.seccompProfile.type", refuses: "Unconfined" },
    Rule { field: "containers[*].securityContext.privileged", refuses: "true" },
    Rule { field: "containers[*].securityContext.allowPrivilegeEscalation", refuses: "true" },
    Rule { field: "containers[*].securityContext.capabilities.add", refuses: "anything but NET_BIND_SERVICE" },
    Rule { field: "containers[*].securityContext.runAsUser", refuses: "0 (root)" },
    Rule { field: "containers[*].securityContext.runAsNonRoot", refuses: "false" },
    Rule { field: "containers[*].securityContext.seccompProfile.type", refuses: "Unconfined" },
    Rule { field: "containers[*].ports[*].hostPort", refuses: "any host port" },
    Rule {
        field: "metadata.annotations[\"claworc.io/target-container\"]",
        refuses: "a name that is not one of spec.template.spec.containers",
    },
    Rule { field: "spec.template.spec.containers", refuses: "an empty list" },
    Rule {
        field: "spec.template.spec.initContainers[\"claworc-sshd\"]",
        refuses: "a missing or altered sidecar (not what claworc's mutation makes)",
    },
];

/// Validates a Deployment as it will be stored (after all mutations).
/// Deployments that did not opt in pass untouched.
pub fn validate(d: &Deployment, cfg: &Config) -> Verdict {
    check(d, Some(cfg))
}

/// What mutation refuses before it injects: every rule but the sidecar's.
/// Injection would otherwise overwrite what the user asked for (e.g.
/// `allowPrivilegeEscalation: true`) instead of refusing it.
pub fn before_injection(d: &Deployment) -> Verdict {
    check(d, None)
}

fn check(d: &Deployment, sidecar: Option<&Config>) -> Verdict {
    let mut v = Verdict::default();
    if !inject::opted_in(d) {
        return v;
    }
    let settings = match inject::settings(d) {
        Ok(s) => Some(s),
        Err(errors) => {
            v.denials.extend(errors.iter().map(ToString::to_string));
            None
        }
    };
    let spec = &d.spec;
    if let Some(r) = spec.replicas.filter(|r| !(0..=1).contains(r)) {
        v.denials.push(format!(
            "spec.replicas: {r} is not allowed: an instance runs 0 or 1 pod; set replicas to 1 (or 0 to stop it)"
        ));
    }
    let empty = PodSpec::default();
    let pod = spec.template.spec.as_ref().unwrap_or(&empty);
    check_pod(pod, &mut v);
    if let Some(s) = &settings {
        if pod.containers.is_empty() {
            v.denials.push("spec.template.spec.containers: empty; add the workload container".into());
        } else if inject::target_index(pod, s).is_none() {
            let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
            v.denials.push(format!(
                "metadata.annotations[\"claworc.io/target-container\"]: no container is named {:?}; use one of {names:?}",
                s.target_container.as_deref().unwrap_or_default()
            ));
        } else if let Some(cfg) = sidecar {
            check_sidecar(d, s, cfg, &mut v);
        }
        warn(d, s, &mut v);
    }
    v
}

fn check_pod(pod: &PodSpec, v: &mut Verdict) {
    for (field, on) in [("hostNetwork", pod.host_network), ("hostPID", pod.host_pid), ("hostIPC", pod.host_ipc)] {
        if on == Some(true) {
            v.denials.push(format!(
                "spec.template.spec.{field}: true is not allowed: it exposes the node to the workload; remove it"
            ));
        }
    }
    for vol in pod.volumes.iter().flatten().filter(|vol| vol.host_path.is_some()) {
        v.denials.push(format!(
            "spec.template.spec.volumes[{:?}].hostPath: host paths are not allowed; use a PersistentVolumeClaim or an emptyDir",
            vol.name
        ));
    }
    if let Some(sc) = &pod.security_context {
        if sc.run_as_user == Some(0) {
            v.denials.push("spec.template.spec.securityContext.runAsUser: 0 (root) is not allowed; remove it or use a non-zero UID (default 1000)".into());
        }
        if sc.seccomp_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
            v.denials.push(
                "spec.template.spec.securityContext.seccompProfile.type: Unconfined is not allowed; use RuntimeDefault"
                    .into(),
            );
        }
    }
    let init = pod.init_containers.iter().flatten().map(|c| ("initContainers", c));
    for (kind, c) in pod.containers.iter().map(|c| ("containers", c)).chain(init) {
        check_container(kind, c, v);
    }
}

fn check_container(kind: &str, c: &Container, v: &mut Verdict) {
    let at = format!("spec.template.spec.{kind}[{:?}]", c.name);
    for p in c.ports.iter().flatten().filter(|p| p.host_port.is_some_and(|h| h != 0)) {
        v.denials.push(format!(
            "{at}.ports[{}].hostPort: host ports are not allowed; reach the port with `kubectl claworc tunnel`",
            p.container_port
        ));
    }
    let Some(sc) = &c.security_context else {
        return;
    };
    if sc.privileged == Some(true) {
        v.denials.push(format!("{at}.securityContext.privileged: true is not allowed; remove it (claworc instances run under Pod Security \"restricted\")"));
    }
    if sc.allow_privilege_escalation == Some(true) {
        v.denials.push(format!(
            "{at}.securityContext.allowPrivilegeEscalation: true is not allowed; remove it or set it to false"
        ));
    }
    let added = sc.capabilities.as_ref().and_then(|caps| caps.add.as_ref());
    for cap in added.into_iter().flatten().filter(|c| !ALLOWED_CAPABILITIES.contains(&c.trim_start_matches("CAP_"))) {
        v.denials.push(format!(
            "{at}.securityContext.capabilities.add: {cap} is not allowed; only NET_BIND_SERVICE may be added"
        ));
    }
    if sc.run_as_user == Some(0) {
        v.denials
            .push(format!("{at}.securityContext.runAsUser: 0 (root) is not allowed; remove it or use a non-zero UID"));
    }
    if sc.run_as_non_root == Some(false) {
        v.denials.push(format!("{at}.securityContext.runAsNonRoot: false is not allowed; remove it"));
    }
    if sc.seccomp_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        v.denials
            .push(format!("{at}.securityContext.seccompProfile.type: Unconfined is not allowed; use RuntimeDefault"));
    }
}

/// The stored sidecar and claworc volumes must be exactly what injection makes.
fn check_sidecar(d: &Deployment, s: &Settings, cfg: &Config, v: &mut Verdict) {
    let Some(pod) = d.spec.template.spec.as_ref() else { return };
    let fix = "remove your change to it (claworc rewrites it from the claworc.io/* annotations), or look for a webhook that alters it after claworc's";
    let have = pod.init_containers.iter().flatten().find(|c| c.name == SIDECAR);
    let volumes = pod.volumes.iter().flatten().filter(|v| inject::VOLUMES.contains(&v.name.as_str()));
    match have {
        None => v.denials.push(format!(
            "spec.template.spec.initContainers[\"{SIDECAR}\"]: missing; the claworc mutating webhook did not run: check that it is installed and that the Deployment has the label claworc.io/ssh: \"enabled\""
        )),
        Some(c) if *c != inject::sidecar(s, cfg, inject::shared_mounts(pod, s)) => {
            v.denials.push(format!("spec.template.spec.initContainers[\"{SIDECAR}\"]: not the sidecar claworc makes; {fix}"))
        }
        Some(_) if !volumes.eq(inject::claworc_volumes(s).iter()) => {
            v.denials.push(format!("spec.template.spec.volumes: the claworc-* volumes were altered; {fix}"))
        }
        Some(_) => {}
    }
}

fn warn(d: &Deployment, s: &Settings, v: &mut Verdict) {
    let rolling = d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()).is_none_or(|t| t == "RollingUpdate");
    let claims = d
        .spec
        .template
        .spec
        .iter()
        .flat_map(|p| p.volumes.iter().flatten())
        .any(|v| v.persistent_volume_claim.is_some());
    if rolling && claims {
        v.warnings.push("spec.strategy: RollingUpdate with a PersistentVolumeClaim: a ReadWriteOnce volume keeps the new pod from starting while the old one runs; use strategy Recreate".into());
    }
    if s.host_key_fingerprint.is_none() {
        v.warnings.push("metadata.annotations[\"claworc.io/host-key-fingerprint\"]: not set, so clients cannot pin the host key from the API; set it to the output of `ssh-keygen -lf ssh_host_ed25519_key.pub` (kubectl claworc create does)".into());
    }
    if s.strict_host_key_checking == claworc_contract::StrictHostKeyChecking::AcceptNew {
        v.warnings.push("metadata.annotations[\"claworc.io/strict-host-key-checking\"]: accept-new trusts the first key a new git host presents; prefer \"yes\" with claworc.io/known-hosts-configmap".into());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::inject::tests::{deployment, injected};

    fn verdict(d: &Deployment) -> Verdict {
        validate(d, &Config::default())
    }

    /// An injected Deployment with `edit` applied to its JSON.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Deployment {
        let mut v = serde_json::to_value(injected(&deployment(json!({})))).unwrap();
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn denied(d: &Deployment, field: &str, fix: &str) {
        let v = verdict(d);
        assert!(
            v.denials.iter().any(|m| m.contains(field) && m.contains(fix)),
            "want {field:?} … {fix:?} in {:#?}",
            v.denials
        );
    }

    #[test]
    fn an_injected_deployment_passes() {
        let v = verdict(&injected(&deployment(
            json!({"claworc.io/host-key-fingerprint": format!("SHA256:{}", "a".repeat(43))}),
        )));
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn a_deployment_that_did_not_opt_in_is_not_judged() {
        let d = edited(|v| {
            v["metadata"]["labels"] = json!({});
            v["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        });
        assert_eq!(verdict(&d), Verdict::default());
    }

    #[test]
    fn insecure_pods_are_refused_naming_the_field_and_the_fix() {
        let c0 = "/spec/template/spec/containers/0";
        let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
            ("/spec/replicas", json!(3), "spec.replicas", "set replicas to 1"),
            ("/spec/template/spec/hostNetwork", json!(true), "hostNetwork", "remove it"),
            ("/spec/template/spec/hostPID", json!(true), "hostPID", "remove it"),
            ("/spec/template/spec/hostIPC", json!(true), "hostIPC", "remove it"),
            ("/spec/template/spec/volumes/0/hostPath", json!({"path": "/"}), "hostPath", "PersistentVolumeClaim"),
        ];
        for (path, value, field, fix) in cases {
            let (parent, key) = path.rsplit_once('/').unwrap();
            denied(&edited(|v| v.pointer_mut(parent).unwrap()[key] = value), field, fix);
        }
        let container_cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
            ("privileged", json!(true), "containers[\"work\"].securityContext.privileged", "remove it"),
            ("allowPrivilegeEscalation", json!(true), "allowPrivilegeEscalation", "false"),
            (
                "capabilities",
                json!({"add": ["SYS_ADMIN"], "drop": ["ALL"]}),
                "capabilities.add: SYS_ADMIN",
                "only NET_BIND_SERVICE",
            ),
            ("runAsUser", json!(0), "containers[\"work\"].securityContext.runAsUser", "non-zero"),
            ("runAsNonRoot", json!(false), "runAsNonRoot", "remove it"),
            ("seccompProfile", json!({"type": "Unconfined"}), "seccompProfile.type", "RuntimeDefault"),
        ];
        for (key, value, field, fix) in container_cases {
            denied(&edited(|v| v.pointer_mut(&format!("{c0}/securityContext")).unwrap()[key] = value), field, fix);
        }
        denied(
            &edited(|v| v.pointer_mut(c0).unwrap()["ports"] = json!([{"containerPort": 80, "hostPort": 80}])),
            "hostPort",
            "kubectl claworc tunnel",
        );
    }

    #[test]
    fn net_bind_service_may_be_added() {
        let d = edited(|v| {
            v.pointer_mut("/spec/template/spec/containers/0/securityContext").unwrap()["capabilities"] =
                json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
        });
        assert!(verdict(&d).denials.is_empty(), "{:?}", verdict(&d).denials);
    }

    #[test]
    fn bad_annotations_are_refused() {
        let d = deployment(json!({"claworc.io/strict-host-key-checking": "no", "claworc.io/ssh-prot": "2222"}));
        denied(&d, "claworc.io/strict-host-key-checking", "accept-new");
        denied(&d, "claworc.io/ssh-prot", "did you mean \"claworc.io/ssh-port\"");
        denied(
            &injected(&deployment(json!({"claworc.io/target-container": "nope"}))),
            "target-container",
            "[\"work\", \"gateway\"]",
        );
    }

    #[test]
    fn a_missing_or_altered_sidecar_is_refused() {
        denied(&deployment(json!({})), "initContainers[\"claworc-sshd\"]: missing", "mutating webhook did not run");
        denied(
            &edited(|v| v.pointer_mut("/spec/template/spec/initContainers/0").unwrap()["image"] = json!("other:1")),
            "not the sidecar claworc makes",
            "remove your change",
        );
        denied(
            &edited(|v| v.pointer_mut("/spec/template/spec/volumes/2/secret").unwrap()["secretName"] = json!("other")),
            "claworc-* volumes were altered",
            "remove your change",
        );
    }

    #[test]
    fn unwise_choices_are_warned_about() {
        let d = edited(|v| v["spec"]["strategy"] = json!({"type": "RollingUpdate"}));
        let v = verdict(&d);
        assert!(v.denials.is_empty(), "{:?}", v.denials);
        assert!(v.warnings.iter().any(|w| w.contains("spec.strategy") && w.contains("Recreate")), "{:?}", v.warnings);
        assert!(v.warnings.iter().any(|w| w.contains("host-key-fingerprint")), "{:?}", v.warnings);
    }
}
