//! `kubectl claworc audit NAME [--since D] [-o json|yaml]`: who did what over SSH,
//! and to the instance. Two sources, merged and sorted by time:
//!
//! - the audit lines of the `claworc-sshd` sidecar of every pod of the instance,
//!   read through `pods/log` (the path of `kubectl claworc logs`; the previous
//!   container's too after a restart), kept only when they parse as the contract's
//!   [`claworc_contract::audit`] lines;
//! - the Kubernetes Events about the instance's Deployment: the plugin's own
//!   (`create`, `rotate-keys`, `delete`, written by [`crate::events`]) and the
//!   cluster's (the deployment controller's scaling).
//!
//! Building the rows is pure ([`sshd_rows`], [`event_row`], [`merge`], [`render`]);
//! [`audit`] only fetches.

use std::collections::HashMap;
use std::time::Duration;

use claworc_contract::audit::{Event as Sshd, ReadLine};
use claworc_contract::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{Error, Kind, Result};
use crate::events;
use crate::output::{self, Format};
use crate::transport;

/// What `kubectl claworc audit` was asked for.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub name: String,
    /// Only what happened within this time.
    pub since: Option<Duration>,
    /// JSON or YAML instead of the table.
    pub output: Option<Format>,
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    #[serde(skip)]
    pub at: Timestamp,
    /// RFC 3339, UTC, as precise as the source.
    pub time: String,
    /// `claworc-sshd` for an SSH audit line, else the Event's reporting controller.
    pub source: String,
    /// The pod whose sidecar wrote the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The audit event (`login_accepted`, `session_end`, …) or the Event's reason.
    pub event: String,
    /// The client key of the connection (from its `login_accepted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The key's comment in `authorized_keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The Kubernetes user who did it (the plugin's Events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What happened, in words.
    pub detail: String,
    /// The source's own fields: the audit line as written, or the Event's.
    pub fields: serde_json::Value,
}

impl Row {
    /// The WHO column: the key (fingerprint and comment) or the user.
    pub fn who(&self) -> String {
        match (&self.fingerprint, &self.comment, &self.user) {
            (Some(f), Some(c), _) if !c.is_empty() => format!("{f} ({c})"),
            (Some(f), _, _) => f.clone(),
            (None, _, Some(u)) => u.clone(),
            _ => "-".into(),
        }
    }
}

fn millis(ms: u128) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms => crate::input::format_duration(Duration::from_millis(ms as u64)),
    }
}

/// The DETAIL column of an audit line.
pub fn detail(line: &ReadLine) -> String {
    let peer = line.peer.as_deref().map(|p| format!(" from {p}")).unwrap_or_default();
    match &line.event {
        Sshd::Listening { addr, host_key } => format!("listening on {addr}, host key {host_key}"),
        Sshd::ConnectionRefused { reason } => format!("connection refused{peer}: {reason}"),
        Sshd::Connect {} => format!("connection{peer}"),
        Sshd::LoginAccepted { user, method, .. } => format!("{user} by {method}{peer}"),
        Sshd::LoginRefused { user, method, reason, .. } => format!("{user} by {method}{peer}: {reason}"),
        Sshd::SessionStart { kind, command, pty, .. } => {
            format!("{kind} {command:?}{}", if *pty { " (pty)" } else { "" })
        }
        Sshd::SessionEnd { kind, command, exit_status, exit_signal, duration_ms, .. } => {
            let end = match (exit_status, exit_signal) {
                (Some(s), _) => format!("exit {s}"),
                (None, Some(sig)) => format!("signal {sig}"),
                (None, None) => "no exit status".into(),
            };
            format!("{kind} {command:?}: {end} after {}", millis(*duration_ms))
        }
        Sshd::RequestRefused { request, detail } => match detail {
            Some(d) => format!("{request} refused: {d}"),
            None => format!("{request} refused"),
        },
        Sshd::SftpOpenWrite { path } => format!("write {path}"),
        Sshd::SftpRemove { path } => format!("remove {path}"),
        Sshd::SftpRename { from, to } => format!("rename {from} -> {to}"),
        Sshd::SftpPutFiles { paths } => match &paths[..] {
            [one] => format!("write {one}"),
            [first, .., last] if paths.len() > 3 => format!("write {} files: {first} … {last}", paths.len()),
            all => format!("write {}", all.join(", ")),
        },
        Sshd::SftpMkdir { path } => format!("mkdir {path}"),
        Sshd::SftpRmdir { path } => format!("rmdir {path}"),
        Sshd::ForwardOpened { host, port } => format!("forward to {host}:{port}"),
        Sshd::ForwardRefused { host, port, reason } => format!("forward to {host}:{port} refused: {reason}"),
        Sshd::Disconnect { reason, duration_ms } => format!("{reason} after {}", millis(*duration_ms)),
    }
}

