//! Injection: an opted-in Deployment → the Deployment claworc makes of it.
//!
//! [`inject`] is pure and idempotent: `inject(inject(d)) == inject(d)`. The
//! sidecar is rebuilt from the annotations every time, so an edit of it is undone.
//! Every field that kube-apiserver would default is written out, so that a
//! stored, defaulted object compares equal to a freshly injected one.
//! [`remove`] is the inverse for opting out: it takes every claworc marker away.
//!
//! The SSH server runs in the workload's own environment: the sidecar
//! `claworc-sshd` runs the **target container's image** with its volume
//! mounts, working directory and environment, and the static `claworc-sshd`
//! binary, which the init container `claworc-sshd-install` copies from the
//! claworc sidecar image (that binary and nothing else) into an emptyDir first.

use std::collections::BTreeMap;

use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::names::*;
use claworc_contract::{Settings, VERSION, known_hosts};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction, KeyToPath, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What the webhook process was configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Image holding the static `claworc-sshd` binary (the delivery init container's).
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

/// The Deployment's annotations parsed into settings.
pub fn settings(d: &Deployment) -> Result<Settings, Vec<claworc_contract::AnnotationError>> {
    let empty = BTreeMap::new();
    let annotations = d.metadata.annotations.as_ref().unwrap_or(&empty);
    Settings::from_annotations(d.metadata.name.as_deref().unwrap_or_default(), annotations)
}

/// Index of the container whose image, volumes and environment the sidecar shares.
pub fn target_index(spec: &PodSpec, settings: &Settings) -> Option<usize> {
    target_index_of(spec.containers.iter().map(|c| c.name.as_str()), settings)
}

/// [`target_index`] among containers with these names.
pub fn target_index_of<'n>(mut names: impl ExactSizeIterator<Item = &'n str>, settings: &Settings) -> Option<usize> {
    match &settings.target_container {
        Some(name) => names.position(|n| n == name),
        None => (names.len() > 0).then_some(0),
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
    let t = &d.spec.template;
    let template = PodTemplateSpec { metadata: t.metadata.clone(), spec: t.spec.as_ref().map(without_injected) };
    inject_into(template, d.metadata.name.as_deref(), settings, cfg)
}

/// [`inject_template`] of a Deployment named `name` whose pod template is
/// `template`, taken rather than copied (mutation no longer needs the original).
pub fn inject_into(
    mut template: PodTemplateSpec,
    name: Option<&str>,
    settings: &Settings,
    cfg: &Config,
) -> PodTemplateSpec {
    let meta = template.metadata.get_or_insert_with(Default::default);
    mark_template(
        meta.labels.get_or_insert_with(Default::default),
        meta.annotations.get_or_insert_with(Default::default),
        name,
        settings,
        cfg,
    );
    inject_pod(template.spec.get_or_insert_with(Default::default), settings, cfg);
    template
}

/// The template's labels and annotations as injection leaves them.
pub fn mark_template(
    labels: &mut BTreeMap<String, String>,
    annotations: &mut BTreeMap<String, String>,
    name: Option<&str>,
    settings: &Settings,
    cfg: &Config,
) {
    for (key, value) in template_labels(name, settings) {
        labels.insert(key.into(), value.into());
    }
    let known_hosts_data = known_hosts::lines_for(&settings.known_hosts);
    for (key, value) in template_annotations(cfg, &known_hosts_data) {
        annotations.insert(key.into(), value.into());
    }
}

/// The labels injection sets on the pod template of the Deployment `name`.
pub fn template_labels<'a>(name: Option<&'a str>, settings: &'a Settings) -> [(&'static str, &'a str); 4] {
    [
        (LABEL_INSTANCE, name.unwrap_or_default()),
        (LABEL_SSH, SSH_ENABLED),
        (LABEL_EGRESS, &settings.egress),
        (LABEL_MANAGED_BY, MANAGED_BY),
    ]
}

/// The annotations injection sets on the pod template, given the
/// `known_hosts` lines of the settings' hosts ([`known_hosts::lines_for`]).
pub fn template_annotations<'a>(cfg: &'a Config, known_hosts_data: &'a str) -> [(&'static str, &'a str); 2] {
    [(ANNOTATION_INJECTED, &cfg.version), (ANNOTATION_KNOWN_HOSTS_DATA, known_hosts_data)]
}

