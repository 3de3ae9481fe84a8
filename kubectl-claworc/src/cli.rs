//! The command line (clap derive). Every command carries examples in its `--help`.
//!
//! The top layer: only `main` and `lib` import it. Every clap type lives here; each
//! command's arguments turn into the plain options struct of the module that runs it
//! ([`instance::CreateOptions`], [`session::SshOptions`], …), so nothing below knows clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::input::parse_duration;
use crate::output::Format;
use crate::status::ListFormat;
use crate::{
    audit, complete, context, cp, instance, logs, proxy, rotate, session, sshconfig, status, tenant, transport, tunnel,
};

/// Create, reach and manage SSH-reachable claworc instances.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-claworc",
    bin_name = "kubectl claworc",
    version,
    about = "Create, reach and manage SSH-reachable claworc instances",
    after_help = "Examples:\n  kubectl claworc create dev --image ghcr.io/acme/agent:1.4 --wait\n  kubectl claworc list -o wide\n  kubectl claworc ssh dev\n  kubectl claworc tenant create team-a --ttl 720h --output team-a.kubeconfig\n\nExit codes: 0 ok, 1 failure, 2 invalid input, 3 not found, 4 already exists, 5 forbidden."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands, as kubectl spells them.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// More output on stderr (repeat for more).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an instance: key pairs, Secret, volumes and an opted-in Deployment.
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Delete an instance and its Secret, volumes and local keys.
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(DeleteArgs),
    /// List the instances in the namespace.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show one instance: readiness, injection, key ages, host key, warnings.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Replace the client key (and optionally the host key) without losing access.
    #[command(name = "rotate-keys", after_help = ROTATE_EXAMPLES)]
    RotateKeys(RotateArgs),
    /// Tenants: namespaces with quotas, policies and a least-privilege kubeconfig.
    #[command(subcommand, after_help = TENANT_EXAMPLES)]
    Tenant(TenantCommand),
    /// Print a shell completion script.
    #[command(after_help = COMPLETION_EXAMPLES)]
    Completion(CompletionArgs),
    /// A shell, or a command (after `--`), on the instance over SSH through the API.
    #[command(after_help = SSH_EXAMPLES)]
    Ssh(SshArgs),
    /// Forward local ports to the instance's forward ports over SSH through the API.
    #[command(after_help = TUNNEL_EXAMPLES)]
    Tunnel(TunnelArgs),
    /// Container logs of the instance, or a file inside it (--file).
    #[command(after_help = LOGS_EXAMPLES)]
    Logs(LogsArgs),
    /// The SSH audit trail of an instance (logins, commands, files, forwards) and its Events.
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// Join stdin/stdout to the instance's sshd through the API (OpenSSH ProxyCommand).
    #[command(after_help = PROXY_EXAMPLES)]
    Proxy(ProxyArgs),
    /// Copy files and directories to or from an instance over SFTP.
    #[command(after_help = CP_EXAMPLES)]
    Cp(CpArgs),
    /// OpenSSH Host blocks for instances (ssh, scp, sftp, rsync, IDEs).
    #[command(name = "ssh-config", after_help = SSH_CONFIG_EXAMPLES)]
    SshConfig(SshConfigArgs),
    /// Completion candidates for kubectl (run by the kubectl_complete-claworc helper).
    #[command(name = "__complete", hide = true)]
    Complete(CompleteArgs),
}

const CP_EXAMPLES: &str = "Examples:
  kubectl claworc cp -r ./src dev:/work/src      # a tree up (modes and mtimes kept)
  kubectl claworc cp dev:/work/out.tar .         # a file down, into the current directory
  kubectl claworc cp ./a:b dev:                  # a local name with a colon; dev: is the home directory
Each file is written under a temporary name and renamed when complete. A progress
line on a terminal only. Exit codes as the other commands (3 no such file, 5 permission denied).";

const PROXY_EXAMPLES: &str = "Examples:
  ssh -o ProxyCommand='kubectl claworc -n team-a proxy dev' ...   # usually written by ssh-config
  kubectl claworc ssh-config dev --write && ssh dev.team-a.CONTEXT.claworc
