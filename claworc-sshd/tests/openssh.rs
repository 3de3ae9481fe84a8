//! claworc-sshd against the OpenSSH clients people use (ssh, scp, sftp,
//! rsync over ssh) and ssh-audit, on loopback: what it serves, what it
//! refuses, and its audit trail.

use claworc_test_support as support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Options, Sshd, keygen, require, run, run_with_stdin, text};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP echo server on 127.0.0.1 (the "workload's" port); returns its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn exec_gives_output_stderr_exit_status_uid_and_home() {
    let sshd = Sshd::start();
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "--", "echo out; echo err >&2; id -u; pwd; exit 7"]);
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["out", &sshd.uid().to_string(), sshd.home.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));
}

#[test]
fn stdin_reaches_the_command_intact() {
    let sshd = Sshd::start();
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "cat"]);
    let out = run_with_stdin(c, &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "the bytes that came back differ");
}

#[test]
fn a_pty_command_and_a_login_shell_get_a_terminal() {
    let sshd = Sshd::start();
    let mut c = sshd.ssh();
    c.env("TERM", "xterm-256color").args(["-tt", "127.0.0.1", "tty; echo TERM=$TERM; stty size"]);
    let (ok, out, err) = run(c);
    assert!(ok, "{err}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("TERM=xterm-256color"), "{out}");
    // The login shell reads commands from the terminal.
    let mut c = sshd.ssh();
    c.env("TERM", "dumb").args(["-tt", "127.0.0.1"]);
    let out = run_with_stdin(c, b"echo marker-$((40+2)); exit 5\n");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("marker-42"), "{}", text(&out.stdout));
    let start = sshd.wait_event("session_start", |v| v["kind"] == "shell");
    assert_eq!(start["pty"], true);
}

#[test]
fn scp_copies_both_ways_in_sftp_and_legacy_mode() {
    let sshd = Sshd::start();
    let src = sshd.client.join("src.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    for (mode, name) in [(None, "up-sftp.bin"), (Some("-O"), "up-legacy.bin")] {
        let mut up = sshd.scp();
        up.args(mode).arg(&src).arg(format!("claworc@127.0.0.1:{name}"));
        let (ok, _, err) = run(up);
        assert!(ok, "scp {mode:?} up: {err}");
        assert_eq!(std::fs::read(sshd.home.join(name)).unwrap(), data, "scp {mode:?} upload");
        let back = sshd.client.join(format!("back-{name}"));
        let mut down = sshd.scp();
        down.args(mode).arg(format!("claworc@127.0.0.1:{name}")).arg(&back);
        let (ok, _, err) = run(down);
        assert!(ok, "scp {mode:?} down: {err}");
        assert_eq!(std::fs::read(&back).unwrap(), data, "scp {mode:?} download");
    }
}

#[test]
fn sftp_put_get_ls_rename_rm() {
    let sshd = Sshd::start();
    std::fs::write(sshd.client.join("local.txt"), "hello over sftp\n").unwrap();
    let out = sshd.sftp_batch(
        "put local.txt a.txt\nls\nrename a.txt b.txt\nget b.txt fetched.txt\nmkdir d\nls -l\nrm b.txt\nrmdir d\nls\n",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, text(&out.stderr));
    assert_eq!(std::fs::read_to_string(sshd.client.join("fetched.txt")).unwrap(), "hello over sftp\n");
    assert!(!sshd.home.join("a.txt").exists() && !sshd.home.join("b.txt").exists() && !sshd.home.join("d").exists());
    // `ls` after the put lists a.txt; `ls -l` after the rename shows b.txt and d.
    let after_put = stdout.split("sftp> rename").next().unwrap();
    assert!(after_put.contains("a.txt"), "{stdout}");
    let listing = stdout.split("sftp> ls -l").nth(1).unwrap().split("sftp> rm").next().unwrap();
    assert!(listing.contains("b.txt") && listing.lines().any(|l| l.starts_with('d') && l.ends_with(" d")), "{listing}");
}

#[test]
fn a_large_directory_lists_and_copies_whole() {
    // 3,000 entries: more than one SFTP message of OpenSSH's limit (256 KiB) holds.
    let sshd = Sshd::start();
    let big = sshd.home.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..3000 {
        std::fs::write(big.join(format!("a-file-with-a-rather-long-name-to-fill-the-listing-{i:05}")), "x").unwrap();
    }
    let out = sshd.sftp_batch("ls -1 big\n");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "sftp ls: {}", text(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.contains("a-file-with")).count(), 3000, "{}", text(&out.stderr));
    let mut scp = sshd.scp();
    scp.arg("-r").arg(format!("claworc@127.0.0.1:{}", big.display())).arg(sshd.client.join("copy"));
    let (ok, _, err) = run(scp);
    assert!(ok, "scp -r of the directory: {err}");
    assert_eq!(std::fs::read_dir(sshd.client.join("copy")).unwrap().count(), 3000);
}

