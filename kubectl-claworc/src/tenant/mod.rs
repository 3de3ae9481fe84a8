//! `tenant create|update|kubeconfig|list|delete`.
//!
//! A tenant is a namespace labelled `claworc.io/tenant` and Pod Security
//! `restricted` (enforce, audit, warn), with a ResourceQuota (no LoadBalancer or
//! NodePort Services), a LimitRange (defaults so pods fit the quota), a default-deny
//! NetworkPolicy and the claworc ones, a ServiceAccount bound to a least-privilege
//! Role, and a kubeconfig with a token from the TokenRequest API. The cluster-scoped
//! guard policies ([`objects::GUARD_POLICIES`]) are applied (server-side apply, so
//! once and idempotently) by every `tenant create` and bind to all tenant namespaces.
//! The objects are built in [`objects`]; the token record is [`tokens`].
//!
//! Every change is recorded as an Event about the tenant's Namespace (reason
//! `Tenant…`, the note says what and who), in the tenant's namespace; that of
//! `tenant delete` in `default`, the namespace of events about cluster-scoped
//! objects, since the tenant's namespace goes away with its events.
//!
//! `tenant kubeconfig --rotate` deletes and recreates the ServiceAccount: every token
//! issued earlier is bound to the old ServiceAccount's UID and stops working (within
//! about 10 seconds: the API server caches successful token authentications).
//! The trade-off: *every* holder of an earlier kubeconfig (other CI pipelines,
//! colleagues) is cut off too. Without `--rotate`, a new kubeconfig is issued and
//! earlier tokens stay valid until they expire.

pub mod objects;
pub mod tokens;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use claworc_contract::names;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::Cluster;
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::events;
use crate::input::validate_name;
use crate::output::{self, Format};
use objects::{Action, Quota, QuotaChange, TENANT_SA};
use tokens::TokenRecord;

/// Field manager of the plugin's server-side applies.
const FIELD_MANAGER: &str = "kubectl-claworc";

/// What `kubectl claworc tenant create` was asked for.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub name: String,
    /// Lifetime of the token in the kubeconfig.
    pub ttl: Duration,
    /// Where to write the kubeconfig; `None` for `<NAME>.kubeconfig`.
    pub output: Option<PathBuf>,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub storage: String,
}

/// What `kubectl claworc tenant update` was asked for: `None` leaves a limit as it is.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    pub name: String,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub pods: Option<u32>,
    pub storage: Option<String>,
}

/// What `kubectl claworc tenant kubeconfig` was asked for.
#[derive(Debug, Clone)]
pub struct KubeconfigOptions {
    pub name: String,
    pub ttl: Duration,
    /// Revoke every earlier token.
    pub rotate: bool,
    pub output: Option<PathBuf>,
}

/// What `kubectl claworc tenant list` was asked for.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub output: Option<Format>,
    /// Warn about tokens that expire within this time.
    pub warn_before: Duration,
}

/// What `kubectl claworc tenant delete` was asked for.
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub name: String,
    /// Do not ask for confirmation.
    pub yes: bool,
}

fn ttl_seconds(ttl: Duration) -> Result<i64> {
    let s = ttl.as_secs();
    // The API's minimum is 10 minutes.
    if s < 600 {
        return Err(Error::invalid("--ttl: the TokenRequest API needs at least 10m, e.g. --ttl 24h"));
    }
    i64::try_from(s).map_err(|_| Error::invalid("--ttl is too large"))
}

/// `--cpu`, `--memory`, `--storage`: a Kubernetes quantity such as 4, 500m, 8Gi.
fn check_quantity(flag: &str, v: &str) -> Result<()> {
    let millis = v.strip_suffix('m').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if crate::input::is_quantity(v) || millis {
        Ok(())
    } else {
        Err(Error::invalid(format!("{flag} {v:?} is not a quantity such as 4, 500m, 8Gi")))
    }
}

fn check_change(change: &QuotaChange) -> Result<()> {
    for (flag, v) in [("--cpu", &change.cpu), ("--memory", &change.memory), ("--storage", &change.storage)] {
        if let Some(v) = v {
            check_quantity(flag, v)?;
        }
    }
    Ok(())
}

