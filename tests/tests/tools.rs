//! Every OpenSSH tool reaches an instance on the real node through the plugin
//! (issue 14): `ssh-config --write` installs Host blocks whose ProxyCommand is
//! `kubectl claworc proxy`; OpenSSH's `ssh`, `scp`, `sftp` and `rsync -e ssh` then run commands
//! and move files, checking the host key against the plugin's pins. All of it
//! with a tenant's kubeconfig only (the admin only adds an emptyDir at /work to hold
//! the files). The files are 100 MiB, as the issue asks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use claworc_contract::names;
use claworc_e2e::{Cluster, Output, TestNamespace, plugin_bin, run, unique_name, use_real_node, workload_image};

/// A tenant's instance `box` on the real node, and a user with a HOME of its own
/// (for `~/.ssh`) and a key store under it.
struct Tenant {
    ns: TestNamespace,
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl Tenant {
    fn new() -> Tenant {
        let home = std::env::temp_dir().join(unique_name("claworc-tools-home"));
        std::fs::create_dir_all(&home).unwrap();
        let name = unique_name("t-tools");
        let kubeconfig = home.join("tenant.kubeconfig");
        let mut cmd = Cluster::get().command(plugin_bin());
        cmd.env("XDG_CONFIG_HOME", home.join("xdg"));
        cmd.args(["tenant", "create", &name, "--ttl", "1h", "--output"]).arg(&kubeconfig);
        run(cmd, None).expect_ok("kubectl claworc tenant create");
        use_real_node(&name);
        Tenant { ns: TestNamespace::adopt(name), home, kubeconfig }
    }

    /// The tenant's environment: HOME, XDG_CONFIG_HOME and KUBECONFIG.
    fn env(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home).env("XDG_CONFIG_HOME", self.home.join("xdg")).env("KUBECONFIG", &self.kubeconfig);
    }

    fn plugin(&self, args: &[&str]) -> Output {
        let mut cmd = Cluster::get().command(plugin_bin());
        self.env(&mut cmd);
        cmd.args(["-n", self.ns.name()]).args(args);
        run(cmd, None)
    }

    fn plugin_ok(&self, args: &[&str]) -> Output {
        let out = self.plugin(args);
        assert!(out.success(), "kubectl-claworc {args:?} failed ({}): {}{}", out.status, out.stderr, out.stdout);
        out
    }

    fn ssh_dir(&self) -> PathBuf {
        self.home.join(".ssh")
    }

    /// An OpenSSH client (`ssh`, `scp`, `sftp`) with the user's ~/.ssh/config and
    /// no prompts; the ProxyCommand finds the plugin by the path ssh-config wrote.
    fn openssh(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        cmd.arg("-F").arg(self.ssh_dir().join("config")).args(["-o", "BatchMode=yes"]).args(args);
        let out = run(cmd, None);
        if out.status.code() == Some(127) || out.stderr.contains("No such file") && out.stdout.is_empty() {
            eprintln!("{program}: {out:?} (OpenSSH clients: apt-get install openssh-client)");
        }
        out
    }

    /// `rsync -a -e ssh` with the same OpenSSH config; the far side's rsync runs
    /// from the workload image (tests/images/workload/Dockerfile installs it).
    fn rsync_ok(&self, src: &str, dst: &str) {
        let mut cmd = Command::new("rsync");
        self.env(&mut cmd);
        let ssh = format!("ssh -F {} -o BatchMode=yes", self.ssh_dir().join("config").display());
        cmd.args(["-a", "-e", &ssh, src, dst]);
        let out = run(cmd, None);
        assert!(
            out.success(),
            "rsync {src} {dst} failed ({}): {}{} (rsync: apt-get install rsync, here and in the workload image)",
            out.status,
            out.stderr,
            out.stdout
        );
    }

