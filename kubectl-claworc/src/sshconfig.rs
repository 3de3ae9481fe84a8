//! `kubectl claworc ssh-config [NAME…|--all] [--write]`: OpenSSH `Host` blocks, so
//! `ssh`, `scp`, `sftp`, `rsync -e ssh`, IDEs and Ansible reach instances through
//! [`crate::proxy`].
//!
//! Each block names the instance by a host that cannot collide across clusters and
//! namespaces, [`host_name`] `NAME.NAMESPACE.CLUSTER.claworc` (instance names and
//! namespaces are DNS labels, without dots), and says:
//!
//! - `ProxyCommand`: this plugin, with the kubeconfig, context and namespace written
//!   out, running `proxy NAME`;
//! - `User`, and `IdentityFile` the key store's client key with `IdentitiesOnly yes`;
//! - `HostKeyAlias claworc/CLUSTER/NAMESPACE/NAME` and `UserKnownHostsFile` the key
//!   store's `known_hosts`, with `StrictHostKeyChecking yes`: OpenSSH checks the very
//!   pin the plugin checks, never trusts on first use, and sees `--repin` and
//!   `rotate-keys` at once (they rewrite that file; the client key keeps its path).
//!
//! `--write` keeps the blocks in [`MANAGED_FILE`] under `~/.ssh` (a file of its own:
//! blocks of other instances are kept, the same block is replaced) and adds one
//! `Include` line at the top of `~/.ssh/config` if it is not there; the user's own
//! lines are never changed. Nothing is written when nothing changes.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use claworc_contract::names;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::keystore::{InstanceId, KeyStore};
use crate::session::shell_quote;
use crate::transport::{self, ConnectOptions, Login};

/// The file under `~/.ssh` that `--write` owns.
pub const MANAGED_FILE: &str = "claworc.conf";
/// The first line of [`MANAGED_FILE`].
const MANAGED_HEADER: &str = "# Written by `kubectl claworc ssh-config --write`; rewritten by it, do not edit.\n\
                              # One Host block per instance; see docs/plugin.md.\n";
/// Marks the `Include` line `--write` adds to `~/.ssh/config`.
const INCLUDE_COMMENT: &str = "# Added by `kubectl claworc ssh-config --write` (instances' Host blocks):";

/// What `kubectl claworc ssh-config` was asked for.
#[derive(Debug, Clone)]
pub struct SshConfigOptions {
    /// Instances; empty with `all`.
    pub names: Vec<String>,
    /// Every instance of the namespace.
    pub all: bool,
    /// Install into `~/.ssh` instead of printing.
    pub write: bool,
    pub login: Login,
    /// The kubeconfig the proxy is to use (`--kubeconfig`), else `$KUBECONFIG`'s.
    pub kubeconfig: Option<PathBuf>,
}

/// One instance's `Host` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBlock {
    pub id: InstanceId,
    pub user: String,
    pub proxy_command: String,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
}

/// `NAME.NAMESPACE.CLUSTER.claworc`: unique per key-store scope, namespace and name.
pub fn host_name(id: &InstanceId) -> String {
    format!("{}.{}.{}.claworc", id.name, id.namespace, id.cluster)
}

/// A value for ssh_config: `%` doubled (OpenSSH expands `%` tokens), quoted when it
/// holds white space.
fn value(text: &str) -> String {
    let text = text.replace('%', "%%");
    if text.contains(char::is_whitespace) { format!("\"{text}\"") } else { text }
}

/// The `Host` block, one option a line.
pub fn render_block(b: &HostBlock) -> String {
    let path = |p: &Path| value(&p.to_string_lossy());
    [
        format!("Host {}", host_name(&b.id)),
        format!("  # instance {}/{} of {}", b.id.namespace, b.id.name, b.id.cluster),
        format!("  ProxyCommand {}", b.proxy_command.replace('%', "%%")),
        format!("  User {}", value(&b.user)),
        format!("  IdentityFile {}", path(&b.identity_file)),
        "  IdentitiesOnly yes".into(),
        "  PreferredAuthentications publickey".into(),
        format!("  HostKeyAlias {}", b.id.host_pattern()),
        format!("  UserKnownHostsFile {}", path(&b.known_hosts)),
        "  GlobalKnownHostsFile /dev/null".into(),
        "  StrictHostKeyChecking yes".into(),
        "  UpdateHostKeys no".into(),
        "  CheckHostIP no".into(),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

/// The proxy command line: `PLUGIN [--kubeconfig F] [--context C] -n NS proxy NAME`,
/// each word quoted for the shell OpenSSH runs it with. A kubeconfig list (`a:b`) is
/// passed as `env KUBECONFIG=…`.
pub fn proxy_command(plugin: &Path, kubeconfig: Option<&str>, context: Option<&str>, id: &InstanceId) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut flags: Vec<String> = Vec::new();
    match kubeconfig {
        Some(k) if k.contains(':') => words.extend(["env".into(), format!("KUBECONFIG={k}")]),
        Some(k) => flags.extend(["--kubeconfig".into(), k.into()]),
        None => {}
    }
    words.push(plugin.to_string_lossy().into_owned());
    words.extend(flags);
    if let Some(c) = context {
        words.extend(["--context".into(), c.into()]);
    }
    words.extend(["-n".into(), id.namespace.clone(), "proxy".into(), id.name.clone()]);
    words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

/// The managed file's blocks by host, from its text (everything from one `Host`
/// line to the next; lines before the first are the header).
pub fn parse_managed(text: &str) -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(host) = line.strip_prefix("Host ") {
            if let Some((h, b)) = current.take() {
                blocks.insert(h, b);
            }
            current = Some((host.trim().to_string(), String::new()));
        }
        if let Some((_, b)) = current.as_mut()
            && !line.trim().is_empty()
        {
            b.push_str(line);
            b.push('\n');
        }
    }
    if let Some((h, b)) = current {
        blocks.insert(h, b);
    }
    blocks
}

