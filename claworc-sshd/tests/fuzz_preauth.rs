//! Fuzzing the server's pre-authentication input: byte streams a client could
//! send before it has logged in, fed to the real [`Service`] (the same handler
//! and russh configuration as the listener's) over in-memory pipes, each with a
//! deadline, every panic anywhere in the process counted by a panic hook.
//!
//! The inputs, deterministic from a seed and the input's number:
//! - fully random bytes;
//! - a client version line (valid or mangled, sometimes after banner lines)
//!   followed by SSH binary packets: a KEXINIT built from real and junk
//!   algorithm names, the ECDH/ML-KEM init of a key exchange (so the server
//!   computes and signs a real exchange hash), NEWKEYS, and packets of any
//!   message type with random bodies, with correct or wrong framing;
//! - then, for 60 % of them, a few random mutations of the whole stream (bit
//!   flips, overwrites with boundary values, insertions, deletions, duplications,
//!   truncation).
//!
//! What it cannot reach: the encrypted part of the login (service request,
//! `userauth-*`), which needs a completed key exchange; real clients cover it
//! (tests/openssh.rs, tests/russh_client.rs).
//!
//! `cargo test -p claworc-sshd --test fuzz_preauth` runs 20,000 inputs. The long run:
//!   FUZZ_INPUTS=10000000 cargo test --release -p claworc-sshd --test fuzz_preauth -- --nocapture
//! Also FUZZ_SEED (default 1), FUZZ_THREADS (2), FUZZ_INFLIGHT (inputs at once
//! per thread, 32), FUZZ_CRASH_DIR (where a panicking or hanging input is
//! written, default target/fuzz-preauth), FUZZ_REPLAY=FILE (run one saved input).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claworc_sshd::audit::{Conn, Sink};
use claworc_sshd::config::{Config, SshdConfig};
use claworc_sshd::server::Service;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One input's deadline. The server answers or hangs up within milliseconds;
/// only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(20);

/// The server's output kept per input, enough for its cleartext packets.
const KEEP_OUTPUT: usize = 16 * 1024;

// ---- a small deterministic generator (splitmix64) ---------------------------

struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64, index: u64) -> Self {
        // Mixed, so that input i+1's stream is not input i's shifted by one.
        Rng(mix(seed ^ mix(index.wrapping_add(0x2545_F491_4F6C_DD1D))))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// 0..max random bytes (max > 0).
    fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---- inputs -------------------------------------------------------------------

const KEX_NAMES: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "sntrup761x25519-sha512@openssh.com",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group-exchange-sha256",
    "ecdh-sha2-nistp256",
    "ext-info-c",
    "kex-strict-c-v00@openssh.com",
    "none",
];
const HOST_KEY_NAMES: &[&str] = &["ssh-ed25519", "rsa-sha2-512", "ecdsa-sha2-nistp256", "ssh-rsa", "ssh-dss"];
const CIPHER_NAMES: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes128-ctr",
    "3des-cbc",
    "none",
];
const MAC_NAMES: &[&str] = &["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha1", "none"];
const COMPRESSION_NAMES: &[&str] = &["none", "zlib@openssh.com", "zlib"];
const JUNK_NAMES: &[&str] = &["", ",", ",,", "a,", "\0", "x@y@z", "\u{00e9}t\u{00e9}"];

const VERSIONS: &[&[u8]] = &[
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
    b"SSH-2.0-russh_0.65\r\n",
    b"SSH-2.0-PuTTY\n",
    b"SSH-1.99-old\r\n",
    b"SSH-1.5-older\r\n",
    b"SSH-2.0-\r\n",
    b"SSH-\r\n",
    b"ssh-2.0-lower\r\n",
    b"banner line\r\nSSH-2.0-after-banner\r\n",
    b"\r\n\r\nSSH-2.0-blank-lines\r\n",
];

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// A name-list: nearly always led by one of the server's (the first `served` of
/// `names`), then real names, sometimes junk, sometimes empty.
fn name_list(rng: &mut Rng, names: &[&str], served: usize) -> Vec<u8> {
    let n = rng.below(4);
    let lead = rng.chance(95).then(|| rng.pick(&names[..served]).to_string());
    let mut parts: Vec<String> = lead
        .into_iter()
        .chain(
            (0..n).map(|_| if rng.chance(90) { rng.pick(names).to_string() } else { rng.pick(JUNK_NAMES).to_string() }),
        )
        .collect();
    if rng.chance(3) {
        parts.push(String::from_utf8_lossy(&rng.some_bytes(300)).into_owned());
    }
    parts.join(",").into_bytes()
}

