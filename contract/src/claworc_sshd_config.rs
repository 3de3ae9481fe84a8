//! The configuration of `claworc-sshd` (the russh-based SSH server), rendered
//! from [`Settings`] and parsed by the server: one type, one text format, both
//! directions here so the webhook and the server cannot disagree.
//!
//! The format is `sshd_config`-like: one `key value` per line, `#` comments.
//! The hardening limits are written out (not implied) so that
//! `claworc-webhook render-sshd-config` shows everything the server enforces.
//! The listen address is not configurable: the server binds 127.0.0.1 only.

use std::fmt::Write;

use crate::Settings;
use crate::names::{KEYS_DIR, SSH_USER};

/// What `claworc-sshd` serves and how strictly. Defaults are the contract's
/// hardening (../shared/DESIGN.md, "SSH hardening").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdConfig {
    /// Port on 127.0.0.1; 0 picks a free port (tests only; annotations allow 1024–65535).
    pub port: u16,
    /// Directory holding `authorized_keys` and `ssh_host_ed25519_key` (the Secret volume).
    pub keys_dir: String,
    /// The only login name accepted.
    pub user: String,
    /// The only `localhost`/`127.0.0.1` ports `direct-tcpip` may reach.
    pub forward_ports: Vec<u16>,
    /// Failed authentication attempts before the connection is closed.
    pub max_auth_tries: u32,
    /// Seconds an unauthenticated connection may stay open.
    pub login_grace_time: u32,
    /// Session channels open at once per connection.
    pub max_sessions: u32,
    /// Unauthenticated connections at once; more are closed on accept.
    pub max_startups: u32,
    /// Seconds of client silence before a keepalive is sent.
    pub client_alive_interval: u32,
    /// Unanswered keepalives before the connection is closed.
    pub client_alive_count_max: u32,
}

impl Default for SshdConfig {
    fn default() -> Self {
        SshdConfig {
            port: crate::annotations::DEFAULT_SSH_PORT,
            keys_dir: KEYS_DIR.to_string(),
            user: SSH_USER.to_string(),
            forward_ports: crate::annotations::DEFAULT_FORWARD_PORTS.to_vec(),
            max_auth_tries: 3,
            login_grace_time: 30,
            max_sessions: 10,
            max_startups: 10,
            client_alive_interval: 30,
            client_alive_count_max: 3,
        }
    }
}

/// A line of a `claworc-sshd` config that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("claworc-sshd config line {line}: unknown key {key:?}; the known keys are {known}")]
    UnknownKey { line: usize, key: String, known: String },
    #[error("claworc-sshd config line {line}: {key} {value:?} is not valid: {fix}")]
    Invalid { line: usize, key: &'static str, value: String, fix: &'static str },
    #[error("claworc-sshd config line {line}: {key} is given twice; keep one")]
    Duplicate { line: usize, key: &'static str },
}

const KEYS: &[&str] = &[
    "port",
    "keys-dir",
    "user",
    "forward-ports",
    "max-auth-tries",
    "login-grace-time",
    "max-sessions",
    "max-startups",
    "client-alive-interval",
    "client-alive-count-max",
];

impl SshdConfig {
    /// The config for a Deployment's parsed annotations, keys from the pod's Secret volume.
    pub fn from_settings(settings: &Settings) -> Self {
        SshdConfig { port: settings.ssh_port, forward_ports: settings.forward_ports.clone(), ..Self::default() }
    }

    /// Renders the config text that [`SshdConfig::parse`] reads back.
    pub fn render(&self) -> String {
        let ports: Vec<String> = self.forward_ports.iter().map(u16::to_string).collect();
        let mut out = format!(
            "# claworc-sshd: rendered by claworc {} from the claworc.io/* annotations; do not edit.\n\
             # Listens on 127.0.0.1 only; public keys only; ed25519 host key.\n",
            crate::VERSION
        );
        let _ = write!(
            out,
            "port {}\nkeys-dir {}\nuser {}\nforward-ports {}\nmax-auth-tries {}\nlogin-grace-time {}\n\
             max-sessions {}\nmax-startups {}\nclient-alive-interval {}\nclient-alive-count-max {}\n",
            self.port,
            self.keys_dir,
            self.user,
            ports.join(","),
            self.max_auth_tries,
            self.login_grace_time,
            self.max_sessions,
            self.max_startups,
            self.client_alive_interval,
            self.client_alive_count_max,
        );
        out
    }

