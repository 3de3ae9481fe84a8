//! The claworc contract: the one source of truth for every label, annotation,
//! default and name that the webhook, the plugin and the docs share.
//!
//! - `instance`: what makes a Deployment a claworc instance (opt-in label or claworc markers;
//!   feature `k8s`, on by default).
//! - [`names`]: labels, annotation keys, container, volume, Secret-key and path names.
//! - [`annotations`]: the table of `claworc.io/*` annotations with defaults and meanings.
//! - [`settings`]: a Deployment's annotations parsed into typed, validated [`Settings`].
//! - [`claworc_sshd_config`]: the configuration of `claworc-sshd`, the SSH server injected into
//!   every instance, rendered from [`Settings`] and parsed back by the server. (Until 0.1.0 the
//!   sidecar ran OpenSSH with an `sshd_config` rendered here; claworc-sshd replaced it so that
//!   sessions run in the workload's own image, see docs/claworc-sshd.md.)
//! - [`known_hosts`]: the pinned host keys of the large git hosts.
//! - [`audit`]: the audit lines of `claworc-sshd`: written by the server, read by
//!   `kubectl claworc audit`.
//! - [`sftp_batch`]: many small files in one SFTP request, the extension claworc-sshd answers
//!   and `kubectl claworc cp` sends.

pub mod annotations;
pub mod audit;
pub mod claworc_sshd_config;
#[cfg(feature = "k8s")]
pub mod instance;
pub mod known_hosts;
pub mod names;
pub mod settings;
pub mod sftp_batch;

pub use settings::{AnnotationError, Settings, StrictHostKeyChecking};

/// The version written to `claworc.io/injected`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
