//! An instance on the real node of the local cluster (containerd + kubelet,
//! tests/cluster/node-up): the webhook's injected sidecar runs `claworc-sshd`,
//! delivered from the sidecar image (sshd/Dockerfile: the static binary and
//! nothing else) by the injected init container, in the **workload's image**
//! (tests/images/workload/Dockerfile); it is the server the plugin logs into;
//! the kubelet delivers the Secret and runs the readiness probe. No SSH server
//! is started by the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use claworc_contract::names;
use claworc_e2e::{
    Cluster, KillOnDrop, Output, TestNamespace, http_get, plugin_bin, real_node_namespace, run, secret_data,
    unique_name, use_real_node, wait_for, workload_image,
};

struct Instance {
    ns: TestNamespace,
    home: PathBuf,
    /// A tenant's kubeconfig (from `kubectl claworc tenant create`) the plugin runs
    /// with; the admin's when `None`.
    kubeconfig: Option<PathBuf>,
}

impl Instance {
    /// In a namespace of its own, with the admin's kubeconfig.
    fn admin() -> Instance {
        Instance { ns: real_node_namespace("real"), home: xdg_home(), kubeconfig: None }
    }

    /// In a tenant's namespace, the plugin holding only the tenant's kubeconfig
    /// (the admin only points the namespace at the real node).
    fn tenant() -> Instance {
        let home = xdg_home();
        let name = unique_name("t-real");
        let kubeconfig = home.join("tenant.kubeconfig");
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &home).args(["tenant", "create", &name, "--ttl", "1h", "--output"]).arg(&kubeconfig);
        run(cmd, None).expect_ok("kubectl claworc tenant create");
        use_real_node(&name);
        Instance { ns: TestNamespace::adopt(name), home, kubeconfig: Some(kubeconfig) }
    }

    fn command(&self) -> Command {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &self.home).args(["-n", self.ns.name()]);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        cmd
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd, stdin)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(out.success(), "kubectl-claworc {args:?} failed ({}): {}{}", out.status, out.stderr, out.stdout);
        out.stdout
    }

    fn pod(&self) -> serde_json::Value {
        let out = self.ns.kubectl(&["get", "pods", "-l", &format!("{}=box", names::LABEL_INSTANCE), "-o", "json"]);
        let pods = out.json()["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(pods.len(), 1, "one pod of the instance: {pods:?}");
        pods[0].clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn xdg_home() -> PathBuf {
    let home = std::env::temp_dir().join(unique_name("claworc-real-xdg"));
    std::fs::create_dir_all(&home).unwrap();
    home
}

#[test]
fn an_instance_on_the_real_node_runs_ssh_tunnels_and_rotates_keys() {
    let box_ = Instance::admin();
    runs_ssh_tunnels_and_rotates_keys(&box_);
}

#[test]
fn an_instance_on_the_real_node_runs_ssh_tunnels_and_rotates_keys_as_a_tenant() {
    let box_ = Instance::tenant();
    let mut cmd = Cluster::get().command(plugin_bin());
    cmd.env("XDG_CONFIG_HOME", &box_.home).env("KUBECONFIG", box_.kubeconfig.as_ref().unwrap());
    cmd.args(["-n", "default", "list"]);
    let elsewhere = run(cmd, None);
    assert_eq!(elsewhere.status.code(), Some(5), "the tenant reaches other namespaces: {elsewhere:?}");
    runs_ssh_tunnels_and_rotates_keys(&box_);
}

fn runs_ssh_tunnels_and_rotates_keys(box_: &Instance) {
    // create --wait returns when the sidecar's readiness probe (SSH answers) passes.
    plugin_bin(); // built before the clock starts
    let start = Instant::now();
    box_.ok(&["create", "box", "--image", &workload_image(), "--forward-ports", "8080", "--wait", "--timeout", "3m"]);
    eprintln!("create --wait on the real node: {:.1}s", start.elapsed().as_secs_f64());
    let out = box_.run(&["ssh", "box", "--", "id", "-u"], None);
    eprintln!("create --wait to first login on the real node: {:.1}s", start.elapsed().as_secs_f64());
    assert!(out.success(), "first login after create --wait: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "1000");
    // The login name, whatever passwd the workload's image has (it has no entry for 1000).
    let out = box_.run(&["ssh", "box", "--", "sh", "-c", "echo $USER $LOGNAME"], None);
    assert_eq!(out.stdout.trim(), format!("{0} {0}", names::SSH_USER), "the session has a login name: {}", out.stderr);
    sessions_run_in_the_workload_image(box_);

    let pod = box_.pod();
    assert_eq!(pod["spec"]["nodeName"], "real-node", "the pod runs on the real node");
    let ready = pod["status"]["initContainerStatuses"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == names::SIDECAR))
        .map(|s| s["ready"].clone());
    assert_eq!(ready, Some(true.into()), "the sidecar is Ready: {}", pod["status"]);

    // Commands: exit status, stdout/stderr, stdin.
    let out = box_.run(&["ssh", "box", "--", "sh", "-c", "exit 7"], None);
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    let out = box_.run(&["ssh", "box", "--", "sh", "-c", "echo to-out; echo to-err >&2"], None);
    assert_eq!(out.stdout, "to-out\n", "{out:?}");
    assert!(out.stderr.contains("to-err"), "{out:?}");
    let out = box_.run(&["ssh", "box", "--", "tr", "a-z", "A-Z"], Some("through stdin\n"));
    assert_eq!(out.stdout, "THROUGH STDIN\n", "{}", out.stderr);

    // What the injected sidecar really runs with, read from inside it.
    let status = box_.ok(&["ssh", "box", "--", "cat", "/proc/self/status"]);
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(str::trim).unwrap_or("").to_string()
    };
    assert_eq!(field("CapEff"), "0000000000000000", "{status}");
    assert_eq!(field("CapPrm"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs"), "1", "{status}");
    assert_eq!(field("Seccomp"), "2", "{status}");
    assert!(field("Uid").starts_with("1000"), "{status}");
    let out = box_.run(&["ssh", "box", "--", "touch", "/claworc-was-here"], None);
    assert!(!out.success() && out.stderr.contains("Read-only file system"), "/ is read-only: {out:?}");

    // claworc-sshd listens on the pod's loopback only: the pod's listening sockets on
    // the ssh port (the network namespace all its containers share) ...
    let tcp = box_.ok(&["ssh", "box", "--", "cat", "/proc/net/tcp", "/proc/net/tcp6"]);
    let listening: Vec<&str> = tcp
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[3] == "0A" && f[1].ends_with(":08AE"))
        .map(|f| f[1])
        .collect();
    assert_eq!(listening, ["0100007F:08AE"], "listening on 2222: 127.0.0.1 only:\n{tcp}");
    // ... and from the node, the pod IP's ssh port is closed.
    let pod_ip = pod["status"]["podIP"].as_str().expect("pod IP").to_string();
    let err = TcpStream::connect_timeout(&format!("{pod_ip}:2222").parse().unwrap(), Duration::from_secs(3));
    assert!(err.is_err(), "{pod_ip}:2222 answers from outside the pod");
    if box_.kubeconfig.is_none() {
        from_another_pod_the_ssh_port_does_not_answer(box_, &pod_ip);
    }

    // A tunnel to the workload's web server; a port outside the allowlist is refused.
    let mut cmd = box_.command();
    cmd.args(["tunnel", "box", "-L", "8080", "-L", "9999"]).stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(Stdio::piped());
    let mut tunnel = KillOnDrop(cmd.spawn().expect("tunnel"));
    let stderr = tunnel.0.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            log2.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(tunnel.0.stdout.take().unwrap()));
    let mut local = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let line = lines.next().expect("a forward line").unwrap();
        let url = line.split_whitespace().nth(1).unwrap_or_else(|| panic!("{line}"));
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let remote: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
        local.insert(remote, port);
    }
    let reply = wait_for("the workload's page through the tunnel", Duration::from_secs(30), || {
        http_get(local[&8080]).filter(|r| r.contains("hello from the claworc workload"))
    });
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    let reply = http_get(local[&9999]).unwrap_or_default();
    assert!(!reply.contains("HTTP/"), "a forward outside claworc.io/forward-ports got an answer: {reply}");
    wait_for("the refusal on the tunnel's stderr", Duration::from_secs(10), || {
        log.lock().unwrap().contains("forward to localhost:9999").then_some(())
    });
    drop(tunnel);

    // A terminal: `script` gives the plugin a PTY on stdin and stdout, as a person's shell would.
    let mut cmd = Command::new("script");
    let plugin = format!("{} -n {} ssh box", plugin_bin().display(), box_.ns.name());
    cmd.args(["-qec", &plugin, "/dev/null"]);
    for (k, v) in box_.command().get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = run(cmd, Some("tty; stty size; exit 3\n"));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.contains("/dev/pts/"), "no PTY: {out:?}");

    // rotate-keys while another client logs in again and again: no login fails;
    // the kubelet delivers the new Secret; the old key is then refused.
    let key_dir = std::fs::read_dir(box_.home.join("claworc").join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join(box_.ns.name()).join("box"))
        .find(|p| p.exists())
        .expect("the instance's key dir");
    let old_key = box_.home.join("old_id_ed25519");
    std::fs::copy(key_dir.join("id_ed25519"), &old_key).unwrap();
    std::fs::set_permissions(&old_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let stop = stop.clone();
        let mut cmd = box_.command();
        cmd.args(["ssh", "box", "--", "true"]);
        let envs: Vec<_> = cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
        let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut cmd = Command::new(plugin_bin());
                for (k, v) in &envs {
                    if let Some(v) = v {
                        cmd.env(k, v);
                    }
                }
                cmd.args(&args);
                let out = run(cmd, None);
                if out.success() { ok += 1 } else { failed.push(out.stderr) }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    box_.ok(&["rotate-keys", "box"]);
    eprintln!("rotate-keys on the real node: {:.1}s", t.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(12)); // the kubelet also removes the old key
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = looping.join().unwrap();
    assert!(failed.is_empty(), "{} logins failed during the rotation: {failed:#?}", failed.len());
    assert!(ok >= 3, "too few logins during the rotation: {ok}");
    let out = box_.run(&["ssh", "box", "--", "true"], None);
    assert!(out.success(), "login after rotate-keys: {}", out.stderr);
    // The kubelet syncs the Secret volume every syncFrequency (10 s) plus jitter.
    wait_for("the old key to be refused", Duration::from_secs(60), || {
        let out = box_.run(&["ssh", "box", "--identity", old_key.to_str().unwrap(), "--", "true"], None);
        (!out.success() && out.stderr.contains("refused the client key")).then_some(())
    });

    let status = box_.ok(&["status", "box"]);
    let check = status.lines().find(|l| l.starts_with("Check ssh:")).map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert_eq!(check.as_ref().map(|c| c.get(2).copied()), Some(Some("ok")), "{status}");

    if box_.kubeconfig.is_none() {
        sftp_reads_what_the_workload_wrote(box_, &key_dir.join("id_ed25519"));
    }

    box_.ok(&["delete", "box"]);
    wait_for("the instance's pod to go", Duration::from_secs(60), || {
        let out = box_.ns.kubectl(&["get", "pods", "-l", &format!("{}=box", names::LABEL_INSTANCE), "-o", "name"]);
        (out.success() && out.stdout.trim().is_empty()).then_some(())
    });
}

