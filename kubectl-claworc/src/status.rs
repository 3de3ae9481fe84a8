//! `list` and `status`: readiness, injection by the webhook, key ages, the host key
//! fingerprint and warnings. [`instance_report`] builds the report of one instance;
//! the SSH side extends `status` with live checks in [`status`] (marked place).

use std::collections::BTreeMap;
use std::time::Duration;

use claworc_contract::{annotations as ann, names};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::input::{format_duration, short_age};
use crate::keys;
use crate::keystore::{InstanceId, KeyStore};
use crate::output::{self, Format};
use crate::transport::Login;

/// `-o` of `list`: JSON, YAML or a wide table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Json,
    Yaml,
    Wide,
}

/// What `kubectl claworc list` was asked for.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub output: Option<ListFormat>,
    /// Warn about client keys older than this.
    pub max_key_age: Duration,
    /// Every namespace (`-A`), with a NAMESPACE column.
    pub all_namespaces: bool,
}

/// What `kubectl claworc status` was asked for.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    pub name: String,
    pub output: Option<Format>,
    /// Warn about client keys older than this.
    pub max_key_age: Duration,
    /// For the SSH check.
    pub login: Login,
}

/// What `status` and `list` report about one instance.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    pub name: String,
    pub namespace: String,
    /// `available/desired`, e.g. `1/1`.
    pub ready: String,
    pub available: bool,
    /// The webhook version from the pod template annotation `claworc.io/injected`.
    pub injected: Option<String>,
    pub image: Option<String>,
    pub forward_ports: Vec<u16>,
    pub ssh_secret: String,
    /// When the current client key was put in place (RFC 3339).
    pub client_key_since: Option<String>,
    /// Its age, e.g. `12d`.
    pub client_key_age: Option<String>,
    /// `claworc.io/keys-rotated-at`.
    pub last_rotation: Option<String>,
    /// `claworc.io/host-key-fingerprint`.
    pub host_key_fingerprint: Option<String>,
    /// Whether the key store holds a client key / a host key pin for this instance.
    pub local_client_key: bool,
    pub host_key_pinned: bool,
    pub warnings: Vec<String>,
    /// Live checks (e.g. an SSH login), filled by the SSH side.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// One live check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The report of the Deployment `d` (an opted-in one) with its Secret (if found).
