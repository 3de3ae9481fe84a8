//! Tenants against the real local control plane, with the real kubectl and only the
//! tenant's kubeconfig where the tenant acts: the Role's can-i matrix, the guard
//! policy (ValidatingAdmissionPolicy) refusing LoadBalancer/NodePort/externalIPs
//! Services and long-lived token Secrets with a message that names the rule, Pod
//! Security `restricted`, the plugin's own workflow as the tenant, `tenant update`
//! of the quota, `tenant kubeconfig --ttl` (renew) and `--rotate` (revoke), the
//! token expiries in `tenant list`, the Events of every action and `tenant delete`.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use claworc_contract::names;
use claworc_e2e::{Cluster, Output, TestNamespace, User, assert_fails, mode, run, unique_name, wait_for};
use serde_json::Value;

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .expect("JWT payload is base64url"),
    )
    .expect("JWT claims")
}

fn token_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("token:")).expect("token in kubeconfig");
    line.trim_start().trim_start_matches("token:").trim().trim_matches('\'').trim_matches('"').to_string()
}

/// The real kubectl with only `kubeconfig` (no admin credentials anywhere).
fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Cluster::get().command(Cluster::get().kubectl_path());
    cmd.env("KUBECONFIG", kubeconfig).args(args);
    run(cmd, stdin)
}

/// `kubectl auth can-i ARGS` with only `kubeconfig`.
fn can(kubeconfig: &Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = kubectl_as(kubeconfig, &all, None);
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?}: {other:?} {}", out.stderr),
    }
}

/// A new tenant made by the admin, its kubeconfig, and the namespace (deleted when
/// the test ends, also on panic).
fn new_tenant(admin: &User, prefix: &str, ttl: &str) -> (String, std::path::PathBuf, TestNamespace) {
    let tenant = unique_name(prefix);
    let file = admin.home.join(format!("{tenant}.kubeconfig"));
    admin.ok(&["tenant", "create", &tenant, "--ttl", ttl, "--output", file.to_str().unwrap()]);
    let ns = TestNamespace::adopt(tenant.clone());
    (tenant, file, ns)
}

fn service(name: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "{name}"}},
            "spec": {{"selector": {{"app": "x"}}, "ports": [{{"port": 80}}]{spec}}}}}"#
    )
}

