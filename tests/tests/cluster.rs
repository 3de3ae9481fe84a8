//! The local control plane itself: API, fake nodes, and the two kubelet features
//! kwok serves for us (port-forward, logs), all through the real kube-apiserver
//! and the real kubectl, on loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use claworc_e2e::{Cluster, KillOnDrop, TestNamespace, http_server, kubectl, wait_for};
use serde_json::Value;

#[test]
fn api_is_up_and_fake_nodes_are_ready_on_loopback() {
    let version = kubectl(&["version", "-o", "json"]).json();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.37.2", "{version}");

    let nodes = kubectl(&["get", "nodes", "-o", "json"]).json();
    let nodes = nodes["items"].as_array().expect("items");
    let fake: Vec<&Value> =
        nodes.iter().filter(|n| n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake").collect();
    assert_eq!(fake.len(), 2, "expected 2 kwok nodes: {nodes:?}");
    for node in fake {
        let name = &node["metadata"]["name"];
        let ready = node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "node {name} is not Ready: {}", node["status"]);
        for addr in node["status"]["addresses"].as_array().expect("addresses") {
            if addr["type"] == "InternalIP" {
                assert_eq!(addr["address"], "127.0.0.1", "node {name}");
            }
        }
    }
}

/// Create a pod and wait until kwok reports it Running on one of its nodes.
fn running_pod(ns: &TestNamespace, name: &str, container_port: u16) {
    ns.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"containers": [{{"name": "main", "image": "example.invalid/none:1",
                      "ports": [{{"containerPort": {container_port}}}]}}]}}}}"#
    ))
    .expect_ok("create pod");
    wait_for("the pod to run", Duration::from_secs(60), || {
        let pod = ns.kubectl(&["get", "pod", name, "-o", "json"]).json();
        (pod["status"]["phase"] == "Running").then_some(())
    });
}

/// `kubectl port-forward TARGET :PORT` in the background, and the local port it chose.
fn port_forward(ns: &TestNamespace, target: &str, port: u16) -> (KillOnDrop, u16) {
    let cluster = Cluster::get();
    let mut cmd = cluster.command(cluster.kubectl_path());
    cmd.args(["-n", ns.name(), "port-forward", target, &format!(":{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut pf = KillOnDrop(cmd.spawn().expect("kubectl port-forward"));
    // "Forwarding from 127.0.0.1:NNNNN -> 8080"
    let mut stdout = BufReader::new(pf.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading kubectl's stdout: it dies of SIGPIPE if the pipe is closed.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let forwarded = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {line:?}"));
    (pf, forwarded)
}

#[test]
fn port_forward_reaches_a_local_server_through_the_apiserver() {
    // A tiny HTTP server on an ephemeral loopback port, standing in for a pod's process.
    let token = claworc_e2e::unique_name("reached");
    let local_port = http_server(token.clone());

    let ns = TestNamespace::new("portfwd");
    running_pod(&ns, "web", 8080);
    // kwok answers port-forward requests for this pod by dialling the target.
    ns.apply(&format!(
        r#"{{"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward", "metadata": {{"name": "web"}},
            "spec": {{"forwards": [{{"ports": [8080], "target": {{"port": {local_port}, "address": "127.0.0.1"}}}}]}}}}"#
    ))
    .expect_ok("create PortForward");

    // kwok may not have seen the PortForward object yet, and kubectl port-forward
    // exits after a failed stream: retry, starting kubectl again when it has.
    let mut pf: Option<(KillOnDrop, u16)> = None;
    let reply = wait_for("an HTTP reply through port-forward", Duration::from_secs(30), || {
        if pf.as_mut().is_none_or(|(p, _)| p.0.try_wait().ok().flatten().is_some()) {
            pf = Some(port_forward(&ns, "pod/web", 8080));
        }
        let (_, forwarded) = pf.as_ref()?;
        let mut conn = TcpStream::connect(("127.0.0.1", *forwarded)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        // Read until the body arrived: kubectl port-forward does not always pass on
        // the server's close promptly, so do not wait for EOF.
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&reply).contains(&token) {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    });
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
}

#[test]
fn kubectl_logs_serves_a_local_file() {
    let ns = TestNamespace::new("logs");
    running_pod(&ns, "app", 8080);
    // kwok-controller runs on this machine, so it can read a file we write. It must
    // be in the CRI log format ("<RFC 3339 time> <stream> F <line>"), as a
    // kubelet's container log files are; kwok rejects plain text.
    let dir = std::env::temp_dir().join(claworc_e2e::unique_name("claworc-logs"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("main.log");
    let token = claworc_e2e::unique_name("log-line");
    std::fs::write(
        &file,
        format!(
            "2026-01-01T00:00:00.000000000Z stdout F first line\n2026-01-01T00:00:01.000000000Z stderr F {token}\n"
        ),
    )
    .unwrap();
    ns.apply(&format!(
        r#"{{"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": {{"name": "app"}},
            "spec": {{"logs": [{{"containers": ["main"], "logsFile": "{}"}}]}}}}"#,
        file.display()
    ))
    .expect_ok("create Logs");

    let logs = wait_for("kubectl logs to serve the file", Duration::from_secs(30), || {
        let out = ns.kubectl(&["logs", "pod/app", "-c", "main"]);
        (out.success() && out.stdout.contains(&token)).then_some(out.stdout)
    });
    assert_eq!(logs, format!("first line\n{token}\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