/// The kubeconfig file to write: `--output`, else `<NAME>.kubeconfig`. An existing
/// file is only replaced if it is a kubeconfig of this tenant (never, say,
/// `~/.kube/config`).
fn output_path(name: &str, output: &Option<PathBuf>) -> Result<PathBuf> {
    let path = output.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.kubeconfig")));
    if path.exists() && !is_tenant_kubeconfig(&path, name) {
        return Err(Error::already_exists(format!(
            "--output {}: the file exists and is not a kubeconfig of tenant {name}: pick another file or remove it",
            path.display()
        )));
    }
    Ok(path)
}

fn is_tenant_kubeconfig(path: &Path, tenant: &str) -> bool {
    kube::config::Kubeconfig::read_from(path).is_ok_and(|k| {
        k.current_context.as_deref() == Some(objects::kubeconfig_name(tenant).as_str())
            && k.clusters.len() == 1
            && k.auth_infos.len() == 1
    })
}

/// The cluster entry of the tenant kubeconfig: the admin's entry as it is, with a
/// CA file inlined (the file is not where the kubeconfig goes).
fn tenant_cluster(ctx: &Ctx) -> Result<Cluster> {
    let mut c = ctx.cluster_entry().cloned().unwrap_or_default();
    if c.server.is_none() {
        c.server = Some(ctx.config.cluster_url.to_string());
    }
    if let Some(file) = c.certificate_authority.take()
        && c.certificate_authority_data.is_none()
    {
        let path = PathBuf::from(file);
        let pem =
            std::fs::read(&path).map_err(|e| Error::io(e, &path).context("the cluster's certificate-authority"))?;
        c.certificate_authority_data = Some(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    Ok(c)
}

async fn create_obj<K>(ctx: &Ctx, api: &Api<K>, obj: &K, what: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    ctx.debug(format!("creating {what}"));
    api.create(&PostParams::default(), obj).await.map(|_| ()).map_err(|e| Error::kube(e, what))
}

/// Applies the guard policies and their bindings (server-side apply: creates them
/// the first time, brings them up to date after an upgrade, changes nothing
/// otherwise).
async fn install_guards(ctx: &Ctx) -> Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(ctx.client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(ctx.client.clone());
    for gp in objects::GUARD_POLICIES {
        let name = gp.name;
        let no_api = |e: kube::Error, what: &str| {
            if is_not_found(&e) {
                Error::other(format!(
                    "{what} {name:?}: this cluster has no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy API \
                     (Kubernetes 1.30 or later is needed for the tenant guard rails)"
                ))
            } else {
                Error::kube(e, format!("{what} {name:?}"))
            }
        };
        ctx.debug(format!("applying validatingadmissionpolicy and binding {name}"));
        policies
            .patch(name, &pp, &Patch::Apply(objects::guard_policy(gp)))
            .await
            .map_err(|e| no_api(e, "validatingadmissionpolicy"))?;
        bindings
            .patch(name, &pp, &Patch::Apply(objects::guard_binding(gp)))
            .await
            .map_err(|e| no_api(e, "validatingadmissionpolicybinding"))?;
    }
    Ok(())
}

/// Did a dry run come back refused by `policy`? (The quota also refuses a NodePort:
/// only the policy's refusal counts.)
fn refused_by(r: std::result::Result<(), kube::Error>, policy: &str) -> Result<bool> {
    match r {
        Err(kube::Error::Api(s)) if s.message.contains(policy) => Ok(true),
        Err(kube::Error::Api(s)) if s.message.contains("exceeded quota") => Ok(false),
        Ok(()) => Ok(false),
        Err(e) => Err(Error::kube(e, "the guard policy check (a dry run)")),
    }
}

/// Proves the guard policies are in force in the tenant's namespace: server-side
/// dry runs of a Service and a Secret they must refuse (a policy takes a moment to
/// reach the API server after it is first created; on an API server with the
/// ValidatingAdmissionPolicy admission plugin disabled it never does).
async fn check_guards(ctx: &Ctx, tenant: &str) -> Result<()> {
    let pp = PostParams { dry_run: true, ..Default::default() };
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), tenant);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), tenant);
    let (service, secret) = (objects::guard_probe_service(tenant), objects::guard_probe_secret(tenant));
    for _ in 0..50 {
        let svc = services.create(&pp, &service).await.map(|_| ());
        let sec = secrets.create(&pp, &secret).await.map(|_| ());
        if refused_by(svc, names::TENANT_SERVICES_POLICY)? && refused_by(sec, names::TENANT_SECRETS_POLICY)? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::other(format!(
        "the ValidatingAdmissionPolicies {} and {} are not enforced in namespace {tenant} after 10s: check that the \
         API server has the ValidatingAdmissionPolicy admission plugin enabled (it is by default since Kubernetes \
         1.30) and that `kubectl get validatingadmissionpolicybindings` lists both",
        names::TENANT_SERVICES_POLICY,
        names::TENANT_SECRETS_POLICY
    )))
}

