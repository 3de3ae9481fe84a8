//! Validation: what an opted-in Deployment may not be, and what is unwise.
//!
//! The webhook enforces Pod Security "restricted" (which includes "baseline")
//! itself, whatever the namespace's labels, for the pod and every container,
//! init container and ephemeral container; [`validate`] then re-checks that
//! the stored template is exactly what injection makes. Every denial names the
//! field and how to fix it; [`RULES`] lists them all for docs/webhook.md.

use std::collections::BTreeMap;

use claworc_contract::Settings;
use claworc_contract::instance::opted_in;
use claworc_contract::names::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    PodSecurityContext, PodSpec, PodTemplateSpec, SELinuxOptions, SecurityContext, Volume,
};
use serde_json::Value;

use crate::inject::{self, Config};
use crate::json::Unsupported;

/// The capabilities Pod Security `restricted` lets a container add.
pub const ALLOWED_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];

/// The volume types Pod Security `restricted` allows.
pub const ALLOWED_VOLUME_TYPES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// The sysctls Pod Security `baseline` calls safe (Kubernetes 1.32 and later).
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The SELinux types Pod Security `baseline` allows (besides none).
pub const ALLOWED_SELINUX_TYPES: &[&str] =
    &["container_t", "container_init_t", "container_kvm_t", "container_engine_t"];

/// Prefix of the pod-template annotations that set a container's AppArmor profile.
const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Directories that belong to the sidecar (its keys, its delivered binary): no
/// other container mounts there.
const CLAWORC_DIRS: [&str; 2] = ["/etc/claworc", RUN_DIR];

/// The outcome of validating one Deployment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
}

/// One rule, as documented: the field it looks at and what it refuses.
pub struct Rule {
    pub field: &'static str,
    pub refuses: &'static str,
}

/// Every rule [`validate`] enforces besides the annotation checks of
/// `claworc_contract::settings` (unknown keys, malformed values).
pub const RULES: &[Rule] = &[
    Rule { field: "metadata.name", refuses: "none (generateName alone): an instance needs a fixed name" },
    Rule { field: "spec.replicas", refuses: "anything but 0 or 1" },
    Rule { field: "spec.template.spec.hostNetwork / hostPID / hostIPC", refuses: "true" },
    Rule {
        field: "spec.template.spec.volumes[*]",
        refuses: "any type but configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret; a claworc- name",
    },
    Rule { field: "spec.template.spec.securityContext.runAsUser", refuses: "0 (root)" },
    Rule {
        field: "spec.template.spec.securityContext.runAsGroup / fsGroup / supplementalGroups",
        refuses: "0 (root group)",
    },
    Rule { field: "spec.template.spec.securityContext.seccompProfile.type", refuses: "Unconfined" },
    Rule { field: "spec.template.spec.securityContext.appArmorProfile.type", refuses: "Unconfined" },
    Rule {
        field: "spec.template.spec.securityContext.seLinuxOptions",
        refuses: "a user or role, or a type other than container_t, container_init_t, container_kvm_t, container_engine_t",
    },
    Rule {
        field: "spec.template.spec.securityContext.sysctls",
        refuses: "any sysctl outside the Pod Security safe set",
    },
    Rule {
        field: "spec.template.metadata.annotations[\"container.apparmor.security.beta.kubernetes.io/*\"]",
        refuses: "unconfined",
    },
    Rule { field: "containers[*].securityContext.privileged", refuses: "true" },
    Rule { field: "containers[*].securityContext.allowPrivilegeEscalation", refuses: "true" },
    Rule { field: "containers[*].securityContext.capabilities.add", refuses: "anything but NET_BIND_SERVICE" },
    Rule { field: "containers[*].securityContext.runAsUser", refuses: "0 (root)" },
    Rule { field: "containers[*].securityContext.runAsGroup", refuses: "0 (root group)" },
    Rule { field: "containers[*].securityContext.runAsNonRoot", refuses: "false" },
    Rule { field: "containers[*].securityContext.seccompProfile.type", refuses: "Unconfined" },
    Rule { field: "containers[*].securityContext.appArmorProfile.type", refuses: "Unconfined" },
    Rule { field: "containers[*].securityContext.seLinuxOptions", refuses: "as for the pod" },
    Rule { field: "containers[*].securityContext.procMount", refuses: "anything but Default" },
    Rule { field: "containers[*].securityContext.windowsOptions.hostProcess", refuses: "true" },
    Rule { field: "containers[*].ports[*].hostPort", refuses: "any host port" },
    Rule {
        field: "containers[*].volumeMounts[*]",
        refuses: "the sidecar's volumes (claworc-ssh-keys, claworc-run, claworc-no-token, claworc-home); a path at or under /etc/claworc or /run/claworc; a path with ..",
    },
    Rule {
        field: "metadata.annotations[\"claworc.io/target-container\"]",
        refuses: "a name that is not one of spec.template.spec.containers",
    },
    Rule {
        field: "spec.template.spec.containers",
        refuses: "an empty list; a container named claworc-sshd or claworc-sshd-install",
    },
    Rule {
        field: "spec.template",
        refuses: "anything that differs from what claworc's mutation makes (a missing or altered sidecar, hardening, label or known_hosts)",
    },
    Rule { field: "spec.template (not opted in)", refuses: "claworc markers left after the opt-in label is removed" },
];

