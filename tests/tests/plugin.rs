//! `kubectl claworc` against the real local control plane: create/delete and their
//! flags, rollback of a failed create, tenants and their kubeconfig with
//! the real kubectl, and the error paths (one line on stderr, the right exit code).
//!
//! The plugin binary is `target/debug/kubectl-claworc` (built once per test process
//! with `cargo build -p kubectl-claworc`); every test has its own namespace and its
//! own `XDG_CONFIG_HOME`. `rotate-keys` proves the new key with a real SSH login, so
//! it is tested in `ssh.rs`, which runs a real sshd behind the instance.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use claworc_contract::{annotations as ann, names};
use claworc_e2e::{Cluster, Output, TestNamespace, plugin_bin, run, secret_data, unique_name, wait_for};
use serde_json::Value;

/// A plugin user: its own key store (XDG_CONFIG_HOME) and optionally a kubeconfig.
struct User {
    home: PathBuf,
    kubeconfig: Option<PathBuf>,
}

impl User {
    fn new() -> Self {
        let home = std::env::temp_dir().join(unique_name("claworc-xdg"));
        std::fs::create_dir_all(&home).unwrap();
        User { home, kubeconfig: None }
    }

    fn with_kubeconfig(path: &Path) -> Self {
        let mut u = User::new();
        u.kubeconfig = Some(path.to_path_buf());
        u
    }

    fn store(&self) -> PathBuf {
        self.home.join("claworc")
    }

    /// `kubectl-claworc ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &self.home).args(args);
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        run(cmd, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success(), "kubectl-claworc {args:?} failed ({}): {}{}", out.status, out.stderr, out.stdout);
        out.stdout
    }

    /// The only directory `keys/<cluster>/<namespace>/<name>` of the instance.
    fn instance_dir(&self, ns: &str, name: &str) -> Option<PathBuf> {
        let keys = self.store().join("keys");
        std::fs::read_dir(&keys).ok()?.filter_map(|e| e.ok()).map(|e| e.path().join(ns).join(name)).find(|p| p.exists())
    }

    fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.store().join("known_hosts")).unwrap_or_default()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// Exactly one line on stderr, `error: …`, and the expected exit code.
#[track_caller]
fn assert_fails(out: &Output, code: i32, contains: &str) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {:?}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(lines[0].contains(contains), "{:?} does not contain {contains:?}", lines[0]);
}

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

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .expect("JWT payload is base64url"),
    )
    .expect("JWT claims")
}

fn token_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("token:")).expect("token in kubeconfig");
    line.trim_start().trim_start_matches("token:").trim().trim_matches('\'').trim_matches('"').to_string()
}

#[test]
fn tenant_kubeconfig_is_least_privilege_and_rotates() {
    let admin = User::new();
    let tenant = unique_name("plugin-tenant");
    let file = admin.home.join("tenant.kubeconfig");
    let f = file.to_str().unwrap();
    admin.ok(&["tenant", "create", &tenant, "--ttl", "2h", "--output", f]);
    assert_eq!(mode(&file), 0o600);
    let claims = jwt_claims(&token_of(&file));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7200, "{claims}");

    let ns_json = Cluster::get().kubectl(&["get", "namespace", &tenant, "-o", "json"]).json();
    let labels = &ns_json["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels[names::LABEL_TENANT], tenant.as_str());
    let policies = Cluster::get().kubectl(&["-n", &tenant, "get", "networkpolicies", "-o", "name"]);
    for np in ["claworc-deny-ingress", "claworc-egress-restricted", "claworc-egress-none", "claworc-egress-open"] {
        assert!(policies.expect_ok("get networkpolicies").contains(np), "{np} missing: {}", policies.stdout);
    }

    let kubectl_as = |kc: &Path, args: &[&str]| -> Output {
        let mut cmd = Cluster::get().command(Cluster::get().kubectl_path());
        cmd.env("KUBECONFIG", kc).args(args);
        run(cmd, None)
    };
    let can = |args: &[&str]| -> bool {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = kubectl_as(&file, &all);
        match out.stdout.trim() {
            "yes" => true,
            "no" => false,
            other => panic!("kubectl auth can-i {args:?}: {other:?} {}", out.stderr),
        }
    };
    for yes in [
        &["create", "deployments"][..],
        &["delete", "deployments"],
        &["get", "pods"],
        &["get", "pods", "--subresource=log"],
        &["create", "pods", "--subresource=portforward"],
        &["create", "secrets"],
        &["create", "configmaps"],
        &["create", "services"],
        &["create", "persistentvolumeclaims"],
        &["list", "events"],
    ] {
        assert!(can(yes), "tenant cannot {yes:?}");
    }
    for no in [
        &["get", "pods", "-n", "default"][..],
        &["create", "deployments", "-n", "kube-system"],
        &["list", "nodes"],
        &["create", "namespaces"],
        &["create", "clusterroles"],
        &["create", "roles"],
        &["create", "rolebindings"],
        &["create", "pods", "--subresource=exec"],
        &["update", "resourcequotas"],
        &["delete", "networkpolicies"],
    ] {
        assert!(!can(no), "tenant can {no:?}");
    }

    // The plugin works with only the tenant kubeconfig.
    let member = User::with_kubeconfig(&file);
    // --wait: the webhook's restricted security context lets the pod into the
    // Pod Security `restricted` namespace, and the rollout completes.
    member.ok(&["create", "dev", "--image", "busybox:1", "--wait", "--timeout", "90s"]);
    let st: Value = serde_json::from_str(&member.ok(&["status", "dev", "-o", "json"])).unwrap();
    assert_eq!(st["available"], true, "{st}");
    assert_eq!(st["warnings"], serde_json::json!([]), "{st}");
    let l: Value = serde_json::from_str(&member.ok(&["list", "-o", "json"])).unwrap();
    assert_eq!(l[0]["name"], "dev");
    assert_fails(&member.run(&["-n", "default", "list"]), 5, "forbidden");

    // --rotate: the old token stops working (the API server caches tokens ~10s).
    let file2 = admin.home.join("tenant2.kubeconfig");
    admin.ok(&["tenant", "kubeconfig", &tenant, "--rotate", "--ttl", "1h", "--output", file2.to_str().unwrap()]);
    wait_for("the old token to be rejected", Duration::from_secs(40), || {
        let out = kubectl_as(&file, &["get", "pods"]);
        (!out.success() && out.stderr.contains("Unauthorized")).then_some(())
    });
    kubectl_as(&file2, &["get", "deployments"]).expect_ok("the new kubeconfig");
    assert_fails(&member.run(&["list"]), 1, "Unauthorized");

    let list: Value = serde_json::from_str(&admin.ok(&["tenant", "list", "-o", "json"])).unwrap();
    assert!(list.as_array().unwrap().iter().any(|t| t["name"] == tenant.as_str()));
    assert_fails(&admin.run(&["tenant", "delete", &tenant]), 2, "--yes");
    admin.ok(&["tenant", "delete", &tenant, "--yes"]);
    assert_fails(&admin.run(&["tenant", "kubeconfig", "no-such-tenant-x"]), 3, "not found");
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
