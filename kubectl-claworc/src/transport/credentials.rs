//! Who logs in: the login name and the client keys (`--identity FILE`, else the key
//! store's, a pending rotation's key first).

use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::PrivateKey;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::keystore::{InstanceId, KeyStore};

/// The client's identity.
#[derive(Clone)]
pub struct Credentials {
    /// The user name (the sidecar's run-as user, see `--user`).
    pub user: String,
    /// Keys to try in order (during a rotation: the pending key, then the current one).
    pub keys: Vec<Arc<PrivateKey>>,
}

impl Credentials {
    pub fn new(user: impl Into<String>, key: PrivateKey) -> Self {
        Credentials { user: user.into(), keys: vec![Arc::new(key)] }
    }
}

/// Environment variable with the default `--user` (e.g. for CI or tests).
pub const ENV_SSH_USER: &str = "CLAWORC_SSH_USER";

/// Who logs in: the sidecar image's name of the run-as user (`--user`).
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// Connection options of `ssh`, `tunnel` and `logs --file`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub login: Login,
    /// Log in with this private key file instead of the key store's (CI).
    pub identity: Option<PathBuf>,
    /// Accept a changed host key that matches the Deployment's fingerprint, and pin it.
    pub repin: bool,
}

/// The key-store id of an instance of the context's cluster.
pub fn instance_id(ctx: &Ctx, name: &str) -> InstanceId {
    InstanceId::new(&ctx.cluster, &ctx.namespace, name)
}

/// The client credentials: `--identity FILE`, else the key store's key.
pub fn credentials(ctx: &Ctx, store: &KeyStore, name: &str, opts: &ConnectOptions) -> Result<Credentials> {
    let keys = match &opts.identity {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(e, path))?;
            vec![crate::keys::parse_private(&text).map_err(|e| e.context(format!("--identity {}", path.display())))?]
        }
        None => {
            let id = instance_id(ctx, name);
            // A pending key of an unfinished rotation first, then the current key.
            let keys = store.usable_client_keys(&id)?;
            if keys.is_empty() {
                return Err(Error::not_found(format!(
                    "no client key for instance \"{name}\" at {} (the instance was created on another machine or \
                     with another context?): copy the key there, pass --identity FILE, or run \
                     `kubectl claworc rotate-keys {name}` to make a new one",
                    store.client_key_path(&id).display()
                )));
            }
            keys
        }
    };
    Ok(Credentials { user: opts.login.user.clone(), keys: keys.into_iter().map(Arc::new).collect() })
}
