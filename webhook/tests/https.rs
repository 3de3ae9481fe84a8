//! The real server over real TLS: admission fixtures as kube-apiserver sends
//! them, bad requests, health, metrics, TLS versions and certificate rotation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use claworc_contract::names;
use common::{Client, TestServer, cert_der, fingerprint, fixture};
use serde_json::Value;

fn response(review: &Value) -> &Value {
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    &review["response"]
}

fn request_uid(fixture_bytes: &[u8]) -> String {
    let v: Value = serde_json::from_slice(fixture_bytes).unwrap();
    v["request"]["uid"].as_str().unwrap().to_string()
}

/// Decodes the base64 JSONPatch of a response.
fn patch(response: &Value) -> Option<json_patch::Patch> {
    // The apiserver wants a base64 string (Go []byte), never an array of numbers.
    assert!(response["patch"].is_string() || response["patch"].is_null(), "{response}");
    let bytes: k8s_openapi::ByteString = serde_json::from_value(response.get("patch")?.clone()).unwrap();
    assert_eq!(response["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&bytes.0).expect("the patch is a JSONPatch"))
}

#[tokio::test]
async fn mutates_an_opted_in_deployment_and_the_result_validates() {
    mutate_then_validate("admission-opted-in.json").await;
}

/// A `kubectl apply` as kube-apiserver sends it (captured from the test
/// cluster's apiserver: defaulted fields, managedFields, the last-applied
/// annotation): the patch leaves the Deployment's own metadata alone.
#[tokio::test]
async fn mutates_a_kubectl_apply_as_the_apiserver_sends_it() {
    let deployment = mutate_then_validate("admission-kubectl-apply.json").await;
    let sent: Value = serde_json::from_slice(&fixture("admission-kubectl-apply.json")).unwrap();
    let metadata = &deployment["metadata"];
    assert_eq!(metadata, &sent["request"]["object"]["metadata"], "the patch changed the Deployment's metadata");
    assert!(metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string(), "{metadata}");
    assert_eq!(metadata["managedFields"][0]["manager"], "kubectl-client-side-apply", "{metadata}");
}

/// Mutates the review in `fixture`, checks what a user would see, validates
/// the result and mutates it again (no patch); returns the patched Deployment.
async fn mutate_then_validate(fixture_name: &str) -> Value {
    let t = TestServer::start("mutate").await;
    let mut c = t.client().await;
    let body = fixture(fixture_name);

    let (status, review) = c.post("/mutate", body.clone()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let res = response(&review);
    assert_eq!(res["uid"], request_uid(&body).as_str());
    assert_eq!(res["allowed"], true, "{res}");
    let first = patch(res).unwrap_or_else(|| panic!("an opted-in Deployment is patched: {res}"));

    // Apply the patch as the apiserver would, and check what a user would see.
    let mut review_in: Value = serde_json::from_slice(&body).unwrap();
    let mut deployment = review_in["request"]["object"].take();
    json_patch::patch(&mut deployment, &first).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = pod["initContainers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == names::SIDECAR))
        .unwrap_or_else(|| panic!("no {} init container in {pod}", names::SIDECAR));
    assert_eq!(sidecar["restartPolicy"], "Always");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels[names::LABEL_SSH], names::SSH_ENABLED);
    assert_eq!(labels[names::LABEL_INSTANCE], "box");

    // The mutated Deployment passes validation.
    review_in["request"]["object"] = deployment.clone();
    let (status, review) = c.post("/validate", serde_json::to_vec(&review_in).unwrap()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response(&review)["allowed"], true, "{review}");

    // Mutating the mutated Deployment again changes nothing.
    let (_, review) = c.post("/mutate", serde_json::to_vec(&review_in).unwrap()).await.unwrap();
    let res = response(&review);
    assert_eq!(res["allowed"], true);
    let again = patch(res).map(|p| p.0.len()).unwrap_or(0);
    assert_eq!(again, 0, "second injection patched: {res}");

    let (_, metrics) = c.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("claworc_webhook_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("claworc_webhook_requests_total{endpoint=\"validate\",outcome=\"allowed\"} 1\n"),
        "{metrics}"
    );
    t.stop().await;
    deployment
}

#[tokio::test]
async fn leaves_a_deployment_that_did_not_opt_in_alone() {
    let t = TestServer::start("not-opted-in").await;
    let mut c = t.client().await;
    let body = fixture("admission-not-opted-in.json");
    for path in ["/mutate", "/validate"] {
        let (status, review) = c.post(path, body.clone()).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let res = response(&review);
        assert_eq!(res["uid"], request_uid(&body).as_str());
        assert_eq!(res["allowed"], true, "{path}: {res}");
        assert!(res.get("patch").is_none(), "{path}: {res}");
    }
    t.stop().await;
}

#[tokio::test]
async fn denies_a_privileged_deployment() {
    let t = TestServer::start("privileged").await;
    let mut c = t.client().await;
    let body = fixture("admission-privileged.json");
    let (status, review) = c.post("/validate", body.clone()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let res = response(&review);
    assert_eq!(res["uid"], request_uid(&body).as_str());
    assert_eq!(res["allowed"], false, "{res}");
    let message = res["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("privileged"), "{message}");
    assert!(message.contains("hostNetwork"), "{message}");

    let (_, metrics) = c.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("claworc_webhook_requests_total{endpoint=\"validate\",outcome=\"denied\"} 1\n"),
        "{metrics}"
    );
    t.stop().await;
}

#[tokio::test]
async fn answers_bad_requests_with_400_and_a_json_error() {
    let t = TestServer::start("bad").await;
    let mut c = t.client().await;
    let mut no_uid: Value = serde_json::from_slice(&fixture("admission-opted-in.json")).unwrap();
    no_uid["request"]["uid"] = Value::String(String::new());
    let mut wrong_kind: Value = serde_json::from_slice(&fixture("admission-opted-in.json")).unwrap();
    wrong_kind["kind"] = "ConversionReview".into();
    let mut v1beta1: Value = serde_json::from_slice(&fixture("admission-opted-in.json")).unwrap();
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let mut no_request = v1beta1.clone();
    no_request["apiVersion"] = "admission.k8s.io/v1".into();
    no_request.as_object_mut().unwrap().remove("request");
    let mut missing_uid = no_uid.clone();
    missing_uid["request"].as_object_mut().unwrap().remove("uid");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed JSON", b"{\"apiVersion\": ".to_vec(), "malformed"),
        ("not JSON", b"\xff\xfe garbage".to_vec(), "malformed"),
        ("empty body", Vec::new(), "malformed"),
        ("wrong kind", serde_json::to_vec(&wrong_kind).unwrap(), "kind"),
        ("wrong apiVersion", serde_json::to_vec(&v1beta1).unwrap(), "apiVersion"),
        ("no request", serde_json::to_vec(&no_request).unwrap(), "request"),
        ("empty uid", serde_json::to_vec(&no_uid).unwrap(), "uid"),
        ("missing uid", serde_json::to_vec(&missing_uid).unwrap(), "uid"),
    ];
    for path in ["/mutate", "/validate"] {
        for (what, body, needle) in &cases {
            let (status, json) = c.post(path, body.clone()).await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {what}: {json}");
            let error = json["error"].as_str().unwrap_or_else(|| panic!("{path} {what}: no error in {json}"));
            assert!(error.contains(needle), "{path} {what}: {error}");
        }
    }
    // The connection survived all of that.
    let (status, _) = c.get("/healthz").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = c.get("/metrics").await.unwrap();
    let n = cases.len();
    assert!(
        metrics.contains(&format!("claworc_webhook_requests_total{{endpoint=\"mutate\",outcome=\"error\"}} {n}\n")),
        "{metrics}"
    );
    t.stop().await;
}

#[tokio::test]
async fn answers_an_oversize_body_with_413() {
    let t = TestServer::start("oversize").await;
    let mut c = t.client().await;
    // A well-formed review padded past 3 MiB.
    let mut review: Value = serde_json::from_slice(&fixture("admission-opted-in.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["padding"] = "x".repeat(3 * 1024 * 1024).into();
    let (status, json) = c.post("/mutate", serde_json::to_vec(&review).unwrap()).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert!(json["error"].as_str().unwrap().contains("larger than"));
    // Exactly at the limit is read (and is then just malformed JSON).
    let mut c = t.client().await;
    let (status, _) = c.post("/validate", vec![b' '; 3 * 1024 * 1024]).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    t.stop().await;
}

#[tokio::test]
async fn serves_health_readiness_and_metrics() {
    let t = TestServer::start("health").await;
    let mut c = t.client().await;
    assert_eq!(c.get("/healthz").await.unwrap(), (StatusCode::OK, "ok\n".to_string()));
    assert_eq!(c.get("/readyz").await.unwrap(), (StatusCode::OK, "ready\n".to_string()));
    c.post("/validate", fixture("admission-not-opted-in.json")).await.unwrap();
    let (status, metrics) = c.get("/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    for line in [
        "# TYPE claworc_webhook_requests_total counter",
        "# TYPE claworc_webhook_request_duration_seconds histogram",
        "claworc_webhook_requests_total{endpoint=\"validate\",outcome=\"allowed\"} 1",
        "claworc_webhook_requests_total{endpoint=\"mutate\",outcome=\"allowed\"} 0",
        "claworc_webhook_request_duration_seconds_count{endpoint=\"validate\",outcome=\"allowed\"} 1",
        "claworc_webhook_request_duration_seconds_bucket{endpoint=\"validate\",outcome=\"allowed\",le=\"+Inf\"} 1",
        "claworc_webhook_ready 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    // Wrong methods and unknown paths are not admission requests.
    let (status, _) = c.request(axum::http::Method::GET, "/mutate", Vec::new()).await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = c.request(axum::http::Method::POST, "/nope", Vec::new()).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    t.stop().await;
}

#[tokio::test]
async fn speaks_tls_1_2_and_1_3_only() {
    let t = TestServer::start("versions").await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der(&t.certs.ca_cert).into()).unwrap();
        let config = rustls::ClientConfig::builder_with_protocol_versions(&[version])
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut c = Client::connect_with(t.addr(), Arc::new(config)).await.unwrap();
        assert_eq!(c.version, Some(version.version));
        assert_eq!(c.get("/healthz").await.unwrap().0, StatusCode::OK);
    }
    // A plain-HTTP request on the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf));
    t.stop().await;
}

/// New certificate files are picked up while a client keeps sending requests,
/// a bad pair is refused (the good one stays), and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_the_certificate_without_failing_a_request() {
    let t = TestServer::start_with_reload("rotate", Duration::from_millis(100)).await;
    let old_ca = t.certs.ca_cert.clone();
    let old = fingerprint(&cert_der(&t.certs.tls_cert));
    // The client trusts the old and the new CA, as a caBundle does during a rollover.
    let new_dir = common::temp_dir("rotate-new");
    let new_certs = common::gen_certs(&new_dir);
    let new = fingerprint(&cert_der(&new_certs.tls_cert));
    assert_ne!(old, new);
    let config = common::client_config(&[&old_ca, &new_certs.ca_cert]);

    let addr = t.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent, config) = (stop.clone(), sent.clone(), config.clone());
        tokio::spawn(async move {
            let body = fixture("admission-not-opted-in.json");
            let mut seen = Vec::<String>::new();
            let mut keepalive = Client::connect_with(addr, config.clone()).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                // A new connection (new handshake) and a long-lived one, side by side.
                let mut fresh = Client::connect_with(addr, config.clone()).await.expect("handshake failed");
                let (status, review) = fresh.post("/validate", body.clone()).await.expect("request failed");
                assert_eq!(status, StatusCode::OK);
                assert_eq!(review["response"]["allowed"], true);
                let (status, _) = keepalive.post("/mutate", body.clone()).await.expect("keep-alive request failed");
                assert_eq!(status, StatusCode::OK);
                let fp = fingerprint(&fresh.peer_cert);
                if seen.last() != Some(&fp) {
                    seen.push(fp);
                }
                sent.fetch_add(2, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    // A broken pair first (key of another certificate): logged and ignored.
    std::fs::copy(&new_certs.tls_cert, &t.certs.tls_cert).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut probe = Client::connect_with(addr, config.clone()).await.unwrap();
    assert_eq!(fingerprint(&probe.peer_cert), old, "a mismatched pair must not be served");
    assert_eq!(probe.get("/readyz").await.unwrap().0, StatusCode::OK);
    // Then the matching key: the new certificate is served.
    std::fs::copy(&new_certs.tls_key, &t.certs.tls_key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = Client::connect_with(addr, config.clone()).await.unwrap();
        if fingerprint(&c.peer_cert) == new {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not served within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.expect("no request may fail during the rotation");
    assert!(sent.load(Ordering::Relaxed) > 20, "too few requests: {}", sent.load(Ordering::Relaxed));
    assert_eq!(seen, vec![old.clone(), new.clone()], "served certificates, in order");

    let (_, metrics) = probe.get("/metrics").await.unwrap();
    let count = |result: &str| -> u64 {
        let prefix = format!("claworc_webhook_certificate_reloads_total{{result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap().parse().unwrap()
    };
    // (In-place copies can be seen half-written, which adds failed attempts.)
    assert!(count("ok") >= 1 && count("error") >= 1, "{metrics}");
    let _ = std::fs::remove_dir_all(&new_dir);
    t.stop().await;
}

/// Reads until the server closes the connection (or `limit` passes); returns
/// how long that took, or `None` if the connection was still open.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A slowloris: many clients that connect and send part of a request's
/// headers (or not even a TLS handshake) and then nothing. Each is cut off
/// after the header timeout, and a normal request is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_while_normal_requests_are_answered() {
    use tokio::io::AsyncWriteExt;
    let timeout = Duration::from_secs(1);
    let s = TestServer::start_with("slowloris", |o| o.header_timeout = timeout).await;
    let mut half_sent = Vec::new();
    for _ in 0..150 {
        let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("claworc-webhook.claworc-system.svc").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(common::client_config(&[&s.certs.ca_cert]))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: claworc-webhook\r\nContent-Type: app").await.unwrap();
        tls.flush().await.unwrap();
        half_sent.push(tls);
    }
    let mut no_handshake = Vec::new();
    for _ in 0..50 {
        no_handshake.push(tokio::net::TcpStream::connect(s.addr()).await.unwrap());
    }
    // Normal requests are answered while the slow clients hold their connections.
    let mut c = s.client().await;
    let (status, review) = c.post("/mutate", fixture("admission-opted-in.json")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response(&review)["allowed"], true);
    let limit = timeout * 4;
    for (i, tls) in half_sent.iter_mut().enumerate() {
        assert!(closed_within(tls, limit).await.is_some(), "half-sent request {i} still open after {limit:?}");
    }
    for (i, tcp) in no_handshake.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, limit).await.is_some(),
            "connection {i} without a TLS handshake still open after {limit:?}"
        );
    }
    // A keep-alive connection that sits idle is closed too.
    let mut idle = s.client().await;
    tokio::time::sleep(timeout * 3).await;
    assert!(idle.get("/healthz").await.is_err(), "an idle keep-alive connection stayed open");
    s.stop().await;
}

/// Past the connection cap, a new connection is closed at once.
#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let s = TestServer::start_with("cap", |o| o.max_connections = 8).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(s.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let closed = closed_within(&mut extra, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "the connection past the cap of 8 was kept");
    drop(held);
    // Once the held connections are gone, requests are served again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = s.client().await;
    assert_eq!(c.get("/healthz").await.unwrap().0, StatusCode::OK);
    s.stop().await;
}
