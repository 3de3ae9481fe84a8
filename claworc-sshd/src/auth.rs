//! Keys from the instance Secret: the ed25519 host key (read once at start)
//! and `authorized_keys`, re-read whenever the file behind the path changes.
//!
//! A Secret volume updates by swapping a `..data` symlink, so the resolved
//! file's device, inode, size and mtime are compared on every authentication
//! attempt (one `stat`): a rotation takes effect on the next attempt, with no
//! restart and no polling.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use claworc_contract::names::{SECRET_AUTHORIZED_KEYS, SECRET_HOST_KEY};
use russh::keys::ssh_key::authorized_keys::AuthorizedKeys as Parser;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

use crate::Error;

/// Reads `<keys_dir>/ssh_host_ed25519_key`; refuses any other algorithm.
pub fn load_host_key(keys_dir: &Path) -> Result<PrivateKey, Error> {
    let path = keys_dir.join(SECRET_HOST_KEY);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::HostKeyRead { path: path.clone(), source })?;
    let key = PrivateKey::from_openssh(&text).map_err(|source| Error::HostKeyParse { path: path.clone(), source })?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(Error::HostKeyAlgorithm { path, algorithm: key.algorithm().to_string() });
    }
    Ok(key)
}

/// `SHA256:…` as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// What `authorized_keys` says about an offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Listed without options; the entry's comment.
    Authorized { comment: String },
    /// Listed with options (`restrict`, `command=`, `from=`, …) that this
    /// server does not implement: refused rather than served with less
    /// restriction than the line asks for.
    HasOptions { comment: String },
    /// Not listed (or the file is missing or unreadable).
    Unknown,
}

impl Verdict {
    pub fn comment(&self) -> Option<&str> {
        match self {
            Verdict::Authorized { comment } | Verdict::HasOptions { comment } => Some(comment),
            Verdict::Unknown => None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    key: KeyData,
    comment: String,
    has_options: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    entries: Vec<Entry>,
}

/// `authorized_keys` with its last parsed content.
#[derive(Debug)]
pub struct AuthorizedKeys {
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl AuthorizedKeys {
    pub fn new(keys_dir: &Path) -> Self {
        AuthorizedKeys { path: keys_dir.join(SECRET_AUTHORIZED_KEYS), cache: Mutex::default() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks `key` up in the current file content (re-read if it changed).
    pub fn verdict(&self, key: &PublicKey) -> Verdict {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut cache);
        match cache.entries.iter().find(|e| &e.key == key.key_data()) {
            Some(e) if e.has_options => Verdict::HasOptions { comment: e.comment.clone() },
            Some(e) => Verdict::Authorized { comment: e.comment.clone() },
            None => Verdict::Unknown,
        }
    }

    fn refresh(&self, cache: &mut Cache) {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        });
        if stamp.is_some() && stamp == cache.stamp {
            return;
        }
        cache.stamp = stamp;
        cache.entries = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse(&text),
            Err(_) => Vec::new(),
        };
    }
}

/// Parses `authorized_keys`; lines that do not parse are skipped, as OpenSSH does.
fn parse(text: &str) -> Vec<Entry> {
    Parser::new(text)
        .filter_map(Result::ok)
        .map(|e| Entry {
            key: e.public_key().key_data().clone(),
            comment: e.public_key().comment().to_string(),
            has_options: !e.config_opts().is_empty(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn options_and_comments_are_read_and_bad_lines_skipped() {
        let text = format!("# c\nnot a key\nssh-ed25519 {KEY} alice@laptop\nrestrict ssh-ed25519 {KEY} bob\n");
        let entries = parse(&text);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].comment.as_str(), entries[0].has_options), ("alice@laptop", false));
        assert_eq!((entries[1].comment.as_str(), entries[1].has_options), ("bob", true));
    }
}
