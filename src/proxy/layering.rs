//! The layering of `proxy/` as a test: the phase modules may depend on `ctx` and on each other
//! only one way (the README's architecture section lists the layers). A `use super::x` that
//! closes a cycle fails here, naming the modules, rather than slowly tangling the phases.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `proxy/` → the sibling modules its non-test code names.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![root.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if module == "mod" || module == "layering" || rel.contains("tests") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests may reach anywhere.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        // In `ctx/attempt.rs`, `super::` is `ctx` itself; siblings are `super::super::`.
        let prefix = if rel.contains('/') {
            "super::super::"
        } else {
            "super::"
        };
        let deps = graph.entry(module.clone()).or_default();
        for pattern in [prefix, "crate::proxy::"] {
            for (at, _) in code.match_indices(pattern) {
                let before = code[..at].chars().last();
                if pattern == "super::" && matches!(before, Some(':')) {
                    continue;
                }
                let name: String = code[at + pattern.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != module && !name.is_empty() {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn proxy_modules_have_no_import_cycle() {
    let graph = dependencies();
    assert!(
        graph.contains_key("ctx") && graph.contains_key("failover"),
        "{graph:?}"
    );
    for (module, deps) in &graph {
        for dep in deps.iter().filter(|d| graph.contains_key(*d)) {
            // Is `module` reachable back from `dep`?
            let mut seen = BTreeSet::new();
            let mut stack = vec![dep.as_str()];
            while let Some(at) = stack.pop() {
                assert!(
                    at != module,
                    "import cycle in proxy/: {module} → {dep} → … → {module}"
                );
                if seen.insert(at) {
                    stack.extend(graph.get(at).into_iter().flatten().map(String::as_str));
                }
            }
        }
    }
}

#[test]
fn ctx_depends_only_on_the_pure_leaves() {
    let graph = dependencies();
    let leaves: BTreeSet<&str> = ["error", "link", "attempts"].into();
    let ctx = &graph["ctx"];
    let outside: Vec<_> = ctx
        .iter()
        .filter(|d| !leaves.contains(d.as_str()))
        .collect();
    assert!(outside.is_empty(), "ctx depends on {outside:?}");
}
