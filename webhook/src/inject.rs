//! Injection: an opted-in Deployment → the Deployment claworc makes of it.
//!
//! [`inject`] is pure and idempotent: `inject(inject(d)) == inject(d)`. The
//! sidecar is rebuilt from the annotations every time, so an edit of it is undone.
//! Every field that kube-apiserver would default is written out, so that a
//! stored, defaulted object compares equal to a freshly injected one.
//! [`remove`] is the inverse for opting out: it takes every claworc marker away.

use std::collections::BTreeMap;

use claworc_contract::names::*;
use claworc_contract::{Settings, VERSION, known_hosts, sshd_config};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvVar, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What the webhook process was configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Image of the `claworc-sshd` sidecar.
    pub sidecar_image: String,
    /// The version written to `claworc.io/injected` (this program's; tests
    /// set another to play an adjacent release).
    pub version: String,
}

impl Default for Config {
    fn default() -> Self {
        Self { sidecar_image: SIDECAR_IMAGE.to_string(), version: VERSION.to_string() }
    }
}

/// The sidecar's command: write the rendered config to the in-memory run
/// directory, give an arbitrary UID a passwd entry (nss_wrapper, for sshd and,
/// through `SetEnv`, for its sessions) and exec sshd, logging to stderr.
pub fn sidecar_script() -> String {
    format!(
        r#"set -eu
umask 077
printf '%s\n' "${ENV_SSHD_CONFIG}" > {RUN_DIR}/sshd_config
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
  echo "{SSH_USER}:x:$(id -u):$(id -g):claworc:{RUN_DIR}:/bin/sh" > {RUN_DIR}/passwd
  export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD={RUN_DIR}/passwd NSS_WRAPPER_GROUP=/etc/group
  # sshd clears the environment of sessions: give them the same passwd entry.
  echo "SetEnv LD_PRELOAD=$LD_PRELOAD NSS_WRAPPER_PASSWD=$NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP=$NSS_WRAPPER_GROUP" >> {RUN_DIR}/sshd_config
fi
exec /usr/sbin/sshd -D -e -f {RUN_DIR}/sshd_config"#
    )
}

/// The Deployment's annotations parsed into settings.
pub fn settings(d: &Deployment) -> Result<Settings, Vec<claworc_contract::AnnotationError>> {
    let empty = BTreeMap::new();
    let annotations = d.metadata.annotations.as_ref().unwrap_or(&empty);
    Settings::from_annotations(d.metadata.name.as_deref().unwrap_or_default(), annotations)
}

/// Index of the container whose volumes the sidecar shares.
pub fn target_index(spec: &PodSpec, settings: &Settings) -> Option<usize> {
    match &settings.target_container {
        Some(name) => spec.containers.iter().position(|c| &c.name == name),
        None => (!spec.containers.is_empty()).then_some(0),
    }
}

/// Returns the injected Deployment.
pub fn inject(d: &Deployment, settings: &Settings, cfg: &Config) -> Deployment {
    let mut out = d.clone();
    out.spec.template = inject_template(d, settings, cfg);
    out
}

/// The injected pod template of `d`: injection changes nothing else.
pub fn inject_template(d: &Deployment, settings: &Settings, cfg: &Config) -> PodTemplateSpec {
    let mut template = d.spec.template.clone();
    let name = d.metadata.name.clone().unwrap_or_default();

    let meta = &mut template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(LABEL_INSTANCE.into(), name);
    labels.insert(LABEL_SSH.into(), SSH_ENABLED.into());
    labels.insert(LABEL_EGRESS.into(), settings.egress.clone());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(ANNOTATION_INJECTED.into(), cfg.version.clone());
    annotations.insert(ANNOTATION_KNOWN_HOSTS_DATA.into(), known_hosts::lines_for(&settings.known_hosts));

    let spec = template.spec.get_or_insert_with(Default::default);
    harden_pod(spec, settings);
    set_volumes(spec, settings);

    let init = spec.init_containers.get_or_insert_with(Vec::new);
    init.retain(|c| c.name != SIDECAR);
    spec.containers.retain(|c| c.name != SIDECAR);
    for c in spec.containers.iter_mut().chain(init.iter_mut()) {
        harden_container(c);
        set_known_hosts(c, settings);
    }
    let sidecar = sidecar(settings, cfg, shared_mounts(spec, settings));
    spec.init_containers.get_or_insert_with(Vec::new).insert(0, sidecar);
    template
}

