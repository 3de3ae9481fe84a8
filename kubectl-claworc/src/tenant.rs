//! `tenant create|kubeconfig|list|delete`.
//!
//! A tenant is a namespace labelled `claworc.io/tenant` and Pod Security
//! `restricted` (enforce, audit, warn), with a ResourceQuota, a LimitRange (defaults
//! so pods fit the quota), a default-deny NetworkPolicy, a ServiceAccount bound to a
//! least-privilege Role, and a kubeconfig with a token from the TokenRequest API.
//!
//! `tenant kubeconfig --rotate` deletes and recreates the ServiceAccount: every token
//! issued earlier is bound to the old ServiceAccount's UID and stops working (within
//! about 10 seconds: the API server caches successful token authentications).
//! The trade-off: *every* holder of an earlier kubeconfig (other CI pipelines,
//! colleagues) is cut off too, and pods running as that ServiceAccount (none by
//! default: instances use `default`) lose their token. Without `--rotate`, a new
//! kubeconfig is issued and earlier tokens stay valid until they expire.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use claworc_contract::names;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde::Serialize;
use serde_json::json;

use crate::cli::{TenantCommand, TenantCreateArgs, TenantDeleteArgs, TenantKubeconfigArgs, TenantListArgs};
use crate::context::Ctx;
use crate::error::{Error, Result, is_not_found};
use crate::objects::validate_name;
use crate::output;

/// Name of the tenant's ServiceAccount, Role and RoleBinding.
pub const TENANT_SA: &str = "claworc-tenant";
const QUOTA: &str = "claworc-quota";
const LIMITS: &str = "claworc-limits";
const DENY: &str = "claworc-default-deny";
const PSA_PREFIX: &str = "pod-security.kubernetes.io/";

/// The Role's rules: only what creating, reaching and watching instances needs.
pub fn role_rules() -> serde_json::Value {
    let rw = ["get", "list", "watch", "create", "update", "patch", "delete"];
    json!([
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": rw},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
        {"apiGroups": [""], "resources": ["services", "secrets", "configmaps", "persistentvolumeclaims"], "verbs": rw},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    ])
}

/// Quota flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub storage: String,
}

fn labels(name: &str) -> serde_json::Value {
    json!({ names::LABEL_TENANT: name, names::LABEL_MANAGED_BY: names::MANAGED_BY })
}

/// The namespace, Pod Security `restricted` enforced, audited and warned.
pub fn namespace(name: &str) -> Namespace {
    let mut l = labels(name);
    for mode in ["enforce", "audit", "warn"] {
        l[format!("{PSA_PREFIX}{mode}")] = json!("restricted");
        l[format!("{PSA_PREFIX}{mode}-version")] = json!("latest");
    }
    serde_json::from_value(json!({"metadata": {"name": name, "labels": l}})).expect("namespace")
}

pub fn resource_quota(name: &str, q: &Quota) -> ResourceQuota {
    serde_json::from_value(json!({
        "metadata": {"name": QUOTA, "namespace": name, "labels": labels(name)},
        "spec": {"hard": {
            "requests.cpu": q.cpu, "limits.cpu": q.cpu,
            "requests.memory": q.memory, "limits.memory": q.memory,
            "pods": q.pods.to_string(),
            "requests.storage": q.storage,
        }}
    }))
    .expect("quota")
}

