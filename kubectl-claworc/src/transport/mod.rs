//! SSH to an instance through the Kubernetes API: no pod-network access needed.
//! One path, shared by `ssh`, `tunnel`, `logs --file`, `cp` and `proxy`:
//!
//! 1. [`pod`]: [`find_instance`], the Deployment (ssh port, forward ports,
//!    host-key fingerprint annotations) and its newest Running/Ready pod
//!    (label `claworc.io/instance=<name>`);
//! 2. [`portforward`]: [`open_port_forward`], a `pods/portforward` stream to the
//!    sshd port (all `proxy` needs: OpenSSH does the rest);
//! 3. [`credentials`]: the login name and client keys;
//! 4. [`handshake`](mod@handshake): russh over the stream, public-key authentication;
//! 5. [`pinning`]: the host key checked by [`crate::hostkey`] against the key
//!    store's pin or the Deployment's fingerprint, and pinned when taken from it.
//!
//! [`connect`] does all of it with the key store; [`handshake()`] also works over
//! any stream (a plain `TcpStream` in tests and the benchmark).

pub mod credentials;
pub mod handshake;
pub mod pinning;
pub mod pod;
pub mod portforward;

pub use credentials::{ConnectOptions, Credentials, ENV_SSH_USER, Login, credentials, instance_id};
pub use handshake::{
    ConnectError, Connection, HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_MAX, config, handshake,
};
pub use pinning::{PinnedHostKey, expectation};
pub use pod::{Instance, find_instance, instance_pods, instance_settings, pick_pod};
pub use portforward::{PortForwardStream, open_port_forward};

use crate::context::Ctx;
use crate::error::Result;
use crate::keystore::KeyStore;

/// Port-forward to the instance's sshd and log in with `creds`. A host key
/// accepted from the annotation is pinned (and said so on stderr).
pub async fn connect_instance(
    ctx: &Ctx,
    store: &KeyStore,
    instance: &Instance,
    creds: &Credentials,
    repin: bool,
) -> std::result::Result<Connection, ConnectError> {
    let expect = expectation(ctx, store, instance, repin).map_err(ConnectError::transport_from)?;
    let stream = open_port_forward(ctx, instance).await.map_err(ConnectError::transport_from)?;
    let conn = handshake(stream, creds, expect).await?;
    pinning::pin_if_accepted(ctx, store, instance, &conn.host_key, &conn.decision).map_err(|e| {
        ConnectError::Transport { message: format!("pinning the host key: {e}"), source: Some(Box::new(e)) }
    })?;
    Ok(conn)
}

/// Finds the instance, loads the credentials, connects.
pub async fn connect(ctx: &Ctx, name: &str, opts: &ConnectOptions) -> Result<(Instance, Connection)> {
    let store = KeyStore::open_default()?;
    let creds = credentials(ctx, &store, name, opts)?;
    let instance = find_instance(&ctx.client, &ctx.namespace, name).await?;
    let conn = connect_instance(ctx, &store, &instance, &creds, opts.repin).await?;
    Ok((instance, conn))
}