/// The pod template of `d` with every claworc marker removed: the sidecar,
/// the `claworc-*` volumes and their mounts, the `claworc.io/*` labels and
/// annotations, `app.kubernetes.io/managed-by: claworc` and `GIT_SSH_COMMAND`.
/// What opting out leaves is the user's own Deployment; the security contexts
/// stay as they are (stricter than needed, and now the user's to change).
/// A template label that the Deployment's (immutable) selector matches on
/// stays, e.g. `claworc.io/instance` of a Deployment `kubectl claworc create`
/// made, unless it is one the NetworkPolicies select (`claworc.io/ssh`,
/// `claworc.io/egress`).
pub fn remove(d: &Deployment) -> PodTemplateSpec {
    let mut template = d.spec.template.clone();
    let selected = d.spec.selector.match_labels.as_ref();
    let kept = |k: &String, v: &String| {
        let selector_needs = selected.is_some_and(|s| s.get(k) == Some(v)) && k != LABEL_SSH && k != LABEL_EGRESS;
        selector_needs || !(k.starts_with(PREFIX) || k == LABEL_MANAGED_BY && v == MANAGED_BY)
    };
    if let Some(meta) = &mut template.metadata {
        if let Some(labels) = &mut meta.labels {
            labels.retain(|k, v| kept(k, v));
        }
        if let Some(annotations) = &mut meta.annotations {
            annotations.retain(|k, _| !k.starts_with(PREFIX));
        }
    }
    let Some(spec) = &mut template.spec else { return template };
    spec.containers.retain(|c| c.name != SIDECAR);
    if let Some(init) = &mut spec.init_containers {
        init.retain(|c| c.name != SIDECAR);
    }
    if let Some(volumes) = &mut spec.volumes {
        volumes.retain(|v| !v.name.starts_with(VOLUME_PREFIX));
    }
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        if let Some(mounts) = &mut c.volume_mounts {
            mounts.retain(|m| !m.name.starts_with(VOLUME_PREFIX));
        }
        if let Some(env) = &mut c.env {
            env.retain(|e| e.name != ENV_GIT_SSH_COMMAND);
        }
    }
    template
}

/// The volume mounts of the container whose volumes the sidecar shares.
pub fn shared_mounts<'a>(spec: &'a PodSpec, settings: &Settings) -> &'a [VolumeMount] {
    target_index(spec, settings).and_then(|i| spec.containers[i].volume_mounts.as_deref()).unwrap_or_default()
}

fn harden_pod(spec: &mut PodSpec, s: &Settings) {
    let sc = spec.security_context.get_or_insert_with(PodSecurityContext::default);
    sc.run_as_non_root = Some(true);
    sc.run_as_user.get_or_insert(s.run_as_user);
    sc.run_as_group.get_or_insert(s.run_as_group);
    sc.fs_group.get_or_insert(s.run_as_group);
    sc.fs_group_change_policy.get_or_insert_with(|| "OnRootMismatch".into());
    sc.seccomp_profile.get_or_insert_with(runtime_default);
}

fn harden_container(c: &mut Container) {
    let sc = c.security_context.get_or_insert_with(SecurityContext::default);
    sc.run_as_non_root = Some(true);
    sc.allow_privilege_escalation = Some(false);
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    let drop = caps.drop.get_or_insert_with(Vec::new);
    if !drop.iter().any(|c| c == "ALL") {
        drop.push("ALL".into());
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }
}

/// Names of the volumes injection adds.
pub const VOLUMES: [&str; 5] = [VOLUME_KEYS, VOLUME_RUN, VOLUME_NO_TOKEN, VOLUME_KNOWN_HOSTS, VOLUME_KNOWN_HOSTS_USER];

/// The volumes only the sidecar may mount (host key, run directory, the
/// empty directory hiding the ServiceAccount token).
pub const SIDECAR_VOLUMES: [&str; 3] = [VOLUME_KEYS, VOLUME_RUN, VOLUME_NO_TOKEN];

