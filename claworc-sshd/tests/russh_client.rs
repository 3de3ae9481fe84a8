//! claworc-sshd against russh's client (the one the plugin uses): the requests
//! OpenSSH's client cannot be made to send on demand: `window-change`,
//! `signal`, and password, keyboard-interactive and `none` authentication.

use claworc_test_support as support;

use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate, load_secret_key};
use russh::{ChannelMsg, Sig};
use support::Sshd;

/// Accepts only the server's pinned host key.
struct Pinned(String);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.fingerprint(HashAlg::Sha256).to_string() == self.0),
        )
    }
}

async fn connect(sshd: &Sshd) -> Handle<Pinned> {
    let config = Arc::new(client::Config::default());
    client::connect(config, ("127.0.0.1", sshd.port), Pinned(sshd.host_fingerprint.clone())).await.expect("connect")
}

async fn login(sshd: &Sshd) -> Handle<Pinned> {
    let mut h = connect(sshd).await;
    let key = load_secret_key(&sshd.user_key.private, None).unwrap();
    let r = h.authenticate_publickey("claworc", PrivateKeyWithHashAlg::new(Arc::new(key), None)).await.unwrap();
    assert!(r.success(), "{r:?}");
    h
}

/// Collects a channel's output until it closes: (stdout, exit status, exit signal).
async fn collect(ch: &mut russh::Channel<client::Msg>) -> (String, Option<u32>, Option<Sig>) {
    let (mut out, mut status, mut signal) = (Vec::new(), None, None);
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(20), ch.wait()).await.expect("channel stalled") {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(signal_name),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), status, signal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_keyboard_interactive_and_none_are_refused() {
    let sshd = Sshd::start();
    let mut h = connect(&sshd).await;
    let none = h.authenticate_none("claworc").await.unwrap();
    assert!(!none.success());
    let pw = h.authenticate_password("claworc", "hunter2").await.unwrap();
    assert!(!pw.success(), "password accepted");
    let kbd = h.authenticate_keyboard_interactive_start("claworc", None).await.unwrap();
    assert!(matches!(kbd, KeyboardInteractiveAuthResponse::Failure { .. }), "{kbd:?}");
    let pw = h.authenticate_password("claworc", "hunter3").await.unwrap();
    assert!(!pw.success(), "password accepted");
    // Those were three failures (the `none` probe does not count, as in OpenSSH): the server hangs up, even for the right key now.
    let key = load_secret_key(&sshd.user_key.private, None).unwrap();
    let r = h.authenticate_publickey("claworc", PrivateKeyWithHashAlg::new(Arc::new(key), None)).await;
    assert!(!r.is_ok_and(|r| r.success()), "logged in after three failures");
    let methods: Vec<_> =
        sshd.wait_count("login_refused", 3).iter().map(|v| v["method"].as_str().unwrap().to_string()).collect();
    assert_eq!(methods, ["password", "keyboard-interactive", "password"]);
    assert!(!sshd.audit().iter().any(|v| v.to_string().contains("hunter")), "a password reached the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_changes_reach_the_pty() {
    let sshd = Sshd::start();
    let h = login(&sshd).await;
    let mut ch = h.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
    // Prints the size, waits for SIGWINCH's effect, prints it again.
    ch.exec(true, "stty size; sleep 1; stty size").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ch.window_change(132, 50, 0, 0).await.unwrap();
    let (out, status, _) = collect(&mut ch).await;
    let sizes: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(sizes, ["24 80", "50 132"], "{out:?}");
    assert_eq!(status, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_reaches_the_command_and_comes_back_as_exit_signal() {
    let sshd = Sshd::start();
    let h = login(&sshd).await;
    let mut ch = h.channel_open_session().await.unwrap();
    // exec replaces the shell, so the signal reaches `sleep` itself.
    ch.exec(true, "exec sleep 30").await.unwrap();
    sshd.wait_event("session_start", |v| v["command"] == "exec sleep 30");
    tokio::time::sleep(Duration::from_millis(200)).await;
    ch.signal(Sig::TERM).await.unwrap();
    let (_, status, signal) = collect(&mut ch).await;
    assert_eq!(status, None);
    assert!(matches!(signal, Some(Sig::TERM)), "{signal:?}");
    let end = sshd.wait_event("session_end", |v| v["command"] == "exec sleep 30");
    assert_eq!(end["exit_signal"], "TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_shell_hangs_up_when_the_client_closes_the_channel() {
    let sshd = Sshd::start();
    let h = login(&sshd).await;
    let ch = h.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
    ch.request_shell(true).await.unwrap();
    sshd.wait_event("session_start", |v| v["kind"] == "shell");
    ch.close().await.unwrap();
    // The shell got SIGHUP, as from a terminal that hung up: the session ends.
    let end = sshd.wait_event("session_end", |v| v["kind"] == "shell");
    assert!(end["exit_signal"] == "HUP" || end["exit_status"].is_u64(), "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x11_and_unix_socket_forwarding_are_refused() {
    let sshd = Sshd::start();
    let h = login(&sshd).await;
    let mut ch = h.channel_open_session().await.unwrap();
    ch.request_x11(true, false, "MIT-MAGIC-COOKIE-1", "00112233445566778899aabbccddeeff", 0).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ch.wait()).await.unwrap();
    assert!(matches!(reply, Some(ChannelMsg::Failure)), "x11-req: {reply:?}");
    sshd.wait_event("request_refused", |v| v["request"] == "x11-req");
    // Local (direct-streamlocal) and remote (streamlocal-forward) Unix-socket forwarding.
    let direct = h.channel_open_direct_streamlocal("/run/docker.sock").await;
    assert!(direct.is_err(), "direct-streamlocal opened");
    sshd.wait_event("request_refused", |v| v["request"] == "direct-streamlocal");
    let remote = h.streamlocal_forward("/tmp/claworc-test.sock").await;
    assert!(remote.is_err(), "streamlocal-forward accepted");
    sshd.wait_event("request_refused", |v| v["request"] == "streamlocal-forward@openssh.com");
    // The connection still works after the refusals.
    let mut ch = h.channel_open_session().await.unwrap();
    ch.exec(true, "echo still here").await.unwrap();
    let (out, status, _) = collect(&mut ch).await;
    assert_eq!((out.as_str(), status), ("still here\n", Some(0)));
}

/// The batch extension `kubectl claworc cp` uses for small files
/// (claworc_contract::sftp_batch): advertised, files written whole with their
/// modes and times and nothing left under a temporary name, each failure named
/// with SFTP's status code, a file too large for the reply skipped, and anything
/// malformed refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_batches_put_and_get_files_whole() {
    use claworc_contract::sftp_batch::{self, Outcome, PutFile};
    use russh_sftp::client::RawSftpSession;
    use russh_sftp::protocol::{FileAttributes, Packet, StatusCode};
    use std::os::unix::fs::MetadataExt;

    let sshd = Sshd::start();
    let h = login(&sshd).await;
    let ch = h.channel_open_session().await.unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    let sftp = RawSftpSession::new(ch.into_stream());
    let version = sftp.init().await.unwrap();
    for name in [sftp_batch::PUT_FILES, sftp_batch::GET_FILES] {
        assert_eq!(version.extensions.get(name).map(String::as_str), Some(sftp_batch::VERSION), "{version:?}");
    }
    let extended = |name: &'static str, data: Vec<u8>| {
        let sftp = &sftp;
        async move {
            match sftp.extended(name, data).await {
                Ok(Packet::ExtendedReply(r)) => Ok(r.data),
                Ok(Packet::Status(s)) => Err(s.status_code),
                other => panic!("{other:?}"),
            }
        }
    };
    sftp.mkdir("batch", FileAttributes::empty()).await.unwrap();
    sftp.mkdir("batch/dir", FileAttributes::empty()).await.unwrap();
    let file = |path: &str, mode: u32, mtime: u32, data: &[u8]| PutFile {
        path: path.into(),
        mode,
        atime: mtime,
        mtime,
        data: data.to_vec(),
    };
    let files = [
        file("batch/a", 0o640, 1_600_000_000, b"hello\n"),
        file(&format!("{}/batch/b", sshd.home.display()), 0o755, 1_600_000_100, b""),
        file("batch/dir", 0o644, 1, b"onto a directory"),
        file("missing/x", 0o644, 1, b"no such directory"),
    ];
    let reply = extended(sftp_batch::PUT_FILES, sftp_batch::encode_put(&files)).await.unwrap();
    let outcomes = sftp_batch::decode_put_reply(&reply).unwrap();
    assert_eq!(outcomes[..2], [Outcome::Done, Outcome::Done]);
    assert!(
        matches!(&outcomes[2], Outcome::Failed { code: 4, message } if message.contains("directory")),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[3], Outcome::Failed { code: 2, .. }), "{outcomes:?}");
    let dir = sshd.home.join("batch");
    let meta = |name: &str| std::fs::metadata(dir.join(name)).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "hello\n");
    assert_eq!((meta("a").mode() & 0o7777, meta("a").mtime()), (0o640, 1_600_000_000));
    assert_eq!((meta("b").len(), meta("b").mode() & 0o7777, meta("b").mtime()), (0, 0o755, 1_600_000_100));
    assert_eq!(meta("a").uid(), sshd.uid(), "written as the server's user");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "dir"], "nothing left under a temporary name");
    // Audited as one line for the batch, naming every file.
    let line = sshd.wait_event("sftp_put_files", |_| true);
    let want: Vec<String> = ["batch/a", "batch/b", "batch/dir", "missing/x"]
        .iter()
        .map(|p| sshd.home.join(p).to_string_lossy().into_owned())
        .collect();
    assert_eq!(line["paths"], serde_json::json!(want), "{line}");
    assert!(sshd.events("sftp_open_write").is_empty() && sshd.events("sftp_rename").is_empty());

    // Replacing a file is atomic and keeps nothing of the old one.
    let again = [file("batch/a", 0o600, 1_600_000_200, b"again")];
    let reply = extended(sftp_batch::PUT_FILES, sftp_batch::encode_put(&again)).await.unwrap();
    assert_eq!(sftp_batch::decode_put_reply(&reply).unwrap(), [Outcome::Done]);
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "again");

    // GET: whole files with their modes and times, failures by code, and what
    // does not fit the reply skipped.
    let big = vec![7u8; sftp_batch::MAX_BYTES / 2 + 1];
    let bigs = [file("batch/big1", 0o600, 5, &big), file("batch/big2", 0o600, 5, &big)];
    let reply = extended(sftp_batch::PUT_FILES, sftp_batch::encode_put(&bigs)).await.unwrap();
    assert_eq!(sftp_batch::decode_put_reply(&reply).unwrap(), [Outcome::Done, Outcome::Done]);
    let paths = ["batch/a", "batch/b", "batch/nope", "batch/dir", "batch/big1", "batch/big2"];
    let reply = extended(sftp_batch::GET_FILES, sftp_batch::encode_get(&paths)).await.unwrap();
    let got = sftp_batch::decode_get_reply(&reply).unwrap();
    assert_eq!(got.len(), paths.len());
    assert_eq!(
        (&got[0].outcome, &got[0].data[..], got[0].mode, got[0].mtime),
        (&Outcome::Done, &b"again"[..], 0o600, 1_600_000_200)
    );
    assert_eq!((&got[1].outcome, got[1].data.len(), got[1].mode), (&Outcome::Done, 0, 0o755));
    assert!(matches!(&got[2].outcome, Outcome::Failed { code: 2, .. }), "{:?}", got[2].outcome);
    assert!(
        matches!(&got[3].outcome, Outcome::Failed { code: 4, message } if message == "not a regular file"),
        "{:?}",
        got[3].outcome
    );
    assert_eq!((&got[4].outcome, got[4].data.len()), (&Outcome::Done, big.len()));
    assert_eq!((&got[5].outcome, got[5].data.len()), (&Outcome::Skipped, 0));

    // Malformed batches and unknown extensions: SFTP's status, and the session goes on.
    assert_eq!(extended(sftp_batch::PUT_FILES, vec![0, 0, 0, 9]).await, Err(StatusCode::BadMessage));
    assert_eq!(extended(sftp_batch::GET_FILES, vec![0xff; 3]).await, Err(StatusCode::BadMessage));
    assert_eq!(extended("nope@claworc.io", vec![]).await, Err(StatusCode::OpUnsupported));
    let reply = extended(sftp_batch::GET_FILES, sftp_batch::encode_get(&["batch/a"])).await.unwrap();
    assert_eq!(sftp_batch::decode_get_reply(&reply).unwrap()[0].data, b"again");
}
