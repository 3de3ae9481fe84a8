//! `kubectl claworc ssh NAME [-- CMD…]`: a shell or a command on the instance.
//!
//! - No command and stdin a terminal: an interactive shell on a PTY, the local
//!   terminal in raw mode, window-size changes (SIGWINCH) passed on.
//! - A command: run without a PTY, stdout and stderr kept apart, stdin passed
//!   on, and the remote exit status returned (128+N for a signal, 255 when the
//!   connection is lost, as OpenSSH does).
//!
//! The command's words are quoted for the remote shell, so `-- sh -c 'exit 7'`
//! runs `sh` with the two arguments `-c` and `exit 7` (argv semantics, like
//! `kubectl exec`); use `-- sh -c '…'` for pipes and other shell syntax.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::Duration;

use russh::ChannelMsg;
use rustix::termios;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::keys::PrivateKey;
use crate::keystore::KeyStore;
use crate::transport::{self, ConnectError, ConnectOptions, Connection, Credentials, Login};

/// What `kubectl claworc ssh` was asked for.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub name: String,
    pub ssh: ConnectOptions,
    /// A command to run instead of a shell; empty for a shell.
    pub command: Vec<String>,
}

/// `kubectl claworc ssh`: returns the exit code to exit with.
pub async fn ssh(ctx: &Ctx, args: &SshOptions) -> Result<i32> {
    let (_, conn) = transport::connect(ctx, &args.name, &args.ssh).await?;
    let command = (!args.command.is_empty()).then(|| command_line(&args.command));
    if command.is_none() && !stdin_is_tty() {
        eprintln!("ssh: stdin is not a terminal: running a shell without a PTY");
    }
    let code = interact(&conn, command.as_deref()).await?;
    conn.close().await;
    Ok(code)
}

/// Flushes stdout and stderr and exits with `code`. Used by `ssh` and `logs
/// --file`: a blocking stdin reader must not keep the process alive.
pub fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// Quotes one word for a POSIX shell (left alone when it is safe as it is).
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if safe { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// The remote command line for argv `words`.
pub fn command_line<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| shell_quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

/// Exit code for a remote signal, as shells report it.
pub fn signal_exit_code(sig: &russh::Sig) -> i32 {
    let n = match sig {
        russh::Sig::HUP => 1,
        russh::Sig::INT => 2,
        russh::Sig::QUIT => 3,
        russh::Sig::ILL => 4,
        russh::Sig::ABRT => 6,
        russh::Sig::FPE => 8,
        russh::Sig::KILL => 9,
        russh::Sig::SEGV => 11,
        russh::Sig::PIPE => 13,
        russh::Sig::ALRM => 14,
        russh::Sig::TERM => 15,
        russh::Sig::USR1 => 10,
        _ => return 255,
    };
    128 + n
}

/// Is stdin a terminal?
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Runs `command` (or an interactive shell when `None`) and returns the exit code.
pub async fn interact(conn: &Connection, command: Option<&str>) -> Result<i32> {
    let channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| Error::other(format!("ssh: opening a session: {e}")).with_source(e))?;
    let interactive = command.is_none() && stdin_is_tty();
    let _raw = if interactive {
        let (cols, rows) = terminal_size().unwrap_or((80, 24));
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
        channel
            .request_pty(true, &term, cols, rows, 0, 0, &[])
            .await
            .map_err(|e| Error::other(format!("ssh: requesting a terminal: {e}")).with_source(e))?;
        Some(RawMode::enter()?)
    } else {
        None
    };
    match command {
        Some(cmd) => channel.exec(true, cmd).await,
        None => channel.request_shell(true).await,
    }
    .map_err(|e| Error::other(format!("ssh: starting the command: {e}")).with_source(e))?;

    let (mut read, write) = channel.split();
    let write = std::sync::Arc::new(write);
    // stdin is pumped by its own task, so that a full window on the way out can
    // never stop the loop below from draining what comes in.
    let pump = {
        let write = write.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if write.data(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = write.eof().await;
        })
    };
    if interactive {
        let write = write.clone();
        let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            .map_err(|e| Error::other(format!("SIGWINCH: {e}")).with_source(e))?;
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((cols, rows)) = terminal_size()
                    && write.window_change(cols, rows, 0, 0).await.is_err()
                {
                    break;
                }
            }
        });
    }
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut code: Option<i32> = None;
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Close => break,
            ChannelMsg::Data { data } => {
                stdout.write_all(&data).await.map_err(|e| Error::other(format!("stdout: {e}")).with_source(e))?;
                stdout.flush().await.ok();
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                stderr.write_all(&data).await.ok();
                stderr.flush().await.ok();
            }
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
            ChannelMsg::ExitSignal { signal_name, error_message, .. } => {
                if !error_message.is_empty() {
                    stderr.write_all(format!("remote: {error_message}\n").as_bytes()).await.ok();
                }
                code = Some(signal_exit_code(&signal_name));
            }
            _ => {}
        }
    }
    pump.abort();
    stdout.flush().await.ok();
    stderr.flush().await.ok();
    drop(_raw);
    Ok(code.unwrap_or_else(|| {
        eprintln!("ssh: the connection ended without an exit status");
        255
    }))
}

