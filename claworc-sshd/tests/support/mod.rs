//! The one harness of the claworc-sshd tests: a real `claworc-sshd` process on
//! 127.0.0.1:0 with a temporary keys directory (laid out as a Kubernetes
//! Secret volume: files behind a `..data` symlink) and home, its audit lines
//! collected from stderr, and OpenSSH clients pinned to its host key.
//!
//! Run as root (CI), the server runs as uid/gid 1000 (setpriv), as in the pod,
//! with the keys root:1000 mode 0440 as the kubelet leaves them;
//! otherwise as the current user. Missing client tools fail the test with the
//! command that installs them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const INSTALL: &str = "run `tests/install-packages` as root (Debian: openssh-client rsync; PyPI: ssh-audit>=3.9)";
const RUN_AS: u32 = 1000;

/// Fails with an install hint when `tool` is not on PATH.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "{tool} is missing: {INSTALL}");
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A client key pair made by ssh-keygen.
pub struct Key {
    pub private: PathBuf,
    pub public_line: String,
}

impl Key {
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen").arg("-lf").arg(&self.private).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
    }
}

pub fn keygen(dir: &Path, name: &str, comment: &str) -> Key {
    require("ssh-keygen");
    let private = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
    let public_line = std::fs::read_to_string(private.with_extension("pub")).unwrap().trim().to_string();
    Key { private, public_line }
}

/// Extra config lines and what the server's environment holds.
#[derive(Default)]
pub struct Options {
    pub config: String,
    pub env: Vec<(String, String)>,
    /// Hide every shell from the server (a mount namespace with /dev/null
    /// bound over them), as in an image without /bin/sh. Needs root.
    pub no_shell: bool,
}

/// Runs the rest of the command line with the shells replaced by /dev/null.
const HIDE_SHELLS: &str = r#"for f in /bin/sh /bin/bash /bin/dash /usr/bin/sh /usr/bin/bash /usr/bin/dash; do
  [ -e "$f" ] && mount --bind /dev/null "$(readlink -f "$f")"
done
exec "$@""#;

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The server's $HOME.
    pub home: PathBuf,
    /// The "Secret volume".
    pub keys: PathBuf,
    /// Client-side files (keys, known_hosts); owned by the test's user.
    pub client: PathBuf,
    pub user_key: Key,
    pub known_hosts: PathBuf,
    pub host_fingerprint: String,
    lines: Arc<Mutex<Vec<String>>>,
    secret_version: u32,
}

