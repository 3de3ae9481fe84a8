//! Local state under `$XDG_CONFIG_HOME/claworc` (default `~/.config/claworc`):
//!
//! ```text
//! claworc/                                       0700
//!   known_hosts                                  0600  pinned instance host keys
//!   keys/<cluster>/<namespace>/<name>/           0700
//!     id_ed25519, id_ed25519.pub                 0600  the client key
//!     id_ed25519.new, id_ed25519.new.pub         0600  a rotation in progress
//!     host_ed25519_key, host_ed25519_key.pub     0600  a host key kept by `delete --keep-host-key`
//! ```
//!
//! Host patterns in `known_hosts` are `claworc/<cluster>/<namespace>/<name>` (OpenSSH
//! format, so `ssh -o HostKeyAlias=claworc/… -o UserKnownHostsFile=…` works too).
//! Directories are created 0700 and files 0600 from the start (never looser, not even
//! for a moment); every write is a temporary file in the same directory + rename.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::keys::{self, PrivateKey, PublicKey};

/// Which instance: the key-store scope of the cluster, the namespace, the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

impl InstanceId {
    pub fn new(cluster: &str, namespace: &str, name: &str) -> Self {
        InstanceId { cluster: cluster.into(), namespace: namespace.into(), name: name.into() }
    }

    /// The `known_hosts` host pattern `claworc/<cluster>/<namespace>/<name>`.
    pub fn host_pattern(&self) -> String {
        format!("claworc/{}/{}/{}", self.cluster, self.namespace, self.name)
    }
}

/// The client key file name.
pub const CLIENT_KEY: &str = "id_ed25519";
/// A new client key while `rotate-keys` is in progress.
pub const PENDING_KEY: &str = "id_ed25519.new";
/// A host key kept by `delete --keep-host-key`.
pub const HOST_KEY: &str = "host_ed25519_key";
const ALL_FILES: &[&str] = &[CLIENT_KEY, PENDING_KEY, HOST_KEY];

/// The key store rooted at a directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    root: PathBuf,
}

/// The key store's content for one instance, to put back after a failed command.
#[derive(Clone)]
pub struct Snapshot {
    id: InstanceId,
    files: Vec<(String, Option<Vec<u8>>)>,
    pin: Option<PublicKey>,
}

/// Names the files, never their content (private keys).
impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<&str> = self.files.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Snapshot").field("id", &self.id).field("files", &files).finish_non_exhaustive()
    }
}

