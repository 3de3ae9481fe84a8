//! The krew package as a user installs it: `release/krew` packs this build into
//! the archive its manifest points at, with the manifest's sha256 matching the
//! archive's bytes, the files the manifest names inside it (the LICENSE too), and
//! once unpacked on PATH, the real `kubectl` finds the plugin and completes
//! `kubectl claworc <TAB>` through `kubectl_complete-claworc`.
//!
//! Then krew itself installs the plugin from that manifest and archive (offline:
//! `kubectl krew install --manifest --archive`) and `kubectl claworc` runs from
//! krew's bin directory; and, as once the manifest is in an index, from a git
//! index of its own (`KREW_DEFAULT_INDEX_URI`) with the archive served on
//! loopback: `kubectl krew update`, `install claworc`, `list`, `uninstall`.
//!
//! Needs `kubectl` (1.26 or later) and `kubectl-krew` on PATH: `tests/cluster/build`
//! makes both (krew from its Go module), or install them from your distribution and
//! krew.sigs.k8s.io; and `tar`, `gzip`, `sha256sum`, `git`.

use std::path::Path;
use std::process::Command;

use serde_yaml_ng::Value;

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require(tool: &str, hint: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "{tool} is missing: {hint}");
}

/// Where `tool` is on PATH.
fn which(tool: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()).unwrap_or_else(|| panic!("no {tool}"))
}

/// krew's os_arch of this machine, as release/krew names archives.
fn platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no krew arch for {other}"),
    };
    (std::env::consts::OS, arch)
}

