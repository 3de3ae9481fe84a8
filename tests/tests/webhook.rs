//! The webhook end to end: real kube-apiserver, real kubectl, the webhook
//! process started by `tests/run` (tests/cluster/webhook-up) and registered with
//! the configurations rendered from manifests/overlays/local.

use std::time::Duration;

use claworc_e2e::{Cluster, TestNamespace, unique_name, wait_for};
use serde_json::{Value, json};

fn webhook_log() -> String {
    let path = std::env::var("CLAWORC_WEBHOOK_LOG")
        .expect("CLAWORC_WEBHOOK_LOG is not set: run the tests with `tests/run`, which starts the webhook (tests/cluster/webhook-up)");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read the webhook log {path}: {e}"))
}

/// A plain opted-in Deployment, as a person writes it.
fn instance(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"claworc.io/ssh": "enabled"}, "annotations": annotations},
        "spec": {
            "replicas": 1, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "work", "image": "busybox:1.36", "command": ["sleep", "infinity"]}]}}
        }
    })
}

fn get(ns: &TestNamespace, name: &str) -> Value {
    ns.kubectl(&["get", "deployment", name, "-o", "json"]).json()
}

fn sidecar(d: &Value) -> Option<&Value> {
    d.pointer("/spec/template/spec/initContainers")?.as_array()?.iter().find(|c| c["name"] == "claworc-sshd")
}

