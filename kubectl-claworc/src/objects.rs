//! The plain objects of an instance — exactly what a person could write by hand and
//! `kubectl apply`: the Secret with the keys, one PersistentVolumeClaim per
//! `--volume`, and an opted-in Deployment (label `claworc.io/ssh: enabled`, replicas
//! 1, strategy Recreate, the workload container). The webhook adds the sidecar.
//! Pure: no I/O, unit-tested.

use std::collections::BTreeMap;

use claworc_contract::annotations::{self as ann, DEFAULT_FORWARD_PORTS};
use claworc_contract::names;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, Secret, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::error::{Error, Result};
use crate::input::{is_quantity, validate_name};
use crate::keys::{self, PrivateKey, PublicKey};

/// Name of the workload container the plugin writes.
pub const WORKLOAD_CONTAINER: &str = "workload";

/// One `--volume NAME=PATH:SIZE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub path: String,
    pub size: String,
}

impl VolumeSpec {
    pub fn parse(s: &str) -> Result<Self> {
        let fix = "use --volume NAME=PATH:SIZE, e.g. --volume home=/home/agent:10Gi";
        let (name, rest) =
            s.split_once('=').ok_or_else(|| Error::invalid(format!("--volume {s:?}: missing '=': {fix}")))?;
        let (path, size) =
            rest.rsplit_once(':').ok_or_else(|| Error::invalid(format!("--volume {s:?}: missing ':SIZE': {fix}")))?;
        validate_name("--volume NAME", name)?;
        if !path.starts_with('/') || path.contains(':') || path.split('/').any(|c| c == "..") {
            return Err(Error::invalid(format!("--volume {s:?}: PATH must be an absolute path without '..': {fix}")));
        }
        if !is_quantity(size) {
            return Err(Error::invalid(format!(
                "--volume {s:?}: SIZE {size:?} is not a quantity like 512Mi or 10Gi: {fix}"
            )));
        }
        Ok(VolumeSpec { name: name.into(), path: path.into(), size: size.into() })
    }
}

/// Parses `--env K=V`.
pub fn parse_env(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').ok_or_else(|| Error::invalid(format!("--env {s:?}: use --env NAME=VALUE")))?;
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(Error::invalid(format!(
            "--env {k:?}: not a valid variable name: use letters, digits, '_', '-' and '.', not starting with a digit"
        )));
    }
    Ok((k.into(), v.into()))
}

/// What `create` makes, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: String,
    /// `None`: leave it to `kubectl apply -n`.
    pub namespace: Option<String>,
    pub image: String,
    /// Empty: the default (no annotation).
    pub forward_ports: Vec<u16>,
    pub volumes: Vec<VolumeSpec>,
    pub env: Vec<(String, String)>,
}

impl InstanceSpec {
    pub fn new(
        name: &str,
        namespace: Option<&str>,
        image: &str,
        forward_ports: &[u16],
        volumes: &[String],
        env: &[String],
    ) -> Result<Self> {
        validate_name("instance name", name)?;
        // The Secret `<name>-ssh` and PVCs `<name>-<volume>` must be valid names too.
        if name.len() > 63 - 4 {
            return Err(Error::invalid(format!("instance name {name:?} is too long: use at most 59 characters")));
        }
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(Error::invalid("--image: give an image reference such as ghcr.io/acme/agent:1.4"));
        }
        if forward_ports.contains(&0) {
            return Err(Error::invalid("--forward-ports: ports must be 1 to 65535, e.g. --forward-ports 3000,8080"));
        }
        if forward_ports.len() > 16 {
            return Err(Error::invalid("--forward-ports: at most 16 ports"));
        }
        let mut ports = Vec::new();
        for p in forward_ports {
            if !ports.contains(p) {
                ports.push(*p);
            }
        }
        let volumes = volumes.iter().map(|v| VolumeSpec::parse(v)).collect::<Result<Vec<_>>>()?;
        for (i, v) in volumes.iter().enumerate() {
            if volumes[..i].iter().any(|w| w.name == v.name) {
                return Err(Error::invalid(format!(
                    "--volume {}: the name is used twice: give each volume its own name",
                    v.name
                )));
            }
            if volumes[..i].iter().any(|w| w.path == v.path) {
                return Err(Error::invalid(format!("--volume {}: the path {} is used twice", v.name, v.path)));
            }
            if format!("{name}-{}", v.name).len() > 63 {
                return Err(Error::invalid(format!(
                    "--volume {}: the claim name {name}-{} is longer than 63 characters: use a shorter name",
                    v.name, v.name
                )));
            }
        }
        let env = env.iter().map(|e| parse_env(e)).collect::<Result<Vec<_>>>()?;
        if let Some(ns) = namespace {
            validate_name("--namespace", ns)?;
        }
        Ok(InstanceSpec {
            name: name.into(),
            namespace: namespace.map(Into::into),
            image: image.into(),
            forward_ports: ports,
            volumes,
            env,
        })
    }

    pub fn secret_name(&self) -> String {
        names::default_secret_name(&self.name)
    }

    pub fn claim_name(&self, volume: &str) -> String {
        claim_name(&self.name, volume)
    }
}