/// The managed file's text for `blocks` (sorted by host, so the same set gives the same bytes).
pub fn render_managed(blocks: &BTreeMap<String, String>) -> String {
    let mut out = MANAGED_HEADER.to_string();
    for b in blocks.values() {
        out.push('\n');
        out.push_str(b);
    }
    out
}

/// `~/.ssh/config` with the `Include` of `managed` added at the top, or `None` when
/// some line already includes it (by this path or as `Include claworc.conf`).
pub fn with_include(config: &str, managed: &Path) -> Option<String> {
    let wanted = managed.to_string_lossy();
    let present = config.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next().is_some_and(|w| w.eq_ignore_ascii_case("include"))
            && words.any(|w| {
                let w = w.trim_matches('"');
                w == wanted || w == MANAGED_FILE || w == format!("~/.ssh/{MANAGED_FILE}")
            })
    });
    (!present).then(|| format!("{INCLUDE_COMMENT}\nInclude {}\n\n{config}", value(&wanted)))
}

/// The plugin's path for the ProxyCommand: argv[0] when it names a file (kubectl
/// runs plugins by their path on PATH, e.g. krew's symlink, which survives
/// upgrades), made absolute; else the running executable.
fn plugin_path() -> Result<PathBuf> {
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    if let Some(p) = argv0.filter(|p| p.components().count() > 1 && p.is_file()) {
        return std::path::absolute(&p).map_err(|e| Error::io(e, &p));
    }
    std::env::current_exe().map_err(|e| Error::other(format!("cannot find the plugin's own path: {e}")).with_source(e))
}

/// The kubeconfig for the proxy: `--kubeconfig`, else `$KUBECONFIG` (each path made
/// absolute: the proxy runs from wherever OpenSSH is started).
fn kubeconfig_for_proxy(flag: Option<&Path>) -> Result<Option<String>> {
    let list: Vec<PathBuf> = match flag {
        Some(p) => vec![p.to_path_buf()],
        None => match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(v) => std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect(),
            None => return Ok(None),
        },
    };
    let abs: Vec<String> = list
        .iter()
        .map(|p| std::path::absolute(p).map(|a| a.to_string_lossy().into_owned()).map_err(|e| Error::io(e, p)))
        .collect::<Result<_>>()?;
    Ok(Some(abs.join(":")))
}

/// `~/.ssh` (from `$HOME`).
fn ssh_dir() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".ssh"))
        .ok_or_else(|| Error::other("HOME is not set: cannot locate ~/.ssh for --write"))
}

