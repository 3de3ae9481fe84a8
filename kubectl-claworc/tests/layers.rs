//! The plugin's modules form layers (docs/architecture.md): the command line on top,
//! imported by nothing but `lib`/`main`; the commands below it; shared leaves at the
//! bottom. This test reads every `crate::…` path in `src/` and fails on an import
//! cycle, on a module other than `lib`/`main` importing `cli`, and on a leaf that
//! imports anything but other leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The bottom layer: each may import only other leaves.
const LEAVES: &[&str] = &["error", "input", "output", "context", "keys", "keystore", "hostkey"];

/// Module (first path segment under `src/`) -> the modules it names through `crate::`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let module =
                rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            let text = join_groups(&std::fs::read_to_string(&path).unwrap());
            let deps: &mut BTreeSet<String> = graph.entry(module.clone()).or_default();
            for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
                deps.extend(crate_refs(line).into_iter().filter(|m| *m != module));
            }
        }
    }
    graph
}

/// The text with every `crate::{…}` group on one line (rustfmt breaks long ones).
fn join_groups(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("crate::{") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail.find('}').map_or(tail.len(), |e| e + 1);
        out.push_str(&tail[..end].split_whitespace().collect::<Vec<_>>().join(" "));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The first segments of every `crate::x` and `crate::{x, y::z}` on a line.
fn crate_refs(line: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        // `kubectl_claworc::` from main, or a word ending in `crate`, is not ours.
        if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| ident(p.trim())).filter(|s| !s.is_empty()));
        } else {
            out.push(ident(rest));
        }
    }
    // `crate::Error`/`crate::Result` are re-exports of `error`.
    out.into_iter().map(|m| if m == "Error" || m == "Result" { "error".into() } else { m }).collect()
}

#[test]
fn the_parser_reads_all_forms() {
    assert_eq!(crate_refs("use crate::context::Ctx;"), ["context"]);
    assert_eq!(crate_refs("use crate::{context, instance::X};"), ["context", "instance"]);
    assert_eq!(crate_refs("    let k = crate::keys::fingerprint(&key);"), ["keys"]);
    assert!(crate_refs("kubectl_claworc::cli::Cli::parse()").is_empty());
    let joined = join_groups("use crate::{\n    context, cp,\n    tunnel,\n};\nfn f() {}");
    assert_eq!(crate_refs(joined.lines().next().unwrap()), ["context", "cp", "tunnel"]);
}

#[test]
fn the_graph_is_read() {
    let graph = import_graph();
    // If the walk found nothing, every check below would pass vacuously.
    for m in ["lib", "cli", "context", "output", "input", "session", "transport", "tenant"] {
        assert!(graph.contains_key(m), "module {m} not found under src/: {:?}", graph.keys());
    }
    assert!(graph["session"].contains("transport"), "session must be seen to import transport: {:?}", graph["session"]);
    assert!(graph["cli"].contains("tunnel"), "cli must be seen to import tunnel: {:?}", graph["cli"]);
}

#[test]
fn only_lib_and_main_import_the_command_line() {
    for (module, deps) in import_graph() {
        if module != "lib" && module != "main" {
            assert!(!deps.contains("cli"), "{module} imports cli: lower modules take plain options structs");
        }
    }
}

#[test]
fn leaves_import_only_leaves() {
    let graph = import_graph();
    for leaf in LEAVES {
        let above: Vec<_> = graph[*leaf].iter().filter(|d| !LEAVES.contains(&d.as_str())).collect();
        assert!(above.is_empty(), "the leaf {leaf} imports {above:?}, which are above it");
    }
}

#[test]
fn no_import_cycle() {
    let graph = import_graph();
    // Depth-first search; a module met again while on the path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m);
            panic!("import cycle: {}", cycle.join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}
