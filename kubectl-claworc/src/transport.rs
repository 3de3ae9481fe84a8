//! SSH to an instance through the Kubernetes API: no pod-network access needed.
//!
//! 1. [`find_instance`]: the Deployment (for the ssh port, forward ports and
//!    host-key fingerprint annotations) and its newest Running/Ready pod
//!    (label `claworc.io/instance=<name>`);
//! 2. [`open_port_forward`]: a `pods/portforward` stream to the sshd port;
//! 3. [`handshake`]: russh over that stream, the host key checked by
//!    [`crate::hostkey`], public-key authentication.
//!
//! [`connect`] does all three with the key store; [`handshake`] also works over
//! any stream (a plain `TcpStream` in tests and the benchmark).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use claworc_contract::Settings;
use claworc_contract::annotations::HOST_KEY_FINGERPRINT;
use claworc_contract::names::LABEL_INSTANCE;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::context::Ctx;
use crate::error::{Error, Kind, Result, Source};
use crate::hostkey::{self, Decision, Expectation, HostKeyRefused};
use crate::keystore::{InstanceId, KeyStore};

/// How long the SSH handshake (key exchange and authentication) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive interval; after [`KEEPALIVE_MAX`] unanswered ones the connection is dropped.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_MAX: usize = 3;

/// An instance as the SSH side needs it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub namespace: String,
    pub name: String,
    /// The pod to connect to.
    pub pod: String,
    pub settings: Settings,
}

impl Instance {
    /// `namespace/name`, for messages and the key store.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Finds the Deployment `name` and its newest Running (preferably Ready) pod.
pub async fn find_instance(client: &kube::Client, namespace: &str, name: &str) -> Result<Instance> {
    let settings = instance_settings(client, namespace, name).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_INSTANCE}={name}")))
        .await
        .map_err(|e| Error::kube(e, format!("pods of instance \"{name}\" in namespace \"{namespace}\"")))?;
    let pod = pick_pod(&list.items).ok_or_else(|| {
        let phases: Vec<String> = list
            .items
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.metadata.name.as_deref().unwrap_or("?"),
                    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
                )
            })
            .collect();
        Error::other(format!(
            "instance \"{name}\" in namespace \"{namespace}\" has no running pod{}; see `kubectl claworc status {name}`",
            if phases.is_empty() { String::new() } else { format!(" ({})", phases.join(", ")) }
        ))
    })?;
    Ok(Instance { namespace: namespace.into(), name: name.into(), pod, settings })
}

/// The parsed `claworc.io/*` annotations of the Deployment `name`.
pub async fn instance_settings(client: &kube::Client, namespace: &str, name: &str) -> Result<Settings> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = deployments
        .get(name)
        .await
        .map_err(|e| Error::kube(e, format!("instance (deployment) \"{name}\" in namespace \"{namespace}\"")))?;
    let annotations: BTreeMap<String, String> = d.metadata.annotations.unwrap_or_default();
    Settings::from_annotations(name, &annotations).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Error::invalid(format!("deployment \"{name}\": {}", text.join("; ")))
    })
}

/// The newest pod that is Running and not being deleted, Ready ones first.
pub fn pick_pod(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .max_by_key(|p| (is_ready(p), p.metadata.creation_timestamp.clone()))
        .and_then(|p| p.metadata.name.clone())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A port-forward stream to one port of a pod. Dropping it ends the forward.
pub struct PortForwardStream {
    stream: DuplexStream,
    forwarder: kube::api::Portforwarder,
}

impl Drop for PortForwardStream {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Opens `pods/portforward` to the instance's ssh port. The stream's own error (the
/// kubelet's word on why it ended) is printed on stderr with `-v`.
pub async fn open_port_forward(ctx: &Ctx, instance: &Instance) -> Result<PortForwardStream> {
    let client = &ctx.client;
    let port = instance.settings.ssh_port;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &instance.namespace);
    let mut forwarder = pods
        .portforward(&instance.pod, &[port])
        .await
        .map_err(|e| Error::kube(e, format!("port-forward to pod \"{}\" port {port}", instance.pod)))?;
    let stream = forwarder
        .take_stream(port)
        .ok_or_else(|| Error::other(format!("port-forward to pod \"{}\": no stream for port {port}", instance.pod)))?;
    if let Some(errors) = forwarder.take_error(port) {
        let (pod, ctx) = (instance.pod.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Some(e) = errors.await {
                ctx.debug(format_args!("port-forward to pod {pod} port {port}: {e}"));
            }
        });
    }
    Ok(PortForwardStream { stream, forwarder })
}

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

/// Why a connection failed, kept apart so callers can decide what is fatal.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host key was refused: never retried.
    #[error("{0}")]
    HostKey(HostKeyRefused),
    /// The server refused our key.
    #[error(
        "the instance refused the client key for user \"{user}\" (wrong key, rotated key not yet propagated, or wrong --user)"
    )]
    Auth { user: String },
    /// The transport failed (port-forward, sshd down, protocol error, timeout).
    #[error("ssh: {message}")]
    Transport {
        message: String,
        #[source]
        source: Option<Source>,
    },
}

impl ConnectError {
    /// A transport failure described by `message` alone.
    pub fn transport(message: impl Into<String>) -> Self {
        ConnectError::Transport { message: message.into(), source: None }
    }

    /// A transport failure caused by `e`, which it keeps (the message is `e`'s).
    pub fn transport_from(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ConnectError::Transport { message: e.to_string(), source: Some(Box::new(e)) }
    }
}