#[test]
fn rsync_over_ssh_both_ways() {
    require("rsync");
    let sshd = Sshd::start();
    let src = sshd.client.join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    let mut up = Command::new("rsync");
    up.args(["-a", "-e", &sshd.ssh_command_line()]).arg(format!("{}/", src.display())).arg("claworc@127.0.0.1:tree/");
    let (ok, _, err) = run(up);
    assert!(ok, "rsync up: {err}");
    assert_eq!(std::fs::read_to_string(sshd.home.join("tree/a.txt")).unwrap(), "alpha\n");
    assert_eq!(std::fs::read(sshd.home.join("tree/sub/b.bin")).unwrap(), vec![7u8; 100_000]);
    let back = sshd.client.join("back");
    let mut down = Command::new("rsync");
    down.args(["-a", "-e", &sshd.ssh_command_line()]).arg("claworc@127.0.0.1:tree/").arg(&back);
    let (ok, _, err) = run(down);
    assert!(ok, "rsync down: {err}");
    assert_eq!(std::fs::read(back.join("sub/b.bin")).unwrap(), vec![7u8; 100_000]);
}

#[test]
fn local_forward_reaches_a_listed_port_only() {
    let allowed = echo_server();
    let unlisted = echo_server();
    let sshd = Sshd::start_with(Options { config: format!("forward-ports {allowed}\n"), ..Default::default() });
    // -L to the listed port: bytes go through and come back.
    let local = free_port();
    let mut c = sshd.ssh();
    c.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L", &format!("{local}:localhost:{allowed}"), "127.0.0.1"]);
    let mut tunnel = c.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", local)) {
            break s;
        }
        assert!(Instant::now() < deadline, "ssh -L never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"ping through the tunnel").unwrap();
    let mut buf = [0u8; 23];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
    let opened = sshd.wait_event("forward_opened", |_| true);
    assert_eq!((opened["host"].as_str(), opened["port"].as_u64()), (Some("localhost"), Some(allowed.into())));
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    // Unlisted port, another host: refused by the server (ssh -W uses direct-tcpip too).
    for target in [format!("localhost:{unlisted}"), format!("127.0.0.2:{allowed}"), format!("10.1.2.3:{allowed}")] {
        let mut c = sshd.ssh();
        c.args(["-W", &target, "127.0.0.1"]);
        let (ok, _, err) = run(c);
        assert!(!ok, "forward to {target} was allowed");
        assert!(err.contains("administratively prohibited"), "{target}: {err}");
    }
    let refused = sshd.wait_count("forward_refused", 3);
    assert_eq!(refused.len(), 3);
}

#[test]
fn remote_forwarding_and_agent_forwarding_are_refused() {
    require("ssh-agent");
    let sshd = Sshd::start();
    let mut c = sshd.ssh();
    c.args(["-o", "ExitOnForwardFailure=yes", "-R", "0:localhost:22", "127.0.0.1", "true"]);
    let (ok, _, err) = run(c);
    assert!(!ok && err.contains("remote port forwarding failed"), "{err}");
    sshd.wait_event("request_refused", |v| v["request"] == "tcpip-forward");
    // Agent forwarding: a real agent on the client side, so ssh asks for it.
    let sock = sshd.client.join("agent.sock");
    let mut agent = Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = sshd.ssh();
    c.env("SSH_AUTH_SOCK", &sock).args(["-A", "127.0.0.1", "echo agent=${SSH_AUTH_SOCK:-none}"]);
    let (ok, out, err) = run(c);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "agent=none");
    sshd.wait_event("request_refused", |v| v["request"] == "auth-agent-req@openssh.com");
}

#[test]
fn client_environment_only_term_lang_and_lc() {
    let sshd = Sshd::start();
    let mut c = sshd.ssh();
    c.args([
        "-o",
        "SetEnv=LD_PRELOAD=/tmp/evil.so PATH=/evil LANG=C.UTF-8 LC_TIME=C BASH_ENV=/tmp/x",
        "127.0.0.1",
        "echo \"LD=${LD_PRELOAD:-unset} PATH=$PATH LANG=$LANG LC_TIME=$LC_TIME BASH_ENV=${BASH_ENV:-unset}\"",
    ]);
    let (ok, out, err) = run(c);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "LD=unset PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 LC_TIME=C BASH_ENV=unset");
    for name in ["LD_PRELOAD", "PATH", "BASH_ENV"] {
        sshd.wait_event("request_refused", |v| v["request"] == "env" && v["detail"] == name);
    }
    assert!(!sshd.audit().iter().any(|v| v.to_string().contains("evil")), "an env value reached the audit log");
}

