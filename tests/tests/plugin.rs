//! `kubectl claworc` against the real local control plane: create/delete and their
//! flags, rollback of a failed create, and the error paths (one line on stderr, the
//! right exit code). Tenants are in `tenant.rs`.
//!
//! The plugin binary is `target/debug/kubectl-claworc` (built once per test process
//! with `cargo build -p kubectl-claworc`); every test has its own namespace and its
//! own `XDG_CONFIG_HOME`. `rotate-keys` proves the new key with a real SSH login, so
//! it is tested in `ssh.rs`, which runs a real sshd behind the instance.

use std::time::Duration;

use claworc_contract::{annotations as ann, names};
use claworc_e2e::{TestNamespace, User, assert_fails, mode, secret_data, unique_name, wait_for};
use serde_json::Value;

fn get_json(ns: &TestNamespace, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend(["-o", "json"]);
    ns.kubectl(&args).json()
}

fn gone(ns: &TestNamespace, kind_name: &str) -> bool {
    let out = ns.kubectl(&["get", kind_name, "--ignore-not-found", "-o", "name"]);
    out.success() && out.stdout.trim().is_empty()
}

fn secret_text(ns: &TestNamespace, secret: &str, key: &str) -> String {
    let data = secret_data(ns.name(), secret).unwrap_or_else(|| panic!("no Secret {secret}"));
    data.get(key).unwrap_or_else(|| panic!("no {key} in {secret}")).clone()
}

