//! Generators of opted-in Deployments (as JSON) for the property tests: every
//! rule's field, mostly unset, sometimes set to what is allowed or refused.

use proptest::prelude::*;
use serde_json::{Value, json};

fn pick<T: Clone + std::fmt::Debug + 'static>(options: Vec<T>) -> impl Strategy<Value = T> {
    prop::sample::select(options)
}

/// Mostly nothing, sometimes one of `options`: so that a fair share of the
/// Deployments pass (a property over denials only would prove nothing).
fn optional(options: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(0.12, pick(options))
}

fn pod_security_context() -> impl Strategy<Value = Value> {
    (
        optional(vec![json!(0), json!(1000), json!(4242)]),
        optional(vec![json!(0), json!(1000)]),
        optional(vec![json!(0), json!(2000)]),
        optional(vec![json!([0]), json!([5, 6])]),
        optional(vec![
            json!({"type": "Unconfined"}),
            json!({"type": "RuntimeDefault"}),
            json!({"type": "Localhost", "localhostProfile": "p.json"}),
        ]),
        optional(vec![json!({"type": "Unconfined"}), json!({"type": "RuntimeDefault"})]),
        optional(vec![json!({"type": "spc_t"}), json!({"type": "container_t"}), json!({"user": "u"})]),
        optional(vec![
            json!([{"name": "kernel.msgmax", "value": "1"}]),
            json!([{"name": "net.ipv4.tcp_syncookies", "value": "1"}]),
        ]),
        optional(vec![json!(true), json!(false)]),
    )
        .prop_map(|(user, group, fs, supp, seccomp, apparmor, selinux, sysctls, non_root)| {
            let mut sc = json!({});
            for (k, v) in [
                ("runAsUser", user),
                ("runAsGroup", group),
                ("fsGroup", fs),
                ("supplementalGroups", supp),
                ("seccompProfile", seccomp),
                ("appArmorProfile", apparmor),
                ("seLinuxOptions", selinux),
                ("sysctls", sysctls),
                ("runAsNonRoot", non_root),
            ] {
                if let Some(v) = v {
                    sc[k] = v;
                }
            }
            sc
        })
}

