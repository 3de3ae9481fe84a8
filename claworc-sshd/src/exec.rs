//! What a session runs and how it ends: the argv for `shell` and `exec`, the
//! environment, running on pipes (no PTY), and the exit status or signal.
//!
//! - `shell` runs `$SHELL` (else `/bin/sh`) as a login shell (`argv[0]` `-sh`).
//! - `exec CMD` runs `$SHELL -c CMD` (else `/bin/sh -c CMD`), as OpenSSH does.
//! - In an image with no shell at all, `exec CMD` splits CMD on whitespace
//!   (no quoting, no expansion) and runs the program directly, found by path or
//!   `$PATH`; `shell` fails with a message saying there is no shell.
//!
//! Sessions run with the server's own UID/GID, in `$HOME`, with the server's
//! environment (the workload's) plus `HOME`, `USER`, `LOGNAME`, `SHELL`,
//! `SSH_CLIENT`, `SSH_CONNECTION`, `TERM` (from the PTY request) and, from the
//! client, only `TERM`, `LANG` and `LC_*`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// `PATH` when the server's environment has none (OpenSSH's default).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Whether a client may set `name` (`env` request): `TERM`, `LANG`, `LC_*`.
/// Never `LD_*`, `PATH` or anything else that changes what runs.
pub fn env_allowed(name: &str) -> bool {
    name == "TERM"
        || name == "LANG"
        || name
            .strip_prefix("LC_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
}

/// What the client asked a session channel to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Shell,
    Exec(String),
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Shell => "shell",
            Request::Exec(_) => "exec",
        }
    }

    pub fn command(&self) -> &str {
        match self {
            Request::Shell => "shell",
            Request::Exec(c) => c,
        }
    }
}

/// A program with its arguments, ready to spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// `argv[0]` when it differs from `program` (a login shell's `-sh`).
    pub arg0: Option<String>,
}

/// Why nothing can be launched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoLaunch {
    #[error(
        "this image has no shell ($SHELL unset or missing, no /bin/sh); run a program by path instead, e.g. `ssh HOST -- /usr/bin/env`"
    )]
    NoShell,
    #[error("empty command")]
    Empty,
}

/// The argv for `request` given the image's shell (if any).
pub fn launch(shell: Option<&Path>, request: &Request) -> Result<Launch, NoLaunch> {
    match (shell, request) {
        (Some(sh), Request::Shell) => {
            let name = sh.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sh".into());
            Ok(Launch { program: sh.to_path_buf(), args: Vec::new(), arg0: Some(format!("-{name}")) })
        }
        (None, Request::Shell) => Err(NoLaunch::NoShell),
        (Some(sh), Request::Exec(cmd)) => {
            Ok(Launch { program: sh.to_path_buf(), args: vec!["-c".into(), cmd.clone()], arg0: None })
        }
        (None, Request::Exec(cmd)) => {
            let mut words = cmd.split_whitespace().map(str::to_string);
            let program = words.next().ok_or(NoLaunch::Empty)?;
            Ok(Launch { program: PathBuf::from(program), args: words.collect(), arg0: None })
        }
    }
}

/// Who and where a session is, for its environment.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub base_env: &'a [(OsString, OsString)],
    pub home: &'a Path,
    pub shell: Option<&'a Path>,
    pub user: &'a str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// The environment of a session: see the module header.
pub fn environment(cx: &Context<'_>, term: Option<&str>, client: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = cx.base_env.iter().cloned().collect();
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    for (k, v) in client.iter().filter(|(k, _)| env_allowed(k)) {
        env.insert(k.into(), v.into());
    }
    let fixed = [
        ("HOME", cx.home.as_os_str().to_owned()),
        ("USER", cx.user.into()),
        ("LOGNAME", cx.user.into()),
        ("SSH_CLIENT", format!("{} {} {}", cx.peer.ip(), cx.peer.port(), cx.local.port()).into()),
        ("SSH_CONNECTION", format!("{} {} {} {}", cx.peer.ip(), cx.peer.port(), cx.local.ip(), cx.local.port()).into()),
    ];
    env.extend(fixed.into_iter().map(|(k, v)| (OsString::from(k), v)));
    if let Some(sh) = cx.shell {
        env.insert("SHELL".into(), sh.as_os_str().to_owned());
    }
    if let Some(t) = term {
        env.insert("TERM".into(), t.into());
    }
    env.into_iter().collect()
}

/// How a session's program ended.
#[derive(Debug, Clone)]
pub enum Exit {
    Status(u32),
    Signal { signal: Sig, core_dumped: bool },
}