/// `<instance>-<volume>`.
pub fn claim_name(instance: &str, volume: &str) -> String {
    format!("{instance}-{volume}")
}

/// Labels on every object of an instance.
pub fn instance_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_INSTANCE.to_string(), name.to_string()),
        (names::LABEL_MANAGED_BY.to_string(), names::MANAGED_BY.to_string()),
    ])
}

/// The objects of one instance.
#[derive(Clone)]
pub struct Objects {
    pub secret: Secret,
    pub claims: Vec<PersistentVolumeClaim>,
    pub deployment: Deployment,
}

/// Leaves out the Secret's data: it holds the host private key.
impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("secret", &self.secret.metadata.name)
            .field("claims", &self.claims.len())
            .field("deployment", &self.deployment.metadata.name)
            .finish()
    }
}

fn meta(spec: &InstanceSpec, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: spec.namespace.clone(),
        labels: Some(instance_labels(&spec.name)),
        ..Default::default()
    }
}

/// The instance Secret: `authorized_keys` (the client public key), and the host key pair.
pub fn secret(spec: &InstanceSpec, client: &PublicKey, host: &PrivateKey) -> Result<Secret> {
    Ok(Secret {
        metadata: meta(spec, spec.secret_name()),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (names::SECRET_AUTHORIZED_KEYS.to_string(), keys::render_authorized_keys([client])),
            (names::SECRET_HOST_KEY.to_string(), keys::private_openssh(host)?),
            (names::SECRET_HOST_KEY_PUB.to_string(), format!("{}\n", keys::public_openssh(host.public_key()))),
        ])),
        ..Default::default()
    })
}

