//! Which pod: the instance's Deployment (ssh port, forward ports, host-key
//! fingerprint) and its newest Running, preferably Ready, pod.

use std::collections::BTreeMap;

use claworc_contract::Settings;
use claworc_contract::names::LABEL_INSTANCE;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::error::{Error, Result};

/// An instance as the SSH side needs it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub namespace: String,
    pub name: String,
    /// The pod to connect to.
    pub pod: String,
    pub settings: Settings,
}

impl Instance {
    /// `namespace/name`, for messages and the key store.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Finds the Deployment `name` and its newest Running (preferably Ready) pod.
pub async fn find_instance(client: &kube::Client, namespace: &str, name: &str) -> Result<Instance> {
    let settings = instance_settings(client, namespace, name).await?;
    let pods = instance_pods(client, namespace, name).await?;
    let pod = pick_pod(&pods).ok_or_else(|| {
        let phases: Vec<String> = pods
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.metadata.name.as_deref().unwrap_or("?"),
                    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
                )
            })
            .collect();
        Error::other(format!(
            "instance \"{name}\" in namespace \"{namespace}\" has no running pod{}; see `kubectl claworc status {name}`",
            if phases.is_empty() { String::new() } else { format!(" ({})", phases.join(", ")) }
        ))
    })?;
    Ok(Instance { namespace: namespace.into(), name: name.into(), pod, settings })
}

/// Every pod of the instance `name` (label `claworc.io/instance=<name>`), in any phase.
pub async fn instance_pods(client: &kube::Client, namespace: &str, name: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_INSTANCE}={name}")))
        .await
        .map_err(|e| Error::kube(e, format!("pods of instance \"{name}\" in namespace \"{namespace}\"")))?;
    Ok(list.items)
}

/// The parsed `claworc.io/*` annotations of the Deployment `name`.
pub async fn instance_settings(client: &kube::Client, namespace: &str, name: &str) -> Result<Settings> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = deployments
        .get(name)
        .await
        .map_err(|e| Error::kube(e, format!("instance (deployment) \"{name}\" in namespace \"{namespace}\"")))?;
    let annotations: BTreeMap<String, String> = d.metadata.annotations.unwrap_or_default();
    Settings::from_annotations(name, &annotations).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Error::invalid(format!("deployment \"{name}\": {}", text.join("; ")))
    })
}

/// The newest pod that is Running and not being deleted, Ready ones first.
pub fn pick_pod(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .max_by_key(|p| (is_ready(p), p.metadata.creation_timestamp.clone()))
        .and_then(|p| p.metadata.name.clone())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, created: i64, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z"),
            },
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .map(|mut p: Pod| {
            if deleting {
                p.metadata.deletion_timestamp = p.metadata.creation_timestamp.clone();
            }
            p
        })
        .unwrap()
    }

    #[test]
    fn picks_the_newest_running_ready_pod() {
        let pods = vec![
            pod("old-ready", "Running", true, 1, false),
            pod("new-ready", "Running", true, 5, false),
            pod("newest-not-ready", "Running", false, 9, false),
            pod("pending", "Pending", false, 10, false),
            pod("terminating", "Running", true, 11, true),
        ];
        assert_eq!(pick_pod(&pods).as_deref(), Some("new-ready"));
        assert_eq!(pick_pod(&pods[2..]).as_deref(), Some("newest-not-ready"));
        assert_eq!(pick_pod(&pods[3..]), None);
    }
}
