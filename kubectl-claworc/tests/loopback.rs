//! The SSH client against the real claworc-sshd configured as the sidecar is, over
//! a plain loopback TCP stream (the transport the Kubernetes port-forward API
//! carries in production; tests/tests/ssh.rs covers that path end to end).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Sshd;
use kubectl_claworc::hostkey::{Decision, Expectation, RefusedBecause};
use kubectl_claworc::keys;
use kubectl_claworc::session;
use kubectl_claworc::transport::{self, ConnectError, Connection, Credentials};
use kubectl_claworc::tunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn creds(sshd: &Sshd, key: &russh::keys::PrivateKey) -> Credentials {
    Credentials::new(sshd.user.clone(), key.clone())
}

fn pinned(sshd: &Sshd) -> Expectation {
    Expectation { instance: "test/box".into(), pin: Some(sshd.host_fingerprint()), annotation: None, repin: false }
}

async fn connect(sshd: &Sshd, expect: Expectation) -> Result<Connection, ConnectError> {
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    transport::handshake(tcp, &creds(sshd, &sshd.client_key), expect).await
}

/// An HTTP server answering every request with `body`.
async fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let resp = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn commands_run_as_the_run_as_user_and_exit_status_propagates() {
    let sshd = Sshd::start(&[3000]);
    let conn = connect(&sshd, pinned(&sshd)).await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(conn.decision, Decision::Pinned);
    let (code, out, _) = session::exec_capture(&conn, &session::command_line(&["id", "-u"])).await.unwrap();
    assert_eq!((code, String::from_utf8_lossy(&out).trim()), (0, "1000"));
    let (code, _, _) = session::exec_capture(&conn, &session::command_line(&["sh", "-c", "exit 7"])).await.unwrap();
    assert_eq!(code, 7);
    let (code, out, err) =
        session::exec_capture(&conn, &session::command_line(&["sh", "-c", "echo out; echo err >&2"])).await.unwrap();
    assert_eq!((code, &out[..], &err[..]), (0, &b"out\n"[..], &b"err\n"[..]));
}

