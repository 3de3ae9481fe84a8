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
        if let Some(i) = HOSTS.iter().position(|(n, _)| n == name) {
            out.push_str(&pinned_lines()[i]);
        }
    }
    out
}

/// Each of [`HOSTS`]' lines of [`PINNED`], picked out once (every injection asks).
fn pinned_lines() -> &'static [String; HOSTS.len()] {
    static LINES: std::sync::OnceLock<[String; HOSTS.len()]> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        std::array::from_fn(|i| {
            let host = HOSTS[i].1;
            PINNED.lines().filter(|l| l.split_whitespace().next() == Some(host)).map(|l| format!("{l}\n")).collect()
        })
    })
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