/// Records `action` as an Event in `in_namespace` and says so on stderr.
async fn record(ctx: &Ctx, in_namespace: &str, tenant: &str, action: Action, what: &str) {
    events::record(ctx, in_namespace, &objects::event_record(in_namespace, tenant, action), what).await;
}

pub async fn create(ctx: &Ctx, args: &CreateOptions) -> Result<()> {
    validate_name("tenant name", &args.name)?;
    let ttl = ttl_seconds(args.ttl)?;
    let quota =
        Quota { cpu: args.cpu.clone(), memory: args.memory.clone(), pods: args.pods, storage: args.storage.clone() };
    check_change(&QuotaChange::from(&quota))?;
    let out = output_path(&args.name, &args.output)?;
    let cluster = tenant_cluster(ctx)?;
    let name = &args.name;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if namespaces.get_opt(name).await.map_err(|e| Error::kube(e, format!("namespace {name:?}")))?.is_some() {
        return Err(Error::already_exists(format!(
            "namespace {name:?} already exists: for a new kubeconfig of an existing tenant use `kubectl claworc tenant kubeconfig {name}`"
        )));
    }
    // The guards first: the namespace is never without them.
    install_guards(ctx).await.map_err(|e| e.context(format!("tenant create {name}")))?;
    create_obj(ctx, &namespaces, &objects::namespace(name), &format!("namespace {name:?}")).await?;
    let result = async {
        let c = ctx.client.clone();
        create_obj(ctx, &Api::namespaced(c.clone(), name), &objects::resource_quota(name, &quota), "resourcequota")
            .await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &objects::limit_range(name), "limitrange").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &objects::default_deny(name), "networkpolicy").await?;
        for np in objects::claworc_policies(name) {
            create_obj(ctx, &Api::namespaced(c.clone(), name), &np, "networkpolicy").await?;
        }
        create_obj(ctx, &Api::namespaced(c.clone(), name), &objects::service_account(name), "serviceaccount").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &objects::role(name), "role").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &objects::role_binding(name), "rolebinding").await?;
        check_guards(ctx, name).await?;
        let (token, issued) = issue_token(ctx, name, ttl).await?;
        write_kubeconfig(&out, &objects::kubeconfig(name, cluster, &token))?;
        Ok::<_, Error>(issued)
    }
    .await;
    match result {
        Ok(issued) => {
            record(
                ctx,
                name,
                name,
                Action::Create,
                &format!(
                    "tenant {name} created with quota cpu={} memory={} pods={} storage={}; kubeconfig token expires {}",
                    quota.cpu, quota.memory, quota.pods, quota.storage, issued.expires
                ),
            )
            .await;
            output::line(format_args!(
                "tenant {name} created; kubeconfig written to {} (token expires {})",
                out.display(),
                issued.expires
            ));
            Ok(())
        }
        Err(e) => {
            let cleanup = namespaces.delete(name, &DeleteParams::background()).await;
            let tail = match cleanup {
                Ok(_) => "; the namespace was deleted again".to_string(),
                Err(_) => format!("; could not delete namespace {name}: run `kubectl delete namespace {name}`"),
            };
            Err(e.context(format!("tenant create {name}")).context_suffix(&tail))
        }
    }
}