/// Injects into a pod spec: the hardening, the claworc volumes, `known_hosts`
/// and `GIT_SSH_COMMAND` in every container, and the installer and sidecar
/// (rebuilt) first among the init containers. [`crate::partial`] writes the
/// same from its model of the template.
fn inject_pod(spec: &mut PodSpec, settings: &Settings, cfg: &Config) {
    harden_pod(&mut spec.security_context, (settings.run_as_user, settings.run_as_group));
    set_volumes(&mut spec.volumes, settings);

    // The injected init containers are rebuilt below.
    let mut user_init = spec.init_containers.take().unwrap_or_default();
    user_init.retain(|c| !is_claworc_container(&c.name));
    spec.containers.retain(|c| !is_claworc_container(&c.name));
    for c in spec.containers.iter_mut().chain(user_init.iter_mut()) {
        harden_container(&mut c.security_context);
        set_known_hosts(c, settings);
    }
    // The target is read in place (a Container is over 2 KiB, and cloning it
    // copies every string it holds): only the volumes and init containers change below.
    let no_target;
    let target = match target_index(spec, settings) {
        Some(i) => &spec.containers[i],
        None => {
            no_target = Container::default();
            &no_target
        }
    };
    let home = home(target);
    set_home_volume(&mut spec.volumes, &home);
    let ids = session_ids(spec.security_context.as_ref(), target.security_context.as_ref(), settings);
    let mut init = Vec::with_capacity(user_init.len() + 2);
    init.push(installer(cfg, ids));
    init.push(sidecar(settings, target, &home, ids));
    init.append(&mut user_init);
    spec.init_containers = Some(init);
}

/// A copy of `spec` without the init containers injection makes (it rebuilds
/// them): on an injected template they are most of what a clone would copy.
/// Every other field is copied; the struct literal lists them all, so a field
/// added to `PodSpec` does not compile until it is copied here too.
fn without_injected(spec: &PodSpec) -> PodSpec {
    macro_rules! copy_but_init_containers {
        ($($field:ident),* $(,)?) => {
            PodSpec {
                init_containers: spec
                    .init_containers
                    .as_ref()
                    .map(|init| init.iter().filter(|c| !is_claworc_container(&c.name)).cloned().collect()),
                $($field: spec.$field.clone(),)*
            }
        };
    }
    copy_but_init_containers!(
        active_deadline_seconds,
        affinity,
        automount_service_account_token,
        containers,
        dns_config,
        dns_policy,
        enable_service_links,
        ephemeral_containers,
        eviction_responders,
        host_aliases,
        host_ipc,
        host_network,
        host_pid,
        host_users,
        hostname,
        hostname_override,
        image_pull_secrets,
        node_name,
        node_selector,
        os,
        overhead,
        preemption_policy,
        priority,
        priority_class_name,
        readiness_gates,
        resource_claims,
        resources,
        restart_policy,
        runtime_class_name,
        scheduler_name,
        scheduling_gates,
        scheduling_group,
        security_context,
        service_account,
        service_account_name,
        set_hostname_as_fqdn,
        share_process_namespace,
        subdomain,
        termination_grace_period_seconds,
        tolerations,
        topology_spread_constraints,
        volumes,
    )
}