#[tokio::test]
async fn the_annotation_is_accepted_without_a_pin_and_nothing_else_is() {
    let sshd = Sshd::start(&[3000]);
    let fp = sshd.host_fingerprint();
    let by_annotation = Expectation { instance: "t/b".into(), pin: None, annotation: Some(fp.clone()), repin: false };
    let conn = connect(&sshd, by_annotation).await.unwrap();
    assert_eq!(conn.decision, Decision::PinFromAnnotation { fingerprint: fp.clone(), replaced: None });
    assert_eq!(keys::fingerprint(&conn.host_key), fp);

    // No pin, no annotation: refused (no trust on first use).
    let nothing = Expectation { instance: "t/b".into(), ..Default::default() };
    match connect(&sshd, nothing).await {
        Err(ConnectError::HostKey(r)) => assert_eq!(r.reason, RefusedBecause::NothingToCheck),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_changed_host_key_is_refused() {
    let sshd = Sshd::start(&[3000]);
    let other = keys::fingerprint(keys::generate("other").unwrap().public_key());
    let stale_pin = Expectation { instance: "t/b".into(), pin: Some(other.clone()), annotation: None, repin: false };
    match connect(&sshd, stale_pin).await {
        Err(ConnectError::HostKey(r)) => {
            assert!(matches!(r.reason, RefusedBecause::PinMismatch { .. }));
            assert!(r.to_string().contains("rotate-keys NAME --host-key"), "{r}");
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    let wrong_annotation = Expectation { instance: "t/b".into(), pin: None, annotation: Some(other), repin: false };
    assert!(matches!(connect(&sshd, wrong_annotation).await, Err(ConnectError::HostKey(_))));
}

#[tokio::test]
async fn an_unknown_client_key_is_refused() {
    let sshd = Sshd::start(&[3000]);
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    let stranger = keys::generate("stranger").unwrap();
    match transport::handshake(tcp, &creds(&sshd, &stranger), pinned(&sshd)).await {
        Err(ConnectError::Auth { .. }) => {}
        other => panic!("expected an auth failure, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn forwards_reach_forward_ports_only() {
    let allowed = http_server("hello through the tunnel").await;
    let forbidden = http_server("must not be reached").await;
    let sshd = Sshd::start(&[allowed]);
    let conn = Arc::new(connect(&sshd, pinned(&sshd)).await.unwrap());

    for (port, ok) in [(allowed, true), (forbidden, false)] {
        let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = local.local_addr().unwrap();
        let c = conn.clone();
        let task = tokio::spawn(async move {
            let (sock, peer) = local.accept().await.unwrap();
            tunnel::forward(&c, sock, peer.port(), port).await
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut reply)).await.unwrap();
        drop(client);
        let result = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        if ok {
            assert!(reply.contains("hello through the tunnel"), "{reply:?}");
            result.unwrap();
        } else {
            assert_eq!(reply, "", "a forward to a port outside forward-ports was served");
            let e = result.unwrap_err();
            assert!(e.to_string().contains("refused"), "{e}");
        }
    }
}

#[tokio::test]
async fn a_rotated_client_key_is_accepted_and_the_old_one_refused() {
    let sshd = Sshd::start(&[3000]);
    let new = keys::generate("new").unwrap();
    // Both keys during the rotation, then only the new one.
    sshd.write_keys(&sshd.host_key, &[sshd.client_key.public_key(), new.public_key()]);
    sshd.write_keys(&sshd.host_key, &[new.public_key()]);
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    transport::handshake(tcp, &creds(&sshd, &new), pinned(&sshd)).await.unwrap();
    assert!(matches!(connect(&sshd, pinned(&sshd)).await, Err(ConnectError::Auth { .. })));
}

/// Every file under `root`, relative, with its mode, mtime and contents.
fn tree(root: &std::path::Path) -> Vec<(String, u32, i64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let data = if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.push((rel, m.mode() & 0o7777, m.mtime(), data));
        }
    }
    out.sort();
    out
}

/// `cp -r` of a tree of many small files (sent in batches, see
/// claworc_contract::sftp_batch), a larger one and an empty one, up and back
/// down: contents, modes and mtimes arrive, and nothing is left under a
/// temporary name on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_moves_a_tree_of_small_files_both_ways() {
    use kubectl_claworc::cp::{self, Direction};
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start(&[3000]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let at = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(s);
    for i in 0..700u64 {
        let p = src.join(format!("f{i}"));
        std::fs::write(&p, format!("file {i}\n").repeat(1 + (i as usize % 200))).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode([0o644, 0o600, 0o755][i as usize % 3])).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(at(1_600_000_000 + i)).set_accessed(at(1))).unwrap();
    }
    std::fs::write(src.join("sub/big"), vec![9u8; 300 * 1024]).unwrap();
    std::fs::write(src.join("sub/empty"), "").unwrap();
    std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let want = tree(&src);

    let conn = connect(&sshd, pinned(&sshd)).await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    let start = std::time::Instant::now();
    cp::copy(&conn, "box", Direction::Upload, &src, ".", true).await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    eprintln!("cp -r up, {} files: {:.2}s", want.len(), start.elapsed().as_secs_f64());
    assert_eq!(tree(&sshd.home.join("src")), want, "the tree uploaded");

    let back = work.path().join("back");
    let start = std::time::Instant::now();
    cp::copy(&conn, "box", Direction::Download, &back, "src", true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    eprintln!("cp -r down, {} files: {:.2}s", want.len(), start.elapsed().as_secs_f64());
    assert_eq!(tree(&back), want, "the tree downloaded");
    let parts = |t: &[(String, u32, i64, Vec<u8>)]| t.iter().filter(|f| f.0.ends_with(".part")).count();
    assert_eq!(parts(&tree(&sshd.home)), 0, "a temporary file left in the instance");
    assert_eq!(parts(&tree(work.path())), 0, "a temporary file left here");

    // A file of a batch the server's user cannot read: the SFTP error with its exit
    // code, and the other files of the batch arrive.
    let locked = work.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    for name in ["a", "b", "secret"] {
        std::fs::write(locked.join(name), name).unwrap();
    }
    std::fs::set_permissions(locked.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    cp::copy(&conn, "box", Direction::Upload, &locked, ".", true).await.unwrap();
    let back = work.path().join("locked-back");
    let e = cp::copy(&conn, "box", Direction::Download, &back, "locked", true).await.unwrap_err();
    assert_eq!((e.exit_code(), e.one_line()), (5, "cp: box:locked/secret: permission denied (SFTP)".to_string()));
    assert_eq!(std::fs::read_to_string(back.join("a")).unwrap(), "a");
    assert_eq!(std::fs::read_to_string(back.join("b")).unwrap(), "b");
    assert!(!back.join("secret").exists());
    assert_eq!(parts(&tree(work.path())), 0, "a temporary file left here");
    conn.close().await;
}