fn container(names: Vec<&'static str>) -> impl Strategy<Value = Value> {
    (
        pick(names),
        optional(vec![json!(true), json!(false)]),
        optional(vec![json!(true), json!(false)]),
        optional(vec![json!({"add": ["NET_ADMIN"]}), json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}), json!({"drop": ["NET_RAW"]})]),
        optional(vec![json!(0), json!(1000)]),
        optional(vec![json!(false), json!(true)]),
        optional(vec![json!({"type": "Unconfined"}), json!({"type": "RuntimeDefault"})]),
        optional(vec![json!("Unmasked"), json!("Default")]),
        optional(vec![json!({"type": "Unconfined"})]),
        prop::collection::vec(
            (
                prop_oneof![8 => Just("data"), 2 => Just("home"), 1 => Just("claworc-ssh-keys"), 1 => Just("claworc-run"), 1 => Just("claworc-home"), 1 => Just("claworc-known-hosts")],
                prop_oneof![
                    12 => pick(vec!["/data", "/data", "/data", "/home/claworc", "/home", "/etc", "/etc/app", "/usr/local", "/", "/run", "/var", "/var/run/x", "/var/run/secrets", "/lib64/x", "/data/"]),
                    1 => pick(vec!["/etc/claworc/ssh/", "/run/claworc/.ssh", "/srv/../etc", "relative"]),
                ],
                optional(vec![json!({"subPath": "me"}), json!({"readOnly": true}), json!({"mountPropagation": "None"})]),
            ),
            0..3,
        ),
        optional(vec![json!([{"containerPort": 80, "hostPort": 80}]), json!([{"containerPort": 80}])]),
        // What the sidecar copies from its target.
        (
            prop::collection::vec(
                pick(vec![
                    json!({"name": "HOME", "value": "/data/me"}),
                    json!({"name": "HOME", "value": "/data/me"}),
                    json!({"name": "HOME", "value": "/elsewhere"}),
                    json!({"name": "HOME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
                    json!({"name": "A", "value": "1"}),
                    json!({"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
                    json!({"name": "GIT_SSH_COMMAND", "value": "ssh"}),
                    json!({"name": "CLAWORC_SSHD_CONFIG", "value": "port 22"}),
                ]),
                0..3,
            ),
            optional(vec![json!([{"configMapRef": {"name": "cm"}}])]),
            pick(vec!["img:1", "img:1", "img", "img:latest", "reg.io:5000/img", "img@sha256:0123"]),
            optional(vec![json!("Always"), json!("Never")]),
            optional(vec![json!("/data")]),
        ),
    )
        .prop_map(|(name, privileged, escalation, caps, user, non_root, seccomp, proc_mount, apparmor, mounts, ports, copied)| {
            let (env, env_from, image, pull_policy, working_dir) = copied;
            let mut c = json!({"name": name, "image": image});
            for (k, v) in [("envFrom", env_from), ("imagePullPolicy", pull_policy), ("workingDir", working_dir)] {
                if let Some(v) = v {
                    c[k] = v;
                }
            }
            if !env.is_empty() {
                c["env"] = env.into();
            }
            let mut sc = json!({});
            for (k, v) in [
                ("privileged", privileged),
                ("allowPrivilegeEscalation", escalation),
                ("capabilities", caps),
                ("runAsUser", user),
                ("runAsNonRoot", non_root),
                ("seccompProfile", seccomp),
                ("procMount", proc_mount),
                ("appArmorProfile", apparmor),
            ] {
                if let Some(v) = v {
                    sc[k] = v;
                }
            }
            c["securityContext"] = sc;
            if !mounts.is_empty() {
                c["volumeMounts"] = mounts
                    .iter()
                    .map(|(n, p, extra)| {
                        let mut m = json!({"name": n, "mountPath": p});
                        for (k, v) in extra.iter().flat_map(|e| e.as_object().unwrap()) {
                            m[k] = v.clone();
                        }
                        m
                    })
                    .collect();
            }
            if let Some(p) = ports {
                c["ports"] = p;
            }
            c
        })
}

pub fn deployment() -> impl Strategy<Value = Value> {
    (
        pod_security_context(),
        prop::collection::vec(container(vec!["work", "work", "web", "web", "claworc-sshd"]), 1..3),
        prop::collection::vec(container(vec!["setup", "setup", "setup", "claworc-sshd"]), 0..2),
        prop::collection::vec(
            (
                prop_oneof![8 => Just("data"), 1 => Just("claworc-run"), 1 => Just("claworc-mine")],
                prop_oneof![
                    8 => pick(vec![json!({"emptyDir": {}}), json!({"persistentVolumeClaim": {"claimName": "c"}}), json!({"configMap": {"name": "m"}})]),
                    1 => pick(vec![json!({"hostPath": {"path": "/"}}), json!({"gitRepo": {"repository": "r"}}), json!({"nfs": {"server": "s", "path": "/"}})]),
                ],
            ),
            0..3,
        ),
        (prop::bool::weighted(0.1), prop::bool::weighted(0.1)),
        optional(vec![json!({"container.apparmor.security.beta.kubernetes.io/work": "unconfined"}), json!({"container.apparmor.security.beta.kubernetes.io/work": "runtime/default"})]),
        prop::collection::btree_map(
            pick(vec!["claworc.io/ssh-port", "claworc.io/forward-ports", "claworc.io/target-container", "claworc.io/run-as-user", "claworc.io/egress", "claworc.io/known-hosts-configmap"]),
            prop_oneof![6 => pick(vec!["2222", "2022", "3000,8080", "web", "1001", "none", "hosts"]), 1 => pick(vec!["0", "x y"])],
            0..2,
        ),
        optional(vec![json!(1), json!(2), json!(0)]),
    )
        .prop_map(|(psc, containers, inits, volumes, (host_network, host_pid), apparmor, annotations, replicas)| {
            let mut d = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "box", "namespace": "ns", "labels": {"claworc.io/ssh": "enabled"}, "annotations": annotations},
                "spec": {
                    "selector": {"matchLabels": {"app": "box"}},
                    "template": {
                        "metadata": {"labels": {"app": "box"}},
                        "spec": {"securityContext": psc, "containers": containers, "initContainers": inits,
                                  "hostNetwork": host_network, "hostPID": host_pid}
                    }
                }
            });
            let vols: Vec<Value> = volumes
                .into_iter()
                .map(|(name, mut source)| {
                    source["name"] = json!(name);
                    source
                })
                .collect();
            d["spec"]["template"]["spec"]["volumes"] = json!(vols);
            if let Some(a) = apparmor {
                d["spec"]["template"]["metadata"]["annotations"] = a;
            }
            if let Some(r) = replicas {
                d["spec"]["replicas"] = r;
            }
            d
        })
}
