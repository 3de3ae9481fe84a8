//! `claworc-sshd install DEST`: the delivery init container's job. The sidecar
//! image holds nothing but this binary (no shell, no `cp`), so the binary copies
//! itself into the emptyDir that the sidecar, running the workload's image,
//! then executes it from.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Copies the running executable to `dest` (mode 0555), through a temporary
/// file in the same directory and a rename, so the sidecar never sees half a
/// binary. Returns the number of bytes copied.
pub fn install(dest: &Path) -> std::io::Result<u64> {
    let me = std::env::current_exe()?;
    let bytes = std::fs::read(&me)?;
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", dest.file_name().and_then(|n| n.to_str()).unwrap_or("claworc-sshd")));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, dest)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_running_executable_read_only_and_executable() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("claworc-sshd");
        let n = install(&dest).unwrap();
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!((n, std::fs::read(&dest).unwrap()), (me.len() as u64, me));
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o555);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        install(&dest).expect("a second install replaces the read-only file");
    }
}