impl KeyStore {
    /// `$XDG_CONFIG_HOME/claworc`, else `~/.config/claworc`.
    pub fn open_default() -> Result<Self> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config"),
                None => {
                    return Err(Error::other(
                        "neither XDG_CONFIG_HOME nor HOME is set: set one to locate the key store",
                    ));
                }
            },
        };
        Ok(KeyStore::at(base.join("claworc")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        KeyStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `keys/<cluster>/<namespace>/<name>`.
    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.root.join("keys").join(&id.cluster).join(&id.namespace).join(&id.name)
    }

    /// Path of the client private key (for `ssh -i`).
    pub fn client_key_path(&self, id: &InstanceId) -> PathBuf {
        self.instance_dir(id).join(CLIENT_KEY)
    }

    /// Path of the pinned host keys file (for `ssh -o UserKnownHostsFile=`).
    pub fn known_hosts_path(&self) -> PathBuf {
        self.root.join("known_hosts")
    }

    // ---- client key ----

    pub fn save_client_key(&self, id: &InstanceId, key: &PrivateKey) -> Result<()> {
        self.save_pair(id, CLIENT_KEY, key)
    }
    pub fn load_client_key(&self, id: &InstanceId) -> Result<Option<PrivateKey>> {
        self.load_pair(id, CLIENT_KEY)
    }
    pub fn remove_client_key(&self, id: &InstanceId) -> Result<()> {
        self.remove_pair(id, CLIENT_KEY)
    }
    /// Modification time of the client key file (when it was written).
    pub fn client_key_written(&self, id: &InstanceId) -> Option<std::time::SystemTime> {
        fs::metadata(self.client_key_path(id)).and_then(|m| m.modified()).ok()
    }

    // ---- pending key of a rotation ----

    pub fn save_pending_key(&self, id: &InstanceId, key: &PrivateKey) -> Result<()> {
        self.save_pair(id, PENDING_KEY, key)
    }
    pub fn load_pending_key(&self, id: &InstanceId) -> Result<Option<PrivateKey>> {
        self.load_pair(id, PENDING_KEY)
    }
    /// Makes the pending key the client key (atomic renames; the pending key goes away).
    pub fn promote_pending_key(&self, id: &InstanceId) -> Result<()> {
        let dir = self.instance_dir(id);
        for (from, to) in
            [(format!("{PENDING_KEY}.pub"), format!("{CLIENT_KEY}.pub")), (PENDING_KEY.into(), CLIENT_KEY.into())]
        {
            let (from, to) = (dir.join(from), dir.join(to));
            fs::rename(&from, &to).map_err(|e| Error::io(e, &from))?;
        }
        Ok(())
    }
    /// The client keys to try, newest first: a pending key of an unfinished
    /// rotation, then the current key.
    pub fn usable_client_keys(&self, id: &InstanceId) -> Result<Vec<PrivateKey>> {
        Ok(self.load_pending_key(id)?.into_iter().chain(self.load_client_key(id)?).collect())
    }
    pub fn remove_pending_key(&self, id: &InstanceId) -> Result<()> {
        self.remove_pair(id, PENDING_KEY)
    }

    // ---- kept host key ----

    pub fn save_host_key(&self, id: &InstanceId, key: &PrivateKey) -> Result<()> {
        self.save_pair(id, HOST_KEY, key)
    }
    pub fn load_host_key(&self, id: &InstanceId) -> Result<Option<PrivateKey>> {
        self.load_pair(id, HOST_KEY)
    }
    pub fn remove_host_key(&self, id: &InstanceId) -> Result<()> {
        self.remove_pair(id, HOST_KEY)
    }

    /// Removes the instance directory, and its namespace and cluster directories, if
    /// nothing is left in them.
    pub fn remove_instance_dir_if_empty(&self, id: &InstanceId) {
        let dir = self.instance_dir(id);
        for d in dir.ancestors().take(3) {
            if fs::remove_dir(d).is_err() {
                break;
            }
        }
    }

    // ---- pinned host keys ----

    /// Pins `key` for the instance (replacing an earlier pin).
    pub fn pin_host_key(&self, id: &InstanceId, key: &PublicKey) -> Result<()> {
        let _lock = self.lock()?;
        let pattern = id.host_pattern();
        let mut text = self.known_hosts_without(&pattern)?;
        text.push_str(&format!("{pattern} {}\n", keys::public_bare(key)));
        write_atomic(&self.known_hosts_path(), text.as_bytes())
    }

    /// Removes the pin of the instance (no error when there is none).
    pub fn unpin_host_key(&self, id: &InstanceId) -> Result<()> {
        let path = self.known_hosts_path();
        if !path.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let text = self.known_hosts_without(&id.host_pattern())?;
        write_atomic(&path, text.as_bytes())
    }

    /// An exclusive lock on the store (`.lock`, released when dropped), so parallel
    /// commands do not lose each other's `known_hosts` changes.
    fn lock(&self) -> Result<fs::File> {
        self.ensure_dir(&self.root)?;
        let path = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(e, &path))?;
        file.lock().map_err(|e| Error::io(e, &path))?;
        Ok(file)
    }

    /// The pinned host key of the instance.
    pub fn lookup_host_key(&self, id: &InstanceId) -> Result<Option<PublicKey>> {
        let pattern = id.host_pattern();
        let text = self.read_known_hosts()?;
        for line in text.lines() {
            let mut parts = line.splitn(2, char::is_whitespace);
            if parts.next() == Some(pattern.as_str())
                && let Some(rest) = parts.next()
            {
                return keys::parse_public(rest).map(Some);
            }
        }
        Ok(None)
    }

    // ---- snapshots ----

    /// Everything stored for the instance, to [`restore`](Self::restore) after a failure.
    pub fn snapshot(&self, id: &InstanceId) -> Result<Snapshot> {
        let dir = self.instance_dir(id);
        let mut files = Vec::new();
        for base in ALL_FILES {
            for name in [base.to_string(), format!("{base}.pub")] {
                let path = dir.join(&name);
                let content = match fs::read(&path) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Error::io(e, &path)),
                };
                files.push((name, content));
            }
        }
        Ok(Snapshot { id: id.clone(), files, pin: self.lookup_host_key(id)? })
    }

    /// Puts the instance's files and pin back as they were in `snap`.
    pub fn restore(&self, snap: &Snapshot) -> Result<()> {
        let dir = self.instance_dir(&snap.id);
        for (name, content) in &snap.files {
            let path = dir.join(name);
            match content {
                Some(bytes) => {
                    self.ensure_dir(&dir)?;
                    write_atomic(&path, bytes)?;
                }
                None => remove_if_exists(&path)?,
            }
        }
        match &snap.pin {
            Some(k) => self.pin_host_key(&snap.id, k)?,
            None => self.unpin_host_key(&snap.id)?,
        }
        self.remove_instance_dir_if_empty(&snap.id);
        Ok(())
    }

    // ---- internals ----

    fn save_pair(&self, id: &InstanceId, base: &str, key: &PrivateKey) -> Result<()> {
        let dir = self.instance_dir(id);
        self.ensure_dir(&dir)?;
        let private = keys::private_openssh(key)?;
        write_atomic(&dir.join(base), private.as_bytes())?;
        write_atomic(
            &dir.join(format!("{base}.pub")),
            format!("{}\n", keys::public_openssh(key.public_key())).as_bytes(),
        )
    }

    fn load_pair(&self, id: &InstanceId, base: &str) -> Result<Option<PrivateKey>> {
        let path = self.instance_dir(id).join(base);
        match fs::read_to_string(&path) {
            Ok(text) => keys::parse_private(&text).map(Some).map_err(|e| e.context(path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(e, &path)),
        }
    }

    fn remove_pair(&self, id: &InstanceId, base: &str) -> Result<()> {
        let dir = self.instance_dir(id);
        remove_if_exists(&dir.join(base))?;
        remove_if_exists(&dir.join(format!("{base}.pub")))
    }

    fn read_known_hosts(&self) -> Result<String> {
        let path = self.known_hosts_path();
        match fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Error::io(e, &path)),
        }
    }

    fn known_hosts_without(&self, pattern: &str) -> Result<String> {
        Ok(self
            .read_known_hosts()?
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(pattern))
            .map(|l| format!("{l}\n"))
            .collect())
    }

    /// Creates `dir` and its missing parents below (and including) the root with mode
    /// 0700; tightens the directories of the store that exist with looser modes.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        let mut chain = vec![];
        let mut cur = Some(dir);
        while let Some(d) = cur {
            chain.push(d);
            if d == self.root {
                break;
            }
            cur = d.parent();
        }
        // Parents of the root: created normally (e.g. ~/.config), like other tools do.
        if let Some(parent) = self.root.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent).map_err(|e| Error::io(e, parent))?;
        }
        for d in chain.into_iter().rev() {
            match fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let meta = fs::metadata(d).map_err(|e| Error::io(e, d))?;
                    if meta.permissions().mode() & 0o077 != 0 {
                        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(e, d))?;
                    }
                }
                Err(e) => return Err(Error::io(e, d)),
            }
        }
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(e, path)),
    }
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same directory and a
/// rename, so readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp.{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(e, path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn store() -> (tempfile::TempDir, KeyStore) {
        let tmp = tempfile::tempdir().unwrap();
        let ks = KeyStore::at(tmp.path().join("cfg").join("claworc"));
        (tmp, ks)
    }

    #[test]
    fn client_keys_are_private() {
        let (_t, ks) = store();
        let id = InstanceId::new("kind-dev", "team-a", "dev");
        assert!(ks.load_client_key(&id).unwrap().is_none());
        let k = keys::generate("c").unwrap();
        ks.save_client_key(&id, &k).unwrap();
        let back = ks.load_client_key(&id).unwrap().unwrap();
        assert!(keys::same(back.public_key(), k.public_key()));
        let dir = ks.instance_dir(&id);
        assert_eq!(mode(&dir.join(CLIENT_KEY)), 0o600);
        assert_eq!(mode(&dir.join("id_ed25519.pub")), 0o600);
        for d in [dir.as_path(), dir.parent().unwrap(), dir.parent().unwrap().parent().unwrap(), ks.root()] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        assert!(ks.client_key_written(&id).is_some());
        // no temporary files left
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        ks.remove_client_key(&id).unwrap();
        ks.remove_instance_dir_if_empty(&id);
        assert!(!dir.exists());
        assert!(!ks.root().join("keys").join("kind-dev").exists());
        assert!(ks.root().join("keys").exists());
    }

    #[test]
    fn tightens_a_loose_root() {
        let (_t, ks) = store();
        fs::create_dir_all(ks.root()).unwrap();
        fs::set_permissions(ks.root(), fs::Permissions::from_mode(0o755)).unwrap();
        ks.save_client_key(&InstanceId::new("c", "n", "x"), &keys::generate("c").unwrap()).unwrap();
        assert_eq!(mode(ks.root()), 0o700);
    }

    #[test]
    fn pending_key_promotes() {
        let (_t, ks) = store();
        let id = InstanceId::new("c", "n", "x");
        let (old, new) = (keys::generate("old").unwrap(), keys::generate("new").unwrap());
        ks.save_client_key(&id, &old).unwrap();
        ks.save_pending_key(&id, &new).unwrap();
        assert!(keys::same(ks.load_pending_key(&id).unwrap().unwrap().public_key(), new.public_key()));
        ks.promote_pending_key(&id).unwrap();
        assert!(ks.load_pending_key(&id).unwrap().is_none());
        assert!(keys::same(ks.load_client_key(&id).unwrap().unwrap().public_key(), new.public_key()));
    }

    #[test]
    fn pins_host_keys() {
        let (_t, ks) = store();
        let a = InstanceId::new("c", "n", "a");
        let b = InstanceId::new("c", "n", "b");
        let (ka, kb, kc) = (keys::generate("").unwrap(), keys::generate("").unwrap(), keys::generate("").unwrap());
        ks.pin_host_key(&a, ka.public_key()).unwrap();
        ks.pin_host_key(&b, kb.public_key()).unwrap();
        assert_eq!(mode(&ks.known_hosts_path()), 0o600);
        assert!(keys::same(&ks.lookup_host_key(&a).unwrap().unwrap(), ka.public_key()));
        ks.pin_host_key(&a, kc.public_key()).unwrap();
        assert!(keys::same(&ks.lookup_host_key(&a).unwrap().unwrap(), kc.public_key()));
        let text = fs::read_to_string(ks.known_hosts_path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("claworc/c/n/b ssh-ed25519 AAAA"));
        ks.unpin_host_key(&a).unwrap();
        assert!(ks.lookup_host_key(&a).unwrap().is_none());
        assert!(ks.lookup_host_key(&b).unwrap().is_some());
    }

    #[test]
    fn parallel_pins_are_all_kept() {
        let (_t, ks) = store();
        let key = keys::generate("").unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let (ks, key) = (&ks, &key);
                s.spawn(move || {
                    ks.pin_host_key(&InstanceId::new("c", "n", &format!("i{i}")), key.public_key()).unwrap()
                });
            }
        });
        let text = fs::read_to_string(ks.known_hosts_path()).unwrap();
        assert_eq!(text.lines().count(), 8, "{text}");
    }

    #[test]
    fn snapshot_restores() {
        let (_t, ks) = store();
        let id = InstanceId::new("c", "n", "x");
        let snap = ks.snapshot(&id).unwrap();
        ks.save_client_key(&id, &keys::generate("c").unwrap()).unwrap();
        ks.pin_host_key(&id, keys::generate("").unwrap().public_key()).unwrap();
        ks.restore(&snap).unwrap();
        assert!(ks.load_client_key(&id).unwrap().is_none());
        assert!(ks.lookup_host_key(&id).unwrap().is_none());
        assert!(!ks.instance_dir(&id).exists());

        let kept = keys::generate("host").unwrap();
        ks.save_host_key(&id, &kept).unwrap();
        let snap = ks.snapshot(&id).unwrap();
        ks.remove_host_key(&id).unwrap();
        ks.restore(&snap).unwrap();
        assert!(keys::same(ks.load_host_key(&id).unwrap().unwrap().public_key(), kept.public_key()));
        assert_eq!(mode(&ks.instance_dir(&id).join(HOST_KEY)), 0o600);
    }
}
