//! The hardened OpenSSH server config of the `claworc-sshd` sidecar.

use std::fmt::Write;

use crate::Settings;
use crate::names::{KEYS_DIR, RUN_DIR, SECRET_AUTHORIZED_KEYS, SECRET_HOST_KEY};

/// Where the sidecar finds its keys and writable directory. The pod uses
/// [`Paths::POD`]; tests point these at temporary directories.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    pub keys_dir: &'a str,
    pub run_dir: &'a str,
}

impl Paths<'static> {
    pub const POD: Paths<'static> = Paths { keys_dir: KEYS_DIR, run_dir: RUN_DIR };
}

/// Renders `sshd_config` (OpenSSH directive names) for `settings`.
///
/// sshd runs as the non-root `run-as-user`, so it can only log that user in,
/// and it listens on 127.0.0.1 only: clients arrive through the Kubernetes
/// port-forward API, which connects inside the pod's network namespace.
pub fn render(settings: &Settings, paths: Paths<'_>) -> String {
    let Paths { keys_dir, .. } = paths;
    let mut permit_open = String::new();
    for p in &settings.forward_ports {
        let _ = write!(permit_open, " localhost:{p} 127.0.0.1:{p}");
    }
    format!(
        "# claworc-sshd: rendered by claworc {version} from the claworc.io/* annotations; do not edit.
Port {port}
ListenAddress 127.0.0.1
HostKey {keys_dir}/{SECRET_HOST_KEY}
HostKeyAlgorithms ssh-ed25519
AuthorizedKeysFile {keys_dir}/{SECRET_AUTHORIZED_KEYS}
# The keys are a read-only Secret volume owned by root and the pod's fsGroup.
StrictModes no
PidFile none
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
PermitUserEnvironment no
# ~/.ssh/rc would run commands the workload's files choose at every login.
PermitUserRC no
MaxAuthTries 3
LoginGraceTime 30
MaxSessions 10
MaxStartups 10:30:60
ClientAliveInterval 30
ClientAliveCountMax 3
AllowTcpForwarding local
PermitOpen{permit_open}
AllowStreamLocalForwarding no
X11Forwarding no
AllowAgentForwarding no
PermitTunnel no
GatewayPorts no
Subsystem sftp internal-sftp
LogLevel INFO
",
        version = crate::VERSION,
        port = settings.ssh_port,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn renders_the_hardening_of_the_design() {
        let s = Settings::from_annotations("box", &BTreeMap::new()).unwrap();
        let config = render(&s, Paths::POD);
        for line in [
            "Port 2222",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "PermitUserRC no",
            "MaxAuthTries 3",
            "LoginGraceTime 30",
            "MaxSessions 10",
            "MaxStartups 10:30:60",
            "AllowTcpForwarding local",
            "PermitOpen localhost:3000 127.0.0.1:3000 localhost:8080 127.0.0.1:8080",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "PermitTunnel no",
            "GatewayPorts no",
            "HostKey /etc/claworc/ssh/ssh_host_ed25519_key",
            "Subsystem sftp internal-sftp",
        ] {
            assert!(config.lines().any(|l| l == line), "missing {line:?} in\n{config}");
        }
    }
}
