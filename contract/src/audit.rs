//! The audit lines of `claworc-sshd` (docs/claworc-sshd.md, "Audit trail"): one JSON
//! object per line on the sidecar's stderr. The one definition of their event names
//! and field names: `claworc-sshd` writes [`Line`]s of `Event<&str>`, and
//! `kubectl claworc audit` reads them back as `Line<Event<String>>`.

use serde::{Deserialize, Serialize};

/// One auditable event; `S` is the type of its borrowed text (`&str` when written,
/// `String` when read). Never key material, never file contents, never environment
/// values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<S> {
    /// The server is ready: its address and host key fingerprint.
    Listening {
        addr: String,
        host_key: String,
    },
    /// A connection was closed on accept: too many unauthenticated connections.
    ConnectionRefused {
        reason: S,
    },
    Connect {},
    LoginAccepted {
        user: S,
        method: S,
        fingerprint: String,
        comment: S,
    },
    LoginRefused {
        user: S,
        method: S,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<S>,
        reason: S,
    },
    SessionStart {
        channel: u32,
        /// `exec`, `shell` or `subsystem`.
        kind: S,
        /// The command line, `shell`, or the subsystem name.
        command: S,
        pty: bool,
    },
    SessionEnd {
        channel: u32,
        kind: S,
        command: S,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_status: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_signal: Option<String>,
        #[serde(deserialize_with = "millis")]
        duration_ms: u128,
    },
    /// A request on a session channel or a connection that was refused.
    RequestRefused {
        request: S,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    SftpOpenWrite {
        path: String,
    },
    SftpRemove {
        path: String,
    },
    SftpRename {
        from: String,
        to: String,
    },
    /// Files written whole by one batch (`put-files@claworc.io`, see
    /// [`crate::sftp_batch`]): each under a temporary name, then renamed over its
    /// path. A batch with many or long paths is written as several lines, each under
    /// [`PUT_FILES_LINE`] bytes of paths.
    SftpPutFiles {
        paths: Vec<String>,
    },
    SftpMkdir {
        path: String,
    },
    SftpRmdir {
        path: String,
    },
    ForwardOpened {
        host: S,
        port: u32,
    },
    ForwardRefused {
        host: S,
        port: u32,
        reason: S,
    },
    Disconnect {
        reason: S,
        #[serde(deserialize_with = "millis")]
        duration_ms: u128,
    },
}

/// `duration_ms` (a `u128` as written) read back: serde's buffering of the flattened
/// event has no 128-bit integers, and 2^64 ms is half a billion years.
fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    u64::deserialize(d).map(u128::from)
}

/// A whole line: the time, the connection it is about (if any) and the event's
/// fields, flat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line<E> {
    /// RFC 3339, UTC.
    pub ts: String,
    /// A per-process counter, the same on every line of one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    /// `ip:port` of the connection's peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(flatten)]
    pub event: E,
}

/// A line as read back.
pub type ReadLine = Line<Event<String>>;

impl<S> Event<S> {
    /// The `event` field's value (`login_accepted`, `session_end`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Listening { .. } => "listening",
            Event::ConnectionRefused { .. } => "connection_refused",
            Event::Connect {} => "connect",
            Event::LoginAccepted { .. } => "login_accepted",
            Event::LoginRefused { .. } => "login_refused",
            Event::SessionStart { .. } => "session_start",
            Event::SessionEnd { .. } => "session_end",
            Event::RequestRefused { .. } => "request_refused",
            Event::SftpOpenWrite { .. } => "sftp_open_write",
            Event::SftpRemove { .. } => "sftp_remove",
            Event::SftpRename { .. } => "sftp_rename",
            Event::SftpPutFiles { .. } => "sftp_put_files",
            Event::SftpMkdir { .. } => "sftp_mkdir",
            Event::SftpRmdir { .. } => "sftp_rmdir",
            Event::ForwardOpened { .. } => "forward_opened",
            Event::ForwardRefused { .. } => "forward_refused",
            Event::Disconnect { .. } => "disconnect",
        }
    }
}

/// Most bytes of paths on one `sftp_put_files` line: lines stay under the 16 KiB at
/// which the container runtime splits a log line, and under log collectors' limits.
pub const PUT_FILES_LINE: usize = 8 * 1024;

