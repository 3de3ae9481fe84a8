//! Property: wherever `partial` answers, it answers as the typed review does
//! (the oracle): allowed, the same warnings, and a patch that stores the same
//! Deployment, or no patch where it has none. And it does answer what it is
//! for (at `/mutate` every opted-in Deployment the typed review allows, new or
//! injected by any release; at `/validate` every one this release injected),
//! so that it cannot silently leave everything to the typed review.
//!
//! `CLAWORC_PROP_CASES` sets the number of cases (default 512).

use claworc_webhook::inject::Config;
use claworc_webhook::{partial, review, wire};
use k8s_openapi::api::apps::v1::Deployment;
use proptest::prelude::*;
use serde_json::{Value, json};

mod generate;
use generate::deployment;

fn body(old: Option<&Value>, object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "box", "namespace": "ns", "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
            "userInfo": {"username": "dev"}, "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap()
}

/// The Deployment stored when `patch` (a JSONPatch) is applied to `object`.
fn stored(object: &Value, patch: Option<&[u8]>) -> Deployment {
    let mut v = object.clone();
    if let Some(patch) = patch {
        let patch: json_patch::Patch = serde_json::from_slice(patch).unwrap();
        json_patch::patch(&mut v, &patch).unwrap();
    }
    serde_json::from_value(v).unwrap()
}

/// Both answers to `body` (about `object`) at `/mutate` or `/validate`:
/// whether the partial model answered, after checking that it answered as the typed review.
fn agree(object: &Value, body: &[u8], mutate: bool) -> Result<bool, TestCaseError> {
    let cfg = Config::default();
    let req = wire::parse_review(body).map_err(TestCaseError::fail)?;
    let typed = if mutate { review::mutate(&req, &cfg) } else { review::validate(&req, &cfg) };
    let fast = if mutate { partial::mutate(body, &cfg) } else { partial::validate(body, &cfg) };
    let Some(fast) = fast else { return Ok(false) };
    prop_assert!(typed.allowed, "partial allowed what the typed review denies: {}", typed.result.message);
    let (patched, fast): (bool, Value) = (fast.patched, serde_json::from_slice(&fast.review).unwrap());
    let typed: Value = serde_json::from_slice(&wire::review_json(typed).unwrap()).unwrap();
    prop_assert_eq!(patched, fast["response"].get("patch").is_some(), "the answer says it patches and does not");
    prop_assert_eq!(patched, typed["response"].get("patch").is_some(), "one patches, the other does not");
    let patch = |review: &Value| -> Option<Vec<u8>> {
        let patch = review["response"].get("patch")?.clone();
        Some(serde_json::from_value::<k8s_openapi::ByteString>(patch).unwrap().0)
    };
    prop_assert!(
        stored(object, patch(&fast).as_deref()) == stored(object, patch(&typed).as_deref()),
        "the patches store different Deployments"
    );
    // Both answers, as the server writes them, are the same JSON but for the patch's bytes.
    let answer = |mut v: Value| -> Value {
        v["response"]["patch"] = Value::Null;
        v
    };
    prop_assert_eq!(answer(fast), answer(typed));
    Ok(true)
}