/// Defaults for containers that set no resources (the sidecar sets its own).
pub fn limit_range(name: &str) -> LimitRange {
    serde_json::from_value(json!({
        "metadata": {"name": LIMITS, "namespace": name, "labels": labels(name)},
        "spec": {"limits": [{
            "type": "Container",
            "default": {"cpu": "1", "memory": "1Gi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }]}
    }))
    .expect("limit range")
}

/// Denies all ingress and egress of every pod; the shipped egress-profile policies
/// (`manifests/`) allow what a profile needs.
pub fn default_deny(name: &str) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": DENY, "namespace": name, "labels": labels(name)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    }))
    .expect("network policy")
}

/// The claworc NetworkPolicies of `manifests/network/` (one source for
/// `kubectl apply -k manifests/network` and for `tenant create`): no ingress to
/// instances, and the egress of each `claworc.io/egress` profile.
const CLAWORC_POLICIES: [&str; 5] = [
    include_str!("../../manifests/network/ingress.yaml"),
    include_str!("../../manifests/network/egress-restricted.yaml"),
    include_str!("../../manifests/network/egress-none.yaml"),
    include_str!("../../manifests/network/egress-open.yaml"),
    include_str!("../../manifests/network/egress-unknown.yaml"),
];

/// The claworc NetworkPolicies, in the tenant's namespace.
pub fn claworc_policies(name: &str) -> Vec<NetworkPolicy> {
    CLAWORC_POLICIES
        .iter()
        .map(|yaml| {
            let mut np: NetworkPolicy = serde_yaml::from_str(yaml).expect("manifests/network holds NetworkPolicies");
            np.metadata.namespace = Some(name.to_string());
            let tenant_labels = [(names::LABEL_TENANT, name), (names::LABEL_MANAGED_BY, names::MANAGED_BY)];
            let labels = np.metadata.labels.get_or_insert_with(Default::default);
            labels.extend(tenant_labels.map(|(k, v)| (k.to_string(), v.to_string())));
            np
        })
        .collect()
}

pub fn service_account(name: &str) -> ServiceAccount {
    serde_json::from_value(json!({
        "metadata": {"name": TENANT_SA, "namespace": name, "labels": labels(name)},
        "automountServiceAccountToken": false
    }))
    .expect("service account")
}

pub fn role(name: &str) -> Role {
    serde_json::from_value(json!({
        "metadata": {"name": TENANT_SA, "namespace": name, "labels": labels(name)},
        "rules": role_rules()
    }))
    .expect("role")
}

pub fn role_binding(name: &str) -> RoleBinding {
    serde_json::from_value(json!({
        "metadata": {"name": TENANT_SA, "namespace": name, "labels": labels(name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TENANT_SA},
        "subjects": [{"kind": "ServiceAccount", "name": TENANT_SA, "namespace": name}]
    }))
    .expect("role binding")
}

/// Where the cluster is, as the kubeconfig of the tenant needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub server: String,
    /// Base64 PEM bundle.
    pub ca_data: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
}

/// The tenant kubeconfig (YAML). Holds a token: write it 0600.
pub fn kubeconfig(tenant: &str, cluster: &ClusterInfo, token: &str) -> String {
    let name = format!("claworc-{tenant}");
    let mut c = json!({"server": cluster.server});
    if let Some(ca) = &cluster.ca_data {
        c["certificate-authority-data"] = json!(ca);
    }
    if cluster.insecure_skip_tls_verify {
        c["insecure-skip-tls-verify"] = json!(true);
    }
    if let Some(s) = &cluster.tls_server_name {
        c["tls-server-name"] = json!(s);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": c}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": tenant}}],
        "current-context": name,
    });
    serde_yaml::to_string(&doc).expect("kubeconfig serializes")
}

fn cluster_info(ctx: &Ctx) -> Result<ClusterInfo> {
    let entry = ctx.cluster_entry();
    let server = entry.and_then(|c| c.server.clone()).unwrap_or_else(|| ctx.config.cluster_url.to_string());
    let ca_data = match entry {
        Some(c) if c.certificate_authority_data.is_some() => c.certificate_authority_data.clone(),
        Some(c) if c.certificate_authority.is_some() => {
            let path = PathBuf::from(c.certificate_authority.as_deref().unwrap_or_default());
            let pem =
                std::fs::read(&path).map_err(|e| Error::io(e, &path).context("the cluster's certificate-authority"))?;
            Some(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        _ => None,
    };
    Ok(ClusterInfo {
        server,
        ca_data,
        insecure_skip_tls_verify: entry.and_then(|c| c.insecure_skip_tls_verify).unwrap_or(false),
        tls_server_name: entry.and_then(|c| c.tls_server_name.clone()),
    })
}

pub async fn run(ctx: &Ctx, cmd: TenantCommand) -> Result<()> {
    match cmd {
        TenantCommand::Create(a) => create(ctx, &a).await,
        TenantCommand::Kubeconfig(a) => issue_kubeconfig(ctx, &a).await,
        TenantCommand::List(a) => list(ctx, &a).await,
        TenantCommand::Delete(a) => delete(ctx, &a).await,
    }
}

fn ttl_seconds(ttl: Duration) -> Result<i64> {
    let s = ttl.as_secs();
    // The API's minimum is 10 minutes.
    if s < 600 {
        return Err(Error::invalid("--ttl: the TokenRequest API needs at least 10m, e.g. --ttl 24h"));
    }
    i64::try_from(s).map_err(|_| Error::invalid("--ttl is too large"))
}

/// The kubeconfig file to write: `--output`, else `<NAME>.kubeconfig`. An existing
/// file is only replaced if it is a kubeconfig of this tenant (never, say,
/// `~/.kube/config`).
fn output_path(name: &str, output: &Option<PathBuf>) -> Result<PathBuf> {
    let path = output.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.kubeconfig")));
    if path.exists() && !is_tenant_kubeconfig(&path, name) {
        return Err(Error::AlreadyExists(format!(
            "--output {}: the file exists and is not a kubeconfig of tenant {name}: pick another file or remove it",
            path.display()
        )));
    }
    Ok(path)
}

fn is_tenant_kubeconfig(path: &Path, tenant: &str) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_yaml::from_str::<kube::config::Kubeconfig>(&t).ok())
        .is_some_and(|k| {
            k.current_context.as_deref() == Some(format!("claworc-{tenant}").as_str())
                && k.clusters.len() == 1
                && k.auth_infos.len() == 1
        })
}