    fn openssh_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.openssh(program, args);
        assert!(out.success(), "{program} {args:?} failed ({}): {}{}", out.status, out.stderr, out.stdout);
        out.stdout
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// `n` bytes that do not compress (xorshift), so nothing on the way can shortcut them.
fn payload(path: &Path, n: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(n + 8);
    while bytes.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(n);
    std::fs::write(path, bytes).unwrap();
}

/// sha256 of a local file (coreutils `sha256sum`).
fn sha256(path: &Path) -> String {
    let out = run(
        {
            let mut c = Command::new("sha256sum");
            c.arg(path);
            c
        },
        None,
    );
    out.expect_ok("sha256sum").split_whitespace().next().unwrap().to_string()
}

const MIB: usize = 1024 * 1024;
/// The file scp, sftp and rsync move each way.
const SIZE: usize = 100 * MIB;

#[test]
fn openssh_scp_and_sftp_reach_an_instance_through_proxy_and_ssh_config_as_a_tenant() {
    let t = Tenant::new();
    plugin_bin();
    t.plugin_ok(&["create", "box", "--image", &workload_image(), "--wait", "--timeout", "3m"]);
    // The files go to a volume the workload and the sessions share: an emptyDir at
    // /work in the workload, which the webhook shares with the sidecar. (A JSON
    // patch, not a replace: the deployment controller's status writes would make
    // a replace of what was read answer Conflict.)
    let patch = serde_json::json!([
        {"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": "work", "emptyDir": {"sizeLimit": "512Mi"}}},
        {"op": "add", "path": "/spec/template/spec/containers/0/volumeMounts/-", "value": {"name": "work", "mountPath": "/work"}},
    ]);
    t.ns.kubectl(&["patch", "deployment", "box", "--type=json", "-p", &patch.to_string()]).expect_ok("add /work");
    t.ns.kubectl(&["rollout", "status", "deployment/box", "--timeout=180s"]).expect_ok("rollout with /work");

    // ssh-config --write: a Host block in ~/.ssh/claworc.conf, Include'd above the user's own lines.
    std::fs::create_dir_all(t.ssh_dir()).unwrap();
    let own = "Host mine.example\n  User me\n";
    std::fs::write(t.ssh_dir().join("config"), own).unwrap();
    t.plugin_ok(&["ssh-config", "box", "--write"]);
    let config = std::fs::read_to_string(t.ssh_dir().join("config")).unwrap();
    let managed_path = t.ssh_dir().join("claworc.conf");
    assert!(config.contains(&format!("\nInclude {}\n", managed_path.display())), "{config}");
    assert!(config.ends_with(own), "the user's lines are kept: {config}");
    let managed = std::fs::read_to_string(&managed_path).unwrap();
    let host = managed
        .lines()
        .find_map(|l| l.strip_prefix("Host "))
        .unwrap_or_else(|| panic!("no Host line in {managed}"))
        .to_string();
    assert!(host.starts_with(&format!("box.{}.", t.ns.name())) && host.ends_with(".claworc"), "{host}");
    let user = format!("  User {}", names::SSH_USER);
    for line in ["  StrictHostKeyChecking yes", "  IdentitiesOnly yes", &user] {
        assert!(managed.lines().any(|l| l == line), "missing {line:?}: {managed}");
    }

    // Twice changes nothing: same bytes, same modification times.
    let stamp = |p: &Path| (std::fs::read(p).unwrap(), std::fs::metadata(p).unwrap().modified().unwrap());
    let before = (stamp(&t.ssh_dir().join("config")), stamp(&managed_path));
    let again = t.plugin_ok(&["ssh-config", "box", "--write"]);
    assert!(again.stderr.contains("unchanged"), "{again:?}");
    assert_eq!(before, (stamp(&t.ssh_dir().join("config")), stamp(&managed_path)), "a second --write changed files");
    // Printing gives the same block.
    let printed = t.plugin_ok(&["ssh-config", "box"]).stdout;
    assert!(managed.contains(&printed), "printed:\n{printed}\nmanaged:\n{managed}");