pub fn build_report(
    d: &Deployment,
    secret: Option<&Secret>,
    ks: Option<&KeyStore>,
    cluster: &str,
    max_key_age: Duration,
    now: Timestamp,
) -> InstanceReport {
    let name = d.metadata.name.clone().unwrap_or_default();
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let annotations = d.metadata.annotations.as_ref().unwrap_or(&empty);
    let settings = claworc_contract::Settings::from_annotations(&name, annotations).ok();
    let want = d.spec.replicas.unwrap_or(1);
    let avail = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    let injected = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref()?.get(names::ANNOTATION_INJECTED).cloned());
    let image = d.spec.template.spec.as_ref().and_then(|p| p.containers.first()?.image.clone());
    let ssh_secret =
        settings.as_ref().map(|s| s.ssh_secret.clone()).unwrap_or_else(|| names::default_secret_name(&name));
    let last_rotation = annotations.get(ann::KEYS_ROTATED_AT).cloned();
    let host_key_fingerprint = annotations.get(ann::HOST_KEY_FINGERPRINT).cloned();
    let mut warnings = Vec::new();

    let since: Option<Timestamp> = last_rotation
        .as_deref()
        .and_then(|t| t.parse().ok())
        .or_else(|| secret.and_then(|s| s.metadata.creation_timestamp.as_ref()).map(|t| t.0));
    let age = since.map(|s| Duration::from_secs(now.as_second().saturating_sub(s.as_second()).max(0) as u64));
    if let Some(age) = age
        && age > max_key_age
    {
        warnings.push(format!(
            "the client key is {} old, older than the rotation policy ({}): run `kubectl claworc rotate-keys {name}`",
            short_age(age),
            format_duration(max_key_age)
        ));
    }
    match secret {
        None => warnings.push(format!(
            "secret {ssh_secret} not found: sshd cannot start; re-create the instance (`kubectl claworc delete {name}` then `create`)"
        )),
        Some(s) => {
            let data = s.data.as_ref();
            let get = |k: &str| data.and_then(|d| d.get(k)).and_then(|b| String::from_utf8(b.0.clone()).ok());
            if get(names::SECRET_AUTHORIZED_KEYS).map(|a| keys::authorized_keys(&a).is_empty()).unwrap_or(true) {
                warnings.push(format!("secret {ssh_secret} has no usable {}: nobody can log in", names::SECRET_AUTHORIZED_KEYS));
            }
            match get(names::SECRET_HOST_KEY_PUB).and_then(|p| keys::parse_public(&p).ok()) {
                None => warnings.push(format!("secret {ssh_secret} has no usable {}", names::SECRET_HOST_KEY_PUB)),
                Some(pk) => {
                    if host_key_fingerprint.as_deref().is_some_and(|f| f != keys::fingerprint(&pk)) {
                        warnings.push(format!(
                            "annotation {} does not match the host key in secret {ssh_secret}",
                            ann::HOST_KEY_FINGERPRINT
                        ));
                    }
                }
            }
        }
    }
    if injected.is_none() {
        warnings.push(format!(
            "the webhook did not inject the sidecar (no {} on the pod template): is claworc-webhook installed, and the namespace not excluded?",
            names::ANNOTATION_INJECTED
        ));
    }
    if host_key_fingerprint.is_none() {
        warnings
            .push(format!("no {} annotation: clients cannot pin the host key from the API", ann::HOST_KEY_FINGERPRINT));
    }

    let (mut local_client_key, mut host_key_pinned) = (false, false);
    if let Some(ks) = ks {
        let id = InstanceId::new(cluster, &namespace, &name);
        local_client_key = ks.load_client_key(&id).ok().flatten().is_some();
        if let Ok(Some(pin)) = ks.lookup_host_key(&id) {
            host_key_pinned = true;
            if host_key_fingerprint.as_deref().is_some_and(|f| f != keys::fingerprint(&pin)) {
                warnings.push(format!(
                    "the locally pinned host key ({}) differs from {}: if nobody rotated it, do not connect",
                    keys::fingerprint(&pin),
                    ann::HOST_KEY_FINGERPRINT
                ));
            }
        }
        if ks.load_pending_key(&id).ok().flatten().is_some() {
            warnings.push(format!("a key rotation did not finish: re-run `kubectl claworc rotate-keys {name}`"));
        }
    }

    InstanceReport {
        ready: format!("{avail}/{want}"),
        available: avail >= want && want > 0,
        injected,
        image,
        forward_ports: settings.map(|s| s.forward_ports).unwrap_or_else(|| ann::DEFAULT_FORWARD_PORTS.to_vec()),
        ssh_secret,
        client_key_since: since.map(|s| s.to_string()),
        client_key_age: age.map(short_age),
        last_rotation,
        host_key_fingerprint,
        local_client_key,
        host_key_pinned,
        warnings,
        checks: Vec::new(),
        name,
        namespace,
    }
}