impl Sshd {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Self {
        require("ssh");
        let dir = tempfile::tempdir().unwrap();
        let (home, keys, client) = (dir.path().join("home"), dir.path().join("keys"), dir.path().join("client"));
        for d in [&home, &keys, &client] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o700)).unwrap();
        let host = keygen(&client, "host", "host");
        let user_key = keygen(&client, "user", "alice@laptop");
        let mut sshd = Sshd {
            child: Command::new("true").spawn().unwrap(),
            port: 0,
            home,
            keys,
            client,
            user_key,
            known_hosts: PathBuf::new(),
            host_fingerprint: String::new(),
            lines: Arc::default(),
            secret_version: 0,
            dir,
        };
        let _ = sshd.child.wait();
        let host_private = std::fs::read_to_string(&host.private).unwrap();
        let line = sshd.user_key.public_line.clone();
        sshd.write_secret(&[("ssh_host_ed25519_key", &host_private), ("authorized_keys", &format!("{line}\n"))]);
        if is_root() {
            std::fs::set_permissions(sshd.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            chown(&sshd.home, "1000:1000");
            chown(&sshd.keys, "0:1000");
        }
        let config =
            format!("port 0\nkeys-dir {}\nuser claworc\nforward-ports 1\n{}", sshd.keys.display(), opts.config);
        let config = dedupe_forward_ports(&config);
        let cfg_path = sshd.dir.path().join("sshd.conf");
        std::fs::write(&cfg_path, config).unwrap();
        std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let bin = server_binary();
        let bin = bin.as_str();
        // setpriv's arguments: the server as the pod's UID/GID, no groups.
        let as_run_as = [
            format!("--reuid={RUN_AS}"),
            format!("--regid={RUN_AS}"),
            "--clear-groups".to_string(),
            "--".to_string(),
            bin.to_string(),
        ];
        let mut cmd = if opts.no_shell {
            assert!(is_root(), "hiding the shells needs a mount namespace: run this test as root");
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", HIDE_SHELLS, "sh", "setpriv"]);
            c.args(as_run_as);
            c
        } else if is_root() {
            let mut c = Command::new("setpriv");
            c.args(as_run_as);
            c
        } else {
            Command::new(bin)
        };
        cmd.arg("--config")
            .arg(&cfg_path)
            .env_clear()
            .env("HOME", &sshd.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        cmd.envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn claworc-sshd");
        let stderr = child.stderr.take().unwrap();
        let lines = sshd.lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        sshd.child = child;
        let listening = sshd.wait_event("listening", |_| true);
        let addr = listening["addr"].as_str().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "listens on {addr}, not loopback only");
        sshd.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        sshd.host_fingerprint = listening["host_key"].as_str().unwrap().to_string();
        let host_pub = std::fs::read_to_string(host.private.with_extension("pub")).unwrap();
        sshd.known_hosts = sshd.client.join("known_hosts");
        std::fs::write(&sshd.known_hosts, format!("[127.0.0.1]:{} {}", sshd.port, host_pub)).unwrap();
        sshd
    }

    /// Replaces the Secret volume's content as the kubelet does: a new
    /// timestamped directory, then an atomic swap of the `..data` symlink.
    pub fn write_secret(&mut self, files: &[(&str, &str)]) {
        self.secret_version += 1;
        let version = format!("..v{}", self.secret_version);
        let vdir = self.keys.join(&version);
        std::fs::create_dir(&vdir).unwrap();
        for (name, content) in files {
            let p = vdir.join(name);
            std::fs::write(&p, content).unwrap();
            // As the kubelet leaves a Secret volume with defaultMode 0440 and fsGroup.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o440)).unwrap();
            let link = self.keys.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
        if is_root() {
            chown(&self.keys, "0:1000");
        }
        let tmp = self.keys.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.keys.join("..data")).unwrap();
    }

    /// Replaces `authorized_keys` only (the host key stays).
    pub fn rotate_authorized_keys(&mut self, content: &str) {
        let host = std::fs::read_to_string(self.keys.join("ssh_host_ed25519_key")).unwrap();
        self.write_secret(&[("ssh_host_ed25519_key", &host), ("authorized_keys", content)]);
    }

    /// OpenSSH options: no config files, the pinned host key only, this key only.
    pub fn ssh_options(&self, key: &Path) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-i",
            &key.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `ssh` to the server as `claworc` with the authorized key.
    pub fn ssh(&self) -> Command {
        self.ssh_with_key(&self.user_key.private)
    }

    pub fn ssh_with_key(&self, key: &Path) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_options(key)).args(["-p", &self.port.to_string(), "-l", "claworc"]);
        c
    }

    /// The `-e` command for rsync, and a base for scp/sftp (`-P` port).
    pub fn ssh_command_line(&self) -> String {
        let mut parts = vec!["ssh".to_string()];
        parts.extend(self.ssh_options(&self.user_key.private));
        parts.extend(["-p".into(), self.port.to_string()]);
        parts.join(" ")
    }

    pub fn scp(&self) -> Command {
        require("scp");
        let mut c = Command::new("scp");
        c.args(self.ssh_options(&self.user_key.private)).args(["-P", &self.port.to_string()]);
        c
    }

    pub fn sftp_batch(&self, batch: &str) -> Output {
        require("sftp");
        let mut c = Command::new("sftp");
        c.args(self.ssh_options(&self.user_key.private)).args(["-P", &self.port.to_string(), "-b", "-"]);
        c.arg("claworc@127.0.0.1").current_dir(&self.client);
        run_with_stdin(c, batch.as_bytes())
    }

    /// Every audit line so far, parsed (a non-JSON line fails the test).
    pub fn audit(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l}")))
            .collect()
    }

    pub fn events(&self, name: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|v| v["event"] == name).collect()
    }

    /// Waits up to 20 s for an audit event `name` matching `pred`.
    pub fn wait_event(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.events(name).into_iter().find(|v| pred(v)) {
                return v;
            }
            if Instant::now() >= deadline {
                let so_far = self.lines.lock().unwrap().join("\n");
                panic!("no {name:?} audit event; stderr so far:\n{so_far}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to 20 s until there are `n` audit events `name`; returns them.
    pub fn wait_count(&self, name: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.events(name);
            if events.len() >= n {
                return events;
            }
            assert!(Instant::now() < deadline, "{} {name:?} audit events, not {n}", events.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's UID as the sessions see it.
    pub fn uid(&self) -> u32 {
        if is_root() { RUN_AS } else { rustix::process::geteuid().as_raw() }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under test: this build's, or `$CLAWORC_SSHD_BIN` (e.g. the
/// static release binary: `CLAWORC_SSHD_BIN=$(release/build-static claworc-sshd) cargo test -p claworc-sshd`).
pub fn server_binary() -> String {
    std::env::var("CLAWORC_SSHD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_claworc-sshd").to_string())
}

fn chown(path: &Path, owner: &str) {
    let st = Command::new("chown").args(["-hR", owner]).arg(path).status().unwrap();
    assert!(st.success());
}

/// Tests may give `forward-ports` themselves; the harness's placeholder goes then.
fn dedupe_forward_ports(config: &str) -> String {
    if config.matches("forward-ports").count() > 1 {
        config.replacen("forward-ports 1\n", "", 1)
    } else {
        config.to_string()
    }
}

pub fn run_with_stdin(mut c: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `c` with no stdin; returns (status success, stdout, stderr).
pub fn run(mut c: Command) -> (bool, String, String) {
    let out = c.stdin(Stdio::null()).output().unwrap();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}
