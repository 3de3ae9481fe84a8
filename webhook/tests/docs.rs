//! docs/webhook.md's reference section is rendered from the code: the
//! annotation table, the labels, the rules and the real denial messages.
//! This test fails when they drift; `CLAWORC_BLESS=1` rewrites the section.

use claworc_contract::annotations;
use claworc_contract::names::*;
use claworc_webhook::inject::{self, Config};
use claworc_webhook::validate::{self, RULES};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

const BEGIN: &str = "<!-- BEGIN GENERATED: webhook/tests/docs.rs -->";
const END: &str = "<!-- END GENERATED -->";

fn base(annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "box", "labels": {LABEL_SSH: SSH_ENABLED}, "annotations": annotations},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": "box"}},
            "template": {"metadata": {"labels": {"app": "box"}}, "spec": {
                "containers": [{"name": "work", "image": "busybox:1.36", "securityContext": {}}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "box-data"}}]}}}
    })
}

/// An injected Deployment with one edit: what a user could get wrong.
fn case(annotations: Value, edit: impl FnOnce(&mut Value)) -> Deployment {
    let d: Deployment = serde_json::from_value(base(annotations)).unwrap();
    let d = match inject::settings(&d) {
        Ok(s) => inject::inject(&d, &s, &Config::default()),
        Err(_) => d,
    };
    let mut v = serde_json::to_value(d).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

fn messages() -> Vec<(String, String)> {
    let c = "/spec/template/spec/containers/0";
    let pod = "/spec/template/spec";
    let set = |path: &'static str, key: &'static str, value: Value| {
        move |v: &mut Value| v.pointer_mut(path).unwrap()[key] = value
    };
    let cases: Vec<(&str, Deployment)> = vec![
        ("unknown annotation", case(json!({"claworc.io/ssh-prot": "2222"}), |_| {})),
        ("bad ssh-port", case(json!({(annotations::SSH_PORT): "22"}), |_| {})),
        ("bad forward-ports", case(json!({(annotations::FORWARD_PORTS): "80,http"}), |_| {})),
        ("bad run-as-user", case(json!({(annotations::RUN_AS_USER): "0"}), |_| {})),
        ("bad known-hosts", case(json!({(annotations::KNOWN_HOSTS): "sourceforge"}), |_| {})),
        ("bad known-hosts-configmap", case(json!({(annotations::KNOWN_HOSTS_CONFIGMAP): "Bad_Name"}), |_| {})),
        ("strict-host-key-checking: no", case(json!({(annotations::STRICT_HOST_KEY_CHECKING): "no"}), |_| {})),
        ("bad egress", case(json!({(annotations::EGRESS): "-x-"}), |_| {})),
        ("bad host-key-fingerprint", case(json!({(annotations::HOST_KEY_FINGERPRINT): "MD5:00"}), |_| {})),
        ("bad keys-rotated-at", case(json!({(annotations::KEYS_ROTATED_AT): "yesterday"}), |_| {})),
        ("unknown target-container", case(json!({(annotations::TARGET_CONTAINER): "web"}), |_| {})),
        ("replicas", case(json!({}), |v| v["spec"]["replicas"] = json!(2))),
        ("hostNetwork", case(json!({}), set(pod, "hostNetwork", json!(true)))),
        ("hostPID", case(json!({}), set(pod, "hostPID", json!(true)))),
        ("hostIPC", case(json!({}), set(pod, "hostIPC", json!(true)))),
        (
            "hostPath volume",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/volumes/0").unwrap()["hostPath"] = json!({"path": "/"})
            }),
        ),
        (
            "pod runAsUser 0",
            case(json!({}), |v| v.pointer_mut("/spec/template/spec/securityContext").unwrap()["runAsUser"] = json!(0)),
        ),
        (
            "pod seccomp Unconfined",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/securityContext").unwrap()["seccompProfile"] =
                    json!({"type": "Unconfined"})
            }),
        ),
        (
            "privileged",
            case(json!({}), |v| v.pointer_mut(&format!("{c}/securityContext")).unwrap()["privileged"] = json!(true)),
        ),
        (
            "allowPrivilegeEscalation",
            case(json!({}), |v| {
                v.pointer_mut(&format!("{c}/securityContext")).unwrap()["allowPrivilegeEscalation"] = json!(true)
            }),
        ),
        (
            "added capability",
            case(json!({}), |v| {
                v.pointer_mut(&format!("{c}/securityContext")).unwrap()["capabilities"] = json!({"add": ["NET_ADMIN"]})
            }),
        ),
        (
            "container runAsUser 0",
            case(json!({}), |v| v.pointer_mut(&format!("{c}/securityContext")).unwrap()["runAsUser"] = json!(0)),
        ),
        (
            "runAsNonRoot false",
            case(json!({}), |v| v.pointer_mut(&format!("{c}/securityContext")).unwrap()["runAsNonRoot"] = json!(false)),
        ),
        (
            "container seccomp Unconfined",
            case(json!({}), |v| {
                v.pointer_mut(&format!("{c}/securityContext")).unwrap()["seccompProfile"] =
                    json!({"type": "Unconfined"})
            }),
        ),
        (
            "hostPort",
            case(json!({}), |v| v.pointer_mut(c).unwrap()["ports"] = json!([{"containerPort": 22, "hostPort": 22}])),
        ),
        ("no containers", case(json!({}), |v| v.pointer_mut(pod).unwrap()["containers"] = json!([]))),
        ("sidecar missing", serde_json::from_value(base(json!({}))).unwrap()),
        (
            "sidecar altered",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/initContainers/1").unwrap()["image"] = json!("other:1")
            }),
        ),
        (
            "claworc volume altered",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/volumes/1/secret").unwrap()["secretName"] = json!("other")
            }),
        ),
        (
            "volume type outside restricted",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/volumes/0").unwrap()["gitRepo"] = json!({"repository": "x"})
            }),
        ),
        (
            "AppArmor Unconfined",
            case(json!({}), |v| {
                v.pointer_mut(&format!("{c}/securityContext")).unwrap()["appArmorProfile"] =
                    json!({"type": "Unconfined"})
            }),
        ),
        (
            "SELinux type",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/securityContext").unwrap()["seLinuxOptions"] =
                    json!({"type": "spc_t"})
            }),
        ),
        (
            "procMount",
            case(json!({}), |v| {
                v.pointer_mut(&format!("{c}/securityContext")).unwrap()["procMount"] = json!("Unmasked")
            }),
        ),
        (
            "unsafe sysctl",
            case(json!({}), |v| {
                v.pointer_mut("/spec/template/spec/securityContext").unwrap()["sysctls"] =
                    json!([{"name": "kernel.msgmax", "value": "65536"}])
            }),
        ),
        (
            "GID 0",
            case(json!({}), |v| v.pointer_mut("/spec/template/spec/securityContext").unwrap()["fsGroup"] = json!(0)),
        ),
        (
            "mount over the sidecar's paths",
            case(json!({}), |v| {
                v.pointer_mut(c).unwrap()["volumeMounts"] = json!([{"name": "data", "mountPath": "/etc/claworc/ssh/"}])
            }),
        ),
        (
            "mount of the sidecar's volume",
            case(json!({}), |v| {
                v.pointer_mut(c).unwrap()["volumeMounts"] = json!([{"name": VOLUME_KEYS, "mountPath": "/keys"}])
            }),
        ),
        (
            "no name",
            case(json!({}), |v| {
                v["metadata"].as_object_mut().unwrap().remove("name");
                v["metadata"]["generateName"] = json!("box-");
            }),
        ),
        (
            "hardening stripped after claworc",
            case(json!({}), |v| {
                v.pointer_mut(&format!("{c}/securityContext")).unwrap().as_object_mut().unwrap().remove("capabilities");
            }),
        ),
        (
            "warnings",
            case(json!({(annotations::STRICT_HOST_KEY_CHECKING): "accept-new"}), |v| {
                v["spec"]["strategy"] = json!({"type": "RollingUpdate"})
            }),
        ),
    ];
    let mut out = Vec::new();
    let mut opted_out = case(json!({}), |_| {});
    opted_out.metadata.labels = None;
    for (what, d) in cases {
        let verdict = validate::validate(&d, &Config::default());
        let lines = if what == "warnings" { verdict.warnings } else { verdict.denials };
        assert!(!lines.is_empty(), "case {what:?} produced no message");
        out.extend(lines.into_iter().map(|m| (what.to_string(), m)));
    }
    let what = "label removed, markers kept";
    out.extend(validate::opted_out(&opted_out).denials.into_iter().map(|m| (what.to_string(), m)));
    out
}

