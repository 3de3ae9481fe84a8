//! `create` and `delete`.
//!
//! `create` generates the client and host key pairs on this machine, stores the
//! client private key in the key store, creates the Secret, the claims and the
//! Deployment, and pins the host key. If any step fails (or Ctrl-C), the objects it
//! created are deleted and the key store is put back; if even that fails, the error
//! names exactly what remains.

use std::sync::Mutex;
use std::time::Duration;

use claworc_contract::{annotations as ann, names};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use crate::context::{Ctx, Global};
use crate::error::{Error, Result, is_not_found};
use crate::events::{self, Lifecycle};
use crate::keys::{self, PrivateKey};
use crate::keystore::{InstanceId, KeyStore};
use crate::objects::{self, InstanceSpec, Objects};
use crate::output::Format;
use crate::rollout;

/// What `kubectl claworc create` was asked for.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub name: String,
    pub image: String,
    pub forward_ports: Vec<u16>,
    /// `NAME=PATH:SIZE` each.
    pub volumes: Vec<String>,
    /// `K=V` each.
    pub env: Vec<String>,
    pub wait: bool,
    /// How long `wait` waits.
    pub timeout: Duration,
    /// The format of `--dry-run=client`.
    pub output: Format,
}

/// What `kubectl claworc delete` was asked for.
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub name: String,
    pub keep_volumes: bool,
    pub keep_host_key: bool,
}

/// `kind/name` of an object this command created (for rollback and reports).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Made {
    Secret(String),
    Claim(String),
    Deployment(String),
}

impl std::fmt::Display for Made {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Made::Secret(n) => write!(f, "secret/{n}"),
            Made::Claim(n) => write!(f, "persistentvolumeclaim/{n}"),
            Made::Deployment(n) => write!(f, "deployment/{n}"),
        }
    }
}

fn spec_of(args: &CreateOptions, namespace: Option<&str>) -> Result<InstanceSpec> {
    InstanceSpec::new(&args.name, namespace, &args.image, &args.forward_ports, &args.volumes, &args.env)
}

/// The comment of an instance's client key (`claworc CLUSTER/NAMESPACE/NAME`).
pub(crate) fn client_comment(id: &InstanceId) -> String {
    format!("claworc {}", id.host_pattern().trim_start_matches("claworc/"))
}

/// `create --dry-run=client`: prints the objects, touches nothing (reads the
/// kubeconfig for the namespace, and the key store for a kept host key).
pub fn dry_run(global: &Global, args: &CreateOptions) -> Result<()> {
    let (namespace, scope) = crate::context::resolve_offline(global);
    let spec = spec_of(args, namespace.as_deref())?;
    let kept = match (&scope, &namespace) {
        (Some(c), Some(ns)) => KeyStore::open_default()
            .ok()
            .and_then(|ks| ks.load_host_key(&InstanceId::new(c, ns, &spec.name)).ok().flatten()),
        _ => None,
    };
    let id =
        InstanceId::new(scope.as_deref().unwrap_or("cluster"), namespace.as_deref().unwrap_or("default"), &spec.name);
    let client = keys::generate(&client_comment(&id))?;
    let host = match kept {
        Some(k) => k,
        None => keys::generate(&format!("claworc host {}", spec.name))?,
    };
    let objects = objects::build(&spec, client.public_key(), &host)?;
    let text = match args.output {
        Format::Yaml => {
            let mut text = format!(
                "# claworc instance {:?}: apply with `kubectl apply -f`. It holds private keys: keep it secret.\n\
                 # The client private key below matches authorized_keys; save it (mode 0600) to log in, e.g.\n\
                 # as {}.\n",
                spec.name,
                KeyStore::at("$XDG_CONFIG_HOME/claworc").client_key_path(&id).display()
            );
            for line in keys::private_openssh(&client)?.lines() {
                text += &format!("#   {line}\n");
            }
            text + &objects.to_yaml()
        }
        Format::Json => objects.to_json() + "\n",
    };
    crate::output::stdout(&text);
    Ok(())
}