fn kexinit(rng: &mut Rng) -> Vec<u8> {
    let mut p = vec![20];
    p.extend(rng.bytes(16));
    put_string(&mut p, &name_list(rng, KEX_NAMES, 3));
    put_string(&mut p, &name_list(rng, HOST_KEY_NAMES, 1));
    for _ in 0..2 {
        put_string(&mut p, &name_list(rng, CIPHER_NAMES, 3));
    }
    for _ in 0..2 {
        put_string(&mut p, &name_list(rng, MAC_NAMES, 2));
    }
    for _ in 0..2 {
        put_string(&mut p, &name_list(rng, COMPRESSION_NAMES, 1));
    }
    for _ in 0..2 {
        put_string(&mut p, if rng.chance(90) { b"" } else { b"en" });
    }
    p.push(if rng.chance(90) { 0 } else { rng.next() as u8 });
    put_u32(&mut p, if rng.chance(90) { 0 } else { rng.next() as u32 });
    p
}

/// KEX_ECDH_INIT (30): the client's ephemeral key, mostly of the size the
/// `hybrid` ML-KEM-768 + X25519 (1184 + 32) or curve25519 (32) expects, else any.
fn kex_init(rng: &mut Rng, hybrid: bool) -> Vec<u8> {
    let mut p = vec![30];
    let len = match rng.below(10) {
        0..8 if hybrid => 1216,
        0..8 => 32,
        8 => *rng.pick(&[0, 31, 33, 1215, 1217, 1184]),
        _ => rng.below(1300),
    };
    put_string(&mut p, &rng.bytes(len));
    p
}

/// Any message: a known pre-auth type or any byte, with a random body.
fn other_message(rng: &mut Rng) -> Vec<u8> {
    const TYPES: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 30, 31, 50, 80, 90, 94, 98];
    let t = if rng.chance(80) { *rng.pick(TYPES) } else { rng.next() as u8 };
    let mut p = vec![t];
    match rng.below(3) {
        0 => p.extend(rng.some_bytes(64)),
        1 => {
            // Length-prefixed strings, as most messages are made of.
            for _ in 0..rng.below(4) {
                let s = rng.some_bytes(40);
                put_string(&mut p, &s);
            }
        }
        _ => put_u32(&mut p, rng.next() as u32),
    }
    p
}

/// The binary packet framing (RFC 4253 §6), unencrypted: mostly right, sometimes not.
fn packet(rng: &mut Rng, payload: &[u8], out: &mut Vec<u8>) {
    let mut pad = 4 + (8 - (payload.len() + 5 + 4) % 8) % 8;
    if rng.chance(5) {
        pad = rng.below(256);
    }
    let mut len = (1 + payload.len() + pad) as u32;
    if rng.chance(3) {
        let any = rng.next() as u32;
        len = *rng.pick(&[0, 1, 4, 5, 0xFFFF_FFFF, 0x8000_0000, 300_000, any]);
    }
    put_u32(out, len);
    out.push(pad as u8);
    out.extend_from_slice(payload);
    out.extend(rng.bytes(pad));
}

fn structured(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.chance(95) {
        // Mostly what real clients send.
        let version = if rng.chance(70) { VERSIONS[0] } else { *rng.pick(VERSIONS) };
        out.extend_from_slice(version);
    } else {
        out.extend(rng.some_bytes(300));
        out.extend_from_slice(b"\r\n");
    }
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut hybrid = rng.chance(50);
    if rng.chance(90) {
        let k = kexinit(rng);
        // Which key exchange the server will pick: the client's first it has.
        hybrid = k[21..].starts_with(b"mlkem");
        msgs.push(k);
    }
    if rng.chance(80) {
        msgs.push(kex_init(rng, hybrid));
        if rng.chance(70) {
            msgs.push(vec![21]);
        }
    }
    let others = if rng.chance(50) { 0 } else { 1 + rng.below(3) };
    for _ in 0..others {
        let m = match rng.below(4) {
            0 => kexinit(rng),
            1 => kex_init(rng, hybrid),
            _ => other_message(rng),
        };
        let at = rng.below(msgs.len() + 1);
        msgs.insert(at, m);
    }
    for m in &msgs {
        packet(rng, m, &mut out);
    }
    if rng.chance(20) {
        // What follows NEWKEYS is encrypted: any bytes.
        out.extend(rng.some_bytes(512));
    }
    out
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(&[0, 1, 0x7F, 0x80, 0xFF, b'\n', b',']);
            }
            2 if len >= 4 => {
                // A 32-bit field set to a boundary value.
                let i = rng.below(len - 3);
                let v: u32 = *rng.pick(&[0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFE, 35_000, 262_144]);
                data[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 => {
                let i = rng.below(len + 1);
                let chunk = rng.some_bytes(64);
                data.splice(i..i, chunk);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(128));
                data.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let copy = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            _ if len > 0 => data.truncate(rng.below(len)),
            _ => {}
        }
    }
}

