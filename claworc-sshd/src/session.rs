//! The russh handler of one connection ([`Connection`]): authentication with
//! the hardening's limits, then every request a client can make, each either
//! served or refused with an audit line.
//!
//! Requests on a session channel (`pty-req`, `env`) are answered here and
//! remembered; `shell`, `exec` and the `sftp` subsystem hand the channel to a
//! task ([`crate::exec`], [`crate::pty`], [`crate::sftp`]) that owns its data
//! until the program ends. `window-change` and `signal` reach that task
//! through a control queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use russh::keys::{Certificate, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty, Sig};
use tokio::sync::mpsc;

use crate::audit::{self, Event};
use crate::auth::{self, AuthorizedKeys, Verdict};
use crate::config::Config;
use crate::exec::{self, Control, Exit, Request};
use crate::forward;
use crate::limits::{SessionSlot, Sessions, StartupSlot, Startups};
use crate::pty::{self, WindowSize};

/// Environment variables one session channel may set.
const MAX_ENV: usize = 64;

/// What every connection of the server shares.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub keys: AuthorizedKeys,
    pub startups: Startups,
}

/// What the connection's task (in [`crate::server`]) and its handler share.
#[derive(Debug, Default)]
pub struct ConnState {
    pub authenticated: AtomicBool,
    /// Set once the SSH session runs; used to disconnect from inside the handler.
    pub handle: OnceLock<Handle>,
}

/// A session channel before and while its program runs.
#[derive(Default)]
struct SessionChannel {
    /// Until `shell`/`exec`/`subsystem` takes it.
    channel: Option<Channel<Msg>>,
    slot: Option<SessionSlot>,
    pty: Option<(String, WindowSize)>,
    env: Vec<(String, String)>,
    control: Option<mpsc::UnboundedSender<Control>>,
}

/// The handler of one SSH connection.
pub struct Connection {
    shared: Arc<Shared>,
    conn: audit::Conn,
    local: SocketAddr,
    state: Arc<ConnState>,
    startup: Option<StartupSlot>,
    failures: u32,
    sessions: Sessions,
    channels: HashMap<ChannelId, SessionChannel>,
}

impl Connection {
    pub fn new(
        shared: Arc<Shared>,
        conn: audit::Conn,
        local: SocketAddr,
        startup: StartupSlot,
    ) -> (Self, Arc<ConnState>) {
        let state = Arc::new(ConnState::default());
        let c = Connection {
            shared,
            conn,
            local,
            state: state.clone(),
            startup: Some(startup),
            failures: 0,
            sessions: Sessions::default(),
            channels: HashMap::new(),
        };
        (c, state)
    }

    fn publickey_only() -> Option<MethodSet> {
        Some(MethodSet::from(&[MethodKind::PublicKey][..]))
    }