impl Exit {
    pub fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Status(code as u32),
            (None, Some(n)) => Exit::Signal { signal: sig_of(n), core_dumped: status.core_dumped() },
            (None, None) => Exit::Status(255),
        }
    }

    /// The audit's `exit_status` and `exit_signal` fields.
    pub fn audit(&self) -> (Option<u32>, Option<String>) {
        match self {
            Exit::Status(s) => (Some(*s), None),
            Exit::Signal { signal, .. } => (None, Some(format!("{signal:?}"))),
        }
    }
}

/// What the connection's handler passes to a running session.
#[derive(Debug)]
pub enum Control {
    Resize { cols: u16, rows: u16, px: u16, py: u16 },
    Signal(Sig),
}

fn sig_of(n: i32) -> Sig {
    match n {
        1 => Sig::HUP,
        2 => Sig::INT,
        3 => Sig::QUIT,
        4 => Sig::ILL,
        6 => Sig::ABRT,
        8 => Sig::FPE,
        9 => Sig::KILL,
        10 => Sig::USR1,
        11 => Sig::SEGV,
        13 => Sig::PIPE,
        14 => Sig::ALRM,
        15 => Sig::TERM,
        12 => Sig::Custom("USR2".into()),
        n => Sig::Custom(format!("SIG{n}")),
    }
}

/// Delivers a client's `signal` request to the session's process.
pub fn deliver(pid: Option<u32>, sig: &Sig) {
    use rustix::process::{Pid, Signal, kill_process};
    let signal = match sig {
        Sig::HUP => Signal::HUP,
        Sig::INT => Signal::INT,
        Sig::QUIT => Signal::QUIT,
        Sig::ILL => Signal::ILL,
        Sig::ABRT => Signal::ABORT,
        Sig::FPE => Signal::FPE,
        Sig::KILL => Signal::KILL,
        Sig::USR1 => Signal::USR1,
        Sig::SEGV => Signal::SEGV,
        Sig::PIPE => Signal::PIPE,
        Sig::ALRM => Signal::ALARM,
        Sig::TERM => Signal::TERM,
        Sig::Custom(name) if name == "USR2" => Signal::USR2,
        Sig::Custom(_) => return,
    };
    if let Some(pid) = pid.and_then(|p| Pid::from_raw(p as i32)) {
        let _ = kill_process(pid, signal);
    }
}

/// Where client input goes: a pipe or a PTY.
pub(crate) trait Input: AsyncWrite + Unpin + Send {
    fn resize(&mut self, _cols: u16, _rows: u16, _px: u16, _py: u16) {}
}

impl Input for tokio::process::ChildStdin {}

/// Copies client data to `input` until EOF, and applies control messages
/// (window size, signals) until the session ends. When the client closes the
/// channel first, a program on a PTY gets SIGHUP, as when a terminal hangs up
/// (OpenSSH does the same); one on pipes just sees its stdin end.
pub(crate) async fn pump_input(
    mut read: ChannelReadHalf,
    mut input: Option<impl Input>,
    mut control: mpsc::UnboundedReceiver<Control>,
    pid: Option<u32>,
    hangup_on_close: bool,
) {
    // The handler drops the control sender when the channel closes, maybe
    // before the Close message is read here: only the channel ends the loop.
    let mut controlled = true;
    loop {
        tokio::select! {
            msg = read.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(w) = input.as_mut()
                        && (w.write_all(&data).await.is_err() || w.flush().await.is_err())
                    {
                        input = None;
                    }
                }
                Some(ChannelMsg::Eof) => {
                    if let Some(mut w) = input.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Some(ChannelMsg::Close) | None => {
                    if hangup_on_close {
                        deliver(pid, &Sig::HUP);
                    }
                    return;
                }
                Some(_) => {}
            },
            c = control.recv(), if controlled => match c {
                Some(Control::Resize { cols, rows, px, py }) => {
                    if let Some(w) = input.as_mut() { w.resize(cols, rows, px, py) }
                }
                Some(Control::Signal(sig)) => deliver(pid, &sig),
                None => controlled = false,
            },
        }
    }
}

/// Ends a session channel as OpenSSH does: EOF, exit status or signal, close.
pub(crate) async fn finish(write: &ChannelWriteHalf<Msg>, handle: &Handle, exit: &Exit) {
    let _ = write.eof().await;
    match exit {
        Exit::Status(s) => {
            let _ = write.exit_status(*s).await;
        }
        Exit::Signal { signal, core_dumped } => {
            let _ = handle
                .exit_signal_request(write.id(), signal.clone(), *core_dumped, String::new(), String::new())
                .await;
        }
    }
    let _ = write.close().await;
}

