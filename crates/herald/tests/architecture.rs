//! The module graph of every crate in the workspace is acyclic: no module imports a module that
//! (directly or through others) imports it back. Cycles are how a crate turns into one knot
//! that cannot be split or tested in parts; this test keeps them from coming back.
//!
//! A module is a file in `src/` (or a folder with its files); an edge is a `crate::m` or, at the
//! top level, a `super::m` path in its code (comments and the trailing `#[cfg(test)]` module
//! excluded). `lib.rs` and `main.rs` compose the modules and are not nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's source text without comments and without its trailing unit tests.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `prefix` in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(at, _)| !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            let rest = &code[at + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> the modules it uses, for one crate's `src/`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("dir entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if stem == "lib" || stem == "main" {
            continue;
        }
        if path.is_dir() {
            let mut inner = Vec::new();
            rust_files(&path, &mut inner);
            files.entry(stem).or_default().extend(inner);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.entry(stem).or_default().push(path);
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, paths)| {
            let mut uses = BTreeSet::new();
            for path in paths {
                let code = code_of(&std::fs::read_to_string(path).expect("read module"));
                let top_level = path.parent() == Some(src);
                let mut found = paths_after(&code, "crate::");
                if top_level {
                    found.extend(paths_after(&code, "super::"));
                }
                uses.extend(found.into_iter().filter(|m| modules.contains(*m) && *m != module).map(str::to_owned));
            }
            (module.clone(), uses)
        })
        .collect()
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

#[test]
fn the_detector_finds_a_cycle_and_accepts_a_dag() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            g.entry((*from).to_owned()).or_default().insert((*to).to_owned());
            g.entry((*to).to_owned()).or_default();
        }
        g
    };
    let knot = graph(&[("hub", "client"), ("client", "durable"), ("durable", "hub"), ("client", "outbox")]);
    assert_eq!(cycles(&knot), vec![vec!["client".to_owned(), "durable".to_owned(), "hub".to_owned()]]);
    let dag = graph(&[("client", "hub"), ("hub", "conn"), ("client", "conn"), ("conn", "outbox")]);
    assert!(cycles(&dag).is_empty());
    let code = code_of(
        "use crate::hub::Hub; // crate::client\nfn f() { super::conn::x(); }\n#[cfg(test)]\nmod tests { use crate::ws; }",
    );
    assert_eq!(paths_after(&code, "crate::"), vec!["hub"]);
    assert_eq!(paths_after(&code, "super::"), vec!["conn"]);
}

#[test]
fn no_crate_has_a_module_cycle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).expect("read crates/") {
        let src = entry.expect("dir entry").path().join("src");
        if !src.is_dir() {
            continue;
        }
        checked += 1;
        let graph = module_graph(&src);
        for component in cycles(&graph) {
            let edges: Vec<String> = component
                .iter()
                .flat_map(|m| graph[m].iter().filter(|d| component.contains(d)).map(move |d| format!("{m} -> {d}")))
                .collect();
            problems.push(format!("{}: {}", src.display(), edges.join(", ")));
        }
    }
    assert!(checked >= 8, "found only {checked} crates under {}", crates.display());
    assert!(problems.is_empty(), "module cycles:\n{}", problems.join("\n"));
}