/// The session's tools are the workload image's (git and make are in
/// tests/images/workload/Dockerfile; the sidecar image is the static binary
/// alone), and the SSH user has a writable home.
fn sessions_run_in_the_workload_image(box_: &Instance) {
    let pod = box_.pod();
    let init = pod["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
    let image = |name: &str| init.iter().find(|c| c["name"] == name).map(|c| c["image"].clone());
    assert_eq!(image(names::SIDECAR), Some(workload_image().into()), "the sidecar runs the workload's image");
    assert_eq!(image(names::INSTALLER), Some(names::SIDECAR_IMAGE.into()), "the binary comes from the sidecar image");
    let dockerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../sshd/Dockerfile")).unwrap();
    let instructions: Vec<&str> =
        dockerfile.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(
        instructions.contains(&"FROM scratch")
            && instructions.iter().filter(|l| l.starts_with("COPY ") || l.starts_with("RUN ")).count() == 1,
        "the sidecar image must hold the binary alone: {instructions:?}"
    );

    for (tool, says) in [("make", "GNU Make"), ("git", "git version")] {
        let out = box_.run(&["ssh", "box", "--", tool, "--version"], None);
        assert!(out.success() && out.stdout.contains(says), "{tool} from the workload image: {out:?}");
    }
    let out = box_.run(
        &["ssh", "box", "--", "sh", "-c", "cd && pwd && echo kept > .claworc-test && cat .claworc-test && echo $HOME"],
        None,
    );
    assert_eq!(out.stdout, format!("{0}\nkept\n{0}\n", names::HOME_DIR), "a writable $HOME: {}", out.stderr);
}

/// The workload writes a file to a volume of its own; OpenSSH's `sftp`, through
/// `kubectl port-forward` to the pod's ssh port and pinned to the Secret's host
/// key, reads it from the sidecar. The volume comes with an edit of the
/// Deployment, which the webhook re-injects (the sidecar gets the new mount).
fn sftp_reads_what_the_workload_wrote(box_: &Instance, key: &Path) {
    let patch = serde_json::json!([
        {"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": "work", "emptyDir": {}}},
        {"op": "add", "path": "/spec/template/spec/containers/0/volumeMounts/-", "value": {"name": "work", "mountPath": "/data"}},
        {"op": "add", "path": "/spec/template/spec/containers/0/command", "value": ["sh", "-c",
            "echo written by the workload > /data/from-workload.txt && exec python3 -m http.server 8080 --bind 127.0.0.1 --directory /srv/www"]},
    ]);
    box_.ns.kubectl(&["patch", "deployment", "box", "--type", "json", "-p", &patch.to_string()]).expect_ok("patch");
    box_.ns.kubectl(&["rollout", "status", "deployment/box", "--timeout", "180s"]).expect_ok("rollout");
    let pod = wait_for("one running pod after the rollout", Duration::from_secs(60), || {
        let out = box_.ns.kubectl(&["get", "pods", "-l", &format!("{}=box", names::LABEL_INSTANCE), "-o", "json"]);
        let pods = out.json()["items"].as_array().cloned().unwrap_or_default();
        (pods.len() == 1 && pods[0]["metadata"]["deletionTimestamp"].is_null()).then(|| pods[0].clone())
    });
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();

    let host_key = secret_data(box_.ns.name(), &names::default_secret_name("box")).expect("the instance Secret");
    let mut forward = Cluster::get().command(Cluster::get().kubectl_path());
    forward.args(["-n", box_.ns.name(), "port-forward", &format!("pod/{pod_name}"), ":2222"]);
    forward.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut forward = KillOnDrop(forward.spawn().expect("kubectl port-forward"));
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(forward.0.stdout.take().unwrap()));
    let line = lines.next().expect("kubectl port-forward prints its port").unwrap();
    let port: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));

    let known_hosts = box_.home.join("sftp_known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {}", host_key[names::SECRET_HOST_KEY_PUB])).unwrap();
    let local = box_.home.join("from-workload.txt");
    let batch = format!("ls /data\nget /data/from-workload.txt {}\n", local.display());
    let mut sftp = Command::new("sftp");
    sftp.args(["-F", "/dev/null", "-b", "-", "-P", &port.to_string(), "-i"]).arg(key);
    sftp.args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o"]);
    sftp.arg(format!("UserKnownHostsFile={}", known_hosts.display())).arg(format!("{}@127.0.0.1", names::SSH_USER));
    let out = run(sftp, Some(&batch));
    assert!(out.success(), "sftp (apt-get install openssh-client): {out:?}");
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "written by the workload\n");
    drop(forward);
}