#[test]
fn create_matches_dry_run_and_delete_cleans_up() {
    let ns = TestNamespace::new("plugin-create");
    let user = User::new();
    let n = ns.name();
    let common = [
        "-n",
        n,
        "create",
        "dev",
        "--image",
        "ghcr.io/acme/agent:1.4",
        "--forward-ports",
        "6080",
        "--volume",
        "home=/home/agent:1Gi",
        "--env",
        "LOG_LEVEL=debug",
    ];

    // --dry-run=client touches nothing and prints what create makes.
    let mut dry = common.to_vec();
    dry.extend(["--dry-run=client", "-o", "json"]);
    let list: Value = serde_json::from_str(&user.ok(&dry)).unwrap();
    assert!(!user.store().join("keys").exists(), "dry run wrote keys");
    assert!(gone(&ns, "deployment/dev"));
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "PersistentVolumeClaim", "Deployment"]);
    // and the YAML form is accepted by kubectl apply (server-side dry run)
    let mut dry_yaml = common.to_vec();
    dry_yaml.extend(["--dry-run=client", "-o", "yaml"]);
    let yaml = user.ok(&dry_yaml);
    ns.kubectl_with_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml))
        .expect_ok("kubectl apply of the dry-run YAML");

    user.ok(&common);
    let d = get_json(&ns, &["deployment", "dev"]);
    let want = &items[2];
    assert_eq!(d["metadata"]["labels"], want["metadata"]["labels"]);
    assert_eq!(d["metadata"]["labels"][names::LABEL_SSH], names::SSH_ENABLED);
    assert_eq!(d["metadata"]["annotations"][ann::FORWARD_PORTS], "6080");
    assert!(d["metadata"]["annotations"][ann::HOST_KEY_FINGERPRINT].as_str().unwrap().starts_with("SHA256:"));
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(d["spec"]["selector"], want["spec"]["selector"]);
    let (c, wc) = (&d["spec"]["template"]["spec"]["containers"][0], &want["spec"]["template"]["spec"]["containers"][0]);
    for field in ["name", "image"] {
        assert_eq!(c[field], wc[field], "container {field}");
    }
    // The webhook (when installed) adds GIT_SSH_COMMAND and the known_hosts mount:
    // everything the plugin wrote must be there.
    for field in ["env", "volumeMounts"] {
        for item in wc[field].as_array().unwrap() {
            assert!(c[field].as_array().unwrap().contains(item), "container {field} lacks {item}: {}", c[field]);
        }
    }
    let pvc = get_json(&ns, &["pvc", "dev-home"]);
    assert_eq!(pvc["spec"]["resources"], items[1]["spec"]["resources"]);
    let secret_name = names::default_secret_name("dev");
    let s = get_json(&ns, &["secret", &secret_name]);
    for key in [names::SECRET_AUTHORIZED_KEYS, names::SECRET_HOST_KEY, names::SECRET_HOST_KEY_PUB] {
        assert!(s["data"][key].is_string(), "secret lacks {key}");
    }

    // The key store: 0600 files in 0700 directories, and the pinned host key.
    let dir = user.instance_dir(n, "dev").expect("instance dir in the key store");
    assert_eq!(mode(&dir.join("id_ed25519")), 0o600);
    assert_eq!(mode(&dir.join("id_ed25519.pub")), 0o600);
    for d in dir.ancestors().take(5) {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    assert_eq!(mode(&user.store().join("known_hosts")), 0o600);
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    assert_eq!(secret_text(&ns, &secret_name, names::SECRET_AUTHORIZED_KEYS).trim(), public.trim());
    let host_pub = secret_text(&ns, &secret_name, names::SECRET_HOST_KEY_PUB);
    let host_b64 = host_pub.split_whitespace().nth(1).unwrap();
    assert!(
        user.known_hosts()
            .lines()
            .any(|l| l.starts_with("claworc/") && l.ends_with(&format!("/{n}/dev ssh-ed25519 {host_b64}"))
                || l.contains(&format!("/{n}/dev ssh-ed25519 {host_b64}"))),
        "{}",
        user.known_hosts()
    );

    // status / list
    let st: Value = serde_json::from_str(&user.ok(&["-n", n, "status", "dev", "-o", "json"])).unwrap();
    assert_eq!(st["hostKeyFingerprint"], d["metadata"]["annotations"][ann::HOST_KEY_FINGERPRINT]);
    assert_eq!(st["localClientKey"], true);
    let l: Value = serde_json::from_str(&user.ok(&["-n", n, "list", "-o", "json"])).unwrap();
    assert_eq!(l.as_array().unwrap().len(), 1);

    // A second create of the same name: exit 4, nothing changed.
    assert_fails(&user.run(&common), 4, "already exists");
    assert_eq!(std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap(), public);

    user.ok(&["-n", n, "delete", "dev"]);
    assert!(gone(&ns, "deployment/dev"));
    assert!(gone(&ns, &format!("secret/{secret_name}")));
    assert!(
        gone(&ns, "pvc/dev-home") || get_json(&ns, &["pvc", "dev-home"])["metadata"]["deletionTimestamp"].is_string()
    );
    assert!(user.instance_dir(n, "dev").is_none(), "keys left behind");
    assert!(!user.known_hosts().contains(&format!("/{n}/dev ")), "pin left behind");
    assert_fails(&user.run(&["-n", n, "delete", "dev"]), 3, "not found");
}

#[test]
fn delete_keeps_volumes_and_host_key_and_create_reuses_it() {
    let ns = TestNamespace::new("plugin-keep");
    let user = User::new();
    let n = ns.name();
    user.ok(&["-n", n, "create", "box", "--image", "busybox:1", "--volume", "data=/data:1Gi"]);
    let fp = get_json(&ns, &["deployment", "box"])["metadata"]["annotations"][ann::HOST_KEY_FINGERPRINT].clone();
    user.ok(&["-n", n, "delete", "box", "--keep-volumes", "--keep-host-key"]);
    assert!(gone(&ns, "deployment/box"));
    assert!(!gone(&ns, "pvc/box-data"), "--keep-volumes deleted the claim");
    let dir = user.instance_dir(n, "box").expect("kept host key");
    assert_eq!(mode(&dir.join("host_ed25519_key")), 0o600);
    assert!(!dir.join("id_ed25519").exists(), "client key kept");
    assert!(user.known_hosts().contains(&format!("/{n}/box ")), "pin dropped");

    // The claim still exists, so create with the same volume fails at that step and
    // rolls back — the kept host key survives that too.
    let out = user.run(&["-n", n, "create", "box", "--image", "busybox:1", "--volume", "data=/data:1Gi"]);
    assert_fails(&out, 4, "already exists");
    assert!(gone(&ns, "secret/box-ssh"), "rollback left the secret");
    assert!(dir.join("host_ed25519_key").exists(), "rollback lost the kept host key");

    user.ok(&["-n", n, "create", "box", "--image", "busybox:1"]);
    let again = get_json(&ns, &["deployment", "box"])["metadata"]["annotations"][ann::HOST_KEY_FINGERPRINT].clone();
    assert_eq!(fp, again, "the kept host key was not reused");
    assert!(!dir.join("host_ed25519_key").exists(), "the kept host key now lives in the Secret");
    user.ok(&["-n", n, "delete", "box"]);
    assert!(
        gone(&ns, "pvc/box-data") || get_json(&ns, &["pvc", "box-data"])["metadata"]["deletionTimestamp"].is_string()
    );
}

