//! What makes a Deployment a claworc instance: the one rule both programs use.
//!
//! A Deployment *opted in* when it carries `claworc.io/ssh: enabled`. It is an
//! *instance* (something the webhook must judge) when it opted in, or when its
//! pod template still carries any claworc marker: the `claworc-sshd` container,
//! a `claworc.io/*` label or annotation, or a `claworc-*` volume. An UPDATE is
//! about an instance when the old or the new object is one, so removing the
//! label never skips the checks. manifests/webhooks/*.yaml select the same
//! objects with CEL `matchConditions` (checked against this by the e2e tests).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::names::{INSTALLER, LABEL_SSH, PREFIX, SIDECAR, SSH_ENABLED, VOLUME_PREFIX};

/// Whether the Deployment carries the opt-in label `claworc.io/ssh: enabled`.
pub fn opted_in(d: &Deployment) -> bool {
    opts_in(d.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SSH)).map(String::as_str))
}

/// Whether this value of the label `claworc.io/ssh` (`None`: no such label)
/// opts the Deployment in: [`opted_in`] for a reader with no `Deployment` value.
pub fn opts_in(ssh_label: Option<&str>) -> bool {
    ssh_label == Some(SSH_ENABLED)
}

/// Whether the pod template carries anything claworc writes.
pub fn has_markers(template: &PodTemplateSpec) -> bool {
    let meta = template.metadata.as_ref();
    let keys = meta
        .and_then(|m| m.labels.as_ref())
        .into_iter()
        .flat_map(|l| l.keys())
        .chain(meta.and_then(|m| m.annotations.as_ref()).into_iter().flat_map(|a| a.keys()));
    if keys.into_iter().any(|k| k.starts_with(PREFIX)) {
        return true;
    }
    let Some(spec) = &template.spec else { return false };
    let names = spec.containers.iter().chain(spec.init_containers.iter().flatten()).map(|c| c.name.as_str());
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|c| c.name.as_str());
    names.chain(ephemeral).any(|n| n == SIDECAR || n == INSTALLER)
        || spec.volumes.iter().flatten().any(|v| v.name.starts_with(VOLUME_PREFIX))
}

/// Whether this Deployment is an instance: opted in, or marked by claworc.
///
/// The webhook reads an UPDATE's old object only as far as this looks (its
/// `wire::OldObject`: labels, the template's labels and annotations, container
/// and volume names): a marker read from anywhere else must be read there too,
/// and its unit test given a case for it.
pub fn is_instance(d: &Deployment) -> bool {
    opted_in(d)
        || d.metadata.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_SSH))
        || has_markers(&d.spec.template)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn with_label(key: &str, value: &str) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.labels = Some(BTreeMap::from([(key.to_string(), value.to_string())]));
        d
    }

    fn with_template(template: PodTemplateSpec) -> Deployment {
        let mut d = Deployment::default();
        d.spec.template = template;
        d
    }

    #[test]
    fn only_the_enabled_label_opts_in() {
        assert!(opted_in(&with_label("claworc.io/ssh", "enabled")));
        assert!(!opted_in(&with_label("claworc.io/ssh", "disabled")));
        assert!(!opted_in(&Deployment::default()));
    }

    #[test]
    fn any_claworc_marker_makes_an_instance() {
        assert!(is_instance(&with_label("claworc.io/ssh", "disabled")), "the label with any value");
        let meta = |labels: Option<&str>, annotations: Option<&str>| PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: labels.map(|k| BTreeMap::from([(k.to_string(), "x".to_string())])),
                annotations: annotations.map(|k| BTreeMap::from([(k.to_string(), "x".to_string())])),
                ..Default::default()
            }),
            spec: None,
        };
        assert!(is_instance(&with_template(meta(Some("claworc.io/instance"), None))));
        assert!(is_instance(&with_template(meta(None, Some("claworc.io/injected")))));
        let spec = |spec: PodSpec| PodTemplateSpec { metadata: None, spec: Some(spec) };
        let sidecar = Container { name: SIDECAR.into(), ..Default::default() };
        assert!(is_instance(&with_template(spec(PodSpec { containers: vec![sidecar.clone()], ..Default::default() }))));
        assert!(is_instance(&with_template(spec(PodSpec {
            init_containers: Some(vec![sidecar]),
            ..Default::default()
        }))));
        let installer = Container { name: INSTALLER.into(), ..Default::default() };
        assert!(is_instance(&with_template(spec(PodSpec {
            init_containers: Some(vec![installer]),
            ..Default::default()
        }))));
        let volume = Volume { name: "claworc-run".into(), ..Default::default() };
        assert!(is_instance(&with_template(spec(PodSpec { volumes: Some(vec![volume]), ..Default::default() }))));
    }

    #[test]
    fn a_plain_deployment_is_not_an_instance() {
        assert!(!is_instance(&with_label("app", "web")));
        assert!(!is_instance(&with_template(PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "claworc".into())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "claworc".into(), ..Default::default() }],
                volumes: Some(vec![Volume { name: "claworcdata".into(), ..Default::default() }]),
                ..Default::default()
            }),
        })));
    }
}