/// The rows of one pod's sidecar log (`text`, oldest first): every audit line, each
/// with the key its connection logged in with. Other lines are skipped.
pub fn sshd_rows(pod: &str, text: &str) -> Vec<Row> {
    let mut keys: HashMap<u64, (String, String)> = HashMap::new();
    let mut rows = Vec::new();
    for line in text.lines().filter_map(claworc_contract::audit::parse) {
        let Ok(at) = line.ts.parse::<Timestamp>() else { continue };
        let key = match (&line.event, line.conn) {
            (Sshd::LoginAccepted { fingerprint, comment, .. }, Some(conn)) => {
                keys.insert(conn, (fingerprint.clone(), comment.clone()));
                Some((fingerprint.clone(), comment.clone()))
            }
            (Sshd::LoginRefused { fingerprint: Some(f), comment, .. }, _) => {
                Some((f.clone(), comment.clone().unwrap_or_default()))
            }
            // A new process counts from 1 again: its `connect` starts afresh.
            (Sshd::Connect {}, Some(conn)) => {
                keys.remove(&conn);
                None
            }
            (_, Some(conn)) => keys.get(&conn).cloned(),
            (_, None) => None,
        };
        rows.push(Row {
            at,
            time: at.to_string(),
            source: names::SIDECAR.into(),
            pod: Some(pod.into()),
            event: line.event.name().into(),
            fingerprint: key.as_ref().map(|k| k.0.clone()),
            comment: key.map(|k| k.1),
            user: None,
            detail: detail(&line),
            fields: serde_json::to_value(&line).unwrap_or_default(),
        });
    }
    rows
}

/// The row of a Kubernetes Event (core/v1, the view `kubectl get events` reads);
/// `None` without any time.
pub fn event_row(e: &Event) -> Option<Row> {
    let at = e
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let source = e
        .reporting_component
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
        .unwrap_or_else(|| "-".into());
    let message = e.message.clone().unwrap_or_default();
    let ours = source == events::REPORTING_CONTROLLER;
    let user = ours.then(|| events::actor(&message).map(String::from)).flatten();
    let detail = match &user {
        Some(u) => message.strip_suffix(&format!(" by {u}")).unwrap_or(&message).to_string(),
        None => message.clone(),
    };
    let fields = serde_json::json!({
        "reason": e.reason,
        "action": e.action,
        "type": e.type_,
        "note": message,
        "reportingController": source,
        "name": e.metadata.name,
    });
    Some(Row {
        at,
        time: at.to_string(),
        source,
        pod: None,
        event: e.reason.clone().unwrap_or_else(|| "-".into()),
        fingerprint: None,
        comment: None,
        user,
        detail,
        fields,
    })
}

/// All rows, oldest first (a stable sort: the lines of one pod keep their order),
/// only those at or after `since` ago when given.
pub fn merge(sources: Vec<Vec<Row>>, since: Option<Duration>, now: Timestamp) -> Vec<Row> {
    let cutoff = since.and_then(|d| now.checked_sub(jiff_span(d)).ok());
    let mut rows: Vec<Row> = sources.into_iter().flatten().filter(|r| cutoff.is_none_or(|c| r.at >= c)).collect();
    rows.sort_by_key(|r| r.at);
    rows
}