/// One ReadWriteOnce claim per volume.
pub fn claims(spec: &InstanceSpec) -> Vec<PersistentVolumeClaim> {
    spec.volumes
        .iter()
        .map(|v| PersistentVolumeClaim {
            metadata: meta(spec, spec.claim_name(&v.name)),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), Quantity(v.size.clone()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The opted-in Deployment (without the sidecar: the webhook adds it).
pub fn deployment(spec: &InstanceSpec, host_fingerprint: &str) -> Deployment {
    let mut labels = instance_labels(&spec.name);
    labels.insert(names::LABEL_SSH.into(), names::SSH_ENABLED.into());
    let mut annotations = BTreeMap::from([(ann::HOST_KEY_FINGERPRINT.to_string(), host_fingerprint.to_string())]);
    if !spec.forward_ports.is_empty() && spec.forward_ports != DEFAULT_FORWARD_PORTS {
        let ports: Vec<String> = spec.forward_ports.iter().map(u16::to_string).collect();
        annotations.insert(ann::FORWARD_PORTS.into(), ports.join(","));
    }
    let selector = BTreeMap::from([(names::LABEL_INSTANCE.to_string(), spec.name.clone())]);
    let container = Container {
        name: WORKLOAD_CONTAINER.into(),
        image: Some(spec.image.clone()),
        env: (!spec.env.is_empty()).then(|| {
            spec.env
                .iter()
                .map(|(k, v)| EnvVar { name: k.clone(), value: Some(v.clone()), ..Default::default() })
                .collect()
        }),
        volume_mounts: (!spec.volumes.is_empty()).then(|| {
            spec.volumes
                .iter()
                .map(|v| VolumeMount { name: v.name.clone(), mount_path: v.path.clone(), ..Default::default() })
                .collect()
        }),
        ..Default::default()
    };
    let volumes: Vec<Volume> = spec
        .volumes
        .iter()
        .map(|v| Volume {
            name: v.name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: spec.claim_name(&v.name),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    Deployment {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: spec.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), ..Default::default() }),
            selector: LabelSelector { match_labels: Some(selector.clone()), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(selector), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// All objects of the instance.
pub fn build(spec: &InstanceSpec, client: &PublicKey, host: &PrivateKey) -> Result<Objects> {
    Ok(Objects {
        secret: secret(spec, client, host)?,
        claims: claims(spec),
        deployment: deployment(spec, &keys::fingerprint(host.public_key())),
    })
}

impl Objects {
    /// As JSON values in apply order (Secret, claims, Deployment).
    pub fn values(&self) -> Vec<serde_json::Value> {
        let mut out = vec![serde_json::to_value(&self.secret).expect("secret serializes")];
        out.extend(self.claims.iter().map(|c| serde_json::to_value(c).expect("claim serializes")));
        out.push(serde_json::to_value(&self.deployment).expect("deployment serializes"));
        out
    }

    /// A multi-document YAML stream `kubectl apply -f -` accepts.
    pub fn to_yaml(&self) -> String {
        crate::output::yaml_stream(&self.values())
    }

    /// A `v1 List` JSON document `kubectl apply -f -` accepts.
    pub fn to_json(&self) -> String {
        crate::output::json_list(self.values())
    }
}

/// Refuses a Deployment that did not opt in to claworc (it is not an instance).
pub fn ensure_instance(d: &Deployment) -> Result<()> {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    if claworc_contract::instance::opted_in(d) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "deployment {name:?} is not a claworc instance (no label {}={}): use kubectl for it",
        names::LABEL_SSH,
        names::SSH_ENABLED
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstanceSpec {
        InstanceSpec::new(
            "dev",
            Some("team-a"),
            "ghcr.io/acme/agent:1.4",
            &[6080],
            &["home=/home/agent:10Gi".into()],
            &["LOG_LEVEL=debug".into(), "EMPTY=".into()],
        )
        .unwrap()
    }

    #[test]
    fn validates_input() {
        assert!(InstanceSpec::new("Dev", None, "i", &[], &[], &[]).is_err());
        assert!(InstanceSpec::new("dev", None, "", &[], &[], &[]).is_err());
        assert!(InstanceSpec::new("dev", None, "i", &[0], &[], &[]).is_err());
        for bad in ["home", "home=/x", "home=rel:1Gi", "home=/x:ten", "Home=/x:1Gi", "h=/a/../b:1Gi"] {
            let e = InstanceSpec::new("dev", None, "i", &[], &[bad.into()], &[]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("--volume"), "{e}");
        }
        assert!(InstanceSpec::new("dev", None, "i", &[], &["a=/x:1Gi".into(), "a=/y:1Gi".into()], &[]).is_err());
        assert!(InstanceSpec::new("dev", None, "i", &[], &[], &["1A=b".into()]).is_err());
        assert!(InstanceSpec::new("dev", None, "i", &[], &[], &["A".into()]).is_err());
        let s = InstanceSpec::new("dev", None, "i", &[1, 1, 2], &["a=/x:1.5Gi".into()], &["A=b=c".into()]).unwrap();
        assert_eq!(s.forward_ports, vec![1, 2]);
        assert_eq!(s.env, vec![("A".into(), "b=c".into())]);
        assert!(is_quantity("512Mi") && is_quantity("1") && !is_quantity("Gi") && !is_quantity("1.2.3Gi"));
    }

    #[test]
    fn builds_the_plain_objects() {
        let (client, host) = (keys::generate("c").unwrap(), keys::generate("h").unwrap());
        let o = build(&spec(), client.public_key(), &host).unwrap();
        let sd = o.secret.string_data.as_ref().unwrap();
        assert_eq!(o.secret.metadata.name.as_deref(), Some("dev-ssh"));
        assert_eq!(keys::authorized_keys(&sd[names::SECRET_AUTHORIZED_KEYS]).len(), 1);
        assert!(sd[names::SECRET_HOST_KEY].starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(sd[names::SECRET_HOST_KEY_PUB].starts_with("ssh-ed25519 "));

        assert_eq!(o.claims.len(), 1);
        assert_eq!(o.claims[0].metadata.name.as_deref(), Some("dev-home"));

        let d = &o.deployment;
        assert_eq!(d.metadata.labels.as_ref().unwrap()[names::LABEL_SSH], names::SSH_ENABLED);
        let a = d.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[ann::FORWARD_PORTS], "6080");
        assert_eq!(a[ann::HOST_KEY_FINGERPRINT], keys::fingerprint(host.public_key()));
        assert!(!a.contains_key(ann::SSH_SECRET), "only non-defaults");
        // The contract parses what we write, with our values.
        let settings = claworc_contract::Settings::from_annotations("dev", a).unwrap();
        assert_eq!(settings.forward_ports, vec![6080]);
        assert_eq!(settings.ssh_secret, "dev-ssh");
        let s = &d.spec;
        assert_eq!(s.replicas, Some(1));
        assert_eq!(s.strategy.as_ref().unwrap().type_.as_deref(), Some("Recreate"));
        let pod = s.template.spec.as_ref().unwrap();
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path, "/home/agent");
        assert_eq!(pod.volumes.as_ref().unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "dev-home");
        assert_eq!(pod.containers[0].env.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn default_ports_are_not_written() {
        let s = InstanceSpec::new("dev", None, "i", &[3000, 8080], &[], &[]).unwrap();
        let host = keys::generate("h").unwrap();
        let d = deployment(&s, &keys::fingerprint(host.public_key()));
        assert!(!d.metadata.annotations.unwrap().contains_key(ann::FORWARD_PORTS));
        assert!(d.metadata.namespace.is_none());
    }

    #[test]
    fn yaml_is_a_stream_of_typed_documents() {
        let (client, host) = (keys::generate("c").unwrap(), keys::generate("h").unwrap());
        let o = build(&spec(), client.public_key(), &host).unwrap();
        let y = o.to_yaml();
        let docs: Vec<serde_json::Value> =
            y.split("\n---\n").map(|d| serde_yaml_ng::from_str(d.trim_start_matches("---\n")).unwrap()).collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["Secret", "PersistentVolumeClaim", "Deployment"]);
        assert_eq!(docs[2]["apiVersion"], "apps/v1");
        let j: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(j["kind"], "List");
        assert_eq!(j["items"].as_array().unwrap().len(), 3);
    }
}