async fn create_obj<K>(ctx: &Ctx, api: &Api<K>, obj: &K, what: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    ctx.debug(format!("creating {what}"));
    api.create(&PostParams::default(), obj).await.map(|_| ()).map_err(|e| Error::kube(e, what))
}

pub async fn create(ctx: &Ctx, args: &TenantCreateArgs) -> Result<()> {
    validate_name("tenant name", &args.name)?;
    let ttl = ttl_seconds(args.ttl)?;
    for (flag, v) in [("--cpu", &args.cpu), ("--memory", &args.memory), ("--storage", &args.storage)] {
        let millis = v.strip_suffix('m').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !crate::objects::is_quantity(v) && !millis {
            return Err(Error::invalid(format!("{flag} {v:?} is not a quantity such as 4, 500m, 8Gi")));
        }
    }
    let out = output_path(&args.name, &args.output)?;
    let info = cluster_info(ctx)?;
    let name = &args.name;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if namespaces.get_opt(name).await.map_err(|e| Error::kube(e, format!("namespace {name:?}")))?.is_some() {
        return Err(Error::AlreadyExists(format!(
            "namespace {name:?} already exists: for a new kubeconfig of an existing tenant use `kubectl claworc tenant kubeconfig {name}`"
        )));
    }
    create_obj(ctx, &namespaces, &namespace(name), &format!("namespace {name:?}")).await?;
    let quota =
        Quota { cpu: args.cpu.clone(), memory: args.memory.clone(), pods: args.pods, storage: args.storage.clone() };
    let result = async {
        let c = ctx.client.clone();
        create_obj(ctx, &Api::namespaced(c.clone(), name), &resource_quota(name, &quota), "resourcequota").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &limit_range(name), "limitrange").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &default_deny(name), "networkpolicy").await?;
        for np in claworc_policies(name) {
            create_obj(ctx, &Api::namespaced(c.clone(), name), &np, "networkpolicy").await?;
        }
        create_obj(ctx, &Api::namespaced(c.clone(), name), &service_account(name), "serviceaccount").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &role(name), "role").await?;
        create_obj(ctx, &Api::namespaced(c.clone(), name), &role_binding(name), "rolebinding").await?;
        let (token, expires) = request_token(ctx, name, ttl).await?;
        write_kubeconfig(&out, &kubeconfig(name, &info, &token))?;
        Ok::<_, Error>(expires)
    }
    .await;
    match result {
        Ok(expires) => {
            println!("tenant {name} created; kubeconfig written to {} (token expires {expires})", out.display());
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

/// A token for the tenant ServiceAccount (TokenRequest API), and when it expires.
async fn request_token(ctx: &Ctx, tenant: &str, ttl: i64) -> Result<(String, String)> {
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), tenant);
    let req: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": TENANT_SA, "namespace": tenant},
        "spec": {"expirationSeconds": ttl}
    }))
    .expect("token request");
    let resp: TokenRequest = sas
        .create_subresource("token", TENANT_SA, &PostParams::default(), &req)
        .await
        .map_err(|e| Error::kube(e, format!("serviceaccounts/token of {TENANT_SA} in namespace {tenant:?}")))?;
    let status = resp.status.ok_or_else(|| Error::other("the TokenRequest API returned no token"))?;
    let token =
        status.token.filter(|t| !t.is_empty()).ok_or_else(|| Error::other("the TokenRequest API returned no token"))?;
    let expires = status.expiration_timestamp.map(|t| t.0).unwrap_or_else(Timestamp::now);
    let granted = expires.as_second() - Timestamp::now().as_second();
    if granted + 60 < ttl {
        eprintln!(
            "warning: the API server shortened the token lifetime to {} (its --service-account-max-token-expiration)",
            crate::cli::format_duration(Duration::from_secs(granted.max(0) as u64))
        );
    }
    Ok((token, expires.to_string()))
}

