//! The HTTPS server: routes, body limit, connection limits, health, readiness and
//! metrics. The wire format is in [`crate::wire`], TLS and certificate reload in
//! [`crate::tls`].
//!
//! Request path: TLS (rustls, TLS 1.2/1.3) → hyper (HTTP/1.1 or h2) → axum
//! [`router`] → [`admit`]: read the body (at most [`BODY_LIMIT`]), answer from
//! [`partial`] when it can, else parse the `admission.k8s.io/v1`
//! AdmissionReview and call [`review::mutate`] or [`review::validate`]; encode
//! the answer, record metrics and write one log line.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::accept::{Accept, NoDelayAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use http_body_util::BodyExt;
use hyper_util::rt::TokioTimer;
use k8s_openapi::api::apps::v1::Deployment;
use kube::core::admission::AdmissionRequest;
use tokio::task::JoinHandle;

use crate::inject::Config;
use crate::metrics::{Endpoint, Metrics, Outcome};
pub use crate::tls::install_crypto_provider;
use crate::tls::watch_certificates;
use crate::wire::operation;
pub use crate::wire::{parse_review, review_json};
use crate::{partial, review};

/// Largest request body accepted; larger ones are answered 413.
pub const BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Past the limit the body is still read (and dropped) up to this size, so the
/// client can read the 413 instead of a reset connection.
const DRAIN_LIMIT: usize = 4 * BODY_LIMIT;
/// Time allowed to receive a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to finish the TLS handshake, then to send a request's
/// headers (also the longest an HTTP/1.1 connection may sit idle between
/// requests): a slow client cannot hold a connection longer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; past it a new connection is closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// State shared by the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    metrics: Metrics,
    ready: AtomicBool,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        Self { inner: Arc::new(Inner { config, metrics: Metrics::default(), ready: AtomicBool::new(false) }) }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Ready means: a certificate is loaded and the server is not shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }
}

/// The routes, without TLS (tests call it directly).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, req: Request) -> Response {
    admit(&state, Endpoint::Mutate, req).await
}

async fn validate(State(state): State<AppState>, req: Request) -> Response {
    admit(&state, Endpoint::Validate, req).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics().render(state.is_ready());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Why a request got no AdmissionReview back.
#[derive(Debug, Clone)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(refusal: &Refusal) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "error": refusal.message })).unwrap_or_default();
    json_response(refusal.status, body)
}

/// Reads the body: at most [`BODY_LIMIT`] bytes, else 413 (after draining a
/// bounded amount so the client sees the answer).
async fn read_body(body: Body, content_length: Option<u64>) -> Result<Bytes, Refusal> {
    let too_large = || Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body is larger than {BODY_LIMIT} bytes"),
    };
    if content_length.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut body = body;
        let mut buf = Vec::with_capacity(content_length.map_or(16 * 1024, |n| n.min(BODY_LIMIT as u64) as usize));
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Refusal::bad_request(format!("reading the request body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > DRAIN_LIMIT {
                return Err(too_large());
            }
            if total <= BODY_LIMIT {
                buf.extend_from_slice(&data);
            }
        }
        if total > BODY_LIMIT { Err(too_large()) } else { Ok(Bytes::from(buf)) }
    };
    tokio::time::timeout(BODY_TIMEOUT, read).await.unwrap_or_else(|_| {
        Err(Refusal { status: StatusCode::REQUEST_TIMEOUT, message: "timed out reading the request body".into() })
    })
}

/// Who an admission request is about, for its log line.
#[derive(Default)]
struct Subject<'a> {
    uid: Cow<'a, str>,
    namespace: Cow<'a, str>,
    name: Cow<'a, str>,
    operation: &'static str,
    dry_run: bool,
}

impl<'a> Subject<'a> {
    fn of(request: &'a AdmissionRequest<Deployment>) -> Self {
        let name = if request.name.is_empty() {
            request.object.as_ref().and_then(|d| d.metadata.generate_name.as_deref()).unwrap_or("")
        } else {
            &request.name
        };
        Subject {
            uid: Cow::Borrowed(&request.uid),
            namespace: Cow::Borrowed(request.namespace.as_deref().unwrap_or("")),
            name: Cow::Borrowed(name),
            operation: operation(&request.operation),
            dry_run: request.dry_run,
        }
    }
}