    /// Parses config text; keys not given keep their defaults. Every line is
    /// checked; the first bad one is reported with its number and the fix.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut c = SshdConfig::default();
        let mut seen = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            let (key, value) = raw.split_once(char::is_whitespace).unwrap_or((raw, ""));
            let value = value.trim();
            let Some(key) = KEYS.iter().copied().find(|k| *k == key) else {
                return Err(ConfigError::UnknownKey { line, key: key.to_string(), known: KEYS.join(", ") });
            };
            if seen.contains(&key) {
                return Err(ConfigError::Duplicate { line, key });
            }
            seen.push(key);
            let bad = |fix| ConfigError::Invalid { line, key, value: value.to_string(), fix };
            match key {
                "port" => c.port = value.parse().map_err(|_| bad("use a port from 0 to 65535"))?,
                "keys-dir" => {
                    if !value.starts_with('/') {
                        return Err(bad("use an absolute directory path"));
                    }
                    c.keys_dir = value.to_string();
                }
                "user" => {
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                        return Err(bad("use a login name: letters, digits, '-', '_', '.'"));
                    }
                    c.user = value.to_string();
                }
                "forward-ports" => {
                    c.forward_ports = if value.is_empty() {
                        Vec::new()
                    } else {
                        value
                            .split(',')
                            .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p > 0))
                            .collect::<Option<Vec<u16>>>()
                            .ok_or_else(|| bad("use a comma-separated list of ports from 1 to 65535, or nothing"))?
                    }
                }
                _ => {
                    let n: u32 =
                        value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("use a whole number above 0"))?;
                    match key {
                        "max-auth-tries" => c.max_auth_tries = n,
                        "login-grace-time" => c.login_grace_time = n,
                        "max-sessions" => c.max_sessions = n,
                        "max-startups" => c.max_startups = n,
                        "client-alive-interval" => c.client_alive_interval = n,
                        _ => c.client_alive_count_max = n,
                    }
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn renders_the_annotations_and_the_hardening_and_reads_them_back() {
        let annotations = BTreeMap::from([
            (crate::annotations::SSH_PORT.to_string(), "2022".to_string()),
            (crate::annotations::FORWARD_PORTS.to_string(), "5900".to_string()),
        ]);
        let s = Settings::from_annotations("box", &annotations).unwrap();
        let config = SshdConfig::from_settings(&s);
        let text = config.render();
        for line in [
            "port 2022",
            "keys-dir /etc/claworc/ssh",
            "user claworc",
            "forward-ports 5900",
            "max-auth-tries 3",
            "login-grace-time 30",
            "max-sessions 10",
            "max-startups 10",
            "client-alive-interval 30",
            "client-alive-count-max 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(SshdConfig::parse(&text).unwrap(), config);
    }

    #[test]
    fn a_bad_line_is_named_with_its_fix() {
        let e = SshdConfig::parse("port 2222\nlisten 0.0.0.0:22\n").unwrap_err();
        assert!(e.to_string().contains("line 2: unknown key \"listen\""), "{e}");
        let e = SshdConfig::parse("forward-ports 80,x\n").unwrap_err();
        assert!(e.to_string().contains("forward-ports \"80,x\"") && e.to_string().contains("comma-separated"), "{e}");
        let e = SshdConfig::parse("max-sessions 0\n").unwrap_err();
        assert!(e.to_string().contains("above 0"), "{e}");
        let e = SshdConfig::parse("port 1\nport 2\n").unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        assert!(SshdConfig::parse("keys-dir relative\n").is_err());
        assert_eq!(SshdConfig::parse("forward-ports\n").unwrap().forward_ports, Vec::<u16>::new());
    }
}
