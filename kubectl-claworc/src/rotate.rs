//! `rotate-keys`: replace the client key (and with `--host-key` the host key)
//! without a moment in which the key store holds no working key.
//!
//! Steps (each one idempotent, so re-running after a failure finishes the job):
//! 1. a new client key is generated and kept as `id_ed25519.new` in the key store
//!    (a pending key from an earlier, interrupted run is reused);
//! 2. it is added to the Secret's `authorized_keys` (old + new);
//! 3. an SSH login with exactly the new key ([`crate::session::prove_login`]) shows it works;
//! 4. the old key is removed from `authorized_keys`;
//! 5. the new key replaces `id_ed25519` locally (atomic rename);
//! 6. the Deployment gets `claworc.io/keys-rotated-at` (RFC 3339, UTC).
//!
//! Between 4 and 5 the working key is `id_ed25519.new`: [`KeyStore::usable_client_keys`]
//! returns both, newest first, for the SSH side to try.

use claworc_contract::{annotations as ann, names};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::events::{self, Lifecycle};
use crate::keys::{self, PublicKey};
use crate::keystore::{InstanceId, KeyStore};
use crate::transport::Login;

/// What `kubectl claworc rotate-keys` was asked for.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    pub name: String,
    /// Also replace the host key.
    pub host_key: bool,
    /// For the login that proves the new key.
    pub login: Login,
}

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data.as_ref()?.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

fn authorized(s: &Secret) -> Vec<PublicKey> {
    secret_text(s, names::SECRET_AUTHORIZED_KEYS).map(|t| keys::authorized_keys(&t)).unwrap_or_default()
}

/// `authorized_keys` with `add` appended (if missing) and `remove` taken out.
pub fn edit_authorized_keys(
    current: &[PublicKey],
    add: Option<&PublicKey>,
    remove: Option<&PublicKey>,
) -> Vec<PublicKey> {
    let mut out: Vec<PublicKey> =
        current.iter().filter(|k| remove.is_none_or(|r| !keys::same(k, r))).cloned().collect();
    if let Some(a) = add
        && !out.iter().any(|k| keys::same(k, a))
    {
        out.push(a.clone());
    }
    out
}

/// `2026-01-31T12:00:00Z`.
pub fn rfc3339_now() -> String {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is in range").to_string()
}

/// Patches Secret data keys, failing on a concurrent change (resourceVersion).
async fn patch_secret(api: &Api<Secret>, s: &Secret, entries: &[(&str, String)]) -> Result<Secret> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let mut data = serde_json::Map::new();
    for (k, v) in entries {
        data.insert(
            (*k).to_string(),
            serde_json::to_value(ByteString(v.clone().into_bytes())).expect("bytes serialize"),
        );
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": s.metadata.resource_version},
        "data": data,
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(e, format!("secret {name:?}")).context("updating the keys (re-run to finish)"))
}

