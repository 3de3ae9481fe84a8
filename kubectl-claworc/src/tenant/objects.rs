//! The objects of a tenant, built by pure functions from plain values: the
//! namespace and its guard rails (ResourceQuota, LimitRange, NetworkPolicies), the
//! ServiceAccount, Role and RoleBinding of the tenant kubeconfig, the cluster-scoped
//! ValidatingAdmissionPolicy that keeps Services and Secrets of tenant namespaces in
//! bounds, the TokenRequest, the Events that record what was done, and the
//! kubeconfig file. Nothing here talks to the cluster; `tenant/mod.rs` does.

use std::collections::BTreeMap;

use crate::events::Record;
use claworc_contract::names;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ObjectReference, ResourceQuota, ResourceQuotaSpec, Secret,
    Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

/// Name of the tenant's ServiceAccount, Role and RoleBinding.
pub const TENANT_SA: &str = "claworc-tenant";
/// Name of the tenant's ResourceQuota.
pub const QUOTA: &str = "claworc-quota";
/// Name of the tenant's LimitRange.
pub const LIMITS: &str = "claworc-limits";
/// Name of the NetworkPolicy that denies all traffic not allowed by another one.
pub const DENY: &str = "claworc-default-deny";
const PSA_PREFIX: &str = "pod-security.kubernetes.io/";

/// The quota of a tenant (`--cpu`, `--memory`, `--pods`, `--storage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub storage: String,
}

/// A change of the quota (`tenant update`): only the fields given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaChange {
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub pods: Option<u32>,
    pub storage: Option<String>,
}

impl QuotaChange {
    pub fn is_empty(&self) -> bool {
        *self == QuotaChange::default()
    }

    /// The ResourceQuota `spec.hard` entries this change sets.
    pub fn hard(&self) -> BTreeMap<String, Quantity> {
        let mut hard = BTreeMap::new();
        let mut set = |keys: &[&str], v: &str| {
            for k in keys {
                hard.insert(k.to_string(), Quantity(v.to_string()));
            }
        };
        if let Some(cpu) = &self.cpu {
            set(&["requests.cpu", "limits.cpu"], cpu);
        }
        if let Some(memory) = &self.memory {
            set(&["requests.memory", "limits.memory"], memory);
        }
        if let Some(pods) = self.pods {
            set(&["pods"], &pods.to_string());
        }
        if let Some(storage) = &self.storage {
            set(&["requests.storage"], storage);
        }
        hard
    }
}

impl From<&Quota> for QuotaChange {
    fn from(q: &Quota) -> Self {
        QuotaChange {
            cpu: Some(q.cpu.clone()),
            memory: Some(q.memory.clone()),
            pods: Some(q.pods),
            storage: Some(q.storage.clone()),
        }
    }
}

fn labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_TENANT.to_string(), tenant.to_string()),
        (names::LABEL_MANAGED_BY.to_string(), names::MANAGED_BY.to_string()),
    ])
}

/// Metadata of an object `name` in the tenant's namespace, with the tenant labels.
fn meta(tenant: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(tenant.to_string()),
        labels: Some(labels(tenant)),
        ..Default::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn quantities(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

/// The namespace, Pod Security `restricted` enforced, audited and warned.
pub fn namespace(tenant: &str) -> Namespace {
    let mut l = labels(tenant);
    for mode in ["enforce", "audit", "warn"] {
        l.insert(format!("{PSA_PREFIX}{mode}"), "restricted".into());
        l.insert(format!("{PSA_PREFIX}{mode}-version"), "latest".into());
    }
    Namespace {
        metadata: ObjectMeta { name: Some(tenant.to_string()), labels: Some(l), ..Default::default() },
        ..Default::default()
    }
}

/// No LoadBalancer and no NodePort Services, whoever creates them.
const SERVICE_LIMITS: [(&str, &str); 2] = [("services.loadbalancers", "0"), ("services.nodeports", "0")];

/// The quota.
pub fn resource_quota(tenant: &str, q: &Quota) -> ResourceQuota {
    let mut hard = QuotaChange::from(q).hard();
    hard.extend(quantities(&SERVICE_LIMITS));
    ResourceQuota {
        metadata: meta(tenant, QUOTA),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
        ..Default::default()
    }
}

/// The merge patch of `tenant update`: the changed `spec.hard` entries, and the
/// Service limits (which a tenant made by an earlier version may lack).
pub fn quota_patch(change: &QuotaChange) -> ResourceQuota {
    let mut hard = change.hard();
    hard.extend(quantities(&SERVICE_LIMITS));
    ResourceQuota { spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }), ..Default::default() }
}

