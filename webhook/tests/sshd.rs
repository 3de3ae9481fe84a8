//! The injected sshd config, run by Debian's real OpenSSH `sshd` as a non-root
//! user on loopback, with the file owners and modes the pod's Secret volume has
//! (root:fsGroup, 0440), and OpenSSH's `ssh` as the client.
//!
//! Needs `sshd` and `ssh` (apt-get install openssh-server openssh-client) and a
//! user with UID 1000 (useradd -u 1000 claworc); `.ci/run` installs both.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use claworc_contract::names::{ENV_SSHD_CONFIG, KEYS_DIR};
use claworc_contract::{Settings, sshd_config};
use claworc_webhook::inject::{Config, sidecar};

const UID: u32 = 1000;

fn need(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("{program} is missing: install it with `apt-get install -y openssh-server openssh-client`");
}

fn user_1000() -> String {
    let out = Command::new("getent").args(["passwd", &UID.to_string()]).output().unwrap();
    assert!(out.status.success(), "no user with UID {UID}: create one with `useradd -u {UID} -m claworc`");
    String::from_utf8(out.stdout).unwrap().split(':').next().unwrap().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
    user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn keygen(path: &Path) {
    let out = run(Command::new(need("ssh-keygen")).args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Starts sshd with the config the webhook injects for `annotations`.
fn start(name: &str, annotations: &[(&str, &str)]) -> (Sshd, PathBuf) {
    assert_eq!(unsafe { libc_geteuid() }, 0, "this test runs sshd as UID {UID} and must start as root (CI does)");
    let user = user_1000();
    let dir = std::env::temp_dir().join(format!("claworc-sshd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    keygen(&keys.join("ssh_host_ed25519_key"));
    let client = dir.join("client");
    keygen(&client);
    std::fs::copy(client.with_extension("pub"), keys.join("authorized_keys")).unwrap();
    // As kubelet writes a Secret volume with defaultMode 0440 and fsGroup 1000.
    for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "authorized_keys"] {
        chown(keys.join(f), Some(0), Some(UID)).unwrap();
        std::fs::set_permissions(keys.join(f), std::fs::Permissions::from_mode(0o440)).unwrap();
    }

    let port = free_port();
    let port_s = port.to_string();
    let mut map: BTreeMap<String, String> = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    map.insert("claworc.io/ssh-port".into(), port_s);
    let settings = Settings::from_annotations(name, &map).unwrap();
    let container = sidecar(&settings, &Config::default(), &[]);
    let config = container.env.unwrap().into_iter().find(|e| e.name == ENV_SSHD_CONFIG).unwrap().value.unwrap();
    assert_eq!(config, sshd_config::render(&settings, sshd_config::Paths::POD));
    let config = config.replace(KEYS_DIR, keys.to_str().unwrap());
    let config_file = dir.join("sshd_config");
    std::fs::write(&config_file, config).unwrap();
    std::fs::set_permissions(&config_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let sshd = need("sshd");
    let as_user = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &UID.to_string(), "--regid", &UID.to_string(), "--init-groups", "--"])
            .arg(&sshd)
            .args(args)
            .arg(&config_file);
        c
    };
    let check = run(&mut as_user(&["-t", "-f"]));
    assert!(check.status.success(), "sshd -t refused the config: {}", String::from_utf8_lossy(&check.stderr));
    let child = as_user(&["-D", "-e", "-f"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Sshd { child, dir, port, user }, client)
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn ssh(sshd: &Sshd, login: &str, extra: &[&str], identity: Option<&Path>) -> Output {
    ssh_cmd(sshd, login, extra, identity, &[])
}

fn ssh_cmd(sshd: &Sshd, login: &str, extra: &[&str], identity: Option<&Path>, command: &[&str]) -> Output {
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
    c.args(["-o", "LogLevel=ERROR", "-p", &sshd.port.to_string(), "-l", login]);
    match identity {
        Some(key) => c.args(["-o", "IdentitiesOnly=yes", "-i"]).arg(key),
        None => c.args(["-o", "PubkeyAuthentication=no"]),
    };
    run(c.args(extra).arg("127.0.0.1").args(command))
}

#[test]
fn accepts_the_authorized_key_as_the_non_root_user() {
    let (sshd, key) = start("accept", &[]);
    let out = ssh_cmd(&sshd, &sshd.user, &[], Some(&key), &["id", "-u"]);
    assert!(out.status.success(), "login refused: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), UID.to_string());
}

#[test]
fn refuses_passwords_root_and_unknown_keys() {
    let (sshd, _key) = start("refuse", &[]);
    let out = ssh(&sshd, &sshd.user, &["-o", "PreferredAuthentications=password,keyboard-interactive"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stranger = sshd.dir.join("stranger");
    keygen(&stranger);
    let out = ssh(&sshd, &sshd.user, &[], Some(&stranger));
    assert!(!out.status.success(), "an unknown key logged in");
    let root_key = sshd.dir.join("client");
    let out = ssh(&sshd, "root", &[], Some(&root_key));
    assert!(!out.status.success(), "root logged in");
}

#[test]
fn forwards_only_to_the_listed_ports() {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let (sshd, key) = start("forward", &[("claworc.io/forward-ports", &allowed_port.to_string())]);
    // `ssh -W` asks sshd for a direct-tcpip channel, exactly what a tunnel does.
    let through = |port: u16| ssh(&sshd, &sshd.user, &["-W", &format!("localhost:{port}")], Some(&key));
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
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forwarding failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    other.set_nonblocking(true).unwrap();
    assert_eq!(
        other.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "sshd connected to the unlisted port"
    );
}