/// Input number `index` of the run with `seed`.
fn input(seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed, index);
    if rng.chance(10) {
        let n = rng.below(2048);
        return rng.bytes(n);
    }
    let mut data = structured(&mut rng);
    if rng.chance(60) {
        mutate(&mut rng, &mut data);
    }
    data
}

// ---- running them ---------------------------------------------------------------

/// What the server sent back, read from its cleartext packets.
#[derive(Default)]
struct Reached {
    /// The server's KEX_ECDH_REPLY (31): a whole key exchange computed and signed.
    kex_reply: bool,
    /// The server's NEWKEYS (21).
    newkeys: bool,
}

fn reached(output: &[u8]) -> Reached {
    let mut r = Reached::default();
    let Some(eol) = output.iter().position(|&b| b == b'\n') else { return r };
    let mut rest = &output[eol + 1..];
    while rest.len() >= 6 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() < 4 + len || len < 2 {
            break;
        }
        match rest[5] {
            31 => r.kex_reply = true,
            21 => {
                r.newkeys = true;
                break; // encrypted from here on
            }
            _ => {}
        }
        rest = &rest[4 + len..];
    }
    r
}

#[derive(Default)]
struct Totals {
    inputs: AtomicU64,
    bytes: AtomicU64,
    kex_replies: AtomicU64,
    newkeys: AtomicU64,
    timeouts: AtomicU64,
    /// Inputs whose connection panicked, or during which the process's
    /// panic count went up (other inputs run at the same time: replayed alone at the end).
    suspects: Mutex<Vec<u64>>,
}

/// Every panic in the process (the server's tasks included: russh turns a
/// panicked session task into an error, so a hook is the only sure witness).
static PANICS: AtomicU64 = AtomicU64::new(0);
static PANIC_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        {
            let mut m = PANIC_MESSAGES.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() < 20 {
                m.push(info.to_string());
            }
        }
        previous(info);
    }));
}

fn service() -> Service {
    // max-startups: every input in flight is an unauthenticated connection.
    let sshd = SshdConfig::parse("port 0\nkeys-dir /nonexistent\nmax-startups 100000\n").unwrap();
    let config = Config { sshd, home: "/".into(), shell: None, base_env: Vec::new() };
    // A throwaway host key from a fixed seed: fuzzing only.
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    Service::with_host_key(config, key)
}

enum Outcome {
    /// The server hung up; what it had answered.
    Done(Reached),
    /// The connection's task panicked (other panics are seen by the hook only).
    Panicked,
    /// The deadline passed.
    Hung,
}

/// Serves one input: writes it, closes the client's side, reads everything
/// the server sends until it hangs up.
async fn run_one(service: &Service, id: u64, data: &[u8]) -> Outcome {
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    let conn = Conn { id, peer, sink: Sink::Discard };
    let (client, server) = tokio::io::duplex(64 * 1024);
    let service = service.clone();
    let task = tokio::spawn(async move {
        let serving = service.connection(server, conn, SocketAddr::from((Ipv4Addr::LOCALHOST, 2222)));
        serving.expect("max-startups is above the inputs in flight").await
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let talk = async {
        let write = async {
            let _ = wr.write_all(data).await;
            let _ = wr.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if out.len() < KEEP_OUTPUT {
                    out.extend_from_slice(&buf[..n]);
                }
            }
            out
        };
        let ((), out) = tokio::join!(write, read);
        match task.await {
            Err(e) if e.is_panic() => Outcome::Panicked,
            _ => Outcome::Done(reached(&out)),
        }
    };
    tokio::time::timeout(DEADLINE, talk).await.unwrap_or(Outcome::Hung)
}

/// Replays one input alone: did it panic?
fn panics_alone(service: &Service, index: u64, data: &[u8]) -> bool {
    let before = PANICS.load(Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outcome = rt.block_on(run_one(service, index, data));
    drop(rt);
    matches!(outcome, Outcome::Panicked) || PANICS.load(Ordering::SeqCst) != before
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")))
        .unwrap_or(default)
}

fn crash_dir() -> PathBuf {
    std::env::var_os("FUZZ_CRASH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-preauth"))
}

fn save(kind: &str, seed: u64, index: u64, data: &[u8]) {
    let dir = crash_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-seed{seed}-{index}"));
    let _ = std::fs::write(&path, data);
    eprintln!("fuzz_preauth: input {index} ({kind}) saved to {}", path.display());
}

/// One worker thread: a single-threaded runtime with `inflight` inputs at a time.
fn worker(service: Service, seed: u64, total: u64, inflight: usize, next: Arc<AtomicU64>, totals: Arc<Totals>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        loop {
            while set.len() < inflight {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let (service, totals) = (service.clone(), totals.clone());
                set.spawn(async move {
                    let data = input(seed, index);
                    let panics_before = PANICS.load(Ordering::SeqCst);
                    let outcome = run_one(&service, index, &data).await;
                    totals.inputs.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    match outcome {
                        Outcome::Done(ref r) => {
                            totals.kex_replies.fetch_add(r.kex_reply as u64, Ordering::Relaxed);
                            totals.newkeys.fetch_add(r.newkeys as u64, Ordering::Relaxed);
                        }
                        Outcome::Hung => {
                            totals.timeouts.fetch_add(1, Ordering::Relaxed);
                            save("timeout", seed, index, &data);
                        }
                        Outcome::Panicked => {}
                    }
                    if matches!(outcome, Outcome::Panicked) || PANICS.load(Ordering::SeqCst) != panics_before {
                        totals.suspects.lock().unwrap().push(index);
                    }
                });
            }
            if set.join_next().await.is_none() {
                break;
            }
        }
    });
}

