//! NetworkPolicies enforced on the real node (kube-network-policies, patched for
//! this kernel; tests/cluster/node-up). First proves enforcement is on (a
//! default-deny blocks what was reachable), then checks the policies claworc ships
//! (`tenant create` applies manifests/network): no ingress to an instance from
//! other pods, and the "restricted" egress profile blocks private addresses.
//! Not checked: the metadata addresses (169.254.169.254, 100.100.100.200) — in this
//! network namespace nothing routes there, so a drop could not be told from "no
//! route"; they are in the same `except` list as the private ranges checked here.
//!
//! A connection is "refused" when nothing listens (the kernel answers RST: errno
//! 111) and "dropped" when a policy eats it (no answer within 3 s: errno 11), so
//! the two are told apart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use claworc_e2e::{Cluster, TestNamespace, plugin_bin, run, unique_name, wait_for};

const OPEN: &str = "0";
const REFUSED: &str = "111";
const DROPPED: &str = "11";

fn workload_image() -> String {
    std::env::var("CLAWORC_WORKLOAD_IMAGE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("CLAWORC_WORKLOAD_IMAGE is not set: run the tests through tests/run (tests/cluster/with-cluster)")
    })
}

fn use_real_node(ns: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster").join("use-real-node");
    let mut cmd = Cluster::get().command(&script);
    cmd.arg(ns);
    run(cmd, None).expect_ok("tests/cluster/use-real-node");
}

fn restricted_pod(name: &str, labels: serde_json::Value, command: &[&str]) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c", "image": workload_image(), "imagePullPolicy": "Never", "command": command,
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    })
    .to_string()
}

/// From a new pod in `ns`: connect to host:port; "0" (open), "111" (refused) or "11" (dropped).
fn connect_from_pod(ns: &TestNamespace, host: &str, port: u16) -> String {
    let name = unique_name("prober");
    let script = format!(
        "import socket\ns = socket.socket(); s.settimeout(3)\nprint('result', s.connect_ex(('{host}', {port})))\n"
    );
    ns.apply(&restricted_pod(&name, serde_json::json!({"app": "prober"}), &["python3", "-c", &script]))
        .expect_ok("prober pod");
    wait_for("the prober to finish", Duration::from_secs(60), || {
        let phase = ns.kubectl(&["get", "pod", &name, "-o", "jsonpath={.status.phase}"]).stdout;
        (phase == "Succeeded" || phase == "Failed").then_some(())
    });
    let log = ns.kubectl(&["logs", &name]).expect_ok("prober logs").to_string();
    log.lines().find_map(|l| l.strip_prefix("result ")).unwrap_or_else(|| panic!("prober: {log}")).trim().to_string()
}

fn pod_ip(ns: &str, selector: &str) -> String {
    let out =
        Cluster::get().kubectl(&["-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath={.items[0].status.podIP}"]);
    let ip = out.expect_ok("pod IP").trim().to_string();
    assert!(!ip.is_empty(), "no pod IP for {selector} in {ns}");
    ip
}

#[test]
fn network_policies_are_enforced_on_the_real_node() {
    // 1. Enforcement is on: a server reachable from another pod, then not under a default-deny.
    let ns = TestNamespace::with_labels("np", &[("pod-security.kubernetes.io/enforce", "restricted")]);
    use_real_node(ns.name());
    let server = restricted_pod(
        "server",
        serde_json::json!({"app": "server"}),
        &["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
    );
    ns.apply(&server).expect_ok("server pod");
    ns.kubectl(&["wait", "--for=condition=Ready", "pod/server", "--timeout=60s"]).expect_ok("server Ready");
    let ip = pod_ip(ns.name(), "app=server");
    assert_eq!(connect_from_pod(&ns, &ip, 8080), OPEN, "no policy: the server answers");
    let deny = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
                   "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]}}"#;
    ns.apply(deny).expect_ok("default-deny");
    wait_for("the default-deny to drop the connection", Duration::from_secs(30), || {
        (connect_from_pod(&ns, &ip, 8080) == DROPPED).then_some(())
    });

    // 2. The shipped policies, in a tenant's namespace (tenant create applies them).
    let home: PathBuf = std::env::temp_dir().join(unique_name("claworc-np-xdg"));
    std::fs::create_dir_all(&home).unwrap();
    let tenant = unique_name("t-np");
    let kubeconfig = home.join("tenant.kubeconfig");
    let plugin = |args: &[&str]| {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &home).env("KUBECONFIG", &kubeconfig).args(args);
        run(cmd, None)
    };
    let mut cmd = Cluster::get().command(plugin_bin());
    cmd.env("XDG_CONFIG_HOME", &home).args(["tenant", "create", &tenant, "--ttl", "1h", "--output"]).arg(&kubeconfig);
    run(cmd, None).expect_ok("tenant create");
    let tenant_ns = TestNamespace::adopt(tenant.clone());
    use_real_node(&tenant);
    plugin(&["-n", &tenant, "create", "box", "--image", &workload_image(), "--wait", "--timeout", "3m"])
        .expect_ok("create box");
    let box_ip = pod_ip(&tenant, "claworc.io/instance=box");

    // The same instance in a namespace without claworc's policies, for contrast.
    let admin = |args: &[&str]| {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &home).args(args);
        run(cmd, None)
    };
    admin(&["-n", ns.name(), "create", "box", "--image", &workload_image(), "--wait", "--timeout", "3m"])
        .expect_ok("create box without policies");
    let plain_ip = pod_ip(ns.name(), "claworc.io/instance=box");

    // No ingress from other pods: the ssh port (sshd listens on the pod's loopback
    // only) is refused without the policy, dropped with it.
    assert_eq!(connect_from_pod(&ns, &plain_ip, 2222), REFUSED, "no policy: nothing listens on the pod IP");
    assert_eq!(connect_from_pod(&ns, &box_ip, 2222), DROPPED, "claworc-deny-ingress: the ssh port");
    assert_eq!(connect_from_pod(&ns, &box_ip, 8080), DROPPED, "claworc-deny-ingress: any port");

    // Egress profile "restricted" (the default): private addresses are blocked, e.g.
    // a web server in another pod (10.88.0.0/16), which answers without the policy.
    // (Not the node's own addresses: traffic to the node itself is not filtered.)
    let open = restricted_pod(
        "open-server",
        serde_json::json!({"app": "open"}),
        &["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
    );
    ns.apply(&open).expect_ok("open-server pod");
    ns.kubectl(&["wait", "--for=condition=Ready", "pod/open-server", "--timeout=60s"]).expect_ok("open-server Ready");
    let open_ip = pod_ip(ns.name(), "app=open");
    let dial = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{open_ip}/8080' 2>/dev/null; echo $?");
    let dial = dial.as_str();
    let out = admin(&["-n", ns.name(), "ssh", "box", "--", "bash", "-c", dial]);
    assert_eq!(out.expect_ok("ssh").trim(), "0", "no policy: the instance reaches another pod");
    let out = plugin(&["-n", &tenant, "ssh", "box", "--", "bash", "-c", dial]);
    assert_eq!(out.expect_ok("ssh").trim(), "124", "claworc-egress-restricted: a private address is dropped");
    drop(tenant_ns);
    let _ = std::fs::remove_dir_all(&home);
}
