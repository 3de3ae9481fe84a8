//! `claworc-sshd probe PORT`: the sidecar's readiness probe. It connects to
//! 127.0.0.1:PORT and succeeds when an SSH server answers with its version
//! line, so `Ready` means "you can log in now". It is the delivered binary
//! itself, so it needs no tool from the workload's image (which may have none).

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("127.0.0.1:{port}: {source}")]
    Io { port: u16, source: std::io::Error },
    #[error("127.0.0.1:{port} answered {line:?}, not an SSH version line")]
    NotSsh { port: u16, line: String },
}

/// Reads the server's version line (`SSH-2.0-…`) within `timeout`; returns it.
pub fn probe(port: u16, timeout: Duration) -> Result<String, ProbeError> {
    let io = |source| ProbeError::Io { port, source };
    let stream = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    // RFC 4253 4.2: lines before the version line are allowed; 255 bytes each at most.
    let mut reader = BufReader::new(stream.take(4096));
    for _ in 0..10 {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Err(ProbeError::NotSsh { port, line });
        }
        let line = line.trim_end().to_string();
        if line.starts_with("SSH-2.0-") {
            return Ok(line);
        }
    }
    Err(ProbeError::NotSsh { port, line: "(no version line in 10 lines)".into() })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    fn serve_once(reply: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(reply);
        });
        port
    }

    #[test]
    fn an_ssh_version_line_passes_anything_else_fails() {
        let port = serve_once(b"SSH-2.0-claworc_0.1.0\r\n");
        assert_eq!(probe(port, Duration::from_secs(2)).unwrap(), "SSH-2.0-claworc_0.1.0");
        let port = serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        let e = probe(port, Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("not an SSH version line"), "{e}");
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(probe(closed, Duration::from_secs(2)).is_err());
    }
}
