//! The broker's and storage's rooms keep data flowing one way: no import
//! cycle between files, delivery and the services import no front end, and
//! the mesh imports nothing above it. Read from the `use` lines and
//! `crate::`/`super::` paths of the source, resolved to files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's source files by module path (`["shard", "route"]`).
struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read source dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(src).expect("under src");
                let mut module: Vec<String> = rel
                    .iter()
                    .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    module.pop();
                }
                files.insert(module, path);
            }
        }
        Crate { files }
    }

    /// The file a path names: the longest prefix that is a module file.
    fn resolve(&self, path: &[String]) -> Option<&Vec<String>> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.files.get_key_value(&path[..n]).map(|(k, _)| k))
    }

    /// Every file each file imports from (test modules excluded).
    fn imports(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut out = BTreeMap::new();
        for (module, path) in &self.files {
            let text = std::fs::read_to_string(path).expect("read source");
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            // Comments (doc links included) name modules but import nothing.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut deps = BTreeSet::new();
            let relative = relative_uses(&code).into_iter().map(|p| {
                let mut m = vec!["self".to_string()];
                m.extend(p);
                m
            });
            for target in paths_in(&code).into_iter().chain(relative) {
                let absolute = absolute(module, path, &target);
                if let Some(file) = absolute.and_then(|a| self.resolve(&a).cloned()) {
                    if &file != module && !file.is_empty() {
                        deps.insert(file);
                    }
                }
            }
            out.insert(module.clone(), deps);
        }
        out
    }
}

/// `crate::a::b`, `super::x` and `self::y` paths used in the text, as
/// segment lists (a `use` group `{a, b}` yields its prefix, which resolves
/// to the same file or a parent module).
fn paths_in(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut rest = text;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = &rest[..end];
            rest = &rest[end..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let segs: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            match rest.strip_prefix('{') {
                // `prefix::{a, b::C}`: one path per member.
                Some(group) if path.ends_with("::") => {
                    let inner = group.split('}').next().unwrap_or("");
                    for member in inner.split(',') {
                        let name: String = member
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                            .collect();
                        let mut full = segs.clone();
                        full.extend(name.split("::").filter(|s| !s.is_empty()).map(str::to_string));
                        out.push(full);
                    }
                }
                _ => out.push(segs),
            }
        }
    }
    out
}

/// `use a::b` paths that start with a plain name (2018-edition paths
/// relative to the current module, as a `mod.rs` re-exports its children);
/// names that are not child modules resolve to nothing and are dropped.
fn relative_uses(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("use "))
        else {
            continue;
        };
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segs: Vec<String> = path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let first = segs.first().map(String::as_str);
        if segs.len() > 1 && !matches!(first, Some("crate" | "super" | "self" | "std")) {
            out.push(segs);
        }
    }
    out
}

/// A path as segments from the crate root.
fn absolute(module: &[String], file: &Path, path: &[String]) -> Option<Vec<String>> {
    let is_mod_file = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
    // The module a `super::` is relative to: a file's own module, whose
    // parent `super` names (a mod.rs is its directory's module).
    let mut base: Vec<String> = module.to_vec();
    let mut segs = path.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segs.next();
            base.clear();
        }
        Some("self") => {
            segs.next();
        }
        Some("super") => {
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                segs.next();
                base.pop()?;
            }
            let _ = is_mod_file;
        }
        _ => return None,
    }
    base.extend(segs.cloned());
    Some(base)
}

/// A cycle in the import graph, if any.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).expect("on the stack");
                    return Some(stack[at..].to_vec());
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Module declarations (`mod x;` in a `mod.rs`) and re-exports point from a
/// parent to its children; only an import from a child back to its parent
/// module file would close a cycle, and the graph counts it.
fn graph_of(dir: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    Crate::read(&root).imports()
}

fn show(cycle: &[Vec<String>]) -> String {
    cycle
        .iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn broker_has_no_import_cycle() {
    let graph = graph_of("broker/src");
    assert!(graph.len() > 50, "the broker's files were read");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in broker/src: {}", show(&cycle));
    }
}

#[test]
fn storage_has_no_import_cycle() {
    let graph = graph_of("storage/src");
    assert!(graph.len() > 10, "the storage crate's files were read");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in storage/src: {}", show(&cycle));
    }
}

/// Delivery and the services import no front end, and no shard internals;
/// the mesh imports nothing but ids.
#[test]
fn services_import_no_front_end_and_the_mesh_nothing_above() {
    let graph = graph_of("broker/src");
    let offenders: Vec<String> = graph
        .iter()
        .filter(|(from, _)| {
            matches!(
                from.first().map(String::as_str),
                Some("delivery" | "partition" | "metadata")
            )
        })
        .flat_map(|(from, deps)| deps.iter().map(move |d| (from, d)))
        .filter(|(_, to)| {
            matches!(
                to.first().map(String::as_str),
                Some("frontend" | "shard" | "server")
            )
        })
        .map(|(from, to)| format!("{} -> {}", from.join("::"), to.join("::")))
        .collect();
    assert!(offenders.is_empty(), "services import upward: {offenders:?}");
    let mesh = &graph[&vec!["mesh".to_string()]];
    let allowed: BTreeSet<Vec<String>> = [vec!["ids".to_string()]].into_iter().collect();
    assert!(mesh.is_subset(&allowed), "the mesh imports {mesh:?}");
}

/// The checker itself finds a cycle and resolves relative paths.
#[test]
fn checker_finds_cycles() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    let mut graph = BTreeMap::new();
    graph.insert(m("a"), [m("b")].into_iter().collect());
    graph.insert(m("b"), [m("c")].into_iter().collect());
    graph.insert(m("c"), BTreeSet::new());
    assert!(find_cycle(&graph).is_none());
    graph.get_mut(&m("c")).unwrap().insert(m("a"));
    assert_eq!(find_cycle(&graph).map(|c| c.len()), Some(3));
    let file = Path::new("shard/route.rs");
    assert_eq!(
        absolute(&m("shard::route"), file, &m("super::state::Shard")),
        Some(m("shard::state::Shard"))
    );
    assert_eq!(
        paths_in("use crate::ids::{Offset, PartitionId};\nlet x = super::y::z();"),
        vec![
            m("crate::ids::Offset"),
            m("crate::ids::PartitionId"),
            m("super::y::z")
        ]
    );
}