#[test]
fn apply_stores_the_injection_and_reapplying_changes_nothing() {
    let ns = TestNamespace::new("wh-apply");
    let manifest = instance("box", json!({"claworc.io/forward-ports": "5900"})).to_string();

    let dry = ns.kubectl_with_stdin(&["apply", "--dry-run=server", "-o", "json", "-f", "-"], Some(&manifest)).json();
    assert!(sidecar(&dry).is_some(), "--dry-run=server shows no injection: {dry:#}");
    assert!(ns.kubectl(&["get", "deployment", "box"]).stderr.contains("NotFound"), "dry run stored the Deployment");

    let out = ns.apply(&manifest);
    out.expect_ok("kubectl apply");
    let stored = get(&ns, "box");
    let sshd = sidecar(&stored).expect("the stored Deployment has the claworc-sshd sidecar");
    assert_eq!(sshd["restartPolicy"], "Always");
    let config = sshd["env"].as_array().unwrap().iter().find(|e| e["name"] == "CLAWORC_SSHD_CONFIG").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(config.contains("PermitOpen localhost:5900 127.0.0.1:5900"), "{config}");
    let template = &stored["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["claworc.io/instance"], "box");
    assert_eq!(template["metadata"]["labels"]["claworc.io/egress"], "restricted");
    assert_eq!(template["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(template["metadata"]["annotations"]["claworc.io/injected"].is_string());

    let version = stored["metadata"]["resourceVersion"].clone();
    let generation = stored["metadata"]["generation"].clone();
    let again = ns.apply(&manifest);
    assert!(again.expect_ok("second kubectl apply").contains("unchanged"), "{}", again.stdout);
    let after = get(&ns, "box");
    assert_eq!((&after["metadata"]["resourceVersion"], &after["metadata"]["generation"]), (&version, &generation));
}

#[test]
fn a_deployment_without_the_label_is_stored_as_applied_and_never_sent() {
    let ns = TestNamespace::new("wh-plain");
    let name = unique_name("plain");
    let mut d = instance(&name, json!({}));
    d["metadata"]["labels"] = json!({"app": name});
    ns.apply(&d.to_string()).expect_ok("kubectl apply");
    let stored = get(&ns, &name);
    assert!(sidecar(&stored).is_none());
    assert_eq!(stored["metadata"]["labels"], d["metadata"]["labels"]);
    assert_eq!(stored["spec"]["template"]["metadata"], d["spec"]["template"]["metadata"]);
    let spec = &stored["spec"]["template"]["spec"];
    assert!(spec.get("securityContext").is_none_or(|s| s.as_object().is_some_and(|o| o.is_empty())), "{spec:#}");
    assert!(spec.get("volumes").is_none(), "{spec:#}");
    assert!(!webhook_log().contains(&name), "the webhook was called for a Deployment without the label");
}

#[test]
fn every_validation_rule_is_enforced_through_kubectl() {
    let ns = TestNamespace::new("wh-deny");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut d = instance("bad", json!({}));
        edit(&mut d);
        d.to_string()
    };
    let c0 = "/spec/template/spec/containers/0";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "privileged",
            with(&|d| d.pointer_mut(c0).unwrap()["securityContext"] = json!({"privileged": true})),
            "securityContext.privileged: true is not allowed",
        ),
        (
            "hostNetwork",
            with(&|d| d["spec"]["template"]["spec"]["hostNetwork"] = json!(true)),
            "hostNetwork: true is not allowed",
        ),
        ("hostPID", with(&|d| d["spec"]["template"]["spec"]["hostPID"] = json!(true)), "hostPID: true is not allowed"),
        ("hostIPC", with(&|d| d["spec"]["template"]["spec"]["hostIPC"] = json!(true)), "hostIPC: true is not allowed"),
        (
            "capabilities",
            with(&|d| d.pointer_mut(c0).unwrap()["securityContext"] = json!({"capabilities": {"add": ["SYS_ADMIN"]}})),
            "SYS_ADMIN is not allowed",
        ),
        ("replicas", with(&|d| d["spec"]["replicas"] = json!(3)), "spec.replicas: 3 is not allowed"),
        (
            "unknown key",
            instance("bad", json!({"claworc.io/ssh-prot": "2222"})).to_string(),
            "did you mean \"claworc.io/ssh-port\"",
        ),
        ("malformed port", instance("bad", json!({"claworc.io/ssh-port": "22"})).to_string(), "claworc.io/ssh-port"),
        (
            "malformed list",
            instance("bad", json!({"claworc.io/forward-ports": "80,x"})).to_string(),
            "claworc.io/forward-ports",
        ),
        (
            "strict no",
            instance("bad", json!({"claworc.io/strict-host-key-checking": "no"})).to_string(),
            "\"no\" would let git connect to any host key",
        ),
        (
            "target container",
            instance("bad", json!({"claworc.io/target-container": "web"})).to_string(),
            "no container is named \"web\"",
        ),
        (
            "hostPath",
            with(&|d| d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}])),
            "host paths are not allowed",
        ),
    ];
    for (what, manifest, message) in cases {
        let out = ns.apply(&manifest);
        assert!(!out.success(), "{what}: kubectl apply succeeded");
        assert!(out.stderr.contains(message), "{what}: want {message:?} in {}", out.stderr);
        assert!(out.stderr.contains("claworc"), "{what}: {}", out.stderr);
    }
    assert!(ns.kubectl(&["get", "deployment", "bad"]).stderr.contains("NotFound"));
}

#[test]
fn pod_security_restricted_admits_injected_pods_and_refuses_privileged_ones() {
    let ns = TestNamespace::with_labels("wh-psa", &[("pod-security.kubernetes.io/enforce", "restricted")]);
    ns.apply(&instance("box", json!({})).to_string()).expect_ok("kubectl apply");
    let node = wait_for("the instance pod to be scheduled", Duration::from_secs(90), || {
        let pods = ns.kubectl(&["get", "pods", "-l", "claworc.io/instance=box", "-o", "json"]).json();
        pods["items"].as_array()?.first()?["spec"]["nodeName"].as_str().map(str::to_string)
    });
    let nodes = Cluster::get().kubectl(&["get", "node", &node, "-o", "json"]).json();
    assert_eq!(nodes["metadata"]["annotations"]["kwok.x-k8s.io/node"], "fake");
    let events = ns.kubectl(&["get", "events", "-o", "json"]).json();
    assert!(!events.to_string().contains("FailedCreate"), "{events:#}");

    let mut privileged = instance("root", json!({}));
    privileged["metadata"]["labels"] = json!({});
    privileged.pointer_mut("/spec/template/spec/containers/0").unwrap()["securityContext"] =
        json!({"privileged": true});
    ns.apply(&privileged.to_string()).expect_ok("kubectl apply of a Deployment (pods are checked, not Deployments)");
    wait_for("a FailedCreate event for the privileged pod", Duration::from_secs(60), || {
        let events = ns.kubectl(&["get", "events", "--field-selector", "reason=FailedCreate", "-o", "json"]).json();
        events.to_string().contains("violates PodSecurity \\\"restricted").then_some(())
    });
}