/// Validates a Deployment as it will be stored (after all mutations): every
/// rule, then a full re-check that the pod template is what injection makes.
/// Deployments that did not opt in pass untouched (see [`opted_out`]).
pub fn validate(d: &Deployment, cfg: &Config) -> Verdict {
    check(d, Some(cfg)).0
}

/// What mutation refuses before it injects: every rule but the re-check.
/// Injection would otherwise overwrite what the user asked for (e.g.
/// `allowPrivilegeEscalation: true`) instead of refusing it. On success, the
/// settings injection needs (parsed once).
pub fn before_injection(d: &Deployment) -> Result<Settings, Vec<String>> {
    match check(d, None) {
        (v, Some(s)) if v.denials.is_empty() => Ok(s),
        (v, _) => Err(v.denials),
    }
}

/// For a Deployment that is not opted in: the claworc markers its template
/// still carries (the mutating webhook removes them all when one opts out).
pub fn opted_out(d: &Deployment) -> Verdict {
    let mut v = Verdict::default();
    let stripped = inject::remove(d);
    if stripped != d.spec.template {
        let mut fields = Vec::new();
        differences(&to_value(&stripped), &to_value(&d.spec.template), "spec.template", &mut fields);
        v.denials.push(format!(
            "{}: claworc markers remain although the Deployment does not carry {LABEL_SSH}: \"{SSH_ENABLED}\"; remove them (the claworc mutating webhook does when you remove the label: check that it is installed) or put the label back",
            fields.join(", ")
        ));
    }
    v
}

/// The verdict, and the settings when the annotations could be read.
fn check(d: &Deployment, recheck: Option<&Config>) -> (Verdict, Option<Settings>) {
    let mut v = Verdict::default();
    if !opted_in(d) {
        return (v, None);
    }
    if d.metadata.name.as_deref().unwrap_or_default().is_empty() {
        v.denials.push("metadata.name: missing; a claworc instance needs a fixed name (its pods' instance label, its Secret <name>-ssh and its NetworkPolicies use it), so generateName alone is not supported; set metadata.name".into());
        return (v, None);
    }
    let settings = match inject::settings(d) {
        Ok(s) => Some(s),
        Err(errors) => {
            v.denials.extend(errors.iter().map(ToString::to_string));
            None
        }
    };
    let spec = &d.spec;
    check_replicas(spec.replicas, &mut v);
    let empty = PodSpec::default();
    let pod = spec.template.spec.as_ref().unwrap_or(&empty);
    check_pod(&spec.template, pod, &mut v);
    if let Some(s) = &settings {
        if pod.containers.is_empty() {
            v.denials.push("spec.template.spec.containers: empty; add the workload container".into());
        } else if inject::target_index(pod, s).is_none() {
            let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
            v.denials.push(format!(
                "metadata.annotations[\"claworc.io/target-container\"]: no container is named {:?}; use one of {names:?}",
                s.target_container.as_deref().unwrap_or_default()
            ));
        } else if let Some(cfg) = recheck
            && v.denials.is_empty()
        {
            recheck_template(d, s, cfg, &mut v);
        }
        warn(d, s, &mut v);
    }
    (v, settings)
}

fn check_pod(template: &PodTemplateSpec, pod: &PodSpec, v: &mut Verdict) {
    check_host_namespaces([pod.host_network, pod.host_pid, pod.host_ipc], v);
    for vol in pod.volumes.iter().flatten() {
        check_volume(vol, v);
    }
    if let Some(sc) = &pod.security_context {
        check_pod_security_context(sc, v);
    }
    let annotations = template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
    check_apparmor_annotations(annotations.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())), v);
    let containers =
        pod.containers.iter().map(|c| ("containers", &c.name, &c.security_context, &c.ports, &c.volume_mounts));
    let init = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", &c.name, &c.security_context, &c.ports, &c.volume_mounts));
    let ephemeral = pod
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| ("ephemeralContainers", &c.name, &c.security_context, &c.ports, &c.volume_mounts));
    for (kind, name, sc, ports, mounts) in containers.chain(init).chain(ephemeral) {
        let ports = ports.iter().flatten().map(|p| (p.container_port, p.host_port));
        let mounts = mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str()));
        check_container_entry(kind, name, sc.as_ref(), ports, mounts, v);
    }
}

pub(crate) fn check_replicas(replicas: Option<i32>, v: &mut Verdict) {
    if let Some(r) = replicas.filter(|r| !(0..=1).contains(r)) {
        v.denials.push(format!(
            "spec.replicas: {r} is not allowed: an instance runs 0 or 1 pod; set replicas to 1 (or 0 to stop it)"
        ));
    }
}

/// `hostNetwork`, `hostPID` and `hostIPC`, in that order.
pub(crate) fn check_host_namespaces(flags: [Option<bool>; 3], v: &mut Verdict) {
    for (field, on) in ["hostNetwork", "hostPID", "hostIPC"].into_iter().zip(flags) {
        if on == Some(true) {
            v.denials.push(format!(
                "spec.template.spec.{field}: true is not allowed: it exposes the node to the workload; remove it"
            ));
        }
    }
}

pub(crate) fn check_volume(vol: &Volume, v: &mut Verdict) {
    match field_names(vol) {
        Some(names) => check_volume_kinds(&vol.name, names.into_iter().filter(|k| *k != "name"), v),
        // Fail closed: a volume whose fields cannot be read is not let through.
        None => v.denials.push(format!(
            "spec.template.spec.volumes[{:?}]: its type cannot be read; use a PersistentVolumeClaim or an emptyDir",
            vol.name
        )),
    }
}

