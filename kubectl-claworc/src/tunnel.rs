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
//! - Ctrl-C closes the SSH connection and exits 0.

use std::sync::Arc;
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
    for f in &forwards {
        let listener = TcpListener::bind(("127.0.0.1", f.local))
            .await
            .map_err(|e| Error::other(format!("cannot listen on 127.0.0.1:{}: {e}", f.local)).with_source(e))?;
        let port = listener.local_addr().map_err(|e| Error::other(e.to_string()).with_source(e))?.port();
        crate::output::line(format_args!("Forwarding http://127.0.0.1:{port} -> {}:{}", args.name, f.remote));
        tokio::spawn(accept_loop(listener, f.remote, rx.clone(), allowed.clone()));
    }

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
        tokio::spawn(async move {
            // Wait (a while) for the SSH connection, e.g. during a reconnect.
            let conn = match tokio::time::timeout(Duration::from_secs(60), rx.wait_for(Option::is_some)).await {
                Ok(Ok(c)) => c.clone().expect("checked by wait_for"),
                _ => {
                    eprintln!("tunnel: no connection to the instance; dropped a connection to port {remote}");
                    return;
                }
            };
            if let Err(e) = forward(&conn, sock, peer.port(), remote).await {
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

/// One forwarded connection: a `direct-tcpip` channel to `localhost:remote`.
pub async fn forward(conn: &Connection, mut sock: TcpStream, peer_port: u16, remote: u16) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let channel = conn
        .handle
        .channel_open_direct_tcpip("localhost", u32::from(remote), "127.0.0.1", u32::from(peer_port))
        .await
        .map_err(|e| std::io::Error::other(format!("refused by the instance: {e}")))?;
    let mut stream = channel.into_stream();
    match tokio::io::copy_bidirectional_with_sizes(&mut sock, &mut stream, COPY_BUFFER, COPY_BUFFER).await {
        Ok(_) => Ok(()),
        // A peer resetting its end is a normal way for a forwarded connection to end.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => Ok(()),
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
    fn backoff_doubles_to_sixteen_seconds() {
        let secs: Vec<u64> = (0..7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(backoff(u32::MAX).as_secs(), 16);
    }
}
