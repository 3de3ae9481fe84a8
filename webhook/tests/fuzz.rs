//! A fuzzer over raw request bodies: the fixtures as kube-apiserver sends
//! them, mutated at the JSON level (values replaced, keys dropped, arrays
//! grown, claworc names and security fields planted) and at the byte level
//! (flips, cuts, splices), fed to what `/mutate` and `/validate` run:
//! `partial::mutate` / `partial::validate`, `parse_review`, then `review::mutate` /
//! `review::validate`, then encoding. Zero panics allowed; an input that
//! panics is written to the temp dir. And wherever `partial` answers a body
//! the typed reader reads, the typed review allows it too, patched alike.
//!
//! `CLAWORC_FUZZ_INPUTS` sets the number of inputs (default 20 000 here;
//! `cargo test --release -p claworc-webhook --test fuzz` with 10 000 000 for
//! the figure in docs/testing.md). `CLAWORC_FUZZ_SEED` picks the seed.

use claworc_webhook::inject::Config;
use claworc_webhook::{partial, review, server};
use serde_json::{Value, json};

/// xorshift64*: small, fast, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    "",
    "claworc-sshd",
    "claworc-run",
    "claworc-ssh-keys",
    "claworc.io/ssh",
    "enabled",
    "claworc.io/instance",
    "/etc/claworc/ssh/",
    "/",
    "..",
    "Unconfined",
    "RuntimeDefault",
    "Localhost",
    "spc_t",
    "Unmasked",
    "ALL",
    "SYS_ADMIN",
    "NET_BIND_SERVICE",
    "Always",
    "UPDATE",
    "CREATE",
    "DELETE",
    "\u{0}",
    "é",
    "claworc.io/ssh-port",
    "0",
    "-1",
    "99999999999999999999",
    "3000,8080",
    "runtime/default",
    "unconfined",
];

fn scalar(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(rng.below(3) as i64 - 1),
        4 => json!((rng.next() as f64) / 7.0),
        5 => json!({}),
        _ => json!(rng.pick(STRINGS)),
    }
}

/// Walks to a random node and changes it.
fn mutate_value(v: &mut Value, rng: &mut Rng, depth: usize) {
    let descend = depth < 12 && rng.below(4) != 0;
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            match rng.below(10) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(rng.pick(STRINGS).to_string(), scalar(rng));
                }
                _ => mutate_value(map.get_mut(&key).unwrap(), rng, depth + 1),
            }
        }
        Value::Array(items) if descend && !items.is_empty() => match rng.below(8) {
            0 => {
                let i = rng.below(items.len());
                items.remove(i);
            }
            1 => {
                let i = rng.below(items.len());
                let copy = items[i].clone();
                items.push(copy);
            }
            _ => {
                let i = rng.below(items.len());
                mutate_value(&mut items[i], rng, depth + 1)
            }
        },
        // Mostly keep the type, so the typed parse still succeeds and the
        // review itself is reached; sometimes anything.
        Value::String(_) if rng.below(8) != 0 => *v = json!(rng.pick(STRINGS)),
        Value::Number(_) if rng.below(8) != 0 => *v = json!(rng.below(3) as i64 - 1 + [0, 1000, 65536][rng.below(3)]),
        Value::Bool(b) if rng.below(8) != 0 => *b = !*b,
        Value::Object(map) if rng.below(2) == 0 => {
            map.insert(rng.pick(STRINGS).to_string(), json!(rng.pick(STRINGS)));
        }
        _ => *v = scalar(rng),
    }
}