/// Answers one admission request, with one metrics record and one log line.
async fn admit(state: &AppState, endpoint: Endpoint, req: Request) -> Response {
    let start = Instant::now();
    let content_length =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let body = read_body(req.into_body(), content_length).await;
    let config = &state.inner.config;
    let mut parsed;
    // The commonest request from the partial model; the typed review answers the rest.
    let (subject, answer) = match body.as_deref().ok().and_then(|body| answer_partial(config, endpoint, body)) {
        Some(answered) => answered,
        None => {
            parsed = match &body {
                Ok(body) => parse_review(body).map_err(Refusal::bad_request),
                Err(refusal) => Err(refusal.clone()),
            };
            match &mut parsed {
                Ok(request) => {
                    let answer = answer(config, endpoint, request);
                    (Subject::of(request), answer)
                }
                Err(refusal) => (Subject::default(), Err(refusal.clone())),
            }
        }
    };
    let elapsed = start.elapsed();
    let (outcome, status, detail) = match &answer {
        Ok((outcome, _, reason)) => (*outcome, StatusCode::OK, reason.as_str()),
        Err(refusal) => (Outcome::Error, refusal.status, refusal.message.as_str()),
    };
    state.metrics().record(endpoint, outcome, elapsed);
    tracing::info!(
        endpoint = endpoint.as_str(),
        uid = &*subject.uid,
        namespace = &*subject.namespace,
        name = &*subject.name,
        operation = subject.operation,
        dry_run = subject.dry_run,
        decision = outcome.as_str(),
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1e3,
        reason = truncate(detail, 500),
        "admission"
    );
    match answer {
        Ok((_, body, _)) => json_response(StatusCode::OK, body),
        Err(refusal) => error_response(&refusal),
    }
}

/// What a request's review comes to: its outcome, the AdmissionReview to send
/// and, for a denial, the reason; or the refusal to answer it.
type Answered = Result<(Outcome, Vec<u8>, String), Refusal>;

/// [`crate::partial`]'s answer, when it has one (a panic leaves the request to
/// the typed review, which answers it with a 500 if it panics too).
fn answer_partial<'b>(config: &Config, endpoint: Endpoint, body: &'b [u8]) -> Option<(Subject<'b>, Answered)> {
    let a = std::panic::catch_unwind(|| match endpoint {
        Endpoint::Mutate => partial::mutate(body, config),
        Endpoint::Validate => partial::validate(body, config),
    })
    .ok()??;
    let outcome = if a.patched { Outcome::Patched } else { Outcome::Allowed };
    let subject =
        Subject { uid: a.uid, namespace: a.namespace, name: a.name, operation: a.operation, dry_run: a.dry_run };
    Some((subject, Ok((outcome, a.review, String::new()))))
}

/// The review of a parsed request: its outcome, the AdmissionReview to send
/// and, for a denial, the reason. A panic in the review is answered with a 500
/// instead of a dropped connection. `/mutate` may take the object's pod
/// template out of `request` ([`review::mutate_taking_template`]).
fn answer(config: &Config, endpoint: Endpoint, request: &mut AdmissionRequest<Deployment>) -> Answered {
    let internal = |message: &str| Refusal { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() };
    let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match endpoint {
        Endpoint::Mutate => review::mutate_taking_template(request, config),
        Endpoint::Validate => review::validate(request, config),
    }))
    .map_err(|_| internal("internal error while reviewing the request"))?;
    let outcome = match (response.allowed, response.patch.is_some()) {
        (false, _) => Outcome::Denied,
        (true, true) => Outcome::Patched,
        (true, false) => Outcome::Allowed,
    };
    let reason = if response.allowed { String::new() } else { response.result.message.clone() };
    let body = review_json(response).map_err(|_| internal("could not serialize the AdmissionReview"))?;
    Ok((outcome, body, reason))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub config: Config,
    /// How often the certificate files are checked ([`RELOAD_INTERVAL`]).
    pub reload_interval: Duration,
    /// How long in-flight requests get after a shutdown is asked for.
    pub shutdown_grace: Duration,
    /// How long to keep serving, unready, after SIGTERM before closing the
    /// listener, so that Endpoints drop the pod before connections are refused.
    pub shutdown_delay: Duration,
    /// TLS handshake, header read and HTTP/1.1 idle timeout ([`HEADER_TIMEOUT`]).
    pub header_timeout: Duration,
    /// Connections served at once ([`MAX_CONNECTIONS`]).
    pub max_connections: usize,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr, tls_cert: impl Into<PathBuf>, tls_key: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            tls_cert: tls_cert.into(),
            tls_key: tls_key.into(),
            config: Config::default(),
            reload_interval: RELOAD_INTERVAL,
            shutdown_grace: Duration::from_secs(20),
            shutdown_delay: Duration::ZERO,
            header_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    handle: Handle<SocketAddr>,
    grace: Duration,
    delay: Duration,
    serve: JoinHandle<std::io::Result<()>>,
    reloader: JoinHandle<()>,
}