/// Paths the sidecar never takes from the workload's mounts: its own
/// directories, and where its binaries, libraries and configuration live.
/// A mount at or under one of these (or at `/`) is not shared with it.
pub const SIDECAR_OWN_PATHS: &[&str] = &[
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/run", "/var/run", "/proc", "/sys", "/dev",
];

/// A mount path with `.` and repeated or trailing slashes removed, or `None`
/// when it is relative or climbs with `..`.
pub fn clean_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out = String::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return None;
        }
        out.push('/');
        out.push_str(part);
    }
    Some(if out.is_empty() { "/".into() } else { out })
}

/// Whether `path` is `dir` or lies under it (both cleaned).
pub fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the sidecar may share the workload's mount at `path`.
fn shareable(path: &str) -> bool {
    clean_path(path).is_some_and(|p| p != "/" && !SIDECAR_OWN_PATHS.iter().any(|own| is_under(&p, own)))
}

/// Adds (or rewrites) the claworc volumes.
fn set_volumes(spec: &mut PodSpec, s: &Settings) {
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| !VOLUMES.contains(&v.name.as_str()));
    volumes.extend(claworc_volumes(s));
}

/// The canonical claworc volumes for these settings.
pub fn claworc_volumes(s: &Settings) -> Vec<Volume> {
    let mut volumes = Vec::with_capacity(4);
    volumes.push(Volume {
        name: VOLUME_KEYS.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(s.ssh_secret.clone()),
            // root:fsGroup 0440: sshd, running as the fsGroup member, can read;
            // OpenSSH accepts a host key that the sshd user does not own.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    });
    let in_memory = |name: &str, size: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity(size.into())),
            ..Default::default()
        }),
        ..Default::default()
    };
    volumes.push(in_memory(VOLUME_RUN, "1Mi"));
    volumes.push(in_memory(VOLUME_NO_TOKEN, "1Ki"));
    volumes.push(Volume {
        name: VOLUME_KNOWN_HOSTS.into(),
        downward_api: Some(DownwardAPIVolumeSource {
            default_mode: Some(0o644),
            default_user: None,
            items: Some(vec![DownwardAPIVolumeFile {
                path: "known_hosts".into(),
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: format!("metadata.annotations['{ANNOTATION_KNOWN_HOSTS_DATA}']"),
                }),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    if let Some(cm) = &s.known_hosts_configmap {
        volumes.push(Volume {
            name: VOLUME_KNOWN_HOSTS_USER.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                default_mode: Some(0o644),
                items: Some(vec![KeyToPath {
                    key: CONFIGMAP_KNOWN_HOSTS.into(),
                    path: "known_hosts".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    volumes
}

/// Mounts `known_hosts` (and the user's) and sets `GIT_SSH_COMMAND`.
fn set_known_hosts(c: &mut Container, s: &Settings) {
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| m.name != VOLUME_KNOWN_HOSTS && m.name != VOLUME_KNOWN_HOSTS_USER);
    mounts.extend(known_hosts_mounts(s));
    let env = c.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != ENV_GIT_SSH_COMMAND);
    env.push(EnvVar { name: ENV_GIT_SSH_COMMAND.into(), value: Some(git_ssh_command(s)), ..Default::default() });
}

fn known_hosts_mounts(s: &Settings) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        sub_path: Some("known_hosts".into()),
        read_only: Some(true),
        ..Default::default()
    };
    let mut mounts = vec![mount(VOLUME_KNOWN_HOSTS, KNOWN_HOSTS_PATH)];
    if s.known_hosts_configmap.is_some() {
        mounts.push(mount(VOLUME_KNOWN_HOSTS_USER, KNOWN_HOSTS2_PATH));
    }
    mounts
}

/// `GIT_SSH_COMMAND`: OpenSSH reads both global known-hosts files by default.
pub fn git_ssh_command(s: &Settings) -> String {
    format!("ssh -o StrictHostKeyChecking={} -o BatchMode=yes", s.strict_host_key_checking.as_str())
}

/// The canonical `claworc-sshd` sidecar for these settings.
pub fn sidecar(s: &Settings, cfg: &Config, shared: &[VolumeMount]) -> Container {
    let mut mounts = vec![
        VolumeMount {
            name: VOLUME_KEYS.into(),
            mount_path: KEYS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount { name: VOLUME_RUN.into(), mount_path: RUN_DIR.into(), ..Default::default() },
        // An SSH user must not act as the pod's ServiceAccount: the
        // ServiceAccount admission plugin adds no token where a mount exists.
        VolumeMount {
            name: VOLUME_NO_TOKEN.into(),
            mount_path: SERVICE_ACCOUNT_TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    mounts.extend(shared.iter().filter(|m| !m.name.starts_with(VOLUME_PREFIX) && shareable(&m.mount_path)).cloned());
    mounts.extend(known_hosts_mounts(s));
    let quantities = |cpu: &str, mem: &str| {
        BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(mem.into()))])
    };
    Container {
        name: SIDECAR.into(),
        image: Some(cfg.sidecar_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        restart_policy: Some("Always".into()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), sidecar_script()]),
        env: Some(vec![
            EnvVar {
                name: ENV_SSHD_CONFIG.into(),
                value: Some(sshd_config::render(s, sshd_config::Paths::POD)),
                ..Default::default()
            },
            EnvVar { name: ENV_GIT_SSH_COMMAND.into(), value: Some(git_ssh_command(s)), ..Default::default() },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(SSH_PORT_NAME.into()),
            container_port: s.ssh_port.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("10m", "16Mi")),
            limits: Some(quantities("500m", "128Mi")),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(s.run_as_user),
            run_as_group: Some(s.run_as_group),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        // Ready only when sshd answers SSH on the pod's loopback (a tcpSocket
        // probe would dial the pod IP, where sshd does not listen): ssh-keyscan
        // (openssh-client, a dependency of openssh-server) exits 0 only once it
        // has read a host key. So `Available` means "you can log in now".
        readiness_probe: Some(k8s_openapi::api::core::v1::Probe {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(
                    ["ssh-keyscan", "-T", "2", "-t", "ed25519", "-p", &s.ssh_port.to_string(), "127.0.0.1"]
                        .map(String::from)
                        .to_vec(),
                ),
            }),
            period_seconds: Some(3),
            timeout_seconds: Some(3),
            success_threshold: Some(1),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A plain opted-in Deployment, as a person would write it.
    pub(crate) fn deployment(extra_annotations: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "box", "namespace": "dev", "labels": {"claworc.io/ssh": "enabled"}, "annotations": extra_annotations},
            "spec": {
                "replicas": 1, "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app": "box"}},
                "template": {
                    "metadata": {"labels": {"app": "box"}},
                    "spec": {
                        "containers": [
                            {"name": "work", "image": "busybox:1.36", "volumeMounts": [{"name": "home", "mountPath": "/home/claworc"}]},
                            {"name": "gateway", "image": "nginx:1.27", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}
                        ],
                        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "box-home"}}, {"name": "cache", "emptyDir": {}}]
                    }
                }
            }
        }))
        .unwrap()
    }

    pub(crate) fn injected(d: &Deployment) -> Deployment {
        inject(d, &settings(d).unwrap(), &Config::default())
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().unwrap()
    }

    fn sidecar_of(d: &Deployment) -> &Container {
        &pod(d).init_containers.as_ref().unwrap()[0]
    }

    #[test]
    fn adds_a_native_sshd_sidecar_configured_from_the_annotations() {
        let d = injected(&deployment(json!({"claworc.io/ssh-port": "2022", "claworc.io/forward-ports": "5900"})));
        let c = sidecar_of(&d);
        assert_eq!(c.name, "claworc-sshd");
        assert_eq!(c.restart_policy.as_deref(), Some("Always"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 2022);
        let config = c.env.as_ref().unwrap().iter().find(|e| e.name == ENV_SSHD_CONFIG).unwrap().value.clone().unwrap();
        assert!(
            config.contains("\nPort 2022\n") && config.contains("PermitOpen localhost:5900 127.0.0.1:5900\n"),
            "{config}"
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.run_as_user, sc.run_as_group, sc.read_only_root_filesystem),
            (Some(1000), Some(1000), Some(true))
        );
        let mounts: Vec<(&str, &str)> =
            c.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str())).collect();
        assert!(mounts.contains(&("claworc-ssh-keys", "/etc/claworc/ssh")), "{mounts:?}");
        assert!(mounts.contains(&("home", "/home/claworc")), "shares the first container's volumes: {mounts:?}");
        assert!(!mounts.contains(&("cache", "/cache")), "{mounts:?}");
    }

    #[test]
    fn the_sidecar_is_ready_only_when_ssh_answers_on_its_port() {
        let d = injected(&deployment(json!({"claworc.io/ssh-port": "2022"})));
        let probe = sidecar_of(&d).readiness_probe.as_ref().unwrap();
        let cmd = probe.exec.as_ref().unwrap().command.as_ref().unwrap();
        assert_eq!(cmd.join(" "), "ssh-keyscan -T 2 -t ed25519 -p 2022 127.0.0.1");
        assert!(probe.tcp_socket.is_none() && probe.http_get.is_none(), "sshd listens on the pod's 127.0.0.1 only");
    }

    #[test]
    fn target_container_picks_the_volumes_to_share() {
        let d = injected(&deployment(json!({"claworc.io/target-container": "gateway"})));
        let mounts: Vec<&str> = sidecar_of(&d).volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
        assert!(mounts.contains(&"/cache") && !mounts.contains(&"/home/claworc"), "{mounts:?}");
    }

    #[test]
    fn every_container_meets_pod_security_restricted() {
        let d = injected(&deployment(json!({})));
        let p = pod(&d);
        let sc = p.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.run_as_non_root, sc.run_as_user, sc.run_as_group, sc.fs_group),
            (Some(true), Some(1000), Some(1000), Some(1000))
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        for c in p.containers.iter().chain(p.init_containers.iter().flatten()) {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]), "{}", c.name);
        }
    }

    #[test]
    fn known_hosts_and_git_ssh_command_reach_every_container() {
        let d = injected(&deployment(
            json!({"claworc.io/known-hosts": "github", "claworc.io/known-hosts-configmap": "extra-hosts"}),
        ));
        let p = pod(&d);
        for c in p.containers.iter().chain(p.init_containers.iter().flatten()) {
            let paths: Vec<&str> = c.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
            assert!(paths.contains(&KNOWN_HOSTS_PATH) && paths.contains(&KNOWN_HOSTS2_PATH), "{}: {paths:?}", c.name);
            let git = c.env.iter().flatten().find(|e| e.name == "GIT_SSH_COMMAND").unwrap();
            assert!(git.value.as_ref().unwrap().contains("StrictHostKeyChecking=yes"));
        }
        let data =
            &d.spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[ANNOTATION_KNOWN_HOSTS_DATA];
        assert!(data.starts_with("github.com ssh-ed25519 ") && !data.contains("gitlab"), "{data}");
        let cm = p.volumes.iter().flatten().find(|v| v.name == VOLUME_KNOWN_HOSTS_USER).unwrap();
        assert_eq!(cm.config_map.as_ref().unwrap().name, "extra-hosts");
    }

    #[test]
    fn writes_the_labels_and_the_injected_version() {
        let d = injected(&deployment(json!({"claworc.io/egress": "none"})));
        let meta = d.spec.template.metadata.as_ref().unwrap();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["claworc.io/instance"], "box");
        assert_eq!(labels["claworc.io/ssh"], "enabled");
        assert_eq!(labels["claworc.io/egress"], "none");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "claworc");
        assert_eq!(labels["app"], "box", "the user's labels stay");
        assert_eq!(meta.annotations.as_ref().unwrap()["claworc.io/injected"], VERSION);
    }

    #[test]
    fn injecting_twice_changes_nothing() {
        for annotations in
            [json!({}), json!({"claworc.io/target-container": "gateway", "claworc.io/known-hosts-configmap": "x"})]
        {
            let once = injected(&deployment(annotations));
            assert_eq!(injected(&once), once);
        }
    }

    #[test]
    fn an_edited_sidecar_is_rewritten() {
        let mut d = injected(&deployment(json!({})));
        let init = d.spec.template.spec.as_mut().unwrap().init_containers.as_mut().unwrap();
        init[0].image = Some("evil:latest".into());
        init[0].security_context.as_mut().unwrap().privileged = Some(true);
        let again = injected(&d);
        assert_eq!(sidecar_of(&again).image.as_deref(), Some(SIDECAR_IMAGE));
        assert_eq!(again, injected(&deployment(json!({}))));
    }
}
