//! Runtime configuration: the contract's [`SshdConfig`] (from the annotations),
//! what the process environment adds, and the algorithm lists offered.
//!
//! The server has no passwd entry to read: `$HOME` comes from the environment
//! (the webhook sets it; made, mode 0700, when it does not exist) and falls back to `/`; the shell is `$SHELL` if it
//! exists, else `/bin/sh` if it exists, else none (see [`crate::exec`]).

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::names::ENV_SSHD_CONFIG;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred, cipher, kex, mac};

/// Key exchange: the post-quantum hybrid first, then curve25519. The two
/// pseudo-algorithms advertise extension negotiation and strict KEX
/// (the Terrapin fix).
pub const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];
/// AEAD ciphers only.
pub const CIPHERS: &[cipher::Name] = &[cipher::CHACHA20_POLY1305, cipher::AES_256_GCM, cipher::AES_128_GCM];
/// Encrypt-then-MAC SHA-2 only (unused with the AEAD ciphers, but negotiated).
pub const MACS: &[mac::Name] = &[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM];
/// Host key algorithms.
pub const HOST_KEY_ALGORITHMS: &[Algorithm] = &[Algorithm::Ed25519];

/// Variables of the server's own environment that sessions never inherit.
const PRIVATE_ENV: &[&str] = &[ENV_SSHD_CONFIG];

/// Everything a connection needs to know, fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub sshd: SshdConfig,
    /// Where sessions and SFTP start.
    pub home: PathBuf,
    /// The shell for `shell` and `exec`, if the image has one.
    pub shell: Option<PathBuf>,
    /// The environment sessions inherit (the workload's, less claworc's own).
    pub base_env: Vec<(OsString, OsString)>,
}

impl Config {
    /// `sshd` completed from this process's environment.
    pub fn from_process(sshd: SshdConfig) -> Self {
        // A home inside a volume may not exist yet (a fresh volume): make it, 0700.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute() && (h.is_dir() || make_home(h)))
            .unwrap_or_else(|| PathBuf::from("/"));
        let shell = std::env::var_os("SHELL")
            .map(PathBuf::from)
            .filter(|s| s.is_absolute() && is_executable(s))
            .or_else(|| Some(PathBuf::from("/bin/sh")).filter(|s| is_executable(s)));
        let base_env = std::env::vars_os().filter(|(k, _)| !PRIVATE_ENV.iter().any(|p| k == p)).collect();
        Config { sshd, home, shell, base_env }
    }

    pub fn login_grace(&self) -> Duration {
        Duration::from_secs(self.sshd.login_grace_time.into())
    }

    /// russh's server configuration: the algorithms above, public keys only,
    /// keepalives. russh's own auth-attempt cap is one above ours because it
    /// also counts the client's initial `none` probe, which OpenSSH does not;
    /// [`crate::session`] enforces `max-auth-tries` itself.
    pub fn russh(&self, host_key: PrivateKey) -> russh::server::Config {
        russh::server::Config {
            server_id: russh::SshId::Standard(Cow::Owned(format!("SSH-2.0-claworc_{}", claworc_contract::VERSION))),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![host_key],
            preferred: Preferred {
                kex: Cow::Borrowed(KEX),
                key: Cow::Borrowed(HOST_KEY_ALGORITHMS),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(CIPHERS),
                mac: Cow::Borrowed(MACS),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
            max_auth_attempts: self.sshd.max_auth_tries as usize + 1,
            // OpenSSH has no idle timeout by default; dead peers are found by keepalives.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(self.sshd.client_alive_interval.into())),
            keepalive_max: self.sshd.client_alive_count_max as usize,
            nodelay: true,
            ..Default::default()
        }
    }
}

fn make_home(home: &Path) -> bool {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(home).is_ok()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
