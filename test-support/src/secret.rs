//! A directory laid out as a Kubernetes Secret volume: each key a symlink through
//! `..data` to a timestamped directory, replaced as the kubelet replaces it (a new
//! directory, then an atomic swap of `..data`), with the owner and mode the pod
//! sees (root:[`RUN_AS`], 0440, from `defaultMode: 0440` and `fsGroup`) when the
//! tests run as root, else 0400 for the current user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tools::{RUN_AS, is_root};

/// A Secret volume at a path. Cheap to make again from the path (e.g. in a thread
/// playing the kubelet's part).
#[derive(Clone, Debug)]
pub struct SecretVolume {
    pub dir: PathBuf,
}

impl SecretVolume {
    /// The volume at `dir`, made if missing (mode 0755, as the kubelet's).
    pub fn at(dir: impl Into<PathBuf>) -> SecretVolume {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        SecretVolume { dir }
    }

    /// Replaces the volume's content with `files` (name, content), atomically.
    pub fn write(&self, files: &[(&str, &str)]) {
        static VERSION: AtomicU64 = AtomicU64::new(0);
        let version = format!("..{}_{}", std::process::id(), VERSION.fetch_add(1, Ordering::Relaxed));
        let vdir = self.dir.join(&version);
        std::fs::create_dir(&vdir).unwrap();
        for (name, content) in files {
            let p = vdir.join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(if is_root() { 0o440 } else { 0o400 }))
                .unwrap();
            if is_root() {
                std::os::unix::fs::chown(&p, Some(0), Some(RUN_AS)).unwrap();
            }
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    /// A key's current content.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_else(|e| panic!("{name} in the Secret volume: {e}"))
    }
}
