//! Local forwarding (`direct-tcpip`): only to `localhost` or `127.0.0.1`, only
//! to the `claworc.io/forward-ports`; the pod's network namespace makes that
//! the workload's own ports. Everything else (other hosts, other ports, remote
//! forwarding, Unix sockets, X11, agent, tunnels) is refused by
//! [`crate::session`].

use std::time::Duration;

use russh::Channel;
use russh::server::Msg;
use tokio::net::TcpStream;

/// russh's maximum packet size, the most one channel message carries.
const PACKET: usize = 32 * 1024;

/// Why a forward is refused, or `None` if it is allowed.
pub fn refusal(host: &str, port: u32, allowed: &[u16]) -> Option<&'static str> {
    if host != "localhost" && host != "127.0.0.1" {
        Some("only localhost may be forwarded to")
    } else if !u16::try_from(port).is_ok_and(|p| allowed.contains(&p)) {
        Some("port not in claworc.io/forward-ports")
    } else {
        None
    }
}

/// Connects to the workload's port: 127.0.0.1, then ::1 (`localhost`).
pub async fn connect(port: u16) -> std::io::Result<TcpStream> {
    let attempt = async {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => Ok(s),
            Err(e) => TcpStream::connect(("::1", port)).await.map_err(|_| e),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Copies both ways between the channel and the workload's socket until both close.
pub fn pipe(channel: Channel<Msg>, mut stream: TcpStream) {
    tokio::spawn(async move {
        let _ = stream.set_nodelay(true);
        let mut ch = channel.into_stream();
        // Reads of one SSH packet (32 KiB), not copy_bidirectional's 8 KiB
        // default, so the workload's replies go out in full packets.
        let _ = tokio::io::copy_bidirectional_with_sizes(&mut ch, &mut stream, PACKET, PACKET).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_localhost_ports() {
        assert_eq!(refusal("localhost", 3000, &[3000]), None);
        assert_eq!(refusal("127.0.0.1", 3000, &[3000]), None);
        assert!(refusal("localhost", 22, &[3000]).is_some());
        assert!(refusal("10.0.0.1", 3000, &[3000]).is_some());
        assert!(refusal("::1", 3000, &[3000]).is_some());
        assert!(refusal("localhost", 65536 + 3000, &[3000]).is_some());
    }
}
