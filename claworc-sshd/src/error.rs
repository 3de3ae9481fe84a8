//! The one error type of the crate; each variant keeps its source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read the host key: {source} (mount the instance Secret's ssh_host_ed25519_key there)")]
    HostKeyRead { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an OpenSSH ed25519 private key: {source}")]
    HostKeyParse { path: PathBuf, source: russh::keys::ssh_key::Error },
    #[error("{path}: the host key is {algorithm}; claworc-sshd serves ssh-ed25519 only")]
    HostKeyAlgorithm { path: PathBuf, algorithm: String },
    #[error(
        "refusing to run as root (uid 0): every session would be root; run as the pod's claworc.io/run-as-user (OpenSSH's PermitRootLogin no)"
    )]
    Root,
    #[error(transparent)]
    Config(#[from] claworc_contract::claworc_sshd_config::ConfigError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