/// A token for the tenant ServiceAccount (TokenRequest API), recorded in the
/// ServiceAccount's annotation before it is handed out.
async fn issue_token(ctx: &Ctx, tenant: &str, ttl: i64) -> Result<(String, TokenRecord)> {
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), tenant);
    let what = format!("serviceaccounts/token of {TENANT_SA} in namespace {tenant:?}");
    let resp: TokenRequest = sas
        .create_subresource("token", TENANT_SA, &PostParams::default(), &objects::token_request(tenant, ttl))
        .await
        .map_err(|e| Error::kube(e, &what))?;
    let status = resp.status.ok_or_else(|| Error::other("the TokenRequest API returned no token"))?;
    let token =
        status.token.filter(|t| !t.is_empty()).ok_or_else(|| Error::other("the TokenRequest API returned no token"))?;
    // Whole seconds, as the API's own times (and the token's `iat`/`exp`).
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let expires = status
        .expiration_timestamp
        .map(|t| t.0)
        .ok_or_else(|| Error::other("the TokenRequest API returned no expiration time"))?;
    let granted = expires.as_second() - now.as_second();
    if granted + 60 < ttl {
        eprintln!(
            "warning: the API server shortened the token lifetime to {} (its --service-account-max-token-expiration)",
            crate::input::format_duration(Duration::from_secs(granted.max(0) as u64))
        );
    }
    let issued = TokenRecord { issued: now.to_string(), expires: expires.to_string() };
    record_token(ctx, tenant, &issued).await?;
    Ok((token, issued))
}

/// Adds `issued` to the ServiceAccount's token record (optimistic concurrency: the
/// patch carries the resourceVersion it read, and is retried on a conflict).
async fn record_token(ctx: &Ctx, tenant: &str, issued: &TokenRecord) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), tenant);
    let what = format!("serviceaccount {TENANT_SA} in namespace {tenant:?}");
    for _ in 0..5 {
        let sa = sas.get(TENANT_SA).await.map_err(|e| Error::kube(e, &what))?;
        let existing = tokens::parse(sa.annotations().get(names::ANNOTATION_TENANT_TOKENS).map(String::as_str));
        let value = tokens::with(&existing, issued.clone(), Timestamp::now());
        let patch = ServiceAccount {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(names::ANNOTATION_TENANT_TOKENS.to_string(), value)])),
                resource_version: sa.metadata.resource_version.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        match sas.patch(TENANT_SA, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(Error::kube(e, format!("recording the token expiry on {what}"))),
        }
    }
    Err(Error::other(format!("recording the token expiry on {what}: it kept changing; try again")))
}

fn write_kubeconfig(path: &Path, kubeconfig: &kube::config::Kubeconfig) -> Result<()> {
    let text =
        serde_yaml_ng::to_string(kubeconfig).map_err(|e| Error::other(format!("kubeconfig: {e}")).with_source(e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(e, parent))?;
    }
    crate::keystore::write_atomic(path, text.as_bytes())
}

async fn tenant_namespace(ctx: &Ctx, name: &str) -> Result<Namespace> {
    validate_name("tenant name", name)?;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let ns = namespaces.get(name).await.map_err(|e| Error::kube(e, format!("tenant {name:?}")))?;
    if !ns.labels().contains_key(names::LABEL_TENANT) {
        return Err(Error::not_found(format!(
            "tenant {name:?} not found: namespace {name} has no {} label (it was not made by `tenant create`)",
            names::LABEL_TENANT
        )));
    }
    Ok(ns)
}

