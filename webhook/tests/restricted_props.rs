//! Property: for any opted-in Deployment the generator makes, either
//! `/mutate` denies it, or the stored result (the patch applied) passes
//! `/validate`, passes a Pod Security "restricted" check written here from the
//! published standard (independently of `validate.rs`), gives the sidecar no
//! mount over its own paths, and a second `/mutate` makes no patch. And an
//! UPDATE that removes the opt-in label leaves no claworc marker.
//!
//! `CLAWORC_PROP_CASES` sets the number of cases (default 512).

use claworc_webhook::inject::Config;
use claworc_webhook::review;
use k8s_openapi::api::apps::v1::Deployment;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---- Pod Security "restricted" (v1.37), from
// https://kubernetes.io/docs/concepts/security/pod-security-standards/ ----

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];
const VOLUME_TYPES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
const SELINUX_TYPES: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

/// Every violation of "restricted" (and so "baseline") in a pod template.
fn restricted_violations(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &template["spec"];
    let psc = &spec["securityContext"];
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&spec[f]) {
            out.push(f.to_string());
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        for k in v.as_object().unwrap().keys().filter(|k| *k != "name") {
            if !VOLUME_TYPES.contains(&k.as_str()) {
                out.push(format!("volume type {k}"));
            }
        }
    }
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        for (k, v) in a {
            if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v == "runtime/default" || v.as_str().is_some_and(|s| s.starts_with("localhost/")))
            {
                out.push(format!("apparmor annotation {v}"));
            }
        }
    }
    let selinux = |sc: &Value, out: &mut Vec<String>| {
        let se = &sc["seLinuxOptions"];
        if !SELINUX_TYPES.contains(&se["type"].as_str().unwrap_or("")) {
            out.push("selinux type".into());
        }
        if se["user"].as_str().is_some_and(|s| !s.is_empty()) || se["role"].as_str().is_some_and(|s| !s.is_empty()) {
            out.push("selinux user/role".into());
        }
    };
    selinux(psc, &mut out);
    if psc["appArmorProfile"]["type"] == "Unconfined" {
        out.push("pod apparmor".into());
    }
    if is_true(&psc["windowsOptions"]["hostProcess"]) {
        out.push("pod hostProcess".into());
    }
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        if !SAFE_SYSCTLS.contains(&s["name"].as_str().unwrap_or("")) {
            out.push(format!("sysctl {}", s["name"]));
        }
    }
    if psc["runAsUser"] == 0 {
        out.push("pod runAsUser 0".into());
    }
    let pod_seccomp = psc["seccompProfile"]["type"].as_str();
    let pod_non_root = is_true(&psc["runAsNonRoot"]);
    let all = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| spec[k].as_array().into_iter().flatten());
    for c in all {
        let name = c["name"].as_str().unwrap_or("");
        let sc = &c["securityContext"];
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_i64().is_some_and(|h| h != 0) {
                out.push(format!("{name}: hostPort"));
            }
        }
        if is_true(&sc["privileged"]) {
            out.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            out.push(format!("{name}: allowPrivilegeEscalation not false"));
        }
        if !(sc["runAsNonRoot"] == true || pod_non_root && sc["runAsNonRoot"] != false) {
            out.push(format!("{name}: runAsNonRoot"));
        }
        if sc["runAsUser"] == 0 {
            out.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            out.push(format!("{name}: seccomp {seccomp:?}"));
        }
        let caps = &sc["capabilities"];
        if !caps["drop"].as_array().is_some_and(|d| d.iter().any(|x| x == "ALL")) {
            out.push(format!("{name}: capabilities.drop lacks ALL"));
        }
        for cap in caps["add"].as_array().into_iter().flatten() {
            if cap != "NET_BIND_SERVICE" {
                out.push(format!("{name}: adds {cap}"));
            }
        }
        if sc["procMount"].as_str().is_some_and(|p| p != "Default") {
            out.push(format!("{name}: procMount"));
        }
        if sc["appArmorProfile"]["type"] == "Unconfined" {
            out.push(format!("{name}: apparmor"));
        }
        if is_true(&sc["windowsOptions"]["hostProcess"]) {
            out.push(format!("{name}: hostProcess"));
        }
        selinux(sc, &mut out);
    }
    out
}