/// The pod template of `d` with every claworc marker removed: the sidecar and its installer,
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
    spec.containers.retain(|c| !is_claworc_container(&c.name));
    if let Some(init) = &mut spec.init_containers {
        init.retain(|c| !is_claworc_container(&c.name));
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

/// Whether `name` is one of the containers claworc injects.
pub fn is_claworc_container(name: &str) -> bool {
    name == SIDECAR || name == INSTALLER
}

/// The pod's security context as injection leaves it: non-root, the
/// settings' UID and GID (`run_as`) unless set, seccomp `RuntimeDefault` unless set.
pub fn harden_pod(sc: &mut Option<PodSecurityContext>, (uid, gid): (i64, i64)) {
    let sc = sc.get_or_insert_with(PodSecurityContext::default);
    sc.run_as_non_root = Some(true);
    sc.run_as_user.get_or_insert(uid);
    sc.run_as_group.get_or_insert(gid);
    sc.fs_group.get_or_insert(gid);
    sc.fs_group_change_policy.get_or_insert_with(|| "OnRootMismatch".into());
    sc.seccomp_profile.get_or_insert_with(runtime_default);
}

/// A workload container's security context as injection leaves it: non-root,
/// no privilege escalation, every capability dropped.
pub fn harden_container(sc: &mut Option<SecurityContext>) {
    let sc = sc.get_or_insert_with(SecurityContext::default);
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

/// Names of the volumes injection adds (or may add), so re-injection replaces them.
pub const VOLUMES: [&str; 6] =
    [VOLUME_KEYS, VOLUME_RUN, VOLUME_NO_TOKEN, VOLUME_HOME, VOLUME_KNOWN_HOSTS, VOLUME_KNOWN_HOSTS_USER];

/// The volumes only the sidecar may mount (host key, the delivered binary, the
/// empty directory hiding the ServiceAccount token, the SSH user's own home).
pub const SIDECAR_VOLUMES: [&str; 4] = [VOLUME_KEYS, VOLUME_RUN, VOLUME_NO_TOKEN, VOLUME_HOME];

/// The sidecar's own mount paths that no shared mount may contain, cover or
/// lie in: the keys, the delivered binary, the no-token directory.
pub const SIDECAR_OWN_PATHS: [&str; 3] = [KEYS_DIR, RUN_DIR, SERVICE_ACCOUNT_TOKEN_DIR];

/// Kernel filesystems the runtime mounts; no volume is shared there.
const KERNEL_PATHS: [&str; 3] = ["/proc", "/sys", "/dev"];

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

/// Whether the sidecar may share the target's mount at `path`: not `/`, not in a
/// kernel filesystem, and neither at, under nor above one of the sidecar's own
/// paths (a volume at `/etc` or `/run` would hold the directories its keys and
/// binary are mounted on, which the workload could replace with symlinks).
pub fn shareable(path: &str) -> bool {
    clean_path(path).is_some_and(|p| {
        p != "/"
            && !KERNEL_PATHS.iter().any(|k| is_under(&p, k))
            && !SIDECAR_OWN_PATHS.iter().any(|own| is_under(&p, own) || is_under(own, &p))
    })
}

/// The target's mounts the sidecar shares (claworc's own are added separately).
pub fn shared_mounts(target: &Container) -> impl Iterator<Item = &VolumeMount> {
    target.volume_mounts.iter().flatten().filter(|m| is_shared(&m.name, &m.mount_path))
}

/// Whether the sidecar shares the target's mount of volume `name` at `path`.
pub fn is_shared(name: &str, path: &str) -> bool {
    !name.starts_with(VOLUME_PREFIX) && shareable(path)
}

/// Where SSH sessions live: `$HOME`, and whether it needs a volume of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// In one of the target's shared volumes: it persists with the instance.
    InVolume(String),
    /// [`HOME_DIR`] on the `claworc-home` emptyDir (lost with the pod).
    EmptyDir,
}

impl Home {
    pub fn path(&self) -> &str {
        match self {
            Home::InVolume(p) => p,
            Home::EmptyDir => HOME_DIR,
        }
    }
}

/// The instance's home: the target's `HOME` when a shared volume holds it, else
/// the mount of a volume named `home` (`kubectl claworc create --volume
/// home=PATH:SIZE`), else [`HOME_DIR`] when a shared volume holds it, else an
/// emptyDir at [`HOME_DIR`].
pub fn home(target: &Container) -> Home {
    let env_home = target.env.iter().flatten().find(|e| e.name == "HOME" && e.value_from.is_none());
    let shared: Vec<SharedMount> = shared_mounts(target)
        .map(|m| SharedMount { name: &m.name, path: &m.mount_path, sub_path: m.sub_path.is_some() })
        .collect();
    home_of(env_home.and_then(|e| e.value.as_deref()), &shared)
}

/// A mount of the target the sidecar shares, as [`home_of`] reads it.
pub struct SharedMount<'a> {
    pub name: &'a str,
    pub path: &'a str,
    /// Whether it mounts a `subPath`.
    pub sub_path: bool,
}

