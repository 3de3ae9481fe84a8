//! Completion through kubectl: `kubectl claworc <TAB>` runs the helper
//! `kubectl_complete-claworc` (shipped beside the plugin, as krew plugins do), which
//! runs `kubectl-claworc __complete WORDS…`. The answer is in cobra's format, the one
//! kubectl reads: one candidate a line (`value<TAB>description`), then `:DIRECTIVE`.
//!
//! The command line decides what is wanted ([`Want`], worked out in `cli`); instance
//! names come from the cluster (the Deployments opted in to claworc in the namespace
//! of the words' `-n`/`--context`/`--kubeconfig`). A failure to reach the cluster
//! completes nothing: completion never prints errors.

use claworc_contract::names;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;

use crate::context::{Ctx, Global};

/// cobra's ShellCompDirective values kubectl understands.
pub const DIRECTIVE_DEFAULT: u32 = 0;
pub const DIRECTIVE_NO_SPACE: u32 = 2;
pub const DIRECTIVE_NO_FILE: u32 = 4;

/// What the word under the cursor can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// These words (subcommands or flags), with descriptions.
    Words(Vec<(String, String)>),
    /// An instance name from the cluster, followed by `suffix` (`:` for `cp`).
    Instances { suffix: &'static str },
    /// A local path: the shell's own file completion.
    Files,
    /// Nothing to offer.
    Nothing,
}

/// The cobra-format answer: candidates starting with `current`, then the directive.
pub fn render(candidates: &[(String, String)], current: &str, directive: u32) -> String {
    let mut out = String::new();
    for (value, help) in candidates.iter().filter(|(v, _)| v.starts_with(current)) {
        let help = help.lines().next().unwrap_or("").trim();
        if help.is_empty() {
            out.push_str(&format!("{value}\n"));
        } else {
            out.push_str(&format!("{value}\t{help}\n"));
        }
    }
    out.push_str(&format!(":{directive}\n"));
    out
}

/// Prints the answer for `want` (instance names looked up with `global`).
pub async fn complete(global: &Global, want: Want, current: &str) {
    let text = match want {
        Want::Words(words) => render(&words, current, DIRECTIVE_NO_FILE),
        Want::Files => render(&[], current, DIRECTIVE_DEFAULT),
        Want::Nothing => render(&[], current, DIRECTIVE_NO_FILE),
        Want::Instances { suffix } => {
            let names = instance_names(global).await.unwrap_or_default();
            let words: Vec<(String, String)> =
                names.into_iter().map(|n| (format!("{n}{suffix}"), String::new())).collect();
            let directive = if suffix.is_empty() { DIRECTIVE_NO_FILE } else { DIRECTIVE_NO_SPACE | DIRECTIVE_NO_FILE };
            render(&words, current, directive)
        }
    };
    crate::output::stdout(&text);
}

/// The claworc instances of the namespace, sorted; `None` when the cluster cannot be asked.
async fn instance_names(global: &Global) -> Option<Vec<String>> {
    let global = Global { verbose: 0, ..global.clone() };
    let ctx = Ctx::load(&global).await.ok()?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let selector = format!("{}={}", names::LABEL_SSH, names::SSH_ENABLED);
    let list = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        deployments.list(&ListParams::default().labels(&selector)),
    )
    .await
    .ok()?
    .ok()?;
    let mut names: Vec<String> = list.items.into_iter().filter_map(|d| d.metadata.name).collect();
    names.sort();
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cobra_format() {
        let words = vec![("ssh".to_string(), "A shell\nmore".to_string()), ("status".into(), String::new())];
        assert_eq!(render(&words, "s", DIRECTIVE_NO_FILE), "ssh\tA shell\nstatus\n:4\n");
        assert_eq!(render(&words, "ss", DIRECTIVE_NO_FILE), "ssh\tA shell\n:4\n");
        assert_eq!(render(&[], "", DIRECTIVE_DEFAULT), ":0\n");
    }
}