The same path and RBAC as `ssh` (pods/portforward); OpenSSH checks the host key.";

const SSH_CONFIG_EXAMPLES: &str = "Examples:
  kubectl claworc ssh-config dev                 # print the Host block
  kubectl claworc ssh-config --all --write       # every instance of the namespace, into ~/.ssh
  ssh dev.default.kind-dev.claworc -- uname -a
  scp ./build.tar dev.default.kind-dev.claworc:/work/
  rsync -a -e ssh ./src/ dev.default.kind-dev.claworc:/work/src/
--write keeps the blocks in ~/.ssh/claworc.conf and adds one Include line at the top
of ~/.ssh/config; running it again changes nothing. Host keys come from the
plugin's pins (never trusted on first use); --repin and rotate-keys update them.";

const SSH_EXAMPLES: &str = "Examples:
  kubectl claworc ssh dev                          # a shell (PTY when stdin is a terminal)
  kubectl claworc ssh dev -- id -u                 # a command; its exit status is ours
  kubectl claworc ssh dev -- sh -c 'ls | wc -l'    # shell syntax: words are passed as argv
  kubectl claworc ssh dev --identity ci_key -- make test   # CI: a key file instead of the key store
  kubectl claworc ssh dev --repin                  # after a deliberate host-key rotation
The host key is checked against the local pin, else the Deployment's
claworc.io/host-key-fingerprint (never trusted on first use). See docs/ssh.md.";

const TUNNEL_EXAMPLES: &str = "Examples:
  kubectl claworc tunnel dev                 # every claworc.io/forward-ports port, on free local ports
  kubectl claworc tunnel dev -L 8080         # localhost:8080 in the instance, on a free local port
  kubectl claworc tunnel dev -L 6080:3000    # 127.0.0.1:6080 -> localhost:3000 in the instance
Reconnects by itself (1s doubling to 16s) when the pod or connection goes away; Ctrl-C ends it.
Its forwards (ports, connections open and so far, bytes) on request: `kill -USR1 PID`,
or Enter when stdin is a terminal.";

const LOGS_EXAMPLES: &str = "Examples:
  kubectl claworc logs dev -f --since 10m
  kubectl claworc logs dev --container claworc-sshd --tail 100
  kubectl claworc logs dev --file /home/agent/agent.log -f   # a file inside, over SSH";

const AUDIT_EXAMPLES: &str = "Examples:
  kubectl claworc audit dev                     # everything the sidecar's log and the Events still hold
  kubectl claworc audit dev --since 1h
  kubectl claworc audit dev -o json | jq -r '.[] | select(.event == \"session_end\") | [.time, .fingerprint, .fields.command] | @tsv'