    // OpenSSH's ssh runs a command, through the proxy, with the tenant's kubeconfig only.
    let start = Instant::now();
    assert_eq!(t.openssh_ok("ssh", &[&host, "id", "-u"]).trim(), "1000");
    eprintln!("OpenSSH ssh through proxy, connect + command: {:.2}s", start.elapsed().as_secs_f64());
    assert_eq!(t.openssh("ssh", &[&host, "exit 9"]).status.code(), Some(9), "the remote exit status");
    t.openssh_ok("ssh", &[&host, "mkdir -p /work/t"]);

    // scp and sftp move a file both ways, byte for byte.
    let local = t.home.join("payload");
    payload(&local, SIZE);
    let want = sha256(&local);
    let remote_sha = |path: &str| {
        t.openssh_ok("ssh", &[&host, "sha256sum", path]).split_whitespace().next().unwrap_or_default().to_string()
    };
    let start = Instant::now();
    t.openssh_ok("scp", &[local.to_str().unwrap(), &format!("{host}:/work/t/up.scp")]);
    eprintln!("scp 100 MiB up through proxy: {:.2}s", start.elapsed().as_secs_f64());
    assert_eq!(remote_sha("/work/t/up.scp"), want, "scp upload");
    let down = t.home.join("down.scp");
    let start = Instant::now();
    t.openssh_ok("scp", &[&format!("{host}:/work/t/up.scp"), down.to_str().unwrap()]);
    eprintln!("scp 100 MiB down through proxy: {:.2}s", start.elapsed().as_secs_f64());
    assert_eq!(sha256(&down), want, "scp download");

    let batch = t.home.join("sftp.batch");
    let down = t.home.join("down.sftp");
    std::fs::write(
        &batch,
        format!("put {} /work/t/up.sftp\nget /work/t/up.sftp {}\n", local.display(), down.display()),
    )
    .unwrap();
    t.openssh_ok("sftp", &["-b", batch.to_str().unwrap(), &host]);
    assert_eq!(remote_sha("/work/t/up.sftp"), want, "sftp upload");
    assert_eq!(sha256(&down), want, "sftp download");

    // rsync -e ssh, both ways.
    let down = t.home.join("down.rsync");
    t.rsync_ok(local.to_str().unwrap(), &format!("{host}:/work/t/up.rsync"));
    assert_eq!(remote_sha("/work/t/up.rsync"), want, "rsync upload");
    t.rsync_ok(&format!("{host}:/work/t/up.rsync"), down.to_str().unwrap());
    assert_eq!(sha256(&down), want, "rsync download");