/// The sidecar's shared mounts that lie at, under or above a path it must own
/// (its keys, its delivered binary, the no-token directory), or in a kernel
/// filesystem.
fn sidecar_shadowed(template: &Value) -> Vec<String> {
    let own = ["/etc/claworc/ssh", "/run/claworc", "/var/run/secrets/kubernetes.io/serviceaccount"];
    let kernel = ["/proc", "/sys", "/dev"];
    let sidecar =
        template["spec"]["initContainers"].as_array().and_then(|i| i.iter().find(|c| c["name"] == "claworc-sshd"));
    let mut out = Vec::new();
    for m in sidecar.and_then(|s| s["volumeMounts"].as_array()).into_iter().flatten() {
        let name = m["name"].as_str().unwrap();
        if name.starts_with("claworc-") {
            continue;
        }
        let path: String = m["mountPath"]
            .as_str()
            .unwrap()
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect::<Vec<_>>()
            .join("/");
        let path = format!("/{path}");
        let under = |p: &str, dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
        if path == "/"
            || kernel.iter().any(|k| under(&path, k))
            || own.iter().any(|o| under(&path, o) || under(o, &path))
        {
            out.push(path);
        }
    }
    out
}

mod generate;
use generate::deployment;

// ---- driving the webhook as the apiserver does ----

fn request(old: Option<&Value>, object: &Value) -> AdmissionRequest<Deployment> {
    let review: AdmissionReview<Deployment> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "box", "namespace": "ns", "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
            "userInfo": {}, "object": object, "oldObject": old
        }
    }))
    .unwrap();
    review.try_into().unwrap()
}

/// The object as stored after `/mutate`, or the denial's message.
fn mutate(old: Option<&Value>, object: &Value) -> Result<Value, String> {
    let res = review::mutate(&request(old, object), &Config::default());
    if !res.allowed {
        return Err(res.result.message);
    }
    let mut stored = object.clone();
    if let Some(patch) = res.patch {
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        json_patch::patch(&mut stored, &patch).unwrap();
    }
    // What the apiserver stores is the typed object.
    let typed: Deployment = serde_json::from_value(stored).unwrap();
    Ok(serde_json::to_value(typed).unwrap())
}

fn cases() -> u32 {
    std::env::var("CLAWORC_PROP_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutate_denies_or_makes_a_restricted_pod_that_validates(d in deployment()) {
        let Ok(stored) = mutate(None, &d) else { return Ok(()) };
        let template = &stored["spec"]["template"];
        let violations = restricted_violations(template);
        prop_assert!(violations.is_empty(), "restricted violated: {violations:?}\n{template:#}");
        let shadowed = sidecar_shadowed(template);
        prop_assert!(shadowed.is_empty(), "the sidecar inherits {shadowed:?}");
        let res = review::validate(&request(None, &stored), &Config::default());
        prop_assert!(res.allowed, "/validate refused what /mutate made: {}", res.result.message);
        let again = review::mutate(&request(Some(&stored), &stored), &Config::default());
        prop_assert!(again.allowed && again.patch.is_none(), "a second /mutate changed it");
    }

    #[test]
    fn opting_out_leaves_no_marker(d in deployment(), privileged in any::<bool>()) {
        let Ok(old) = mutate(None, &d) else { return Ok(()) };
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({});
        if privileged {
            new["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true);
        }
        let stored = mutate(Some(&old), &new).map_err(TestCaseError::fail)?;
        let typed: Deployment = serde_json::from_value(stored.clone()).unwrap();
        prop_assert!(!claworc_contract::instance::is_instance(&typed), "{stored:#}");
        let res = review::validate(&request(Some(&old), &stored), &Config::default());
        prop_assert!(res.allowed, "{}", res.result.message);
    }
}
