//! ed25519 key pairs generated on the client, and their OpenSSH encodings.
//! Private keys are only ever written to the key store or into the instance Secret,
//! never logged.

use ssh_key::{Algorithm, HashAlg, LineEnding, getrandom::SysRng, rand_core::UnwrapErr};
pub use ssh_key::{PrivateKey, PublicKey};

use crate::error::{Error, Result};

/// A new ed25519 key pair with `comment`.
pub fn generate(comment: &str) -> Result<PrivateKey> {
    let mut key = PrivateKey::random(&mut UnwrapErr(SysRng), Algorithm::Ed25519)
        .map_err(|e| Error::other(format!("generating an ed25519 key: {e}")).with_source(e))?;
    key.set_comment(comment);
    Ok(key)
}

/// The OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`, unencrypted).
pub fn private_openssh(key: &PrivateKey) -> Result<String> {
    key.to_openssh(LineEnding::LF)
        .map(|s| s.to_string())
        .map_err(|e| Error::other(format!("encoding a private key: {e}")).with_source(e))
}

/// The one-line OpenSSH public key (`ssh-ed25519 AAAA… comment`), without newline.
pub fn public_openssh(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default()
}

/// `ssh-ed25519 AAAA…` without the comment (for `known_hosts` and comparisons).
pub fn public_bare(key: &PublicKey) -> String {
    public_openssh(key).split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// `SHA256:…` fingerprint.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

pub fn parse_private(text: &str) -> Result<PrivateKey> {
    PrivateKey::from_openssh(text.trim_start())
        .map_err(|e| Error::other(format!("not an OpenSSH private key: {e}")).with_source(e))
}

pub fn parse_public(line: &str) -> Result<PublicKey> {
    PublicKey::from_openssh(line.trim())
        .map_err(|e| Error::other(format!("not an OpenSSH public key: {e}")).with_source(e))
}

/// The public keys of an `authorized_keys` text (comments and blank lines skipped;
/// unparsable lines are kept out).
pub fn authorized_keys(text: &str) -> Vec<PublicKey> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| PublicKey::from_openssh(l).ok())
        .collect()
}

/// Renders `authorized_keys` from keys (one line each).
pub fn render_authorized_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> String {
    keys.into_iter().map(|k| format!("{}\n", public_openssh(k))).collect()
}

/// Same key material (comments ignored)?
pub fn same(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let k = generate("claworc test").unwrap();
        let pem = private_openssh(&k).unwrap();
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let back = parse_private(&pem).unwrap();
        assert!(same(back.public_key(), k.public_key()));
        let line = public_openssh(k.public_key());
        assert!(line.starts_with("ssh-ed25519 AAAA") && line.ends_with(" claworc test"), "{line}");
        assert_eq!(public_bare(k.public_key()).split(' ').count(), 2);
        assert!(fingerprint(k.public_key()).starts_with("SHA256:"));
        let other = generate("x").unwrap();
        let ak = render_authorized_keys([k.public_key(), other.public_key()]);
        let parsed = authorized_keys(&format!("# c\n\n{ak}garbage\n"));
        assert_eq!(parsed.len(), 2);
        assert!(same(&parsed[1], other.public_key()));
    }
}
