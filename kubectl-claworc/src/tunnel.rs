//! `kubectl claworc tunnel NAME [-L [LOCAL:]REMOTE]…`: local ports forwarded to
//! `localhost:REMOTE` inside the instance, all over one SSH connection that is
//! itself carried by the Kubernetes port-forward API.
//!
//! - Default: one forward per `claworc.io/forward-ports` port, on ephemeral
//!   127.0.0.1 ports, printed as `http://127.0.0.1:PORT` URLs on stdout.
//! - The local listeners stay up across reconnects: when the pod or the
//!   connection goes away the tunnel reconnects with exponential backoff (1 s
//!   doubling to 16 s), saying so on stderr; it never gives up silently. Only a
//!   refused host key ends it (exit 5).
//! - Each accepted connection becomes one `direct-tcpip` channel; bytes are
//!   copied with `copy_bidirectional` and large buffers.
//! - On request (`kill -USR1 PID`, or Enter when stdin is a terminal) it prints its
//!   forwards on stdout: local and remote port, connections open now and so far,
//!   bytes sent and received by the finished ones, and whether it is connected.
//! - Ctrl-C closes the SSH connection and exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use claworc_contract::annotations::FORWARD_PORTS;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::keystore::KeyStore;
use crate::transport::{self, ConnectError, ConnectOptions, Connection};

/// What `kubectl claworc tunnel` was asked for.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    pub name: String,
    /// The forwards; empty for every port of claworc.io/forward-ports.
    pub forwards: Vec<Forward>,
    pub ssh: ConnectOptions,
}

/// One local forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Local port on 127.0.0.1; 0 for any free port.
    pub local: u16,
    /// Port on the instance's localhost.
    pub remote: u16,
}

/// Parses `REMOTE` or `LOCAL:REMOTE`.
pub fn parse_forward(spec: &str) -> std::result::Result<Forward, String> {
    let port = |s: &str, what: &str, zero_ok: bool| {
        s.trim().parse::<u16>().ok().filter(|p| zero_ok || *p > 0).ok_or_else(|| {
            format!("-L {spec}: {what} port {s:?} is not a port number; use [LOCAL:]REMOTE, e.g. 3000 or 8000:3000")
        })
    };
    match spec.split_once(':') {
        None => Ok(Forward { local: 0, remote: port(spec, "remote", false)? }),
        Some((l, r)) => Ok(Forward { local: port(l, "local", true)?, remote: port(r, "remote", false)? }),
    }
}

/// What one forward has carried, for the listing.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Connections open now.
    pub active: AtomicUsize,
    /// Connections accepted so far.
    pub total: AtomicU64,
    /// Bytes from local clients to the instance, and back (finished connections).
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRow {
    pub local: u16,
    pub remote: u16,
    pub active: usize,
    pub total: u64,
    pub sent: u64,
    pub received: u64,
}

impl ForwardRow {
    fn read(local: u16, remote: u16, s: &ForwardStats) -> Self {
        ForwardRow {
            local,
            remote,
            active: s.active.load(Ordering::Relaxed),
            total: s.total.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
        }
    }
}

/// The listing printed on request: a status line and a table.
pub fn render_forwards(name: &str, connected: bool, rows: &[ForwardRow]) -> String {
    let header = ["LOCAL", "REMOTE", "ACTIVE", "TOTAL", "SENT", "RECEIVED"];
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("127.0.0.1:{}", r.local),
                format!("{name}:{}", r.remote),
                r.active.to_string(),
                r.total.to_string(),
                r.sent.to_string(),
                r.received.to_string(),
            ]
        })
        .collect();
    format!(
        "tunnel to {name}: {}\n{}",
        if connected { "connected" } else { "not connected (reconnecting)" },
        crate::output::table(&header, &rows)
    )
}

/// Resolves on each request for the listing: SIGUSR1, or a line on stdin when it is a terminal.
async fn listing_requests(tx: tokio::sync::mpsc::Sender<()>) {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
                if tx.blocking_send(()).is_err() {
                    break;
                }
            }
        });
    }
    if let Ok(mut usr1) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
        while usr1.recv().await.is_some() {
            if tx.send(()).await.is_err() {
                break;
            }
        }
    }
}

/// Reconnect delay after `failures` consecutive failures: 1 s doubling to 16 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(4))
}