/// A volume named `name` with these source types (its fields but `name`).
pub(crate) fn check_volume_kinds<'k>(name: &str, kinds: impl Iterator<Item = &'k str>, v: &mut Verdict) {
    let at = format_args!("spec.template.spec.volumes[{name:?}]");
    for kind in kinds.filter(|k| !ALLOWED_VOLUME_TYPES.contains(k)) {
        let fix = if kind == "hostPath" {
            "host paths are not allowed; use a PersistentVolumeClaim or an emptyDir"
        } else {
            "this volume type is not allowed under Pod Security \"restricted\"; use a PersistentVolumeClaim (backed by any storage class), a csi volume, an emptyDir, a configMap or a secret"
        };
        v.denials.push(format!("{at}.{kind}: {fix}"));
    }
    if name.starts_with(VOLUME_PREFIX) && !inject::VOLUMES.contains(&name) {
        v.denials
            .push(format!("{at}: the {VOLUME_PREFIX} prefix is reserved for what claworc injects; rename the volume"));
    }
}

pub(crate) fn check_pod_security_context(sc: &PodSecurityContext, v: &mut Verdict) {
    let at = "spec.template.spec.securityContext";
    if sc.run_as_user == Some(0) {
        v.denials
            .push(format!("{at}.runAsUser: 0 (root) is not allowed; remove it or use a non-zero UID (default 1000)"));
    }
    for (field, gid) in [("runAsGroup", sc.run_as_group), ("fsGroup", sc.fs_group)] {
        if gid == Some(0) {
            v.denials.push(format!(
                "{at}.{field}: 0 (the root group) is not allowed; remove it or use a non-zero GID (default 1000)"
            ));
        }
    }
    if sc.supplemental_groups.iter().flatten().any(|g| *g == 0) {
        v.denials.push(format!("{at}.supplementalGroups: 0 (the root group) is not allowed; remove it from the list"));
    }
    if sc.seccomp_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        v.denials.push(format!("{at}.seccompProfile.type: Unconfined is not allowed; use RuntimeDefault"));
    }
    if sc.app_armor_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        v.denials
            .push(format!("{at}.appArmorProfile.type: Unconfined is not allowed; use RuntimeDefault or remove it"));
    }
    check_selinux(at, sc.se_linux_options.as_ref(), v);
    for sysctl in sc.sysctls.iter().flatten().filter(|s| !SAFE_SYSCTLS.contains(&s.name.as_str())) {
        v.denials.push(format!(
            "{at}.sysctls[{:?}]: not one of the sysctls Pod Security allows ({}); remove it",
            sysctl.name,
            SAFE_SYSCTLS.join(", ")
        ));
    }
    if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        v.denials.push(format!("{at}.windowsOptions.hostProcess: true is not allowed; remove it"));
    }
}

/// The pod template's AppArmor annotations (the field's older form).
pub(crate) fn check_apparmor_annotations<'a>(annotations: impl Iterator<Item = (&'a str, &'a str)>, v: &mut Verdict) {
    for (key, value) in annotations.filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION)) {
        if value != "runtime/default" && !value.starts_with("localhost/") {
            v.denials.push(format!(
                "spec.template.metadata.annotations[{key:?}]: {value:?} is not allowed; use \"runtime/default\" or remove it"
            ));
        }
    }
}

/// One container, init container or ephemeral container (`kind` names the
/// list), its ports as (containerPort, hostPort) and its mounts as (volume, path).
pub(crate) fn check_container_entry<'m>(
    kind: &str,
    name: &str,
    sc: Option<&SecurityContext>,
    ports: impl Iterator<Item = (i32, Option<i32>)>,
    mounts: impl Iterator<Item = (&'m str, &'m str)>,
    v: &mut Verdict,
) {
    let at = format!("spec.template.spec.{kind}[{name:?}]");
    for (port, _) in ports.filter(|(_, host)| host.is_some_and(|h| h != 0)) {
        v.denials.push(format!(
            "{at}.ports[{port}].hostPort: host ports are not allowed; reach the port with `kubectl claworc tunnel`"
        ));
    }
    if let Some(sc) = sc {
        check_container(&at, sc, v);
    }
    if inject::is_claworc_container(name) && kind != "initContainers" {
        v.denials.push(format!("{at}: the name {name} is reserved for claworc's sidecar; rename the container"));
    }
    if !inject::is_claworc_container(name) {
        for (volume, path) in mounts {
            check_mount(&at, volume, path, v);
        }
    }
}

fn check_mount(at: &str, volume: &str, path: &str, v: &mut Verdict) {
    let at = format_args!("{at}.volumeMounts[{path:?}]");
    if inject::SIDECAR_VOLUMES.contains(&volume) {
        v.denials.push(format!("{at}: the volume {volume} belongs to the claworc-sshd sidecar; remove this mount"));
    }
    match inject::clean_path(path) {
        None => v
            .denials
            .push(format!("{at}: the mount path must be absolute and must not contain \"..\"; write it plainly")),
        Some(p) if CLAWORC_DIRS.iter().any(|dir| inject::is_under(&p, dir)) => v.denials.push(format!(
            "{at}: {} belong to the claworc-sshd sidecar (its keys and its binary); mount the volume elsewhere",
            CLAWORC_DIRS.join(" and ")
        )),
        Some(_) => {}
    }
}

