//! The `claworc.io/*` annotations of an opted-in Deployment: keys, defaults, meanings.

/// One annotation of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotation {
    pub key: &'static str,
    /// Default as written in the docs (`<name>` stands for the Deployment name).
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const SSH_SECRET: &str = "claworc.io/ssh-secret";
pub const SSH_PORT: &str = "claworc.io/ssh-port";
pub const FORWARD_PORTS: &str = "claworc.io/forward-ports";
pub const RUN_AS_USER: &str = "claworc.io/run-as-user";
pub const RUN_AS_GROUP: &str = "claworc.io/run-as-group";
pub const KNOWN_HOSTS: &str = "claworc.io/known-hosts";
pub const KNOWN_HOSTS_CONFIGMAP: &str = "claworc.io/known-hosts-configmap";
pub const STRICT_HOST_KEY_CHECKING: &str = "claworc.io/strict-host-key-checking";
pub const EGRESS: &str = "claworc.io/egress";
pub const TARGET_CONTAINER: &str = "claworc.io/target-container";
pub const HOST_KEY_FINGERPRINT: &str = "claworc.io/host-key-fingerprint";
pub const KEYS_ROTATED_AT: &str = "claworc.io/keys-rotated-at";

pub const DEFAULT_SSH_PORT: u16 = 2222;
pub const DEFAULT_FORWARD_PORTS: &[u16] = &[3000, 8080];
pub const DEFAULT_RUN_AS: i64 = 1000;
pub const DEFAULT_EGRESS: &str = "restricted";

/// Every annotation a user may set on an opted-in Deployment. Any other
/// `claworc.io/*` key is refused.
pub const ALL: &[Annotation] = &[
    Annotation {
        key: SSH_SECRET,
        default: "<name>-ssh",
        meaning: "Secret with `authorized_keys`, `ssh_host_ed25519_key`, `ssh_host_ed25519_key.pub`",
    },
    Annotation {
        key: SSH_PORT,
        default: "2222",
        meaning: "port claworc-sshd listens on, on the pod's 127.0.0.1 (1024–65535)",
    },
    Annotation {
        key: FORWARD_PORTS,
        default: "3000,8080",
        meaning: "the only `localhost` ports SSH local forwarding may reach (VNC, gateway)",
    },
    Annotation {
        key: RUN_AS_USER,
        default: "1000",
        meaning: "default UID of the pod, so of claworc-sshd and its sessions (the target container's own runAsUser wins)",
    },
    Annotation {
        key: RUN_AS_GROUP,
        default: "1000",
        meaning: "default GID of the pod, so of claworc-sshd and its sessions (the target container's own runAsGroup wins)",
    },
    Annotation {
        key: KNOWN_HOSTS,
        default: "github,gitlab,bitbucket",
        meaning: "pinned public host keys injected as `known_hosts`",
    },
    Annotation {
        key: KNOWN_HOSTS_CONFIGMAP,
        default: "none",
        meaning: "ConfigMap whose `known_hosts` key is appended",
    },
    Annotation { key: STRICT_HOST_KEY_CHECKING, default: "yes", meaning: "`yes` or `accept-new`; `no` is rejected" },
    Annotation {
        key: EGRESS,
        default: "restricted",
        meaning: "network profile label value read by the shipped NetworkPolicies",
    },
    Annotation {
        key: TARGET_CONTAINER,
        default: "first container",
        meaning: "the workload container whose image, volumes and environment SSH sessions run in",
    },
    Annotation {
        key: HOST_KEY_FINGERPRINT,
        default: "set by the plugin",
        meaning: "`SHA256:…` of the host key, so any client with API access can pin it",
    },
    Annotation {
        key: KEYS_ROTATED_AT,
        default: "set by the plugin",
        meaning: "RFC 3339 time of the last `kubectl claworc rotate-keys`",
    },
];

/// Network profiles that the NetworkPolicies in `manifests/` implement.
pub const EGRESS_PROFILES: &[&str] = &["restricted", "none", "open"];

/// The Secret with an instance's keys: `claworc.io/ssh-secret`, else `<name>-ssh`.
/// Lenient: for reading existing objects (validation is `Settings`' job).
pub fn ssh_secret(annotations: Option<&std::collections::BTreeMap<String, String>>, name: &str) -> String {
    annotations.and_then(|a| a.get(SSH_SECRET)).cloned().unwrap_or_else(|| crate::names::default_secret_name(name))
}

/// Looks an annotation up by key.
pub fn find(key: &str) -> Option<&'static Annotation> {
    ALL.iter().find(|a| a.key == key)
}

/// The known key nearest to `key` (by edit distance), to suggest in a denial.
pub fn nearest(key: &str) -> &'static str {
    ALL.iter().map(|a| (edit_distance(key, a.key), a.key)).min().map(|(_, k)| k).unwrap_or(SSH_SECRET)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(nearest("claworc.io/ssh-prot"), SSH_PORT);
        assert_eq!(nearest("claworc.io/forward-port"), FORWARD_PORTS);
        assert_eq!(nearest("claworc.io/knownhosts"), KNOWN_HOSTS);
    }

    #[test]
    fn every_key_has_the_prefix_and_is_unique() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.key.starts_with(crate::names::PREFIX), "{}", a.key);
            assert!(ALL[i + 1..].iter().all(|b| b.key != a.key), "{} twice", a.key);
        }
    }
}
