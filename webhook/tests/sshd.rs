//! What the webhook injects, run for real on loopback:
//!
//! - the sidecar's command and `CLAWORC_SSHD_CONFIG`, run by the real
//!   `claworc-sshd` binary (delivered by `claworc-sshd install`, as the init
//!   container does) as a non-root user, with the file owners and modes the pod's
//!   Secret volume has (root:fsGroup, 0440), OpenSSH's `ssh` as the client, and
//!   the readiness probe's command against it;
//! - the upgrade: a Deployment as the 0.1.0 webhook stored it (OpenSSH in the
//!   Debian sidecar image, `tests/fixtures/deployment-injected-by-0.1.0.json`)
//!   is switched to claworc-sshd by the next write, and serves the same host key
//!   from the same Secret, so nobody's pin breaks.
//!
//! The pod's volumes and the server come from the workspace's one harness
//! (`claworc-test-support`). Needs root (to run the servers as UID 1000, as in
//! the pod), a user with UID 1000 (useradd -u 1000 claworc), and OpenSSH's
//! `sshd`, `ssh`, `ssh-keygen` and `ssh-keyscan` (`tests/install-packages`);
//! the harness builds `claworc-sshd` (or takes $CLAWORC_SSHD_BIN).

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use claworc_test_support::{INSTALL, Options, RUN_AS, Sshd, as_run_as, free_port, is_root, keygen};

use claworc_contract::names::{ENV_SSHD_CONFIG, INSTALLER, KEYS_DIR, SIDECAR, SSHD_BINARY, VOLUME_KEYS};
use claworc_webhook::inject::{self, Config};
use claworc_webhook::review;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::json;

/// Fails with the install hint when an OpenSSH program is missing.
fn need(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("{program} is missing: {INSTALL}");
}

fn user_1000() -> String {
    let out = Command::new("getent").args(["passwd", &RUN_AS.to_string()]).output().unwrap();
    assert!(out.status.success(), "no user with UID {RUN_AS}: create one with `useradd -u {RUN_AS} -m claworc`");
    String::from_utf8(out.stdout).unwrap().split(':').next().unwrap().to_string()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// The workspace's harness with the pod's volumes (the Secret's keys root:1000,
/// 0440), no server running yet; the test must run as root, as CI does.
fn pod() -> Sshd {
    assert!(is_root(), "this test runs the servers as UID {RUN_AS} and must start as root (CI does)");
    user_1000();
    Sshd::prepare(Options::default())
}

/// Delivers the binary as the init container does, then starts the sidecar's
/// command with its environment: the config in `CLAWORC_SSHD_CONFIG` (keys
/// directory moved to the harness's Secret volume, port 0), HOME the harness's.
fn start_claworc_sshd(pod: &mut Sshd, installer: &Container, sidecar: &Container) {
    let command = installer.command.as_ref().unwrap();
    assert_eq!((command[1].as_str(), command[2].as_str()), ("install", SSHD_BINARY));
    let run_dir = pod.dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let delivered = run_dir.join("claworc-sshd");
    let out = run(Command::new(claworc_test_support::binary()).arg("install").arg(&delivered));
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sidecar.command.as_deref(), Some(&[SSHD_BINARY.to_string()][..]));

    let config = env_value(sidecar, ENV_SSHD_CONFIG).to_string();
    pod.options = Options {
        full_config: Some(Box::new(move |keys: &Path| {
            config
                .lines()
                .map(|l| {
                    if l.starts_with("port ") {
                        "port 0\n".to_string()
                    } else {
                        format!("{}\n", l.replace(KEYS_DIR, keys.to_str().unwrap()))
                    }
                })
                .collect()
        })),
        config_in_env: true,
        binary: Some(delivered),
        ..Options::default()
    };
    pod.spawn();
}

/// Waits until OpenSSH's sshd listens (it writes no audit line to wait for).
fn wait_listening(child: &mut Child, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("sshd exited ({status}) before listening on 127.0.0.1:{port}: {log}");
        }
        assert!(Instant::now() < deadline, "sshd did not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The delivered binary (after [`start_claworc_sshd`]).
fn delivered(pod: &Sshd) -> PathBuf {
    pod.dir.path().join("run/claworc-sshd")
}

fn sidecar_of(d: &Deployment) -> &Container {
    let init = d.spec.template.spec.as_ref().unwrap().init_containers.as_ref().unwrap();
    init.iter().find(|c| c.name == SIDECAR).unwrap()
}

fn env_value<'a>(c: &'a Container, name: &str) -> &'a str {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
        .unwrap_or_else(|| panic!("no {name}"))
}