#[test]
fn preauth_inputs_never_panic() {
    count_panics();
    let service = service();
    if let Some(file) = std::env::var_os("FUZZ_REPLAY") {
        let data = std::fs::read(&file).unwrap();
        let panicked = panics_alone(&service, 0, &data);
        let messages = PANIC_MESSAGES.lock().unwrap().clone();
        assert!(!panicked, "{file:?} panics: {messages:?}");
        return;
    }
    let total = env_u64("FUZZ_INPUTS", 20_000);
    let seed = env_u64("FUZZ_SEED", 1);
    let threads = env_u64("FUZZ_THREADS", 2) as usize;
    let inflight = env_u64("FUZZ_INFLIGHT", 32) as usize;
    let next = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (service, next, totals) = (service.clone(), next.clone(), totals.clone());
            std::thread::spawn(move || worker(service, seed, total, inflight, next, totals))
        })
        .collect();
    // Progress every minute on long runs.
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let secs = started.elapsed().as_secs();
        if secs > 0 && secs.is_multiple_of(60) && started.elapsed().subsec_millis() < 200 {
            let n = totals.inputs.load(Ordering::Relaxed);
            eprintln!("fuzz_preauth: {n} inputs in {secs} s, {} panics", PANICS.load(Ordering::SeqCst));
        }
    }
    for w in workers {
        w.join().expect("a worker thread panicked outside the server");
    }
    let elapsed = started.elapsed();
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let inputs = t(&totals.inputs);
    let panics = PANICS.load(Ordering::SeqCst);
    eprintln!(
        "fuzz_preauth: seed {seed}: {inputs} inputs ({} MiB) in {:.1} s ({:.0}/s) on {threads} threads x {inflight}; \
         key exchanges answered {} ({} to NEWKEYS); panics {panics}; timeouts {}",
        t(&totals.bytes) >> 20,
        elapsed.as_secs_f64(),
        inputs as f64 / elapsed.as_secs_f64(),
        t(&totals.kex_replies),
        t(&totals.newkeys),
        t(&totals.timeouts),
    );
    assert_eq!(inputs, total);
    if panics > 0 {
        // Which inputs panic on their own: saved, for FUZZ_REPLAY.
        let mut suspects = totals.suspects.lock().unwrap().clone();
        suspects.sort();
        let culprits: Vec<u64> =
            suspects.into_iter().take(200).filter(|&i| panics_alone(&service, i, &input(seed, i))).collect();
        for &i in culprits.iter().take(20) {
            save("panic", seed, i, &input(seed, i));
        }
        // Not formatted under the lock: the hook takes it when this panics.
        let messages = PANIC_MESSAGES.lock().unwrap().clone();
        panic!("{panics} panics; inputs that panic alone: {culprits:?}; messages: {messages:?}");
    }
    assert_eq!(
        t(&totals.timeouts),
        0,
        "inputs the server neither answered nor hung up on, saved under {:?}",
        crash_dir()
    );
    // The generator reaches the depths it is meant to: whole key exchanges
    // computed and signed by the server, and NEWKEYS.
    assert!(t(&totals.kex_replies) * 50 > inputs, "fewer than 2 % of inputs reached a key exchange reply");
    assert!(t(&totals.newkeys) * 100 > inputs, "fewer than 1 % of inputs reached NEWKEYS");
}
