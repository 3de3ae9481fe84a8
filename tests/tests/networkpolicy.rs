//! NetworkPolicies enforced on the real node (kube-network-policies, patched for
//! this kernel; tests/cluster/node-up). First proves enforcement is on (a
//! default-deny blocks what was reachable), then checks the policies claworc ships
//! (`tenant create` applies manifests/network): no ingress to an instance from
//! other pods, the "restricted" egress profile blocks private addresses, and each
//! egress profile against the metadata addresses and an "internet" address that
//! the test creates outside the cluster, in a network namespace of its own.
//!
//! A connection is "refused" when nothing listens (the kernel answers RST: errno
//! 111) and "dropped" when a policy eats it (no answer within 3 s: errno 11), so
//! the two are told apart.

use std::path::PathBuf;
use std::time::Duration;

use claworc_e2e::{Cluster, TestNamespace, plugin_bin, run, unique_name, use_real_node, wait_for, workload_image};

const OPEN: &str = "0";
const REFUSED: &str = "111";
const DROPPED: &str = "11";

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

/// A web server on 0.0.0.0:8080, Ready only once it listens (python takes a
/// moment to start, longer on a loaded machine).
fn web_server_pod(name: &str, labels: serde_json::Value) -> String {
    let mut pod: serde_json::Value = serde_json::from_str(&restricted_pod(
        name,
        labels,
        &["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
    ))
    .unwrap();
    pod["spec"]["containers"][0]["readinessProbe"] =
        serde_json::json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1});
    pod.to_string()
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
    let server = web_server_pod("server", serde_json::json!({"app": "server"}));
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
    let open = web_server_pod("open-server", serde_json::json!({"app": "open"}));
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

/// Addresses outside the cluster, made by the test in a network namespace of its
/// own behind a veth pair, routed from the node: the cloud metadata endpoints
/// and an address standing for the internet (TEST-NET-2). Nothing listens there,
/// so a connection that arrives is refused (RST), and one a policy eats is
/// dropped. The namespace (and the veth pair) go when the process holding it is
/// killed.
struct Outside {
    _holder: claworc_e2e::KillOnDrop,
}

const METADATA: [&str; 2] = ["169.254.169.254", "100.100.100.200"];
const INTERNET: &str = "198.51.100.7";

impl Outside {
    fn new() -> Outside {
        let holder = std::process::Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .spawn()
            .expect("unshare --net (util-linux; the tests run as root under tests/cluster/with-cluster)");
        let pid = holder.id().to_string();
        let holder = claworc_e2e::KillOnDrop(holder);
        let sh = |script: &str| {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-euxc", script]);
            run(cmd, None).expect_ok(script);
        };
        // Wait until the child has its own namespace.
        wait_for("the outside namespace", Duration::from_secs(5), || {
            let mine = std::fs::read_link("/proc/self/ns/net").ok()?;
            let its = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            (mine != its).then_some(())
        });
        let routes: String =
            METADATA.iter().chain([&INTERNET]).map(|a| format!("ip route add {a}/32 dev cl-out0\n")).collect();
        let addrs: String =
            METADATA.iter().chain([&INTERNET]).map(|a| format!("ip addr add {a}/32 dev cl-out1\n")).collect();
        sh(&format!(
            "ip link add cl-out0 type veth peer name cl-out1 netns {pid}\n\
             ip addr add 10.99.2.1/32 dev cl-out0\nip link set cl-out0 up\n{routes}"
        ));
        sh(&format!(
            "nsenter -t {pid} -n sh -euxc 'ip link set lo up\nip link set cl-out1 up\n{addrs}\
             ip route add 10.99.2.1/32 dev cl-out1\nip route add default via 10.99.2.1 dev cl-out1'"
        ));
        Outside { _holder: holder }
    }
}