#[test]
fn wrong_key_no_key_password_and_keyboard_interactive_are_refused() {
    let sshd = Sshd::start();
    let wrong = keygen(&sshd.client, "wrong", "mallory");
    let denied = |mut c: Command, what: &str| {
        c.args(["127.0.0.1", "true"]);
        let (ok, _, err) = run(c);
        assert!(!ok, "{what}: logged in");
        assert!(err.contains("Permission denied (publickey)"), "{what}: {err}");
    };
    denied(sshd.ssh_with_key(&wrong.private), "wrong key");
    let mut c = sshd.ssh();
    c.args(["-o", "PubkeyAuthentication=no"]);
    denied(c, "no key");
    let mut c = sshd.ssh();
    c.args(["-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PasswordAuthentication=yes"]);
    denied(c, "password/keyboard-interactive");
    let refused = sshd.wait_event("login_refused", |v| v["fingerprint"] == wrong.fingerprint());
    assert_eq!(refused["reason"], "key not in authorized_keys");
    // Another login name is refused even with the right key.
    let mut c = Command::new("ssh");
    c.args(sshd.ssh_options(&sshd.user_key.private)).args(["-p", &sshd.port.to_string(), "-l", "root"]);
    denied(c, "user root");
    sshd.wait_event("login_refused", |v| v["user"] == "root" && v["reason"] == "unknown user");
}

#[test]
fn more_than_three_auth_tries_end_the_connection() {
    let sshd = Sshd::start();
    let wrong: Vec<_> = (0..3).map(|i| keygen(&sshd.client, &format!("w{i}"), "wrong")).collect();
    // Two wrong keys, then the right one: allowed (the third try).
    let mut c = Command::new("ssh");
    let mut opts = sshd.ssh_options(&wrong[0].private);
    opts.extend(["-i".into(), wrong[1].private.display().to_string()]);
    opts.extend(["-i".into(), sshd.user_key.private.display().to_string()]);
    c.args(&opts).args(["-p", &sshd.port.to_string(), "-l", "claworc", "127.0.0.1", "echo in"]);
    let (ok, out, err) = run(c);
    assert!(ok && out.trim() == "in", "{err}");
    // Three wrong keys first: disconnected before the right one is tried.
    let mut c = Command::new("ssh");
    let mut opts = sshd.ssh_options(&wrong[0].private);
    for k in [&wrong[1].private, &wrong[2].private, &sshd.user_key.private] {
        opts.extend(["-i".into(), k.display().to_string()]);
    }
    c.args(&opts).args(["-p", &sshd.port.to_string(), "-l", "claworc", "127.0.0.1", "echo in"]);
    let (ok, _, err) = run(c);
    assert!(!ok, "logged in after three failures");
    assert!(err.contains("Too many authentication failures"), "{err}");
}

#[test]
fn authorized_keys_rotation_takes_effect_without_restart() {
    let sshd = Sshd::start();
    let new = keygen(&sshd.client, "new", "bob@desk");
    let login = |sshd: &Sshd, key: &std::path::Path| {
        let mut c = sshd.ssh_with_key(key);
        c.args(["127.0.0.1", "echo in"]);
        run(c).0
    };
    assert!(login(&sshd, &sshd.user_key.private));
    assert!(!login(&sshd, &new.private));
    sshd.rotate_authorized_keys(&format!("{}\n", new.public_line));
    assert!(login(&sshd, &new.private), "the new key is not accepted after the Secret swap");
    assert!(!login(&sshd, &sshd.user_key.private), "the removed key still logs in");
    let accepted = sshd.wait_event("login_accepted", |v| v["comment"] == "bob@desk");
    assert_eq!(accepted["fingerprint"], new.fingerprint());
}