fn ssh(port: u16, login: &str, extra: &[&str], identity: Option<&Path>, command: &[&str]) -> Output {
    let mut c = Command::new(need("ssh"));
    c.args([
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ]);
    c.args(["-o", "LogLevel=ERROR", "-p", &port.to_string(), "-l", login]);
    match identity {
        Some(key) => c.args(["-o", "IdentitiesOnly=yes", "-i"]).arg(key),
        None => c.args(["-o", "PubkeyAuthentication=no"]),
    };
    run(c.args(extra).arg("127.0.0.1").args(command))
}

/// The host key fingerprint a client sees, through `ssh-keyscan`.
fn served_fingerprint(port: u16) -> String {
    let scan =
        run(Command::new(need("ssh-keyscan")).args(["-T", "5", "-t", "ed25519", "-p", &port.to_string(), "127.0.0.1"]));
    let line = String::from_utf8_lossy(&scan.stdout).lines().find(|l| !l.starts_with('#')).map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("ssh-keyscan got no key: {}", String::from_utf8_lossy(&scan.stderr)));
    let mut keygen = Command::new(need("ssh-keygen"));
    keygen.args(["-lf", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = keygen.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), line.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
}

/// The webhook's sidecar and installer for a Deployment with `annotations`.
fn injected(annotations: &[(&str, &str)]) -> (Container, Container) {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "box", "labels": {"claworc.io/ssh": "enabled"}, "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "box"}}, "template": {"metadata": {"labels": {"app": "box"}},
            "spec": {"containers": [{"name": "work", "image": "debian:bookworm"}]}}}
    }))
    .unwrap();
    let d = inject::inject(&d, &inject::settings(&d).unwrap(), &Config::default());
    let init = d.spec.template.spec.unwrap().init_containers.unwrap();
    let find = |n: &str| init.iter().find(|c| c.name == n).cloned().unwrap();
    (find(INSTALLER), find(SIDECAR))
}