fn mutate_bytes(b: &mut Vec<u8>, rng: &mut Rng, other: &[u8]) {
    if b.is_empty() {
        return;
    }
    match rng.below(5) {
        0 => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 => b.truncate(rng.below(b.len())),
        2 => {
            let (i, j) = (rng.below(b.len()), rng.below(other.len()));
            let tail = other[j..].to_vec();
            b.truncate(i);
            b.extend_from_slice(&tail);
        }
        3 => {
            let i = rng.below(b.len());
            let token = *rng.pick(&[&b"{"[..], b"}", b"[", b"]", b"\"", b",", b":", b"null", b"\\u0000", b"1e999"]);
            b.splice(i..i, token.iter().copied());
        }
        _ => {
            let (i, n) = (rng.below(b.len()), rng.below(64));
            b.drain(i..(i + n).min(b.len()));
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/").to_string() + name).unwrap()
}

#[test]
fn no_request_body_makes_the_review_panic() {
    let inputs: u64 = std::env::var("CLAWORC_FUZZ_INPUTS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let seed: u64 = std::env::var("CLAWORC_FUZZ_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x5eed_c1a0);
    let corpus: Vec<Vec<u8>> = [
        "admission-opted-in.json",
        "admission-privileged.json",
        "admission-not-opted-in.json",
        "admission-kubectl-apply.json",
    ]
    .map(fixture)
    .into();
    let mut values: Vec<Value> = corpus.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
    // An UPDATE with an injected old object, so opting out is explored too.
    let injected = {
        let req = server::parse_review(&corpus[0]).unwrap();
        let res = review::mutate(&req, &Config::default());
        let patch: json_patch::Patch = serde_json::from_slice(res.patch.as_ref().unwrap()).unwrap();
        let mut object = values[0]["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).unwrap();
        object
    };
    let mut update = values[0].clone();
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = injected.clone();
    update["request"]["object"] = injected;
    values.push(update);

    let cfg = Config::default();
    let mut rng = Rng(seed | 1);
    let (mut parsed, mut answered_by_partial, mut start) = (0u64, 0u64, std::time::Instant::now());
    std::panic::set_hook(Box::new(|_| {}));
    for n in 0..inputs {
        let base = rng.below(values.len());
        let mut v = values[base].clone();
        for _ in 0..=rng.below(2) {
            mutate_value(&mut v, &mut rng, 0);
        }
        let mut body = serde_json::to_vec(&v).unwrap();
        if rng.below(8) == 0 {
            let other = &corpus[rng.below(corpus.len())];
            mutate_bytes(&mut body, &mut rng, other);
        }
        let outcome = std::panic::catch_unwind(|| {
            let fast = [partial::mutate(&body, &cfg), partial::validate(&body, &cfg)].map(|a| a.map(|a| a.patched));
            let Ok(req) = server::parse_review(&body) else { return (false, false) };
            let typed = [review::mutate(&req, &cfg), review::validate(&req, &cfg)];
            for (fast, typed) in fast.iter().zip(&typed) {
                if let Some(patched) = fast {
                    assert!(
                        typed.allowed && typed.patch.is_some() == *patched,
                        "partial answers unlike the typed review"
                    );
                }
            }
            for res in typed {
                server::review_json(res).expect("the review encodes");
            }
            (true, fast.iter().any(Option::is_some))
        });
        let reached = matches!(outcome, Ok((true, _)));
        match outcome {
            Ok((ok, by_partial)) => {
                parsed += ok as u64;
                answered_by_partial += (ok && by_partial) as u64;
            }
            Err(_) => {
                let path = std::env::temp_dir().join(format!("claworc-fuzz-crash-{n}.json"));
                std::fs::write(&path, &body).unwrap();
                let _ = std::panic::take_hook();
                panic!("input {n} panicked the review; written to {}", path.display());
            }
        }
        // Keep the corpus moving: an input that reached the review may seed others.
        if reached && n % 500 == 499 && values.len() < 64 {
            values.push(serde_json::from_slice(&body).unwrap());
        }
        if n % 1_000_000 == 999_999 {
            eprintln!(
                "fuzz: {} inputs, {parsed} parsed as reviews, {:.0}/s",
                n + 1,
                1e6 / start.elapsed().as_secs_f64()
            );
            start = std::time::Instant::now();
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "fuzz: {inputs} inputs from seed {seed:#x}, {parsed} parsed as AdmissionReviews ({answered_by_partial} of them answered by partial, as by the typed review), no panic"
    );
    assert!(parsed > inputs / 10, "only {parsed} of {inputs} inputs reached the review: the fuzzer is too blunt");
}