fn check_selinux(at: impl std::fmt::Display, options: Option<&SELinuxOptions>, v: &mut Verdict) {
    let Some(se) = options else { return };
    if let Some(t) = se.type_.as_deref().filter(|t| !t.is_empty() && !ALLOWED_SELINUX_TYPES.contains(t)) {
        v.denials.push(format!(
            "{at}.seLinuxOptions.type: {t:?} is not allowed; use one of {ALLOWED_SELINUX_TYPES:?} or remove it"
        ));
    }
    for (field, value) in [("user", &se.user), ("role", &se.role)] {
        if value.as_deref().is_some_and(|x| !x.is_empty()) {
            v.denials.push(format!("{at}.seLinuxOptions.{field}: setting it is not allowed; remove it"));
        }
    }
}

fn check_container(at: &str, sc: &SecurityContext, v: &mut Verdict) {
    if sc.privileged == Some(true) {
        v.denials.push(format!("{at}.securityContext.privileged: true is not allowed; remove it (claworc instances run under Pod Security \"restricted\")"));
    }
    if sc.allow_privilege_escalation == Some(true) {
        v.denials.push(format!(
            "{at}.securityContext.allowPrivilegeEscalation: true is not allowed; remove it or set it to false"
        ));
    }
    let added = sc.capabilities.as_ref().and_then(|caps| caps.add.as_ref());
    for cap in added.into_iter().flatten().filter(|c| !ALLOWED_CAPABILITIES.contains(&c.trim_start_matches("CAP_"))) {
        v.denials.push(format!(
            "{at}.securityContext.capabilities.add: {cap} is not allowed; only NET_BIND_SERVICE may be added"
        ));
    }
    if sc.run_as_user == Some(0) {
        v.denials
            .push(format!("{at}.securityContext.runAsUser: 0 (root) is not allowed; remove it or use a non-zero UID"));
    }
    if sc.run_as_group == Some(0) {
        v.denials.push(format!(
            "{at}.securityContext.runAsGroup: 0 (the root group) is not allowed; remove it or use a non-zero GID"
        ));
    }
    if sc.run_as_non_root == Some(false) {
        v.denials.push(format!("{at}.securityContext.runAsNonRoot: false is not allowed; remove it"));
    }
    if sc.seccomp_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        v.denials
            .push(format!("{at}.securityContext.seccompProfile.type: Unconfined is not allowed; use RuntimeDefault"));
    }
    if sc.app_armor_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        v.denials.push(format!(
            "{at}.securityContext.appArmorProfile.type: Unconfined is not allowed; use RuntimeDefault or remove it"
        ));
    }
    check_selinux(format_args!("{at}.securityContext"), sc.se_linux_options.as_ref(), v);
    if let Some(pm) = sc.proc_mount.as_deref().filter(|pm| *pm != "Default") {
        v.denials.push(format!("{at}.securityContext.procMount: {pm} is not allowed; remove it (Default)"));
    }
    if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        v.denials.push(format!("{at}.securityContext.windowsOptions.hostProcess: true is not allowed; remove it"));
    }
}

/// The full re-check: the stored template must be what injection makes.
///
/// Across a rolling upgrade of the webhook, the template may have been made
/// by an adjacent release (its `claworc.io/injected` names another version).
/// A release may change only the installer's image, command, arguments and
/// resources and the sidecar's command, arguments, environment, resources and
/// probes ([`RELEASE_FIELDS`]); so for another version's template those are
/// compared after being set to this release's, and everything else (every
/// other container, the sidecar's image, which is the target's, the volumes,
/// mounts, security contexts, labels and known_hosts) must still be exactly
/// what this release makes.
fn recheck_template(d: &Deployment, s: &Settings, cfg: &Config, v: &mut Verdict) {
    let want = inject::inject_template(d, s, cfg);
    if want == d.spec.template {
        return;
    }
    let pod = d.spec.template.spec.as_ref();
    if !pod.and_then(|p| p.init_containers.as_ref()).is_some_and(|init| init.iter().any(|c| c.name == SIDECAR)) {
        v.denials.push(format!(
            "spec.template.spec.initContainers[\"{SIDECAR}\"]: missing; the claworc mutating webhook did not run: check that it is installed and that the Deployment has the label {LABEL_SSH}: \"{SSH_ENABLED}\""
        ));
        return;
    }
    let mut have = to_value(&d.spec.template);
    let want = to_value(&want);
    let stored_version = injected_version(&d.spec.template);
    if stored_version.is_some_and(|version| version != cfg.version) {
        for (container, fields) in RELEASE_FIELDS {
            let mine = release_fields(&want, container, fields);
            set_release_fields(&mut have, container, mine);
        }
        if let Some(a) = have.pointer_mut("/metadata/annotations") {
            a[ANNOTATION_INJECTED] = Value::String(cfg.version.clone());
        }
        if have == want {
            return;
        }
    }
    let mut fields = Vec::new();
    differences(&want, &have, "spec.template", &mut fields);
    v.denials.push(format!(
        "{}: not what claworc's mutation makes; remove your change (claworc rewrites the sidecar, hardening, labels and known_hosts from the claworc.io/* annotations), or look for a webhook that alters the Deployment after claworc's",
        if fields.is_empty() { "spec.template".to_string() } else { fields.join(", ") }
    ));
}