pub async fn update(ctx: &Ctx, args: &UpdateOptions) -> Result<()> {
    let name = &args.name;
    let change = QuotaChange {
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        pods: args.pods,
        storage: args.storage.clone(),
    };
    check_change(&change)?;
    tenant_namespace(ctx, name).await?;
    let mut done = Vec::new();

    // The quota: the given entries, and the Service zeros of this version.
    let quotas: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), name);
    let what = format!("resourcequota {} of tenant {name}", objects::QUOTA);
    let before = quotas.get(objects::QUOTA).await.map_err(|e| Error::kube(e, &what))?;
    let old = before.spec.and_then(|s| s.hard).unwrap_or_default();
    let patch = objects::quota_patch(&change);
    let wanted = patch.spec.clone().and_then(|s| s.hard).unwrap_or_default();
    let changes: Vec<String> = wanted
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {}→{}", old.get(k).map(|q| q.0.as_str()).unwrap_or("unset"), v.0))
        .collect();
    if !changes.is_empty() {
        quotas
            .patch(objects::QUOTA, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube(e, &what))?;
        done.push(format!("quota {}", changes.join(", ")));
    }

    // The Role and the guard policies of this version (a tenant made by an earlier
    // one gets them here).
    let roles: Api<Role> = Api::namespaced(ctx.client.clone(), name);
    let what = format!("role {TENANT_SA} of tenant {name}");
    let mut role = roles.get(TENANT_SA).await.map_err(|e| Error::kube(e, &what))?;
    if role.rules.as_deref() != Some(&objects::role_rules()[..]) {
        role.rules = Some(objects::role_rules());
        roles.replace(TENANT_SA, &PostParams::default(), &role).await.map_err(|e| Error::kube(e, &what))?;
        done.push(format!("Role {TENANT_SA} set to this version's rules"));
    }
    install_guards(ctx).await?;

    if done.is_empty() {
        output::line(format_args!("tenant {name}: nothing to change"));
        return Ok(());
    }
    let summary = format!("tenant {name} updated: {}", done.join("; "));
    record(ctx, name, name, Action::Update, &summary).await;
    // The ResourceQuota admission enforces status.hard, which the quota controller
    // copies from spec.hard: wait for it, so the new quota is in force on return.
    let mut in_force = false;
    for _ in 0..150 {
        let q = quotas.get(objects::QUOTA).await.map_err(|e| Error::kube(e, "resourcequota"))?;
        let hard = q.status.and_then(|s| s.hard).unwrap_or_default();
        if wanted.iter().all(|(k, v)| hard.get(k) == Some(v)) {
            in_force = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !in_force {
        eprintln!(
            "warning: the quota controller has not taken the new quota up within 30s (is kube-controller-manager running?); \
             until it does, the old quota is enforced"
        );
    }
    output::line(&summary);
    Ok(())
}

pub async fn issue_kubeconfig(ctx: &Ctx, args: &KubeconfigOptions) -> Result<()> {
    let ttl = ttl_seconds(args.ttl)?;
    tenant_namespace(ctx, &args.name).await?;
    let cluster = tenant_cluster(ctx)?;
    let name = &args.name;
    // Before --rotate revokes every token: where the new kubeconfig may go.
    let out = output_path(name, &args.output)?;
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), name);
    if args.rotate {
        match sas.delete(TENANT_SA, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(e, format!("serviceaccount {TENANT_SA}"))),
        }
        // Wait until it is gone, then recreate it (a new UID: old tokens are invalid).
        for _ in 0..50 {
            if sas.get_opt(TENANT_SA).await.map_err(|e| Error::kube(e, "serviceaccount"))?.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        create_obj(ctx, &sas, &objects::service_account(name), "serviceaccount").await?;
    } else if sas.get_opt(TENANT_SA).await.map_err(|e| Error::kube(e, "serviceaccount"))?.is_none() {
        create_obj(ctx, &sas, &objects::service_account(name), "serviceaccount").await?;
    }
    let (token, issued) = issue_token(ctx, name, ttl).await?;
    write_kubeconfig(&out, &objects::kubeconfig(name, cluster, &token))?;
    let (action, what) = if args.rotate {
        (
            Action::RotateKubeconfig,
            format!("every kubeconfig token of tenant {name} revoked; a new one expires {}", issued.expires),
        )
    } else {
        (Action::IssueKubeconfig, format!("a kubeconfig token for tenant {name} issued; it expires {}", issued.expires))
    };
    record(ctx, name, name, action, &what).await;
    output::line(format_args!(
        "kubeconfig for tenant {name} written to {} (token expires {}){}",
        out.display(),
        issued.expires,
        if args.rotate { "; earlier tokens stop working within about 10s (the API server's token cache)" } else { "" }
    ));
    Ok(())
}

/// A row of `tenant list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantRow {
    pub name: String,
    pub status: String,
    pub created: Option<String>,
    /// The valid kubeconfig tokens on record, soonest expiry first.
    pub tokens: Vec<TokenRecord>,
    pub warnings: Vec<String>,
}

fn age(now: Timestamp, then: &str) -> String {
    then.parse::<Timestamp>()
        .map(|t| crate::input::short_age(Duration::from_secs((now.as_second() - t.as_second()).unsigned_abs())))
        .unwrap_or_else(|_| "-".into())
}

