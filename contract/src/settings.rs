//! A Deployment's `claworc.io/*` annotations, parsed and checked into [`Settings`].

use std::collections::BTreeMap;

use crate::annotations::{self as a, DEFAULT_FORWARD_PORTS, DEFAULT_RUN_AS, DEFAULT_SSH_PORT};
use crate::known_hosts::HOSTS;
use crate::names::{self, PREFIX};

/// What a Deployment's annotations ask for, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub ssh_secret: String,
    pub ssh_port: u16,
    pub forward_ports: Vec<u16>,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub known_hosts: Vec<String>,
    pub known_hosts_configmap: Option<String>,
    pub strict_host_key_checking: StrictHostKeyChecking,
    pub egress: String,
    pub target_container: Option<String>,
    pub host_key_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    Yes,
    AcceptNew,
}

impl StrictHostKeyChecking {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::AcceptNew => "accept-new",
        }
    }
}

/// Why an annotation was refused. Each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error(
        "metadata.annotations[\"{key}\"]: unknown claworc annotation; did you mean \"{suggestion}\"? (the known keys are listed in docs/webhook.md)"
    )]
    Unknown { key: String, suggestion: &'static str },
    #[error("metadata.annotations[\"{key}\"]: {value:?} is not valid: {fix}")]
    Invalid { key: &'static str, value: String, fix: String },
}

impl Settings {
    /// Parses the annotations of the Deployment `name`. Every problem is
    /// reported, not just the first.
    pub fn from_annotations(name: &str, annotations: &BTreeMap<String, String>) -> Result<Self, Vec<AnnotationError>> {
        Self::from_pairs(name, annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// [`Settings::from_annotations`] from the annotations as key–value
    /// pairs, in any order (of a key given twice, the last counts).
    pub fn from_pairs<'a>(
        name: &str,
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Vec<AnnotationError>> {
        let mut errors = Vec::new();
        let mut given = Vec::new();
        for (key, value) in annotations.into_iter().filter(|(k, _)| k.starts_with(PREFIX)) {
            if a::find(key).is_none() {
                errors.push(AnnotationError::Unknown { key: key.to_string(), suggestion: a::nearest(key) });
            }
            given.push((key, value));
        }
        Self::parse(name, Parser { given, errors })
    }

    /// The settings from the annotations given (not generic: one copy).
    fn parse(name: &str, mut p: Parser) -> Result<Self, Vec<AnnotationError>> {
        let settings = Settings {
            ssh_secret: p.get(a::SSH_SECRET, names::default_secret_name(name), |v| {
                dns_subdomain(v).then(|| v.to_string()).ok_or("use a Secret name: lower-case letters, digits, '-' and '.', at most 253 characters")
            }),
            ssh_port: p.get(a::SSH_PORT, DEFAULT_SSH_PORT, |v| unprivileged_port(v).ok_or(PORT_FIX)),
            forward_ports: p.get(a::FORWARD_PORTS, DEFAULT_FORWARD_PORTS.to_vec(), |v| {
                let ports: Option<Vec<u16>> = v.split(',').map(|p| p.trim().parse().ok().filter(|p| *p > 0)).collect();
                ports
                    .filter(|p| !p.is_empty() && p.len() <= 16)
                    .ok_or("use a comma-separated list of 1 to 16 ports from 1 to 65535, e.g. \"3000,8080\"")
            }),
            run_as_user: p.get(a::RUN_AS_USER, DEFAULT_RUN_AS, |v| id(v).ok_or(ID_FIX)),
            run_as_group: p.get(a::RUN_AS_GROUP, DEFAULT_RUN_AS, |v| id(v).ok_or(ID_FIX)),
            known_hosts: p.get(a::KNOWN_HOSTS, HOSTS.iter().map(|(n, _)| n.to_string()).collect(), |v| {
                let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                names
                    .iter()
                    .all(|n| HOSTS.iter().any(|(h, _)| h == n))
                    .then_some(names)
                    .ok_or("use a comma-separated subset of github,gitlab,bitbucket (or \"\" for none); add other hosts with claworc.io/known-hosts-configmap")
            }),
            known_hosts_configmap: p.get(a::KNOWN_HOSTS_CONFIGMAP, None, |v| {
                dns_subdomain(v).then(|| Some(v.to_string())).ok_or("use a ConfigMap name: lower-case letters, digits, '-' and '.', at most 253 characters")
            }),
            strict_host_key_checking: p.get(a::STRICT_HOST_KEY_CHECKING, StrictHostKeyChecking::Yes, |v| match v {
                "yes" => Ok(StrictHostKeyChecking::Yes),
                "accept-new" => Ok(StrictHostKeyChecking::AcceptNew),
                "no" => Err("\"no\" would let git connect to any host key; use \"yes\" (default) or \"accept-new\""),
                _ => Err("use \"yes\" (default) or \"accept-new\""),
            }),
            egress: p.get(a::EGRESS, a::DEFAULT_EGRESS.to_string(), |v| {
                label_value(v).then(|| v.to_string()).ok_or("use a label value (letters, digits, '-', '_', '.', at most 63), e.g. \"restricted\"")
            }),
            target_container: p.get(a::TARGET_CONTAINER, None, |v| {
                dns_label(v).then(|| Some(v.to_string())).ok_or("use the name of one of the Deployment's containers")
            }),
            host_key_fingerprint: p.get(a::HOST_KEY_FINGERPRINT, None, |v| {
                fingerprint(v).then(|| Some(v.to_string())).ok_or("use \"SHA256:\" and 43 base64 characters, as printed by `ssh-keygen -lf`")
            }),
        };
        p.get(a::KEYS_ROTATED_AT, (), |v| {
            rfc3339ish(v).then_some(()).ok_or("use an RFC 3339 UTC time such as 2026-01-31T12:00:00Z")
        });
        if p.errors.is_empty() { Ok(settings) } else { Err(p.errors) }
    }
}

const PORT_FIX: &str = "use a port from 1024 to 65535 (sshd runs without root, so it cannot bind below 1024)";
const ID_FIX: &str = "use a numeric id from 1 to 2147483647 (0 is root, which Pod Security \"restricted\" refuses)";

struct Parser<'a> {
    /// The `claworc.io/*` annotations given, in order.
    given: Vec<(&'a str, &'a str)>,
    errors: Vec<AnnotationError>,
}

impl<'a> Parser<'a> {
    fn get<T>(&mut self, key: &'static str, default: T, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> T {
        let Some(value) = self.value(key) else { return default };
        parse(value.trim()).unwrap_or_else(|fix| {
            self.errors.push(AnnotationError::Invalid { key, value: value.to_string(), fix: fix.to_string() });
            default
        })
    }

    /// The value last given for `key`. Out of line: one copy of the search
    /// instead of one inlined into each annotation's parse.
    #[inline(never)]
    fn value(&self, key: &str) -> Option<&'a str> {
        self.given.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

fn unprivileged_port(v: &str) -> Option<u16> {
    v.parse().ok().filter(|p| *p >= 1024)
}

fn id(v: &str) -> Option<i64> {
    v.parse().ok().filter(|i| (1..=i64::from(i32::MAX)).contains(i))
}

/// RFC 1123 label: what Kubernetes requires of container names.
pub fn dns_label(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-')
}

/// RFC 1123 subdomain: what Kubernetes requires of Secret and ConfigMap names.
pub fn dns_subdomain(v: &str) -> bool {
    v.len() <= 253 && v.split('.').all(dns_label)
}

fn label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

fn fingerprint(v: &str) -> bool {
    v.strip_prefix("SHA256:")
        .is_some_and(|b| b.len() == 43 && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'))
}

fn rfc3339ish(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19].into_iter().all(|r| b[r].iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, Vec<AnnotationError>> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_annotations("box", &map)
    }

    #[test]
    fn defaults_follow_the_design() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.ssh_secret, "box-ssh");
        assert_eq!((s.ssh_port, s.forward_ports.as_slice()), (2222, &[3000, 8080][..]));
        assert_eq!((s.run_as_user, s.run_as_group), (1000, 1000));
        assert_eq!(s.known_hosts, ["github", "gitlab", "bitbucket"]);
        assert_eq!(s.strict_host_key_checking, StrictHostKeyChecking::Yes);
        assert_eq!(s.egress, "restricted");
    }

    /// Pairs read as the map they make: the last of a key given twice
    /// counts, and other prefixes are ignored.
    #[test]
    fn pairs_read_as_the_map_they_make() {
        let pairs = [
            (a::SSH_PORT, "22"),
            ("app.kubernetes.io/name", "x"),
            (a::EGRESS, "open"),
            (a::SSH_PORT, "2200"),
            ("claworc.io/unknown", "1"),
        ];
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Settings::from_pairs("box", pairs), Settings::from_annotations("box", &map));
        let s = Settings::from_pairs("box", pairs[..4].iter().copied()).unwrap();
        assert_eq!((s.ssh_port, s.egress.as_str()), (2200, "open"));
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let errors = parse(&[
            (a::SSH_PORT, "22"),
            (a::FORWARD_PORTS, "80,x"),
            (a::RUN_AS_USER, "0"),
            (a::STRICT_HOST_KEY_CHECKING, "no"),
            (a::KNOWN_HOSTS, "github,sourceforge"),
            (a::HOST_KEY_FINGERPRINT, "MD5:aa"),
            ("claworc.io/sshport", "2222"),
        ])
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 7, "{text:#?}");
        assert!(
            text.iter().any(|t| t.contains("claworc.io/sshport") && t.contains("did you mean \"claworc.io/ssh-port\""))
        );
        assert!(text.iter().any(|t| t.contains("strict-host-key-checking") && t.contains("accept-new")));
        assert!(text.iter().any(|t| t.contains("ssh-port") && t.contains("1024 to 65535")));
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(dns_subdomain("a.b-c") && !dns_subdomain("A") && !dns_subdomain("a..b") && !dns_subdomain("-a"));
        assert!(label_value("") && label_value("open_1") && !label_value("-x"));
        assert!(rfc3339ish("2026-01-31T12:00:00Z") && !rfc3339ish("2026-01-31"));
    }
}