/// [`home`], from the target's first `HOME` given as a value (if any) and the
/// mounts the sidecar shares.
pub fn home_of(env_home: Option<&str>, shared: &[SharedMount]) -> Home {
    let paths: Vec<String> = shared.iter().filter_map(|m| clean_path(m.path)).collect();
    let in_volume = |p: &str| paths.iter().any(|m| is_under(p, m));
    if let Some(h) = env_home.and_then(clean_path).filter(|h| in_volume(h)) {
        return Home::InVolume(h);
    }
    if let Some(m) = shared.iter().find(|m| m.name == HOME_VOLUME && !m.sub_path) {
        return Home::InVolume(clean_path(m.path).unwrap_or_default());
    }
    if in_volume(HOME_DIR) { Home::InVolume(HOME_DIR.into()) } else { Home::EmptyDir }
}

/// The `claworc-home` volume exists exactly when the home needs it.
fn set_home_volume(volumes: &mut Option<Vec<Volume>>, home: &Home) {
    let volumes = volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| v.name != VOLUME_HOME);
    if *home == Home::EmptyDir {
        volumes.push(home_volume());
    }
}

/// The `claworc-home` emptyDir, for [`Home::EmptyDir`].
pub fn home_volume() -> Volume {
    empty_dir(VOLUME_HOME, None, HOME_SIZE)
}

/// Size limit of the emptyDir home: room for a clone, a build, caches.
pub const HOME_SIZE: &str = "2Gi";
/// Size limit of the emptyDir the binary is delivered into (it is about 6 MiB).
pub const RUN_SIZE: &str = "64Mi";

fn empty_dir(name: &str, medium: Option<&str>, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(Into::into),
            size_limit: Some(Quantity(size.into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The UID and GID sessions run as: the target container's (given its
/// security context), else the pod's (which [`harden_pod`] always sets), so
/// files are shared with the workload.
pub fn session_ids(pod: Option<&PodSecurityContext>, container: Option<&SecurityContext>, s: &Settings) -> (i64, i64) {
    let uid = container.and_then(|c| c.run_as_user).or(pod.and_then(|p| p.run_as_user)).unwrap_or(s.run_as_user);
    let gid = container.and_then(|c| c.run_as_group).or(pod.and_then(|p| p.run_as_group)).unwrap_or(s.run_as_group);
    (uid, gid)
}

/// Adds (or rewrites) the claworc volumes ([`set_home_volume`] adds the home).
fn set_volumes(volumes: &mut Option<Vec<Volume>>, s: &Settings) {
    let volumes = volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| !VOLUMES.contains(&v.name.as_str()));
    volumes.extend(claworc_volumes(s));
}

/// The canonical claworc volumes for these settings.
pub fn claworc_volumes(s: &Settings) -> Vec<Volume> {
    let mut volumes = vec![keys_volume(&s.ssh_secret)];
    volumes.extend(claworc_volumes_fixed(s.known_hosts_configmap.as_deref()));
    volumes
}

/// The instance's keys: its Secret.
pub fn keys_volume(secret: &str) -> Volume {
    Volume {
        name: VOLUME_KEYS.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            // root:fsGroup 0440: claworc-sshd, running as a fsGroup member, can read.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The claworc volumes after [`keys_volume`]: they depend only on the user's
/// `known_hosts` ConfigMap (the same for most instances).
pub fn claworc_volumes_fixed(known_hosts_configmap: Option<&str>) -> Vec<Volume> {
    let mut volumes = Vec::with_capacity(4);
    volumes.push(empty_dir(VOLUME_RUN, None, RUN_SIZE));
    volumes.push(empty_dir(VOLUME_NO_TOKEN, Some("Memory"), "1Ki"));
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
    if let Some(cm) = known_hosts_configmap {
        volumes.push(Volume {
            name: VOLUME_KNOWN_HOSTS_USER.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.into(),
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
pub fn set_known_hosts(c: &mut Container, s: &Settings) {
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| m.name != VOLUME_KNOWN_HOSTS && m.name != VOLUME_KNOWN_HOSTS_USER);
    mounts.extend(known_hosts_mounts(s));
    let env = c.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != ENV_GIT_SSH_COMMAND);
    env.push(EnvVar { name: ENV_GIT_SSH_COMMAND.into(), value: Some(git_ssh_command(s)), ..Default::default() });
}

pub fn known_hosts_mounts(s: &Settings) -> Vec<VolumeMount> {
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

/// Variables claworc sets in the sidecar: the target's values are replaced.
pub const SIDECAR_ENV: [&str; 3] = [ENV_SSHD_CONFIG, ENV_GIT_SSH_COMMAND, "HOME"];

/// The security context of both injected containers: the session UID/GID,
/// nothing writable in the image, no capabilities, no privilege gain.
fn locked_down((uid, gid): (i64, i64)) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let quantities = |(cpu, mem): (&str, &str)| {
        BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(mem.into()))])
    };
    ResourceRequirements {
        requests: Some(quantities(requests)),
        limits: Some(quantities(limits)),
        ..Default::default()
    }
}

/// The delivery init container: the claworc sidecar image (the static binary
/// and nothing else) copies `claworc-sshd` into the `claworc-run` emptyDir.
pub fn installer(cfg: &Config, ids: (i64, i64)) -> Container {
    Container {
        name: INSTALLER.into(),
        image: Some(cfg.sidecar_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![IMAGE_BINARY.into(), "install".into(), SSHD_BINARY.into()]),
        resources: Some(resources(("10m", "16Mi"), ("200m", "64Mi"))),
        security_context: Some(locked_down(ids)),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME_RUN.into(),
            mount_path: RUN_DIR.into(),
            ..Default::default()
        }]),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    }
}

