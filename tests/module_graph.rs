//! The top-level modules of `src/` import each other without a cycle: a
//! module in a cycle cannot be understood, tested or changed without the
//! others in it (issue 9). The graph is read the way
//! `/work/shared/tools/module-cycles` reads it: every `crate::NAME` and every
//! name of a `use crate::{…}` group, outside a file's `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Cycles known to be on their way out, each as its sorted modules. Empty
/// this list as they go: the test fails when a listed cycle no longer
/// exists, so the exception cannot outlive its reason.
const KNOWN_CYCLES: &[&[&str]] = &[];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers after `crate::` (and in `use crate::{a, b::c}` groups).
fn references(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut refs = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            refs.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| r.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'));
    refs
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src/");
        let first = rel.components().next().expect("a path");
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("a readable source file");
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let refs = references(text);
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != top));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for refs in graph.values_mut() {
        refs.retain(|r| modules.contains(r));
    }
    graph
}

/// The strongly connected components with more than one module.
fn cycles(graph: &Graph) -> BTreeSet<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in &graph[&m] {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    graph
        .keys()
        .map(|m| {
            let mut comp: Vec<String> = reachable[m]
                .iter()
                .filter(|o| reachable[*o].contains(m))
                .cloned()
                .collect();
            if !comp.contains(m) {
                comp.push(m.clone());
            }
            comp.sort();
            comp
        })
        .filter(|c| c.len() > 1)
        .collect()
}

#[test]
fn src_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 10, "read the module graph of {src:?}");
    let found = cycles(&graph);
    let known: BTreeSet<Vec<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|m| m.to_string()).collect())
        .collect();
    let describe = |c: &Vec<String>| {
        let edges: Vec<String> = c
            .iter()
            .flat_map(|a| {
                graph[a]
                    .iter()
                    .filter(|b| c.contains(b))
                    .map(move |b| format!("{a} -> {b}"))
            })
            .collect();
        format!("{} ({})", c.join(", "), edges.join("; "))
    };
    let new: Vec<String> = found.difference(&known).map(describe).collect();
    assert!(
        new.is_empty(),
        "import cycles in src/: {new:?}; remove the back-edge (move the shared \
         type down, e.g. into model/, or the caller up)"
    );
    let gone: Vec<&Vec<String>> = known.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "the cycles {gone:?} no longer exist: remove them from KNOWN_CYCLES in tests/module_graph.rs"
    );
}

#[test]
fn the_reader_sees_groups_and_paths() {
    let refs = references("use crate::{store::Store, model};\nlet x = crate::verp::tag();");
    assert_eq!(
        refs,
        ["model", "store", "verp"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let mut g = Graph::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["a".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(cycles(&g), [vec!["a".to_string(), "b".to_string()]].into());
}