#[test]
fn a_failed_create_leaves_nothing_behind() {
    let ns = TestNamespace::new("plugin-rollback");
    let user = User::new();
    let n = ns.name();
    // No claims allowed: the Secret is created, the claim is refused.
    ns.kubectl(&["create", "quota", "no-claims", "--hard=persistentvolumeclaims=0"]).expect_ok("quota");
    wait_for("the quota to be counted", Duration::from_secs(30), || {
        get_json(&ns, &["quota", "no-claims"])["status"]["hard"].is_object().then_some(())
    });
    let out = user.run(&["-n", n, "create", "dev", "--image", "busybox:1", "--volume", "home=/home:1Gi"]);
    assert_fails(&out, 5, "nothing was left behind");
    assert!(gone(&ns, "secret/dev-ssh"), "secret left");
    assert!(gone(&ns, "deployment/dev"), "deployment left");
    assert!(user.instance_dir(n, "dev").is_none(), "keys left");
    assert!(!user.known_hosts().contains(&format!("/{n}/dev ")), "pin left");

    // No Secrets allowed: the very first step fails.
    ns.kubectl(&["create", "quota", "no-secrets", "--hard=secrets=0"]).expect_ok("quota");
    wait_for("the quota to be counted", Duration::from_secs(30), || {
        get_json(&ns, &["quota", "no-secrets"])["status"]["hard"].is_object().then_some(())
    });
    let out = user.run(&["-n", n, "create", "dev2", "--image", "busybox:1"]);
    assert_fails(&out, 5, "dev2");
    assert!(gone(&ns, "deployment/dev2"));
    assert!(user.instance_dir(n, "dev2").is_none());
}

#[test]
fn errors_are_one_line_with_distinct_exit_codes() {
    let ns = TestNamespace::new("plugin-errors");
    let user = User::new();
    let n = ns.name();
    assert_fails(&user.run(&["-n", n, "status", "nope"]), 3, "not found");
    assert_fails(&user.run(&["-n", n, "create", "Bad_Name", "--image", "x"]), 2, "instance name");
    assert_fails(&user.run(&["-n", n, "create", "ok", "--image", "x", "--volume", "v=/x"]), 2, "--volume");
    assert_fails(&user.run(&["-n", n, "create", "ok", "--image", "x", "--env", "NOEQUALS"]), 2, "--env");
    assert_fails(&user.run(&["tenant", "create", "Bad"]), 2, "tenant name");
    let missing = unique_name("no-such-ns");
    assert_fails(&user.run(&["-n", &missing, "create", "x", "--image", "busybox:1"]), 3, "namespace");
    assert!(!user.store().join("keys").exists() || user.instance_dir(&missing, "x").is_none());
    assert_fails(&user.run(&["--context", "nope", "list"]), 3, "--context");
    // kubectl's own plain Deployment is not an instance
    ns.kubectl(&["create", "deployment", "plain", "--image", "busybox:1"]).expect_ok("plain deployment");
    assert_fails(&user.run(&["-n", n, "status", "plain"]), 3, names::LABEL_SSH);
    assert_fails(&user.run(&["-n", n, "delete", "plain"]), 2, "not a claworc instance");
    assert!(!gone(&ns, "deployment/plain"));
}
