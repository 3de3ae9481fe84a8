//! Request counts and latency histograms, rendered in the Prometheus text format.
//!
//! Lock-free atomics and a fixed set of label values (two endpoints, four
//! outcomes), so recording costs a few relaxed increments and rendering needs
//! no registry crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// An admission endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::Mutate, Endpoint::Validate];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// What became of one admission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed without changes.
    Allowed,
    /// Refused (`response.allowed == false`).
    Denied,
    /// Allowed with a JSONPatch.
    Patched,
    /// Not an AdmissionReview we could answer (HTTP 400 or 413).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Allowed, Outcome::Denied, Outcome::Patched, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Patched => "patched",
            Outcome::Error => "error",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// The webhook's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; Outcome::ALL.len()]; Endpoint::ALL.len()],
    latency: [[Histogram; Outcome::ALL.len()]; Endpoint::ALL.len()],
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Records one answered admission request.
    pub fn record(&self, endpoint: Endpoint, outcome: Outcome, elapsed: Duration) {
        let e = endpoint as usize;
        self.requests[e][outcome as usize].fetch_add(1, Relaxed);
        let h = &self.latency[e][outcome as usize];
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Relaxed);
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Records an attempt to reload the serving certificate.
    pub fn record_reload(&self, ok: bool) {
        if ok { &self.reloads_ok } else { &self.reloads_failed }.fetch_add(1, Relaxed);
    }

    /// How many requests `endpoint` answered with `outcome`.
    pub fn count(&self, endpoint: Endpoint, outcome: Outcome) -> u64 {
        self.requests[endpoint as usize][outcome as usize].load(Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, ready: bool) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP claworc_webhook_requests_total Admission requests answered, by endpoint and outcome.\n");
        out.push_str("# TYPE claworc_webhook_requests_total counter\n");
        for e in Endpoint::ALL {
            for o in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "claworc_webhook_requests_total{{endpoint=\"{}\",outcome=\"{}\"}} {}",
                    e.as_str(),
                    o.as_str(),
                    self.count(e, o)
                );
            }
        }
        out.push_str(
            "# HELP claworc_webhook_request_duration_seconds Time to answer an admission request, by endpoint and outcome.\n",
        );
        out.push_str("# TYPE claworc_webhook_request_duration_seconds histogram\n");
        for e in Endpoint::ALL {
            for o in Outcome::ALL {
                let h = &self.latency[e as usize][o as usize];
                let labels = format!("endpoint=\"{}\",outcome=\"{}\"", e.as_str(), o.as_str());
                let mut cumulative = 0;
                for (i, bound) in BUCKETS.iter().enumerate() {
                    cumulative += h.buckets[i].load(Relaxed);
                    let _ = writeln!(
                        out,
                        "claworc_webhook_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                let count = h.count.load(Relaxed);
                let sum = h.sum_nanos.load(Relaxed) as f64 / 1e9;
                let _ =
                    writeln!(out, "claworc_webhook_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
                let _ = writeln!(out, "claworc_webhook_request_duration_seconds_sum{{{labels}}} {sum}");
                let _ = writeln!(out, "claworc_webhook_request_duration_seconds_count{{{labels}}} {count}");
            }
        }
        out.push_str("# HELP claworc_webhook_certificate_reloads_total Attempts to reload the serving certificate after its files changed.\n");
        out.push_str("# TYPE claworc_webhook_certificate_reloads_total counter\n");
        let _ = writeln!(
            out,
            "claworc_webhook_certificate_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "claworc_webhook_certificate_reloads_total{{result=\"error\"}} {}",
            self.reloads_failed.load(Relaxed)
        );
        out.push_str("# HELP claworc_webhook_ready Whether the serving certificate is loaded and the server is not shutting down.\n");
        out.push_str("# TYPE claworc_webhook_ready gauge\n");
        let _ = writeln!(out, "claworc_webhook_ready {}", u8::from(ready));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record(Endpoint::Mutate, Outcome::Patched, Duration::from_micros(300));
        m.record(Endpoint::Mutate, Outcome::Patched, Duration::from_millis(3));
        m.record(Endpoint::Validate, Outcome::Denied, Duration::from_secs(5));
        let text = m.render(true);
        assert!(text.contains("claworc_webhook_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 2\n"));
        assert!(text.contains("claworc_webhook_requests_total{endpoint=\"validate\",outcome=\"denied\"} 1\n"));
        assert!(text.contains(
            "claworc_webhook_request_duration_seconds_bucket{endpoint=\"mutate\",outcome=\"patched\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "claworc_webhook_request_duration_seconds_bucket{endpoint=\"mutate\",outcome=\"patched\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "claworc_webhook_request_duration_seconds_bucket{endpoint=\"validate\",outcome=\"denied\",le=\"1\"} 0\n"
        ));
        assert!(text.contains(
            "claworc_webhook_request_duration_seconds_bucket{endpoint=\"validate\",outcome=\"denied\",le=\"+Inf\"} 1\n"
        ));
        assert!(text.contains("claworc_webhook_ready 1\n"));
    }
}
