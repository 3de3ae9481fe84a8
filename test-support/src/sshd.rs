//! The real `claworc-sshd` on loopback, as the pod runs it: as UID/GID
//! [`RUN_AS`](crate::RUN_AS) (when the tests run as root), its keys in a
//! [`SecretVolume`], its `$HOME` a directory of that user, and its audit lines
//! (stderr) collected. OpenSSH clients are given the pinned host key only.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::secret::SecretVolume;
use claworc_contract::names::{ENV_SSHD_CONFIG, SECRET_AUTHORIZED_KEYS, SECRET_HOST_KEY, SECRET_HOST_KEY_PUB};

use crate::tools::{RUN_AS, as_run_as, is_root, require, run_with_stdin};

/// The binary under test: `$CLAWORC_SSHD_BIN` (e.g. the static release build:
/// `CLAWORC_SSHD_BIN=$(release/build-static claworc-sshd) cargo test`), else the
/// workspace's debug build, brought up to date once per test process.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CLAWORC_SSHD_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--offline", "--quiet", "-p", "claworc-sshd"])
            .current_dir(root)
            .status()
            .expect("run cargo build -p claworc-sshd");
        assert!(status.success(), "cargo build -p claworc-sshd failed");
        target.join("debug/claworc-sshd")
    })
    .clone()
}

/// A key pair made by `ssh-keygen` (ed25519, no passphrase).
pub struct Key {
    pub private: PathBuf,
    pub public_line: String,
}