/// A second pod on the real node connects to the instance's pod IP: the ssh port
/// does not answer, while the node's kubelet port does (so the prober's network works).
fn from_another_pod_the_ssh_port_does_not_answer(box_: &Instance, pod_ip: &str) {
    let script = format!(
        "import socket\n\
         for host, port in (('{pod_ip}', 2222), ('10.99.0.1', 10250)):\n\
         \ts = socket.socket(); s.settimeout(3)\n\
         \tprint(host, port, 'open' if s.connect_ex((host, port)) == 0 else 'closed')\n"
    );
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prober"},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": workload_image(), "imagePullPolicy": "Never",
                "command": ["python3", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    });
    box_.ns.apply(&pod.to_string()).expect_ok("the prober pod");
    wait_for("the prober to finish", Duration::from_secs(60), || {
        let phase = box_.ns.kubectl(&["get", "pod", "prober", "-o", "jsonpath={.status.phase}"]).stdout;
        (phase == "Succeeded" || phase == "Failed").then_some(())
    });
    let out = box_.ns.kubectl(&["logs", "prober"]);
    let log = out.expect_ok("prober logs");
    assert!(log.contains("10.99.0.1 10250 open"), "the prober reaches the node: {log}");
    assert!(log.contains(&format!("{pod_ip} 2222 closed")), "the ssh port from another pod: {log}");
}

