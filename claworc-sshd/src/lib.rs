//! `claworc-sshd`: the SSH server of a claworc instance, on russh's server API.
//!
//! It serves exactly what the sidecar's hardened OpenSSH serves (docs/claworc-sshd.md)
//! and runs unprivileged, without a passwd entry, in any Linux image. Modules:
//!
//! - [`config`]: the contract's [`SshdConfig`](claworc_contract::claworc_sshd_config::SshdConfig)
//!   plus what the process environment adds (`$HOME`, `$SHELL`), and russh's algorithm lists.
//! - [`auth`]: the ed25519 host key and `authorized_keys`, re-read when the Secret volume changes.
//! - [`limits`]: the caps on unauthenticated connections and on sessions per connection.
//! - [`server`]: one connection over any byte stream ([`server::Service`]: login grace timer, startup cap), and the 127.0.0.1 listener in front of it.
//! - [`session`]: the russh handler of one connection: authentication and every request.
//! - [`exec`]: what a session runs (argv, environment) and running it on pipes.
//! - [`pty`]: running it on a pseudo-terminal, with window-size changes.
//! - [`sftp`]: the SFTP subsystem over the filesystem, with the process's permissions.
//! - [`forward`]: local forwarding (`direct-tcpip`) to the allowed localhost ports.
//! - [`install`]: `claworc-sshd install DEST`, the binary copying itself (the delivery init container).
//! - [`probe`]: `claworc-sshd probe PORT`, the readiness probe (an SSH version line on 127.0.0.1).
//! - [`audit`]: the JSON audit lines on stderr.
//! - [`error`]: the crate's error type.

pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod exec;
pub mod forward;
pub mod install;
pub mod limits;
pub mod probe;
pub mod pty;
pub mod server;
pub mod session;
pub mod sftp;

pub use error::Error;