/// Runs `command` collecting stdout, for checks (`status`, `rotate-keys`).
pub async fn exec_capture(conn: &Connection, command: &str) -> Result<(i32, Vec<u8>, Vec<u8>)> {
    let mut channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| Error::other(format!("ssh: opening a session: {e}")).with_source(e))?;
    channel.exec(true, command).await.map_err(|e| Error::other(format!("ssh: exec: {e}")).with_source(e))?;
    channel.eof().await.ok();
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
            ChannelMsg::ExitSignal { signal_name, .. } => code = Some(signal_exit_code(&signal_name)),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok((code.unwrap_or(255), out, err))
}

/// How long [`prove_login`] keeps trying: the kubelet propagates a Secret
/// update to the mounted volume only after a delay (a minute or more).
pub const PROVE_TIMEOUT: Duration = Duration::from_secs(150);

/// Logs in to `name` with exactly `key` and runs `true`, retrying on refusal
/// until [`PROVE_TIMEOUT`] (the Secret may not have reached the pod yet). A
/// refused host key fails at once.
pub async fn prove_login(ctx: &Ctx, name: &str, login: &Login, key: &PrivateKey) -> Result<()> {
    let store = KeyStore::open_default()?;
    let creds = Credentials::new(login.user.clone(), key.clone());
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        let attempt = async {
            let instance = transport::find_instance(&ctx.client, &ctx.namespace, name)
                .await
                .map_err(ConnectError::transport_from)?;
            let conn = transport::connect_instance(ctx, &store, &instance, &creds, false).await?;
            let (code, _, _) = exec_capture(&conn, "true").await.map_err(ConnectError::transport_from)?;
            conn.close().await;
            if code == 0 { Ok(()) } else { Err(ConnectError::transport(format!("`true` exited with {code}"))) }
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e @ ConnectError::HostKey(_)) => return Err(e.into()),
            Err(e) if start.elapsed() >= PROVE_TIMEOUT => {
                return Err(Error::other(format!(
                    "no SSH login with the new key after {}s: {e}",
                    PROVE_TIMEOUT.as_secs()
                )));
            }
            Err(e) => {
                if !said {
                    eprintln!(
                        "waiting for the instance to accept the new key (the kubelet updates Secret volumes with a delay): {e}"
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// How long `status` waits for its SSH login.
pub const SSH_CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The live SSH check of `status`: connect, authenticate, run `true`.
/// Returns (ok, detail).
pub async fn ssh_check(ctx: &Ctx, name: &str, login: &Login) -> (bool, String) {
    let start = std::time::Instant::now();
    let opts = ConnectOptions { login: login.clone(), identity: None, repin: false };
    let (_, conn) = match tokio::time::timeout(SSH_CHECK_TIMEOUT, transport::connect(ctx, name, &opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (false, e.one_line()),
        Err(_) => {
            return (false, format!("no SSH login within {}s", SSH_CHECK_TIMEOUT.as_secs()));
        }
    };
    let connected = start.elapsed();
    let t = std::time::Instant::now();
    let result = exec_capture(&conn, "true").await;
    let ran = t.elapsed();
    conn.close().await;
    match result {
        Ok((0, _, _)) => (
            true,
            format!(
                "logged in as {} ({} ms to connect and authenticate), `true` ran in {} ms; host key {}",
                login.user,
                connected.as_millis(),
                ran.as_millis(),
                crate::keys::fingerprint(&conn.host_key)
            ),
        ),
        Ok((code, _, err)) => (false, format!("`true` exited with {code}: {}", String::from_utf8_lossy(&err).trim())),
        Err(e) => (false, e.one_line()),
    }
}

/// The local terminal's size (columns, rows), if stdout or stdin is a terminal.
pub fn terminal_size() -> Option<(u32, u32)> {
    let size = |fd: std::os::fd::BorrowedFd<'_>| termios::tcgetwinsize(fd).ok().filter(|ws| ws.ws_col > 0);
    let ws = size(std::io::stdout().as_fd()).or_else(|| size(std::io::stdin().as_fd()))?;
    Some((u32::from(ws.ws_col), u32::from(ws.ws_row)))
}

/// The local terminal in raw mode; restored when dropped (also on error paths).
pub struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    pub fn enter() -> Result<Self> {
        let stdin = std::io::stdin();
        let fail = |e: rustix::io::Errno| {
            let e = std::io::Error::from(e);
            Error::other(format!("terminal: {e}")).with_source(e)
        };
        let saved = termios::tcgetattr(&stdin).map_err(fail)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, termios::OptionalActions::Now, &raw).map_err(fail)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(command_line(&["id", "-u"]), "id -u");
        assert_eq!(command_line(&["sh", "-c", "exit 7"]), "sh -c 'exit 7'");
        assert_eq!(command_line(&["echo", "it's"]), r"echo 'it'\''s'");
        assert_eq!(command_line(&["printf", ""]), "printf ''");
        assert_eq!(command_line(&["ls", "$HOME", "a;b"]), "ls '$HOME' 'a;b'");
    }

    #[test]
    fn signals_map_to_shell_exit_codes() {
        assert_eq!(signal_exit_code(&russh::Sig::KILL), 137);
        assert_eq!(signal_exit_code(&russh::Sig::TERM), 143);
    }
}
