//! `kubectl claworc`: create, reach and manage SSH-reachable claworc instances.
//!
//! Table of contents:
//! Layers (docs/architecture.md; `tests/layers.rs` checks them): [`cli`] on top, read
//! only here and by `main`; the commands below it take plain options structs; the
//! leaves ([`error`], [`input`], [`output`], [`context`], [`keys`], [`keystore`],
//! [`hostkey`]) import only each other.
//!
//! - [`cli`]: the command line (clap derive), with examples on every command.
//! - [`context`]: the [`context::Ctx`] built from `KUBECONFIG` / `--kubeconfig` /
//!   `--context` / `-n` the way kubectl does.
//! - [`error`]: the one [`error::Error`] type (keeps its source) and its exit codes (2
//!   invalid input, 3 not found, 4 already exists, 5 forbidden, 1 anything else).
//! - [`input`]: durations, names and quantities, parsed and checked.
//! - [`keystore`]: local state under `$XDG_CONFIG_HOME/claworc`: client keys and the
//!   `known_hosts` of pinned instance host keys.
//! - [`keys`]: ed25519 key generation and OpenSSH encodings.
//! - [`objects`]: the plain objects of an instance (Secret, PVCs, Deployment), pure.
//! - [`instance`]: `create`, `delete`.
//! - [`status`]: `list`, `status` (and the report the SSH side extends).
//! - [`rollout`]: where a rollout is (pure, from the Deployment and its pod), and
//!   `wait_rollout` for `create --wait`.
//! - [`rotate`]: the `rotate-keys` command.
//! - [`tenant`]: `tenant create|update|kubeconfig|list|delete`; its objects in `tenant::objects`.
//! - [`events`]: the Events that record what the plugin did (instance lifecycle, tenant
//!   changes), with who did it; used by `instance`, `rotate` and `tenant`.
//! - [`audit`]: `audit` (the sidecar's SSH audit lines and the instance's Events, merged).
//! - [`output`]: the one stdout writer; `-o json|yaml` printing and tables.
//! - [`transport`]: SSH over the Kubernetes port-forward API to the instance's pod
//!   (`transport::{pod, portforward, credentials, handshake, pinning}`).
//! - [`hostkey`]: the host key checked against the local pin or the Deployment's
//!   `claworc.io/host-key-fingerprint`; never trust on first use.
//! - [`session`]: `ssh` (a PTY shell, or a command with its exit status).
//! - [`tunnel`]: `tunnel` (local forwards over one connection, reconnecting).
//! - [`complete`]: `__complete` (kubectl's plugin completion, instance names from the cluster).
//! - [`cp`]: `cp` (files and trees over SFTP on the `ssh` connection).
//! - [`proxy`]: `proxy` (stdio to the sshd through the port-forward, for OpenSSH).
//! - [`sshconfig`]: `ssh-config` (OpenSSH Host blocks; `--write` into `~/.ssh`).
//! - [`logs`]: `logs` (pods/log, or a file followed over SSH).

pub mod audit;
pub mod cli;
pub mod complete;
pub mod context;
pub mod cp;
pub mod error;
pub mod events;
pub mod hostkey;
pub mod input;
pub mod instance;
pub mod keys;
pub mod keystore;
pub mod logs;
pub mod objects;
pub mod output;
pub mod proxy;
pub mod rollout;
pub mod rotate;
pub mod session;
pub mod sshconfig;
pub mod status;
pub mod tenant;
pub mod transport;
pub mod tunnel;

pub use error::{Error, Result};

use cli::{Cli, Command, TenantCommand};

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let global = context::Global::from(&cli.global);
    let connect = || context::Ctx::load(&global);
    match cli.command {
        Command::Completion(args) => {
            cli::completion(args.shell);
            Ok(())
        }
        Command::Create(args) => {
            if args.dry_run.is_some() {
                return instance::dry_run(&global, &args.into());
            }
            instance::create(&connect().await?, &args.into()).await
        }
        Command::Delete(args) => instance::delete(&connect().await?, &args.into()).await,
        Command::List(args) => status::list(&connect().await?, &args.into()).await,
        Command::Status(args) => status::status(&connect().await?, &args.into()).await,
        Command::RotateKeys(args) => rotate::rotate(&connect().await?, &args.into()).await,
        Command::Tenant(t) => {
            let ctx = connect().await?;
            match t {
                TenantCommand::Create(a) => tenant::create(&ctx, &a.into()).await,
                TenantCommand::Update(a) => tenant::update(&ctx, &a.into()).await,
                TenantCommand::Kubeconfig(a) => tenant::issue_kubeconfig(&ctx, &a.into()).await,
                TenantCommand::List(a) => tenant::list(&ctx, &a.into()).await,
                TenantCommand::Delete(a) => tenant::delete(&ctx, &a.into()).await,
            }
        }
        // `ssh` and `logs` exit with the remote command's status.
        Command::Ssh(args) => {
            let code = session::ssh(&connect().await?, &args.into()).await?;
            session::exit(code)
        }
        Command::Proxy(args) => {
            proxy::proxy(&connect().await?, &args.into()).await?;
            // The stdin reader may still be blocked in read(2).
            session::exit(0)
        }
        Command::Complete(args) => {
            let (want, global) = cli::completion_want(&args.words);
            let current = args.words.last().map(String::as_str).unwrap_or("");
            complete::complete(&global, want, current).await;
            Ok(())
        }
        Command::Audit(args) => audit::audit(&connect().await?, &args.into()).await,
        Command::Cp(args) => cp::cp(&connect().await?, &args.into()).await,
        Command::SshConfig(args) => {
            let opts = args.into_options(global.kubeconfig.clone());
            sshconfig::ssh_config(&connect().await?, &opts).await
        }
        Command::Tunnel(args) => tunnel::tunnel(&connect().await?, &args.into()).await,
        Command::Logs(args) => {
            let code = logs::logs(&connect().await?, &args.into()).await?;
            if code == 0 { Ok(()) } else { session::exit(code) }
        }
    }
}