/// Copies between a local connection and a channel with large buffers.
pub const COPY_BUFFER: usize = 256 * 1024;

/// Runs the tunnel until Ctrl-C.
pub async fn tunnel(ctx: &Ctx, args: &TunnelOptions) -> Result<()> {
    let store = KeyStore::open_default()?;
    let opts = &args.ssh;
    // Checked once up front (a missing key is a usage error), then re-read on every
    // reconnect, so a `rotate-keys` while the tunnel runs is picked up.
    transport::credentials(ctx, &store, &args.name, opts)?;
    let settings = transport::instance_settings(&ctx.client, &ctx.namespace, &args.name).await?;
    let forwards = if args.forwards.is_empty() {
        settings.forward_ports.iter().map(|&remote| Forward { local: 0, remote }).collect()
    } else {
        args.forwards.clone()
    };
    for f in &forwards {
        if !settings.forward_ports.contains(&f.remote) {
            eprintln!(
                "warning: port {} is not in {FORWARD_PORTS} ({}): the instance's sshd will refuse it",
                f.remote,
                join(&settings.forward_ports)
            );
        }
    }

    let (tx, rx) = watch::channel::<Option<Arc<Connection>>>(None);
    let allowed = Arc::new(settings.forward_ports.clone());
    let mut listing = Vec::new();
    for f in &forwards {
        let listener = TcpListener::bind(("127.0.0.1", f.local))
            .await
            .map_err(|e| Error::other(format!("cannot listen on 127.0.0.1:{}: {e}", f.local)).with_source(e))?;
        let port = listener.local_addr().map_err(|e| Error::other(e.to_string()).with_source(e))?.port();
        crate::output::line(format_args!("Forwarding http://127.0.0.1:{port} -> {}:{}", args.name, f.remote));
        let stats = Arc::new(ForwardStats::default());
        listing.push((port, f.remote, stats.clone()));
        tokio::spawn(accept_loop(listener, f.remote, rx.clone(), allowed.clone(), stats));
    }
    let (req_tx, mut requests) = tokio::sync::mpsc::channel(4);
    tokio::spawn(listing_requests(req_tx));
    let print_listing = async {
        while requests.recv().await.is_some() {
            let rows: Vec<ForwardRow> = listing.iter().map(|(l, r, s)| ForwardRow::read(*l, *r, s)).collect();
            let connected = rx.borrow().as_ref().is_some_and(|c| !c.is_closed());
            crate::output::stdout(&render_forwards(&args.name, connected, &rows));
        }
        std::future::pending::<()>().await
    };

    let name = args.name.clone();
    let supervise = async {
        let mut failures = 0u32;
        loop {
            let attempt = async {
                let instance = transport::find_instance(&ctx.client, &ctx.namespace, &name)
                    .await
                    .map_err(ConnectError::transport_from)?;
                let creds = transport::credentials(ctx, &store, &name, opts)
                    .map_err(|e| ConnectError::Transport { message: e.one_line(), source: Some(Box::new(e)) })?;
                let conn = transport::connect_instance(ctx, &store, &instance, &creds, opts.repin).await?;
                Ok::<_, ConnectError>((instance, conn))
            };
            match attempt.await {
                Ok((instance, conn)) => {
                    eprintln!("tunnel: connected to {} (pod {})", instance.id(), instance.pod);
                    let since = std::time::Instant::now();
                    let conn = Arc::new(conn);
                    tx.send_replace(Some(conn.clone()));
                    while !conn.is_closed() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    tx.send_replace(None);
                    // Only a connection that lasted resets the backoff: one that drops
                    // right after login (a crash-looping sshd) is retried like a failure.
                    if since.elapsed() >= STABLE {
                        failures = 0;
                    }
                    let delay = backoff(failures);
                    failures = failures.saturating_add(1);
                    eprintln!("tunnel: connection to {} lost; reconnecting in {}s", instance.id(), delay.as_secs());
                    tokio::time::sleep(delay).await;
                }
                Err(e @ ConnectError::HostKey(_)) => return Err(e.into()),
                Err(e) => {
                    let delay = backoff(failures);
                    failures = failures.saturating_add(1);
                    eprintln!("tunnel: cannot connect ({e}); retrying in {}s", delay.as_secs());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    };
    tokio::select! {
        r = supervise => r,
        _ = print_listing => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            let current = tx.borrow().clone();
            if let Some(conn) = current {
                conn.close().await;
            }
            eprintln!("tunnel: closed");
            Ok(())
        }
    }
}

/// How long a connection must last for its loss to reset the backoff.
const STABLE: Duration = Duration::from_secs(30);

fn join(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

async fn accept_loop(
    listener: TcpListener,
    remote: u16,
    rx: watch::Receiver<Option<Arc<Connection>>>,
    allowed: Arc<Vec<u16>>,
    stats: Arc<ForwardStats>,
) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("tunnel: accept on port for {remote}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut rx = rx.clone();
        let allowed = allowed.clone();
        let stats = stats.clone();
        stats.total.fetch_add(1, Ordering::Relaxed);
        stats.active.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _open = Open(&stats.active);
            // Wait (a while) for the SSH connection, e.g. during a reconnect.
            let conn = match tokio::time::timeout(Duration::from_secs(60), rx.wait_for(Option::is_some)).await {
                Ok(Ok(c)) => c.clone().expect("checked by wait_for"),
                _ => {
                    eprintln!("tunnel: no connection to the instance; dropped a connection to port {remote}");
                    return;
                }
            };
            let result = forward(&conn, sock, peer.port(), remote).await;
            if let Ok((sent, received)) = result {
                stats.sent.fetch_add(sent, Ordering::Relaxed);
                stats.received.fetch_add(received, Ordering::Relaxed);
            }
            if let Err(e) = result {
                let hint = if allowed.contains(&remote) {
                    String::new()
                } else {
                    format!(" (only {FORWARD_PORTS} {} may be reached)", join(&allowed))
                };
                eprintln!("tunnel: forward to localhost:{remote}: {e}{hint}");
            }
        });
    }
}