/// Defaults for containers that set no resources (the sidecar sets its own).
pub fn limit_range(tenant: &str) -> LimitRange {
    LimitRange {
        metadata: meta(tenant, LIMITS),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(quantities(&[("cpu", "1"), ("memory", "1Gi")])),
                default_request: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
                ..Default::default()
            }],
        }),
    }
}

/// Denies all ingress and egress of every pod; the claworc policies allow what an
/// egress profile needs.
pub fn default_deny(tenant: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(tenant, DENY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(strings(&["Ingress", "Egress"])),
            ..Default::default()
        }),
    }
}

/// The claworc NetworkPolicies of `manifests/network/` (one source for
/// `kubectl apply -k manifests/network` and for `tenant create`): no ingress to
/// instances, and the egress of each `claworc.io/egress` profile.
const CLAWORC_POLICIES: [&str; 5] = [
    include_str!("../../../manifests/network/ingress.yaml"),
    include_str!("../../../manifests/network/egress-restricted.yaml"),
    include_str!("../../../manifests/network/egress-none.yaml"),
    include_str!("../../../manifests/network/egress-open.yaml"),
    include_str!("../../../manifests/network/egress-unknown.yaml"),
];

/// The claworc NetworkPolicies, in the tenant's namespace.
pub fn claworc_policies(tenant: &str) -> Vec<NetworkPolicy> {
    CLAWORC_POLICIES
        .iter()
        .map(|yaml| {
            // The files are compiled in and parsed by a unit test.
            let mut np: NetworkPolicy = serde_yaml_ng::from_str(yaml).expect("manifests/network holds NetworkPolicies");
            np.metadata.namespace = Some(tenant.to_string());
            np.metadata.labels.get_or_insert_with(Default::default).extend(labels(tenant));
            np
        })
        .collect()
}