Merges the claworc-sshd sidecar's audit lines (pods/log) with the Events about the
Deployment (create, rotate-keys, delete; kubectl get events), oldest first. Both
last only as long as the cluster keeps them (the container's log, --event-ttl).";

const CREATE_EXAMPLES: &str = "Examples:
  # an instance with the default forward ports (3000, 8080), waiting until it is ready
  kubectl claworc create dev --image ghcr.io/acme/agent:1.4 --wait

  # a volume of 10Gi at /home/agent, an environment variable, only port 6080 forwardable
  kubectl claworc create dev --image ghcr.io/acme/agent:1.4 \\
      --volume home=/home/agent:10Gi --env LOG_LEVEL=debug --forward-ports 6080

  # print the objects instead (keys included: treat the output as a secret)
  kubectl claworc create dev --image ghcr.io/acme/agent:1.4 --dry-run=client -o yaml > dev.yaml
  kubectl apply -f dev.yaml";

const DELETE_EXAMPLES: &str = "Examples:
  kubectl claworc delete dev
  # keep the data volumes and the host key (a later `create dev` reuses the host key)
  kubectl claworc delete dev --keep-volumes --keep-host-key";

const LIST_EXAMPLES: &str = "Examples:
  kubectl claworc list
  kubectl claworc list -n team-a -o wide
  kubectl claworc list -A                    # every namespace, with a NAMESPACE column
  kubectl claworc list -o json | jq -r '.[] | select(.warnings | length > 0) | .name'";

const STATUS_EXAMPLES: &str = "Examples:
  kubectl claworc status dev
  kubectl claworc status dev -o yaml --max-key-age 30d";

const ROTATE_EXAMPLES: &str = "Examples:
  kubectl claworc rotate-keys dev
  # also replace the host key (the new one is pinned locally and on the Deployment)
  kubectl claworc rotate-keys dev --host-key
Re-running after a failure half-way finishes the rotation.";

const TENANT_EXAMPLES: &str = "Examples:
  kubectl claworc tenant create team-a --ttl 720h --output team-a.kubeconfig
  kubectl claworc tenant update team-a --cpu 8 --memory 16Gi
  kubectl claworc tenant kubeconfig team-a --ttl 720h --output team-a.kubeconfig
  kubectl claworc tenant kubeconfig team-a --rotate --output team-a.kubeconfig
  kubectl claworc tenant list
  kubectl claworc tenant delete team-a --yes";

const TENANT_CREATE_EXAMPLES: &str = "Examples:
  kubectl claworc tenant create team-a --ttl 720h --output team-a.kubeconfig
  kubectl claworc tenant create team-b --cpu 8 --memory 16Gi --pods 20 --storage 100Gi
  KUBECONFIG=team-a.kubeconfig kubectl auth can-i create deployments";

const TENANT_KUBECONFIG_EXAMPLES: &str = "Examples:
  # a fresh token for a tenant (renewal: earlier tokens stay valid until they expire)
  kubectl claworc tenant kubeconfig team-a --ttl 24h --output ci.kubeconfig
  # revoke every earlier token: the ServiceAccount is deleted and recreated
  kubectl claworc tenant kubeconfig team-a --rotate --output team-a.kubeconfig";

const TENANT_UPDATE_EXAMPLES: &str = "Examples:
  kubectl claworc tenant update team-a --cpu 8 --memory 16Gi
  kubectl claworc tenant update team-a --pods 20 --storage 100Gi
Running pods are not touched; what exceeds the new quota is refused from now on.";

const TENANT_LIST_EXAMPLES: &str = "Examples:
  kubectl claworc tenant list                    # token expiries; warns 7 days ahead
  kubectl claworc tenant list --warn-before 30d
  kubectl claworc tenant list -o json | jq -r '.[] | [.name, .tokens[-1].expires] | @tsv'";

const TENANT_DELETE_EXAMPLES: &str = "Examples:
  kubectl claworc tenant delete team-a        # says what it removes, asks on a terminal
  kubectl claworc tenant delete team-a --yes  # in scripts (without --yes off a terminal: refused)";

const COMPLETION_EXAMPLES: &str = "Examples:
  source <(kubectl-claworc completion bash)
  kubectl-claworc completion zsh > \"${fpath[1]}/_kubectl-claworc\"
  kubectl-claworc completion fish > ~/.config/fish/completions/kubectl-claworc.fish";

/// `--dry-run` values (only `client` is supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    Client,
}

/// `-o` for objects: `json` or `yaml`.
impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Json, Format::Yaml]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
        }))
    }
}