/// Tells the client why nothing ran (on stderr) and gives the exit status.
pub(crate) async fn refuse(write: &ChannelWriteHalf<Msg>, handle: &Handle, message: &str, status: u32) -> Exit {
    let _ = write.extended_data_bytes(1, format!("claworc-sshd: {message}\r\n").into_bytes()).await;
    let exit = Exit::Status(status);
    finish(write, handle, &exit).await;
    exit
}

/// The exit status a shell gives when a program cannot be run.
pub(crate) fn spawn_failure_status(e: &std::io::Error) -> u32 {
    if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }
}

/// Runs `launch` on pipes: stdin from the channel, stdout to it, stderr as
/// extended data. Returns when the program has exited and its output is sent.
pub async fn run_piped(
    channel: Channel<Msg>,
    handle: Handle,
    launch: Launch,
    env: Vec<(OsString, OsString)>,
    home: PathBuf,
    control: mpsc::UnboundedReceiver<Control>,
) -> Exit {
    let (read, write) = channel.split();
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args).env_clear().envs(env).current_dir(&home);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(a0) = &launch.arg0 {
        cmd.arg0(a0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{}: {e}", launch.program.display());
            return refuse(&write, &handle, &msg, spawn_failure_status(&e)).await;
        }
    };
    let input = tokio::spawn(pump_input(read, child.stdin.take(), control, child.id(), false));
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let (mut w_out, mut w_err) = (write.make_writer(), write.make_writer_ext(Some(1)));
    let copy_out = async {
        if let Some(o) = out.as_mut() {
            let _ = tokio::io::copy(o, &mut w_out).await;
            let _ = w_out.flush().await;
        }
    };
    let copy_err = async {
        if let Some(e) = err.as_mut() {
            let _ = tokio::io::copy(e, &mut w_err).await;
            let _ = w_err.flush().await;
        }
    };
    let ((), (), status) = tokio::join!(copy_out, copy_err, child.wait());
    input.abort();
    let exit = status.map(Exit::from_status).unwrap_or(Exit::Status(255));
    finish(&write, &handle, &exit).await;
    exit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_term_lang_and_lc_are_accepted_from_clients() {
        for ok in ["TERM", "LANG", "LC_ALL", "LC_CTYPE"] {
            assert!(env_allowed(ok), "{ok}");
        }
        for bad in ["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "LC_", "LC_x", "HOME", "BASH_ENV", "SHELL"] {
            assert!(!env_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn argv_with_a_shell_and_without() {
        let sh = Path::new("/bin/bash");
        assert_eq!(
            launch(Some(sh), &Request::Exec("echo hi".into())).unwrap().args,
            ["-c".to_string(), "echo hi".to_string()]
        );
        assert_eq!(launch(Some(sh), &Request::Shell).unwrap().arg0.as_deref(), Some("-bash"));
        let l = launch(None, &Request::Exec("/usr/bin/env  -u X  true".into())).unwrap();
        assert_eq!((l.program, l.args), (PathBuf::from("/usr/bin/env"), vec!["-u".into(), "X".into(), "true".into()]));
        assert_eq!(launch(None, &Request::Shell), Err(NoLaunch::NoShell));
        assert_eq!(launch(None, &Request::Exec("  ".into())), Err(NoLaunch::Empty));
    }

    #[test]
    fn the_client_cannot_set_path_or_ld_vars() {
        let base = vec![("PATH".into(), "/usr/bin".into()), ("WORKLOAD".into(), "1".into())];
        let cx = Context {
            base_env: &base,
            home: Path::new("/home/w"),
            shell: Some(Path::new("/bin/sh")),
            user: "claworc",
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:2222".parse().unwrap(),
        };
        let client =
            [("PATH".into(), "/evil".into()), ("LD_PRELOAD".into(), "x.so".into()), ("LANG".into(), "C.UTF-8".into())];
        let env: BTreeMap<_, _> = environment(&cx, Some("xterm"), &client).into_iter().collect();
        assert_eq!(env[&OsString::from("PATH")], "/usr/bin");
        assert!(!env.contains_key(&OsString::from("LD_PRELOAD")));
        assert_eq!(env[&OsString::from("LANG")], "C.UTF-8");
        assert_eq!(env[&OsString::from("WORKLOAD")], "1");
        assert_eq!(env[&OsString::from("HOME")], "/home/w");
        assert_eq!(env[&OsString::from("TERM")], "xterm");
        assert_eq!(env[&OsString::from("SSH_CONNECTION")], "127.0.0.1 5000 127.0.0.1 2222");
    }
}