/// The ServiceAccount the kubeconfig tokens are issued for; pods never get its token.
pub fn service_account(tenant: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(tenant, TENANT_SA),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// One rule of the tenant Role with the reason it is granted (docs/ssh.md's RBAC
/// table is this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

/// The tenant Role: only what the documented workflows need (docs/plugin.md: the
/// plugin's commands with only the tenant kubeconfig, and the CI pipeline that
/// applies a Secret and a Deployment with plain kubectl). Deliberately absent:
/// `services` (no workflow needs one: instances are reached through
/// `pods/portforward`), direct `pods` create/delete, `pods/exec`, `pods/attach`,
/// `pods/ephemeralcontainers`, `serviceaccounts` and `serviceaccounts/token`,
/// list/watch of `secrets`, and anything that holds the guard rails
/// (NetworkPolicies, ResourceQuota, LimitRange, Role, RoleBinding, the namespace).
pub const GRANTS: &[Grant] = &[
    Grant {
        api_group: "apps",
        resources: &["deployments"],
        verbs: &["get", "list", "watch", "create", "update", "patch", "delete"],
        why: "the instance: `create`, `delete`, `list`, `status`, `rotate-keys` (patch), `create --wait` and `kubectl rollout status` (watch), `kubectl apply` in CI",
    },
    Grant {
        api_group: "",
        resources: &["pods"],
        verbs: &["get", "list", "watch"],
        why: "finding the instance's pod (`ssh`, `tunnel`, `logs`, `status`, `list`); no create or delete: pods come from Deployments only",
    },
    Grant {
        api_group: "",
        resources: &["pods/log"],
        verbs: &["get"],
        why: "`logs`, `audit` (the sidecar's audit lines), `kubectl logs`",
    },
    Grant {
        api_group: "",
        resources: &["pods/portforward"],
        verbs: &["get", "create"],
        why: "the only way in: `ssh`, `tunnel`, `logs --file`, `status`, `rotate-keys` (the API server authorizes the WebSocket upgrade, a GET, as get and create)",
    },
    Grant {
        api_group: "",
        resources: &["secrets"],
        verbs: &["get", "create", "patch", "delete"],
        why: "the instance Secret: `create` (and its rollback), `delete`, `rotate-keys` (patch), `status`/`list` read it, `kubectl apply` in CI; no list or watch",
    },
    Grant {
        api_group: "",
        resources: &["configmaps"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "the `claworc.io/known-hosts-configmap` ConfigMap of extra git host keys (`kubectl apply`)",
    },
    Grant {
        api_group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["get", "list", "watch", "create", "delete"],
        why: "`create --volume` (and its rollback), `delete` (lists the instance's claims), `delete --keep-volumes`",
    },
    Grant {
        api_group: "",
        resources: &["events"],
        verbs: &["get", "list", "watch"],
        why: "`kubectl get events`, `audit`: why a pod does not start, and the trail of what was done (no create, update, patch or delete here)",
    },
    Grant {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["get", "list", "watch", "create"],
        why: "the same, newer API; create: `create`, `rotate-keys` and `delete` record an Event about the instance's Deployment naming the user. Create only: a tenant can add an Event, never change or delete one, and only in its own name (the `claworc-tenant-events` policy)",
    },
];

/// The Role's rules, from [`GRANTS`].
pub fn role_rules() -> Vec<PolicyRule> {
    GRANTS
        .iter()
        .map(|g| PolicyRule {
            api_groups: Some(vec![g.api_group.to_string()]),
            resources: Some(strings(g.resources)),
            verbs: strings(g.verbs),
            ..Default::default()
        })
        .collect()
}

/// The RBAC table of docs/ssh.md (checked by a test): every grant and why.
pub fn rbac_table() -> String {
    let mut out = String::from("| resource | verbs | why |\n|---|---|---|\n");
    for g in GRANTS {
        let group = if g.api_group.is_empty() { String::new() } else { format!(" ({})", g.api_group) };
        let resources: Vec<String> = g.resources.iter().map(|r| format!("`{r}`")).collect();
        out.push_str(&format!("| {}{group} | {} | {} |\n", resources.join(", "), g.verbs.join(", "), g.why));
    }
    out
}

/// The guard-rule table of docs/plugin.md (checked by a test).
pub fn guard_table() -> String {
    let mut out = String::from("| policy | rule | refused with |\n|---|---|---|\n");
    for p in GUARD_POLICIES {
        for r in p.rules {
            out.push_str(&format!("| `{}` | `{}` | {} |\n", p.name, r.name, r.message.replace('|', "\\|")));
        }
    }
    out
}

pub fn role(tenant: &str) -> Role {
    Role { metadata: meta(tenant, TENANT_SA), rules: Some(role_rules()) }
}

pub fn role_binding(tenant: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(tenant, TENANT_SA),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: TENANT_SA.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: TENANT_SA.into(),
            namespace: Some(tenant.to_string()),
            ..Default::default()
        }]),
    }
}

/// One rule of a guard policy: its name (in every refusal), the CEL expression
/// that must hold, and the message (what is refused, why, and the fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardRule {
    pub name: &'static str,
    pub expression: &'static str,
    pub message: &'static str,
}

/// A guard policy: the rules for one kind (one kind per policy, so the API
/// server type-checks each expression against that kind's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardPolicy {
    pub name: &'static str,
    /// The API group ("" for core) and version of the resource it guards.
    pub group_version: (&'static str, &'static str),
    pub resource: &'static str,
    pub rules: &'static [GuardRule],
}

