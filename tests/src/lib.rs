//! Test harness for claworc's end-to-end tests against a real local control plane
//! (kube-apiserver, etcd, controller-manager, scheduler and kwok fake nodes on
//! 127.0.0.1), started by `tests/run` or `tests/cluster/up`. See docs/testing.md.
//!
//! Environment:
//! - `CLAWORC_KUBECONFIG`: admin kubeconfig of the running cluster (required; tests
//!   panic without it, they never skip silently);
//! - `CLAWORC_BIN_DIR`: directory holding `kubectl` (and the other cluster binaries);
//!   when unset, `kubectl` is looked up on `PATH`.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOW_TO_START: &str = "run the tests with `tests/run` (builds and starts a loopback-only \
     cluster, then runs cargo test), or start one with `tests/cluster/build && tests/cluster/up` \
     and export CLAWORC_KUBECONFIG=<the printed kubeconfig path> \
     CLAWORC_BIN_DIR=<the cache bin dir printed by tests/cluster/build>";

/// The running test cluster.
#[derive(Debug)]
pub struct Cluster {
    kubeconfig: PathBuf,
    bin_dir: Option<PathBuf>,
}

/// Result of running a command: exit status and captured output.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The stdout of a successful command; panics with stderr otherwise.
    #[track_caller]
    pub fn expect_ok(&self, what: &str) -> &str {
        assert!(self.success(), "{what} failed ({}): {}{}", self.status, self.stderr, self.stdout);
        &self.stdout
    }

    /// Parse stdout as JSON (e.g. of `kubectl get -o json`); panics if not successful.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let out = self.expect_ok("command");
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

impl Cluster {
    /// The cluster named by `CLAWORC_KUBECONFIG`, checked to be reachable once per
    /// test binary. Panics with instructions to start it if it is not.
    #[track_caller]
    pub fn get() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            let kubeconfig = std::env::var_os("CLAWORC_KUBECONFIG")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| panic!("CLAWORC_KUBECONFIG is not set: {HOW_TO_START}"));
            let cluster = Cluster {
                kubeconfig: PathBuf::from(kubeconfig),
                bin_dir: std::env::var_os("CLAWORC_BIN_DIR").filter(|v| !v.is_empty()).map(PathBuf::from),
            };
            let out = cluster.kubectl(&["get", "--raw", "/readyz", "--request-timeout=10s"]);
            assert!(
                out.success(),
                "test cluster at CLAWORC_KUBECONFIG={} is not reachable ({}): {}\n{HOW_TO_START}",
                cluster.kubeconfig.display(),
                out.status,
                out.stderr.trim()
            );
            cluster
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Path of the real kubectl: `$CLAWORC_BIN_DIR/kubectl`, else `kubectl` on PATH.
    pub fn kubectl_path(&self) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join("kubectl"),
            None => PathBuf::from("kubectl"),
        }
    }

    /// A command for `program` with `KUBECONFIG` set to the cluster's admin
    /// kubeconfig and `CLAWORC_BIN_DIR` first on `PATH` (for e.g. `kubectl-claworc`,
    /// `kubectl port-forward` in the background).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        if let Some(dir) = &self.bin_dir {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let paths = std::iter::once(dir.clone()).chain(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(paths).expect("PATH"));
        }
        cmd
    }

    /// Run `kubectl --kubeconfig <admin> ARGS` and capture its output.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, None)
    }

    /// Run kubectl with `stdin` as its input (e.g. `apply -f -`).
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(self.kubectl_path());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(cmd, stdin)
    }
}

/// Run a command, feeding it `stdin`, and capture its output.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_owned();
        // A thread, so that a large input cannot deadlock against a full stdout pipe.
        std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    }
    let out = child.wait_with_output().expect("wait for command");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kubectl ARGS` against the test cluster (see [`Cluster::kubectl`]).
pub fn kubectl(args: &[&str]) -> Output {
    Cluster::get().kubectl(args)
}

/// Poll `check` every 200 ms until it returns `Some`, or panic after `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A namespace of its own for one test, so tests can run in parallel. Deleted
/// (without waiting) when dropped.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// A new namespace named `<prefix>-<unique suffix>`.
    #[track_caller]
    pub fn new(prefix: &str) -> Self {
        Self::with_labels(prefix, &[])
    }

    /// A new namespace with labels, e.g.
    /// `[("pod-security.kubernetes.io/enforce", "restricted")]`.
    #[track_caller]
    pub fn with_labels(prefix: &str, labels: &[(&str, &str)]) -> Self {
        let name = unique_name(prefix);
        let labels: serde_json::Map<_, _> =
            labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        let ns = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": labels },
        });
        let cluster = Cluster::get();
        cluster.kubectl_with_stdin(&["create", "-f", "-"], Some(&ns.to_string())).expect_ok("create namespace");
        let ns = TestNamespace { name };
        // Pods are rejected until the controller-manager has made the default service account.
        wait_for("the default service account", Duration::from_secs(60), || {
            ns.kubectl(&["get", "serviceaccount", "default"]).success().then_some(())
        });
        ns
    }

    /// A namespace made otherwise (e.g. by `kubectl claworc tenant create`),
    /// deleted like the others when dropped.
    pub fn adopt(name: impl Into<String>) -> Self {
        TestNamespace { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `kubectl -n <namespace> ARGS`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, None)
    }

    /// `kubectl -n <namespace> ARGS` with `stdin` as input.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        Cluster::get().kubectl_with_stdin(&all, stdin)
    }

    /// `kubectl -n <namespace> apply -f -` of a YAML or JSON manifest.
    pub fn apply(&self, manifest: &str) -> Output {
        self.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest))
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let out = Cluster::get().kubectl(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
        if !out.success() {
            eprintln!("warning: could not delete namespace {}: {}", self.name, out.stderr.trim());
        }
    }
}

