//! The webhook end to end: real kube-apiserver, real kubectl, the webhook as
//! users deploy it (`kubectl apply -k manifests/` + certs/bootstrap, by
//! tests/cluster/webhook-up), running on the real node from its image.

use std::time::Duration;

use claworc_e2e::{Cluster, TestNamespace, unique_name, wait_for};
use serde_json::{Value, json};

/// What the webhook's pods logged (all replicas), as `kubectl logs` shows it.
fn webhook_log() -> String {
    let selector = "app.kubernetes.io/name=claworc-webhook";
    let out = Cluster::get().kubectl(&["logs", "-n", "claworc-system", "-l", selector, "--tail=-1", "--prefix"]);
    out.expect_ok("kubectl logs of the webhook (deployed by tests/cluster/webhook-up)");
    assert!(!out.stdout.is_empty(), "the webhook's pods logged nothing: {}", out.stderr);
    out.stdout
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
    assert!(config.lines().any(|l| l == "forward-ports 5900"), "{config}");
    let template = &stored["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["claworc.io/instance"], "box");
    assert_eq!(template["metadata"]["labels"]["claworc.io/egress"], "restricted");
    assert_eq!(template["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(template["metadata"]["annotations"]["claworc.io/injected"].is_string());

    // The deployment controller writes status (and so the resourceVersion) on its own schedule:
    // what reapplying must leave alone is the spec and its generation.
    let again = ns.apply(&manifest);
    assert!(again.expect_ok("second kubectl apply").contains("unchanged"), "{}", again.stdout);
    let after = get(&ns, "box");
    assert_eq!(after["metadata"]["generation"], stored["metadata"]["generation"]);
    assert_eq!(after["spec"], stored["spec"]);
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
        (
            "gitRepo volume",
            with(&|d| {
                d["spec"]["template"]["spec"]["volumes"] =
                    json!([{"name": "src", "gitRepo": {"repository": "https://example.invalid/x.git"}}])
            }),
            "volumes[\"src\"].gitRepo: this volume type is not allowed under Pod Security \"restricted\"",
        ),
        (
            "AppArmor Unconfined",
            with(&|d| {
                d.pointer_mut(c0).unwrap()["securityContext"] = json!({"appArmorProfile": {"type": "Unconfined"}})
            }),
            "appArmorProfile.type: Unconfined is not allowed",
        ),
        (
            "mount over the sidecar's keys",
            with(&|d| {
                d["spec"]["template"]["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
                d.pointer_mut(c0).unwrap()["volumeMounts"] =
                    json!([{"name": "data", "mountPath": "/etc/claworc/ssh/"}]);
            }),
            "belong to the claworc-sshd sidecar",
        ),
        (
            "generateName",
            with(&|d| {
                d["metadata"].as_object_mut().unwrap().remove("name");
                d["metadata"]["generateName"] = json!("bad-");
            }),
            "metadata.name: missing",
        ),
    ];
    for (what, manifest, message) in cases {
        // `create` (not `apply`), which takes a generateName.
        let out = ns.kubectl_with_stdin(&["create", "-f", "-"], Some(&manifest));
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
    // this namespace: stopping the shared webhook would break the tests that run
    // in parallel.
    let mut config = Cluster::get().kubectl(&["get", "mutatingwebhookconfiguration", "claworc", "-o", "json"]).json();
    let name = unique_name("claworc-down");
    config["metadata"] = json!({"name": name});
    for hook in config["webhooks"].as_array_mut().unwrap() {
        hook["clientConfig"] =
            json!({"url": "https://127.0.0.1:1/mutate", "caBundle": hook["clientConfig"]["caBundle"]});
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
    // `kubectl scale` goes through the deployments/scale subresource, which the
    // webhook configurations do not select (docs/webhook.md).
    ns.kubectl(&["rollout", "restart", "deployment", "box"]).expect_ok("rollout restart");
    assert_eq!(sidecar(&get(&ns, "box")), Some(&canonical));

    let alter = r#"[{"op": "replace", "path": "/spec/template/spec/initContainers/1/image", "value": "evil:1"}]"#;
    ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", alter]).expect_ok("patch the sidecar's image");
    assert_eq!(sidecar(&get(&ns, "box")), Some(&canonical), "the edit of the sidecar was stored");
    let remove = r#"[{"op": "remove", "path": "/spec/template/spec/initContainers/1"}]"#;
    ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", remove]).expect_ok("patch out the sidecar");
    assert_eq!(sidecar(&get(&ns, "box")), Some(&canonical), "the sidecar was removed");
    let privileged =
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/securityContext/privileged", "value": true}]"#;
    let out = ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", privileged]);
    assert!(!out.success() && out.stderr.contains("privileged: true is not allowed"), "{}", out.stderr);
}

/// Opting out in an UPDATE (the label removed, privilege added in the same
/// change): the webhook is still called, because the old object matches, and
/// what is stored carries no claworc marker, in a namespace without Pod
/// Security labels.
#[test]
fn opting_out_removes_every_claworc_marker() {
    let ns = TestNamespace::new("wh-optout");
    ns.apply(&instance("box", json!({})).to_string()).expect_ok("kubectl apply");
    let mut d = get(&ns, "box");
    d["metadata"]["labels"] = json!({});
    let sc = d.pointer_mut("/spec/template/spec/containers/0/securityContext").unwrap();
    sc["privileged"] = json!(true);
    sc.as_object_mut().unwrap().remove("allowPrivilegeEscalation");
    d.pointer_mut("/spec/template/spec/initContainers/1").unwrap()["image"] = json!("evil:1");
    for key in ["resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"] {
        d["metadata"].as_object_mut().unwrap().remove(key);
    }
    d.as_object_mut().unwrap().remove("status");
    // The deployment controller writes status concurrently; kubectl replace may then
    // answer Conflict, as it would to a person, who would run it again.
    let mut replaced = ns.kubectl_with_stdin(&["replace", "-f", "-"], Some(&d.to_string()));
    for _ in 0..5 {
        if !replaced.stderr.contains("the object has been modified") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        replaced = ns.kubectl_with_stdin(&["replace", "-f", "-"], Some(&d.to_string()));
    }
    replaced.expect_ok("kubectl replace without the label");
    let stored = get(&ns, "box");
    assert!(sidecar(&stored).is_none(), "the sidecar stayed: {stored:#}");
    let template = &stored["spec"]["template"];
    let text = template.to_string();
    assert!(!text.contains("claworc.io/") && !text.contains("claworc-"), "claworc markers stayed: {template:#}");
    assert!(!text.contains("GIT_SSH_COMMAND"), "{template:#}");
    assert_eq!(template["spec"]["containers"][0]["securityContext"]["privileged"], true, "the user's own change stays");
    let called = webhook_log().lines().any(|l| l.contains(ns.name()) && l.contains("\"operation\":\"UPDATE\""));
    assert!(called, "the webhook was not called for the opt-out UPDATE");

    // A claworc marker in the pod template alone (no label) is sent and removed too.
    let name = unique_name("marked");
    let mut marked = instance(&name, json!({}));
    marked["metadata"]["labels"] = json!({});
    marked["spec"]["template"]["metadata"]["labels"]["claworc.io/instance"] = json!("box");
    ns.apply(&marked.to_string()).expect_ok("kubectl apply of a template marker");
    let stored = get(&ns, &name);
    assert!(!stored["spec"]["template"].to_string().contains("claworc.io/"), "{stored:#}");
}

/// The UPDATE that removes the last finalizer of an instance being deleted is
/// allowed, even when the stored object breaks a rule.
#[test]
fn an_instance_being_deleted_is_never_stuck() {
    let ns = TestNamespace::new("wh-finalize");
    let mut d = instance("box", json!({}));
    d["metadata"]["finalizers"] = json!(["claworc.io/test"]);
    ns.apply(&d.to_string()).expect_ok("kubectl apply");
    // replicas above 1 through the scale subresource, which the webhook never sees.
    ns.kubectl(&["scale", "deployment", "box", "--replicas=3"]).expect_ok("scale to 3");
    ns.kubectl(&["delete", "deployment", "box", "--wait=false"]).expect_ok("delete");
    let out = ns.kubectl(&[
        "patch",
        "deployment",
        "box",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
    ]);
    out.expect_ok("removing the last finalizer");
    wait_for("the Deployment to be gone", Duration::from_secs(30), || {
        ns.kubectl(&["get", "deployment", "box"]).stderr.contains("NotFound").then_some(())
    });
}
