//! The house runs one way: every file of `src/` is read, its imports of the
//! project's own modules (`use crate::…`, `use super::…`, `self::…` in a
//! `mod.rs`, and `crate::…::` paths in code) are resolved to the files they
//! name, and two rules are held:
//!
//! - a module imports only its own layer or a layer below, by the one table
//!   in `src/lib.rs` (`## Layers`);
//! - no files import each other in a cycle.
//!
//! Test code (`#[cfg(test)] mod tests`) and comments are not read: what a
//! test imports does not shape the program.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One file of `src/`: its module path and the imports in its code.
struct File {
    /// `src/hub/ws.rs` is `["hub", "ws"]`; `src/hub/mod.rs` is `["hub"]`;
    /// `src/main.rs` is `["main"]`.
    module: Vec<String>,
    /// Each import's line number, text, and the module path it names.
    imports: Vec<(usize, String, Vec<String>)>,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The table in `src/lib.rs`: module name to layer (1 is the top).
fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            inside = doc == "## Layers";
            continue;
        }
        if !inside {
            continue;
        }
        let Some((number, rest)) = doc.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.parse::<usize>() else {
            continue;
        };
        let (_, modules) = rest.split_once(':').expect("`N. name: modules`");
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`').to_string();
            assert!(
                out.insert(module.clone(), layer).is_none(),
                "`{module}` is in two layers of src/lib.rs"
            );
        }
    }
    assert!(!out.is_empty(), "src/lib.rs has no `## Layers` table");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The project's module paths named in `line`, as written (`crate::x::y`,
/// `super::x`, `self::x`, `cobrowse::x` in `main.rs`).
fn paths_in(line: &str, roots: &[&str]) -> Vec<(String, Vec<String>)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    for root in roots {
        let needle = format!("{root}::");
        let mut from = 0;
        while let Some(at) = line[from..].find(&needle) {
            let start = from + at;
            from = start + needle.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            // `super::super::x` and the like: keep the leading words.
            let mut segments = vec![root.to_string()];
            let mut rest = &line[from..];
            loop {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                segments.push(rest[..end].to_string());
                match rest[end..].strip_prefix("::") {
                    Some(next) => rest = next,
                    None => break,
                }
            }
            if segments.len() > 1 {
                out.push((root.to_string(), segments));
            }
        }
    }
    out
}

fn read(path: &Path) -> Option<File> {
    let relative = path.strip_prefix(src()).expect("under src/");
    let mut module: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match module.last().map(String::as_str) {
        Some("lib") if module.len() == 1 => return None,
        // A test module kept in a file of its own.
        Some("tests") => return None,
        Some("mod") => {
            module.pop();
        }
        _ => {}
    }
    let is_mod_rs = relative.file_name().is_some_and(|n| n == "mod.rs");
    let is_main = module == ["main"];
    let text = std::fs::read_to_string(path).expect("read a source file");
    let lines: Vec<&str> = text.lines().collect();
    let mut imports = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim();
        if code == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            // The test module closes the file.
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        let roots: &[&str] = if is_main {
            &["cobrowse", "crate"]
        } else if is_mod_rs {
            &["crate", "super", "self"]
        } else {
            &["crate", "super"]
        };
        for (root, segments) in paths_in(code, roots) {
            // Where the path starts, as a module path from the crate root.
            let mut base: Vec<String> = match root.as_str() {
                "crate" | "cobrowse" => Vec::new(),
                "self" => module.clone(),
                _ => {
                    let mut parent = module.clone();
                    parent.pop();
                    parent
                }
            };
            let mut rest = segments[1..].iter();
            for segment in rest.by_ref() {
                if segment == "super" {
                    base.pop();
                } else {
                    base.push(segment.clone());
                    break;
                }
            }
            base.extend(rest.cloned());
            imports.push((i + 1, line.trim().to_string(), base));
        }
    }
    Some(File { module, imports })
}

/// The file a module path falls in: the longest prefix that is a file.
fn file_of(path: &[String], files: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains(p))
}

fn name(module: &[String]) -> String {
    let src = src();
    let dir = module.iter().fold(src.clone(), |p, m| p.join(m));
    let shown = if dir.join("mod.rs").exists() {
        dir.join("mod.rs")
    } else {
        dir.with_extension("rs")
    };
    shown
        .strip_prefix(src.parent().expect("the crate"))
        .unwrap_or(&shown)
        .display()
        .to_string()
}

#[test]
fn imports_run_down_the_layers_and_never_in_a_cycle() {
    let layers = layers();
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    let files: Vec<File> = paths.iter().filter_map(|p| read(p)).collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut problems = Vec::new();
    // File to file, with the line that makes the edge.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
    for file in &files {
        let top = &file.module[0];
        let Some(&from) = layers.get(top) else {
            problems.push(format!(
                "{}: module `{top}` is in no layer of src/lib.rs's `## Layers`",
                name(&file.module)
            ));
            continue;
        };
        for (line, text, path) in &file.imports {
            let Some(target) = file_of(path, &modules) else {
                continue;
            };
            if target == file.module {
                continue;
            }
            let to_top = &target[0];
            match layers.get(to_top) {
                Some(&to) if to < from => problems.push(format!(
                    "{}:{line}: `{top}` (layer {from}) imports `{to_top}` (layer {to}), a higher layer: {text}",
                    name(&file.module)
                )),
                None => problems.push(format!(
                    "{}:{line}: `{to_top}` is in no layer of src/lib.rs: {text}",
                    name(&file.module)
                )),
                _ => {}
            }
            edges
                .entry(file.module.clone())
                .or_default()
                .entry(target)
                .or_insert_with(|| format!("{}:{line}: {text}", name(&file.module)));
        }
    }
    for cycle in cycles(&edges) {
        let mut shown = Vec::new();
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            shown.push(format!("  {}", edges[from][to]));
        }
        problems.push(format!(
            "files import each other in a cycle:\n{}",
            shown.join("\n")
        ));
    }
    assert!(
        problems.is_empty(),
        "the layers of src/ do not hold:\n{}",
        problems.join("\n")
    );
}