/// `kubectl claworc ssh-config`.
pub async fn ssh_config(ctx: &Ctx, args: &SshConfigOptions) -> Result<()> {
    let names = match (args.all, args.names.is_empty()) {
        (true, true) => instance_names(ctx).await?,
        (false, false) => {
            for n in &args.names {
                crate::input::validate_name("instance name", n)?;
                // Exists (and is readable with these credentials)?
                transport::instance_settings(&ctx.client, &ctx.namespace, n).await?;
            }
            args.names.clone()
        }
        (true, false) => return Err(Error::invalid("give instance names or --all, not both")),
        (false, true) => {
            return Err(Error::invalid("name the instances (kubectl claworc ssh-config NAME…) or pass --all"));
        }
    };
    let store = KeyStore::open_default()?;
    let plugin = plugin_path()?;
    let kubeconfig = kubeconfig_for_proxy(args.kubeconfig.as_deref())?;
    let mut blocks = Vec::new();
    for name in &names {
        let id = transport::instance_id(ctx, name);
        if store.load_client_key(&id)?.is_none() {
            eprintln!(
                "warning: no client key for {}/{name} at {}: OpenSSH cannot log in until one is there \
                 (`kubectl claworc rotate-keys {name}` makes one)",
                ctx.namespace,
                store.client_key_path(&id).display()
            );
        } else if store.lookup_host_key(&id)?.is_none() {
            pin_by_logging_in(ctx, name, &args.login).await;
        }
        blocks.push(HostBlock {
            proxy_command: proxy_command(&plugin, kubeconfig.as_deref(), ctx.context.as_deref(), &id),
            user: args.login.user.clone(),
            identity_file: store.client_key_path(&id),
            known_hosts: store.known_hosts_path(),
            id,
        });
    }
    if !args.write {
        let text: Vec<String> = blocks.iter().map(render_block).collect();
        crate::output::stdout(&text.join("\n"));
        return Ok(());
    }
    let dir = ssh_dir()?;
    let changed = install(&dir, &blocks)?;
    let hosts: Vec<String> = blocks.iter().map(|b| host_name(&b.id)).collect();
    eprintln!(
        "{} {} in {} (included from {}): ssh {}",
        if changed { "wrote" } else { "unchanged:" },
        if hosts.len() == 1 { "1 host".to_string() } else { format!("{} hosts", hosts.len()) },
        dir.join(MANAGED_FILE).display(),
        dir.join("config").display(),
        hosts.first().map(String::as_str).unwrap_or("HOST")
    );
    Ok(())
}

/// The opted-in Deployments of the namespace.
async fn instance_names(ctx: &Ctx) -> Result<Vec<String>> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let selector = format!("{}={}", names::LABEL_SSH, names::SSH_ENABLED);
    let list = deployments
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(e, format!("deployments in namespace {:?}", ctx.namespace)))?;
    let mut names: Vec<String> = list.items.into_iter().filter_map(|d| d.metadata.name).collect();
    names.sort();
    Ok(names)
}

/// No pin yet (the instance was created elsewhere): one login by the plugin pins the
/// host key from the Deployment's fingerprint, as `ssh` would. On failure OpenSSH
/// refuses until a pin exists: said on stderr.
async fn pin_by_logging_in(ctx: &Ctx, name: &str, login: &Login) {
    let opts = ConnectOptions { login: login.clone(), identity: None, repin: false };
    match transport::connect(ctx, name, &opts).await {
        Ok((_, conn)) => conn.close().await,
        Err(e) => eprintln!(
            "warning: no host key pinned for {}/{name} and pinning failed ({}): OpenSSH refuses to connect \
             until `kubectl claworc ssh {name}` pins it",
            ctx.namespace,
            e.one_line()
        ),
    }
}

/// Merges `blocks` into `dir/claworc.conf` and makes sure `dir/config` includes it.
/// Returns whether anything was written.
pub fn install(dir: &Path, blocks: &[HostBlock]) -> Result<bool> {
    ensure_private_dir(dir)?;
    let managed = dir.join(MANAGED_FILE);
    let mut all = parse_managed(&read_or_empty(&managed)?);
    for b in blocks {
        all.insert(host_name(&b.id), render_block(b));
    }
    let mut changed = write_if_changed(&managed, &render_managed(&all))?;
    let config = dir.join("config");
    if let Some(text) = with_include(&read_or_empty(&config)?, &managed) {
        changed |= write_if_changed(&config, &text)?;
    }
    Ok(changed)
}

/// Removes the instance's block from `~/.ssh/claworc.conf`, if there is one (after `delete`).
pub fn forget(id: &InstanceId) -> Result<()> {
    let managed = ssh_dir()?.join(MANAGED_FILE);
    let mut all = parse_managed(&read_or_empty(&managed)?);
    if all.remove(&host_name(id)).is_some() {
        write_if_changed(&managed, &render_managed(&all))?;
    }
    Ok(())
}

fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io(e, path)),
    }
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io(e, dir))?;
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file and a rename, keeping an
/// existing file's mode (0600 for a new one); does nothing when the content is the same.
fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => {
            if std::fs::read(path).map_err(|e| Error::io(e, path))? == text.as_bytes() {
                return Ok(false);
            }
            m.permissions().mode() & 0o7777
        }
        Err(_) => 0o600,
    };
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(e, path)
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cluster: &str, ns: &str, name: &str) -> HostBlock {
        let id = InstanceId::new(cluster, ns, name);
        HostBlock {
            proxy_command: proxy_command(Path::new("/opt/my tools/kubectl-claworc"), None, Some("kind-dev"), &id),
            user: "agent".into(),
            identity_file: PathBuf::from(format!("/h/.config/claworc/keys/{cluster}/{ns}/{name}/id_ed25519")),
            known_hosts: PathBuf::from("/h/.config/claworc/known_hosts"),
            id,
        }
    }

    #[test]
    fn host_names_do_not_collide_across_clusters_and_namespaces() {
        let ids = [
            InstanceId::new("a", "b", "dev"),
            InstanceId::new("a.b", "c", "dev"),
            InstanceId::new("a", "b-c", "dev"),
            InstanceId::new("a-b", "c", "dev"),
            InstanceId::new("a", "b", "dev2"),
        ];
        let hosts: std::collections::BTreeSet<String> = ids.iter().map(host_name).collect();
        assert_eq!(hosts.len(), ids.len(), "{hosts:?}");
        assert_eq!(host_name(&ids[0]), "dev.b.a.claworc");
    }

    #[test]
    fn a_block_pins_the_host_key_and_names_the_proxy() {
        let text = render_block(&block("kind-dev", "team-a", "box"));
        for line in [
            "Host box.team-a.kind-dev.claworc",
            "  ProxyCommand '/opt/my tools/kubectl-claworc' --context kind-dev -n team-a proxy box",
            "  User agent",
            "  IdentityFile /h/.config/claworc/keys/kind-dev/team-a/box/id_ed25519",
            "  IdentitiesOnly yes",
            "  HostKeyAlias claworc/kind-dev/team-a/box",
            "  UserKnownHostsFile /h/.config/claworc/known_hosts",
            "  StrictHostKeyChecking yes",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn proxy_commands_carry_the_kubeconfig() {
        let id = InstanceId::new("c", "ns", "box");
        let plugin = Path::new("/bin/kubectl-claworc");
        assert_eq!(
            proxy_command(plugin, Some("/k/a b.yaml"), None, &id),
            "/bin/kubectl-claworc --kubeconfig '/k/a b.yaml' -n ns proxy box"
        );
        assert_eq!(
            proxy_command(plugin, Some("/k/a:/k/b"), Some("x@y"), &id),
            "env KUBECONFIG=/k/a:/k/b /bin/kubectl-claworc --context x@y -n ns proxy box"
        );
        // `%` is an OpenSSH token character.
        let b = HostBlock { proxy_command: "p --context 100%".into(), ..block("c", "ns", "box") };
        assert!(render_block(&b).contains("ProxyCommand p --context 100%%\n"));
    }

    #[test]
    fn merging_keeps_other_blocks_and_is_stable() {
        let (a, b) = (block("c", "ns", "a"), block("c", "ns", "b"));
        let mut all = parse_managed("");
        all.insert(host_name(&b.id), render_block(&b));
        all.insert(host_name(&a.id), render_block(&a));
        let text = render_managed(&all);
        assert!(text.find("Host a.").unwrap() < text.find("Host b.").unwrap(), "{text}");
        assert_eq!(render_managed(&parse_managed(&text)), text, "parse/render round trip");
        let mut again = parse_managed(&text);
        let changed = HostBlock { user: "other".into(), ..a.clone() };
        again.insert(host_name(&a.id), render_block(&changed));
        let text2 = render_managed(&again);
        assert!(text2.contains("User other") && text2.contains("Host b.ns.c.claworc"), "{text2}");
        assert_eq!(text2.matches("Host a.ns.c.claworc").count(), 1, "{text2}");
    }

    #[test]
    fn the_include_is_added_once_above_the_users_lines() {
        let managed = Path::new("/h/.ssh/claworc.conf");
        let user = "Host *\n  ServerAliveInterval 5\n";
        let text = with_include(user, managed).unwrap();
        assert!(text.starts_with(INCLUDE_COMMENT), "{text}");
        assert!(text.contains("\nInclude /h/.ssh/claworc.conf\n"), "{text}");
        assert!(text.ends_with(user), "the user's lines are kept as they were: {text}");
        assert_eq!(with_include(&text, managed), None);
        assert_eq!(with_include("include claworc.conf\n", managed), None);
    }

    #[test]
    fn install_twice_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".ssh");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("config"), "Host mine\n  User me\n").unwrap();
        assert!(install(&dir, &[block("c", "ns", "a")]).unwrap());
        let before = (std::fs::read(dir.join("config")).unwrap(), std::fs::read(dir.join(MANAGED_FILE)).unwrap());
        assert!(!install(&dir, &[block("c", "ns", "a")]).unwrap());
        let after = (std::fs::read(dir.join("config")).unwrap(), std::fs::read(dir.join(MANAGED_FILE)).unwrap());
        assert_eq!(before, after);
        let mode = std::fs::metadata(dir.join(MANAGED_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