pub async fn list(ctx: &Ctx, args: &ListOptions) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let list = namespaces
        .list(&ListParams::default().labels(names::LABEL_TENANT))
        .await
        .map_err(|e| Error::kube(e, "namespaces"))?;
    let sas: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let accounts = sas
        .list(&ListParams::default().labels(names::LABEL_TENANT).fields(&format!("metadata.name={TENANT_SA}")))
        .await
        .map_err(|e| Error::kube(e, "serviceaccounts"))?;
    let records: BTreeMap<String, Vec<TokenRecord>> = accounts
        .items
        .iter()
        .map(|sa| {
            let r = tokens::parse(sa.annotations().get(names::ANNOTATION_TENANT_TOKENS).map(String::as_str));
            (sa.namespace().unwrap_or_default(), r)
        })
        .collect();
    let now = Timestamp::now();
    let rows: Vec<TenantRow> = list
        .items
        .iter()
        .map(|n| {
            let name = n.name_any();
            let all = records.get(&name).cloned().unwrap_or_default();
            TenantRow {
                status: n.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
                created: n.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
                tokens: tokens::valid(&all, now),
                warnings: tokens::warnings(&name, &all, now, args.warn_before),
                name,
            }
        })
        .collect();
    for w in rows.iter().flat_map(|r| &r.warnings) {
        eprintln!("warning: {w}");
    }
    match args.output {
        Some(f) => output::print(&rows, f),
        None if rows.is_empty() => eprintln!("No tenants."),
        None => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let expires: Vec<String> =
                        r.tokens.iter().map(|t| format!("{} ({})", age(now, &t.expires), t.expires)).collect();
                    vec![
                        r.name.clone(),
                        r.status.clone(),
                        r.created.as_deref().map(|c| age(now, c)).unwrap_or_else(|| "-".into()),
                        r.tokens.len().to_string(),
                        if expires.is_empty() { "-".into() } else { expires.join(", ") },
                    ]
                })
                .collect();
            output::stdout(&output::table(&["NAME", "STATUS", "AGE", "TOKENS", "TOKENS EXPIRE IN"], &table));
        }
    }
    Ok(())
}

/// What is in a tenant's namespace, for `tenant delete` to say what it removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub instances: Vec<String>,
    pub deployments: usize,
    pub claims: usize,
    pub secrets: usize,
    pub configmaps: usize,
    pub tokens: usize,
}

/// The sentence `tenant delete` shows before it deletes.
pub fn delete_summary(tenant: &str, c: &Contents) -> String {
    let instances = if c.instances.is_empty() {
        "no instances".to_string()
    } else {
        format!("{} instance(s) ({})", c.instances.len(), c.instances.join(", "))
    };
    let claims = match c.claims {
        0 => "0 PersistentVolumeClaims".to_string(),
        n => format!("{n} PersistentVolumeClaim(s) (their data is lost)"),
    };
    format!(
        "deleting tenant {tenant} removes namespace {tenant} and everything in it: {instances}, {} Deployment(s) in all, \
         {claims}, {} Secret(s), {} ConfigMap(s), the quota, limits, \
         NetworkPolicies, ServiceAccount, Role and RoleBinding; {} kubeconfig token(s) on record stop working. \
         The cluster-wide policies {} and {} stay (other tenants use them)",
        c.deployments,
        c.secrets,
        c.configmaps,
        c.tokens,
        names::TENANT_SERVICES_POLICY,
        names::TENANT_SECRETS_POLICY
    )
}

