//! `kubectl claworc ssh|tunnel|logs|rotate-keys|status` end to end, through the
//! real kube-apiserver: the plugin finds the pod, opens `pods/portforward` to
//! the sshd port, and kwok (standing in for the kubelet) connects that stream
//! to the real `claworc-sshd` this test starts on loopback, running as the
//! non-root uid 1000 user with exactly the config the webhook injected (the
//! pod's sidecar `CLAWORC_SSHD_CONFIG`, only the keys directory and the listen
//! port changed) and the Secret's keys owned root:1000 mode 0440 as the pod has
//! them (the workspace's one harness, `claworc-test-support`, runs it).
//! (tests/tests/realnode.rs runs the injected pod itself on a real node.)
//! A thread plays the kubelet's part of copying Secret updates into the
//! "volume" (with a delay, as the kubelet has).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use claworc_contract::names;
use claworc_e2e::{
    Cluster, KillOnDrop, Output, TestNamespace, http_get, http_server, plugin_bin, run, secret_data, unique_name,
    wait_for,
};
use claworc_test_support::{Options, SecretVolume, Sshd, free_port, is_root};
use serde_json::Value;

/// Writes the Secret's data into the sshd's Secret volume as the kubelet does; a
/// key missing from `data` keeps its current content.
fn write_keys(volume: &SecretVolume, data: &BTreeMap<String, String>) {
    let keys = [names::SECRET_AUTHORIZED_KEYS, names::SECRET_HOST_KEY, names::SECRET_HOST_KEY_PUB];
    let current = |k: &str| std::fs::read_to_string(volume.dir.join(k)).ok();
    let files: Vec<(&str, String)> =
        keys.iter().filter_map(|k| Some((*k, data.get(*k).cloned().or_else(|| current(k))?))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    volume.write(&files);
}

/// An instance made by `kubectl claworc create`, served by a local sshd.
struct Fixture {
    ns: TestNamespace,
    /// A tenant's kubeconfig (from `kubectl claworc tenant create`) the plugin runs
    /// with; the admin's when `None`.
    kubeconfig: Option<PathBuf>,
    home: PathBuf,
    name: String,
    pod: String,
    sshd: Sshd,
    forward_port: u16,
    token: String,
    stop_sync: Arc<AtomicBool>,
}

impl Fixture {
    /// An instance in a test namespace; the plugin runs with the admin kubeconfig.
    fn new(prefix: &str) -> Fixture {
        Self::with(prefix, false)
    }

    /// An instance in a tenant namespace; the plugin runs with only the tenant's
    /// kubeconfig, proving its Role is enough.
    fn tenant(prefix: &str) -> Fixture {
        Self::with(prefix, true)
    }

    fn with(prefix: &str, tenant: bool) -> Fixture {
        let home = std::env::temp_dir().join(unique_name("claworc-ssh-xdg"));
        std::fs::create_dir_all(&home).unwrap();
        let (ns, kubeconfig) = if tenant {
            let name = unique_name(prefix);
            let kubeconfig = home.join("tenant.kubeconfig");
            let mut cmd = Cluster::get().command(plugin_bin());
            cmd.env("XDG_CONFIG_HOME", &home)
                .args(["tenant", "create", &name, "--ttl", "1h", "--output"])
                .arg(&kubeconfig);
            run(cmd, None).expect_ok("kubectl claworc tenant create");
            (TestNamespace::adopt(name), Some(kubeconfig))
        } else {
            (TestNamespace::new(prefix), None)
        };
        let token = unique_name("through-the-tunnel");
        let forward_port = http_server(token.clone());
        let name = "box".to_string();
        let mut fx = Fixture {
            ns,
            kubeconfig,
            home,
            name,
            pod: String::new(),
            sshd: Sshd::prepare(Options::default()),
            forward_port,
            token,
            stop_sync: Arc::new(AtomicBool::new(false)),
        };
        let n = fx.ns.name().to_string();
        fx.ok(&[
            "-n",
            &n,
            "create",
            "box",
            "--image",
            "example.invalid/agent:1",
            "--forward-ports",
            &forward_port.to_string(),
        ]);

        // The running pod and its injected sidecar config.
        let pod = wait_for("a running pod of the instance", Duration::from_secs(90), || {
            let out = fx.ns.kubectl(&["get", "pods", "-l", &format!("{}=box", names::LABEL_INSTANCE), "-o", "json"]);
            let v = out.json();
            v["items"].as_array()?.iter().find(|p| p["status"]["phase"] == "Running").cloned()
        });
        fx.pod = pod["metadata"]["name"].as_str().unwrap().to_string();
        let sidecar = pod["spec"]["initContainers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == names::SIDECAR))
            .unwrap_or_else(|| panic!("no injected {} in {pod}", names::SIDECAR));
        let config = sidecar["env"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["name"] == names::ENV_SSHD_CONFIG))
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no {} in {sidecar}", names::ENV_SSHD_CONFIG))
            .to_string();
        let pod_port: u16 = config
            .lines()
            .find_map(|l| l.strip_prefix("port "))
            .and_then(|p| p.trim().parse().ok())
            .expect("port in the claworc-sshd config");
        assert!(config.lines().any(|l| l == format!("forward-ports {forward_port}")), "{config}");

        // Exactly that config; only the key directory and the listen port differ.
        // The port stays across restarts (kwok's PortForward names it).
        let port = free_port();
        fx.sshd.options = Options {
            full_config: Some(Box::new(move |keys: &Path| {
                config
                    .replace(names::KEYS_DIR, keys.to_str().unwrap())
                    .replace(&format!("port {pod_port}\n"), &format!("port {port}\n"))
            })),
            // As in a pod: a private /dev/pts with the container runtime's options,
            // so the server as a non-root user can hand out PTYs.
            private_pts: is_root(),
            ..Options::default()
        };
        let secret = names::default_secret_name("box");
        write_keys(&fx.sshd.secret(), &secret_data(&n, &secret).expect("the instance Secret"));
        fx.sshd.spawn();

        // kwok connects the pod's port-forward stream to our sshd.
        fx.ns
            .apply(&format!(
                r#"{{"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward", "metadata": {{"name": "{}"}},
                    "spec": {{"forwards": [{{"ports": [{pod_port}], "target": {{"port": {}, "address": "127.0.0.1"}}}}]}}}}"#,
                fx.pod, fx.sshd.port
            ))
            .expect_ok("PortForward");

        // The kubelet's part: Secret updates reach the volume, a little later.
        let (stop, volume, ns_name) = (fx.stop_sync.clone(), fx.sshd.secret(), n.clone());
        std::thread::spawn(move || {
            let mut last = secret_data(&ns_name, &secret);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = secret_data(&ns_name, &secret);
                if let Some(data) = now.as_ref()
                    && now != last
                {
                    std::thread::sleep(Duration::from_secs(3));
                    write_keys(&volume, data);
                    last = now;
                }
            }
        });

        // kwok may take a moment to pick the PortForward up.
        wait_for("a first SSH login through the API", Duration::from_secs(60), || {
            fx.run(&["-n", &n, "ssh", "box", "--", "true"]).success().then_some(())
        });
        fx
    }

    fn command(&self) -> Command {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &self.home);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success(), "kubectl-claworc {args:?} failed ({}): {}{}", out.status, out.stderr, out.stdout);
        out.stdout
    }

    /// `kubectl-claworc -n NS ARGS…`.
    fn plugin(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.ns.name()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn key_dir(&self) -> PathBuf {
        let keys = self.home.join("claworc").join("keys");
        std::fs::read_dir(&keys)
            .unwrap()
            .flatten()
            .map(|e| e.path().join(self.ns.name()).join(&self.name))
            .find(|p| p.exists())
            .expect("instance key dir")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop_sync.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

#[test]
fn ssh_runs_commands_as_the_run_as_user_and_returns_their_status() {
    ssh_runs_commands_as_the_run_as_user_and_returns_their_status_with(Fixture::new("ssh-exec"));
}

#[test]
fn ssh_runs_commands_as_the_run_as_user_and_returns_their_status_as_a_tenant() {
    let fx = Fixture::tenant("t-ssh-exec");
    // The plugin really runs as the tenant: other namespaces are forbidden (exit 5).
    let elsewhere = fx.run(&["-n", "default", "list"]);
    assert_eq!(elsewhere.status.code(), Some(5), "{}{}", elsewhere.stderr, elsewhere.stdout);
    ssh_runs_commands_as_the_run_as_user_and_returns_their_status_with(fx);
}

fn ssh_runs_commands_as_the_run_as_user_and_returns_their_status_with(fx: Fixture) {
    let out = fx.plugin(&["ssh", "box", "--", "id", "-u"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "1000");

    let out = fx.plugin(&["ssh", "box", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);

    let out = fx.plugin(&["ssh", "box", "--", "sh", "-c", "echo to-out; echo to-err >&2"]);
    assert_eq!((out.stdout.as_str(), out.stderr.contains("to-err")), ("to-out\n", true), "{out:?}");
    assert!(!out.stdout.contains("to-err"));

    // status: a live SSH check.
    let st: Value = serde_json::from_str(&fx.ok(&["-n", fx.ns.name(), "status", "box", "-o", "json"])).unwrap();
    let check = st["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "ssh")).cloned();
    let check = check.unwrap_or_else(|| panic!("no ssh check in {st}"));
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["detail"].as_str().unwrap().contains("ms"), "{check}");
}

#[test]
fn tunnel_reaches_forward_ports_only_and_recovers_when_sshd_restarts() {
    tunnel_reaches_forward_ports_only_and_recovers_when_sshd_restarts_with(Fixture::new("ssh-tunnel"));
}

#[test]
fn tunnel_reaches_forward_ports_only_and_recovers_when_sshd_restarts_as_a_tenant() {
    tunnel_reaches_forward_ports_only_and_recovers_when_sshd_restarts_with(Fixture::tenant("t-ssh-tunnel"));
}

fn tunnel_reaches_forward_ports_only_and_recovers_when_sshd_restarts_with(mut fx: Fixture) {
    let other = http_server("must not be reached".into());
    let mut cmd = fx.command();
    cmd.args(["-n", fx.ns.name(), "tunnel", "box", "-L", &fx.forward_port.to_string(), "-L", &other.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tunnel = KillOnDrop(cmd.spawn().expect("tunnel"));
    let stderr = tunnel.0.stderr.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log2.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    // "Forwarding http://127.0.0.1:PORT -> box:REMOTE", one line per forward.
    let mut lines = BufReader::new(tunnel.0.stdout.take().unwrap()).lines();
    let mut local = BTreeMap::new();
    for _ in 0..2 {
        let line = lines.next().expect("a forward line").unwrap();
        let url = line.split_whitespace().nth(1).unwrap_or_else(|| panic!("{line}"));
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let remote: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        local.insert(remote, port);
    }
    let allowed = local[&fx.forward_port];
    let reply = wait_for("an HTTP reply through the tunnel", Duration::from_secs(30), || {
        http_get(allowed).filter(|r| r.contains(&fx.token))
    });
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");

    // A port outside claworc.io/forward-ports: sshd refuses it.
    let reply = http_get(local[&other]).unwrap_or_default();
    assert!(!reply.contains("must not be reached"), "{reply}");
    wait_for("the refusal on stderr", Duration::from_secs(10), || {
        log.lock().unwrap().contains(&format!("forward to localhost:{other}")).then_some(())
    });

    // sshd goes away and comes back: the tunnel reconnects by itself.
    fx.sshd.stop();
    wait_for("the tunnel to notice", Duration::from_secs(60), || log.lock().unwrap().contains("lost").then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    fx.sshd.spawn();
    let reply = wait_for("an HTTP reply after the restart", Duration::from_secs(90), || {
        http_get(allowed).filter(|r| r.contains(&fx.token))
    });
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    // Ctrl-C closes cleanly.
    let killed = Command::new("kill").args(["-INT", &tunnel.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_for("the tunnel to end on SIGINT", Duration::from_secs(10), || tunnel.0.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    let log = log.lock().unwrap().clone();
    assert!(log.matches("tunnel: connected").count() >= 2, "{log}");
}

#[test]
fn a_changed_host_key_is_refused() {
    let mut fx = Fixture::new("ssh-hostkey");
    // Someone else's host key on the sshd (as an interceptor would have).
    let tmp = fx.sshd.dir.path().join("intruder");
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&tmp).status().unwrap();
    assert!(status.success());
    let mut data = BTreeMap::new();
    data.insert(names::SECRET_HOST_KEY.to_string(), std::fs::read_to_string(&tmp).unwrap());
    data.insert(names::SECRET_HOST_KEY_PUB.to_string(), std::fs::read_to_string(tmp.with_extension("pub")).unwrap());
    fx.sshd.stop();
    write_keys(&fx.sshd.secret(), &data);
    fx.sshd.spawn();
    for extra in [&[][..], &["--repin"][..]] {
        let mut args = vec!["ssh", "box"];
        args.extend_from_slice(extra);
        args.extend(["--", "true"]);
        let out = fx.plugin(&args);
        assert_eq!(out.status.code(), Some(5), "{args:?} must be refused: {}", out.stderr);
        assert!(out.stderr.contains("host key"), "{}", out.stderr);
        assert!(out.stderr.contains("rotate-keys NAME --host-key"), "{}", out.stderr);
    }
}

#[test]
fn rotate_keys_under_load_loses_no_login_and_retires_the_old_key() {
    rotate_keys_under_load_loses_no_login_and_retires_the_old_key_with(Fixture::new("ssh-rotate"));
}

#[test]
fn rotate_keys_under_load_loses_no_login_and_retires_the_old_key_as_a_tenant() {
    rotate_keys_under_load_loses_no_login_and_retires_the_old_key_with(Fixture::tenant("t-ssh-rotate"));
}

fn rotate_keys_under_load_loses_no_login_and_retires_the_old_key_with(fx: Fixture) {
    let old_key = fx.home.join("old_id_ed25519");
    std::fs::copy(fx.key_dir().join("id_ed25519"), &old_key).unwrap();
    std::fs::set_permissions(&old_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let loop_thread = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let mut cmd_base = vec!["-n".to_string(), fx.ns.name().to_string()];
        cmd_base.extend(["ssh", "box", "--", "true"].map(String::from));
        let base = fx.command();
        let envs: Vec<_> = base.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut cmd = Command::new(plugin_bin());
                for (k, v) in &envs {
                    match v {
                        Some(v) => cmd.env(k, v),
                        None => cmd.env_remove(k),
                    };
                }
                cmd.args(&cmd_base);
                let out = run(cmd, None);
                if out.success() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.lock().unwrap().push(out.stderr);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let out = fx.plugin(&["rotate-keys", "box"]);
    assert!(out.success(), "rotate-keys: {}{}", out.stderr, fx.sshd.log());
    // Let the volume catch up with the removal of the old key, still looping.
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    loop_thread.join().unwrap();
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "{} logins failed during the rotation: {failed:#?}", failed.len());
    assert!(ok.load(Ordering::Relaxed) >= 3, "too few logins: {}", ok.load(Ordering::Relaxed));

    // The new key works, the old one is refused.
    fx.ok(&["-n", fx.ns.name(), "ssh", "box", "--", "true"]);
    let out = fx.plugin(&["ssh", "box", "--identity", old_key.to_str().unwrap(), "--", "true"]);
    assert!(!out.success(), "the old key still works");
    assert!(out.stderr.contains("refused the client key"), "{}", out.stderr);

    // The Secret holds only the new key; the Deployment says when.
    let dir = fx.key_dir();
    let current = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    let secret_name = names::default_secret_name("box");
    let ak = secret_data(fx.ns.name(), &secret_name).unwrap()[names::SECRET_AUTHORIZED_KEYS].clone();
    assert_eq!(ak.split_whitespace().nth(1), current.split_whitespace().nth(1), "{ak}");
    assert_eq!(ak.lines().count(), 1, "{ak}");
    assert!(!dir.join("id_ed25519.new").exists(), "pending key left");
    let d = fx.ns.kubectl(&["get", "deployment", "box", "-o", "json"]).json();
    let at = d["metadata"]["annotations"][claworc_contract::annotations::KEYS_ROTATED_AT].as_str().unwrap();
    assert!(at.ends_with('Z') && at.len() == 20, "{at}");

    // A rotation interrupted after step 2 (pending key made and authorized): the
    // next run resumes with that key, proves it over SSH and finishes.
    let pending = dir.join("id_ed25519.new");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "pending", "-f"])
        .arg(&pending)
        .status()
        .unwrap();
    assert!(keygen.success());
    let pending_pub = std::fs::read_to_string(dir.join("id_ed25519.new.pub")).unwrap();
    let both = format!("{}\n{}\n", current.trim(), pending_pub.trim());
    let patch = serde_json::json!({"stringData": {names::SECRET_AUTHORIZED_KEYS: both}}).to_string();
    fx.ns.kubectl(&["patch", "secret", &secret_name, "--type=merge", "-p", &patch]).expect_ok("patch");
    let out = fx.plugin(&["rotate-keys", "box"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stderr.contains("resuming"), "{}", out.stderr);
    let now = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    assert_eq!(now.split_whitespace().nth(1), pending_pub.split_whitespace().nth(1));
    assert!(!pending.exists());
    wait_for("a login with the resumed key", Duration::from_secs(30), || {
        fx.plugin(&["ssh", "box", "--", "true"]).success().then_some(())
    });
}

#[test]
fn logs_come_through_the_api_and_files_over_ssh() {
    logs_come_through_the_api_and_files_over_ssh_with(Fixture::new("ssh-logs"));
}

#[test]
fn logs_come_through_the_api_and_files_over_ssh_as_a_tenant() {
    logs_come_through_the_api_and_files_over_ssh_with(Fixture::tenant("t-ssh-logs"));
}

fn logs_come_through_the_api_and_files_over_ssh_with(fx: Fixture) {
    let pod = fx.ns.kubectl(&["get", "pod", &fx.pod, "-o", "json"]).json();
    let container = pod["spec"]["containers"][0]["name"].as_str().unwrap().to_string();
    let token = unique_name("log-line");
    // kwok serves a container log file in the CRI format, as the kubelet reads them.
    let cri = fx.sshd.dir.path().join("container.log");
    std::fs::write(
        &cri,
        format!("2026-01-01T00:00:00.000000000Z stdout F first\n2026-01-01T00:00:01.000000000Z stdout F {token}\n"),
    )
    .unwrap();
    // A plain file inside the "instance", read over SSH by the sshd's user.
    let file = fx.sshd.dir.path().join("app.log");
    std::fs::write(&file, format!("first\n{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    fx.ns
        .apply(&format!(
            r#"{{"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": {{"name": "{}"}},
                "spec": {{"logs": [{{"containers": ["{container}"], "logsFile": "{}"}}]}}}}"#,
            fx.pod,
            cri.display()
        ))
        .expect_ok("Logs");
    let last = std::cell::RefCell::new(String::new());
    let start = Instant::now();
    let logs = loop {
        let out = fx.plugin(&["logs", "box"]);
        if out.success() && out.stdout.contains(&token) {
            break out.stdout;
        }
        *last.borrow_mut() = format!("{}{}", out.stderr, out.stdout);
        let direct = fx.ns.kubectl(&["logs", &fx.pod, "-c", &container]);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no logs through pods/log: plugin: {}; kubectl logs: {direct:?}",
            last.borrow()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(logs.starts_with("first\n"), "{logs}");

    // The same file read over SSH by the sshd's user.
    let out = fx.plugin(&["logs", "box", "--file", file.to_str().unwrap(), "--tail", "1"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, format!("{token}\n"));
}

#[test]
fn an_interactive_shell_gets_a_terminal() {
    let fx = Fixture::new("ssh-pty");
    // `script` gives the plugin a terminal on stdin and stdout, as a person's shell would.
    let plugin = format!("{} -n {} ssh box", plugin_bin().display(), fx.ns.name());
    let mut cmd = fx.command();
    let cmd = {
        let mut c = Command::new("script");
        c.args(["-qec", &plugin, "/dev/null"]);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let _ = &mut cmd;
        c
    };
    let out = run(cmd, Some("tty; stty size; exit 3\n"));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.contains("/dev/pts/"), "no PTY: {out:?}");
}

#[test]
fn a_host_key_rotation_repins_here_and_needs_repin_elsewhere() {
    let mut fx = Fixture::new("ssh-hostrot");
    let n = fx.ns.name().to_string();
    // A second machine of the same user: same client key, same (soon old) pin.
    let elsewhere = std::env::temp_dir().join(unique_name("claworc-ssh-elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let copied = Command::new("cp").arg("-a").arg(fx.home.join("claworc")).arg(&elsewhere).status().unwrap();
    assert!(copied.success());
    let run_elsewhere = |args: &[&str]| {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &elsewhere).args(["-n", &n]).args(args);
        run(cmd, None)
    };

    let old_pod = fx.pod.clone();
    let out = fx.plugin(&["rotate-keys", "box", "--host-key"]);
    assert!(out.success(), "rotate-keys --host-key: {}", out.stderr);
    let secret = secret_data(&n, &names::default_secret_name("box")).unwrap();
    let new_pub = secret[names::SECRET_HOST_KEY_PUB].clone();

    // The pod restarts (sshd reads its host key at start): follow it, as the
    // kubelet would, with the new key from the Secret volume.
    let pod = wait_for("the restarted pod", Duration::from_secs(90), || {
        let v = fx.ns.kubectl(&["get", "pods", "-l", &format!("{}=box", names::LABEL_INSTANCE), "-o", "json"]).json();
        v["items"]
            .as_array()?
            .iter()
            .find(|p| {
                p["status"]["phase"] == "Running"
                    && p["metadata"]["name"] != old_pod.as_str()
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .and_then(|p| p["metadata"]["name"].as_str().map(String::from))
    });
    // The pod's ssh port, as the old pod's PortForward has it.
    let pf = fx.ns.kubectl(&["get", "portforward.kwok.x-k8s.io", &old_pod, "-o", "json"]).json();
    let pod_ssh_port = pf["spec"]["forwards"][0]["ports"][0].as_u64().unwrap();
    fx.sshd.stop();
    wait_for("the new host key in the volume", Duration::from_secs(30), || {
        let now = std::fs::read_to_string(fx.sshd.keys.join(names::SECRET_HOST_KEY_PUB)).ok()?;
        (now == new_pub).then_some(())
    });
    fx.sshd.spawn();
    fx.pod = pod.clone();
    fx.ns
        .apply(&format!(
            r#"{{"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward", "metadata": {{"name": "{pod}"}},
                "spec": {{"forwards": [{{"ports": [{pod_ssh_port}], "target": {{"port": {}, "address": "127.0.0.1"}}}}]}}}}"#,
            fx.sshd.port
        ))
        .expect_ok("PortForward");

    // Here: the pin was updated together with the annotation.
    wait_for("a login with the new host key", Duration::from_secs(60), || {
        fx.plugin(&["ssh", "box", "--", "true"]).success().then_some(())
    });
    // Elsewhere: the old pin is refused, with the way out; --repin takes the new key
    // because it matches the annotation.
    let out = run_elsewhere(&["ssh", "box", "--", "true"]);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("--repin"), "{}", out.stderr);
    // (rotate-keys replaced the client key too: the other machine gets the new one.)
    let key_dir = fx.key_dir();
    let there = elsewhere.join(key_dir.strip_prefix(&fx.home).unwrap());
    for f in ["id_ed25519", "id_ed25519.pub"] {
        std::fs::copy(key_dir.join(f), there.join(f)).unwrap();
    }
    let out = run_elsewhere(&["ssh", "box", "--repin", "--", "true"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stderr.contains("re-pinned"), "{}", out.stderr);
    let out = run_elsewhere(&["ssh", "box", "--", "true"]);
    assert!(out.success(), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&elsewhere);
}