pub async fn create(ctx: &Ctx, args: &CreateOptions) -> Result<()> {
    let spec = spec_of(args, Some(&ctx.namespace))?;
    let ks = KeyStore::open_default()?;
    let id = InstanceId::new(&ctx.cluster, &ctx.namespace, &spec.name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let what = format!("instance {:?} in namespace {:?}", spec.name, ctx.namespace);
    if deployments.get_opt(&spec.name).await.map_err(|e| Error::kube(e, &what))?.is_some() {
        return Err(Error::already_exists(format!(
            "{what} already exists: pick another name, or `kubectl claworc delete {}` first",
            spec.name
        )));
    }

    let snapshot = ks.snapshot(&id)?;
    let kept_host = ks.load_host_key(&id)?;
    let reused_host = kept_host.is_some();
    let client = keys::generate(&client_comment(&id))?;
    let host = match kept_host {
        Some(k) => k,
        None => keys::generate(&format!("claworc host {}", spec.name))?,
    };
    let objects = objects::build(&spec, client.public_key(), &host)?;

    let made = Mutex::new(Vec::new());
    let steps = create_steps(ctx, &ks, &id, &objects, &client, &host, &made);
    let result = tokio::select! {
        r = steps => r,
        _ = tokio::signal::ctrl_c() => Err(Error::other("interrupted")),
    };
    if let Err(e) = result {
        let made = made.into_inner().unwrap_or_default();
        let remains = rollback(ctx, &made).await;
        let store = ks.restore(&snapshot);
        let mut msg = format!("create {}: {e}", spec.name);
        if remains.is_empty() {
            msg.push_str("; nothing was left behind");
        } else {
            msg.push_str(&format!(
                "; could not delete {} — remove with `kubectl delete -n {} {}`",
                remains.join(", "),
                ctx.namespace,
                remains.join(" ")
            ));
        }
        if let Err(se) = store {
            msg.push_str(&format!(
                "; the key store could not be restored ({se}): check {}",
                ks.instance_dir(&id).display()
            ));
        }
        return Err(e.with_message(msg));
    }
    if reused_host {
        // It now lives in the Secret.
        let _ = ks.remove_host_key(&id);
    }
    eprintln!(
        "instance {} created in namespace {} (host key {}{}; client key {})",
        spec.name,
        ctx.namespace,
        keys::fingerprint(host.public_key()),
        if reused_host { ", reused" } else { "" },
        ks.client_key_path(&id).display()
    );
    let uid = deployments.get_opt(&spec.name).await.ok().flatten().and_then(|d| d.metadata.uid);
    let record = events::instance_record(&ctx.namespace, &spec.name, uid, Lifecycle::Created);
    let summary = format!(
        "instance {} created (image {}, host key {}, client key {})",
        spec.name,
        spec.image,
        keys::fingerprint(host.public_key()),
        keys::fingerprint(client.public_key())
    );
    events::record(ctx, &ctx.namespace, &record, &summary).await;
    if args.wait {
        rollout::wait_rollout(ctx, &spec.name, args.timeout).await?;
    }
    crate::output::line(format_args!("deployment.apps/{} created", spec.name));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn create_steps(
    ctx: &Ctx,
    ks: &KeyStore,
    id: &InstanceId,
    objects: &Objects,
    client: &PrivateKey,
    host: &PrivateKey,
    made: &Mutex<Vec<Made>>,
) -> Result<()> {
    let pp = PostParams { field_manager: Some("kubectl-claworc".into()), ..Default::default() };
    ks.save_client_key(id, client)?;
    ks.pin_host_key(id, host.public_key())?;

    let record = |m: Made| made.lock().expect("lock").push(m);
    let forget = |m: &Made| made.lock().expect("lock").retain(|x| x != m);
    // Record before the call (a dropped call may still have created it); forget on 409
    // (it was there before us, and is not ours to delete).
    async fn step<K, F>(
        api: &Api<K>,
        pp: &PostParams,
        obj: &K,
        m: Made,
        record: F,
        forget: impl Fn(&Made),
    ) -> Result<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
        F: Fn(Made),
    {
        record(m.clone());
        match api.create(pp, obj).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if crate::error::is_conflict(&e) {
                    forget(&m);
                }
                if is_not_found(&e) {
                    // Creating in a missing namespace.
                    forget(&m);
                    let ns = obj.meta().namespace.clone().unwrap_or_default();
                    return Err(Error::not_found(format!(
                        "namespace {ns:?} not found: create it (`kubectl create namespace {ns}`) or pick another with -n"
                    )));
                }
                Err(Error::kube(e, &m))
            }
        }
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = objects.secret.metadata.name.clone().unwrap_or_default();
    ctx.debug(format!("creating secret/{name}"));
    step(&secrets, &pp, &objects.secret, Made::Secret(name), record, forget).await?;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    for c in &objects.claims {
        let name = c.metadata.name.clone().unwrap_or_default();
        ctx.debug(format!("creating persistentvolumeclaim/{name}"));
        step(&claims, &pp, c, Made::Claim(name), record, forget).await?;
    }

    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = objects.deployment.metadata.name.clone().unwrap_or_default();
    ctx.debug(format!("creating deployment/{name}"));
    step(&deployments, &pp, &objects.deployment, Made::Deployment(name), record, forget).await
}

/// Deletes what `create` made, newest first; returns what could not be deleted.
async fn rollback(ctx: &Ctx, made: &[Made]) -> Vec<String> {
    let dp = DeleteParams::background();
    let mut remains = Vec::new();
    for m in made.iter().rev() {
        let r = match m {
            Made::Deployment(n) => {
                Api::<Deployment>::namespaced(ctx.client.clone(), &ctx.namespace).delete(n, &dp).await.map(|_| ())
            }
            Made::Claim(n) => Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ctx.namespace)
                .delete(n, &dp)
                .await
                .map(|_| ()),
            Made::Secret(n) => {
                Api::<Secret>::namespaced(ctx.client.clone(), &ctx.namespace).delete(n, &dp).await.map(|_| ())
            }
        };
        match r {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(_) => remains.push(m.to_string()),
        }
    }
    remains
}

