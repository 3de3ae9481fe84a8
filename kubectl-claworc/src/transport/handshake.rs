//! SSH over any byte stream: key exchange, the host key checked by
//! [`super::pinning::PinnedHostKey`], public-key authentication; the errors kept apart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use tokio::io::{AsyncRead, AsyncWrite};

use super::credentials::Credentials;
use super::pinning::PinnedHostKey;
use crate::error::{Error, Kind, Source};
use crate::hostkey::{Decision, Expectation, HostKeyRefused};

/// How long the SSH handshake (key exchange and authentication) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive interval; after [`KEEPALIVE_MAX`] unanswered ones the connection is dropped.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_MAX: usize = 3;

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
    let handler = PinnedHostKey::new(expect, outcome.clone());
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