/// Every resource and verb a tenant should and should not have, in its own
/// namespace unless `-n` says otherwise. `true`: allowed.
const MATRIX: &[(&[&str], bool)] = &[
    // The instance and what it is made of.
    (&["create", "deployments.apps"], true),
    (&["get", "deployments.apps"], true),
    (&["list", "deployments.apps"], true),
    (&["watch", "deployments.apps"], true),
    (&["update", "deployments.apps"], true),
    (&["patch", "deployments.apps"], true),
    (&["delete", "deployments.apps"], true),
    (&["get", "secrets"], true),
    (&["create", "secrets"], true),
    (&["patch", "secrets"], true),
    (&["delete", "secrets"], true),
    (&["list", "secrets"], false),
    (&["watch", "secrets"], false),
    (&["update", "secrets"], false),
    (&["create", "persistentvolumeclaims"], true),
    (&["list", "persistentvolumeclaims"], true),
    (&["delete", "persistentvolumeclaims"], true),
    (&["update", "persistentvolumeclaims"], false),
    (&["create", "configmaps"], true),
    (&["patch", "configmaps"], true),
    // Reaching it.
    (&["get", "pods"], true),
    (&["list", "pods"], true),
    (&["watch", "pods"], true),
    (&["get", "pods", "--subresource=log"], true),
    (&["create", "pods", "--subresource=portforward"], true),
    (&["get", "pods", "--subresource=portforward"], true),
    (&["list", "events"], true),
    (&["list", "events.events.k8s.io"], true),
    // Events: the plugin records create, rotate-keys and delete; none changed or erased.
    (&["create", "events.events.k8s.io"], true),
    (&["create", "events"], false),
    (&["delete", "events.events.k8s.io"], false),
    (&["patch", "events.events.k8s.io"], false),
    (&["update", "events"], false),
    // Pods only through Deployments; no way into a container but SSH.
    (&["create", "pods"], false),
    (&["delete", "pods"], false),
    (&["update", "pods"], false),
    (&["create", "pods", "--subresource=exec"], false),
    (&["get", "pods", "--subresource=exec"], false),
    (&["create", "pods", "--subresource=attach"], false),
    (&["patch", "pods", "--subresource=ephemeralcontainers"], false),
    (&["update", "pods", "--subresource=ephemeralcontainers"], false),
    (&["get", "pods", "--subresource=proxy"], false),
    (&["create", "replicasets.apps"], false),
    (&["create", "statefulsets.apps"], false),
    (&["create", "daemonsets.apps"], false),
    (&["create", "jobs.batch"], false),
    (&["create", "cronjobs.batch"], false),
    // No Services at all (the guard policy holds even if someone grants them).
    (&["create", "services"], false),
    (&["update", "services"], false),
    (&["patch", "services"], false),
    (&["get", "services", "--subresource=proxy"], false),
    (&["create", "endpoints"], false),
    (&["create", "endpointslices.discovery.k8s.io"], false),
    (&["create", "ingresses.networking.k8s.io"], false),
    // No credentials of its own making.
    (&["get", "serviceaccounts"], false),
    (&["create", "serviceaccounts"], false),
    (&["create", "serviceaccounts", "--subresource=token"], false),
    (&["impersonate", "serviceaccounts"], false),
    (&["impersonate", "users"], false),
    // The guard rails stay as the admin made them.
    (&["create", "networkpolicies.networking.k8s.io"], false),
    (&["update", "networkpolicies.networking.k8s.io"], false),
    (&["patch", "networkpolicies.networking.k8s.io"], false),
    (&["delete", "networkpolicies.networking.k8s.io"], false),
    (&["update", "resourcequotas"], false),
    (&["patch", "resourcequotas"], false),
    (&["delete", "resourcequotas"], false),
    (&["create", "resourcequotas"], false),
    (&["update", "limitranges"], false),
    (&["delete", "limitranges"], false),
    (&["create", "limitranges"], false),
    (&["create", "roles.rbac.authorization.k8s.io"], false),
    (&["update", "roles.rbac.authorization.k8s.io"], false),
    (&["patch", "roles.rbac.authorization.k8s.io"], false),
    (&["escalate", "roles.rbac.authorization.k8s.io"], false),
    (&["create", "rolebindings.rbac.authorization.k8s.io"], false),
    (&["update", "rolebindings.rbac.authorization.k8s.io"], false),
    (&["bind", "roles.rbac.authorization.k8s.io"], false),
    (&["patch", "namespaces"], false),
    (&["update", "namespaces"], false),
    (&["delete", "namespaces"], false),
    (&["create", "namespaces"], false),
    (&["create", "events"], false),
    (&["delete", "events"], false),
    (&["delete", "events.events.k8s.io"], false),
    // Nothing cluster-scoped, nothing elsewhere.
    (&["list", "nodes"], false),
    (&["create", "persistentvolumes"], false),
    (&["create", "clusterroles.rbac.authorization.k8s.io"], false),
    (&["create", "clusterrolebindings.rbac.authorization.k8s.io"], false),
    (&["update", "validatingadmissionpolicies.admissionregistration.k8s.io"], false),
    (&["delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io"], false),
    (&["update", "mutatingwebhookconfigurations.admissionregistration.k8s.io"], false),
    (&["get", "pods", "-n", "default"], false),
    (&["create", "deployments.apps", "-n", "kube-system"], false),
    (&["get", "secrets", "-n", "kube-system"], false),
];