/// `<prefix>-<suffix>`, unique across parallel tests and test processes, and a
/// valid DNS label (the prefix is lower-cased and cut to fit 63 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let suffix = format!("{:x}{:x}{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos & 0xfff);
    let prefix: String = prefix
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(62 - suffix.len())
        .collect();
    format!("{}-{suffix}", prefix.trim_matches('-'))
}

/// A background process (e.g. `kubectl port-forward`, `kubectl claworc tunnel`)
/// killed when the test ends, also on panic.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The data of Secret `name` in namespace `ns`, decoded as text; `None` if it
/// does not exist.
pub fn secret_data(ns: &str, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    use base64::Engine;
    let out = Cluster::get().kubectl(&["-n", ns, "get", "secret", name, "-o", "json"]);
    if !out.success() {
        return None;
    }
    let secret = out.json();
    let data = secret["data"].as_object()?;
    let decode = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).expect("Secret data is base64")
    };
    Some(data.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&decode(v)).into_owned())).collect())
}

/// Path of the `kubectl-claworc` binary, built (offline) once per test process.
pub fn plugin_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_build_bin("kubectl-claworc"))
}

/// `cargo build -p PACKAGE` of the workspace; the path of its binary of the same name.
fn cargo_build_bin(package: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--offline", "--quiet", "-p", package])
        .current_dir(&root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    target.join("debug").join(package)
}

/// A plugin user: its own key store (XDG_CONFIG_HOME) and optionally a kubeconfig.
pub struct User {
    pub home: PathBuf,
    pub kubeconfig: Option<PathBuf>,
}

impl Default for User {
    fn default() -> Self {
        Self::new()
    }
}

impl User {
    pub fn new() -> Self {
        let home = std::env::temp_dir().join(unique_name("claworc-xdg"));
        std::fs::create_dir_all(&home).unwrap();
        User { home, kubeconfig: None }
    }

    pub fn with_kubeconfig(path: &Path) -> Self {
        let mut u = User::new();
        u.kubeconfig = Some(path.to_path_buf());
        u
    }

    pub fn store(&self) -> PathBuf {
        self.home.join("claworc")
    }

    /// `kubectl-claworc ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", &self.home).args(args);
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        run(cmd, None)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success(), "kubectl-claworc {args:?} failed ({}): {}{}", out.status, out.stderr, out.stdout);
        out.stdout
    }

    /// The only directory `keys/<cluster>/<namespace>/<name>` of the instance.
    pub fn instance_dir(&self, ns: &str, name: &str) -> Option<PathBuf> {
        let keys = self.store().join("keys");
        std::fs::read_dir(&keys).ok()?.filter_map(|e| e.ok()).map(|e| e.path().join(ns).join(name)).find(|p| p.exists())
    }

    pub fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.store().join("known_hosts")).unwrap_or_default()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// Exactly one line on stderr, `error: …`, and the expected exit code.
#[track_caller]
pub fn assert_fails(out: &Output, code: i32, contains: &str) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {:?}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(lines[0].contains(contains), "{:?} does not contain {contains:?}", lines[0]);
}

/// A tiny HTTP server on an ephemeral loopback port answering `body` to every
/// request, standing in for a pod's process; returns its port.
pub fn http_server(body: String) -> u16 {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let resp = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    port
}

/// `GET /` over HTTP/1.0 to 127.0.0.1:`port` (e.g. through a tunnel); the whole
/// reply, or `None` if the connection fails.
pub fn http_get(port: u16) -> Option<String> {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// The workload image tests/cluster/images built and tests/cluster/up imported.
pub fn workload_image() -> String {
    std::env::var("CLAWORC_WORKLOAD_IMAGE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("CLAWORC_WORKLOAD_IMAGE is not set: run the tests through tests/run (tests/cluster/with-cluster)")
    })
}

/// A namespace enforcing Pod Security "restricted" whose pods go to the real node.
pub fn real_node_namespace(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::with_labels(prefix, &[("pod-security.kubernetes.io/enforce", "restricted")]);
    use_real_node(ns.name());
    ns
}

/// Points the namespace's pods at the real node (tests/cluster/use-real-node).
pub fn use_real_node(namespace: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster").join("use-real-node");
    let mut cmd = Cluster::get().command(&script);
    cmd.arg(namespace);
    run(cmd, None).expect_ok("tests/cluster/use-real-node");
}