impl Key {
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen").arg("-lf").arg(&self.private).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
    }

    pub fn private_text(&self) -> String {
        std::fs::read_to_string(&self.private).unwrap()
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

/// A whole config, given the keys directory.
pub type ConfigFor = Box<dyn Fn(&Path) -> String + Send>;

/// How the server is configured and started.
#[derive(Default)]
pub struct Options {
    /// Lines added to the harness's config (`port 0`, the keys directory, `user
    /// claworc`, `forward-ports 1`); a `forward-ports` here replaces the harness's.
    pub config: String,
    /// The whole config instead, given the keys directory (e.g. the one the webhook
    /// injected, or the contract's rendering).
    pub full_config: Option<ConfigFor>,
    /// Pass the config in `CLAWORC_SSHD_CONFIG`, as the sidecar gets it, not `--config FILE`.
    pub config_in_env: bool,
    /// The server's environment besides `HOME` and `PATH`.
    pub env: Vec<(String, String)>,
    /// Another copy of the binary (e.g. one delivered by `claworc-sshd install`).
    pub binary: Option<PathBuf>,
    /// Hide every shell (a mount namespace with /dev/null bound over them), as in
    /// an image without /bin/sh. Needs root.
    pub no_shell: bool,
    /// A private /dev/pts with a container runtime's options (gid 5, mode 0620),
    /// as in a pod. Needs root.
    pub private_pts: bool,
}

const HIDE_SHELLS: &str = r#"for f in /bin/sh /bin/bash /bin/dash /usr/bin/sh /usr/bin/bash /usr/bin/dash; do
  [ -e "$f" ] && mount --bind /dev/null "$(readlink -f "$f")"
done
"#;
const PRIVATE_PTS: &str = "mount -t devpts -o newinstance,gid=5,mode=620,ptmxmode=666 devpts /dev/pts \
     && mount --bind /dev/pts/ptmx /dev/ptmx\n";

pub struct Sshd {
    pub options: Options,
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The server's $HOME (owned by the pod's user).
    pub home: PathBuf,
    /// The Secret volume: `ssh_host_ed25519_key`, `.pub` and `authorized_keys`.
    pub keys: PathBuf,
    /// Client-side files (keys, known_hosts), owned by the test's user.
    pub client: PathBuf,
    /// The Secret's host key.
    pub host_key: Key,
    /// The key in `authorized_keys`.
    pub user_key: Key,
    /// A known_hosts file holding only the Secret's host key for this server.
    pub known_hosts: PathBuf,
    /// The fingerprint the server announced when it started listening.
    pub host_fingerprint: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sshd {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let mut sshd = Self::prepare(options);
        sshd.spawn();
        sshd
    }

    /// The directories and keys, with no server running yet.
    pub fn prepare(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (home, keys, client) = (dir.path().join("home"), dir.path().join("keys"), dir.path().join("client"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(&home).unwrap();
        std::fs::create_dir(&client).unwrap();
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o700)).unwrap();
        if is_root() {
            std::os::unix::fs::chown(&home, Some(RUN_AS), Some(RUN_AS)).unwrap();
        }
        let host_key = keygen(&client, "host", "host");
        let user_key = keygen(&client, "user", "alice@laptop");
        let sshd = Sshd {
            options,
            child: None,
            port: 0,
            known_hosts: client.join("known_hosts"),
            host_fingerprint: String::new(),
            lines: Arc::default(),
            home,
            keys,
            client,
            host_key,
            user_key,
            dir,
        };
        let (private, public) = (sshd.host_key.private_text(), format!("{}\n", sshd.host_key_public()));
        let authorized = format!("{}\n", sshd.user_key.public_line);
        sshd.secret().write(&[
            (SECRET_HOST_KEY, &private),
            (SECRET_HOST_KEY_PUB, &public),
            (SECRET_AUTHORIZED_KEYS, &authorized),
        ]);
        sshd
    }

    /// The Secret volume the server reads its keys from.
    pub fn secret(&self) -> SecretVolume {
        SecretVolume::at(&self.keys)
    }

    /// The host public key now in the Secret (`ssh-ed25519 AAAA… comment`).
    pub fn host_key_public(&self) -> String {
        let path = self.keys.join(SECRET_HOST_KEY_PUB);
        let text = std::fs::read_to_string(&path)
            .or_else(|_| std::fs::read_to_string(self.host_key.private.with_extension("pub")))
            .unwrap();
        text.trim().to_string()
    }

    /// Replaces the Secret's files (as a rotation or `kubectl apply` of the Secret does).
    pub fn write_secret(&self, files: &[(&str, &str)]) {
        self.secret().write(files);
    }

    /// Replaces `authorized_keys` only (the host key stays).
    pub fn rotate_authorized_keys(&self, content: &str) {
        let secret = self.secret();
        let (private, public) = (secret.read(SECRET_HOST_KEY), secret.read(SECRET_HOST_KEY_PUB));
        secret.write(&[(SECRET_HOST_KEY, &private), (SECRET_HOST_KEY_PUB, &public), (SECRET_AUTHORIZED_KEYS, content)]);
    }

    /// The config the server is given.
    fn config(&self) -> String {
        match &self.options.full_config {
            Some(full) => full(&self.keys),
            None => {
                let mut config = format!("port 0\nkeys-dir {}\nuser claworc\n", self.keys.display());
                if !self.options.config.contains("forward-ports") {
                    config.push_str("forward-ports 1\n");
                }
                config + &self.options.config
            }
        }
    }

    /// Starts the server (again, after [`Sshd::stop`]) and waits until it listens.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        require("setpriv");
        let bin = self.options.binary.clone().unwrap_or_else(binary);
        let mut cmd = if self.options.no_shell || self.options.private_pts {
            assert!(is_root(), "a private /dev/pts or hidden shells need a mount namespace: run this test as root");
            let mut script = String::new();
            if self.options.private_pts {
                script.push_str(PRIVATE_PTS);
            }
            if self.options.no_shell {
                script.push_str(HIDE_SHELLS);
            }
            script.push_str("exec \"$@\"");
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", &script, "sh"]);
            let inner = as_run_as(&bin);
            c.arg(inner.get_program()).args(inner.get_args());
            c
        } else {
            as_run_as(&bin)
        };
        let config = self.config();
        if !self.options.config_in_env {
            let path = self.dir.path().join("sshd.conf");
            std::fs::write(&path, &config).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            cmd.arg("--config").arg(path);
        }
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(self.options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if self.options.config_in_env {
            cmd.env(ENV_SSHD_CONFIG, config);
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn claworc-sshd");
        let stderr = child.stderr.take().unwrap();
        let lines = self.lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        let before = self.events("listening").len();
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = loop {
            if let Some(v) = self.events("listening").into_iter().nth(before) {
                break v;
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("claworc-sshd exited ({status}) before listening; stderr:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "claworc-sshd did not listen; stderr so far:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = Some(child);
        let addr = listening["addr"].as_str().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "listens on {addr}, not loopback only");
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        self.host_fingerprint = listening["host_key"].as_str().unwrap().to_string();
        std::fs::write(&self.known_hosts, format!("[127.0.0.1]:{} {}\n", self.port, self.host_key_public())).unwrap();
    }

    /// Stops the server and every connection it serves (its descendants, by pid).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let family = descendants(c.id());
            let _ = c.kill();
            let _ = c.wait();
            for pid in family {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }

    /// Everything the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Every audit line so far, parsed (a line that is not JSON fails the test).
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
            assert!(Instant::now() < deadline, "no {name:?} audit event; stderr so far:\n{}", self.log());
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
            assert!(
                Instant::now() < deadline,
                "{} {name:?} audit events, not {n}; stderr so far:\n{}",
                events.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's UID as the sessions see it.
    pub fn uid(&self) -> u32 {
        if is_root() { RUN_AS } else { rustix::process::geteuid().as_raw() }
    }

    /// OpenSSH options: no config files, the pinned host key only, this key only.
    pub fn ssh_options(&self, key: &Path) -> Vec<String> {
        let known_hosts = format!("UserKnownHostsFile={}", self.known_hosts.display());
        [
            "-F",
            "/dev/null",
            "-o",
            &known_hosts,
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
        require("ssh");
        let mut c = Command::new("ssh");
        c.args(self.ssh_options(key)).args(["-p", &self.port.to_string(), "-l", "claworc"]);
        c
    }

    /// The `-e` command for rsync.
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
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pids of every descendant of `pid` (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let (mut out, mut frontier) = (Vec::new(), vec![pid]);
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