#[test]
fn an_idle_connection_is_closed_after_the_login_grace_time() {
    let sshd = Sshd::start_with(Options { config: "login-grace-time 2\n".into(), ..Default::default() });
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", sshd.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut banner = [0u8; 8];
    s.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10), "closed after {waited:?}");
    sshd.wait_event("disconnect", |v| v["reason"] == "login grace time exceeded");
    // A client that completes the key exchange but never authenticates too.
    let started = Instant::now();
    let mut c = Command::new("ssh");
    c.args(sshd.ssh_options(&sshd.user_key.private))
        .args(["-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"])
        .args(["-p", &sshd.port.to_string(), "-l", "claworc", "127.0.0.1", "true"]);
    // No terminal and no askpass: the password prompt waits on nothing until the server hangs up.
    let (ok, _, _) = run(c);
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unauthenticated_connections_are_capped() {
    let sshd =
        Sshd::start_with(Options { config: "max-startups 2\nlogin-grace-time 20\n".into(), ..Default::default() });
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", sshd.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        held.push(s);
    }
    let mut third = TcpStream::connect(("127.0.0.1", sshd.port)).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = Vec::new();
    let n = third.read_to_end(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "the third unauthenticated connection got {:?}", text(&b));
    sshd.wait_event("connection_refused", |_| true);
    // Once one goes away, a real login works again.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "echo in"]);
    let (ok, out, err) = run(c);
    assert!(ok && out.trim() == "in", "{err}");
}

