//! The crates' modules import one way: read from the sources, so that a cycle fails `make test`
//! the moment it is written. A module is a file (`a/b.rs` is `a::b`, `a/mod.rs` and `a.rs` are
//! `a`); an edge is a `crate::` path in its non-test code (everything before its first
//! `#[cfg(test)]`; `tests.rs` and `fakes.rs` files are test code). Children may use their
//! parent's items and parents their children: those edges are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use groupbinder_e2e::repo;

/// Module path → the modules its code names through `crate::`.
fn imports(src: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module_of = |path: &Path| -> Option<String> {
        let relative = path.strip_prefix(src).ok()?.with_extension("");
        let mut parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        Some(parts.join("::"))
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if name == "tests" || name == "fakes" {
            continue;
        }
        let text = std::fs::read_to_string(file)?;
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut used = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let path: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            // The longest prefix that is a module of the crate.
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| modules.contains(candidate));
            if let Some(target) = target {
                let related = target == module
                    || module.starts_with(&format!("{target}::"))
                    || target.starts_with(&format!("{module}::"));
                if !related && !module.is_empty() {
                    used.insert(target);
                }
            }
        }
        graph.insert(module, used);
    }
    Ok(graph)
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_cli_command_imports_another_and_no_module_cycle() -> anyhow::Result<()> {
    let graph = imports(&repo().join("crates/cli/src"))?;
    let commands: Vec<&String> = graph
        .keys()
        .filter(|m| m.starts_with("commands::"))
        .collect();
    assert!(commands.len() >= 6, "{commands:?}");
    for command in &commands {
        let others: Vec<&String> = graph[*command]
            .iter()
            .filter(|m| m.starts_with("commands::"))
            .collect();
        assert!(others.is_empty(), "{command} imports {others:?}");
    }
    assert_eq!(cycle(&graph), None, "{graph:#?}");
    Ok(())
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        cycle(&graph).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".to_owned())
    );
}

#[test]
fn the_controllers_imports_run_one_way() -> anyhow::Result<()> {
    let graph = imports(&repo().join("crates/controller/src"))?;
    assert_eq!(cycle(&graph), None, "{graph:#?}");
    let uses = |module: &str| -> &BTreeSet<String> {
        graph
            .get(module)
            .unwrap_or_else(|| panic!("no module {module} in {graph:#?}"))
    };
    // The leaves: the kinds watched and written, and a reconcile's outcome.
    for leaf in ["kinds", "reconcile::outcome"] {
        assert!(uses(leaf).is_empty(), "{leaf} imports {:?}", uses(leaf));
    }
    // The pipeline's steps import only the steps before them (and the leaves).
    let steps = [
        "reconcile::outcome",
        "reconcile::observe",
        "reconcile::apply",
        "reconcile::status",
        "reconcile::report",
    ];
    for (i, step) in steps.iter().enumerate() {
        let later: Vec<&String> = uses(step)
            .iter()
            .filter(|m| *m == "reconcile" || steps[i..].contains(&m.as_str()))
            .collect();
        assert!(later.is_empty(), "{step} imports {later:?}");
    }
    // What a reconcile reads depends on neither the driver nor a step.
    let context: Vec<&String> = uses("context")
        .iter()
        .filter(|m| m.starts_with("reconcile"))
        .collect();
    assert!(context.is_empty(), "context imports {context:?}");
    Ok(())
}

/// ring is the only crypto provider in the tree: rustls panics at run time when two are compiled
/// in and none is installed, and aws-lc (which azure_identity's default features bring, through
/// reqwest) is built with cmake. Read from the lock file, so a new dependency that brings it back
/// fails `make test`.
#[test]
fn ring_is_the_only_crypto_provider() -> anyhow::Result<()> {
    let lock = std::fs::read_to_string(repo().join("Cargo.lock"))?;
    for unwanted in ["aws-lc-rs", "aws-lc-sys", "reqwest", "openssl-sys"] {
        assert!(
            !lock.contains(&format!("name = \"{unwanted}\"")),
            "{unwanted} is in Cargo.lock"
        );
    }
    assert!(lock.contains("name = \"ring\""));
    Ok(())
}