fn jiff_span(d: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

/// The table: TIME (to the second, UTC), SOURCE (the pod, or the Event's
/// controller), EVENT, WHO, DETAIL.
pub fn render(rows: &[Row]) -> String {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let time =
                Timestamp::from_second(r.at.as_second()).map(|t| t.to_string()).unwrap_or_else(|_| r.time.clone());
            let source = match &r.pod {
                Some(p) => format!("pod/{p}"),
                None => r.source.clone(),
            };
            vec![time, source, r.event.clone(), r.who(), r.detail.clone()]
        })
        .collect();
    output::table(&["TIME", "SOURCE", "EVENT", "WHO", "DETAIL"], &table)
}

/// A failure to read one source: a refusal by RBAC ends the command (exit 5),
/// anything else (a container not started yet) is a warning.
fn soft(e: kube::Error, what: String) -> Result<()> {
    let e = Error::kube(e, what);
    if e.kind() == Kind::Forbidden {
        return Err(e);
    }
    eprintln!("warning: {}", e.one_line());
    Ok(())
}

/// The sidecar's log of `pod`: the running container's, after the previous one's
/// when it restarted.
async fn pod_rows(pods: &Api<Pod>, pod: &Pod, since: Option<Duration>) -> Result<Vec<Row>> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let restarted = status
        .into_iter()
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .any(|c| c.name == names::SIDECAR && c.restart_count > 0);
    let mut rows = Vec::new();
    for previous in [true, false] {
        if previous && !restarted {
            continue;
        }
        let params = LogParams {
            container: Some(names::SIDECAR.into()),
            previous,
            since_seconds: since.map(|d| d.as_secs().max(1) as i64),
            ..Default::default()
        };
        match pods.logs(&name, &params).await {
            Ok(text) => rows.extend(sshd_rows(&name, &text)),
            Err(e) => soft(e, format!("the {} log of pod \"{name}\"", names::SIDECAR))?,
        }
    }
    Ok(rows)
}

