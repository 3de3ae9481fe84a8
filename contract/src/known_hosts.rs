//! Pinned ED25519 host keys of the large git hosts (a copy of
//! `../shared/data/pinned_known_hosts`, checked against the published fingerprints).

/// The pinned file, comments included.
pub const PINNED: &str = include_str!("pinned_known_hosts");

/// Short names accepted by `claworc.io/known-hosts`, and their host names.
pub const HOSTS: &[(&str, &str)] =
    &[("github", "github.com"), ("gitlab", "gitlab.com"), ("bitbucket", "bitbucket.org")];

/// The `known_hosts` lines for the given short names, in the order given.
pub fn lines_for(names: &[String]) -> String {
    let mut out = String::new();
    for name in names {
        let Some((_, host)) = HOSTS.iter().find(|(n, _)| n == name) else { continue };
        for line in PINNED.lines().filter(|l| l.split_whitespace().next() == Some(host)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_short_name_has_exactly_one_pinned_key() {
        for (name, host) in HOSTS {
            let lines = lines_for(&[name.to_string()]);
            assert_eq!(lines.lines().count(), 1, "{name}");
            assert!(lines.starts_with(&format!("{host} ssh-ed25519 AAAA")), "{lines}");
        }
    }
}
