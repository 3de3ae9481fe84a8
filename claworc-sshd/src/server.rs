//! The listener: 127.0.0.1 only, one task per connection, the cap on
//! unauthenticated connections and the login grace timer.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use russh::Disconnect;
use tokio::net::{TcpListener, TcpStream};

use crate::Error;
use crate::audit::{self, Event};
use crate::auth::{self, AuthorizedKeys};
use crate::config::Config;
use crate::limits::Startups;
use crate::session::{Connection, Shared};

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    russh: Arc<russh::server::Config>,
    host_key: String,
}

impl Server {
    /// Loads the host key and binds 127.0.0.1:`port` (0 picks a free port).
    /// Refuses to run as root.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        if rustix::process::geteuid().is_root() {
            return Err(Error::Root);
        }
        let keys_dir = std::path::PathBuf::from(&config.sshd.keys_dir);
        let host_key = auth::load_host_key(&keys_dir)?;
        let fingerprint = auth::fingerprint(host_key.public_key());
        let port = config.sshd.port;
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await.map_err(|source| Error::Listen { port, source })?;
        let russh = Arc::new(config.russh(host_key));
        let shared = Arc::new(Shared {
            keys: AuthorizedKeys::new(&keys_dir),
            startups: Startups::new(config.sshd.max_startups),
            config,
        });
        Ok(Server { listener, shared, russh, host_key: fingerprint })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the listener fails.
    pub async fn run(self) -> Result<(), Error> {
        audit::emit(Event::Listening { addr: self.local_addr()?.to_string(), host_key: self.host_key.clone() });
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
            let conn = audit::Conn { id: ids.fetch_add(1, Ordering::Relaxed) + 1, peer };
            let Some(startup) = self.shared.startups.try_take() else {
                conn.emit(Event::ConnectionRefused { reason: "too many unauthenticated connections (max-startups)" });
                drop(socket);
                continue;
            };
            let local = socket.local_addr().unwrap_or(peer);
            let (handler, state) = Connection::new(self.shared.clone(), conn, local, startup);
            tokio::spawn(serve(socket, handler, state, self.russh.clone(), self.shared.config.clone(), conn));
        }
    }
}

async fn serve(
    socket: TcpStream,
    handler: Connection,
    state: Arc<crate::session::ConnState>,
    russh: Arc<russh::server::Config>,
    config: Config,
    conn: audit::Conn,
) {
    let started = Instant::now();
    let grace = config.login_grace();
    conn.emit(Event::Connect {});
    let _ = socket.set_nodelay(true);
    // The version exchange is part of the grace time too.
    let session = match tokio::time::timeout(grace, russh::server::run_stream(russh, socket, handler)).await {
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