/// The canonical `claworc-sshd` sidecar: the delivered binary, run in the
/// `target` container's image, working directory and environment, with its
/// volume mounts (those [`shareable`]) and claworc's own. It is the fields
/// drawn from the workload ([`sidecar_from_workload`]) on the fields that
/// depend only on the SSH port and the session IDs ([`sidecar_fixed`]); the
/// two set no field in common.
pub fn sidecar(s: &Settings, target: &Container, home: &Home, ids: (i64, i64)) -> Container {
    let from_workload = sidecar_from_workload(s, target, home);
    Container {
        image: from_workload.image,
        image_pull_policy: Some(from_workload.image_pull_policy),
        working_dir: from_workload.working_dir,
        env: Some(from_workload.env),
        env_from: from_workload.env_from,
        volume_mounts: Some(from_workload.volume_mounts),
        ..sidecar_fixed(s.ssh_port, ids)
    }
}

/// The sidecar's fields drawn from the target container (and the settings),
/// serialized as those of a `Container`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarFromWorkload {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub image_pull_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,
    pub volume_mounts: Vec<VolumeMount>,
}

/// The sidecar's image, pull policy, working directory, environment and mounts.
pub fn sidecar_from_workload(s: &Settings, target: &Container, home: &Home) -> SidecarFromWorkload {
    let mut mounts = sidecar_own_mounts();
    mounts.extend(shared_mounts(target).cloned());
    if *home == Home::EmptyDir {
        mounts.push(home_mount());
    }
    mounts.extend(known_hosts_mounts(s));
    let mut env: Vec<EnvVar> =
        target.env.iter().flatten().filter(|e| !SIDECAR_ENV.contains(&e.name.as_str())).cloned().collect();
    env.extend(sidecar_settings_env(s));
    env.push(EnvVar { name: "HOME".into(), value: Some(home.path().to_string()), ..Default::default() });
    SidecarFromWorkload {
        image: target.image.clone(),
        image_pull_policy: pull_policy(target.image.as_deref(), target.image_pull_policy.as_deref()),
        working_dir: target.working_dir.clone(),
        env,
        env_from: target.env_from.clone(),
        volume_mounts: mounts,
    }
}

/// The sidecar's own mounts, before those it shares with the target.
pub fn sidecar_own_mounts() -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    vec![
        mount(VOLUME_KEYS, KEYS_DIR),
        mount(VOLUME_RUN, RUN_DIR),
        // An SSH user must not act as the pod's ServiceAccount: the
        // ServiceAccount admission plugin adds no token where a mount exists.
        mount(VOLUME_NO_TOKEN, SERVICE_ACCOUNT_TOKEN_DIR),
    ]
}