fn injected_version(t: &PodTemplateSpec) -> Option<&str> {
    t.metadata.as_ref()?.annotations.as_ref()?.get(ANNOTATION_INJECTED).map(String::as_str)
}

/// The fields of the injected containers that a release may change.
pub const RELEASE_FIELDS: [(&str, &[&str]); 2] = [
    (INSTALLER, &["image", "command", "args", "resources"]),
    (SIDECAR, &["command", "args", "env", "resources", "readinessProbe", "startupProbe"]),
];

fn injected_container<'a>(template: &'a Value, name: &str) -> Option<&'a Value> {
    template.pointer("/spec/initContainers")?.as_array()?.iter().find(|c| c["name"] == name)
}

fn release_fields(template: &Value, container: &str, fields: &[&'static str]) -> BTreeMap<&'static str, Value> {
    let c = injected_container(template, container).cloned().unwrap_or_default();
    fields.iter().map(|f| (*f, c.get(*f).cloned().unwrap_or(Value::Null))).collect()
}

fn set_release_fields(template: &mut Value, container: &str, fields: BTreeMap<&'static str, Value>) {
    let Some(Value::Array(init)) = template.pointer_mut("/spec/initContainers") else { return };
    let Some(Value::Object(c)) = init.iter_mut().find(|c| c["name"] == container) else { return };
    for (field, value) in fields {
        if value.is_null() {
            c.remove(field);
        } else {
            c.insert(field.to_string(), value);
        }
    }
}

/// The JSON names of the fields `value` writes at its top level, without
/// writing their values: for a Volume, `name` and its source types, whatever
/// they are (a type added to Kubernetes is seen, and refused, as it comes).
/// Cheaper than `to_value`, which builds the whole tree.
/// `None` when `value` is not written as a struct.
fn field_names<T: serde::Serialize>(value: &T) -> Option<Vec<&'static str>> {
    let mut names = FieldNames(Vec::new());
    value.serialize(&mut names).ok()?;
    Some(names.0)
}

/// Anything but a struct is [`Unsupported`]: the reader has nothing to say about it.
struct FieldNames(Vec<&'static str>);

impl serde::ser::SerializeStruct for &mut FieldNames {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: ?Sized + serde::Serialize>(&mut self, key: &'static str, _: &T) -> Result<(), Unsupported> {
        self.0.push(key);
        Ok(())
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

impl serde::Serializer for &mut FieldNames {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = serde::ser::Impossible<(), Unsupported>;
    type SerializeTuple = serde::ser::Impossible<(), Unsupported>;
    type SerializeTupleStruct = serde::ser::Impossible<(), Unsupported>;
    type SerializeTupleVariant = serde::ser::Impossible<(), Unsupported>;
    type SerializeMap = serde::ser::Impossible<(), Unsupported>;
    type SerializeStruct = Self;
    type SerializeStructVariant = serde::ser::Impossible<(), Unsupported>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }

    fn serialize_some<T: ?Sized + serde::Serialize>(self, _: &T) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_newtype_struct<T: ?Sized + serde::Serialize>(self, _: &'static str, _: &T) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_newtype_variant<T: ?Sized + serde::Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    crate::json::unsupported! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The first few field paths where `have` differs from `want`, written as a
/// person reads them (`containers["work"].securityContext`).
fn differences(want: &Value, have: &Value, at: &str, out: &mut Vec<String>) {
    const MAX: usize = 3;
    if out.len() >= MAX || want == have {
        return;
    }
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for key in w.keys().chain(h.keys().filter(|k| !w.contains_key(*k))) {
                let (a, b) = (w.get(key).unwrap_or(&Value::Null), h.get(key).unwrap_or(&Value::Null));
                let child = if key.contains(['/', '.']) { format!("{at}[{key:?}]") } else { format!("{at}.{key}") };
                differences(a, b, &child, out);
            }
        }
        (Value::Array(w), Value::Array(h))
            if w.iter().chain(h).all(|x| x.get("name").is_some_and(Value::is_string)) =>
        {
            let name = |x: &Value| x["name"].as_str().unwrap_or_default().to_string();
            let names: Vec<String> = w.iter().map(name).chain(h.iter().map(name)).collect();
            let mut seen = std::collections::BTreeSet::new();
            for n in names.into_iter().filter(|n| seen.insert(n.clone())) {
                let a = w.iter().find(|x| name(x) == n).unwrap_or(&Value::Null);
                let b = h.iter().find(|x| name(x) == n).unwrap_or(&Value::Null);
                differences(a, b, &format!("{at}[{n:?}]"), out);
            }
            if out.is_empty() {
                out.push(format!("{at} (order)"));
            }
        }
        _ => out.push(at.to_string()),
    }
}

fn warn(d: &Deployment, s: &Settings, v: &mut Verdict) {
    let strategy = d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref());
    let mut volumes = d.spec.template.spec.iter().flat_map(|p| p.volumes.iter().flatten());
    warn_about(strategy, volumes.any(|v| v.persistent_volume_claim.is_some()), s, v);
}

/// The warnings for a Deployment of this strategy type, with or without a
/// PersistentVolumeClaim among its volumes, and these settings.
pub(crate) fn warn_about(strategy: Option<&str>, claims: bool, s: &Settings, v: &mut Verdict) {
    if strategy.is_none_or(|t| t == "RollingUpdate") && claims {
        v.warnings.push("spec.strategy: RollingUpdate with a PersistentVolumeClaim: a ReadWriteOnce volume keeps the new pod from starting while the old one runs; use strategy Recreate".into());
    }
    if s.host_key_fingerprint.is_none() {
        v.warnings.push("metadata.annotations[\"claworc.io/host-key-fingerprint\"]: not set, so clients cannot pin the host key from the API; set it to the output of `ssh-keygen -lf ssh_host_ed25519_key.pub` (kubectl claworc create does)".into());
    }
    if s.strict_host_key_checking == claworc_contract::StrictHostKeyChecking::AcceptNew {
        v.warnings.push("metadata.annotations[\"claworc.io/strict-host-key-checking\"]: accept-new trusts the first key a new git host presents; prefer \"yes\" with claworc.io/known-hosts-configmap".into());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::inject::tests::{deployment, injected};

    fn verdict(d: &Deployment) -> Verdict {
        validate(d, &Config::default())
    }

    /// An injected Deployment with `edit` applied to its JSON.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Deployment {
        let mut v = serde_json::to_value(injected(&deployment(json!({})))).unwrap();
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn denied(d: &Deployment, field: &str, fix: &str) {
        let v = verdict(d);
        assert!(
            v.denials.iter().any(|m| m.contains(field) && m.contains(fix)),
            "want {field:?} … {fix:?} in {:#?}",
            v.denials
        );
    }

    #[test]
    fn an_injected_deployment_passes() {
        let v = verdict(&injected(&deployment(
            json!({"claworc.io/host-key-fingerprint": format!("SHA256:{}", "a".repeat(43))}),
        )));
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn a_deployment_that_did_not_opt_in_is_not_judged() {
        let d = edited(|v| {
            v["metadata"]["labels"] = json!({});
            v["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        });
        assert_eq!(verdict(&d), Verdict::default());
    }

    #[test]
    fn insecure_pods_are_refused_naming_the_field_and_the_fix() {
        let c0 = "/spec/template/spec/containers/0";
        let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
            ("/spec/replicas", json!(3), "spec.replicas", "set replicas to 1"),
            ("/spec/template/spec/hostNetwork", json!(true), "hostNetwork", "remove it"),
            ("/spec/template/spec/hostPID", json!(true), "hostPID", "remove it"),
            ("/spec/template/spec/hostIPC", json!(true), "hostIPC", "remove it"),
            ("/spec/template/spec/volumes/0/hostPath", json!({"path": "/"}), "hostPath", "PersistentVolumeClaim"),
        ];
        for (path, value, field, fix) in cases {
            let (parent, key) = path.rsplit_once('/').unwrap();
            denied(&edited(|v| v.pointer_mut(parent).unwrap()[key] = value), field, fix);
        }
        let container_cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
            ("privileged", json!(true), "containers[\"work\"].securityContext.privileged", "remove it"),
            ("allowPrivilegeEscalation", json!(true), "allowPrivilegeEscalation", "false"),
            (
                "capabilities",
                json!({"add": ["SYS_ADMIN"], "drop": ["ALL"]}),
                "capabilities.add: SYS_ADMIN",
                "only NET_BIND_SERVICE",
            ),
            ("runAsUser", json!(0), "containers[\"work\"].securityContext.runAsUser", "non-zero"),
            ("runAsNonRoot", json!(false), "runAsNonRoot", "remove it"),
            ("seccompProfile", json!({"type": "Unconfined"}), "seccompProfile.type", "RuntimeDefault"),
        ];
        for (key, value, field, fix) in container_cases {
            denied(&edited(|v| v.pointer_mut(&format!("{c0}/securityContext")).unwrap()[key] = value), field, fix);
        }
        denied(
            &edited(|v| v.pointer_mut(c0).unwrap()["ports"] = json!([{"containerPort": 80, "hostPort": 80}])),
            "hostPort",
            "kubectl claworc tunnel",
        );
    }

    #[test]
    fn net_bind_service_may_be_added() {
        let d = edited(|v| {
            v.pointer_mut("/spec/template/spec/containers/0/securityContext").unwrap()["capabilities"] =
                json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
        });
        assert!(verdict(&d).denials.is_empty(), "{:?}", verdict(&d).denials);
    }

    #[test]
    fn bad_annotations_are_refused() {
        let d = deployment(json!({"claworc.io/strict-host-key-checking": "no", "claworc.io/ssh-prot": "2222"}));
        denied(&d, "claworc.io/strict-host-key-checking", "accept-new");
        denied(&d, "claworc.io/ssh-prot", "did you mean \"claworc.io/ssh-port\"");
        denied(
            &injected(&deployment(json!({"claworc.io/target-container": "nope"}))),
            "target-container",
            "[\"work\", \"gateway\"]",
        );
    }

    #[test]
    fn a_missing_or_altered_sidecar_is_refused() {
        denied(&deployment(json!({})), "initContainers[\"claworc-sshd\"]: missing", "mutating webhook did not run");
        denied(
            &edited(|v| v.pointer_mut("/spec/template/spec/initContainers/1").unwrap()["image"] = json!("other:1")),
            "initContainers[\"claworc-sshd\"].image: not what claworc's mutation makes",
            "remove your change",
        );
        denied(
            &edited(|v| v.pointer_mut("/spec/template/spec/initContainers/0").unwrap()["image"] = json!("other:1")),
            "initContainers[\"claworc-sshd-install\"].image: not what claworc's mutation makes",
            "remove your change",
        );
        denied(
            &edited(|v| {
                v.pointer_mut("/spec/template/spec/initContainers").unwrap().as_array_mut().unwrap().remove(0);
            }),
            "initContainers[\"claworc-sshd-install\"]",
            "not what claworc's mutation makes",
        );
        denied(
            &edited(|v| {
                v.pointer_mut("/spec/template/spec/initContainers/1/env")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "LD_PRELOAD", "value": "/tmp/x.so"}))
            }),
            "initContainers[\"claworc-sshd\"].env",
            "not what claworc's mutation makes",
        );
        denied(
            &edited(|v| v.pointer_mut("/spec/template/spec/volumes/2/secret").unwrap()["secretName"] = json!("other")),
            "volumes[\"claworc-ssh-keys\"].secret.secretName: not what",
            "remove your change",
        );
    }

    /// What another webhook running after claworc's could do to the stored
    /// template: each is a difference from what injection makes.
    #[test]
    fn validate_is_a_full_recheck() {
        let c0 = "/spec/template/spec/containers/0";
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "containers[\"work\"].securityContext.allowPrivilegeEscalation",
                Box::new(move |v| {
                    v.pointer_mut(&format!("{c0}/securityContext"))
                        .unwrap()
                        .as_object_mut()
                        .unwrap()
                        .remove("allowPrivilegeEscalation");
                }),
            ),
            (
                "containers[\"extra\"]",
                Box::new(|v| {
                    v.pointer_mut("/spec/template/spec/containers")
                        .unwrap()
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "extra", "image": "x"}))
                }),
            ),
            (
                "annotations[\"claworc.io/known-hosts-data\"]",
                Box::new(|v| {
                    v["spec"]["template"]["metadata"]["annotations"]["claworc.io/known-hosts-data"] =
                        json!("evil.com ssh-ed25519 AAAA")
                }),
            ),
            (
                "labels[\"claworc.io/egress\"]",
                Box::new(|v| v["spec"]["template"]["metadata"]["labels"]["claworc.io/egress"] = json!("open")),
            ),
            (
                "securityContext.seccompProfile",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["securityContext"].as_object_mut().unwrap().remove("seccompProfile");
                }),
            ),
        ];
        for (field, edit) in cases {
            denied(&edited(edit), field, "not what claworc's mutation makes");
        }
    }

    #[test]
    fn a_volumes_types_are_read_from_its_fields_and_anything_else_is_unreadable() {
        use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume};
        let vol = Volume { name: "v".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() };
        assert_eq!(field_names(&vol), Some(vec!["emptyDir", "name"]));
        assert_eq!(field_names(&"not a struct"), None);
    }

    #[test]
    fn restricted_volume_types_only() {
        for kind in ["gitRepo", "nfs", "iscsi", "flexVolume", "cephfs", "rbd", "glusterfs", "fc", "hostPath"] {
            let d = edited(|v| {
                v.pointer_mut("/spec/template/spec/volumes")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "x", (kind): {}}))
            });
            denied(
                &d,
                &format!("volumes[\"x\"].{kind}"),
                if kind == "hostPath" { "PersistentVolumeClaim" } else { "not allowed under Pod Security" },
            );
        }
        let d = edited(|v| {
            v.pointer_mut("/spec/template/spec/volumes")
                .unwrap()
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "claworc-mine", "emptyDir": {}}))
        });
        denied(&d, "volumes[\"claworc-mine\"]", "rename the volume");
    }

    #[test]
    fn baseline_controls_are_enforced() {
        let pod = |key: &str, value: serde_json::Value| {
            edited(|v| v.pointer_mut("/spec/template/spec/securityContext").unwrap()[key] = value)
        };
        denied(
            &pod("appArmorProfile", json!({"type": "Unconfined"})),
            "securityContext.appArmorProfile.type",
            "RuntimeDefault",
        );
        denied(&pod("seLinuxOptions", json!({"type": "spc_t"})), "seLinuxOptions.type", "container_t");
        denied(&pod("seLinuxOptions", json!({"user": "system_u"})), "seLinuxOptions.user", "remove it");
        denied(&pod("seLinuxOptions", json!({"role": "sysadm_r"})), "seLinuxOptions.role", "remove it");
        denied(
            &pod("sysctls", json!([{"name": "kernel.msgmax", "value": "1"}])),
            "sysctls[\"kernel.msgmax\"]",
            "remove it",
        );
        denied(&pod("runAsGroup", json!(0)), "securityContext.runAsGroup: 0", "non-zero GID");
        denied(&pod("fsGroup", json!(0)), "securityContext.fsGroup: 0", "non-zero GID");
        denied(&pod("supplementalGroups", json!([5, 0])), "supplementalGroups: 0", "remove it");
        let ok = pod("sysctls", json!([{"name": "net.ipv4.tcp_syncookies", "value": "1"}]));
        assert!(before_injection(&ok).is_ok(), "{:?}", before_injection(&ok).err());
        let container = |key: &str, value: serde_json::Value| {
            edited(|v| v.pointer_mut("/spec/template/spec/containers/0/securityContext").unwrap()[key] = value)
        };
        denied(
            &container("appArmorProfile", json!({"type": "Unconfined"})),
            "containers[\"work\"].securityContext.appArmorProfile",
            "RuntimeDefault",
        );
        denied(&container("procMount", json!("Unmasked")), "procMount: Unmasked", "Default");
        denied(&container("runAsGroup", json!(0)), "containers[\"work\"].securityContext.runAsGroup", "non-zero GID");
        denied(
            &container("seLinuxOptions", json!({"type": "spc_t"})),
            "containers[\"work\"].securityContext.seLinuxOptions.type",
            "container_t",
        );
        denied(&container("windowsOptions", json!({"hostProcess": true})), "hostProcess", "remove it");
        let annotated = edited(|v| {
            v["spec"]["template"]["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/claworc-sshd"] =
                json!("unconfined")
        });
        denied(&annotated, "container.apparmor.security.beta.kubernetes.io/claworc-sshd", "runtime/default");
        // The sidecar is checked like any container.
        let sidecar = edited(|v| {
            v.pointer_mut("/spec/template/spec/initContainers/1/securityContext").unwrap()["appArmorProfile"] =
                json!({"type": "Unconfined"})
        });
        denied(&sidecar, "initContainers[\"claworc-sshd\"].securityContext.appArmorProfile", "RuntimeDefault");
    }

    #[test]
    fn the_sidecars_paths_and_volumes_are_its_own() {
        let mount = |name: &'static str, path: &'static str| {
            edited(move |v| {
                v.pointer_mut("/spec/template/spec/containers/0/volumeMounts")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": name, "mountPath": path}))
            })
        };
        for path in ["/etc/claworc/ssh/", "/etc/claworc", "/run/claworc/.ssh", "//run/claworc", "/etc/claworc/ssh/."] {
            denied(&mount("home", path), &format!("volumeMounts[{path:?}]"), "mount the volume elsewhere");
        }
        denied(&mount("home", "/home/../etc/claworc"), "volumeMounts", "must not contain \"..\"");
        for volume in ["claworc-ssh-keys", "claworc-run", "claworc-no-token", "claworc-home"] {
            denied(&mount(volume, "/data"), volume, "belongs to the claworc-sshd sidecar");
        }
    }

    #[test]
    fn the_injected_containers_names_are_reserved() {
        for name in ["claworc-sshd", "claworc-sshd-install"] {
            let d = edited(|v| v.pointer_mut("/spec/template/spec/containers/1").unwrap()["name"] = json!(name));
            denied(&d, &format!("containers[{name:?}]: the name {name} is reserved"), "rename the container");
        }
    }

    #[test]
    fn a_name_is_required() {
        let d = edited(|v| {
            v["metadata"].as_object_mut().unwrap().remove("name");
            v["metadata"]["generateName"] = json!("box-");
        });
        denied(&d, "metadata.name: missing", "set metadata.name");
        assert_eq!(before_injection(&d).unwrap_err().len(), 1);
    }

    #[test]
    fn an_adjacent_release_may_change_only_the_sidecars_release_fields() {
        let d = deployment(json!({"claworc.io/host-key-fingerprint": format!("SHA256:{}", "a".repeat(43))}));
        let s = inject::settings(&d).unwrap();
        let old = Config { sidecar_image: "ghcr.io/claworc/sshd:0.0.9".into(), version: "0.0.9".into() };
        let by_old = inject::inject(&d, &s, &old);
        let new = Config::default();
        assert_eq!(validate(&by_old, &new), Verdict::default(), "the new release accepts the old one's template");
        assert_eq!(validate(&inject::inject(&d, &s, &new), &old), Verdict::default(), "and the other way round");
        // Still a full re-check of everything else.
        let mut stripped = serde_json::to_value(&by_old).unwrap();
        stripped.pointer_mut("/spec/template/spec/containers/0/securityContext").unwrap()["allowPrivilegeEscalation"] =
            json!(null);
        let stripped: Deployment = serde_json::from_value(stripped).unwrap();
        assert!(
            validate(&stripped, &new).denials.iter().any(|m| m.contains("allowPrivilegeEscalation")),
            "{:?}",
            validate(&stripped, &new)
        );
        // The same release must match exactly: the image is not a release field of its own.
        let mut swapped = inject::inject(&d, &s, &new);
        swapped.spec.template.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].image = Some("evil:1".into());
        assert!(!validate(&swapped, &new).denials.is_empty());
        // Another release cannot run the sidecar in another image: it is the target's.
        let mut other_image = by_old.clone();
        other_image.spec.template.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[1].image =
            Some("evil:1".into());
        assert!(
            validate(&other_image, &new).denials.iter().any(|m| m.contains("initContainers[\"claworc-sshd\"].image")),
            "{:?}",
            validate(&other_image, &new)
        );
    }

    #[test]
    fn an_opted_out_template_must_carry_no_marker() {
        let mut d = injected(&deployment(json!({})));
        d.metadata.labels = None;
        let v = opted_out(&d);
        assert!(
            v.denials.iter().any(|m| m.contains("claworc markers remain") && m.contains("claworc.io/injected")),
            "{v:?}"
        );
        d.spec.template = inject::remove(&d);
        assert_eq!(opted_out(&d), Verdict::default());
    }

    #[test]
    fn unwise_choices_are_warned_about() {
        let d = edited(|v| v["spec"]["strategy"] = json!({"type": "RollingUpdate"}));
        let v = verdict(&d);
        assert!(v.denials.is_empty(), "{:?}", v.denials);
        assert!(v.warnings.iter().any(|w| w.contains("spec.strategy") && w.contains("Recreate")), "{:?}", v.warnings);
        assert!(v.warnings.iter().any(|w| w.contains("host-key-fingerprint")), "{:?}", v.warnings);
    }
}