/// From inside an instance (over SSH): dial each host:port, "HOST 0" (connected),
/// "HOST 1" (refused: the address was reached) or "HOST 124" (dropped).
fn dial_from_instance(plugin: &dyn Fn(&[&str]) -> claworc_e2e::Output, ns: &str, targets: &[(&str, u16)]) -> String {
    let script: String = targets
        .iter()
        .map(|(h, p)| format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{h}/{p}' 2>/dev/null; echo {h} $?; "))
        .collect();
    plugin(&["-n", ns, "ssh", "box", "--", "bash", "-c", &script]).expect_ok("ssh").to_string()
}

#[test]
fn egress_profiles_and_the_metadata_addresses_as_documented() {
    let outside = Outside::new();
    let home: PathBuf = std::env::temp_dir().join(unique_name("claworc-np-egress-xdg"));
    std::fs::create_dir_all(&home).unwrap();
    let plugin = |args: &[&str]| {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &home).args(args);
        run(cmd, None)
    };

    // A namespace without claworc's policies: an instance for contrast, and a web
    // server pod (a private address: the pod network).
    let plain = TestNamespace::with_labels("np-plain", &[("pod-security.kubernetes.io/enforce", "restricted")]);
    use_real_node(plain.name());
    let server = web_server_pod("server", serde_json::json!({"app": "server"}));
    plain.apply(&server).expect_ok("server pod");

    // One instance per profile, each in a tenant namespace of its own (`tenant create`
    // applies the shipped policies); the profile set by the claworc.io/egress annotation.
    let mut namespaces = vec![];
    for profile in ["restricted", "none", "open"] {
        let tenant = unique_name(&format!("t-np-{profile}"));
        let kubeconfig = home.join(format!("{tenant}.kubeconfig"));
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &home)
            .args(["tenant", "create", &tenant, "--ttl", "1h", "--output"])
            .arg(&kubeconfig);
        run(cmd, None).expect_ok("tenant create");
        namespaces.push((profile, TestNamespace::adopt(tenant.clone())));
        use_real_node(&tenant);
    }
    // (what the results are filed under, the namespace, whether it has claworc's policies)
    let mut all: Vec<(&str, &str, bool)> = namespaces.iter().map(|(p, ns)| (*p, ns.name(), true)).collect();
    all.push(("no policy", plain.name(), false));
    for (profile, ns, policies) in &all {
        plugin(&["-n", ns, "create", "box", "--image", &workload_image()]).expect_ok("create box");
        if *policies {
            let annotation = format!("claworc.io/egress={profile}");
            Cluster::get()
                .kubectl(&["-n", ns, "annotate", "--overwrite", "deployment", "box", &annotation])
                .expect_ok("annotate the egress profile");
        }
    }
    plain.kubectl(&["wait", "--for=condition=Ready", "pod/server", "--timeout=60s"]).expect_ok("server Ready");
    let server_ip = pod_ip(plain.name(), "app=server");
    for (profile, ns, policies) in &all {
        Cluster::get()
            .kubectl(&["-n", ns, "rollout", "status", "deployment/box", "--timeout=3m"])
            .expect_ok("the instance's rollout");
        if *policies {
            // The old pod (default profile) may still be terminating: wait until only the new one is there.
            wait_for("the instance's pod with the profile's label", Duration::from_secs(60), || {
                let labels = Cluster::get().kubectl(&[
                    "-n",
                    ns,
                    "get",
                    "pods",
                    "-l",
                    "claworc.io/instance=box",
                    "-o",
                    "jsonpath={.items[*].metadata.labels.claworc\\.io/egress}",
                ]);
                (labels.stdout.trim() == *profile).then_some(())
            });
        }
    }

    let targets = [(METADATA[0], 80), (METADATA[1], 80), (INTERNET, 80), (server_ip.as_str(), 8080)];
    // What each profile promises (docs/plugin.md, manifests/network/): 0 connected,
    // 1 reached and refused, 124 dropped.
    let expected = [
        ("no policy", ["1", "1", "1", "0"]),
        ("restricted", ["124", "124", "1", "124"]),
        ("none", ["124", "124", "124", "124"]),
        ("open", ["124", "124", "1", "0"]),
    ];
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .iter()
            .map(|(profile, ns, _)| {
                let plugin = &plugin;
                let targets = &targets;
                s.spawn(move || (profile.to_string(), dial_from_instance(plugin, ns, targets)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (profile, want) in expected {
        let got = &results.iter().find(|(p, _)| p == profile).unwrap().1;
        for ((host, _), code) in targets.iter().zip(want) {
            assert!(
                got.lines().any(|l| l == format!("{host} {code}")),
                "profile {profile}: {host} should give {code} (0 connected, 1 refused, 124 dropped); got:\n{got}"
            );
        }
    }
    drop(namespaces);
    drop(outside);
    let _ = std::fs::remove_dir_all(&home);
}

/// The webhook's own NetworkPolicy (manifests/networkpolicy.yaml), on the pods
/// tests/cluster/webhook-up deployed: its https port answers another pod, any
/// other port is dropped (without the policy nothing listening means refused).
#[test]
fn the_webhook_pods_are_reached_on_their_https_port_only() {
    let ns = TestNamespace::with_labels("np-webhook", &[("pod-security.kubernetes.io/enforce", "restricted")]);
    use_real_node(ns.name());
    let ip = pod_ip(claworc_contract::names::WEBHOOK_NAMESPACE, "app.kubernetes.io/name=claworc-webhook");
    assert_eq!(connect_from_pod(&ns, &ip, 8443), OPEN, "the webhook's https port");
    assert_eq!(connect_from_pod(&ns, &ip, 8444), DROPPED, "another port of the webhook's pod");
}
