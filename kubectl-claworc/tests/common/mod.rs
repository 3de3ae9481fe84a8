//! The real `claworc-sshd` on loopback, configured exactly as the webhook
//! configures the sidecar: the config rendered by `claworc_contract::claworc_sshd_config`
//! (the keys directory pointing at a temporary directory), running as the
//! non-root user of uid 1000, its keys owned by root:1000 with mode 0440 as the
//! Secret volume has them. Shared by the loopback tests and the tunnel benchmark.
//! The binary is the workspace's build (`cargo build -p claworc-sshd`), or
//! `$CLAWORC_SSHD_BIN`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claworc_contract::Settings;
use claworc_contract::annotations as a;
use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::names::{SECRET_AUTHORIZED_KEYS, SECRET_HOST_KEY, SECRET_HOST_KEY_PUB, SSH_USER};
use kubectl_claworc::keys;
use russh::keys::PrivateKey;

pub const RUN_AS: u32 = 1000;

pub struct Sshd {
    pub dir: PathBuf,
    pub port: u16,
    pub user: String,
    pub host_key: PrivateKey,
    pub client_key: PrivateKey,
    pub client_key_file: PathBuf,
    child: Option<Child>,
    config: PathBuf,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The passwd name of uid 1000 (the sidecar's run-as user in the tests).
pub fn user_of_uid_1000() -> String {
    let out = Command::new("getent").args(["passwd", &RUN_AS.to_string()]).output().expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let name = line.split(':').next().unwrap_or("").trim().to_string();
    assert!(!name.is_empty(), "this machine has no user of uid {RUN_AS} (getent passwd {RUN_AS}); the tests need one");
    name
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

impl Sshd {
    /// Starts sshd allowing forwards to `forward_ports` only.
    pub fn start(forward_ports: &[u16]) -> Sshd {
        let dir = std::env::temp_dir().join(format!("claworc-sshd-{}-{}", std::process::id(), free_port()));
        let keys_dir = dir.join("keys");
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&keys_dir).unwrap();
        std::fs::create_dir_all(&run_dir).unwrap();
        for d in [&dir, &keys_dir, &run_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let host_key = keys::generate("host").unwrap();
        let client_key = keys::generate("client").unwrap();
        let client_key_file = dir.join("id_ed25519");
        std::fs::write(&client_key_file, keys::private_openssh(&client_key).unwrap()).unwrap();
        std::fs::set_permissions(&client_key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let port = free_port();
        let ports: Vec<String> = forward_ports.iter().map(u16::to_string).collect();
        let annotations = BTreeMap::from([
            (a::SSH_PORT.to_string(), port.to_string()),
            (a::FORWARD_PORTS.to_string(), ports.join(",")),
        ]);
        let settings = Settings::from_annotations("box", &annotations).unwrap();
        let config_text =
            SshdConfig { keys_dir: keys_dir.to_str().unwrap().into(), ..SshdConfig::from_settings(&settings) }.render();
        let config = dir.join("sshd_config");
        std::fs::write(&config, config_text).unwrap();
        let sshd = Sshd {
            dir,
            port,
            user: {
                user_of_uid_1000();
                SSH_USER.to_string()
            },
            host_key,
            client_key: client_key.clone(),
            client_key_file,
            child: None,
            config,
        };
        sshd.write_keys(&sshd.host_key, &[client_key.public_key()]);
        let mut sshd = sshd;
        sshd.spawn();
        sshd
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// Writes the key files as the Secret volume has them: root:1000, 0440.
    pub fn write_keys(&self, host_key: &PrivateKey, authorized: &[&russh::keys::PublicKey]) {
        let dir = self.keys_dir();
        let auth = keys::render_authorized_keys(authorized.iter().copied());
        let files = [
            (SECRET_AUTHORIZED_KEYS, auth),
            (SECRET_HOST_KEY, keys::private_openssh(host_key).unwrap()),
            (SECRET_HOST_KEY_PUB, format!("{}\n", keys::public_openssh(host_key.public_key()))),
        ];
        for (name, content) in files {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).unwrap();
            set_owner_mode(&tmp);
            std::fs::rename(&tmp, &path).unwrap();
        }
    }

    /// Starts (or restarts) the claworc-sshd process.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(claworc_sshd_bin());
        cmd.arg("--config").arg(&self.config);
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &RUN_AS.to_string(), "--regid", &RUN_AS.to_string(), "--clear-groups"]);
            c.arg(cmd.get_program()).args(cmd.get_args());
            c
        } else {
            cmd
        };
        let log = std::fs::File::create(self.dir.join("sshd.log")).unwrap();
        cmd.env("HOME", self.dir.join("run")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("start claworc-sshd"));
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited ({status}): {}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "sshd did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the sshd process (connections it serves end too).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Connections are served by descendants of the listener: end them too, by pid.
            let family = descendants(c.id());
            let _ = c.kill();
            let _ = c.wait();
            for pid in family {
                // SAFETY: kill(2) on pids of processes this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn host_fingerprint(&self) -> String {
        keys::fingerprint(self.host_key.public_key())
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }
}

/// The claworc-sshd binary: $CLAWORC_SSHD_BIN, else the workspace's debug build.
pub fn claworc_sshd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAWORC_SSHD_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/TEST-HASH -> target/debug/claworc-sshd
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("claworc-sshd");
    assert!(bin.is_file(), "{} is missing: build it with `cargo build -p claworc-sshd`", bin.display());
    bin
}

fn set_owner_mode(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(0), Some(RUN_AS)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o440)).unwrap();
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
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
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
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