/// `paths` cut into the lists of `sftp_put_files` lines (each under
/// [`PUT_FILES_LINE`] bytes of paths, at least one path per line).
pub fn put_files_lines(paths: &[String]) -> Vec<&[String]> {
    let mut lines = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in paths.iter().enumerate() {
        if i > start && bytes + p.len() > PUT_FILES_LINE {
            lines.push(&paths[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += p.len();
    }
    if start < paths.len() {
        lines.push(&paths[start..]);
    }
    lines
}

/// Reads one log line back; `None` for anything that is not an audit line (other
/// output, a truncated line, an event this version does not know).
pub fn parse(line: &str) -> Option<ReadLine> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(event: Event<&str>) -> String {
        serde_json::to_string(&Line { ts: "2026-11-26T23:00:00Z".into(), conn: Some(7), peer: None, event: &event })
            .unwrap()
    }

    #[test]
    fn a_written_line_reads_back_the_same() {
        let end = Event::SessionEnd {
            channel: 0,
            kind: "exec",
            command: "sh -c \"exit 3\"",
            exit_status: Some(3),
            exit_signal: None,
            duration_ms: 5,
        };
        let text = write(end);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "session_end");
        assert_eq!(v["conn"], 7);
        assert!(v.get("exit_signal").is_none() && v.get("peer").is_none(), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.conn, Some(7));
        assert_eq!(
            back.event,
            Event::SessionEnd {
                channel: 0,
                kind: "exec".into(),
                command: "sh -c \"exit 3\"".into(),
                exit_status: Some(3),
                exit_signal: None,
                duration_ms: 5,
            }
        );
        assert_eq!(back.event.name(), "session_end");
    }

    #[test]
    fn every_name_is_the_written_tag() {
        let events: Vec<Event<&str>> = vec![
            Event::Listening { addr: "a".into(), host_key: "k".into() },
            Event::ConnectionRefused { reason: "r" },
            Event::Connect {},
            Event::LoginAccepted { user: "u", method: "publickey", fingerprint: "SHA256:x".into(), comment: "c" },
            Event::LoginRefused { user: "u", method: "publickey", fingerprint: None, comment: None, reason: "r" },
            Event::SessionStart { channel: 0, kind: "exec", command: "true", pty: false },
            Event::RequestRefused { request: "env", detail: Some("X".into()) },
            Event::SftpOpenWrite { path: "/p".into() },
            Event::SftpRemove { path: "/p".into() },
            Event::SftpRename { from: "/a".into(), to: "/b".into() },
            Event::SftpPutFiles { paths: vec!["/a".into(), "/b".into()] },
            Event::SftpMkdir { path: "/p".into() },
            Event::SftpRmdir { path: "/p".into() },
            Event::ForwardOpened { host: "localhost", port: 8080 },
            Event::ForwardRefused { host: "localhost", port: 22, reason: "r" },
            Event::Disconnect { reason: "closed", duration_ms: 1 },
        ];
        for e in events {
            let text = write(e.clone());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["event"], e.name(), "{text}");
            assert_eq!(parse(&text).map(|l| l.event.name()), Some(e.name()), "{text}");
        }
    }

    #[test]
    fn a_batch_is_cut_into_lines_of_at_most_the_limit() {
        let paths: Vec<String> = (0..1000).map(|i| format!("/work/tree/file-{i:04}")).collect();
        let lines = put_files_lines(&paths);
        assert_eq!(lines.concat(), paths, "every path once, in order");
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(l.iter().map(String::len).sum::<usize>() <= PUT_FILES_LINE);
        }
        // A path longer than the limit still gets a line of its own.
        let long = vec!["/a".to_string(), "x".repeat(PUT_FILES_LINE + 1), "/b".to_string()];
        assert_eq!(put_files_lines(&long), [&long[..1], &long[1..2], &long[2..]]);
        assert!(put_files_lines(&[]).is_empty());
    }

    #[test]
    fn other_lines_are_not_audit_lines() {
        assert_eq!(parse("starting"), None);
        assert_eq!(parse("{\"ts\":\"t\",\"event\":\"no_such_event\"}"), None);
        assert_eq!(parse("{\"ts\":\"t\",\"event\":\"login_accepted\",\"user\":"), None);
        assert_eq!(parse("{\"msg\":\"a JSON line of something else\"}"), None);
    }
}