async fn contents(ctx: &Ctx, tenant: &str) -> Result<Contents> {
    let lp = ListParams::default();
    let c = ctx.client.clone();
    let deployments =
        Api::<Deployment>::namespaced(c.clone(), tenant).list(&lp).await.map_err(|e| Error::kube(e, "deployments"))?;
    let instances = deployments
        .items
        .iter()
        .filter(|d| d.labels().get(names::LABEL_SSH).map(String::as_str) == Some(names::SSH_ENABLED))
        .map(|d| d.name_any())
        .collect();
    let claims = Api::<PersistentVolumeClaim>::namespaced(c.clone(), tenant)
        .list_metadata(&lp)
        .await
        .map_err(|e| Error::kube(e, "persistentvolumeclaims"))?;
    let secrets =
        Api::<Secret>::namespaced(c.clone(), tenant).list_metadata(&lp).await.map_err(|e| Error::kube(e, "secrets"))?;
    let configmaps = Api::<ConfigMap>::namespaced(c.clone(), tenant)
        .list_metadata(&lp)
        .await
        .map_err(|e| Error::kube(e, "configmaps"))?;
    let sa = Api::<ServiceAccount>::namespaced(c, tenant)
        .get_opt(TENANT_SA)
        .await
        .map_err(|e| Error::kube(e, "serviceaccount"))?;
    let records = sa
        .map(|sa| tokens::parse(sa.annotations().get(names::ANNOTATION_TENANT_TOKENS).map(String::as_str)))
        .unwrap_or_default();
    Ok(Contents {
        instances,
        deployments: deployments.items.len(),
        claims: claims.items.len(),
        secrets: secrets.items.len(),
        // kube-root-ca.crt is the cluster's, in every namespace.
        configmaps: configmaps.items.iter().filter(|m| m.name_any() != "kube-root-ca.crt").count(),
        tokens: tokens::valid(&records, Timestamp::now()).len(),
    })
}

pub async fn delete(ctx: &Ctx, args: &DeleteOptions) -> Result<()> {
    let name = &args.name;
    tenant_namespace(ctx, name).await?;
    let summary = delete_summary(name, &contents(ctx, name).await?);
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::invalid(format!(
                "tenant delete {name}: {summary}; nothing was deleted: pass --yes to confirm"
            )));
        }
        eprintln!("{summary}.");
        eprint!("Type the tenant name to confirm: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Error::other(format!("reading the answer: {e}")).with_source(e))?;
        if answer.trim() != name {
            return Err(Error::invalid("not confirmed: nothing was deleted"));
        }
    } else {
        eprintln!("{summary}.");
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    namespaces
        .delete(name, &DeleteParams::background())
        .await
        .map_err(|e| Error::kube(e, format!("namespace {name:?}")))?;
    // The tenant's namespace goes away with its events: this one goes where events
    // about cluster-scoped objects go.
    record(ctx, "default", name, Action::Delete, &format!("tenant {name} deleted")).await;
    output::line(format_args!("tenant {name} deleted (namespace {name} is terminating)"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overwrites_another_kubeconfig() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("t.kubeconfig");
        let other = tmp.path().join("config");
        assert_eq!(output_path("t", &Some(mine.clone())).unwrap(), mine);
        let cluster = Cluster { server: Some("https://x".into()), ..Default::default() };
        write_kubeconfig(&mine, &objects::kubeconfig("t", cluster, "tok")).unwrap();
        assert!(output_path("t", &Some(mine.clone())).is_ok());
        assert_eq!(output_path("u", &Some(mine)).unwrap_err().exit_code(), 4);
        std::fs::write(&other, "apiVersion: v1\nkind: Config\ncurrent-context: admin\n").unwrap();
        assert!(output_path("t", &Some(other)).is_err());
    }

    #[test]
    fn ttl_and_quantities() {
        assert!(ttl_seconds(Duration::from_secs(60)).is_err());
        assert_eq!(ttl_seconds(Duration::from_secs(720 * 3600)).unwrap(), 2_592_000);
        assert!(check_quantity("--cpu", "500m").is_ok());
        assert!(check_quantity("--memory", "8Gi").is_ok());
        let e = check_change(&QuotaChange { memory: Some("lots".into()), ..Default::default() }).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--memory"), "{e}");
    }

    #[test]
    fn delete_summary_says_what_goes() {
        let c =
            Contents { instances: vec!["dev".into()], deployments: 2, claims: 1, secrets: 3, configmaps: 0, tokens: 2 };
        let s = delete_summary("team-a", &c);
        assert!(s.contains("namespace team-a") && s.contains("1 instance(s) (dev)"), "{s}");
        assert!(s.contains("1 PersistentVolumeClaim(s)") && s.contains("2 kubeconfig token(s)"), "{s}");
        assert!(s.contains(names::TENANT_SERVICES_POLICY) && s.contains(names::TENANT_SECRETS_POLICY), "{s}");
    }
}