#[test]
fn tenant_can_do_only_its_workflows_and_cannot_undo_its_guard_rails() {
    let admin = User::new();
    let (tenant, file, _ns) = new_tenant(&admin, "tenant-rbac", "2h");
    assert_eq!(mode(&file), 0o600);
    let claims = jwt_claims(&token_of(&file));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7200, "{claims}");
    let c = Cluster::get();

    // What the admin made.
    let ns_json = c.kubectl(&["get", "namespace", &tenant, "-o", "json"]).json();
    let labels = &ns_json["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels[names::LABEL_TENANT], tenant.as_str());
    let policies = c.kubectl(&["-n", &tenant, "get", "networkpolicies", "-o", "name"]);
    for np in ["claworc-default-deny", "claworc-deny-ingress", "claworc-egress-restricted", "claworc-egress-none"] {
        assert!(policies.expect_ok("get networkpolicies").contains(np), "{np} missing: {}", policies.stdout);
    }
    let quota = c.kubectl(&["-n", &tenant, "get", "resourcequota", "claworc-quota", "-o", "json"]).json();
    assert_eq!(quota["spec"]["hard"]["services.loadbalancers"], "0", "{quota}");
    assert_eq!(quota["spec"]["hard"]["services.nodeports"], "0", "{quota}");
    for policy in [names::TENANT_SERVICES_POLICY, names::TENANT_SECRETS_POLICY] {
        let binding = c.kubectl(&["get", "validatingadmissionpolicybinding", policy, "-o", "json"]).json();
        let selector = &binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(selector["key"], names::LABEL_TENANT, "{binding}");
        // One kind per policy: the API server's type check finds nothing to warn about.
        let status = wait_for("the policy's type check", Duration::from_secs(30), || {
            let p = c.kubectl(&["get", "validatingadmissionpolicy", policy, "-o", "json"]).json();
            p["status"]["typeChecking"].is_object().then(|| p["status"].clone())
        });
        assert!(status["typeChecking"]["expressionWarnings"].is_null(), "{status}");
    }

    // The can-i matrix, with only the tenant kubeconfig.
    let wrong: Vec<String> = MATRIX
        .iter()
        .filter(|(args, allowed)| can(&file, args) != *allowed)
        .map(|(args, allowed)| format!("{} {args:?}", if *allowed { "cannot" } else { "can" }))
        .collect();
    assert!(wrong.is_empty(), "the tenant Role is off: tenant {}", wrong.join("; tenant "));

    // Services: the tenant may not create any (RBAC) ...
    let tenant_svc = kubectl_as(&file, &["create", "-f", "-"], Some(&service("plain", "")));
    assert!(!tenant_svc.success() && tenant_svc.stderr.contains("forbidden"), "{tenant_svc:?}");
    // ... and whoever may (a cluster admin, or a tenant someone later bound to the
    // `edit` ClusterRole) cannot expose the namespace: the guard policy, per rule.
    c.kubectl(&["-n", &tenant, "create", "serviceaccount", "widened"]).expect_ok("serviceaccount");
    c.kubectl(&[
        "-n",
        &tenant,
        "create",
        "rolebinding",
        "widened-edit",
        "--clusterrole=edit",
        &format!("--serviceaccount={tenant}:widened"),
    ])
    .expect_ok("rolebinding to edit");
    let widened = format!("--as=system:serviceaccount:{tenant}:widened");
    for who in ["admin", "widened"] {
        for (name, spec, rule) in [
            ("lb", r#", "type": "LoadBalancer""#, "no-loadbalancer"),
            ("np", r#", "type": "NodePort""#, "no-nodeport"),
            ("eip", r#", "externalIPs": ["203.0.113.10"]"#, "no-external-ips"),
        ] {
            let mut args = vec!["-n", tenant.as_str(), "create", "-f", "-"];
            if who == "widened" {
                args.push(&widened);
            }
            let out = c.kubectl_with_stdin(&args, Some(&service(&format!("{name}-{who}"), spec)));
            assert!(!out.success(), "{who} created a {name} Service in a tenant namespace: {}", out.stdout);
            assert!(
                out.stderr.contains(names::TENANT_SERVICES_POLICY) && out.stderr.contains(&format!("rule {rule}:")),
                "{who}, {name}: the refusal does not name the rule: {}",
                out.stderr
            );
        }
    }
    // A ClusterIP Service is fine for whoever may create Services.
    c.kubectl_with_stdin(&["-n", &tenant, "create", "-f", "-", &widened], Some(&service("plain", "")))
        .expect_ok("a ClusterIP Service by the widened tenant");
    // An existing Service cannot be turned into a NodePort either.
    let out = c.kubectl(&["-n", &tenant, "patch", "service", "plain", "-p", r#"{"spec":{"type":"NodePort"}}"#]);
    assert!(!out.success() && out.stderr.contains("rule no-nodeport:"), "{out:?}");

    // No Secret the cluster would fill with a token that never expires.
    let sa_token = r#"{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "forever", "annotations": {"kubernetes.io/service-account.name": "default"}}}"#;
    let out = kubectl_as(&file, &["create", "-f", "-"], Some(sa_token));
    assert!(!out.success() && out.stderr.contains("rule no-long-lived-tokens:"), "{out:?}");
    assert!(out.stderr.contains(names::TENANT_SECRETS_POLICY), "{out:?}");
    kubectl_as(&file, &["create", "secret", "generic", "ordinary", "--from-literal=a=b"], None)
        .expect_ok("an ordinary Secret");

    // Events name their author: the tenant may write the plugin's Events in its own
    // name only, so `kubectl claworc audit` cannot be shown a forged one.
    let whoami = kubectl_as(&file, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], None);
    let me = whoami.expect_ok("auth whoami").trim().to_string();
    let event = |name: &str, controller: &str, by: &str| {
        format!(
            r#"{{"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {{"name": "{name}"}},
            "eventTime": "2026-11-26T10:00:00.000000Z", "reportingController": "{controller}",
            "reportingInstance": "kubectl-claworc", "action": "Delete", "reason": "InstanceDeleted", "type": "Normal",
            "note": "instance dev deleted by {by}",
            "regarding": {{"apiVersion": "apps/v1", "kind": "Deployment", "name": "dev", "namespace": "{tenant}"}}}}"#
        )
    };
    for (name, controller, by) in [
        ("forged-author", "claworc.io/kubectl-claworc", "kubernetes-admin"),
        ("forged-controller", "deployment-controller", me.as_str()),
    ] {
        let out = kubectl_as(&file, &["create", "-f", "-"], Some(&event(name, controller, by)));
        assert!(!out.success() && out.stderr.contains("rule events-name-their-author:"), "{name}: {out:?}");
        assert!(out.stderr.contains(names::TENANT_EVENTS_POLICY), "{out:?}");
    }
    kubectl_as(&file, &["create", "-f", "-"], Some(&event("own", "claworc.io/kubectl-claworc", &me)))
        .expect_ok("an Event in the tenant's own name");

    // Pods that bypass the instance workflow: Pod Security `restricted` refuses them.
    let privileged = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "root"},
        "spec": {"selector": {"matchLabels": {"app": "root"}}, "template": {"metadata": {"labels": {"app": "root"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "securityContext": {"privileged": true}}]}}}}"#;
    let out = kubectl_as(&file, &["create", "-f", "-"], Some(privileged));
    assert!(out.stderr.contains("would violate PodSecurity \"restricted:latest\""), "{out:?}");
    wait_for("the ReplicaSet's refusal by Pod Security", Duration::from_secs(60), || {
        let ev = c.kubectl(&["-n", &tenant, "get", "events", "--field-selector", "reason=FailedCreate", "-o", "json"]);
        ev.json()["items"]
            .as_array()?
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("violates PodSecurity")))
            .then_some(())
    });
    let pods = kubectl_as(&file, &["get", "pods", "-l", "app=root", "-o", "name"], None);
    assert_eq!(pods.expect_ok("get pods").trim(), "", "a privileged pod exists");

    // The plugin's own workflow works with only the tenant kubeconfig.
    let member = User::with_kubeconfig(&file);
    // --wait: the webhook's restricted security context lets the pod into the
    // Pod Security `restricted` namespace, and the rollout completes.
    member.ok(&["create", "dev", "--image", "busybox:1", "--wait", "--timeout", "90s"]);
    let st: Value = serde_json::from_str(&member.ok(&["status", "dev", "-o", "json"])).unwrap();
    assert_eq!(st["available"], true, "{st}");
    assert_eq!(st["warnings"], serde_json::json!([]), "{st}");
    let l: Value = serde_json::from_str(&member.ok(&["list", "-o", "json"])).unwrap();
    assert_eq!(l[0]["name"], "dev");
    assert_fails(&member.run(&["-n", "default", "list"]), 5, "forbidden");
    member.ok(&["delete", "dev"]);

    // --rotate: the old token stops working (the API server caches tokens ~10s).
    let file2 = admin.home.join("tenant2.kubeconfig");
    admin.ok(&["tenant", "kubeconfig", &tenant, "--rotate", "--ttl", "1h", "--output", file2.to_str().unwrap()]);
    wait_for("the old token to be rejected", Duration::from_secs(40), || {
        let out = kubectl_as(&file, &["get", "pods"], None);
        (!out.success() && out.stderr.contains("Unauthorized")).then_some(())
    });
    kubectl_as(&file2, &["get", "deployments"], None).expect_ok("the new kubeconfig");
    assert_fails(&member.run(&["list"]), 1, "Unauthorized");
    assert_fails(&admin.run(&["tenant", "kubeconfig", "no-such-tenant-x"]), 3, "not found");
}