/// `-o` for lists: `json`, `yaml` or `wide`.
impl ValueEnum for ListFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[ListFormat::Json, ListFormat::Yaml, ListFormat::Wide]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ListFormat::Json => "json",
            ListFormat::Yaml => "yaml",
            ListFormat::Wide => "wide",
        }))
    }
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Instance name (a DNS-1123 label).
    pub name: String,
    /// Image of the workload container.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// The only localhost ports SSH forwarding may reach (default 3000,8080).
    #[arg(long, value_delimiter = ',', value_name = "PORT,…")]
    pub forward_ports: Vec<u16>,
    /// A volume NAME=PATH:SIZE (a PersistentVolumeClaim mounted at PATH); repeatable.
    #[arg(long = "volume", value_name = "NAME=PATH:SIZE")]
    pub volumes: Vec<String>,
    /// An environment variable K=V of the workload container; repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Wait until the rollout is complete.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Print the objects instead of creating them; touches nothing.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: Option<DryRun>,
    /// Output format of --dry-run.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Format,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Instance name.
    pub name: String,
    /// Keep the PersistentVolumeClaims (the data).
    #[arg(long)]
    pub keep_volumes: bool,
    /// Keep the host key pair locally (and its pin) so a later `create` reuses it.
    #[arg(long)]
    pub keep_host_key: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
    /// Warn about client keys older than this (rotation policy).
    #[arg(long, default_value = "90d", value_parser = parse_duration, value_name = "DURATION")]
    pub max_key_age: Duration,
    /// Instances of every namespace (a NAMESPACE column; needs cluster-wide list rights).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Instance name.
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Warn about client keys older than this (rotation policy).
    #[arg(long, default_value = "90d", value_parser = parse_duration, value_name = "DURATION")]
    pub max_key_age: Duration,
    /// For the SSH check.
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// Instance name.
    pub name: String,
    /// Also replace the host key.
    #[arg(long)]
    pub host_key: bool,
    /// For the login that proves the new key.
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant namespace, its limits and policies, and a kubeconfig for it.
    #[command(after_help = TENANT_CREATE_EXAMPLES)]
    Create(TenantCreateArgs),
    /// Change a tenant's quota in place.
    #[command(after_help = TENANT_UPDATE_EXAMPLES)]
    Update(TenantUpdateArgs),
    /// Write a new kubeconfig (a new token) for a tenant.
    #[command(after_help = TENANT_KUBECONFIG_EXAMPLES)]
    Kubeconfig(TenantKubeconfigArgs),
    /// List tenants.
    #[command(after_help = TENANT_LIST_EXAMPLES)]
    List(TenantListArgs),
    /// Delete a tenant and everything in its namespace.
    #[command(after_help = TENANT_DELETE_EXAMPLES)]
    Delete(TenantDeleteArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TenantCreateArgs {
    /// Tenant name: also the namespace name (a DNS-1123 label).
    pub name: String,
    /// Lifetime of the token in the kubeconfig.
    #[arg(long, default_value = "720h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// Where to write the kubeconfig (mode 0600; default <NAME>.kubeconfig).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// CPU quota (requests and limits).
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory quota (requests and limits).
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// Maximum number of pods.
    #[arg(long, default_value_t = 10)]
    pub pods: u32,
    /// Storage quota of all PersistentVolumeClaims.
    #[arg(long, default_value = "50Gi")]
    pub storage: String,
}

#[derive(Debug, Clone, Args)]
pub struct TenantUpdateArgs {
    /// Tenant name.
    pub name: String,
    /// New CPU quota (requests and limits).
    #[arg(long)]
    pub cpu: Option<String>,
    /// New memory quota (requests and limits).
    #[arg(long)]
    pub memory: Option<String>,
    /// New maximum number of pods.
    #[arg(long)]
    pub pods: Option<u32>,
    /// New storage quota of all PersistentVolumeClaims.
    #[arg(long)]
    pub storage: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TenantKubeconfigArgs {
    /// Tenant name.
    pub name: String,
    /// Lifetime of the token.
    #[arg(long, default_value = "720h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// Revoke every earlier token (deletes and recreates the ServiceAccount).
    #[arg(long)]
    pub rotate: bool,
    /// Where to write the kubeconfig (mode 0600; default <NAME>.kubeconfig).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct TenantListArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Warn about kubeconfig tokens that expire within this time.
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub warn_before: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct TenantDeleteArgs {
    /// Tenant name.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `kubectl claworc ssh` arguments.
#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// Instance name.
    pub name: String,
    #[command(flatten)]
    pub ssh: ConnectArgs,
    /// A command to run instead of a shell (after `--`); its exit status is ours.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `kubectl claworc tunnel` arguments.
#[derive(Debug, Clone, Args)]
pub struct TunnelArgs {
    /// Instance name.
    pub name: String,
    /// A forward `[LOCAL:]REMOTE`: 127.0.0.1:LOCAL (0 or omitted: any free port) to
    /// localhost:REMOTE in the instance. Repeatable. Default: every port of
    /// claworc.io/forward-ports.
    #[arg(short = 'L', long = "forward", value_name = "[LOCAL:]REMOTE", value_parser = tunnel::parse_forward)]
    pub forwards: Vec<tunnel::Forward>,
    #[command(flatten)]
    pub ssh: ConnectArgs,
}

/// `kubectl claworc logs` arguments.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Instance name.
    pub name: String,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The container (default: the workload container; `claworc-sshd` for the sidecar).
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Only lines newer than this (e.g. 10m, 1h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Show a file inside the instance instead (over SSH, `tail -F` with -f).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["container", "since"])]
    pub file: Option<String>,
    #[command(flatten)]
    pub ssh: ConnectArgs,
}

/// `kubectl claworc audit` arguments.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Instance name.
    pub name: String,
    /// Only what happened within this time (e.g. 10m, 1h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `kubectl claworc proxy` arguments.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Instance name.
    pub name: String,
}

/// `kubectl claworc __complete WORDS…`: the words after `kubectl claworc`, the
/// last one being completed (empty for a new word).
#[derive(Debug, Clone, Args)]
pub struct CompleteArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub words: Vec<String>,
}

