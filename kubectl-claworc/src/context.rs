//! The connection to the cluster, resolved the way kubectl resolves it:
//! `--kubeconfig` (else `$KUBECONFIG`, a list of files merged in order, else
//! `~/.kube/config`), `--context` (else the current context), `-n` (else the
//! context's namespace, else `default`).

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// Where to connect, as kubectl's global flags spell it (`--kubeconfig`, `--context`,
/// `-n`, `-v`).
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub verbose: u8,
}

/// Everything a command needs to talk to the cluster.
#[derive(Clone)]
pub struct Ctx {
    pub client: kube::Client,
    /// The namespace of the command.
    pub namespace: String,
    /// Key-store scope of the cluster: the context name (or server host), sanitized
    /// to `[A-Za-z0-9._-]`.
    pub cluster: String,
    /// The resolved client configuration (server URL, CA).
    pub config: kube::Config,
    /// The kubeconfig as read (merged), for the cluster entry's server and CA.
    pub kubeconfig: Kubeconfig,
    /// The context in use, if any.
    pub context: Option<String>,
    /// `-v` count.
    pub verbose: u8,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("namespace", &self.namespace)
            .field("cluster", &self.cluster)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Reads the kubeconfig and builds a client.
    pub async fn load(global: &Global) -> Result<Self> {
        let kubeconfig = match &global.kubeconfig {
            Some(path) => Kubeconfig::read_from(path)
                .map_err(|e| Error::other(format!("--kubeconfig {}: {e}", path.display())).with_source(e))?,
            None => Kubeconfig::read().map_err(|e| {
                Error::other(format!("cannot read a kubeconfig ({e}): set KUBECONFIG or pass --kubeconfig FILE"))
            })?,
        };
        let context = global.context.clone().or_else(|| kubeconfig.current_context.clone());
        if let Some(name) = &global.context
            && !kubeconfig.contexts.iter().any(|c| &c.name == name)
        {
            return Err(Error::not_found(format!(
                "--context {name}: no such context in the kubeconfig (see `kubectl config get-contexts`)"
            )));
        }
        let options = KubeConfigOptions { context: global.context.clone(), cluster: None, user: None };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
            .await
            .map_err(|e| Error::other(format!("kubeconfig: {e}")).with_source(e))?;
        let namespace = match &global.namespace {
            Some(ns) => {
                crate::input::validate_name("--namespace", ns)?;
                ns.clone()
            }
            None => config.default_namespace.clone(),
        };
        let scope = context.clone().unwrap_or_else(|| config.cluster_url.host().unwrap_or("cluster").to_string());
        let client = kube::Client::try_from(config.clone())
            .map_err(|e| Error::other(format!("kube client: {e}")).with_source(e))?;
        Ok(Ctx { client, namespace, cluster: sanitize(&scope), config, kubeconfig, context, verbose: global.verbose })
    }

    /// The kubeconfig cluster entry of the context in use.
    pub fn cluster_entry(&self) -> Option<&kube::config::Cluster> {
        let ctx_name = self.context.as_deref()?;
        let ctx = self.kubeconfig.contexts.iter().find(|c| c.name == ctx_name)?.context.as_ref()?;
        self.kubeconfig.clusters.iter().find(|c| c.name == ctx.cluster)?.cluster.as_ref()
    }

    /// Prints a progress line to stderr when `-v` is given.
    pub fn debug(&self, msg: impl std::fmt::Display) {
        if self.verbose > 0 {
            eprintln!("{msg}");
        }
    }
}

/// The namespace and key-store scope without contacting the cluster (for
/// `--dry-run=client`): `-n`, else the context's namespace, else `default`; the scope
/// is `None` when no kubeconfig can be read.
pub fn resolve_offline(global: &Global) -> (Option<String>, Option<String>) {
    let kubeconfig = match &global.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).ok(),
        None => Kubeconfig::read().ok(),
    };
    let Some(kc) = kubeconfig else {
        return (global.namespace.clone(), None);
    };
    let context = global.context.clone().or_else(|| kc.current_context.clone());
    let ctx_ns = context
        .as_ref()
        .and_then(|c| kc.contexts.iter().find(|n| &n.name == c))
        .and_then(|n| n.context.as_ref()?.namespace.clone());
    let namespace = global.namespace.clone().or(ctx_ns).unwrap_or_else(|| "default".into());
    (Some(namespace), context.map(|c| sanitize(&c)))
}

/// Maps a context name to a safe single path component.
pub fn sanitize(s: &str) -> String {
    let out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    match out.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes() {
        assert_eq!(sanitize("kind-dev"), "kind-dev");
        assert_eq!(sanitize("admin@prod/eu:1"), "admin_prod_eu_1");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize(""), "_");
    }
}