pub async fn rotate(ctx: &Ctx, args: &RotateOptions) -> Result<()> {
    crate::input::validate_name("instance name", &args.name)?;
    let ks = KeyStore::open_default()?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let what = format!("instance {:?} in namespace {:?}", args.name, ctx.namespace);
    let d = deployments.get(&args.name).await.map_err(|e| Error::kube(e, &what))?;
    crate::objects::ensure_instance(&d)?;
    let secret_name = ann::ssh_secret(d.metadata.annotations.as_ref(), &args.name);
    let id = &InstanceId::new(&ctx.cluster, &ctx.namespace, &args.name);
    let get_secret =
        || async { secrets.get(&secret_name).await.map_err(|e| Error::kube(e, format!("secret {secret_name:?}"))) };

    // 1. the pending key
    let old = ks.load_client_key(id)?;
    let new = match ks.load_pending_key(id)? {
        Some(k) => {
            eprintln!("resuming an unfinished rotation of {}", args.name);
            k
        }
        None => {
            let k = keys::generate(&crate::instance::client_comment(id))?;
            ks.save_pending_key(id, &k)?;
            k
        }
    };
    // 2. old + new
    let s = get_secret().await?;
    let current = authorized(&s);
    let with_new = edit_authorized_keys(&current, Some(new.public_key()), None);
    let s = if with_new.len() != current.len() {
        patch_secret(&secrets, &s, &[(names::SECRET_AUTHORIZED_KEYS, keys::render_authorized_keys(&with_new))]).await?
    } else {
        s
    };
    // 3. prove
    // A real SSH login with exactly the new key, retried while the kubelet syncs
    // the Secret volume.
    crate::session::prove_login(ctx, &args.name, &args.login, &new)
        .await
        .map_err(|e| e.context("the new key does not work yet (re-run to finish)"))?;
    // 4. remove the old key
    if let Some(old) = old.as_ref().filter(|o| !keys::same(o.public_key(), new.public_key())) {
        let current = authorized(&s);
        let without_old = edit_authorized_keys(&current, None, Some(old.public_key()));
        if without_old.len() != current.len() {
            patch_secret(&secrets, &s, &[(names::SECRET_AUTHORIZED_KEYS, keys::render_authorized_keys(&without_old))])
                .await?;
        }
    }
    // 5. local swap
    ks.promote_pending_key(id)?;

    // optional: the host key
    let mut annotations = serde_json::Map::new();
    let now = rfc3339_now();
    annotations.insert(ann::KEYS_ROTATED_AT.into(), now.clone().into());
    let mut new_host = None;
    if args.host_key {
        // A host key from an interrupted run is kept in the key store's host key slot.
        let host = match ks.load_host_key(id)? {
            Some(h) => h,
            None => {
                let h = keys::generate(&format!("claworc host {}", args.name))?;
                ks.save_host_key(id, &h)?;
                h
            }
        };
        let s = get_secret().await?;
        patch_secret(
            &secrets,
            &s,
            &[
                (names::SECRET_HOST_KEY, keys::private_openssh(&host)?),
                (names::SECRET_HOST_KEY_PUB, format!("{}\n", keys::public_openssh(host.public_key()))),
            ],
        )
        .await?;
        annotations.insert(ann::HOST_KEY_FINGERPRINT.into(), keys::fingerprint(host.public_key()).into());
        new_host = Some(host);
    }
    // 6. annotate (and restart for a new host key: sshd reads it at start)
    let mut patch = serde_json::json!({"metadata": {"annotations": annotations}});
    if new_host.is_some() {
        patch["spec"] =
            serde_json::json!({"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}});
    }
    deployments
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(e, &what).context("annotating (re-run to finish)"))?;
    let mut summary = format!("keys of {} rotated (client key {}", args.name, keys::fingerprint(new.public_key()));
    if let Some(h) = new_host {
        ks.pin_host_key(id, h.public_key())?;
        ks.remove_host_key(id)?;
        eprintln!("new host key {} pinned; the instance restarts to load it", keys::fingerprint(h.public_key()));
        summary.push_str(&format!(", host key {}", keys::fingerprint(h.public_key())));
    }
    summary.push(')');
    let record = events::instance_record(&ctx.namespace, &args.name, d.metadata.uid.clone(), Lifecycle::KeysRotated);
    events::record(ctx, &ctx.namespace, &record, &summary).await;
    crate::output::line(format_args!(
        "keys of {} rotated at {now} (client key {})",
        args.name,
        keys::fingerprint(new.public_key())
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_authorized_keys() {
        let (a, b, c) = (keys::generate("a").unwrap(), keys::generate("b").unwrap(), keys::generate("c").unwrap());
        let cur = vec![a.public_key().clone(), b.public_key().clone()];
        let added = edit_authorized_keys(&cur, Some(c.public_key()), None);
        assert_eq!(added.len(), 3);
        assert_eq!(edit_authorized_keys(&added, Some(c.public_key()), None).len(), 3, "idempotent");
        let removed = edit_authorized_keys(&added, None, Some(a.public_key()));
        assert_eq!(removed.len(), 2);
        assert!(keys::same(&removed[0], b.public_key()), "other people's keys stay");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        let t = rfc3339_now();
        assert_eq!(t.len(), "2026-01-31T12:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn usable_keys_prefer_the_pending_one() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = KeyStore::at(tmp.path());
        let id = InstanceId::new("c", "n", "x");
        let (old, new) = (keys::generate("o").unwrap(), keys::generate("n").unwrap());
        ks.save_client_key(&id, &old).unwrap();
        assert_eq!(ks.usable_client_keys(&id).unwrap().len(), 1);
        ks.save_pending_key(&id, &new).unwrap();
        let u = ks.usable_client_keys(&id).unwrap();
        assert!(keys::same(u[0].public_key(), new.public_key()));
        assert_eq!(u.len(), 2);
    }
}