impl Server {
    /// Loads the certificate, binds, and serves the webhook's [`router`].
    pub async fn start(opts: ServeOptions) -> Result<Self> {
        let state = AppState::new(opts.config.clone());
        let app = router(state.clone());
        Self::start_with(opts, state, app).await
    }

    /// Like [`Server::start`] with any router (the benchmark's floor uses a trivial one).
    pub async fn start_with(opts: ServeOptions, state: AppState, app: Router) -> Result<Self> {
        install_crypto_provider();
        let tls = RustlsConfig::from_pem_file(&opts.tls_cert, &opts.tls_key).await.with_context(|| {
            format!("loading the certificate {} and key {}", opts.tls_cert.display(), opts.tls_key.display())
        })?;
        let listener = std::net::TcpListener::bind(opts.listen).with_context(|| format!("binding {}", opts.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let handle = Handle::new();
        // TCP_NODELAY: a response leaves in as few segments as TLS makes,
        // without waiting for the peer's ACK of the previous one.
        let tls_acceptor =
            RustlsAcceptor::new(tls.clone()).handshake_timeout(opts.header_timeout).acceptor(NoDelayAcceptor::new());
        let acceptor = ConnectionLimit { inner: tls_acceptor, handle: handle.clone(), max: opts.max_connections };
        let mut server = axum_server::from_tcp(listener)?
            .acceptor(acceptor)
            .handle(handle.clone())
            .first_request_timeout(opts.header_timeout);
        // hyper's timeouts need a timer; without one they are silently off.
        server.http_builder().http1().timer(TokioTimer::new()).header_read_timeout(opts.header_timeout);
        server
            .http_builder()
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .max_concurrent_streams(64);
        let serve = tokio::spawn(server.serve(app.into_make_service()));
        let reloader = tokio::spawn(watch_certificates(
            tls,
            opts.tls_cert.clone(),
            opts.tls_key.clone(),
            opts.reload_interval,
            state.clone(),
        ));
        state.set_ready(true);
        tracing::info!(listen = %addr, cert = %opts.tls_cert.display(), "serving");
        Ok(Self { addr, state, handle, grace: opts.shutdown_grace, delay: opts.shutdown_delay, serve, reloader })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), and returns.
    pub async fn shutdown(self) -> Result<()> {
        self.state.set_ready(false);
        self.reloader.abort();
        self.handle.graceful_shutdown(Some(self.grace));
        self.serve.await.context("server task")?.context("serving")?;
        Ok(())
    }

    /// Serves until `signal` completes, then turns unready, keeps serving for
    /// the shutdown delay, and shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> Result<()> {
        signal.await;
        self.state.set_ready(false);
        if !self.delay.is_zero() {
            tracing::info!(delay_s = self.delay.as_secs_f64(), "unready; serving on until Endpoints drop this pod");
            tokio::time::sleep(self.delay).await;
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Closes a new connection at once when [`ServeOptions::max_connections`]
/// are already served (the count includes the new one), so that clients that
/// hold connections open cannot exhaust the process.
#[derive(Clone, Debug)]
struct ConnectionLimit<A> {
    inner: A,
    handle: Handle<SocketAddr>,
    max: usize,
}

impl<I, S, A> Accept<I, S> for ConnectionLimit<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = std::pin::Pin<Box<dyn Future<Output = std::io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        if self.handle.connection_count() > self.max {
            drop(stream);
            return Box::pin(std::future::ready(Err(std::io::Error::other("too many connections"))));
        }
        Box::pin(self.inner.accept(stream, service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
