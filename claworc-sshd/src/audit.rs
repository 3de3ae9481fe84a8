//! The audit trail: one JSON object per line on stderr, so `kubectl logs` and
//! any cluster log collector keep it. Each line has `ts` (RFC 3339 UTC),
//! `event`, and for connection events `conn` (a per-process counter) and
//! `peer`. Never key material, never file contents, never environment values.
//!
//! The event and field names are the contract's ([`claworc_contract::audit`]), so
//! `kubectl claworc audit` reads back exactly what is written here.

use std::io::Write;
use std::net::SocketAddr;

use claworc_contract::audit::Line;

/// One auditable event. Field names are part of the public contract
/// (docs/claworc-sshd.md).
pub type Event<'a> = claworc_contract::audit::Event<&'a str>;

/// Where a connection's lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The server's: stderr.
    Stderr,
    /// Nowhere: the fuzz harness (`tests/fuzz_preauth.rs`), whose millions of
    /// connections would otherwise bury its own report.
    Discard,
}

/// Who a line is about: one connection (cheap to clone into its tasks).
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    pub sink: Sink,
}

impl Conn {
    pub fn emit(&self, event: Event<'_>) {
        if self.sink == Sink::Stderr {
            write(Some(self), &event);
        }
    }
}

/// An event not tied to a connection.
pub fn emit(event: Event<'_>) {
    write(None, &event);
}

fn write(conn: Option<&Conn>, event: &Event<'_>) {
    let line = Line {
        ts: jiff::Timestamp::now().to_string(),
        conn: conn.map(|c| c.id),
        peer: conn.map(|c| c.peer.to_string()),
        event,
    };
    let Ok(mut text) = serde_json::to_vec(&line) else { return };
    text.push(b'\n');
    // One write per line, under the stderr lock, so lines never interleave.
    let _ = std::io::stderr().lock().write_all(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_flat_json_with_the_event_name() {
        let event = Event::SessionEnd {
            channel: 0,
            kind: "exec",
            command: "true",
            exit_status: Some(0),
            exit_signal: None,
            duration_ms: 5,
        };
        let line = Line { ts: "t".into(), conn: Some(7), peer: Some("127.0.0.1:1".into()), event: &event };
        let v: serde_json::Value = serde_json::to_value(&line).unwrap();
        assert_eq!(v["event"], "session_end");
        assert_eq!(v["conn"], 7);
        assert_eq!(v["exit_status"], 0);
        assert!(v.get("exit_signal").is_none());
    }
}