/// The events about `tenant` in namespace `ns`: (reason, note).
fn events(ns: &str, tenant: &str) -> Vec<(String, String)> {
    // `kubectl get events` (core/v1): the plugin writes events.k8s.io/v1, both
    // are views of the same objects (note = message, reportingController =
    // reportingComponent).
    let selector = format!("involvedObject.kind=Namespace,involvedObject.name={tenant}");
    let out = Cluster::get().kubectl(&["-n", ns, "get", "events", "--field-selector", &selector, "-o", "json"]);
    out.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingComponent"] == "claworc.io/kubectl-claworc")
        .map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn tenant_lifecycle_update_renew_list_events_delete() {
    let admin = User::new();
    let (tenant, file, _ns) = new_tenant(&admin, "tenant-life", "2h");
    let c = Cluster::get();
    let me = c.kubectl(&["auth", "whoami", "-o", "json"]).json()["status"]["userInfo"]["username"]
        .as_str()
        .expect("a user name")
        .to_string();

    // update: bad input changes nothing.
    assert_fails(&admin.run(&["tenant", "update", &tenant, "--memory", "lots"]), 2, "--memory");
    assert_fails(&admin.run(&["tenant", "update", "no-such-tenant-y", "--pods", "3"]), 3, "not found");
    // update: the quota changes in place, and is enforced on return.
    let before = c.kubectl(&["-n", &tenant, "get", "resourcequota", "claworc-quota", "-o", "json"]).json();
    let out = admin.ok(&["tenant", "update", &tenant, "--storage", "1Gi", "--pods", "3"]);
    assert!(out.contains("requests.storage 50Gi→1Gi") && out.contains("pods 10→3"), "{out}");
    let after = c.kubectl(&["-n", &tenant, "get", "resourcequota", "claworc-quota", "-o", "json"]).json();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"], "the quota was replaced, not updated");
    assert_eq!(after["spec"]["hard"]["requests.storage"], "1Gi");
    assert_eq!(after["spec"]["hard"]["pods"], "3");
    assert_eq!(after["spec"]["hard"]["limits.memory"], "8Gi", "an unchanged entry changed");
    assert_eq!(after["spec"]["hard"]["services.nodeports"], "0");
    let claim = |name: &str, size: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {{"name": "{name}"}},
                "spec": {{"accessModes": ["ReadWriteOnce"], "resources": {{"requests": {{"storage": "{size}"}}}}}}}}"#
        )
    };
    let over = kubectl_as(&file, &["create", "-f", "-"], Some(&claim("big", "2Gi")));
    assert!(!over.success() && over.stderr.contains("exceeded quota"), "{over:?}");
    kubectl_as(&file, &["create", "-f", "-"], Some(&claim("small", "512Mi"))).expect_ok("a claim within the quota");

    // update also brings the Role of a tenant made (or widened) otherwise back to
    // this version's rules.
    let widen = r#"[{"op": "add", "path": "/rules/-", "value": {"apiGroups": [""], "resources": ["services"], "verbs": ["create"]}}]"#;
    c.kubectl(&["-n", &tenant, "patch", "role", "claworc-tenant", "--type=json", "-p", widen])
        .expect_ok("widen the Role");
    wait_for("the widened Role", Duration::from_secs(10), || can(&file, &["create", "services"]).then_some(()));
    let out = admin.ok(&["tenant", "update", &tenant]);
    assert!(out.contains("Role claworc-tenant set to this version's rules"), "{out}");
    wait_for("the Role narrowed again", Duration::from_secs(10), || {
        (!can(&file, &["create", "services"])).then_some(())
    });
    let out = admin.ok(&["tenant", "update", &tenant]);
    assert!(out.contains("nothing to change"), "{out}");

    // kubeconfig --ttl renews without revoking.
    let file2 = admin.home.join("renewed.kubeconfig");
    admin.ok(&["tenant", "kubeconfig", &tenant, "--ttl", "1h", "--output", file2.to_str().unwrap()]);
    let (old, new) = (token_of(&file), token_of(&file2));
    assert_ne!(old, new);
    kubectl_as(&file, &["get", "deployments"], None).expect_ok("the old token after a renewal");
    kubectl_as(&file2, &["get", "deployments"], None).expect_ok("the new token");
    // tenant list shows both expiries, and warns about the one due first.
    let exp = |t: &str| jwt_claims(t)["exp"].as_i64().unwrap();
    let list_out = admin.run(&["tenant", "list", "-o", "json", "--warn-before", "90m"]);
    let list: Value = serde_json::from_str(list_out.expect_ok("tenant list")).unwrap();
    let row = list.as_array().unwrap().iter().find(|t| t["name"] == tenant.as_str()).expect("the tenant listed");
    let listed: Vec<i64> = row["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["expires"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_second())
        .collect();
    assert_eq!(listed.len(), 2, "{row}");
    for (listed, token) in listed.iter().zip([&new, &old]) {
        assert!((listed - exp(token)).abs() <= 1, "listed expiry {listed} vs the token's exp {}", exp(token));
    }
    let warned: Vec<&str> = list_out.stderr.lines().filter(|l| l.contains(&format!("tenant {tenant}:"))).collect();
    assert_eq!(warned.len(), 1, "one token expires within 90m: {}", list_out.stderr);
    let rfc3339 = |t: &str| jiff::Timestamp::from_second(exp(t)).unwrap().to_string();
    assert!(warned[0].starts_with("warning: ") && warned[0].contains(&format!("({})", rfc3339(&new))), "{warned:?}");
    assert_eq!(row["warnings"].as_array().unwrap().len(), 1, "{row}");
    let table = admin.ok(&["tenant", "list"]);
    let line = table.lines().find(|l| l.starts_with(&format!("{tenant} "))).expect("the tenant's row");
    assert!(line.contains(" 2 "), "{table}");
    assert!(
        line.contains(&format!("({}), ", rfc3339(&new))) && line.ends_with(&format!("({})", rfc3339(&old))),
        "{table}"
    );

    admin.ok(&["tenant", "kubeconfig", &tenant, "--rotate", "--ttl", "1h", "--output", file2.to_str().unwrap()]);
    let list: Value = serde_json::from_str(&admin.ok(&["tenant", "list", "-o", "json"])).unwrap();
    let row = list.as_array().unwrap().iter().find(|t| t["name"] == tenant.as_str()).unwrap();
    assert_eq!(row["tokens"].as_array().unwrap().len(), 1, "--rotate keeps the revoked tokens on record: {row}");

    // Every action is an Event about the tenant, who did it included; the tenant
    // can read them.
    let recorded = events(&tenant, &tenant);
    for reason in ["TenantCreated", "TenantQuotaUpdated", "TenantKubeconfigIssued", "TenantKubeconfigRotated"] {
        let (_, note) =
            recorded.iter().find(|(r, _)| r == reason).unwrap_or_else(|| panic!("no {reason} event in {recorded:?}"));
        assert!(note.ends_with(&format!("by {me}")), "{reason}: {note}");
    }
    let seen = kubectl_as(&file2, &["get", "events", "-o", "json"], None).json();
    assert!(seen["items"].as_array().unwrap().iter().any(|e| e["reason"] == "TenantQuotaUpdated"), "{seen}");

    // delete: says what it removes; off a terminal it needs --yes.
    let out = admin.run(&["tenant", "delete", &tenant]);
    assert_fails(&out, 2, "--yes");
    assert!(out.stderr.contains("1 PersistentVolumeClaim(s)") && out.stderr.contains("nothing was deleted"), "{out:?}");
    let ns_still = c.kubectl(&["get", "namespace", &tenant, "-o", "json"]).json();
    assert!(ns_still["metadata"]["deletionTimestamp"].is_null(), "deleted without --yes");
    let out = admin.run(&["tenant", "delete", &tenant, "--yes"]);
    assert!(out.success(), "{out:?}");
    assert!(out.stderr.contains(&format!("removes namespace {tenant}")), "{out:?}");
    assert!(out.stderr.contains("event TenantDeleted in namespace default"), "{out:?}");
    let deleted = events("default", &tenant);
    assert!(deleted.iter().any(|(r, n)| r == "TenantDeleted" && n.ends_with(&format!("by {me}"))), "{deleted:?}");
    // The guard policy stays for the other tenants.
    for policy in [names::TENANT_SERVICES_POLICY, names::TENANT_SECRETS_POLICY] {
        c.kubectl(&["get", "validatingadmissionpolicy", policy]).expect_ok("a guard policy");
    }
}
