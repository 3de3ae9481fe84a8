//! The pinned host keys still match the fingerprints the git hosts publish,
//! as computed by OpenSSH's `ssh-keygen -lf` (apt-get install openssh-client).

use std::process::Command;

/// From docs.github.com (githubs-ssh-key-fingerprints), docs.gitlab.com
/// (gitlab_com ssh-host-keys-fingerprints) and support.atlassian.com.
const PUBLISHED: &[(&str, &str)] = &[
    ("github.com", "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"),
    ("gitlab.com", "SHA256:eUXGGm1YGsMAS7vkcx6JOJdOGHPem5gQp4taiCfCLB8"),
    ("bitbucket.org", "SHA256:ybgmFkzwOSotHTHLJgHO0QN8L0xErw6vd0VhFA9m3SM"),
];

#[test]
fn pinned_keys_match_the_published_fingerprints() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/src/pinned_known_hosts");
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", file])
        .output()
        .expect("ssh-keygen is missing: apt-get install -y openssh-client");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8(out.stdout).unwrap();
    // "256 SHA256:… github.com (ED25519)"
    let got: Vec<(&str, &str)> = listed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.last(), Some(&"(ED25519)"), "{l}");
            (f[2], f[1])
        })
        .collect();
    assert_eq!(got, PUBLISHED);
}
