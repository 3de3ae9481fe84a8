//! The programs the tests drive, and running them.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

/// How to install what the tests need.
pub const INSTALL: &str =
    "run `tests/install-packages` as root (Debian: openssh-client openssh-server rsync; PyPI: ssh-audit>=3.9)";

/// The pod's UID and GID in the tests (the injected `runAsUser`/`fsGroup`).
pub const RUN_AS: u32 = 1000;

/// Fails with an install hint when `tool` is not on PATH.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "{tool} is missing: {INSTALL}");
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `program` as the pod runs its containers: UID and GID [`RUN_AS`], no other
/// groups (through `setpriv` when the tests run as root, CI's case); as the
/// current user otherwise.
pub fn as_run_as(program: impl AsRef<OsStr>) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([format!("--reuid={RUN_AS}"), format!("--regid={RUN_AS}"), "--clear-groups".into(), "--".into()]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `c` with no stdin; returns (status success, stdout, stderr).
pub fn run(mut c: Command) -> (bool, String, String) {
    let out = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs `c` with `input` on its stdin.
pub fn run_with_stdin(mut c: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}