/// Runs `audit`.
pub async fn audit(ctx: &Ctx, args: &AuditOptions) -> Result<()> {
    crate::input::validate_name("instance name", &args.name)?;
    let name = &args.name;
    let ns = &ctx.namespace;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let instance_pods = transport::instance_pods(&ctx.client, ns, name).await?;
    let mut sources = Vec::new();
    for pod in &instance_pods {
        sources.push(pod_rows(&pods, pod, args.since).await?);
    }
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("involvedObject.kind=Deployment,involvedObject.name={name}");
    match events.list(&ListParams::default().fields(&selector)).await {
        Ok(list) => sources.push(list.items.iter().filter_map(event_row).collect()),
        Err(e) => {
            eprintln!("warning: {} (the table has the SSH audit lines only)", Error::kube(e, "events").one_line())
        }
    }
    let rows = merge(sources, args.since, Timestamp::now());
    if rows.is_empty() && instance_pods.is_empty() {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
        let what = format!("instance {name:?} in namespace {ns:?}");
        if deployments.get_opt(name).await.map_err(|e| Error::kube(e, &what))?.is_none() {
            return Err(Error::not_found(format!(
                "{what} not found, and no events about it (see `kubectl claworc list`)"
            )));
        }
    }
    match args.output {
        Some(f) => output::print(&rows, f),
        None if rows.is_empty() => eprintln!(
            "No audit events for {name}{}.",
            match args.since {
                Some(d) => format!(" in the last {}", crate::input::format_duration(d)),
                None => String::new(),
            }
        ),
        None => output::stdout(&render(&rows)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "box-7c9d-x2";

    fn log() -> String {
        [
            r#"{"ts":"2026-11-26T10:00:00Z","event":"listening","addr":"127.0.0.1:2222","host_key":"SHA256:host"}"#,
            "some other output of the sidecar",
            r#"{"ts":"2026-11-26T10:00:01Z","conn":1,"peer":"127.0.0.1:4000","event":"connect"}"#,
            r#"{"ts":"2026-11-26T10:00:02Z","conn":1,"peer":"127.0.0.1:4000","event":"login_accepted","user":"agent","method":"publickey","fingerprint":"SHA256:abc","comment":"claworc c/ns/box"}"#,
            r#"{"ts":"2026-11-26T10:00:03Z","conn":1,"peer":"127.0.0.1:4000","event":"session_start","channel":0,"kind":"exec","command":"sh -c 'exit 3'","pty":false}"#,
            r#"{"ts":"2026-11-26T10:00:04Z","conn":1,"peer":"127.0.0.1:4000","event":"session_end","channel":0,"kind":"exec","command":"sh -c 'exit 3'","exit_status":3,"duration_ms":1500}"#,
            r#"{"ts":"2026-11-26T10:00:05Z","conn":2,"peer":"127.0.0.1:4001","event":"login_refused","user":"agent","method":"publickey","fingerprint":"SHA256:zzz","reason":"key not authorized"}"#,
            r#"{"ts":"2026-11-26T10:00:06Z","conn":1,"peer":"127.0.0.1:4000","event":"sftp_open_write","path":"/home/agent/up.txt"}"#,
            r#"{"ts":"2026-11-26T10:00:07Z","conn":1,"peer":"127.0.0.1:4000","event":"forward_opened","host":"localhost","port":8080}"#,
            r#"{"ts":"2026-11-26T10:00:08Z","conn":1,"peer":"127.0.0.1:4000","event":"disconnect","reason":"closed","duration_ms":7000}"#,
            r#"{"ts":"2026-11-26T10:00:09Z","conn":1,"peer":"127.0.0.1:4002","event":"connect"}"#,
            r#"{"ts":"2026-11-26T10:00:10Z","conn":1,"peer":"127.0.0.1:4002","event":"disconnect","reason":"closed before login","duration_ms":3}"#,
        ]
        .join("\n")
    }

    #[test]
    fn a_batch_of_files_reads_as_one_row() {
        let line = |paths: &[&str]| {
            let text =
                serde_json::json!({"ts": "2026-11-26T10:00:06Z", "conn": 1, "event": "sftp_put_files", "paths": paths});
            detail(&claworc_contract::audit::parse(&text.to_string()).unwrap())
        };
        assert_eq!(line(&["/w/a"]), "write /w/a");
        assert_eq!(line(&["/w/a", "/w/b", "/w/c"]), "write /w/a, /w/b, /w/c");
        assert_eq!(line(&["/w/a", "/w/b", "/w/c", "/w/d"]), "write 4 files: /w/a … /w/d");
    }

    #[test]
    fn audit_lines_become_rows_with_the_key_of_their_connection() {
        let rows = sshd_rows(POD, &log());
        let names: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(
            names,
            [
                "listening",
                "connect",
                "login_accepted",
                "session_start",
                "session_end",
                "login_refused",
                "sftp_open_write",
                "forward_opened",
                "disconnect",
                "connect",
                "disconnect"
            ]
        );
        let by = |e: &str| rows.iter().find(|r| r.event == e).unwrap();
        let end = by("session_end");
        assert_eq!(end.who(), "SHA256:abc (claworc c/ns/box)");
        assert_eq!(end.detail, "exec \"sh -c 'exit 3'\": exit 3 after 1.5s");
        assert_eq!(end.fields["exit_status"], 3);
        assert_eq!(end.fields["command"], "sh -c 'exit 3'");
        assert_eq!(end.pod.as_deref(), Some(POD));
        assert_eq!(by("login_refused").who(), "SHA256:zzz", "a refused key is named, and not the connection's");
        assert_eq!(by("sftp_open_write").detail, "write /home/agent/up.txt");
        assert_eq!(by("sftp_open_write").fingerprint.as_deref(), Some("SHA256:abc"));
        assert_eq!(by("forward_opened").detail, "forward to localhost:8080");
        assert_eq!(by("forward_opened").fields["port"], 8080);
        assert_eq!(by("listening").who(), "-");
        // Connection 1 again, in a new process: nobody has logged in on it.
        assert_eq!(rows.last().unwrap().who(), "-");
        assert_eq!(rows.last().unwrap().detail, "closed before login after 3ms");
    }

    fn event(reason: &str, time: &str, controller: &str, note: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("box.{reason}"), "namespace": "team-a"},
            "involvedObject": {"kind": "Deployment", "name": "box"},
            "reason": reason,
            "message": note,
            "eventTime": time,
            "reportingComponent": controller,
            "reportingInstance": "x",
            "action": "Create",
            "type": "Normal",
        }))
        .unwrap()
    }

    #[test]
    fn events_name_who_did_it_and_merge_in_time_order() {
        let created = event(
            "InstanceCreated",
            "2026-11-26T09:59:59.000001Z",
            events::REPORTING_CONTROLLER,
            "instance box created (image i) by system:serviceaccount:team-a:claworc-tenant",
        );
        let scaled = serde_json::from_value::<Event>(serde_json::json!({
            "metadata": {"name": "box.s", "namespace": "team-a"},
            "involvedObject": {"kind": "Deployment", "name": "box"},
            "reason": "ScalingReplicaSet",
            "message": "Scaled up replica set box-7c9d to 1 by someone",
            "lastTimestamp": "2026-11-26T10:00:00Z",
            "source": {"component": "deployment-controller"},
        }))
        .unwrap();
        let rotated = event(
            "InstanceKeysRotated",
            "2026-11-26T10:00:06.5Z",
            events::REPORTING_CONTROLLER,
            "keys of box rotated (client key SHA256:n) by alice",
        );
        let c = event_row(&created).unwrap();
        assert_eq!(
            (c.user.as_deref(), c.detail.as_str()),
            (Some("system:serviceaccount:team-a:claworc-tenant"), "instance box created (image i)")
        );
        assert_eq!(c.who(), "system:serviceaccount:team-a:claworc-tenant");
        let s = event_row(&scaled).unwrap();
        assert_eq!(
            (s.source.as_str(), s.user.as_deref()),
            ("deployment-controller", None),
            "only our notes name a user"
        );
        assert_eq!(s.detail, "Scaled up replica set box-7c9d to 1 by someone");

        let now: Timestamp = "2026-11-26T10:00:10Z".parse().unwrap();
        let all = merge(
            vec![sshd_rows(POD, &log()), [&created, &scaled, &rotated].into_iter().filter_map(event_row).collect()],
            None,
            now,
        );
        let order: Vec<&str> = all.iter().map(|r| r.event.as_str()).take(4).collect();
        assert_eq!(
            order,
            ["InstanceCreated", "listening", "ScalingReplicaSet", "connect"],
            "equal times (listening, ScalingReplicaSet) keep the order of the sources"
        );
        let i = all.iter().position(|r| r.event == "InstanceKeysRotated").unwrap();
        assert_eq!(all[i - 1].event, "sftp_open_write");
        assert_eq!(all[i + 1].event, "forward_opened");

        let recent = merge(vec![all.clone()], Some(Duration::from_secs(4)), now);
        assert_eq!(recent.first().unwrap().event, "sftp_open_write");
        assert_eq!(recent.len(), 6);

        let table = render(&all);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["TIME", "SOURCE", "EVENT", "WHO", "DETAIL"]);
        let first = lines.next().unwrap();
        assert!(first.starts_with("2026-11-26T09:59:59Z  claworc.io/kubectl-claworc  InstanceCreated"), "{first}");
        assert!(
            table.lines().any(|l| l.contains(&format!("pod/{POD}"))
                && l.contains("session_end")
                && l.contains("SHA256:abc (claworc c/ns/box)")
                && l.ends_with("exit 3 after 1.5s")),
            "{table}"
        );

        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(json[0]["time"], "2026-11-26T09:59:59.000001Z");
        assert_eq!(json[0]["user"], "system:serviceaccount:team-a:claworc-tenant");
        assert!(json[0].get("pod").is_none() && json[0].get("at").is_none(), "{}", json[0]);
    }
}