#[test]
fn the_krew_archive_matches_its_manifest_and_kubectl_finds_and_completes_the_plugin() {
    require("kubectl", "run tests/cluster/build (it puts kubectl in ~/.cache/claworc/…/bin) or install kubectl 1.26+");
    require(
        "kubectl-krew",
        "run tests/cluster/build (it builds krew into ~/.cache/claworc/krew-*/bin) or install krew",
    );
    for tool in ["tar", "gzip", "sha256sum", "dirname", "readlink"] {
        require(tool, "apt-get install -y tar gzip coreutils");
    }
    require("git", "apt-get install -y git (krew clones its index with it)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (dist, manifest_out) = (tmp.path().join("dist"), tmp.path().join("claworc.yaml"));
    run(Command::new(root.join("release/krew"))
        .env("CLAWORC_RELEASE_BINARY", env!("CARGO_BIN_EXE_kubectl-claworc"))
        .env("CLAWORC_DIST_DIR", &dist)
        .env("CLAWORC_KREW_MANIFEST", &manifest_out));

    let manifest: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&manifest_out).unwrap()).unwrap();
    let spec = &manifest["spec"];
    assert_eq!(spec["version"].as_str(), Some(concat!("v", env!("CARGO_PKG_VERSION"))), "the manifest's version");
    let (os, arch) = platform();
    let entry = spec["platforms"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["selector"]["matchLabels"]["os"] == os && p["selector"]["matchLabels"]["arch"] == arch)
        .unwrap_or_else(|| panic!("no platform {os}/{arch} in the manifest"));
    let archive_name = format!("kubectl-claworc_{os}_{arch}.tar.gz");
    let uri = entry["uri"].as_str().unwrap();
    assert!(uri.ends_with(&format!("/{archive_name}")), "{uri} is not the archive release/krew made");
    let archive = dist.join(&archive_name);
    let sum = run(Command::new("sha256sum").arg(&archive));
    assert_eq!(entry["sha256"].as_str(), sum.split_whitespace().next(), "the manifest's sha256 is not the archive's");
    let committed = std::fs::read_to_string(root.join("kubectl-claworc/krew/claworc.yaml")).unwrap();
    assert!(committed.contains(uri), "the committed manifest names {uri} too");

    // Unpacked as krew does: each `files` entry, then `bin` on PATH.
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked));
    for f in entry["files"].as_sequence().unwrap() {
        let from = f["from"].as_str().unwrap();
        assert!(unpacked.join(from).is_file(), "{from} (in the manifest's files) is not in {archive_name}");
    }
    assert!(unpacked.join("LICENSE").is_file(), "the LICENSE the manifest names");
    assert_eq!(entry["bin"].as_str(), Some("kubectl-claworc"));
    // PATH: the unpacked plugin, and only the programs kubectl and the completion
    // helper run (no other kubectl-* a developer's PATH may hold).
    let tools = tmp.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for tool in ["kubectl", "kubectl-krew", "dirname", "readlink", "git"] {
        std::os::unix::fs::symlink(which(tool), tools.join(tool)).unwrap();
    }
    let path = format!("{}:{}", unpacked.display(), tools.display());
    let kubectl = |args: &[&str]| {
        run(Command::new("kubectl").args(args).env("PATH", &path).env("KUBECONFIG", tmp.path().join("none")))
    };
    let plugins = kubectl(&["plugin", "list", "--name-only"]);
    assert!(plugins.lines().any(|l| l.trim() == "kubectl-claworc"), "kubectl plugin list: {plugins}");
    // kubectl plugin list also reports other kubectl-* (kubectl-krew): only ours matters.
    assert!(!plugins.contains("warning"), "kubectl plugin list: {plugins}");
    let version = kubectl(&["claworc", "--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "kubectl claworc --version: {version}");
    // kubectl's own completion hands `kubectl claworc <TAB>` to kubectl_complete-claworc.
    let words = kubectl(&["__complete", "claworc", ""]);
    for sub in ["create", "ssh", "cp", "proxy", "audit", "tenant"] {
        assert!(words.lines().any(|l| l.split('\t').next() == Some(sub)), "kubectl claworc <TAB> lacks {sub}: {words}");
    }

    // krew installs it from the manifest and the archive, as a user would from the
    // release's assets, into a krew root of its own.
    let krew_root = tmp.path().join("krew");
    let manifest_arg = format!("--manifest={}", manifest_out.display());
    let archive_arg = format!("--archive={}", archive.display());
    let krew_in = |krew_root: &Path, index: &Path, path: &str, args: &[&str]| {
        run(Command::new("kubectl")
            .args(args)
            .env("PATH", path)
            .env("KREW_ROOT", krew_root)
            // Never the real krew-index on GitHub: this test's own, or none.
            .env("KREW_DEFAULT_INDEX_URI", index)
            .env("KREW_NO_UPGRADE_CHECK", "1")
            .env("HOME", tmp.path())
            .env("KUBECONFIG", tmp.path().join("none")))
    };
    let no_index = tmp.path().join("no-index");
    let krew = |path: &str, args: &[&str]| krew_in(&krew_root, &no_index, path, args);
    krew(&tools.display().to_string(), &["krew", "install", &manifest_arg, &archive_arg]);
    let receipt = std::fs::read_to_string(krew_root.join("receipts/claworc.yaml")).expect("krew's receipt for claworc");
    assert!(receipt.contains(concat!("version: v", env!("CARGO_PKG_VERSION"))), "{receipt}");
    let krew_path = format!("{}:{}", krew_root.join("bin").display(), tools.display());
    let version = krew(&krew_path, &["claworc", "--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "kubectl claworc --version after krew install: {version}");

    // From an index, as `kubectl krew install claworc` works once the manifest is
    // in one: a git repository holding plugins/claworc.yaml, the manifest with
    // its uri pointing at the archive served on loopback (krew downloads over
    // HTTP only).
    let url = serve_on_loopback(std::fs::read(&archive).unwrap(), &archive_name);
    let index = tmp.path().join("index");
    std::fs::create_dir_all(index.join("plugins")).unwrap();
    let indexed = std::fs::read_to_string(&manifest_out).unwrap().replace(uri, &url);
    std::fs::write(index.join("plugins/claworc.yaml"), indexed).unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args([
                "-c",
                "user.name=claworc tests",
                "-c",
                "user.email=tests@claworc.invalid",
                "-c",
                "init.defaultBranch=master",
            ])
            .args(args)
            .current_dir(&index)
            .env("HOME", tmp.path()))
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "claworc"]);
    let indexed_root = tmp.path().join("krew-indexed");
    let krew = |path: &str, args: &[&str]| krew_in(&indexed_root, &index, path, args);
    let tools_path = tools.display().to_string();
    krew(&tools_path, &["krew", "update"]);
    krew(&tools_path, &["krew", "install", "claworc"]);
    let list = krew(&tools_path, &["krew", "list"]);
    assert!(list.lines().any(|l| l.split_whitespace().next() == Some("claworc")), "kubectl krew list: {list}");
    let krew_path = format!("{}:{}", indexed_root.join("bin").display(), tools.display());
    let version = krew(&krew_path, &["claworc", "--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "kubectl claworc --version after krew install claworc: {version}"
    );
    krew(&tools_path, &["krew", "uninstall", "claworc"]);
    let list = krew(&tools_path, &["krew", "list"]);
    assert!(!list.contains("claworc"), "kubectl krew list after uninstall: {list}");
    assert!(!indexed_root.join("bin/kubectl-claworc").exists(), "krew uninstall left the plugin's link");
}

/// Serves `body` to every HTTP request on a loopback port, from a thread that
/// lives as long as the test; returns the URL of `name` there.
fn serve_on_loopback(body: Vec<u8>, name: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/{name}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            // The request's head, up to its empty line.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut stream = &stream;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    url
}
