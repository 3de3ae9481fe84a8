//! Tunnel throughput: bytes/s through `kubectl claworc tunnel`'s forwarding code
//! (one russh connection, a direct-tcpip channel per local connection,
//! copy_bidirectional) against OpenSSH's `ssh -L`, through the same sshd
//! configured as the sidecar is.
//!
//! Transport: a direct loopback TCP connection to the sshd for both clients (the
//! Kubernetes port-forward hop is left out: it would be the same for both and
//! dominated by the API server).
//!
//! `cargo bench -p kubectl-claworc --bench tunnel` (CLAWORC_BENCH_MB=N for the
//! amount per run, default 256; 3 runs per direction, best reported).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Sshd;
use kubectl_claworc::transport::{self, Credentials};
use kubectl_claworc::tunnel;
use kubectl_claworc::{hostkey::Expectation, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 256 * 1024;

/// A server that, per connection, either sinks everything and answers with the
/// byte count ("up"), or sends `bytes` and closes ("down"); the first byte the
/// client sends says which.
async fn target_server(bytes: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                if sock.read_exact(&mut mode).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; CHUNK];
                if mode[0] == b'u' {
                    let mut total = 0u64;
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => total += n as u64,
                        }
                    }
                    let _ = sock.write_all(&total.to_be_bytes()).await;
                } else {
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(CHUNK as u64) as usize;
                        if sock.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

/// Seconds to push `bytes` up through `local_port` and get the count back.
async fn upload(local_port: u16, bytes: u64) -> f64 {
    let mut sock = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    sock.write_all(b"u").await.unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        sock.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    sock.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    sock.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_be_bytes(count), bytes, "bytes lost in the tunnel");
    start.elapsed().as_secs_f64()
}

/// Seconds to pull `bytes` down through `local_port`.
async fn download(local_port: u16, bytes: u64) -> f64 {
    let mut sock = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    sock.write_all(b"d").await.unwrap();
    let mut total = 0u64;
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert_eq!(total, bytes, "bytes lost in the tunnel");
    start.elapsed().as_secs_f64()
}

async fn best_of(runs: usize, local_port: u16, bytes: u64, up: bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let secs = if up { upload(local_port, bytes).await } else { download(local_port, bytes).await };
        best = best.min(secs);
    }
    bytes as f64 / best
}

/// Our tunnel: a local listener forwarding over one russh connection.
async fn our_tunnel(sshd: &Sshd, remote: u16) -> u16 {
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    let creds = Credentials::new(sshd.user.clone(), sshd.client_key.clone());
    let expect = Expectation { instance: "bench".into(), pin: Some(sshd.host_fingerprint()), ..Default::default() };
    let conn = Arc::new(transport::handshake(tcp, &creds, expect).await.unwrap_or_else(|e| panic!("{e}")));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, peer)) = listener.accept().await {
            let conn = conn.clone();
            tokio::spawn(async move { tunnel::forward(&conn, sock, peer.port(), remote).await });
        }
    });
    port
}

/// OpenSSH's `ssh -N -L`, with the host key pinned.
fn openssh_tunnel(sshd: &Sshd, remote: u16, cipher: Option<&str>) -> (std::process::Child, u16) {
    let local = common::free_port();
    let known_hosts = sshd.dir.join("bench_known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, keys::public_bare(sshd.host_key.public_key())),
    )
    .unwrap();
    let child = Command::new("ssh")
        .args(["-F", "/dev/null", "-N", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(cipher.map(|c| ["-c", c]).into_iter().flatten())
        .arg("-i")
        .arg(&sshd.client_key_file)
        .args(["-p", &sshd.port.to_string(), "-L", &format!("127.0.0.1:{local}:localhost:{remote}")])
        .arg(format!("{}@127.0.0.1", sshd.user))
        .stdin(Stdio::null())
        .spawn()
        .expect("ssh (OpenSSH client)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "ssh -L did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, local)
}

fn mib_s(bytes_per_s: f64) -> String {
    format!("{:8.1} MiB/s", bytes_per_s / (1024.0 * 1024.0))
}

fn main() {
    let mb: u64 = std::env::var("CLAWORC_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let bytes = mb * 1024 * 1024;
    let runs = 3;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let remote = target_server(bytes).await;
        let sshd = Sshd::start(&[remote]);
        let ours = our_tunnel(&sshd, remote).await;
        let (mut ssh, theirs) = openssh_tunnel(&sshd, remote, None);
        let (mut ssh_gcm, theirs_gcm) = openssh_tunnel(&sshd, remote, Some("aes256-gcm@openssh.com"));
        // Warm up all.
        for port in [ours, theirs, theirs_gcm] {
            upload(port, 8 << 20).await;
        }
        println!("tunnel throughput, {mb} MiB per run, best of {runs}, direct loopback transport to the same sshd");
        println!(
            "{:<10} {:>18} {:>18} {:>7} {:>22} {:>7}",
            "direction", "claworc (russh)", "OpenSSH ssh -L", "ratio", "ssh -L -c aes256-gcm", "ratio"
        );
        for (name, up) in [("upload", true), ("download", false)] {
            let o = best_of(runs, ours, bytes, up).await;
            let t = best_of(runs, theirs, bytes, up).await;
            let g = best_of(runs, theirs_gcm, bytes, up).await;
            println!(
                "{name:<10} {:>18} {:>18} {:>6.0}% {:>22} {:>6.0}%",
                mib_s(o),
                mib_s(t),
                100.0 * o / t,
                mib_s(g),
                100.0 * o / g
            );
        }
        for child in [&mut ssh, &mut ssh_gcm] {
            let _ = child.kill();
            let _ = child.wait();
        }
    });
}
