//! The workspace's claworc-sshd harness (`claworc-test-support`), configured exactly
//! as the webhook configures the sidecar: the config rendered by
//! `claworc_contract::claworc_sshd_config` from the instance's annotations (the
//! keys directory pointing at the harness's Secret volume), with the keys as the
//! plugin's types. Shared by the loopback tests and the tunnel benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;

use claworc_contract::Settings;
use claworc_contract::annotations as a;
use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::names::{SECRET_AUTHORIZED_KEYS, SECRET_HOST_KEY, SECRET_HOST_KEY_PUB, SSH_USER};
pub use claworc_test_support::free_port;
use claworc_test_support::{Options, Sshd as Harness};
use kubectl_claworc::keys;
use russh::keys::{PrivateKey, PublicKey};

pub struct Sshd {
    harness: Harness,
    pub user: String,
    pub host_key: PrivateKey,
    pub client_key: PrivateKey,
    pub client_key_file: PathBuf,
    pub dir: PathBuf,
}

impl Deref for Sshd {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.harness
    }
}

impl Sshd {
    /// Starts claworc-sshd allowing forwards to `forward_ports` only.
    pub fn start(forward_ports: &[u16]) -> Sshd {
        let ports: Vec<String> = forward_ports.iter().map(u16::to_string).collect();
        let annotations = BTreeMap::from([
            (a::SSH_PORT.to_string(), free_port().to_string()),
            (a::FORWARD_PORTS.to_string(), ports.join(",")),
        ]);
        let settings = Settings::from_annotations("box", &annotations).unwrap();
        let harness = Harness::start_with(Options {
            full_config: Some(Box::new(move |keys_dir| {
                SshdConfig { keys_dir: keys_dir.to_str().unwrap().into(), ..SshdConfig::from_settings(&settings) }
                    .render()
            })),
            ..Options::default()
        });
        let load = |path: &std::path::Path| russh::keys::load_secret_key(path, None).unwrap();
        Sshd {
            user: SSH_USER.to_string(),
            host_key: load(&harness.host_key.private),
            client_key: load(&harness.user_key.private),
            client_key_file: harness.user_key.private.clone(),
            dir: harness.dir.path().to_path_buf(),
            harness,
        }
    }

    /// Writes the Secret's keys (as a rotation does).
    pub fn write_keys(&self, host_key: &PrivateKey, authorized: &[&PublicKey]) {
        let auth = keys::render_authorized_keys(authorized.iter().copied());
        let private = keys::private_openssh(host_key).unwrap();
        let public = format!("{}\n", keys::public_openssh(host_key.public_key()));
        self.harness.write_secret(&[
            (SECRET_AUTHORIZED_KEYS, &auth),
            (SECRET_HOST_KEY, &private),
            (SECRET_HOST_KEY_PUB, &public),
        ]);
    }

    pub fn host_fingerprint(&self) -> String {
        keys::fingerprint(self.host_key.public_key())
    }
}