/// Drives `ARGV` on a fresh PTY of 24x80 (python3's pty module; Debian's python3,
/// tests/install-packages), runs `stty size` in the remote shell, resizes the PTY
/// to 40x132 (the kernel sends SIGWINCH to the plugin), runs `stty size` again
/// until the remote side follows, then `exit 3`. Prints "sizes ok" when both
/// sizes were seen; exits with the session's status.
const PTY_DRIVER: &str = r#"
import fcntl, os, pty, select, struct, sys, termios, time
def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    winsize(0, 24, 80)
    os.execvp(sys.argv[1], sys.argv[1:])
out = b''
def read_for(seconds, until):
    global out
    end = time.time() + seconds
    while until not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b''
            if not chunk:
                break
            out += chunk
    return until in out
def ask(size, tries):
    for _ in range(tries):
        os.write(fd, b'stty size\n')
        if read_for(1, size):
            return True
    return False
ok = ask(b'\n24 80', 30)
winsize(fd, 40, 132)
ok = ok and ask(b'\n40 132', 10)
os.write(fd, b'exit 3\n')
read_for(10, b'\0never')
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace').replace('\r', ''))
print('sizes ok' if ok else 'sizes NOT seen')
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn a_terminal_follows_window_size_changes_on_the_real_node() {
    let box_ = Instance::admin();
    box_.ok(&["create", "box", "--image", &workload_image(), "--wait", "--timeout", "3m"]);
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PTY_DRIVER]).arg(plugin_bin()).args(["-n", box_.ns.name(), "ssh", "box"]);
    for (k, v) in box_.command().get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = run(cmd, None);
    assert!(
        out.stdout.contains("sizes ok"),
        "the remote terminal did not show 24x80, then 40x132 after the resize (python3 missing? run tests/install-packages): {out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// The instance's host key replaced (as an interceptor would present another):
/// the pod restarts with it, and the plugin refuses the connection, with or
/// without --repin (the new key is not the one the Deployment's annotation pins).
#[test]
fn a_changed_host_key_is_refused_on_the_real_node() {
    let box_ = Instance::admin();
    box_.ok(&["create", "box", "--image", &workload_image(), "--wait", "--timeout", "3m"]);
    box_.ok(&["ssh", "box", "--", "true"]); // pins the host key

    let intruder = box_.home.join("intruder");
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&intruder).status();
    assert!(status.expect("ssh-keygen (openssh-client, tests/install-packages)").success());
    let mut keys = serde_json::Map::new();
    keys.insert(names::SECRET_HOST_KEY.into(), std::fs::read_to_string(&intruder).unwrap().into());
    let public = std::fs::read_to_string(intruder.with_extension("pub")).unwrap();
    keys.insert(names::SECRET_HOST_KEY_PUB.into(), public.into());
    let data = serde_json::json!({"stringData": keys});
    let secret = names::default_secret_name("box");
    box_.ns
        .kubectl(&["patch", "secret", &secret, "--type=merge", "-p", &data.to_string()])
        .expect_ok("swap the host key");
    // sshd reads its host key at start: a new pod, with the key the kubelet delivers.
    let selector = format!("{}=box", names::LABEL_INSTANCE);
    box_.ns.kubectl(&["delete", "pod", "-l", &selector, "--wait=false"]).expect_ok("delete the pod");
    box_.ns.kubectl(&["rollout", "status", "deployment/box", "--timeout=3m"]).expect_ok("the new pod");

    let out = wait_for("the changed host key to be refused", Duration::from_secs(90), || {
        let out = box_.run(&["ssh", "box", "--", "true"], None);
        out.stderr.contains("host key").then_some(out)
    });
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("rotate-keys NAME --host-key"), "{}", out.stderr);
    let out = box_.run(&["ssh", "box", "--repin", "--", "true"], None);
    assert_eq!(out.status.code(), Some(5), "--repin must be refused too: {}", out.stderr);
    assert!(out.stderr.contains("host key"), "{}", out.stderr);
}