/// What the guard policies refuse in tenant namespaces, for every user (also a
/// cluster admin, and a tenant whose RBAC someone widened later).
pub const GUARD_POLICIES: &[GuardPolicy] = &[
    GuardPolicy {
        name: names::TENANT_SERVICES_POLICY,
        group_version: ("", "v1"),
        resource: "services",
        rules: &[
            GuardRule {
                name: "no-loadbalancer",
                expression: "object.spec.type != 'LoadBalancer'",
                message: "rule no-loadbalancer: a Service of type LoadBalancer is not allowed in a claworc tenant namespace (it would expose instances outside the cluster, around the default-deny NetworkPolicy): reach instances with `kubectl claworc ssh` or `kubectl claworc tunnel`, or use type ClusterIP",
            },
            GuardRule {
                name: "no-nodeport",
                expression: "object.spec.type != 'NodePort'",
                message: "rule no-nodeport: a Service of type NodePort is not allowed in a claworc tenant namespace (it would open a port on every node, around the default-deny NetworkPolicy): reach instances with `kubectl claworc ssh` or `kubectl claworc tunnel`, or use type ClusterIP",
            },
            GuardRule {
                name: "no-external-ips",
                expression: "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0",
                message: "rule no-external-ips: spec.externalIPs is not allowed in a claworc tenant namespace (a Service with externalIPs takes over the cluster's traffic to those addresses, CVE-2020-8554): remove spec.externalIPs",
            },
        ],
    },
    GuardPolicy {
        name: names::TENANT_SECRETS_POLICY,
        group_version: ("", "v1"),
        resource: "secrets",
        rules: &[GuardRule {
            name: "no-long-lived-tokens",
            expression: "!has(object.type) || object.type != 'kubernetes.io/service-account-token'",
            message: "rule no-long-lived-tokens: a Secret of type kubernetes.io/service-account-token is not allowed in a claworc tenant namespace (the cluster would fill it with a token that never expires): ask an admin for `kubectl claworc tenant kubeconfig NAME --ttl DURATION`",
        }],
    },
    GuardPolicy {
        name: names::TENANT_EVENTS_POLICY,
        group_version: ("events.k8s.io", "v1"),
        resource: "events",
        rules: &[GuardRule {
            name: "events-name-their-author",
            // Only the namespace's own ServiceAccounts (the tenant's kubeconfig) are
            // held to it; controllers and admins write Events as they always do.
            expression: "!request.userInfo.username.startsWith('system:serviceaccount:' + request.namespace + ':') || (has(object.reportingController) && object.reportingController == 'claworc.io/kubectl-claworc' && has(object.note) && object.note.endsWith(' by ' + request.userInfo.username))",
            message: "rule events-name-their-author: in a claworc tenant namespace the tenant may only write the plugin's Events (reportingController claworc.io/kubectl-claworc) whose note ends with ' by ' and the tenant's own user name, so that `kubectl claworc audit` and `kubectl get events` cannot show a forged author: record actions with `kubectl claworc` itself",
        }],
    },
];

fn managed_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(BTreeMap::from([(names::LABEL_MANAGED_BY.to_string(), names::MANAGED_BY.to_string())])),
        ..Default::default()
    }
}