pub async fn delete(ctx: &Ctx, args: &DeleteOptions) -> Result<()> {
    crate::input::validate_name("instance name", &args.name)?;
    let ks = KeyStore::open_default()?;
    let id = InstanceId::new(&ctx.cluster, &ctx.namespace, &args.name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let what = format!("instance {:?} in namespace {:?}", args.name, ctx.namespace);

    let deployment = deployments.get_opt(&args.name).await.map_err(|e| Error::kube(e, &what))?;
    if let Some(d) = &deployment {
        objects::ensure_instance(d)?;
    }
    let secret_name = ann::ssh_secret(deployment.as_ref().and_then(|d| d.metadata.annotations.as_ref()), &args.name);
    let secret = secrets.get_opt(&secret_name).await.map_err(|e| Error::kube(e, format!("secret {secret_name:?}")))?;
    let selector = format!("{}={},{}={}", names::LABEL_INSTANCE, args.name, names::LABEL_MANAGED_BY, names::MANAGED_BY);
    let pvcs = claims
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(e, "persistentvolumeclaims"))?
        .items;
    let local = ks.load_client_key(&id)?.is_some() || ks.lookup_host_key(&id)?.is_some();
    if deployment.is_none() && secret.is_none() && (pvcs.is_empty() || args.keep_volumes) && !local {
        return Err(Error::not_found(format!("{what} not found (see `kubectl claworc list`)")));
    }

    if args.keep_host_key {
        let host = secret.as_ref().and_then(|s| {
            let b = s.data.as_ref()?.get(names::SECRET_HOST_KEY)?;
            keys::parse_private(std::str::from_utf8(&b.0).ok()?).ok()
        });
        match host {
            Some(h) => {
                ks.save_host_key(&id, &h)?;
                ks.pin_host_key(&id, h.public_key())?;
            }
            None if ks.load_host_key(&id)?.is_some() => {}
            None => {
                return Err(Error::not_found(format!(
                    "--keep-host-key: secret {secret_name:?} has no readable {} to keep: run without --keep-host-key",
                    names::SECRET_HOST_KEY
                )));
            }
        }
    }

    let dp = DeleteParams::background();
    let mut deleted = Vec::new();
    if deployment.is_some() {
        ignore_404(deployments.delete(&args.name, &dp).await.map(|_| ()), &what)?;
        deleted.push(format!("deployment.apps/{}", args.name));
    }
    // Only a Secret that `create` made: `claworc.io/ssh-secret` may name any Secret.
    let made_here = |s: &Secret| {
        let labels = s.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        label(names::LABEL_INSTANCE) == Some(args.name.as_str())
            && label(names::LABEL_MANAGED_BY) == Some(names::MANAGED_BY)
    };
    match &secret {
        Some(s) if made_here(s) => {
            ignore_404(secrets.delete(&secret_name, &dp).await.map(|_| ()), format!("secret {secret_name:?}"))?;
            deleted.push(format!("secret/{secret_name}"));
        }
        Some(_) => eprintln!(
            "kept secret/{secret_name}: kubectl claworc did not make it (no labels {}={}, {}={}); delete it with kubectl if it is no longer needed",
            names::LABEL_INSTANCE,
            args.name,
            names::LABEL_MANAGED_BY,
            names::MANAGED_BY
        ),
        None => {}
    }
    if !args.keep_volumes {
        for p in &pvcs {
            let n = p.metadata.name.clone().unwrap_or_default();
            ignore_404(claims.delete(&n, &dp).await.map(|_| ()), format!("persistentvolumeclaim {n:?}"))?;
            deleted.push(format!("persistentvolumeclaim/{n}"));
        }
    }
    ks.remove_client_key(&id)?;
    ks.remove_pending_key(&id)?;
    if !args.keep_host_key {
        ks.unpin_host_key(&id)?;
        ks.remove_host_key(&id)?;
    }
    ks.remove_instance_dir_if_empty(&id);
    // Its OpenSSH Host block (`ssh-config --write`) would only fail now.
    if let Err(e) = crate::sshconfig::forget(&id) {
        eprintln!("warning: could not remove the instance's Host block from ~/.ssh: {}", e.one_line());
    }
    if deleted.is_empty() {
        crate::output::line(format_args!("no objects of {} were left in the cluster; local keys removed", args.name));
    } else {
        let uid = deployment.as_ref().and_then(|d| d.metadata.uid.clone());
        let record = events::instance_record(&ctx.namespace, &args.name, uid, Lifecycle::Deleted);
        events::record(
            ctx,
            &ctx.namespace,
            &record,
            &format!("instance {} deleted ({})", args.name, deleted.join(", ")),
        )
        .await;
    }
    for d in deleted {
        crate::output::line(format_args!("{d} deleted"));
    }
    if args.keep_volumes && !pvcs.is_empty() {
        let kept: Vec<String> = pvcs.iter().filter_map(|p| p.metadata.name.clone()).collect();
        eprintln!("kept volumes: {}", kept.join(", "));
    }
    if args.keep_host_key {
        eprintln!("kept the host key of {} locally: `kubectl claworc create {}` reuses it", args.name, args.name);
    }
    Ok(())
}

fn ignore_404(r: kube::Result<()>, what: impl std::fmt::Display) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(e, what)),
    }
}
