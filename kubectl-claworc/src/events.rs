//! The Kubernetes Events (events.k8s.io/v1) that record what the plugin did: the
//! lifecycle of an instance (`create`, `rotate-keys`, `delete`, about its
//! Deployment) and of a tenant (about its Namespace). One writer for both: the note
//! ends with ` by USER`, the caller's name as the API server knows it
//! (SelfSubjectReview, as `kubectl auth whoami` shows), and the same sentence goes
//! to stderr. A failure to record is a warning: what it records has been done.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::context::Ctx;
use crate::error::Error;

/// `reportingController` of the Events the plugin writes.
pub const REPORTING_CONTROLLER: &str = "claworc.io/kubectl-claworc";
/// `reportingInstance` of the Events the plugin writes.
pub const REPORTING_INSTANCE: &str = "kubectl-claworc";
/// Between what was done and who did it, in every note.
const BY: &str = " by ";
/// The API's limit of a note, in bytes.
const NOTE_MAX: usize = 1024;

/// What an Event records: the object it is about, its `reason` (what `kubectl get
/// events` shows) and `action`, and labels for the Event itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub regarding: ObjectReference,
    pub reason: &'static str,
    pub action: &'static str,
    pub labels: BTreeMap<String, String>,
}

/// What was done to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Created,
    KeysRotated,
    Deleted,
}

impl Lifecycle {
    /// The Event's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Lifecycle::Created => "InstanceCreated",
            Lifecycle::KeysRotated => "InstanceKeysRotated",
            Lifecycle::Deleted => "InstanceDeleted",
        }
    }

    /// The Event's `action`: the command.
    pub fn action(self) -> &'static str {
        match self {
            Lifecycle::Created => "Create",
            Lifecycle::KeysRotated => "RotateKeys",
            Lifecycle::Deleted => "Delete",
        }
    }
}

/// The Event about the instance `name`'s Deployment (its `uid` when known, so a
/// later Deployment of the same name is told apart).
pub fn instance_record(namespace: &str, name: &str, uid: Option<String>, what: Lifecycle) -> Record {
    Record {
        regarding: ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            uid,
            ..Default::default()
        },
        reason: what.reason(),
        action: what.action(),
        labels: BTreeMap::from([
            (claworc_contract::names::LABEL_INSTANCE.to_string(), name.to_string()),
            (claworc_contract::names::LABEL_MANAGED_BY.to_string(), claworc_contract::names::MANAGED_BY.to_string()),
        ]),
    }
}

/// `SUMMARY by WHO`.
pub fn note(summary: &str, who: &str) -> String {
    format!("{summary}{BY}{who}")
}

/// Who a note written by [`note`] names (the text after the last ` by `).
pub fn actor(note: &str) -> Option<&str> {
    note.rsplit_once(BY).map(|(_, who)| who.trim()).filter(|w| !w.is_empty())
}

/// The Event in `in_namespace` (pure): a unique name the way the API's own
/// recorders make them (`<object>.<hex time>`), the note cut to the API's limit.
pub fn event(in_namespace: &str, record: &Record, note: &str, now: Timestamp) -> Event {
    let object = record.regarding.name.clone().unwrap_or_else(|| "claworc".into());
    let mut cut = NOTE_MAX.min(note.len());
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: Some(in_namespace.to_string()),
            labels: Some(record.labels.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(record.action.into()),
        reason: Some(record.reason.into()),
        note: Some(note[..cut].to_string()),
        type_: Some("Normal".into()),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(REPORTING_INSTANCE.into()),
        regarding: Some(record.regarding.clone()),
        ..Default::default()
    }
}

/// Who we are to the API server (SelfSubjectReview).
pub async fn whoami(ctx: &Ctx) -> String {
    let api: Api<SelfSubjectReview> = Api::all(ctx.client.clone());
    api.create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()
        .and_then(|r| r.status?.user_info?.username)
        .unwrap_or_else(|| "an unknown user".into())
}

/// Records `summary` (and who did it) as an Event in `in_namespace` and says so on
/// stderr. Never fails: a refusal is a warning.
pub async fn record(ctx: &Ctx, in_namespace: &str, record: &Record, summary: &str) {
    let note = note(summary, &whoami(ctx).await);
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), in_namespace);
    let event = event(in_namespace, record, &note, Timestamp::now());
    match events.create(&PostParams::default(), &event).await {
        Ok(_) => eprintln!("event {} in namespace {in_namespace}: {note}", record.reason),
        Err(e) => eprintln!(
            "warning: could not record event {} in namespace {in_namespace} ({}): {note}",
            record.reason,
            Error::kube(e, "event").one_line()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_event_is_about_its_deployment() {
        let now: Timestamp = "2026-11-26T18:00:00Z".parse().unwrap();
        let r = instance_record("team-a", "dev", Some("u-1".into()), Lifecycle::KeysRotated);
        let e = event("team-a", &r, &note("keys of dev rotated", "system:serviceaccount:team-a:claworc-tenant"), now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("dev."));
        assert_eq!((e.reason.as_deref(), e.action.as_deref()), (Some("InstanceKeysRotated"), Some("RotateKeys")));
        assert_eq!(e.reporting_controller.as_deref(), Some(REPORTING_CONTROLLER));
        let regarding = e.regarding.unwrap();
        assert_eq!((regarding.kind.as_deref(), regarding.name.as_deref()), (Some("Deployment"), Some("dev")));
        assert_eq!(regarding.uid.as_deref(), Some("u-1"));
        assert_eq!(e.event_time.unwrap().0, now);
        assert_eq!(actor(e.note.as_deref().unwrap()), Some("system:serviceaccount:team-a:claworc-tenant"));
    }

    #[test]
    fn the_note_is_cut_on_a_character() {
        let now: Timestamp = "2026-11-26T18:00:00Z".parse().unwrap();
        let r = instance_record("a", "dev", None, Lifecycle::Created);
        let e = event("a", &r, &"é".repeat(600), now);
        let n = e.note.unwrap();
        assert!(n.len() <= NOTE_MAX && n.len() >= NOTE_MAX - 1, "{}", n.len());
        assert_eq!(actor("instance dev deleted by bob"), Some("bob"));
        assert_eq!(actor("a note of someone else"), None);
    }
}