fn cases() -> u32 {
    std::env::var("CLAWORC_PROP_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn partial_answers_as_the_typed_review(d in deployment(), edit in 0usize..26) {
        let created = body(None, &d);
        let answered = agree(&d, &created, true)?;
        let res = review::mutate(&wire::parse_review(&created).unwrap(), &Config::default());
        prop_assert_eq!(answered, res.allowed, "partial must answer every allowed CREATE, and only those");
        if !res.allowed {
            return Ok(());
        }
        // The stored object sent again (an UPDATE such as `kubectl apply`
        // makes): no patch, and allowed, with the same warnings.
        let stored = serde_json::to_value(stored(&d, res.patch.as_deref())).unwrap();
        let update = body(Some(&stored), &stored);
        prop_assert!(agree(&stored, &update, true)?, "partial must answer /mutate of what this release injected");
        prop_assert!(agree(&stored, &update, false)?, "partial must answer /validate of what this release injected");
        // Injected by another release: the whole template again at /mutate;
        // /validate leaves it to the typed review.
        let mut older = stored.clone();
        older["spec"]["template"]["metadata"]["annotations"]["claworc.io/injected"] = json!("0.0.9");
        let update = body(Some(&stored), &older);
        prop_assert!(agree(&older, &update, true)?, "partial must answer another release's template");
        agree(&older, &update, false)?;
        // Either template altered as another webhook or an attacker might:
        // partial answers only if the typed review allows it too.
        let mut altered = if edit % 2 == 0 { stored.clone() } else { older };
        let spec = &mut altered["spec"]["template"]["spec"];
        match edit / 2 {
            0 => spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true),
            1 => spec["initContainers"][1]["image"] = json!("evil:1"),
            2 => spec["volumes"].as_array_mut().unwrap().retain(|v| v["name"] != "claworc-no-token"),
            3 => altered["spec"]["template"]["metadata"]["labels"]["claworc.io/egress"] = json!("open"),
            4 => spec["containers"][0]["env"] = json!([{"name": "HOME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
            5 => spec["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data", "mountPropagation": "None", "subPathExpr": "$(X)"}]),
            6 => spec["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "settings"}}]),
            7 => spec["securityContext"] = json!({"runAsUser": 1000}),
            8 => {
                let keys = spec["volumes"].as_array_mut().unwrap().iter_mut().find(|v| v["name"] == "claworc-ssh-keys");
                keys.unwrap()["secret"]["secretName"] = json!("someone-elses-ssh");
            }
            9 => {
                let proxy = json!({"name": "GIT_SSH_COMMAND", "value": "ssh -o ProxyCommand=evil"});
                spec["containers"][0]["env"].as_array_mut().unwrap().insert(0, proxy);
            }
            10 => spec["initContainers"][1]["securityContext"]["readOnlyRootFilesystem"] = json!(false),
            11 => spec["initContainers"][0]["command"] = json!(["/bin/sh", "-c", "evil"]),
            _ => spec["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}}),
        }
        let update = body(Some(&stored), &altered);
        agree(&altered, &update, true)?;
        agree(&altered, &update, false)?;
    }
}

/// The fixtures the benchmarks send, as kube-apiserver sends them.
#[test]
fn partial_answers_the_fixtures_as_the_typed_review() {
    for fixture in ["admission-opted-in.json", "admission-kubectl-apply.json"] {
        // The fixture's own text: the body as kube-apiserver wrote it.
        let text = fixture_text(fixture);
        answers_as_the_typed_review(&serde_json::from_slice(&text).unwrap(), &text, fixture);
    }
}

/// What the sidecar copies from its target (the environment, `HOME` found in
/// each way `inject::home` looks, the mounts it shares, the pull policy),
/// answered as the typed review does, as a CREATE and once injected.
#[test]
fn partial_copies_the_target_as_the_typed_review() {
    let envs = [
        json!([]),
        json!([{"name": "HOME", "value": "/data/me"}, {"name": "A", "value": "1"}]),
        json!([{"name": "HOME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "HOME", "value": "/data/x"}]),
        json!([{"name": "HOME", "value": "/elsewhere"}, {"name": "GIT_SSH_COMMAND", "value": "ssh"}]),
    ];
    let mounts = [
        json!([]),
        json!([{"name": "data", "mountPath": "/data"}]),
        json!([{"name": "home", "mountPath": "/h", "subPath": "s"}, {"name": "data", "mountPath": "/data/", "readOnly": true}]),
        json!([{"name": "home", "mountPath": "/srv/home"}, {"name": "data", "mountPath": "/etc"}]),
        json!([{"name": "data", "mountPath": "/home/claworc", "mountPropagation": "None"}]),
    ];
    let images = [("img", None), ("img:latest", Some("Never")), ("reg.io:5000/img", None), ("img@sha256:0", None)];
    let base: Value = serde_json::from_slice(&fixture_text("admission-opted-in.json")).unwrap();
    for env in &envs {
        for mounts in &mounts {
            for (image, policy) in images {
                let mut review = base.clone();
                let spec = &mut review["request"]["object"]["spec"]["template"]["spec"];
                spec["volumes"] = json!([{"name": "home", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]);
                let c = &mut spec["containers"][0];
                c["env"] = env.clone();
                c["volumeMounts"] = mounts.clone();
                c["image"] = json!(image);
                c["envFrom"] = json!([{"configMapRef": {"name": "cm"}}]);
                match policy {
                    Some(p) => c["imagePullPolicy"] = json!(p),
                    None => drop(c.as_object_mut().unwrap().remove("imagePullPolicy")),
                }
                let what = format!("env {env}, mounts {mounts}, image {image}");
                answers_as_the_typed_review(&review, &serde_json::to_vec(&review).unwrap(), &what);
            }
        }
    }
}

fn fixture_text(fixture: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The opted-in `review` (sent as `text`) at `/mutate`, and the Deployment it
/// injects at `/mutate` and `/validate`: each answered by partial, as the
/// typed review does.
fn answers_as_the_typed_review(review: &Value, text: &[u8], what: &str) {
    let object = &review["request"]["object"];
    assert!(agree(object, text, true).unwrap(), "{what}: partial did not answer /mutate");
    let res = review::mutate(&wire::parse_review(text).unwrap(), &Config::default());
    let injected = serde_json::to_value(stored(object, res.patch.as_deref())).unwrap();
    let update = body(Some(&injected), &injected);
    assert!(agree(&injected, &update, true).unwrap(), "{what}: partial did not answer /mutate of it injected");
    assert!(agree(&injected, &update, false).unwrap(), "{what}: partial did not answer /validate");
}