/// The report of one instance, from the API and the local key store.
pub async fn instance_report(ctx: &Ctx, name: &str, max_key_age: Duration) -> Result<InstanceReport> {
    crate::input::validate_name("instance name", name)?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let what = format!("instance {name:?} in namespace {:?}", ctx.namespace);
    let d = deployments.get(name).await.map_err(|e| Error::kube(e, &what))?;
    if !claworc_contract::instance::opted_in(&d) {
        return Err(Error::not_found(format!(
            "{what} not found: deployment {name} has no label {}={}",
            names::LABEL_SSH,
            names::SSH_ENABLED
        )));
    }
    let settings_secret = ann::ssh_secret(d.metadata.annotations.as_ref(), name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secret =
        secrets.get_opt(&settings_secret).await.map_err(|e| Error::kube(e, format!("secret {settings_secret:?}")))?;
    let ks = KeyStore::open_default().ok();
    Ok(build_report(&d, secret.as_ref(), ks.as_ref(), &ctx.cluster, max_key_age, Timestamp::now()))
}

pub async fn status(ctx: &Ctx, args: &StatusOptions) -> Result<()> {
    let mut report = instance_report(ctx, &args.name, args.max_key_age).await?;
    // Live check: an SSH login through the API, running `true`.
    let (ok, detail) = crate::session::ssh_check(ctx, &args.name, &args.login).await;
    report.checks.push(Check { name: "ssh".into(), ok, detail });
    match args.output {
        Some(f) => output::print(&report, f),
        None => output::stdout(&render_status(&report)),
    }
    Ok(())
}

/// The human-readable `status`.
pub fn render_status(r: &InstanceReport) -> String {
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<18}{v}\n"));
    line("Name:", r.name.clone());
    line("Namespace:", r.namespace.clone());
    line("Ready:", format!("{}{}", r.ready, if r.available { "" } else { " (not available)" }));
    line("Injected:", or(&r.injected, "no"));
    line("Image:", or(&r.image, "-"));
    line("Forward ports:", r.forward_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
    line("Secret:", r.ssh_secret.clone());
    line("Client key age:", or(&r.client_key_age, "unknown"));
    line("Last rotation:", or(&r.last_rotation, "never"));
    line("Host key:", or(&r.host_key_fingerprint, "unknown"));
    line("Local key:", if r.local_client_key { "yes".into() } else { "no (not created from this machine?)".into() });
    line("Host key pinned:", if r.host_key_pinned { "yes".into() } else { "no".into() });
    for c in &r.checks {
        line(&format!("Check {}:", c.name), format!("{} {}", if c.ok { "ok" } else { "FAILED" }, c.detail));
    }
    if r.warnings.is_empty() {
        line("Warnings:", "none".into());
    } else {
        line("Warnings:", String::new());
        for w in &r.warnings {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    out
}

pub async fn list(ctx: &Ctx, args: &ListOptions) -> Result<()> {
    let (deployments, scope): (Api<Deployment>, String) = if args.all_namespaces {
        (Api::all(ctx.client.clone()), "all namespaces".into())
    } else {
        (Api::namespaced(ctx.client.clone(), &ctx.namespace), format!("namespace {}", ctx.namespace))
    };
    let selector = format!("{}={}", names::LABEL_SSH, names::SSH_ENABLED);
    let ds = deployments
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(e, format!("deployments in {scope}")))?
        .items;
    let ks = KeyStore::open_default().ok();
    let now = Timestamp::now();
    let mut reports = Vec::with_capacity(ds.len());
    for d in &ds {
        // Each instance's own Secret, not every Secret of the namespace.
        let name = d.metadata.name.clone().unwrap_or_default();
        let namespace = d.metadata.namespace.clone().unwrap_or_else(|| ctx.namespace.clone());
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let secret_name = ann::ssh_secret(d.metadata.annotations.as_ref(), &name);
        let secret = secrets
            .get_opt(&secret_name)
            .await
            .map_err(|e| Error::kube(e, format!("secret {secret_name:?} in namespace {namespace:?}")))?;
        reports.push(build_report(d, secret.as_ref(), ks.as_ref(), &ctx.cluster, args.max_key_age, now));
    }
    reports.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    match args.output {
        Some(ListFormat::Json) => output::print(&reports, Format::Json),
        Some(ListFormat::Yaml) => output::print(&reports, Format::Yaml),
        wide => {
            if reports.is_empty() {
                eprintln!("No instances in {scope}.");
                return Ok(());
            }
            output::stdout(&render_list(&reports, wide == Some(ListFormat::Wide), args.all_namespaces));
        }
    }
    Ok(())
}

/// The `list` table; with `namespaces`, a NAMESPACE column first (as `kubectl get -A`).
pub fn render_list(reports: &[InstanceReport], wide: bool, namespaces: bool) -> String {
    let mut header = if namespaces { vec!["NAMESPACE"] } else { vec![] };
    header.extend(["NAME", "READY", "INJECTED", "KEY-AGE", "WARNINGS"]);
    if wide {
        header.extend(["LAST-ROTATION", "HOST-KEY", "PORTS", "IMAGE"]);
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let mut row = if namespaces { vec![r.namespace.clone()] } else { vec![] };
            row.extend([
                r.name.clone(),
                r.ready.clone(),
                r.injected.clone().unwrap_or_else(|| "no".into()),
                r.client_key_age.clone().unwrap_or_else(|| "-".into()),
                r.warnings.len().to_string(),
            ]);
            if wide {
                row.extend([
                    r.last_rotation.clone().unwrap_or_else(|| "never".into()),
                    r.host_key_fingerprint.clone().unwrap_or_else(|| "-".into()),
                    r.forward_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
                    r.image.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            row
        })
        .collect();
    output::table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{InstanceSpec, build};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn fixture() -> (Deployment, Secret, keys::PrivateKey) {
        let spec = InstanceSpec::new("dev", Some("ns"), "img", &[], &[], &[]).unwrap();
        let (client, host) = (keys::generate("c").unwrap(), keys::generate("h").unwrap());
        let o = build(&spec, client.public_key(), &host).unwrap();
        let mut secret = o.secret.clone();
        secret.data = Some(
            secret.string_data.take().unwrap().into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect(),
        );
        secret.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        (o.deployment, secret, host)
    }

    #[test]
    fn warns_about_missing_injection_secret_and_old_keys() {
        let (mut d, secret, _) = fixture();
        let now: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        let max = Duration::from_secs(90 * 86_400);
        let r = build_report(&d, None, None, "c", max, now);
        assert_eq!(r.ready, "0/1");
        assert!(r.warnings.iter().any(|w| w.contains("secret dev-ssh not found")), "{:?}", r.warnings);
        assert!(r.warnings.iter().any(|w| w.contains("did not inject")));
        let r = build_report(&d, Some(&secret), None, "c", max, now);
        assert_eq!(r.client_key_age.as_deref(), Some("120d"));
        assert!(r.warnings.iter().any(|w| w.contains("rotate-keys dev")), "{:?}", r.warnings);

        let mut a = d.metadata.annotations.clone().unwrap();
        a.insert(ann::KEYS_ROTATED_AT.into(), "2026-04-30T00:00:00Z".into());
        d.metadata.annotations = Some(a);
        d.spec.template.metadata.as_mut().unwrap().annotations =
            Some(BTreeMap::from([(names::ANNOTATION_INJECTED.to_string(), "0.1.0".to_string())]));
        d.status = Some(DeploymentStatus { available_replicas: Some(1), ..Default::default() });
        let r = build_report(&d, Some(&secret), None, "c", max, now);
        assert_eq!(r.warnings, Vec::<String>::new());
        assert_eq!(r.client_key_age.as_deref(), Some("1d"));
        assert_eq!(r.injected.as_deref(), Some("0.1.0"));
        assert!(r.available);
        let text = render_status(&r);
        assert!(text.contains("Warnings:         none"), "{text}");
        let table = render_list(std::slice::from_ref(&r), true, false);
        assert!(table.starts_with("NAME  READY  INJECTED  KEY-AGE  WARNINGS  LAST-ROTATION"), "{table}");
        let table = render_list(&[r], false, true);
        assert!(table.starts_with("NAMESPACE  NAME  READY"), "{table}");
        assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("ns         dev ")), "{table}");
    }

    #[test]
    fn notices_a_mismatched_pin() {
        let (d, secret, _) = fixture();
        let tmp = tempfile::tempdir().unwrap();
        let ks = KeyStore::at(tmp.path());
        ks.pin_host_key(&InstanceId::new("c", "ns", "dev"), keys::generate("x").unwrap().public_key()).unwrap();
        let r = build_report(&d, Some(&secret), Some(&ks), "c", Duration::from_secs(1 << 40), Timestamp::now());
        assert!(r.host_key_pinned);
        assert!(r.warnings.iter().any(|w| w.contains("do not connect")), "{:?}", r.warnings);
    }
}
