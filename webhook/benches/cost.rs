//! `cargo bench -p claworc-webhook --bench cost`: the CPU cost of one admission
//! request in-process (no HTTP, no TLS), for the webhook's `/mutate` and
//! `/validate` beside the floor and the kube-rs example fed the same bodies
//! (the same handlers as in `benches/https.rs`), and the typed review alone
//! (`mutate-typed`, `validate-typed`: what answered them before the partial
//! model, and answers whatever it leaves).
//!
//! With no argument, prints µs per request (best of 3 runs). With
//! `SCENARIO N`, runs that scenario N times and nothing else, for an
//! instruction count: on a shared machine, count instructions rather than
//! time them, e.g.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/cost-* mutate 201
//! ```
//!
//! and subtract a run of 1 to leave out the setup (divide by 200).

mod peers;

use std::time::Instant;

use claworc_webhook::inject::Config;
use claworc_webhook::{partial, review, server};
use peers::{floor, kube_rs_example as peer};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The opted-in review both benchmarks send: `CLAWORC_BENCH_FIXTURE`, a file of
/// tests/fixtures/ (default `admission-opted-in.json`, written by hand;
/// `admission-kubectl-apply.json` is a `kubectl apply` as kube-apiserver
/// sends it, with its managedFields and last-applied annotation).
fn bench_fixture() -> String {
    std::env::var("CLAWORC_BENCH_FIXTURE").unwrap_or_else(|_| "admission-opted-in.json".into())
}

/// `/mutate` or `/validate` as `server::admit` answers: the partial model's
/// answer, else the typed review's.
fn webhook(body: &[u8], mutate: bool, cfg: &Config) -> Vec<u8> {
    let fast = if mutate { partial::mutate(body, cfg) } else { partial::validate(body, cfg) };
    match fast {
        Some(answer) => answer.review,
        None => typed(body, mutate, cfg),
    }
}

/// The typed review alone: parse, review, encode.
fn typed(body: &[u8], mutate: bool, cfg: &Config) -> Vec<u8> {
    let mut req = server::parse_review(body).unwrap();
    let res = if mutate { review::mutate_taking_template(&mut req, cfg) } else { review::validate(&req, cfg) };
    server::review_json(res).unwrap()
}

/// The opted-in review after the webhook's own patch: what `/validate` gets.
fn injected(opted_in: &[u8], cfg: &Config) -> Vec<u8> {
    let answer: Value = serde_json::from_slice(&webhook(opted_in, true, cfg)).unwrap();
    let patch: k8s_openapi::ByteString = serde_json::from_value(answer["response"]["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch.0).unwrap();
    let mut review: Value = serde_json::from_slice(opted_in).unwrap();
    json_patch::patch(&mut review["request"]["object"], &patch).unwrap();
    serde_json::to_vec(&review).unwrap()
}

/// A run after the first: `--toggle-collect=cost::measured` leaves out what
/// the first run makes once per thread.
#[inline(never)]
fn measured(run: &dyn Fn()) {
    run()
}

/// The distinct 64-byte lines of code a callgrind profile executed (recorded
/// with `--dump-instr=yes --compress-pos=no`): the code a request touches. In
/// the server, where TLS, HTTP and the clients run between requests, these
/// lines are mostly fetched again for every request, so they cost beside the
/// instructions.
fn code_lines(file: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let lines: std::collections::HashSet<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("0x")?.split_whitespace().next())
        .filter_map(|a| u64::from_str_radix(a, 16).ok())
        .map(|a| a >> 6)
        .collect();
    lines.len()
}

/// A scenario's name and one request of it.
type Scenario<'a> = (&'static str, Box<dyn Fn() + 'a>);

fn main() {
    let cfg = Config::default();
    let opted_in = fixture(&bench_fixture());
    let injected = injected(&opted_in, &cfg);
    let scenarios: [Scenario; 8] = [
        ("floor-opted-in", Box::new(|| drop(std::hint::black_box(floor(&opted_in))))),
        ("peer-opted-in", Box::new(|| drop(std::hint::black_box(peer(&opted_in))))),
        ("mutate", Box::new(|| drop(std::hint::black_box(webhook(&opted_in, true, &cfg))))),
        ("mutate-typed", Box::new(|| drop(std::hint::black_box(typed(&opted_in, true, &cfg))))),
        ("floor-injected", Box::new(|| drop(std::hint::black_box(floor(&injected))))),
        ("peer-injected", Box::new(|| drop(std::hint::black_box(peer(&injected))))),
        ("validate", Box::new(|| drop(std::hint::black_box(webhook(&injected, false, &cfg))))),
        ("validate-typed", Box::new(|| drop(std::hint::black_box(typed(&injected, false, &cfg))))),
    ];
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args == ["patch"] {
        // The patch /mutate answers, decoded, to see what it carries.
        let answer: Value = serde_json::from_slice(&webhook(&opted_in, true, &cfg)).unwrap();
        let patch: k8s_openapi::ByteString = serde_json::from_value(answer["response"]["patch"].clone()).unwrap();
        println!("{}", String::from_utf8_lossy(&patch.0));
        return;
    }
    if let [command, file] = &args[..]
        && command == "footprint"
    {
        println!("{}", code_lines(file));
        return;
    }
    if let [name, n] = &args[..] {
        let n: usize = n.parse().expect("N: a number of runs");
        let (_, run) = scenarios.iter().find(|(s, _)| s == name).expect("SCENARIO: one of the names printed");
        // The first run outside `measured`: what is made once per thread.
        run();
        for _ in 1..n {
            measured(run);
        }
        return;
    }

    // `cargo test --benches` runs this once as a smoke test.
    let n = if std::env::args().any(|a| a == "--bench") { 20_000 } else { 10 };
    println!(
        "bodies: opted-in review {} B, injected review {} B, /mutate's answer {} B",
        opted_in.len(),
        injected.len(),
        webhook(&opted_in, true, &cfg).len()
    );
    {
        use k8s_openapi::api::core::v1::{Container, PodSpec};
        use std::mem::size_of;
        println!(
            "sizes of the typed structs moved while parsing (bytes): Container {}, PodSpec {}, Deployment {}, AdmissionRequest<Deployment> {}",
            size_of::<Container>(),
            size_of::<PodSpec>(),
            size_of::<k8s_openapi::api::apps::v1::Deployment>(),
            size_of::<kube::core::admission::AdmissionRequest<k8s_openapi::api::apps::v1::Deployment>>()
        );
    }
    let answered = partial::mutate(&opted_in, &cfg).is_some() && partial::validate(&injected, &cfg).is_some();
    println!(
        "the partial model answers both bodies (tests/partial_props.rs checks it answers as the typed review): {}",
        if answered { "yes" } else { "no" }
    );
    println!("in-process CPU per request (no HTTP, no TLS), best of 3 × {n}, µs:");
    for (name, run) in &scenarios {
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    run();
                }
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("{name:<16} {best:>8.1}");
    }
}