#[test]
fn the_eleventh_session_on_a_connection_is_refused() {
    let sshd = Sshd::start();
    let ctl = sshd.client.join("ctl");
    let mux = |extra: &[&str]| {
        let mut c = sshd.ssh();
        c.args(["-S", ctl.to_str().unwrap()]).args(extra);
        c
    };
    let mut master = mux(&["-M", "-N", "127.0.0.1"]).stdin(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl.exists() {
        assert!(Instant::now() < deadline, "the ControlMaster never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sleepers: Vec<_> = (0..10)
        .map(|_| {
            mux(&["127.0.0.1", "sleep 60"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    sshd.wait_count("session_start", 10);
    // The master's connection refuses the 11th session; OpenSSH's mux client
    // then falls back to a connection of its own, where it runs.
    let master_conn = sshd.events("session_start")[0]["conn"].clone();
    let (_, out, err) = run(mux(&["127.0.0.1", "echo eleventh"]));
    assert!(err.contains("Session open refused by peer"), "{err}");
    let refused = sshd.wait_event("request_refused", |v| v["request"] == "session");
    assert_eq!(refused["conn"], master_conn);
    assert_eq!(refused["detail"], "max-sessions 10 reached");
    if out.trim() == "eleventh" {
        let ran = sshd.wait_event("session_start", |v| v["command"] == "echo eleventh");
        assert_ne!(ran["conn"], master_conn, "the 11th session ran on the master's connection");
    }
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let _ = master.kill();
    let _ = master.wait();
}

#[test]
fn ssh_audit_reports_no_failures() {
    require("ssh-audit");
    let sshd = Sshd::start();
    let out = Command::new("ssh-audit")
        .args(["--no-colors", "--skip-rate-test", "-p", &sshd.port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(report.contains("(kex) mlkem768x25519-sha256"), "{report}");
    assert!(report.contains("(key) ssh-ed25519"), "{report}");
    let fails: Vec<&str> = report.lines().filter(|l| l.contains("[fail]")).collect();
    assert!(fails.is_empty(), "ssh-audit [fail]:\n{}", fails.join("\n"));
    for weak in ["diffie-hellman", "ecdh-sha2", "ssh-rsa", "-ctr", "-cbc", "hmac-sha1", "umac", "(mac) hmac-sha2-256 "]
    {
        assert!(!report.contains(weak), "{weak} offered:\n{report}");
    }
}

#[test]
fn audit_lines_of_a_scripted_session() {
    let port = echo_server();
    let sshd = Sshd::start_with(Options { config: format!("forward-ports {port}\n"), ..Default::default() });
    let secret_content = "file-content-must-not-be-logged-4711";
    std::fs::write(sshd.client.join("up.txt"), secret_content).unwrap();
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "exit 3"]);
    assert_eq!(c.stdin(Stdio::null()).status().unwrap().code(), Some(3));
    assert!(sshd.sftp_batch("put up.txt up.txt\n").status.success());
    let mut c = sshd.ssh();
    c.args(["-W", &format!("localhost:{port}"), "127.0.0.1"]);
    let out = run_with_stdin(c, b"x");
    assert_eq!(out.stdout, b"x");

    let accepted = sshd.wait_event("login_accepted", |_| true);
    assert_eq!(accepted["user"], "claworc");
    assert_eq!(accepted["method"], "publickey");
    assert_eq!(accepted["fingerprint"], sshd.user_key.fingerprint());
    assert_eq!(accepted["comment"], "alice@laptop");
    assert!(accepted["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let conn = accepted["conn"].clone();
    let start = sshd.wait_event("session_start", |v| v["conn"] == conn);
    assert_eq!(
        (start["kind"].as_str(), start["command"].as_str(), start["pty"].as_bool()),
        (Some("exec"), Some("exit 3"), Some(false))
    );
    let end = sshd.wait_event("session_end", |v| v["conn"] == conn);
    assert_eq!(
        (end["kind"].as_str(), end["command"].as_str(), end["exit_status"].as_u64()),
        (Some("exec"), Some("exit 3"), Some(3))
    );
    assert!(end["duration_ms"].is_u64());
    let upload = sshd.wait_event("sftp_open_write", |_| true);
    assert_eq!(upload["path"].as_str(), sshd.home.join("up.txt").to_str());
    let sftp_end = sshd.wait_event("session_end", |v| v["kind"] == "subsystem");
    assert_eq!(sftp_end["command"], "sftp");
    let fwd = sshd.wait_event("forward_opened", |_| true);
    assert_eq!(fwd["port"].as_u64(), Some(port.into()));
    let disc = sshd.wait_event("disconnect", |v| v["conn"] == conn);
    assert_eq!(disc["reason"], "closed");
    for v in sshd.audit() {
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    }
    let all = sshd.audit().iter().map(|v| v.to_string()).collect::<String>();
    let key_b64 = sshd.user_key.public_line.split_whitespace().nth(1).unwrap();
    assert!(!all.contains(key_b64), "public key material in the audit log");
    assert!(!all.contains(secret_content), "file content in the audit log");
}

#[test]
fn an_image_without_a_shell_serves_programs_sftp_and_forwards() {
    let port = echo_server();
    let sshd =
        Sshd::start_with(Options { config: format!("forward-ports {port}\n"), no_shell: true, ..Default::default() });
    // exec: the command line split on whitespace, the program found on PATH.
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "echo  two   words"]);
    let (ok, out, err) = run(c);
    assert!(ok, "{err}");
    assert_eq!(out, "two words\n");
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "/usr/bin/env"]);
    let (ok, out, err) = run(c);
    assert!(ok && out.lines().any(|l| l == format!("HOME={}", sshd.home.display())), "{out}{err}");
    assert!(!out.contains("SHELL="), "{out}");
    // A missing program: 127, as a shell would say.
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "no-such-program"]);
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    // A shell: refused, saying why.
    let mut c = sshd.ssh();
    c.args(["-tt", "127.0.0.1"]);
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains("this image has no shell"), "{said}");
    // SFTP and forwards need no shell.
    std::fs::write(sshd.client.join("f.txt"), "no shell needed").unwrap();
    assert!(sshd.sftp_batch("put f.txt f.txt\n").status.success());
    assert_eq!(std::fs::read_to_string(sshd.home.join("f.txt")).unwrap(), "no shell needed");
    let mut c = sshd.ssh();
    c.args(["-W", &format!("localhost:{port}"), "127.0.0.1"]);
    assert_eq!(run_with_stdin(c, b"tunnel").stdout, b"tunnel");
}

#[test]
fn it_refuses_to_run_as_root() {
    assert!(support::is_root(), "this test checks the root refusal: run it as root");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(support::binary())
        .env("CLAWORC_SSHD_CONFIG", format!("port 0\nkeys-dir {}\n", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("refusing to run as root"), "{}", text(&out.stderr));
}

#[test]
fn a_bad_config_line_is_named() {
    let out = Command::new(support::binary()).env("CLAWORC_SSHD_CONFIG", "port 0\nlisten 0.0.0.0\n").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("line 2: unknown key \"listen\""), "{}", text(&out.stderr));
}

#[test]
fn an_unresponsive_client_is_dropped_after_its_keepalives() {
    let sshd = Sshd::start_with(Options {
        config: "client-alive-interval 1\nclient-alive-count-max 2\n".into(),
        ..Default::default()
    });
    let mut c = sshd.ssh();
    c.args(["127.0.0.1", "sleep 60"]);
    let mut client = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = sshd.wait_event("session_start", |_| true);
    // A frozen client: the kernel still ACKs, but nothing answers the keepalives.
    let pid = rustix::process::Pid::from_raw(client.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let frozen = Instant::now();
    let gone = sshd.wait_event("disconnect", |v| v["conn"] == start["conn"]);
    let _ = client.kill();
    let _ = client.wait();
    assert!(frozen.elapsed() < Duration::from_secs(15), "dropped after {:?}", frozen.elapsed());
    assert_ne!(gone["reason"], "closed", "{gone}");
}