/// One cycle through each group of files that reach each other (Tarjan's
/// strongly connected components, then a path around each group).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>) -> Vec<Vec<Vec<String>>> {
    type Node = Vec<String>;
    struct Walk<'a> {
        edges: &'a BTreeMap<Node, BTreeMap<Node, String>>,
        index: BTreeMap<Node, usize>,
        low: BTreeMap<Node, usize>,
        stack: Vec<Node>,
        on_stack: BTreeSet<Node>,
        groups: Vec<Vec<Node>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, node: &Node) {
            let n = self.index.len();
            self.index.insert(node.clone(), n);
            self.low.insert(node.clone(), n);
            self.stack.push(node.clone());
            self.on_stack.insert(node.clone());
            let next: Vec<Node> = self
                .edges
                .get(node)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for to in next {
                if !self.index.contains_key(&to) {
                    self.visit(&to);
                    let low = self.low[node].min(self.low[&to]);
                    self.low.insert(node.clone(), low);
                } else if self.on_stack.contains(&to) {
                    let low = self.low[node].min(self.index[&to]);
                    self.low.insert(node.clone(), low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut group = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(&top);
                    let done = &top == node;
                    group.push(top);
                    if done {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.groups.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for node in edges.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    // A path around each group: breadth-first from its first file back to
    // itself, inside the group.
    let mut out = Vec::new();
    for group in walk.groups {
        let members: BTreeSet<&Node> = group.iter().collect();
        let start = group.iter().min().expect("a group has files").clone();
        let mut came_from: BTreeMap<Node, Node> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut closing = None;
        while let Some(at) = queue.pop_front() {
            for to in edges.get(&at).map(|m| m.keys()).into_iter().flatten() {
                if !members.contains(to) {
                    continue;
                }
                if *to == start {
                    closing = Some(at.clone());
                    break;
                }
                if !came_from.contains_key(to) {
                    came_from.insert(to.clone(), at.clone());
                    queue.push_back(to.clone());
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let mut path = vec![closing.expect("a group is a cycle")];
        while path.last() != Some(&start) {
            let prev = came_from[path.last().expect("not empty")].clone();
            path.push(prev);
        }
        path.reverse();
        out.push(path);
    }
    out
}

/// The modules that answer requests. Each layer's error says who failed and
/// becomes its response, metric and log line in one place (the proxy's
/// `Error`, the driver's `Refusal`, the hub's `Refusal`, the cluster's
/// `Refusal`), so none of them returns a response, `()`
/// or a bare string as its error.
const TYPED_ERRORS: [&str; 9] = [
    "hub",
    "cluster",
    "proxy",
    "driver",
    "server.rs",
    "listener.rs",
    "assets.rs",
    "audit.rs",
    "web.rs",
];

/// Every line of code of `paths` with its place (`path:line`): comments and
/// a closing test module (`#[cfg(test)] mod … {`) left out.
fn code_lines(paths: &[PathBuf]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).expect("read a source file");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim();
            if code == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|next| {
                    next.trim_start().starts_with("mod ") && next.ends_with('{')
                })
            {
                // The test module closes the file.
                break;
            }
            if !code.starts_with("//") {
                out.push((format!("{}:{}", path.display(), i + 1), code.to_string()));
            }
        }
    }
    out
}

#[test]
fn errors_that_answer_requests_are_typed() {
    let mut paths = Vec::new();
    for module in TYPED_ERRORS {
        let path = src().join(module);
        if path.is_dir() {
            rust_files(&path, &mut paths);
        } else {
            paths.push(path);
        }
    }
    // Unit test files drive the code with what they like.
    paths.retain(|p| !p.ends_with("tests.rs") && !p.ends_with("contract.rs"));
    let untyped = [", Response<Body>>", ", &'static str>", ", String>", ", ()>"];
    let found: Vec<String> = code_lines(&paths)
        .into_iter()
        .filter(|(_, code)| {
            code.contains("result_large_err")
                || code.contains("Err(())")
                || (code.contains("Result<") && untyped.iter().any(|u| code.contains(u)))
        })
        .map(|(at, code)| format!("{at}: {code}"))
        .collect();
    assert!(
        found.is_empty(),
        "errors that are responses, `()` or bare strings (return the layer's error type):\n{}",
        found.join("\n")
    );
}

/// One policy for a poisoned lock (`src/lock.rs`: recover, log, count):
/// nowhere else does the code unwrap, expect or recover a lock itself.
#[test]
fn every_lock_follows_the_one_policy() {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    paths.retain(|p| !p.ends_with("lock.rs") && !p.ends_with("tests.rs"));
    let found: Vec<String> = code_lines(&paths)
        .into_iter()
        .filter(|(_, code)| {
            [
                ".lock().unwrap()",
                ".lock().expect(",
                "p.into_inner()",
                ".read().unwrap()",
                ".write().unwrap()",
            ]
            .iter()
            .any(|bad| code.contains(bad))
        })
        .map(|(at, code)| format!("{at}: {code}"))
        .collect();
    assert!(
        found.is_empty(),
        "locks taken outside the one policy (use `crate::lock::lock`):\n{}",
        found.join("\n")
    );
}