/// `kubectl claworc cp` arguments.
#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// The source: a local path, or NAME:PATH on an instance.
    pub src: String,
    /// The destination: a local path, or NAME:PATH on an instance.
    pub dst: String,
    /// Copy directories and their contents.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub ssh: ConnectArgs,
}

/// `kubectl claworc ssh-config` arguments.
#[derive(Debug, Clone, Args)]
pub struct SshConfigArgs {
    /// Instance names.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every instance of the namespace.
    #[arg(long)]
    pub all: bool,
    /// Install into ~/.ssh/claworc.conf (Include'd from ~/.ssh/config) instead of printing.
    #[arg(long)]
    pub write: bool,
    #[command(flatten)]
    pub login: LoginArgs,
}

/// Connection options of `ssh`, `tunnel` and `logs --file`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub login: LoginArgs,
    /// Log in with this private key file instead of the key store's (CI).
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Accept a changed host key if it matches the Deployment's
    /// claworc.io/host-key-fingerprint, and pin it (after a deliberate rotation).
    #[arg(long)]
    pub repin: bool,
}

/// `--user`: the login name, the sidecar image's name of the run-as user.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The login name: the sidecar image's name of the run-as user.
    #[arg(long, value_name = "NAME", env = crate::transport::ENV_SSH_USER, default_value = claworc_contract::names::SSH_USER)]
    pub user: String,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl From<&GlobalArgs> for context::Global {
    fn from(a: &GlobalArgs) -> Self {
        context::Global {
            kubeconfig: a.kubeconfig.clone(),
            context: a.context.clone(),
            namespace: a.namespace.clone(),
            verbose: a.verbose,
        }
    }
}

/// `impl From<ARGS> for OPTIONS`: moves each listed field, converting those after `into`.
macro_rules! into_options {
    ($args:ty => $opts:path { $($f:ident),* $(; into $($g:ident),*)? }) => {
        impl From<$args> for $opts {
            fn from(a: $args) -> Self {
                Self { $($f: a.$f,)* $($($g: a.$g.into(),)*)? }
            }
        }
    };
}