#[test]
fn the_injected_sidecar_logs_in_the_authorized_key_as_the_pods_user_and_is_ready() {
    let mut pod = pod();
    let (installer, sidecar) = injected(&[]);
    start_claworc_sshd(&mut pod, &installer, &sidecar);
    let client = pod.user_key.private.clone();
    let out = ssh(pod.port, "claworc", &[], Some(&client), &["id", "-u"]);
    assert!(out.status.success(), "login refused: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), RUN_AS.to_string());
    let out = ssh(pod.port, "claworc", &[], Some(&client), &["sh", "-c", "'echo $HOME'"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pod.home.to_str().unwrap());

    // The readiness probe's command, with the delivered binary: ready now, not once it is gone.
    let probe = sidecar.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
    assert_eq!(probe[1], "probe");
    let delivered = delivered(&pod);
    let ready = |port: u16| run(as_run_as(&delivered).args(["probe", &port.to_string()])).status.success();
    assert!(ready(pod.port), "the probe fails against a listening server");
    let port = pod.port;
    pod.stop();
    assert!(!ready(port), "the probe passes with no server");
}

#[test]
fn refuses_passwords_other_users_and_unknown_keys() {
    let mut pod = pod();
    let (installer, sidecar) = injected(&[]);
    start_claworc_sshd(&mut pod, &installer, &sidecar);
    let out =
        ssh(pod.port, "claworc", &["-o", "PreferredAuthentications=password,keyboard-interactive"], None, &["true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stranger = keygen(&pod.client, "stranger", "stranger");
    let unknown = ssh(pod.port, "claworc", &[], Some(&stranger.private), &["true"]);
    assert!(!unknown.status.success(), "an unknown key logged in");
    assert!(!ssh(pod.port, "root", &[], Some(&pod.user_key.private), &["true"]).status.success(), "root logged in");
}

#[test]
fn forwards_only_to_the_listed_ports() {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let mut pod = pod();
    let (installer, sidecar) = injected(&[("claworc.io/forward-ports", &allowed_port.to_string())]);
    start_claworc_sshd(&mut pod, &installer, &sidecar);
    // `ssh -W` asks for a direct-tcpip channel, exactly what a tunnel does.
    let through = |port: u16| {
        let target = format!("localhost:{port}");
        ssh(pod.port, "claworc", &["-W", &target], Some(&pod.user_key.private), &[])
    };
    std::thread::spawn(move || {
        let (mut s, _) = allowed.accept().unwrap();
        std::io::Write::write_all(&mut s, b"hello from the workload\n").unwrap();
    });
    let out = through(allowed_port);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the workload\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = through(other_port);
    assert!(!out.status.success() && out.stdout.is_empty(), "a forward outside the list was opened");
    other.set_nonblocking(true).unwrap();
    assert_eq!(other.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "connected to the unlisted port");
}

/// An UPDATE of `old` to `new`, as the API server sends it.
fn update(old: &Deployment, new: &Deployment) -> AdmissionRequest<Deployment> {
    let review: AdmissionReview<Deployment> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "box", "namespace": "dev", "operation": "UPDATE",
            "userInfo": {"username": "dev"}, "object": new, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap();
    review.try_into().unwrap()
}

#[test]
fn an_instance_of_the_previous_release_switches_at_its_next_write_with_the_same_host_key() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/deployment-injected-by-0.1.0.json"
    ))
    .unwrap();
    let old: Deployment = serde_json::from_str(&text).unwrap();
    let old_sidecar = sidecar_of(&old).clone();
    assert_eq!(old_sidecar.command.as_ref().unwrap()[0], "/bin/sh", "the fixture is the OpenSSH sidecar");

    // Before: OpenSSH's sshd with the config the 0.1.0 webhook rendered, over the Secret.
    let mut pod = pod();
    let port = free_port();
    let config = env_value(&old_sidecar, ENV_SSHD_CONFIG)
        .replace(KEYS_DIR, pod.keys.to_str().unwrap())
        .replace("Port 2222\n", &format!("Port {port}\n"));
    let config_file = pod.dir.path().join("sshd_config");
    std::fs::write(&config_file, config).unwrap();
    std::fs::set_permissions(&config_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut sshd = as_run_as(need("sshd"));
    let log = pod.dir.path().join("sshd.log");
    sshd.args(["-D", "-e", "-f"]).arg(&config_file).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let mut openssh = sshd.spawn().unwrap();
    wait_listening(&mut openssh, port, &log);
    let before = served_fingerprint(port);
    let user = user_1000();
    let out = ssh(port, &user, &[], Some(&pod.user_key.private), &["true"]);
    let _ = openssh.kill();
    let _ = openssh.wait();
    assert!(out.status.success(), "the 0.1.0 sidecar: {}", String::from_utf8_lossy(&out.stderr));

    // The next write (here: the annotation `kubectl claworc rotate-keys` sets) is re-injected.
    let mut new = old.clone();
    new.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("claworc.io/keys-rotated-at".into(), "2026-11-26T20:00:00Z".into());
    let req = update(&old, &new);
    let res = review::mutate(&req, &Config::default());
    assert!(res.allowed, "{:?}", res.result);
    let patch: json_patch::Patch =
        serde_json::from_slice(res.patch.as_ref().expect("the next write is patched")).unwrap();
    let mut stored = serde_json::to_value(&new).unwrap();
    json_patch::patch(&mut stored, &patch).unwrap();
    let stored: Deployment = serde_json::from_value(stored).unwrap();
    assert!(review::validate(&update(&old, &stored), &Config::default()).allowed, "the switched template validates");

    let volume = |d: &Deployment| {
        d.spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == VOLUME_KEYS)
            .cloned()
            .unwrap()
    };
    assert_eq!(volume(&stored), volume(&old), "the same Secret, mounted the same way");
    let init = stored.spec.template.spec.as_ref().unwrap().init_containers.clone().unwrap();
    let installer = init.iter().find(|c| c.name == INSTALLER).expect("the new shape has the installer").clone();
    let sidecar = sidecar_of(&stored).clone();
    assert_eq!(sidecar.image.as_deref(), Some("busybox:1.36"), "the workload's image, not the OpenSSH one");
    let keys_mount =
        |c: &Container| c.volume_mounts.iter().flatten().find(|m| m.name == VOLUME_KEYS).unwrap().mount_path.clone();
    assert_eq!(keys_mount(&sidecar), keys_mount(&old_sidecar));

    // After: claworc-sshd serves the same host key; a client pinned before logs in.
    start_claworc_sshd(&mut pod, &installer, &sidecar);
    let after = served_fingerprint(pod.port);
    assert_eq!(after, before, "the host key fingerprint changed across the switch");
    assert_eq!(after, pod.host_key.fingerprint(), "not the Secret's host key");
    // A client pinned to the Secret's host key (the harness's known_hosts holds only it).
    let out = run(pod.ssh().arg("127.0.0.1").arg("true"));
    assert!(out.status.success(), "a client pinned to the Secret's key: {}", String::from_utf8_lossy(&out.stderr));
}