#[test]
fn with_the_webhook_down_opted_in_deployments_are_refused_and_others_admitted() {
    let ns = TestNamespace::new("wh-down");
    // Our configuration, pointed at a port where nothing listens and limited to
    // this namespace: stopping the shared webhook process would break the tests
    // that run in parallel.
    let mut config = Cluster::get().kubectl(&["get", "mutatingwebhookconfiguration", "claworc", "-o", "json"]).json();
    let name = unique_name("claworc-down");
    config["metadata"] = json!({"name": name});
    for hook in config["webhooks"].as_array_mut().unwrap() {
        hook["clientConfig"]["url"] = json!("https://127.0.0.1:1/mutate");
        hook["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": ns.name()}});
        assert_eq!(hook["failurePolicy"], "Fail");
    }
    Cluster::get()
        .kubectl_with_stdin(&["create", "-f", "-"], Some(&config.to_string()))
        .expect_ok("create the configuration");
    let refused = ns.apply(&instance("box", json!({})).to_string());
    let mut plain = instance("plain", json!({}));
    plain["metadata"]["labels"] = json!({});
    let admitted = ns.apply(&plain.to_string());
    Cluster::get().kubectl(&["delete", "mutatingwebhookconfiguration", &name]).expect_ok("delete the configuration");
    assert!(!refused.success() && refused.stderr.contains("failed calling webhook"), "{}", refused.stderr);
    admitted.expect_ok("an unrelated Deployment in the same namespace");
}

#[test]
fn scale_restart_and_edits_of_the_sidecar() {
    let ns = TestNamespace::new("wh-ops");
    ns.apply(&instance("box", json!({})).to_string()).expect_ok("kubectl apply");
    let canonical = sidecar(&get(&ns, "box")).unwrap().clone();

    ns.kubectl(&["scale", "deployment", "box", "--replicas=0"]).expect_ok("scale to 0");
    ns.kubectl(&["scale", "deployment", "box", "--replicas=1"]).expect_ok("scale to 1");
    // `kubectl scale` goes through the scale subresource, whose object carries no
    // labels, so the objectSelector never sends it to the webhook (docs/webhook.md).
    ns.kubectl(&["rollout", "restart", "deployment", "box"]).expect_ok("rollout restart");
    assert_eq!(sidecar(&get(&ns, "box")), Some(&canonical));

    let alter = r#"[{"op": "replace", "path": "/spec/template/spec/initContainers/0/image", "value": "evil:1"}]"#;
    ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", alter]).expect_ok("patch the sidecar's image");
    assert_eq!(sidecar(&get(&ns, "box")), Some(&canonical), "the edit of the sidecar was stored");
    let remove = r#"[{"op": "remove", "path": "/spec/template/spec/initContainers/0"}]"#;
    ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", remove]).expect_ok("patch out the sidecar");
    assert_eq!(sidecar(&get(&ns, "box")), Some(&canonical), "the sidecar was removed");
    let privileged =
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/securityContext/privileged", "value": true}]"#;
    let out = ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", privileged]);
    assert!(!out.success() && out.stderr.contains("privileged: true is not allowed"), "{}", out.stderr);
}