into_options!(CreateArgs => instance::CreateOptions { name, image, forward_ports, volumes, env, wait, timeout, output });
into_options!(DeleteArgs => instance::DeleteOptions { name, keep_volumes, keep_host_key });
into_options!(ListArgs => status::ListOptions { output, max_key_age, all_namespaces });
into_options!(StatusArgs => status::StatusOptions { name, output, max_key_age; into login });
into_options!(RotateArgs => rotate::RotateOptions { name, host_key; into login });
into_options!(TenantCreateArgs => tenant::CreateOptions { name, ttl, output, cpu, memory, pods, storage });
into_options!(TenantUpdateArgs => tenant::UpdateOptions { name, cpu, memory, pods, storage });
into_options!(TenantKubeconfigArgs => tenant::KubeconfigOptions { name, ttl, rotate, output });
into_options!(TenantListArgs => tenant::ListOptions { output, warn_before });
into_options!(TenantDeleteArgs => tenant::DeleteOptions { name, yes });
into_options!(LoginArgs => transport::Login { user });
into_options!(ConnectArgs => transport::ConnectOptions { identity, repin; into login });
into_options!(SshArgs => session::SshOptions { name, command; into ssh });
into_options!(TunnelArgs => tunnel::TunnelOptions { name, forwards; into ssh });
into_options!(LogsArgs => logs::LogsOptions { name, follow, container, since, tail, file; into ssh });
into_options!(ProxyArgs => proxy::ProxyOptions { name });
into_options!(AuditArgs => audit::AuditOptions { name, since, output });
into_options!(CpArgs => cp::CpOptions { src, dst, recursive; into ssh });

impl SshConfigArgs {
    /// The options, with the `--kubeconfig` the proxy is to use.
    pub fn into_options(self, kubeconfig: Option<PathBuf>) -> sshconfig::SshConfigOptions {
        sshconfig::SshConfigOptions {
            names: self.names,
            all: self.all,
            write: self.write,
            login: self.login.into(),
            kubeconfig,
        }
    }
}

/// What completes the last of `words` (the words after `kubectl claworc`), and the
/// connection flags among them (for instance names from the cluster).
pub fn completion_want(words: &[String]) -> (complete::Want, context::Global) {
    use complete::Want;
    let mut global = context::Global::default();
    let (current, done) = match words.split_last() {
        Some((last, done)) => (last.as_str(), done),
        None => ("", &[][..]),
    };
    let root = Cli::command();
    let mut cmd = &root;
    let mut positionals = 0usize;
    let mut expects_value: Option<String> = None;
    let mut after_dashes = false;
    for word in done {
        if let Some(flag) = expects_value.take() {
            match flag.as_str() {
                "namespace" => global.namespace = Some(word.clone()),
                "context" => global.context = Some(word.clone()),
                "kubeconfig" => global.kubeconfig = Some(word.into()),
                _ => {}
            }
            continue;
        }
        if after_dashes {
            continue;
        }
        if word == "--" {
            after_dashes = true;
        } else if let Some(flag) = word.strip_prefix('-').filter(|f| !f.is_empty()) {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            if let Some(arg) = find_flag(&root, cmd, name) {
                let id = arg.get_id().as_str().to_string();
                match inline {
                    Some(v) => match id.as_str() {
                        "namespace" => global.namespace = Some(v.into()),
                        "context" => global.context = Some(v.into()),
                        "kubeconfig" => global.kubeconfig = Some(v.into()),
                        _ => {}
                    },
                    None if arg.get_action().takes_values() => expects_value = Some(id),
                    None => {}
                }
            }
        } else if let Some(sub) = cmd.find_subcommand(word) {
            cmd = sub;
            positionals = 0;
        } else {
            positionals += 1;
        }
    }
    let want = if after_dashes {
        Want::Nothing
    } else if let Some(flag) = expects_value {
        if matches!(flag.as_str(), "kubeconfig" | "identity" | "output") { Want::Files } else { Want::Nothing }
    } else if current.starts_with('-') {
        let mut flags: Vec<(String, String)> = Vec::new();
        for arg in cmd.get_arguments().chain(root.get_arguments().filter(|a| a.is_global_set())) {
            if arg.is_hide_set() {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if let Some(l) = arg.get_long() {
                flags.push((format!("--{l}"), help.clone()));
            }
            if let Some(s) = arg.get_short() {
                flags.push((format!("-{s}"), help));
            }
        }
        flags.sort();
        flags.dedup_by(|a, b| a.0 == b.0);
        Want::Words(flags)
    } else if cmd.has_subcommands() {
        Want::Words(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| (s.get_name().to_string(), s.get_about().map(|a| a.to_string()).unwrap_or_default()))
                .collect(),
        )
    } else {
        let positional = cmd
            .get_positionals()
            .nth(positionals)
            .or_else(|| cmd.get_positionals().last().filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1)));
        match positional.map(|a| a.get_id().as_str()) {
            Some("name" | "names") if cmd.get_name() != "create" && !is_tenant(&root, cmd) => {
                Want::Instances { suffix: "" }
            }
            Some("src" | "dst") if current.starts_with(['.', '/', '~']) || current.contains(':') => Want::Files,
            Some("src" | "dst") => Want::Instances { suffix: ":" },
            _ => Want::Nothing,
        }
    };
    (want, global)
}

