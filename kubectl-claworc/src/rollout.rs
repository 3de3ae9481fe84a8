//! Where an instance's rollout is: [`rollout_progress`] of a Deployment and
//! [`pod_summary`] of its pod (pure), and [`wait_rollout`], which polls both until
//! the rollout completes (`create --wait`).

use std::time::{Duration, Instant};

use claworc_contract::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// Waits until the Deployment's rollout is complete, printing progress on stderr.
pub async fn wait_rollout(ctx: &Ctx, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let d = api.get(name).await.map_err(|e| Error::kube(e, format!("deployment {name:?}")))?;
        let (done, mut progress) = rollout_progress(&d);
        if !done && let Some(pod) = pod_progress(ctx, name).await {
            progress = format!("{progress}; {pod}");
        }
        if progress != last {
            eprintln!("{name}: {progress}");
            last = progress;
        }
        if done {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::other(format!(
                "timed out after {} waiting for the rollout of {name} ({last}); the instance stays: see `kubectl claworc status {name}` and `kubectl describe deployment {name}`",
                crate::input::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Where the instance's pod is, when it is not running yet (best effort: `None`
/// when it cannot be read).
async fn pod_progress(ctx: &Ctx, name: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let selector = format!("{}={name}", names::LABEL_INSTANCE);
    let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
    let pod = list.items.into_iter().find(|p| p.metadata.deletion_timestamp.is_none())?;
    Some(pod_summary(&pod))
}

/// `pod NAME Pending: 0/2 nodes are available: …` from a pod's status.
pub fn pod_summary(pod: &Pod) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(status) = &pod.status else {
        return format!("pod {name} created");
    };
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let unscheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        return format!("pod {name} {phase}: {}", c.message.clone().unwrap_or_default());
    }
    let waiting =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()).find_map(
            |c| {
                let w = c.state.as_ref()?.waiting.as_ref()?;
                Some(format!(
                    "{} {}{}",
                    c.name,
                    w.reason.clone().unwrap_or_default(),
                    w.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                ))
            },
        );
    match waiting {
        Some(w) => format!("pod {name} {phase}: {w}"),
        None => format!("pod {name} {phase}"),
    }
}

/// Is the rollout complete, and a one-line description of where it is.
pub fn rollout_progress(d: &Deployment) -> (bool, String) {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.replicas.unwrap_or(1);
    let Some(s) = &d.status else {
        return (false, "waiting for the deployment controller".into());
    };
    if s.observed_generation.unwrap_or(0) < generation {
        return (false, "waiting for the deployment controller to observe the new generation".into());
    }
    for c in s.conditions.iter().flatten() {
        if c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True") {
            return (false, format!("replica failure: {}", c.message.as_deref().unwrap_or("")));
        }
        if c.type_.as_deref() == Some("Progressing") && c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return (false, format!("progress deadline exceeded: {}", c.message.as_deref().unwrap_or("")));
        }
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let replicas = s.replicas.unwrap_or(0);
    let done = updated >= want && available >= want && replicas <= want;
    (
        done,
        format!(
            "{updated}/{want} updated, {available}/{want} available{}",
            if done { ": rollout complete" } else { "" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    #[test]
    fn rollout_progress_needs_the_new_generation_and_availability() {
        let mut d = Deployment::default();
        d.metadata.generation = Some(2);
        d.spec.replicas = Some(1);
        assert!(!rollout_progress(&d).0);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            available_replicas: Some(1),
            updated_replicas: Some(1),
            replicas: Some(1),
            ..Default::default()
        });
        assert!(!rollout_progress(&d).0);
        d.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(rollout_progress(&d).0, "{}", rollout_progress(&d).1);
        d.status.as_mut().unwrap().available_replicas = Some(0);
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            message: Some("admission webhook denied".into()),
            ..Default::default()
        }]);
        let (done, msg) = rollout_progress(&d);
        assert!(!done && msg.contains("admission webhook denied"), "{msg}");
    }

    #[test]
    fn pod_summary_says_why_it_waits() {
        use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
        let mut p = Pod::default();
        p.metadata.name = Some("dev-1".into());
        assert_eq!(pod_summary(&p), "pod dev-1 created");
        p.status = Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                message: Some("pod has unbound immediate PersistentVolumeClaims".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(pod_summary(&p), "pod dev-1 Pending: pod has unbound immediate PersistentVolumeClaims");
    }
}