fn write_kubeconfig(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(e, parent))?;
    }
    crate::keystore::write_atomic(path, text.as_bytes())
}

async fn tenant_namespace(ctx: &Ctx, name: &str) -> Result<Namespace> {
    validate_name("tenant name", name)?;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let ns = namespaces.get(name).await.map_err(|e| Error::kube(e, format!("tenant {name:?}")))?;
    if ns.metadata.labels.as_ref().and_then(|l| l.get(names::LABEL_TENANT)).is_none() {
        return Err(Error::not_found(format!(
            "tenant {name:?} not found: namespace {name} has no {} label (it was not made by `tenant create`)",
            names::LABEL_TENANT
        )));
    }
    Ok(ns)
}

pub async fn issue_kubeconfig(ctx: &Ctx, args: &TenantKubeconfigArgs) -> Result<()> {
    let ttl = ttl_seconds(args.ttl)?;
    tenant_namespace(ctx, &args.name).await?;
    let info = cluster_info(ctx)?;
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
        create_obj(ctx, &sas, &service_account(name), "serviceaccount").await?;
    } else if sas.get_opt(TENANT_SA).await.map_err(|e| Error::kube(e, "serviceaccount"))?.is_none() {
        create_obj(ctx, &sas, &service_account(name), "serviceaccount").await?;
    }
    let (token, expires) = request_token(ctx, name, ttl).await?;
    write_kubeconfig(&out, &kubeconfig(name, &info, &token))?;
    println!(
        "kubeconfig for tenant {name} written to {} (token expires {expires}){}",
        out.display(),
        if args.rotate { "; earlier tokens stop working within about 10s (the API server's token cache)" } else { "" }
    );
    Ok(())
}

/// A row of `tenant list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantRow {
    pub name: String,
    pub status: String,
    pub created: Option<String>,
}

pub async fn list(ctx: &Ctx, args: &TenantListArgs) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let list = namespaces
        .list(&ListParams::default().labels(names::LABEL_TENANT))
        .await
        .map_err(|e| Error::kube(e, "namespaces"))?;
    let rows: Vec<TenantRow> = list
        .items
        .iter()
        .map(|n| TenantRow {
            name: n.metadata.name.clone().unwrap_or_default(),
            status: n.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
            created: n.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        })
        .collect();
    match args.output {
        Some(f) => output::print(&rows, f),
        None if rows.is_empty() => eprintln!("No tenants."),
        None => {
            let now = Timestamp::now();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let age = r
                        .created
                        .as_deref()
                        .and_then(|c| c.parse::<Timestamp>().ok())
                        .map(|c| {
                            crate::status::short_age(Duration::from_secs(
                                (now.as_second() - c.as_second()).max(0) as u64
                            ))
                        })
                        .unwrap_or_else(|| "-".into());
                    vec![r.name.clone(), r.status.clone(), age]
                })
                .collect();
            output::stdout(&output::table(&["NAME", "STATUS", "AGE"], &table));
        }
    }
    Ok(())
}