/// The flag `name` (long, or a single short letter) of `cmd` or a global one of `root`.
fn find_flag<'a>(root: &'a clap::Command, cmd: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    let matches = |a: &&clap::Arg| match name.strip_prefix('-') {
        Some(long) => a.get_long() == Some(long),
        None => name.chars().count() == 1 && a.get_short() == name.chars().next(),
    };
    cmd.get_arguments().find(matches).or_else(|| root.get_arguments().find(matches))
}

/// Whether `cmd` is below `tenant` (its names are tenants, not instances).
fn is_tenant(root: &clap::Command, cmd: &clap::Command) -> bool {
    root.find_subcommand("tenant").is_some_and(|t| t.get_subcommands().any(|s| std::ptr::eq(s, cmd)))
}

/// Prints the completion script for `shell` to stdout.
pub fn completion(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kubectl-claworc", &mut script);
    crate::output::stdout(&String::from_utf8_lossy(&script));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completion_knows_what_is_wanted() {
        use complete::Want;
        let want = |words: &[&str]| completion_want(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        let (w, _) = want(&[""]);
        let Want::Words(subs) = w else { panic!("{w:?}") };
        assert!(subs.iter().any(|(s, _)| s == "ssh-config") && !subs.iter().any(|(s, _)| s == "__complete"));
        let (w, g) = want(&["-n", "team-a", "--context=kind-x", "ssh", ""]);
        assert_eq!(w, Want::Instances { suffix: "" });
        assert_eq!((g.namespace.as_deref(), g.context.as_deref()), (Some("team-a"), Some("kind-x")));
        assert_eq!(want(&["ssh", "dev", "--", ""]).0, Want::Nothing);
        assert_eq!(want(&["ssh-config", "a", ""]).0, Want::Instances { suffix: "" });
        assert_eq!(want(&["cp", "./x", ""]).0, Want::Instances { suffix: ":" });
        assert_eq!(want(&["cp", "./"]).0, Want::Files);
        assert_eq!(want(&["create", ""]).0, Want::Nothing);
        assert_eq!(want(&["tenant", "delete", ""]).0, Want::Nothing);
        assert_eq!(want(&["list", "-n", ""]).0, Want::Nothing);
        let (w, _) = want(&["ssh", "dev", "--re"]);
        let Want::Words(flags) = w else { panic!("{w:?}") };
        assert!(flags.iter().any(|(f, _)| f == "--repin") && flags.iter().any(|(f, _)| f == "--namespace"));
    }

    #[test]
    fn dry_run_parses() {
        let cli = Cli::try_parse_from(["k", "create", "a", "--image", "i", "--dry-run=client", "-o", "json"]).unwrap();
        let Command::Create(c) = cli.command else { panic!() };
        assert_eq!(c.dry_run, Some(DryRun::Client));
        assert_eq!(c.output, Format::Json);
        let cli =
            Cli::try_parse_from(["k", "-n", "x", "create", "a", "--image", "i", "--forward-ports", "1,2"]).unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("x"));
        let Command::Create(c) = cli.command else { panic!() };
        assert_eq!(c.forward_ports, vec![1, 2]);
    }
}