/// A cluster-scoped guard policy (ValidatingAdmissionPolicy, CEL, built into
/// Kubernetes ≥ 1.30): its rules on create and update of its resource.
pub fn guard_policy(p: &GuardPolicy) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: managed_meta(p.name),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(strings(&[p.group_version.0])),
                    api_versions: Some(strings(&[p.group_version.1])),
                    operations: Some(strings(&["CREATE", "UPDATE"])),
                    resources: Some(strings(&[p.resource])),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            validations: Some(
                p.rules
                    .iter()
                    .map(|r| Validation {
                        expression: r.expression.into(),
                        message: Some(r.message.into()),
                        reason: Some("Forbidden".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// Binds [`guard_policy`] (same name) to every namespace labelled `claworc.io/tenant`.
pub fn guard_binding(p: &GuardPolicy) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: managed_meta(p.name),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: p.name.into(),
            validation_actions: strings(&["Deny"]),
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: names::LABEL_TENANT.into(),
                        operator: "Exists".into(),
                        values: None,
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// A NodePort Service the services policy must refuse (see [`guard_probe_secret`]).
pub fn guard_probe_service(tenant: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("claworc-guard-probe".into()),
            namespace: Some(tenant.to_string()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("NodePort".into()),
            ports: Some(vec![ServicePort { port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// A Secret the secrets policy must refuse in the tenant's namespace; `tenant
/// create` sends it and [`guard_probe_service`] as server-side dry runs to prove the
/// policies are in force there before it hands out the kubeconfig (nothing is
/// stored either way).
pub fn guard_probe_secret(tenant: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("claworc-guard-probe".into()),
            namespace: Some(tenant.to_string()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/service-account.name".to_string(),
                "default".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Default::default()
    }
}

/// A TokenRequest for the tenant ServiceAccount, valid `ttl_seconds`, for the API
/// server's default audiences.
pub fn token_request(tenant: &str, ttl_seconds: i64) -> TokenRequest {
    TokenRequest {
        metadata: meta(tenant, TENANT_SA),
        spec: Some(TokenRequestSpec { expiration_seconds: Some(ttl_seconds), ..Default::default() }),
        status: None,
    }
}

/// What was done to a tenant, as recorded in an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    IssueKubeconfig,
    RotateKubeconfig,
    Delete,
}

impl Action {
    /// The Event's `reason` (what `kubectl get events` shows).
    pub fn reason(self) -> &'static str {
        match self {
            Action::Create => "TenantCreated",
            Action::Update => "TenantQuotaUpdated",
            Action::IssueKubeconfig => "TenantKubeconfigIssued",
            Action::RotateKubeconfig => "TenantKubeconfigRotated",
            Action::Delete => "TenantDeleted",
        }
    }

    /// The Event's `action`.
    pub fn action(self) -> &'static str {
        match self {
            Action::Create => "Create",
            Action::Update => "Update",
            Action::IssueKubeconfig => "IssueKubeconfig",
            Action::RotateKubeconfig => "RotateKubeconfig",
            Action::Delete => "Delete",
        }
    }
}

/// What an Event in namespace `in_namespace` about the tenant's Namespace records
/// (written by [`crate::events`]).
pub fn event_record(in_namespace: &str, tenant: &str, action: Action) -> Record {
    Record {
        regarding: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(tenant.to_string()),
            // The API accepts an event about a cluster-scoped object only in
            // `default` (or `kube-system`), unless the reference names the event's
            // own namespace: the tenant's Namespace is that namespace.
            namespace: (in_namespace == tenant).then(|| tenant.to_string()),
            ..Default::default()
        },
        reason: action.reason(),
        action: action.action(),
        labels: labels(tenant),
    }
}

/// Name of the cluster, user and context in a tenant kubeconfig.
pub fn kubeconfig_name(tenant: &str) -> String {
    format!("claworc-{tenant}")
}

/// The tenant kubeconfig: the admin's cluster entry as it is (server, CA data, TLS
/// server name, proxy, extensions; a CA file must already be inlined), the token,
/// and the tenant namespace. Holds a token: write it 0600.
pub fn kubeconfig(tenant: &str, cluster: Cluster, token: &str) -> Kubeconfig {
    let name = kubeconfig_name(tenant);
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster { name: name.clone(), cluster: Some(cluster), ..Default::default() }],
        auth_infos: vec![NamedAuthInfo {
            name: name.clone(),
            auth_info: Some(AuthInfo { token: Some(token.to_string().into()), ..Default::default() }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: Some(Context {
                cluster: name.clone(),
                user: Some(name.clone()),
                namespace: Some(tenant.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(name),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn namespace_is_restricted_and_labelled() {
        let ns = namespace("team-a");
        let l = ns.metadata.labels.unwrap();
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(l[&format!("pod-security.kubernetes.io/{mode}")], "restricted");
        }
        assert_eq!(l[names::LABEL_TENANT], "team-a");
        assert_eq!(ns.metadata.name.as_deref(), Some("team-a"));
    }

    #[test]
    fn role_grants_only_the_workflows_needs() {
        let r = role("t");
        assert_eq!(r.metadata.namespace.as_deref(), Some("t"));
        let rules = r.rules.unwrap();
        let grants: Vec<(String, String)> = rules
            .iter()
            .flat_map(|r| {
                let g = r.api_groups.clone().unwrap()[0].clone();
                r.resources.clone().unwrap().into_iter().flat_map(move |res| {
                    let g = g.clone();
                    r.verbs.iter().map(move |v| (format!("{g}/{res}"), v.clone()))
                })
            })
            .collect();
        let has = |res: &str, verb: &str| grants.iter().any(|(r, v)| r == res && v == verb);
        assert!(has("apps/deployments", "create") && has("/pods/portforward", "create") && has("/pods/log", "get"));
        assert!(has("/secrets", "patch") && has("/persistentvolumeclaims", "create") && has("/events", "list"));
        for (res, verb) in [
            ("/services", "create"),
            ("/pods", "create"),
            ("/pods", "delete"),
            ("/pods/exec", "create"),
            ("/pods/attach", "create"),
            ("/pods/ephemeralcontainers", "patch"),
            ("/serviceaccounts/token", "create"),
            ("/secrets", "list"),
            ("/secrets", "watch"),
            ("/events", "create"),
            ("/events", "delete"),
        ] {
            assert!(!has(res, verb), "the Role grants {verb} {res}");
        }
        let all_resources: Vec<&str> = GRANTS.iter().flat_map(|g| g.resources.iter().copied()).collect();
        for guard in ["networkpolicies", "resourcequotas", "limitranges", "roles", "rolebindings", "namespaces", "*"] {
            assert!(!all_resources.contains(&guard), "{guard}");
        }
        assert!(
            GRANTS.iter().all(|g| !g.verbs.iter().any(|v| matches!(*v, "*" | "escalate" | "bind" | "impersonate")))
        );
        assert!(GRANTS.iter().all(|g| !g.why.is_empty()));
        let b = role_binding("t");
        assert_eq!(b.subjects.unwrap()[0].name, TENANT_SA);
        assert_eq!(b.role_ref.name, TENANT_SA);
    }

    #[test]
    fn docs_show_the_grants_and_the_guard_rules() {
        let ssh = include_str!("../../../docs/ssh.md");
        assert!(ssh.contains(&rbac_table()), "docs/ssh.md's RBAC table is not the Role's; paste:\n{}", rbac_table());
        let plugin = include_str!("../../../docs/plugin.md");
        assert!(plugin.contains(&guard_table()), "docs/plugin.md lacks the guard rules; paste:\n{}", guard_table());
    }

    #[test]
    fn quota_limits_and_policies() {
        let q = resource_quota("t", &Quota { cpu: "4".into(), memory: "8Gi".into(), pods: 10, storage: "50Gi".into() });
        let hard = q.spec.unwrap().hard.unwrap();
        assert_eq!(hard["pods"].0, "10");
        assert_eq!(hard["limits.memory"].0, "8Gi");
        assert_eq!(hard["requests.cpu"].0, "4");
        assert_eq!(hard["services.loadbalancers"].0, "0");
        assert_eq!(hard["services.nodeports"].0, "0");
        let policies = claworc_policies("t");
        let names: Vec<_> = policies.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert!(names.contains(&"claworc-deny-ingress".to_string()), "{names:?}");
        assert!(names.contains(&"claworc-egress-restricted".to_string()), "{names:?}");
        assert!(policies.iter().all(|p| p.metadata.namespace.as_deref() == Some("t")));
        let np = default_deny("t").spec.unwrap();
        assert_eq!(np.policy_types.unwrap(), vec!["Ingress".to_string(), "Egress".to_string()]);
        let limits = limit_range("t").spec.unwrap().limits;
        assert_eq!(limits[0].default.as_ref().unwrap()["memory"].0, "1Gi");
        assert_eq!(service_account("t").automount_service_account_token, Some(false));
    }

    #[test]
    fn quota_patch_sets_only_the_changed_entries() {
        let change = QuotaChange { cpu: Some("8".into()), storage: Some("1Gi".into()), ..Default::default() };
        let hard = quota_patch(&change).spec.unwrap().hard.unwrap();
        let keys: Vec<&str> = hard.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["limits.cpu", "requests.cpu", "requests.storage", "services.loadbalancers", "services.nodeports"]
        );
        assert!(QuotaChange::default().is_empty());
        // The patch body names no object, so it cannot move or rename one.
        let body = serde_json::to_value(quota_patch(&change)).unwrap();
        assert!(body["metadata"].as_object().is_none_or(|m| m.is_empty()), "{body}");
    }

    #[test]
    fn guard_policies_bind_to_tenant_namespaces_and_name_each_rule() {
        assert_eq!(GUARD_POLICIES.len(), 3);
        for gp in GUARD_POLICIES {
            let spec = guard_policy(gp).spec.unwrap();
            assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
            let rules = spec.match_constraints.unwrap().resource_rules.unwrap();
            assert_eq!(rules[0].resources.as_deref().unwrap(), [gp.resource]);
            assert_eq!(rules[0].operations.as_deref().unwrap(), ["CREATE", "UPDATE"]);
            let validations = spec.validations.unwrap();
            assert_eq!(validations.len(), gp.rules.len());
            for (v, r) in validations.iter().zip(gp.rules) {
                let msg = v.message.as_deref().unwrap();
                assert!(msg.starts_with(&format!("rule {}: ", r.name)), "{msg}");
                assert!(msg.len() < 1024, "{msg}");
            }
            let b = guard_binding(gp).spec;
            assert_eq!(b.policy_name, gp.name);
            assert_eq!(b.validation_actions, ["Deny"]);
            let sel = b.match_resources.unwrap().namespace_selector.unwrap();
            let req = &sel.match_expressions.unwrap()[0];
            assert_eq!((req.key.as_str(), req.operator.as_str()), (names::LABEL_TENANT, "Exists"));
            // Serialized with apiVersion and kind, as server-side apply needs.
            let v = serde_json::to_value(guard_policy(gp)).unwrap();
            assert_eq!(v["apiVersion"], "admissionregistration.k8s.io/v1");
            assert_eq!(v["kind"], "ValidatingAdmissionPolicy");
        }
    }

    #[test]
    fn the_guard_probes_are_what_the_policies_refuse() {
        let secret = guard_probe_secret("t");
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/service-account-token"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("t"));
        let service = guard_probe_service("t");
        assert_eq!(service.spec.unwrap().type_.as_deref(), Some("NodePort"));
        let all: Vec<&str> = GUARD_POLICIES.iter().flat_map(|p| p.rules.iter().map(|r| r.expression)).collect();
        assert!(all.contains(&"object.spec.type != 'NodePort'"));
        assert!(all.iter().any(|e| e.contains("'kubernetes.io/service-account-token'")));
    }

    #[test]
    fn the_events_policy_lets_the_plugins_own_events_through() {
        let gp = GUARD_POLICIES.iter().find(|p| p.name == names::TENANT_EVENTS_POLICY).unwrap();
        assert_eq!((gp.group_version, gp.resource), (("events.k8s.io", "v1"), "events"));
        let expression = gp.rules[0].expression;
        // What the plugin writes (events.rs) is what the rule asks for.
        assert!(expression.contains(&format!("'{}'", crate::events::REPORTING_CONTROLLER)), "{expression}");
        let note = crate::events::note("instance dev created", "USER");
        assert!(note.ends_with(" by USER") && expression.contains("' by ' + request.userInfo.username"), "{note}");
    }

    #[test]
    fn token_request_and_event() {
        let t = token_request("t", 3600);
        assert_eq!(t.spec.unwrap().expiration_seconds, Some(3600));
        assert_eq!(t.metadata.name.as_deref(), Some(TENANT_SA));
        let now: Timestamp = "2026-11-26T18:00:00Z".parse().unwrap();
        let e = crate::events::event("default", &event_record("default", "team-a", Action::Delete), "deleted", now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert!(e.metadata.name.unwrap().starts_with("team-a."));
        assert_eq!(e.reason.as_deref(), Some("TenantDeleted"));
        let regarding = e.regarding.unwrap();
        assert_eq!(regarding.kind.as_deref(), Some("Namespace"));
        assert_eq!(regarding.namespace, None);
        let inside = event_record("team-a", "team-a", Action::Create);
        assert_eq!(inside.regarding.namespace.as_deref(), Some("team-a"));
        assert_eq!(inside.labels[names::LABEL_TENANT], "team-a");
    }

    #[test]
    fn kubeconfig_keeps_the_cluster_entry_and_reads_back() {
        let cluster = Cluster {
            server: Some("https://127.0.0.1:6443".into()),
            certificate_authority_data: Some("Q0E=".into()),
            tls_server_name: Some("kubernetes".into()),
            proxy_url: Some("socks5://127.0.0.1:1080".into()),
            disable_compression: Some(true),
            extensions: Some(vec![kube::config::NamedExtension {
                name: "example.com/cluster-info".into(),
                extension: serde_json::json!({"region": "eu-1"}),
            }]),
            ..Default::default()
        };
        let kc = kubeconfig("team-a", cluster.clone(), "tok");
        let y = serde_yaml_ng::to_string(&kc).unwrap();
        let v: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(v["clusters"][0]["cluster"]["certificate-authority-data"], "Q0E=");
        assert_eq!(v["clusters"][0]["cluster"]["tls-server-name"], "kubernetes");
        assert_eq!(v["clusters"][0]["cluster"]["proxy-url"], "socks5://127.0.0.1:1080");
        assert_eq!(v["clusters"][0]["cluster"]["disable-compression"], true);
        assert_eq!(v["clusters"][0]["cluster"]["extensions"][0]["name"], "example.com/cluster-info");
        assert_eq!(v["clusters"][0]["cluster"]["extensions"][0]["extension"]["region"], "eu-1");
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["contexts"][0]["context"]["namespace"], "team-a");
        assert_eq!(v["current-context"], "claworc-team-a");
        let back = Kubeconfig::from_yaml(&y).unwrap();
        assert_eq!(back.current_context.as_deref(), Some("claworc-team-a"));
        assert_eq!(back.clusters[0].cluster.as_ref().unwrap().server, cluster.server);
    }
}