fn render() -> String {
    let mut md =
        format!("{BEGIN}\n\n### Annotations on the Deployment\n\n| annotation | default | meaning |\n|---|---|---|\n");
    for a in annotations::ALL {
        md += &format!("| `{}` | `{}` | {} |\n", a.key, a.default, a.meaning);
    }
    md += &format!(
        "\nOpt-in label on the Deployment: `{LABEL_SSH}: \"{SSH_ENABLED}\"`.\n\n### Written by the webhook on the pod template\n\n"
    );
    md += &format!(
        "- labels `{LABEL_INSTANCE}: <name>`, `{LABEL_SSH}: {SSH_ENABLED}`, `{LABEL_EGRESS}: <profile>`, `{LABEL_MANAGED_BY}: {MANAGED_BY}`\n"
    );
    md += &format!(
        "- annotations `{ANNOTATION_INJECTED}: <webhook version>` and `{ANNOTATION_KNOWN_HOSTS_DATA}` (the `known_hosts` content)\n"
    );
    md += &format!(
        "- the init container `{INSTALLER}` (the sidecar image: copies `claworc-sshd` to `{SSHD_BINARY}`) and the native sidecar `{SIDECAR}` (the target container's image running `{SSHD_BINARY}`); volumes `{VOLUME_KEYS}`, `{VOLUME_RUN}` (the delivered binary), `{VOLUME_NO_TOKEN}` (an empty directory over `{SERVICE_ACCOUNT_TOKEN_DIR}` in the sidecar), `{VOLUME_HOME}` (`{HOME_DIR}`, when the target has no home volume), `{VOLUME_KNOWN_HOSTS}`, `{VOLUME_KNOWN_HOSTS_USER}`\n"
    );
    md += &format!(
        "- in every container: `{KNOWN_HOSTS_PATH}` (pinned keys), `{KNOWN_HOSTS2_PATH}` (the ConfigMap's, if named) and `{ENV_GIT_SSH_COMMAND}`\n"
    );
    md += "\n### Rules\n\n| field | refused |\n|---|---|\n";
    md += "| `metadata.annotations[\"claworc.io/*\"]` | unknown keys (the nearest known key is suggested) and malformed values |\n";
    for r in RULES {
        md += &format!("| `{}` | {} |\n", r.field, r.refuses);
    }
    md += "\n### Messages\n\nWhat `kubectl apply` prints (after `admission webhook \"…\" denied the request: claworc: `), case by case:\n\n";
    for (what, m) in messages() {
        md += &format!("- {what}: `{}`\n", m.replace('`', "'"));
    }
    md + "\n" + END
}

#[test]
fn docs_webhook_md_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhook.md");
    let doc = std::fs::read_to_string(path).expect("docs/webhook.md is missing");
    let (head, rest) = doc.split_once(BEGIN).expect("docs/webhook.md lacks the generated section's BEGIN marker");
    let (_, tail) = rest.split_once(END).expect("docs/webhook.md lacks the generated section's END marker");
    let want = format!("{head}{}{tail}", render());
    if std::env::var_os("CLAWORC_BLESS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    assert!(
        doc == want,
        "docs/webhook.md is out of date with the code: run `CLAWORC_BLESS=1 cargo test -p claworc-webhook --test docs` and review the diff"
    );
}