/// Counts one open connection until dropped.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One forwarded connection: a `direct-tcpip` channel to `localhost:remote`.
/// Returns the bytes sent to the instance and received from it.
pub async fn forward(
    conn: &Connection,
    mut sock: TcpStream,
    peer_port: u16,
    remote: u16,
) -> std::io::Result<(u64, u64)> {
    let _ = sock.set_nodelay(true);
    let channel = conn
        .handle
        .channel_open_direct_tcpip("localhost", u32::from(remote), "127.0.0.1", u32::from(peer_port))
        .await
        .map_err(|e| std::io::Error::other(format!("refused by the instance: {e}")))?;
    let mut stream = channel.into_stream();
    match tokio::io::copy_bidirectional_with_sizes(&mut sock, &mut stream, COPY_BUFFER, COPY_BUFFER).await {
        Ok(bytes) => Ok(bytes),
        // A peer resetting its end is a normal way for a forwarded connection to end.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
            Ok((0, 0))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs() {
        assert_eq!(parse_forward("3000"), Ok(Forward { local: 0, remote: 3000 }));
        assert_eq!(parse_forward("8000:3000"), Ok(Forward { local: 8000, remote: 3000 }));
        assert_eq!(parse_forward("0:3000"), Ok(Forward { local: 0, remote: 3000 }));
        assert!(parse_forward("x").unwrap_err().contains("[LOCAL:]REMOTE"));
        assert!(parse_forward("3000:0").is_err());
        assert!(parse_forward("70000").is_err());
    }

    #[test]
    fn the_listing_shows_each_forward() {
        let rows = [
            ForwardRow { local: 41000, remote: 8080, active: 1, total: 3, sent: 120, received: 4096 },
            ForwardRow { local: 41001, remote: 3000, active: 0, total: 0, sent: 0, received: 0 },
        ];
        let text = render_forwards("dev", true, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "tunnel to dev: connected");
        assert!(lines[1].starts_with("LOCAL") && lines[1].contains("RECEIVED"), "{text}");
        let words: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(words, ["127.0.0.1:41000", "dev:8080", "1", "3", "120", "4096"]);
        assert!(render_forwards("dev", false, &rows).starts_with("tunnel to dev: not connected"));
    }

    #[test]
    fn backoff_doubles_to_sixteen_seconds() {
        let secs: Vec<u64> = (0..7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(backoff(u32::MAX).as_secs(), 16);
    }
}
