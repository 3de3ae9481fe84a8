//! `claworc-webhook render-sshd-config`: the claworc-sshd configuration the
//! sidecar gets, from a manifest's annotations, exactly what the server parses.

use std::process::Command;

use claworc_contract::claworc_sshd_config::SshdConfig;

fn render(args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_claworc-webhook"));
    c.arg("render-sshd-config").args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    c.stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn renders_claworc_sshds_config_from_the_manifests_annotations() {
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: box\n  annotations:\n    claworc.io/ssh-port: \"2022\"\n    claworc.io/forward-ports: \"6080\"\n";
    let out = render(&["-f", "-", "--annotation", "claworc.io/forward-ports=6080,8080"], manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let config = SshdConfig::parse(&text).unwrap_or_else(|e| panic!("claworc-sshd would refuse it: {e}\n{text}"));
    assert_eq!((config.port, config.forward_ports), (2022, vec![6080, 8080]), "{text}");
    assert_eq!((config.max_auth_tries, config.login_grace_time, config.max_sessions), (3, 30, 10));
    assert!(!text.contains("PermitOpen") && !text.contains("UsePAM"), "not OpenSSH's: {text}");
}

#[test]
fn a_bad_annotation_is_named() {
    let out = render(&["--annotation", "claworc.io/ssh-port=22"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claworc.io/ssh-port"));
}
