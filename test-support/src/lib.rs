//! Test support shared by the workspace's tests (a dev-dependency only): the one
//! harness that runs the real `claworc-sshd` on loopback as the pod runs it.
//!
//! - [`tools`]: the programs the tests drive (OpenSSH's clients, `setpriv`), each
//!   failing with the command that installs it; running commands.
//! - [`secret`]: a directory laid out as a Kubernetes Secret volume, updated as the
//!   kubelet updates it.
//! - [`sshd`]: a `claworc-sshd` process over such a volume, as the pod's user, with
//!   its audit lines collected, and OpenSSH clients pinned to its host key.

pub mod secret;
pub mod sshd;
pub mod tools;

pub use secret::SecretVolume;
pub use sshd::{Key, Options, Sshd, binary, keygen};
pub use tools::{INSTALL, RUN_AS, as_run_as, free_port, is_root, require, run, run_with_stdin, text};