impl From<ConnectError> for Error {
    /// A refused host key is forbidden (exit 5); any other failure is exit 1.
    fn from(e: ConnectError) -> Self {
        let kind = if matches!(e, ConnectError::HostKey(_)) { Kind::Forbidden } else { Kind::Other };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

/// An authenticated SSH connection.
pub struct Connection {
    pub handle: client::Handle<PinnedHostKey>,
    /// The host key the server presented.
    pub host_key: PublicKey,
    /// The host-key decision (pinned already, or to be pinned from the annotation).
    pub decision: Decision,
}

impl Connection {
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Disconnects politely.
    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "bye", "en").await;
    }
}

/// The russh client handler: accepts only the host key the [`Expectation`] allows
/// (the local pin, else the Deployment's fingerprint), and keeps the decision.
pub struct PinnedHostKey {
    expect: Expectation,
    outcome: Arc<Mutex<Option<(PublicKey, Decision)>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let presented = crate::keys::fingerprint(key);
        let decision = hostkey::check(&self.expect, &presented);
        let ok = !matches!(decision, Decision::Refused(_));
        *self.outcome.lock().expect("host-key outcome") = Some((key.clone(), decision));
        Ok(ok)
    }
}

/// The client configuration: keepalives, large windows for tunnels.
pub fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        nodelay: true,
        preferred: russh::Preferred { cipher: std::borrow::Cow::Borrowed(CIPHERS), ..Default::default() },
        ..Default::default()
    })
}

/// Read buffer of the transport stream.
const READ_BUFFER: usize = 256 * 1024;

/// AES-GCM first: with AES-NI it is the cheapest cipher for both ends (the
/// sidecar's sshd included), which is what bounds tunnel throughput.
const CIPHERS: &[russh::cipher::Name] =
    &[russh::cipher::AES_256_GCM, russh::cipher::CHACHA20_POLY1305, russh::cipher::AES_256_CTR];

/// SSH over `stream`: key exchange, host-key check against `expect`, public-key
/// authentication.
pub async fn handshake<S>(
    stream: S,
    creds: &Credentials,
    expect: Expectation,
) -> std::result::Result<Connection, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let outcome = Arc::new(Mutex::new(None));
    let handler = PinnedHostKey { expect, outcome: outcome.clone() };
    let work = async move {
        // SSH reads a 4-byte length, then the packet: buffer the reads so that is not
        // two reads (syscalls, or duplex wake-ups) per packet. Writes pass straight through.
        let stream = tokio::io::BufReader::with_capacity(READ_BUFFER, stream);
        let connected = client::connect_stream(config(), stream, handler).await;
        let checked = outcome.lock().expect("host-key outcome").take();
        let (mut handle, host_key, decision) = match (connected, checked) {
            (_, Some((_, Decision::Refused(r)))) => return Err(ConnectError::HostKey(r)),
            (Err(e), _) => return Err(ConnectError::transport_from(e)),
            (Ok(_), None) => {
                return Err(ConnectError::transport("the server presented no host key"));
            }
            (Ok(h), Some((key, decision))) => (h, key, decision),
        };
        for key in &creds.keys {
            let key = PrivateKeyWithHashAlg::new(key.clone(), None);
            let auth = handle.authenticate_publickey(creds.user.clone(), key).await.map_err(|e| {
                ConnectError::Transport { message: format!("authentication: {e}"), source: Some(Box::new(e)) }
            })?;
            if auth.success() {
                return Ok(Connection { handle, host_key, decision });
            }
        }
        Err(ConnectError::Auth { user: creds.user.clone() })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| ConnectError::transport(format!("handshake timed out after {HANDSHAKE_TIMEOUT:?}")))?
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

/// What the key store and the Deployment say about the host key.
pub fn expectation(ctx: &Ctx, store: &KeyStore, instance: &Instance, repin: bool) -> Result<Expectation> {
    let pin = store.lookup_host_key(&instance_id(ctx, &instance.name))?.map(|k| crate::keys::fingerprint(&k));
    Ok(Expectation { instance: instance.id(), pin, annotation: instance.settings.host_key_fingerprint.clone(), repin })
}

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
    if let Decision::PinFromAnnotation { fingerprint, replaced } = &conn.decision {
        let id = instance_id(ctx, &instance.name);
        store.pin_host_key(&id, &conn.host_key).map_err(|e| ConnectError::Transport {
            message: format!("pinning the host key: {e}"),
            source: Some(Box::new(e)),
        })?;
        match replaced {
            Some(old) => eprintln!(
                "re-pinned the host key of {} (--repin): {old} -> {fingerprint}, as the Deployment's \
                 {HOST_KEY_FINGERPRINT} says; pins in {}",
                instance.id(),
                store.known_hosts_path().display()
            ),
            None => eprintln!(
                "pinned the host key {fingerprint} of {} from the Deployment's {HOST_KEY_FINGERPRINT}; \
                 pins in {}",
                instance.id(),
                store.known_hosts_path().display()
            ),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, created: i64, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z"),
            },
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .map(|mut p: Pod| {
            if deleting {
                p.metadata.deletion_timestamp = p.metadata.creation_timestamp.clone();
            }
            p
        })
        .unwrap()
    }

    #[test]
    fn picks_the_newest_running_ready_pod() {
        let pods = vec![
            pod("old-ready", "Running", true, 1, false),
            pod("new-ready", "Running", true, 5, false),
            pod("newest-not-ready", "Running", false, 9, false),
            pod("pending", "Pending", false, 10, false),
            pod("terminating", "Running", true, 11, true),
        ];
        assert_eq!(pick_pod(&pods).as_deref(), Some("new-ready"));
        assert_eq!(pick_pod(&pods[2..]).as_deref(), Some("newest-not-ready"));
        assert_eq!(pick_pod(&pods[3..]), None);
    }
}
