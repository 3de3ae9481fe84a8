//! claworc-webhook: makes opted-in Deployments SSH-reachable and secure, and
//! refuses what would be insecure or broken.
//!
//! - [`inject`]: an opted-in Deployment → the same Deployment with the sshd
//!   sidecar, security contexts, `known_hosts` and labels (pure).
//! - [`validate`]: a Deployment → denials and warnings (pure).
//! - [`review`]: AdmissionReview requests → responses for `/mutate` and `/validate` (pure).
//! - [`partial`]: the common answers (an opted-in Deployment allowed, with the
//!   injection patch or none) from a borrowed, partial model of the review;
//!   [`review`] answers everything else (pure).
//! - [`written`]: claworc's parts that most instances share (installer,
//!   sidecar's fixed fields, its settings' variables and mounts, volumes,
//!   `known_hosts` data), serialized once per thread for [`partial`].
//! - [`server`]: the HTTPS server: routes, body limit, health and readiness.
//! - [`wire`]: the AdmissionReview wire format (parsing, and the patch as base64).
//! - [`scan`]: a JSON document read in one pass, its values kept as text.
//! - [`json`]: a compact JSON writer for the patch (serde_json's output, escaped faster).
//! - [`tls`]: the rustls provider and the serving certificate re-read on change.
//! - [`metrics`]: request counts and latency histograms in Prometheus text.
//! - [`certs`]: `gen-certs`, a CA and a serving certificate for the webhook Service.

pub mod certs;
pub mod inject;
pub mod json;
pub mod metrics;
pub mod partial;
pub mod review;
pub mod scan;
pub mod server;
pub mod tls;
pub mod validate;
pub mod wire;
pub mod written;