/// The mount of the `claworc-home` emptyDir, for [`Home::EmptyDir`].
pub fn home_mount() -> VolumeMount {
    VolumeMount { name: VOLUME_HOME.into(), mount_path: HOME_DIR.into(), ..Default::default() }
}

/// The sidecar's variables drawn from the settings: its sshd config and
/// `GIT_SSH_COMMAND` (after the target's, before `HOME`).
pub fn sidecar_settings_env(s: &Settings) -> Vec<EnvVar> {
    let var = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..Default::default() };
    vec![var(ENV_SSHD_CONFIG, SshdConfig::from_settings(s).render()), var(ENV_GIT_SSH_COMMAND, git_ssh_command(s))]
}

/// The sidecar's fields that depend only on the SSH port and the session IDs
/// (the same for most instances: [`crate::written`] keeps them written).
pub fn sidecar_fixed(ssh_port: u16, ids: (i64, i64)) -> Container {
    Container {
        name: SIDECAR.into(),
        restart_policy: Some("Always".into()),
        command: Some(vec![SSHD_BINARY.into()]),
        ports: Some(vec![ContainerPort {
            name: Some(SSH_PORT_NAME.into()),
            container_port: ssh_port.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        // Sessions are a person's work (a build, a clone): room for it, yet
        // bounded so a session cannot take the workload's node share.
        resources: Some(resources(("10m", "32Mi"), ("2", "2Gi"))),
        security_context: Some(locked_down(ids)),
        // Ready only when SSH answers on the pod's loopback (a tcpSocket probe
        // would dial the pod IP, where claworc-sshd does not listen). The probe
        // is the delivered binary itself: the workload's image may have no tools.
        readiness_probe: Some(Probe {
            exec: Some(ExecAction { command: Some(vec![SSHD_BINARY.into(), "probe".into(), ssh_port.to_string()]) }),
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

/// The sidecar's pull policy: the target's, else what kube-apiserver defaults
/// `imagePullPolicy` to for its image: `Always` for `:latest` or no tag, else
/// `IfNotPresent` (a digest counts as a tag).
pub fn pull_policy(image: Option<&str>, given: Option<&str>) -> String {
    if let Some(given) = given {
        return given.into();
    }
    let image = image.unwrap_or_default();
    let name = image.rsplit('/').next().unwrap_or_default();
    let tagged = image.contains('@') || name.split_once(':').is_some_and(|(_, tag)| tag != "latest");
    if tagged { "IfNotPresent" } else { "Always" }.into()
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
        pod(d).init_containers.iter().flatten().find(|c| c.name == SIDECAR).unwrap()
    }

    fn mounts_of(c: &Container) -> Vec<(&str, &str, bool)> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only == Some(true)))
            .collect()
    }

    fn env_of(c: &Container) -> BTreeMap<&str, &str> {
        c.env.iter().flatten().map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default())).collect()
    }

    #[test]
    fn adds_a_native_sidecar_running_claworc_sshd_in_the_workload_image() {
        let d = injected(&deployment(json!({"claworc.io/ssh-port": "2022", "claworc.io/forward-ports": "5900"})));
        let c = sidecar_of(&d);
        assert_eq!(c.name, "claworc-sshd");
        assert_eq!(c.restart_policy.as_deref(), Some("Always"));
        assert_eq!(c.image.as_deref(), Some("busybox:1.36"), "the target container's image");
        assert_eq!(c.command.as_deref(), Some(&["/run/claworc/claworc-sshd".to_string()][..]));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 2022);
        let config = env_of(c)[ENV_SSHD_CONFIG];
        assert!(config.contains("\nport 2022\n") && config.contains("\nforward-ports 5900\n"), "{config}");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.run_as_user, sc.run_as_group, sc.read_only_root_filesystem, sc.allow_privilege_escalation),
            (Some(1000), Some(1000), Some(true), Some(false))
        );
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let mounts = mounts_of(c);
        assert!(mounts.contains(&("claworc-ssh-keys", "/etc/claworc/ssh", true)), "{mounts:?}");
        assert!(mounts.contains(&("claworc-run", "/run/claworc", true)), "the binary, read-only: {mounts:?}");
        assert!(mounts.contains(&("claworc-no-token", SERVICE_ACCOUNT_TOKEN_DIR, true)), "{mounts:?}");
        assert!(mounts.contains(&("home", "/home/claworc", false)), "shares the first container's volumes: {mounts:?}");
        assert!(!mounts.iter().any(|m| m.0 == "cache"), "{mounts:?}");
    }

    #[test]
    fn an_init_container_delivers_the_binary_from_the_sidecar_image_first() {
        let d = injected(&deployment(json!({})));
        let init = pod(&d).init_containers.as_ref().unwrap();
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["claworc-sshd-install", "claworc-sshd"],
            "the installer runs to completion before the sidecar"
        );
        let installer = &init[0];
        assert_eq!(installer.image.as_deref(), Some(SIDECAR_IMAGE));
        assert_eq!(installer.restart_policy, None, "a plain init container");
        let command = installer.command.clone().unwrap();
        assert_eq!(command, ["/claworc-sshd", "install", "/run/claworc/claworc-sshd"], "the image has no shell");
        assert_eq!(mounts_of(installer), [("claworc-run", "/run/claworc", false)]);
        assert_eq!(sidecar_of(&d).command.as_ref().unwrap()[0], command[2], "the sidecar runs what was installed");
        let sc = installer.security_context.as_ref().unwrap();
        assert_eq!((sc.read_only_root_filesystem, sc.run_as_user), (Some(true), Some(1000)));
        let run = pod(&d).volumes.iter().flatten().find(|v| v.name == VOLUME_RUN).unwrap();
        let empty = run.empty_dir.as_ref().unwrap();
        assert_eq!((empty.medium.as_deref(), empty.size_limit.as_ref().map(|q| q.0.as_str())), (None, Some("64Mi")));
    }

    #[test]
    fn the_sidecar_is_ready_only_when_ssh_answers_on_its_port() {
        let d = injected(&deployment(json!({"claworc.io/ssh-port": "2022"})));
        let probe = sidecar_of(&d).readiness_probe.as_ref().unwrap();
        let cmd = probe.exec.as_ref().unwrap().command.as_ref().unwrap();
        assert_eq!(cmd.join(" "), "/run/claworc/claworc-sshd probe 2022", "no tool of the workload image");
        assert!(
            probe.tcp_socket.is_none() && probe.http_get.is_none(),
            "claworc-sshd listens on the pod's 127.0.0.1 only"
        );
    }

    #[test]
    fn target_container_picks_the_image_and_volumes_to_share() {
        let d = injected(&deployment(json!({"claworc.io/target-container": "gateway"})));
        let c = sidecar_of(&d);
        assert_eq!(c.image.as_deref(), Some("nginx:1.27"));
        let mounts: Vec<&str> = c.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
        assert!(mounts.contains(&"/cache"), "{mounts:?}");
        assert!(c.volume_mounts.iter().flatten().all(|m| m.name != "home"), "not the first container's: {mounts:?}");
    }

    /// The target container with `edit` applied to its JSON.
    fn with_target(edit: impl FnOnce(&mut serde_json::Value)) -> Deployment {
        let mut v = serde_json::to_value(deployment(json!({}))).unwrap();
        edit(v.pointer_mut("/spec/template/spec/containers/0").unwrap());
        injected(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn the_sidecar_has_the_targets_environment_and_working_directory_but_claworcs_variables() {
        let d = with_target(|c| {
            c["workingDir"] = json!("/srv/app");
            c["env"] = json!([
                {"name": "DATABASE_URL", "value": "postgres://db/app"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "token"}}},
                {"name": "HOME", "value": "/root"},
                {"name": "CLAWORC_SSHD_CONFIG", "value": "port 22"}
            ]);
            c["envFrom"] = json!([{"configMapRef": {"name": "app-config"}}]);
            c["imagePullPolicy"] = json!("Always");
        });
        let c = sidecar_of(&d);
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(c.env_from.as_ref().unwrap()[0].config_map_ref.as_ref().unwrap().name, "app-config");
        let env = env_of(c);
        assert_eq!(env["DATABASE_URL"], "postgres://db/app");
        let token = c.env.iter().flatten().find(|e| e.name == "TOKEN").unwrap();
        assert_eq!(token.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "token");
        assert_eq!(env["HOME"], "/home/claworc", "claworc sets HOME (the home volume), not the target's /root");
        assert!(env[ENV_SSHD_CONFIG].contains("port 2222\n"), "the target cannot configure the server");
        let names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        for once in SIDECAR_ENV {
            assert_eq!(names.iter().filter(|n| **n == once).count(), 1, "{once}: {names:?}");
        }
    }

    #[test]
    fn home_is_the_instances_home_volume_else_an_emptydir_a_person_can_work_in() {
        // The volume named home (kubectl claworc create --volume home=/home/agent:10Gi).
        let d = with_target(|c| c["volumeMounts"] = json!([{"name": "home", "mountPath": "/home/agent"}]));
        assert_eq!(env_of(sidecar_of(&d))["HOME"], "/home/agent");
        assert!(pod(&d).volumes.iter().flatten().all(|v| v.name != VOLUME_HOME), "no second home");
        // The target's HOME, inside a shared volume.
        let d = with_target(|c| {
            c["volumeMounts"] = json!([{"name": "home", "mountPath": "/data"}]);
            c["env"] = json!([{"name": "HOME", "value": "/data/me"}]);
        });
        assert_eq!(env_of(sidecar_of(&d))["HOME"], "/data/me");
        // No volume: an emptyDir of its own, with room to work.
        let d = injected(&deployment(json!({"claworc.io/target-container": "gateway"})));
        let c = sidecar_of(&d);
        assert_eq!(env_of(c)["HOME"], HOME_DIR);
        assert!(mounts_of(c).contains(&("claworc-home", HOME_DIR, false)), "{:?}", mounts_of(c));
        let home = pod(&d).volumes.iter().flatten().find(|v| v.name == VOLUME_HOME).unwrap();
        let size = home.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap();
        assert_eq!(size.0, "2Gi");
        let workload = &pod(&d).containers[1];
        assert!(workload.volume_mounts.iter().flatten().all(|m| m.name != VOLUME_HOME), "the SSH user's own");
    }

    #[test]
    fn sessions_run_as_the_workloads_uid_and_gid() {
        let mut v = serde_json::to_value(deployment(json!({}))).unwrap();
        v["spec"]["template"]["spec"]["securityContext"] = json!({"runAsUser": 4242, "runAsGroup": 4343});
        let d = injected(&serde_json::from_value(v).unwrap());
        let sc = sidecar_of(&d).security_context.clone().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_group), (Some(4242), Some(4343)));
        let d = with_target(|c| c["securityContext"] = json!({"runAsUser": 5000}));
        assert_eq!(sidecar_of(&d).security_context.as_ref().unwrap().run_as_user, Some(5000));
    }

    #[test]
    fn mounts_around_the_sidecars_own_paths_are_not_shared() {
        let d = with_target(|c| {
            c["volumeMounts"] = json!([
                {"name": "a", "mountPath": "/etc"}, {"name": "b", "mountPath": "/run"},
                {"name": "c", "mountPath": "/var/run"}, {"name": "d", "mountPath": "/var"},
                {"name": "e", "mountPath": "/etc/app"}, {"name": "f", "mountPath": "/run/app"},
                {"name": "g", "mountPath": "/usr/local/share/data"}, {"name": "h", "mountPath": "/dev/shm"}
            ])
        });
        let shared: Vec<&str> =
            mounts_of(sidecar_of(&d)).into_iter().filter(|m| !m.0.starts_with("claworc-")).map(|m| m.1).collect();
        assert_eq!(shared, ["/etc/app", "/run/app", "/usr/local/share/data"]);
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
        // Every container a workload or a session runs in (the installer only copies a file).
        for c in p.containers.iter().chain(p.init_containers.iter().flatten().filter(|c| c.name != INSTALLER)) {
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
        init[1].image = Some("evil:latest".into());
        init[1].security_context.as_mut().unwrap().privileged = Some(true);
        init[1].env.as_mut().unwrap().push(EnvVar { name: "LD_PRELOAD".into(), ..Default::default() });
        let again = injected(&d);
        assert_eq!(sidecar_of(&again).image.as_deref(), Some("busybox:1.36"));
        assert_eq!(pod(&again).init_containers.as_ref().unwrap()[0].image.as_deref(), Some(SIDECAR_IMAGE));
        assert_eq!(again, injected(&deployment(json!({}))));
    }
}