    // A host key other than the pin: OpenSSH refuses through the generated known_hosts.
    let known_hosts = t.home.join("xdg").join("claworc").join("known_hosts");
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    let stranger = t.home.join("stranger");
    let mut keygen = Command::new("ssh-keygen");
    keygen.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&stranger);
    run(keygen, None).expect_ok("ssh-keygen");
    let stranger_pub = std::fs::read_to_string(stranger.with_extension("pub")).unwrap();
    let stranger_key: Vec<&str> = stranger_pub.split_whitespace().take(2).collect();
    let swapped: String = pinned
        .lines()
        .map(|l| {
            let alias = l.split_whitespace().next().unwrap_or("");
            if alias.ends_with(&format!("/{}/box", t.ns.name())) {
                format!("{alias} {}\n", stranger_key.join(" "))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(swapped, pinned, "the instance's pin was not found in {pinned}");
    std::fs::write(&known_hosts, &swapped).unwrap();
    let refused = t.openssh("ssh", &[&host, "true"]);
    assert_eq!(refused.status.code(), Some(255), "{refused:?}");
    assert!(refused.stderr.contains("Host key verification failed"), "{}", refused.stderr);
    // The plugin refuses too (exit 5); --repin checks the Deployment's fingerprint and
    // re-pins, and OpenSSH follows with the same config.
    assert_eq!(t.plugin(&["ssh", "box", "--", "true"]).status.code(), Some(5));
    t.plugin_ok(&["ssh", "box", "--repin", "--", "true"]);
    assert_eq!(t.openssh_ok("ssh", &[&host, "echo", "again"]).trim(), "again");

    // rotate-keys: the same IdentityFile path holds the new key; OpenSSH logs in with it.
    t.plugin_ok(&["rotate-keys", "box"]);
    assert_eq!(t.openssh_ok("ssh", &[&host, "echo", "rotated"]).trim(), "rotated");

    // proxy fails like the other commands: one line, the exit code.
    let out = t.plugin(&["proxy", "nope"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("\"nope\""), "{}", out.stderr);

    // list -A: the admin sees the tenant's instance with its namespace; the tenant may not list every namespace.
    let mut cmd = Cluster::get().command(plugin_bin());
    cmd.env("XDG_CONFIG_HOME", t.home.join("xdg")).args(["list", "-A"]);
    let all = run(cmd, None);
    let listed = all.expect_ok("list -A");
    assert!(listed.starts_with("NAMESPACE"), "{listed}");
    assert!(listed.lines().any(|l| l.split_whitespace().take(2).eq([t.ns.name(), "box"])), "{listed}");
    assert_eq!(t.plugin(&["list", "-A"]).status.code(), Some(5), "a tenant lists every namespace");

    cp_moves_trees_both_ways(&t, &host);
    completion_names_instances_from_the_cluster(&t);
    tunnel_lists_its_forwards(&t);

    // delete takes the Host block away.
    t.plugin_ok(&["delete", "box"]);
    let managed = std::fs::read_to_string(&managed_path).unwrap();
    assert!(!managed.contains(&host), "{managed}");
}

/// `stat` of every entry under `root` as `MODE MTIME SIZE-or-d SHA-or-- RELPATH`, sorted (local).
fn local_tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if m.is_dir() {
            out.push(format!("{:o} {} d - ./{rel}", m.mode() & 0o7777, m.mtime()));
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.push(format!("{:o} {} {} {} ./{rel}", m.mode() & 0o7777, m.mtime(), m.len(), sha256(&p)));
        }
    }
    out.sort();
    out.into_iter().map(|l| l.replace("/./", "/").trim_end_matches('/').to_string()).collect()
}

/// The same listing of a remote tree, from `find` and `sha256sum` run over OpenSSH.
fn remote_tree(t: &Tenant, host: &str, root: &str) -> Vec<String> {
    let script = format!(
        "cd {root} && find . -type d -printf '%m %T@ d - %p\\n' && \
         find . -type f -exec sh -c 'printf \"%s %s %s %s %s\\n\" $(stat -c \"%a %Y %s\" \"$1\") $(sha256sum < \"$1\" | cut -d\" \" -f1) \"$1\"' _ {{}} \\;"
    );
    let out = t.openssh_ok("ssh", &[host, &script]);
    let mut lines: Vec<String> = out
        .lines()
        .map(|l| {
            // find's %T@ has a fraction: seconds only.
            let mut w: Vec<String> = l.split(' ').map(String::from).collect();
            w[1] = w[1].split('.').next().unwrap().to_string();
            w.join(" ")
        })
        .map(|l| if l.ends_with(" .") { l.trim_end_matches('.').to_string() + "." } else { l })
        .collect();
    lines.sort();
    lines
}

/// `kubectl claworc cp` over SFTP: a tree up and back down with contents, modes and
/// mtimes; a destination the user cannot write is exit 5; no such file is exit 3;
/// an interrupted upload leaves nothing under the final name.
fn cp_moves_trees_both_ways(t: &Tenant, host: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tree = t.home.join("tree");
    std::fs::create_dir_all(tree.join("sub").join("deeper")).unwrap();
    std::fs::write(tree.join("a.txt"), "hello\n").unwrap();
    payload(&tree.join("sub").join("b.bin"), MIB + 17);
    std::fs::write(tree.join("sub").join("deeper").join("empty"), "").unwrap();
    let set = |rel: &str, mode: u32, mtime: u64| {
        let p = tree.join(rel);
        let f = std::fs::File::open(&p).unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        f.set_times(std::fs::FileTimes::new().set_modified(at).set_accessed(at)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set("a.txt", 0o640, 1_600_000_000);
    set("sub/b.bin", 0o755, 1_600_000_100);
    set("sub/deeper/empty", 0o600, 1_600_000_200);
    set("sub/deeper", 0o750, 1_600_000_300);
    set("sub", 0o700, 1_600_000_400);
    set(".", 0o755, 1_600_000_500);
    let want = local_tree(&tree);

    let start = Instant::now();
    t.plugin_ok(&["cp", "-r", tree.to_str().unwrap(), "box:/work/t"]);
    eprintln!("cp -r up (1 MiB tree): {:.2}s", start.elapsed().as_secs_f64());
    assert_eq!(remote_tree(t, host, "/work/t/tree"), want, "the tree uploaded by cp -r");
    let back = t.home.join("back");
    t.plugin_ok(&["cp", "-r", "box:/work/t/tree", back.to_str().unwrap()]);
    assert_eq!(local_tree(&back), want, "the tree downloaded by cp -r");
    // A file into an existing directory keeps its name.
    t.plugin_ok(&["cp", tree.join("a.txt").to_str().unwrap(), "box:/work/t/"]);
    assert_eq!(t.openssh_ok("ssh", &[host, "cat /work/t/a.txt"]), "hello\n");

    // Errors: one line, the exit code, nothing left behind.
    t.openssh_ok("ssh", &[host, "mkdir /work/t/ro && chmod 555 /work/t/ro"]);
    let out = t.plugin(&["cp", tree.join("a.txt").to_str().unwrap(), "box:/work/t/ro/a.txt"]);
    claworc_e2e::assert_fails(&out, 5, "cp: box:/work/t/ro/a.txt: permission denied (SFTP)");
    assert_eq!(t.openssh_ok("ssh", &[host, "ls -A /work/t/ro"]), "", "nothing left behind");
    // The sidecar's root filesystem is read-only: a failure, in the system's words.
    let out = t.plugin(&["cp", tree.join("a.txt").to_str().unwrap(), "box:/etc/claworc-x"]);
    claworc_e2e::assert_fails(&out, 1, "cp: box:/etc/claworc-x: read-only file system (SFTP)");
    let out = t.plugin(&["cp", "box:/work/t/nope", t.home.to_str().unwrap()]);
    claworc_e2e::assert_fails(&out, 3, "box:/work/t/nope");
    let out = t.plugin(&["cp", tree.to_str().unwrap(), "box:/work/t/x"]);
    claworc_e2e::assert_fails(&out, 2, "pass -r");

    // An upload killed half-way: the bytes so far are under a temporary name only.
    let fifo = t.home.join("slow");
    let mut mkfifo = Command::new("mkfifo");
    mkfifo.arg(&fifo);
    run(mkfifo, None).expect_ok("mkfifo");
    let mut cmd = Cluster::get().command(plugin_bin());
    t.env(&mut cmd);
    cmd.args(["-n", t.ns.name(), "cp", fifo.to_str().unwrap(), "box:/work/t/slow"]);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = claworc_e2e::KillOnDrop(cmd.spawn().unwrap());
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut writer, &vec![7u8; 256 * 1024]).unwrap();
    claworc_e2e::wait_for("the partial upload", std::time::Duration::from_secs(30), || {
        let ls = t.openssh_ok("ssh", &[host, "ls -a /work/t"]);
        ls.lines().any(|l| l.starts_with(".slow.claworc-") && l.ends_with(".part")).then_some(())
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(writer);
    let ls = t.openssh_ok("ssh", &[host, "ls -a /work/t"]);
    assert!(!ls.lines().any(|l| l == "slow"), "a partial file under the final name: {ls}");
}

/// kubectl's plugin completion: `kubectl_complete-claworc` (the helper shipped beside
/// the plugin) answers with instance names read from the cluster, directly and when
/// kubectl itself runs it for `kubectl claworc ssh <TAB>`.
fn completion_names_instances_from_the_cluster(t: &Tenant) {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kubectl-claworc/kubectl_complete-claworc");
    let bin = t.home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(plugin_bin(), bin.join("kubectl-claworc")).unwrap();
    std::os::unix::fs::symlink(std::fs::canonicalize(&helper).unwrap(), bin.join("kubectl_complete-claworc")).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();

    let mut cmd = Command::new(bin.join("kubectl_complete-claworc"));
    t.env(&mut cmd);
    cmd.env("PATH", &path).args(["-n", t.ns.name(), "ssh", "b"]);
    let out = run(cmd, None);
    assert_eq!(out.expect_ok("kubectl_complete-claworc"), "box\n:4\n", "{}", out.stderr);

    let mut cmd = Cluster::get().command(Cluster::get().kubectl_path());
    t.env(&mut cmd);
    cmd.env("PATH", &path).args(["__complete", "claworc", "-n", t.ns.name(), "ssh", ""]);
    let out = run(cmd, None);
    let text = out.expect_ok("kubectl __complete claworc");
    assert!(text.lines().any(|l| l == "box"), "kubectl did not complete the instance name: {text}{}", out.stderr);

    let mut cmd = Command::new(bin.join("kubectl_complete-claworc"));
    t.env(&mut cmd);
    cmd.env("PATH", &path).args(["ss"]);
    let out = run(cmd, None);
    let text = out.expect_ok("kubectl_complete-claworc ss");
    assert!(text.contains("ssh\t") && text.contains("ssh-config\t") && text.ends_with(":4\n"), "{text}");
}

/// `tunnel` prints its forwards on SIGUSR1: ports, connections, bytes.
fn tunnel_lists_its_forwards(t: &Tenant) {
    use std::io::BufRead;
    let mut cmd = Cluster::get().command(plugin_bin());
    t.env(&mut cmd);
    cmd.args(["-n", t.ns.name(), "tunnel", "box", "-L", "8080"]);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut tunnel = claworc_e2e::KillOnDrop(cmd.spawn().expect("tunnel"));
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = tunnel.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = lines.recv_timeout(std::time::Duration::from_secs(30)).expect("the Forwarding line");
    let port: u16 =
        first.split("127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    claworc_e2e::wait_for("the workload's page through the tunnel", std::time::Duration::from_secs(30), || {
        claworc_e2e::http_get(port).filter(|r| r.contains("HTTP/1.0 200"))
    });
    let mut kill = Command::new("kill");
    kill.args(["-USR1", &tunnel.0.id().to_string()]);
    run(kill, None).expect_ok("kill -USR1");
    let mut listing = Vec::new();
    while listing.len() < 3 {
        listing.push(lines.recv_timeout(std::time::Duration::from_secs(10)).expect("the listing"));
    }
    assert_eq!(listing[0], "tunnel to box: connected", "{listing:?}");
    let row: Vec<&str> = listing[2].split_whitespace().collect();
    assert_eq!(row[..2], [format!("127.0.0.1:{port}").as_str(), "box:8080"], "{listing:?}");
    assert_eq!(row[2], "0", "no connection open now: {listing:?}");
    assert!(row[3].parse::<u64>().unwrap() >= 1, "connections so far: {listing:?}");
    assert!(row[5].parse::<u64>().unwrap() > 0, "bytes received: {listing:?}");
}

/// The SHA256 fingerprint of a key file, as OpenSSH's `ssh-keygen -l` says it.
fn key_fingerprint(path: &Path) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-l").arg("-f").arg(path);
    let out = run(cmd, None);
    let text = out.expect_ok("ssh-keygen -l (OpenSSH clients: apt-get install openssh-client)");
    text.split_whitespace().nth(1).unwrap_or_default().to_string()
}

/// `audit -o json`'s rows.
fn audit_rows(t: &Tenant) -> Vec<serde_json::Value> {
    let out = t.plugin_ok(&["audit", "box", "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("audit -o json is not JSON ({e}): {}", out.stdout));
    v.as_array().unwrap_or_else(|| panic!("audit -o json is not an array: {v}")).clone()
}

/// Waits until `audit -o json` has a row that `want` accepts; returns it.
fn audit_row(t: &Tenant, what: &str, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = Vec::new();
    for _ in 0..30 {
        last = audit_rows(t);
        if let Some(r) = last.iter().find(|r| want(r)) {
            return r.clone();
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("audit shows no {what} after 30s: {}", serde_json::to_string_pretty(&last).unwrap())
}

/// `audit` (issue 14): a scripted session's login, command, upload and forward from
/// the sidecar's log, and the Events of `create`, `rotate-keys` and `delete`, with
/// the tenant's kubeconfig only.
#[test]
fn audit_shows_a_sessions_login_command_upload_and_forward_and_the_lifecycle_events_as_a_tenant() {
    let t = Tenant::new();
    let user = format!("system:serviceaccount:{}:claworc-tenant", t.ns.name());
    let created = t.plugin_ok(&["create", "box", "--image", &workload_image(), "--wait", "--timeout", "3m"]);
    assert!(
        created.stderr.contains(&format!("event InstanceCreated in namespace {}: instance box created", t.ns.name()))
            && created.stderr.contains(&format!(" by {user}")),
        "create says its Event: {}",
        created.stderr
    );
    let client_key = created
        .stderr
        .split("client key ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("create names the client key file: {}", created.stderr));
    let fingerprint = key_fingerprint(Path::new(client_key));
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");

    // The scripted session: a command with an exit status, an upload, a forward.
    assert_eq!(t.plugin(&["ssh", "box", "--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    let local = t.home.join("audit-upload.txt");
    std::fs::write(&local, "audited\n").unwrap();
    t.plugin_ok(&["cp", local.to_str().unwrap(), "box:audit-upload.txt"]);
    {
        use std::io::BufRead;
        let mut cmd = Cluster::get().command(plugin_bin());
        t.env(&mut cmd);
        cmd.args(["-n", t.ns.name(), "tunnel", "box", "-L", "8080"]);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        let mut tunnel = claworc_e2e::KillOnDrop(cmd.spawn().expect("tunnel"));
        let mut first = String::new();
        std::io::BufReader::new(tunnel.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let port: u16 = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("tunnel's Forwarding line: {first:?}"));
        claworc_e2e::wait_for("the workload's page through the tunnel", std::time::Duration::from_secs(30), || {
            claworc_e2e::http_get(port).filter(|r| r.contains("HTTP/1.0 200"))
        });
    }

    // -o json: every part of it, with the key that did it.
    let with_key = |r: &serde_json::Value| r["fingerprint"] == fingerprint.as_str();
    let login = audit_row(&t, "login with the client key", |r| r["event"] == "login_accepted" && with_key(r));
    assert_eq!(login["source"], names::SIDECAR);
    assert!(login["pod"].as_str().is_some_and(|p| p.starts_with("box-")), "{login}");
    assert_eq!(login["fields"]["user"], names::SSH_USER, "{login}");
    let exec = audit_row(&t, "the command's end", |r| {
        r["event"] == "session_end" && r["fields"]["command"].as_str().is_some_and(|c| c.contains("exit 3"))
    });
    assert_eq!(exec["fields"]["kind"], "exec", "{exec}");
    assert_eq!(exec["fields"]["exit_status"], 3, "{exec}");
    assert!(with_key(&exec), "the command's row names the key: {exec}");
    let write = audit_row(&t, "the upload", |r| {
        r["event"] == "sftp_open_write" && r["fields"]["path"].as_str().is_some_and(|p| p.contains("audit-upload.txt"))
    });
    assert!(with_key(&write), "{write}");
    let renamed = audit_row(&t, "the upload's rename", |r| r["event"] == "sftp_rename");
    assert!(renamed["fields"]["to"].as_str().is_some_and(|p| p.ends_with("/audit-upload.txt")), "{renamed}");
    let forward = audit_row(&t, "the forward", |r| r["event"] == "forward_opened" && r["fields"]["port"] == 8080);
    assert!(with_key(&forward), "{forward}");
    let create = audit_row(&t, "the create Event", |r| r["event"] == "InstanceCreated");
    assert_eq!(create["source"], "claworc.io/kubectl-claworc", "{create}");
    assert_eq!(create["user"], user.as_str(), "{create}");
    // Oldest first: the Event before the first login.
    let rows = audit_rows(&t);
    let at = |want: &serde_json::Value| rows.iter().position(|r| r == want).unwrap();
    assert!(at(&create) < at(&login) && at(&login) < at(&exec), "not in time order: {rows:?}");

    // rotate-keys: its Event, and the new key's login (the proof) under its fingerprint.
    let rotated = t.plugin_ok(&["rotate-keys", "box"]);
    assert!(rotated.stderr.contains("event InstanceKeysRotated"), "{}", rotated.stderr);
    let new_fingerprint = key_fingerprint(Path::new(client_key));
    assert_ne!(new_fingerprint, fingerprint);
    let event = audit_row(&t, "the rotate-keys Event", |r| r["event"] == "InstanceKeysRotated");
    assert_eq!(event["user"], user.as_str(), "{event}");
    audit_row(&t, "a login with the new key", |r| {
        r["event"] == "login_accepted" && r["fingerprint"] == new_fingerprint.as_str()
    });

    // The table names them all.
    let table = t.plugin_ok(&["audit", "box"]).stdout;
    eprintln!("kubectl claworc audit box:\n{table}");
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["TIME", "SOURCE", "EVENT", "WHO", "DETAIL"], "{table}");
    let has = |parts: &[&str]| table.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(has(&["login_accepted", &fingerprint, "pod/box-"]), "{table}");
    assert!(has(&["session_end", &fingerprint, "exit 3"]), "{table}");
    assert!(has(&["sftp_open_write", "audit-upload.txt"]), "{table}");
    assert!(has(&["forward_opened", ":8080"]), "{table}");
    assert!(has(&["InstanceCreated", &user]), "{table}");
    assert!(has(&["InstanceKeysRotated", &user, &new_fingerprint]), "{table}");
    // --since: nothing older than a moment ago.
    let recent = t.plugin_ok(&["audit", "box", "--since", "1s", "-o", "json"]).stdout;
    assert!(!recent.contains("InstanceCreated"), "--since 1s: {recent}");

    // kubectl get events shows the plugin's Events too, to the tenant.
    let mut cmd = Cluster::get().command(Cluster::get().kubectl_path());
    t.env(&mut cmd);
    cmd.args(["-n", t.ns.name(), "get", "events", "--field-selector", "involvedObject.name=box", "-o", "json"]);
    let out = run(cmd, None);
    let reasons: Vec<String> =
        out.json()["items"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str().map(String::from)).collect();
    assert!(
        reasons.iter().any(|r| r == "InstanceCreated") && reasons.iter().any(|r| r == "InstanceKeysRotated"),
        "{reasons:?}"
    );

    // delete: its Event outlives the Deployment, and audit still shows it.
    let deleted = t.plugin_ok(&["delete", "box"]);
    assert!(deleted.stderr.contains("event InstanceDeleted"), "{}", deleted.stderr);
    let gone = audit_row(&t, "the delete Event", |r| r["event"] == "InstanceDeleted");
    assert_eq!(gone["user"], user.as_str(), "{gone}");
    assert!(gone["detail"].as_str().is_some_and(|d| d.contains("deployment.apps/box")), "{gone}");
}