    /// Audits a refused attempt, counts it, and disconnects at `max-auth-tries`
    /// (OpenSSH's "Too many authentication failures").
    fn refuse(
        &mut self,
        user: &str,
        method: &str,
        key: Option<&PublicKey>,
        comment: Option<&str>,
        reason: &str,
    ) -> Auth {
        self.conn.emit(Event::LoginRefused { user, method, fingerprint: key.map(auth::fingerprint), comment, reason });
        self.failures += 1;
        if self.failures >= self.shared.config.sshd.max_auth_tries
            && let Some(handle) = self.state.handle.get().cloned()
        {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(
                        Disconnect::NoMoreAuthMethodsAvailable,
                        "Too many authentication failures".into(),
                        String::new(),
                    )
                    .await;
            });
        }
        Auth::Reject { proceed_with_methods: Self::publickey_only(), partial_success: false }
    }

    /// Why `user` with `key` may not log in, or the key's comment if it may.
    fn check(&self, user: &str, key: &PublicKey) -> Result<String, (Option<String>, &'static str)> {
        if user != self.shared.config.sshd.user {
            return Err((None, "unknown user"));
        }
        match self.shared.keys.verdict(key) {
            Verdict::Authorized { comment } => Ok(comment),
            Verdict::HasOptions { comment } => Err((Some(comment), "authorized_keys options are not supported")),
            Verdict::Unknown => Err((None, "key not in authorized_keys")),
        }
    }

    fn refused(&self, request: &str, detail: Option<String>) {
        self.conn.emit(Event::RequestRefused { request, detail });
    }

    /// Starts what a session channel asked for, or answers failure.
    fn start(&mut self, id: ChannelId, what: Start, session: &mut Session) -> Result<(), crate::Error> {
        let Some(entry) = self.channels.get_mut(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let Some(channel) = entry.channel.take() else {
            // A second shell/exec/subsystem on the same channel.
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        entry.control = Some(tx);
        let cfg = &self.shared.config;
        let handle = session.handle();
        let (kind, command) = match &what {
            Start::Run(r) => (r.kind(), r.command().to_string()),
            Start::Sftp => ("subsystem", "sftp".to_string()),
        };
        let record = SessionRecord {
            conn: self.conn,
            channel: id.number(),
            kind,
            command,
            started: Instant::now(),
            exit: None,
            _slot: entry.slot.take(),
        };
        self.conn.emit(Event::SessionStart {
            channel: record.channel,
            kind,
            command: &record.command,
            pty: entry.pty.is_some(),
        });
        match what {
            Start::Sftp => {
                // The record ends with the SFTP stream, which ends with exit status 0.
                let record = record.exiting(Exit::Status(0));
                tokio::spawn(crate::sftp::serve(channel, handle, cfg.home.clone(), self.conn, record));
            }
            Start::Run(request) => {
                let cx = exec::Context {
                    base_env: &cfg.base_env,
                    home: &cfg.home,
                    shell: cfg.shell.as_deref(),
                    user: &cfg.sshd.user,
                    peer: self.conn.peer,
                    local: self.local,
                };
                let env = exec::environment(&cx, entry.pty.as_ref().map(|(t, _)| t.as_str()), &entry.env);
                let launch = exec::launch(cfg.shell.as_deref(), &request);
                let pty = entry.pty.as_ref().map(|(_, s)| *s);
                let home = cfg.home.clone();
                tokio::spawn(async move {
                    let exit = match (launch, pty) {
                        (Ok(l), Some(size)) => pty::run_on_pty(channel, handle, l, env, home, size, rx).await,
                        (Ok(l), None) => exec::run_piped(channel, handle, l, env, home, rx).await,
                        (Err(e), _) => {
                            let (_, w) = channel.split();
                            exec::refuse(&w, &handle, &e.to_string(), 127).await
                        }
                    };
                    record.ended(exit);
                });
            }
        }
        Ok(())
    }
}

enum Start {
    Run(Request),
    Sftp,
}

/// A running session: audited as ended (with its duration and exit) when dropped.
struct SessionRecord {
    conn: audit::Conn,
    channel: u32,
    kind: &'static str,
    command: String,
    started: Instant,
    exit: Option<Exit>,
    _slot: Option<SessionSlot>,
}

impl SessionRecord {
    fn ended(self, exit: Exit) {
        drop(self.exiting(exit));
    }

    fn exiting(mut self, exit: Exit) -> Self {
        self.exit = Some(exit);
        self
    }
}

impl Drop for SessionRecord {
    fn drop(&mut self) {
        let (exit_status, exit_signal) = self.exit.as_ref().map(Exit::audit).unwrap_or_default();
        self.conn.emit(Event::SessionEnd {
            channel: self.channel,
            kind: self.kind,
            command: &self.command,
            exit_status,
            exit_signal,
            duration_ms: self.started.elapsed().as_millis(),
        });
    }
}

impl russh::server::Handler for Connection {
    type Error = crate::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        // The clients' initial probe; OpenSSH does not count it either.
        Ok(Auth::Reject { proceed_with_methods: Self::publickey_only(), partial_success: false })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.refuse(user, "password", None, None, "method not allowed"))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.refuse(user, "keyboard-interactive", None, None, "method not allowed"))
    }

    async fn auth_openssh_certificate(&mut self, user: &str, _c: &Certificate) -> Result<Auth, Self::Error> {
        Ok(self.refuse(user, "publickey", None, None, "certificates are not accepted"))
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        match self.check(user, offer.public_key) {
            Ok(_) => Ok(Auth::Accept),
            Err((comment, reason)) => {
                Ok(self.refuse(user, "publickey", Some(offer.public_key), comment.as_deref(), reason))
            }
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        // Checked again: the key may have been rotated out since the offer.
        match self.check(user, key.public_key) {
            Ok(comment) => {
                self.conn.emit(Event::LoginAccepted {
                    user,
                    method: "publickey",
                    fingerprint: auth::fingerprint(key.public_key),
                    comment: &comment,
                });
                Ok(Auth::Accept)
            }
            Err((comment, reason)) => {
                Ok(self.refuse(user, "publickey", Some(key.public_key), comment.as_deref(), reason))
            }
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.state.authenticated.store(true, Ordering::Release);
        self.startup = None;
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(slot) = self.sessions.try_take(self.shared.config.sshd.max_sessions) else {
            self.refused("session", Some(format!("max-sessions {} reached", self.shared.config.sshd.max_sessions)));
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        self.channels
            .insert(channel.id(), SessionChannel { channel: Some(channel), slot: Some(slot), ..Default::default() });
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(reason) = forward::refusal(host, port, &self.shared.config.sshd.forward_ports) {
            self.conn.emit(Event::ForwardRefused { host, port, reason });
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        match forward::connect(port as u16).await {
            Ok(stream) => {
                self.conn.emit(Event::ForwardOpened { host, port });
                reply.accept().await;
                forward::pipe(channel, stream);
            }
            Err(_) => {
                self.conn.emit(Event::ForwardRefused { host, port, reason: "nothing listens there" });
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _addr: &str,
        _port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("x11", None);
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _addr: &str,
        _oport: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("forwarded-tcpip", None);
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("direct-streamlocal", Some(socket_path.to_string()));
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        px: u32,
        py: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(e) if e.channel.is_some() && e.pty.is_none() => {
                e.pty = Some((term.to_string(), WindowSize::new(cols, rows, px, py)));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _proto: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refused("x11-req", None);
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(e) if exec::env_allowed(name) && e.channel.is_some() && e.env.len() < MAX_ENV => {
                e.env.push((name.to_string(), value.to_string()));
                session.channel_success(channel)?;
            }
            _ => {
                // The name only: values may be secrets.
                self.refused("env", Some(name.to_string()));
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start(channel, Start::Run(Request::Shell), session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Start::Run(Request::Exec(command)), session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            self.start(channel, Start::Sftp, session)
        } else {
            self.refused("subsystem", Some(name.to_string()));
            session.channel_failure(channel)?;
            Ok(())
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        px: u32,
        py: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|e| e.control.as_ref()) {
            let s = WindowSize::new(cols, rows, px, py);
            let _ = tx.send(Control::Resize { cols: s.cols, rows: s.rows, px: s.px, py: s.py });
        }
        Ok(())
    }

    async fn signal(&mut self, channel: ChannelId, signal: Sig, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|e| e.control.as_ref()) {
            let _ = tx.send(Control::Signal(signal));
        }
        Ok(())
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        self.refused("auth-agent-req@openssh.com", None);
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refused("tcpip-forward", Some(format!("{address}:{port}")));
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, socket_path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        self.refused("streamlocal-forward@openssh.com", Some(socket_path.to_string()));
        Ok(false)
    }
}
