//! The listener: 127.0.0.1 only, one task per connection, the cap on
//! unauthenticated connections and the login grace timer. [`Service`] serves
//! one connection over any byte stream; [`Server`] is it behind the listener.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use russh::Disconnect;
use russh::keys::PrivateKey;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpListener;

use crate::Error;
use crate::audit::{self, Event};
use crate::auth::{self, AuthorizedKeys};
use crate::config::Config;
use crate::limits::Startups;
use crate::session::{Connection, Shared};

/// Bytes read from a client at a time: several SSH packets of 32 KiB.
const READ_BUFFER: usize = 256 * 1024;

/// What serves connections, whatever carries their bytes: the host key,
/// russh's configuration and what every connection shares. [`Server`] puts it
/// behind the 127.0.0.1 listener; the fuzz harness (`tests/fuzz_preauth.rs`)
/// feeds it in-memory pipes. Either way a connection goes through
/// [`Service::connection`], the one code path.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
    russh: Arc<russh::server::Config>,
    host_key: String,
}

impl Service {
    /// Loads the host key from the keys directory.
    pub fn load(config: Config) -> Result<Self, Error> {
        let host_key = auth::load_host_key(std::path::Path::new(&config.sshd.keys_dir))?;
        Ok(Self::with_host_key(config, host_key))
    }

    pub fn with_host_key(config: Config, host_key: PrivateKey) -> Self {
        let fingerprint = auth::fingerprint(host_key.public_key());
        let russh = Arc::new(config.russh(host_key));
        let shared = Arc::new(Shared {
            keys: AuthorizedKeys::new(std::path::Path::new(&config.sshd.keys_dir)),
            startups: Startups::new(config.sshd.max_startups),
            config,
        });
        Service { shared, russh, host_key: fingerprint }
    }

    /// The host key's `SHA256:…` fingerprint.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// One connection over `stream` (`local` is the server's end, for
    /// `SSH_CONNECTION`): the future that serves it until it ends, to spawn;
    /// or `None`, audited, when `max-startups` connections are still
    /// unauthenticated.
    pub fn connection<S>(
        &self,
        stream: S,
        conn: audit::Conn,
        local: SocketAddr,
    ) -> Option<impl Future<Output = ()> + Send + 'static>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(startup) = self.shared.startups.try_take() else {
            conn.emit(Event::ConnectionRefused { reason: "too many unauthenticated connections (max-startups)" });
            return None;
        };
        let (handler, state) = Connection::new(self.shared.clone(), conn, local, startup);
        Some(serve(stream, handler, state, self.russh.clone(), self.shared.config.login_grace(), conn))
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    service: Service,
}

impl Server {
    /// Loads the host key and binds 127.0.0.1:`port` (0 picks a free port).
    /// Refuses to run as root.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        if rustix::process::geteuid().is_root() {
            return Err(Error::Root);
        }
        let port = config.sshd.port;
        let service = Service::load(config)?;
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await.map_err(|source| Error::Listen { port, source })?;
        Ok(Server { listener, service })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the listener fails.
    pub async fn run(self) -> Result<(), Error> {
        audit::emit(Event::Listening { addr: self.local_addr()?.to_string(), host_key: self.service.host_key.clone() });
        let ids = AtomicU64::new(0);
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(s) => s,
                // Out of file descriptors and the like: wait and go on.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let conn = audit::Conn { id: ids.fetch_add(1, Ordering::Relaxed) + 1, peer, sink: audit::Sink::Stderr };
            let _ = socket.set_nodelay(true);
            let local = socket.local_addr().unwrap_or(peer);
            if let Some(serving) = self.service.connection(socket, conn, local) {
                tokio::spawn(serving);
            }
        }
    }
}

async fn serve<S>(
    stream: S,
    handler: Connection,
    state: Arc<crate::session::ConnState>,
    russh: Arc<russh::server::Config>,
    grace: Duration,
    conn: audit::Conn,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    conn.emit(Event::Connect {});
    // russh reads a packet's length, then the rest, each straight from the
    // stream: through a buffer, one read(2) takes in several packets.
    let stream = BufReader::with_capacity(READ_BUFFER, stream);
    // The version exchange is part of the grace time too.
    let session = match tokio::time::timeout(grace, russh::server::run_stream(russh, stream, handler)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => {
            conn.emit(Event::Disconnect {
                reason: "protocol error before key exchange",
                duration_ms: started.elapsed().as_millis(),
            });
            return;
        }
        Err(_) => {
            conn.emit(Event::Disconnect {
                reason: "login grace time exceeded",
                duration_ms: started.elapsed().as_millis(),
            });
            return;
        }
    };
    let handle = session.handle();
    let _ = state.handle.set(handle.clone());
    let watchdog = {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((started + grace).into()).await;
            if !state.authenticated.load(Ordering::Acquire) {
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "Login grace time exceeded".into(), String::new())
                    .await;
                true
            } else {
                false
            }
        })
    };
    let result = session.await;
    let grace_exceeded = if watchdog.is_finished() {
        matches!(watchdog.await, Ok(true))
    } else {
        watchdog.abort();
        false
    };
    let reason = if grace_exceeded {
        "login grace time exceeded"
    } else {
        match result {
            Ok(()) => "closed",
            Err(_) if !state.authenticated.load(Ordering::Acquire) => "closed before login",
            Err(_) => "connection error",
        }
    };
    conn.emit(Event::Disconnect { reason, duration_ms: started.elapsed().as_millis() });
}
