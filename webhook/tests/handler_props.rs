//! Whatever arrives at `/mutate` or `/validate`, the handler answers 200, 400
//! or 413 (never a panic, never a 5xx), and a 200 is an AdmissionReview that
//! echoes the request's uid. The axum router is called directly (no TLS).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use claworc_webhook::inject::Config;
use claworc_webhook::server::{AppState, BODY_LIMIT, router};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn call(path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let app = router(AppState::new(Config::default()));
    let req = Request::builder().method("POST").uri(path).header("content-type", "application/json");
    let res = app.oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn check(status: StatusCode, body: &[u8], sent: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE].contains(&status),
        "status {status} for {}",
        String::from_utf8_lossy(sent)
    );
    let json: Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(format!("body not JSON: {e}")))?;
    if status == StatusCode::OK {
        prop_assert_eq!(&json["apiVersion"], "admission.k8s.io/v1");
        prop_assert_eq!(&json["kind"], "AdmissionReview");
        let sent: Value = serde_json::from_slice(sent).unwrap();
        prop_assert_eq!(&json["response"]["uid"], &sent["request"]["uid"]);
        prop_assert!(json["response"]["allowed"].is_boolean());
        prop_assert!(json["response"]["patch"].is_null() || json["response"]["patch"].is_string());
    } else {
        prop_assert!(json["error"].is_string(), "{json}");
    }
    Ok(())
}

/// Arbitrary JSON of bounded depth.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("claworc.io/ssh-port".to_string()),
        Just("claworc.io/forward-ports".to_string()),
        Just("claworc.io/egress".to_string()),
        Just("claworc.io/strict-host-key-checking".to_string()),
        Just("claworc.io/target-container".to_string()),
        Just("claworc.io/run-as-user".to_string()),
        Just("claworc.io/known-hosts".to_string()),
        "claworc\\.io/[a-z-]{0,12}",
        "[a-z./-]{1,16}",
    ]
}

fn container() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("app".to_string()), Just("claworc-sshd".to_string()), "[a-z]{1,6}"],
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec(
            prop_oneof![Just("NET_ADMIN"), Just("NET_BIND_SERVICE"), Just("ALL")],
            0..3,
        )),
        prop::collection::vec(("[a-z]{1,5}", "/[a-z]{1,6}"), 0..3),
        prop::option::of(prop_oneof![Just("Always"), Just("Never")]),
    )
        .prop_map(|(name, privileged, caps, mounts, restart)| {
            let mut c = json!({ "name": name, "image": "img:1" });
            if let Some(p) = privileged {
                c["securityContext"] = json!({ "privileged": p });
            }
            if let Some(caps) = caps {
                c["securityContext"]["capabilities"] = json!({ "add": caps });
            }
            if !mounts.is_empty() {
                c["volumeMounts"] = mounts.iter().map(|(n, p)| json!({"name": n, "mountPath": p})).collect();
            }
            if let Some(r) = restart {
                c["restartPolicy"] = json!(r);
            }
            c
        })
}

/// AdmissionReviews shaped like the apiserver's, with arbitrary-ish Deployments.
fn review() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("admission.k8s.io/v1"), Just("admission.k8s.io/v1beta1"), Just("")],
        prop_oneof![8 => Just("AdmissionReview"), 1 => Just("Pod")],
        prop_oneof![Just(String::new()), "[a-f0-9-]{1,36}"],
        prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE"), Just("CONNECT"), Just("PATCH")],
        prop::option::of(any::<bool>()),
        prop::collection::btree_map(key(), ".{0,10}", 0..5),
        prop::collection::vec(container(), 0..3),
        prop::collection::vec(container(), 0..2),
        prop::option::of(-2i64..4),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of(any_json()),
    )
        .prop_map(
            |(api, kind, uid, op, opted, annotations, containers, inits, replicas, (host_net, host_pid, dry), junk)| {
                let mut labels = json!({"app": "x"});
                if let Some(o) = opted {
                    labels["claworc.io/ssh"] = json!(if o { "enabled" } else { "disabled" });
                }
                let mut object = json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": { "name": "x", "namespace": "ns", "labels": labels, "annotations": annotations },
                    "spec": {
                        "selector": { "matchLabels": { "app": "x" } },
                        "template": {
                            "metadata": { "labels": { "app": "x" } },
                            "spec": { "containers": containers, "initContainers": inits, "hostNetwork": host_net, "hostPID": host_pid }
                        }
                    }
                });
                if let Some(r) = replicas {
                    object["spec"]["replicas"] = json!(r);
                }
                if let Some(junk) = junk {
                    object["spec"]["template"]["metadata"]["annotations"] = json!({ "junk": junk.to_string() });
                }
                json!({
                    "apiVersion": api,
                    "kind": kind,
                    "request": {
                        "uid": uid,
                        "kind": { "group": "apps", "version": "v1", "kind": "Deployment" },
                        "resource": { "group": "apps", "version": "v1", "resource": "deployments" },
                        "name": "x",
                        "namespace": "ns",
                        "operation": op,
                        "userInfo": { "username": "u" },
                        "object": object,
                        "oldObject": null,
                        "dryRun": dry
                    }
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_400(body in prop::collection::vec(any::<u8>(), 0..512), validate in any::<bool>()) {
        let path = if validate { "/validate" } else { "/mutate" };
        let (status, out) = runtime().block_on(call(path, body.clone()));
        check(status, &out, &body)?;
        // Random bytes are not an AdmissionReview.
        prop_assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn arbitrary_json_is_answered(value in any_json(), validate in any::<bool>()) {
        let path = if validate { "/validate" } else { "/mutate" };
        let body = serde_json::to_vec(&value).unwrap();
        let (status, out) = runtime().block_on(call(path, body.clone()));
        check(status, &out, &body)?;
    }

    #[test]
    fn admission_reviews_are_answered(review in review(), validate in any::<bool>()) {
        let path = if validate { "/validate" } else { "/mutate" };
        let body = serde_json::to_vec(&review).unwrap();
        let (status, out) = runtime().block_on(call(path, body.clone()));
        check(status, &out, &body)?;
        let well_formed = review["apiVersion"] == "admission.k8s.io/v1"
            && review["kind"] == "AdmissionReview"
            && review["request"]["uid"] != ""
            && review["request"]["operation"] != "PATCH";
        prop_assert_eq!(status == StatusCode::OK, well_formed, "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn truncated_fixtures_get_400(cut in 0usize..3400) {
        let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/admission-opted-in.json")).unwrap();
        let body = fixture[..cut.min(fixture.trim_ascii_end().len() - 1)].to_vec();
        let (status, out) = runtime().block_on(call("/mutate", body.clone()));
        check(status, &out, &body)?;
        prop_assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let body = vec![b'{'; BODY_LIMIT + 1];
    let (status, out) = runtime().block_on(call("/validate", body.clone()));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert!(json["error"].as_str().unwrap().contains("larger than"));
}