pub async fn delete(ctx: &Ctx, args: &TenantDeleteArgs) -> Result<()> {
    tenant_namespace(ctx, &args.name).await?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::invalid(format!(
                "tenant delete {}: deleting a tenant deletes everything in it; pass --yes to confirm",
                args.name
            )));
        }
        eprint!("Delete tenant {0} and everything in namespace {0}? Type the name to confirm: ", args.name);
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|e| Error::other(format!("reading the answer: {e}")))?;
        if answer.trim() != args.name {
            return Err(Error::invalid("not confirmed: nothing was deleted"));
        }
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    namespaces
        .delete(&args.name, &DeleteParams::background())
        .await
        .map_err(|e| Error::kube(e, format!("namespace {:?}", args.name)))?;
    println!("tenant {} deleted (namespace {} is terminating)", args.name, args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_restricted_and_labelled() {
        let ns = namespace("team-a");
        let l = ns.metadata.labels.unwrap();
        assert_eq!(l["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(l["pod-security.kubernetes.io/audit"], "restricted");
        assert_eq!(l["pod-security.kubernetes.io/warn"], "restricted");
        assert_eq!(l[names::LABEL_TENANT], "team-a");
    }

    #[test]
    fn role_is_least_privilege() {
        let r = role("t");
        let rules = r.rules.unwrap();
        let all: Vec<String> = rules.iter().flat_map(|r| r.resources.clone().unwrap_or_default()).collect();
        for res in [
            "deployments",
            "pods",
            "pods/log",
            "pods/portforward",
            "services",
            "secrets",
            "configmaps",
            "persistentvolumeclaims",
            "events",
        ] {
            assert!(all.iter().any(|a| a == res), "{res}");
        }
        assert!(!all.iter().any(|a| a == "pods/exec" || a == "*" || a == "roles" || a == "rolebindings"));
        assert!(rules.iter().all(|r| { !r.verbs.iter().any(|v| v == "*" || v == "escalate" || v == "bind") }));
        assert_eq!(r.metadata.namespace.as_deref(), Some("t"));
        let b = role_binding("t");
        assert_eq!(b.subjects.unwrap()[0].name, TENANT_SA);
    }

    #[test]
    fn quota_limits_and_policy() {
        let q = resource_quota("t", &Quota { cpu: "4".into(), memory: "8Gi".into(), pods: 10, storage: "50Gi".into() });
        let hard = q.spec.unwrap().hard.unwrap();
        assert_eq!(hard["pods"].0, "10");
        assert_eq!(hard["limits.memory"].0, "8Gi");
        let policies = claworc_policies("t");
        let names: Vec<_> = policies.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert!(
            names.contains(&"claworc-deny-ingress".to_string())
                && names.contains(&"claworc-egress-restricted".to_string()),
            "{names:?}"
        );
        assert!(policies.iter().all(|p| p.metadata.namespace.as_deref() == Some("t")));
        let np = default_deny("t").spec.unwrap();
        assert_eq!(np.policy_types.unwrap(), vec!["Ingress".to_string(), "Egress".to_string()]);
        assert!(limit_range("t").spec.is_some());
        assert_eq!(service_account("t").automount_service_account_token, Some(false));
    }

    #[test]
    fn kubeconfig_has_server_ca_token_and_namespace() {
        let info = ClusterInfo {
            server: "https://127.0.0.1:6443".into(),
            ca_data: Some("Q0E=".into()),
            insecure_skip_tls_verify: false,
            tls_server_name: None,
        };
        let y = kubeconfig("team-a", &info, "tok");
        let v: serde_json::Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(v["clusters"][0]["cluster"]["certificate-authority-data"], "Q0E=");
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["contexts"][0]["context"]["namespace"], "team-a");
        assert_eq!(v["current-context"], "claworc-team-a");
        // kube reads it back
        let kc: kube::config::Kubeconfig = serde_yaml::from_str(&y).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("claworc-team-a"));
    }

    #[test]
    fn never_overwrites_another_kubeconfig() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("t.kubeconfig");
        let other = tmp.path().join("config");
        assert_eq!(output_path("t", &Some(mine.clone())).unwrap(), mine);
        let info = ClusterInfo {
            server: "https://x".into(),
            ca_data: None,
            insecure_skip_tls_verify: false,
            tls_server_name: None,
        };
        std::fs::write(&mine, kubeconfig("t", &info, "tok")).unwrap();
        assert!(output_path("t", &Some(mine.clone())).is_ok());
        assert_eq!(output_path("u", &Some(mine)).unwrap_err().exit_code(), 4);
        std::fs::write(&other, "apiVersion: v1\nkind: Config\ncurrent-context: admin\n").unwrap();
        assert!(output_path("t", &Some(other)).is_err());
    }

    #[test]
    fn ttl_bounds() {
        assert!(ttl_seconds(Duration::from_secs(60)).is_err());
        assert_eq!(ttl_seconds(Duration::from_secs(720 * 3600)).unwrap(), 2_592_000);
    }
}
