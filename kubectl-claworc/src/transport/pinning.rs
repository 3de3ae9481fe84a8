//! Host-key pinning on the plugin's own connections: the russh handler that
//! accepts only what [`crate::hostkey`] allows, the expectation it checks against
//! (the key store's pin, else the Deployment's fingerprint), and pinning a key
//! accepted from the annotation.

use std::sync::{Arc, Mutex};

use claworc_contract::annotations::HOST_KEY_FINGERPRINT;
use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};

use super::credentials::instance_id;
use super::pod::Instance;
use crate::context::Ctx;
use crate::error::Result;
use crate::hostkey::{self, Decision, Expectation};
use crate::keystore::KeyStore;

/// The russh client handler: accepts only the host key the [`Expectation`] allows
/// (the local pin, else the Deployment's fingerprint), and keeps the decision.
pub struct PinnedHostKey {
    expect: Expectation,
    outcome: Arc<Mutex<Option<(PublicKey, Decision)>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let presented = crate::keys::fingerprint(key);
        let decision = hostkey::check(&self.expect, &presented);
        let ok = !matches!(decision, Decision::Refused(_));
        *self.outcome.lock().expect("host-key outcome") = Some((key.clone(), decision));
        Ok(ok)
    }
}

impl PinnedHostKey {
    pub(super) fn new(expect: Expectation, outcome: Arc<Mutex<Option<(PublicKey, Decision)>>>) -> Self {
        PinnedHostKey { expect, outcome }
    }
}

/// What the key store and the Deployment say about the host key.
pub fn expectation(ctx: &Ctx, store: &KeyStore, instance: &Instance, repin: bool) -> Result<Expectation> {
    let pin = store.lookup_host_key(&instance_id(ctx, &instance.name))?.map(|k| crate::keys::fingerprint(&k));
    Ok(Expectation { instance: instance.id(), pin, annotation: instance.settings.host_key_fingerprint.clone(), repin })
}

/// Pins `key` when the decision was to take it from the annotation, and says so on stderr.
pub fn pin_if_accepted(
    ctx: &Ctx,
    store: &KeyStore,
    instance: &Instance,
    key: &PublicKey,
    decision: &Decision,
) -> Result<()> {
    let Decision::PinFromAnnotation { fingerprint, replaced } = decision else {
        return Ok(());
    };
    store.pin_host_key(&instance_id(ctx, &instance.name), key)?;
    match replaced {
        Some(old) => eprintln!(
            "re-pinned the host key of {} (--repin): {old} -> {fingerprint}, as the Deployment's \
             {HOST_KEY_FINGERPRINT} says; pins in {}",
            instance.id(),
            store.known_hosts_path().display()
        ),
        None => eprintln!(
            "pinned the host key {fingerprint} of {} from the Deployment's {HOST_KEY_FINGERPRINT}; \
             pins in {}",
            instance.id(),
            store.known_hosts_path().display()
        ),
    }
    Ok(())
}
