//! The module import graph of one crate, read from its sources with `syn`: which of its files
//! refers to which. The architecture test keeps it free of cycles ("no two files import each
//! other", docs/architecture.md) and checks the layering it documents.
//!
//! A file refers to another when any path in it — a `use`, a type, an expression, or a path
//! inside a macro call such as `assert_eq!(super::f(), ..)` — names an item of that file's module
//! or below: `crate::a::b`, `super::x`, `self::child::y`, or a child module by its bare name.
//! Declaring a child (`mod child;`) is structure, not a reference. Inline modules (`mod tests
//! { .. }`) belong to their file, so `use super::*` in a file's tests is no edge.

use proc_macro2::{TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// A module path inside the crate, e.g. `["serve", "executor"]`; empty for the crate root.
type ModulePath = Vec<String>;

#[derive(Debug, thiserror::Error)]
pub enum ImportGraphError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("module `{module}` declared in {} has no file (looked for {})", declared_in.display(), tried.join(" and "))]
    MissingModule {
        module: String,
        declared_in: PathBuf,
        tried: Vec<String>,
    },
    #[error("{}: `#[path]` on module `{module}` is not followed by this checker", file.display())]
    PathAttribute { module: String, file: PathBuf },
}

/// One crate's files and which refers to which.
#[derive(Debug)]
pub struct ImportGraph {
    /// Each file's module, with the file.
    files: BTreeMap<ModulePath, PathBuf>,
    /// For each file's module: the other files' modules it refers to, with the first path seen.
    edges: BTreeMap<ModulePath, BTreeMap<ModulePath, String>>,
}

/// A module name as people write it: `serve::executor`, or `crate` for the root.
pub fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

impl ImportGraph {
    /// Reads the crate whose root file is `root` (`src/lib.rs` or `src/main.rs`) and every module
    /// file it declares.
    pub fn of_crate(root: &Path) -> Result<Self, ImportGraphError> {
        let mut parsed = Vec::new();
        let mut logical = BTreeMap::new();
        let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
        load_file(Vec::new(), root, &dir, &mut parsed, &mut logical)?;
        let mut uses = UseLeaves::default();
        for (module, _, file) in &parsed {
            uses.current = module.clone();
            uses.visit_file(file);
        }
        let bindings = uses.bindings(&logical);
        let mut edges = BTreeMap::new();
        let mut files = BTreeMap::new();
        for (module, path, file) in &parsed {
            let mut collector = References {
                logical: &logical,
                bindings: &bindings,
                file_module: module,
                current: module.clone(),
                found: BTreeMap::new(),
            };
            collector.visit_file(file);
            edges.insert(module.clone(), collector.found);
            files.insert(module.clone(), path.clone());
        }
        Ok(ImportGraph { files, edges })
    }

    /// Every file's module, sorted.
    pub fn modules(&self) -> impl Iterator<Item = &ModulePath> {
        self.files.keys()
    }

    /// The modules of other files that `module`'s file refers to, each with the first path seen.
    pub fn imports(&self, module: &[String]) -> impl Iterator<Item = (&ModulePath, &str)> {
        self.edges
            .get(module)
            .into_iter()
            .flatten()
            .map(|(target, example)| (target, example.as_str()))
    }

    /// Groups of files that reach each other through their imports (strongly connected
    /// components of more than one file), each sorted; none in a crate whose imports are layered.
    pub fn cycles(&self) -> Vec<Vec<ModulePath>> {
        let mut tarjan = Tarjan::default();
        for module in self.files.keys() {
            if !tarjan.index.contains_key(module) {
                tarjan.connect(module, &self.edges);
            }
        }
        let mut cycles: Vec<Vec<ModulePath>> = tarjan
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|mut c| {
                c.sort();
                c
            })
            .collect();
        cycles.sort();
        cycles
    }

    /// A cycle written out with one example reference per edge inside it, for a failure message.
    pub fn explain(&self, cycle: &[ModulePath]) -> String {
        let members: BTreeSet<&ModulePath> = cycle.iter().collect();
        let mut lines = Vec::new();
        for from in cycle {
            for (to, example) in self.imports(from) {
                if members.contains(to) {
                    let file = self
                        .files
                        .get(from)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    lines.push(format!(
                        "  {} -> {} (`{example}` in {file})",
                        display(from),
                        display(to)
                    ));
                }
            }
        }
        lines.join("\n")
    }
}

/// Reads `path` as module `module`, and the files of the modules it declares.
/// `dir` is where its children's files live.
fn load_file(
    module: ModulePath,
    path: &Path,
    dir: &Path,
    parsed: &mut Vec<(ModulePath, PathBuf, syn::File)>,
    logical: &mut BTreeMap<ModulePath, ModulePath>,
) -> Result<(), ImportGraphError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportGraphError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = syn::parse_file(&text).map_err(|e| ImportGraphError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    logical.insert(module.clone(), module.clone());
    let children = declared_modules(&file.items, &module, &module, dir, path, logical)?;
    parsed.push((module, path.to_path_buf(), file));
    for (child, child_path, child_dir) in children {
        load_file(child, &child_path, &child_dir, parsed, logical)?;
    }
    Ok(())
}

/// The out-of-line modules declared in `items` (recursing into inline modules, which are recorded
/// as belonging to `file_module`): each with its file and the folder of its own children.
fn declared_modules(
    items: &[syn::Item],
    current: &ModulePath,
    file_module: &ModulePath,
    dir: &Path,
    file: &Path,
    logical: &mut BTreeMap<ModulePath, ModulePath>,
) -> Result<Vec<(ModulePath, PathBuf, PathBuf)>, ImportGraphError> {
    let mut out = Vec::new();
    for item in items {
        let syn::Item::Mod(m) = item else { continue };
        let name = m.ident.to_string();
        let mut module = current.clone();
        module.push(name.clone());
        if m.attrs.iter().any(|a| a.path().is_ident("path")) {
            return Err(ImportGraphError::PathAttribute {
                module: display(&module),
                file: file.to_path_buf(),
            });
        }
        match &m.content {
            Some((_, inner)) => {
                logical.insert(module.clone(), file_module.clone());
                out.extend(declared_modules(
                    inner,
                    &module,
                    file_module,
                    &dir.join(&name),
                    file,
                    logical,
                )?);
            }
            None => {
                let flat = dir.join(format!("{name}.rs"));
                let nested = dir.join(&name).join("mod.rs");
                let child_path = if flat.is_file() {
                    flat
                } else if nested.is_file() {
                    nested
                } else {
                    return Err(ImportGraphError::MissingModule {
                        module: display(&module),
                        declared_in: file.to_path_buf(),
                        tried: vec![flat.display().to_string(), nested.display().to_string()],
                    });
                };
                out.push((module, child_path, dir.join(&name)));
            }
        }
    }
    Ok(out)
}

/// Collects, for one file, the other files' modules its paths name.
/// Module names a `use` brings into a module's scope: `use crate::meter;` binds `meter`,
/// `use super::*;` binds the parent's child modules, so `meter::nvml::X` or `sibling::f()` later
/// in that module names those modules.
type Bindings = BTreeMap<ModulePath, BTreeMap<String, ModulePath>>;

/// Where a path leads from module `current`, before any `use` binding: `crate::`, `self::`,
/// `super::` and a child module's bare name; `None` for another crate, std, or a local item.
fn absolute(
    logical: &BTreeMap<ModulePath, ModulePath>,
    current: &[String],
    segments: &[String],
) -> Option<ModulePath> {
    let first = segments.first()?;
    Some(match first.as_str() {
        "crate" => segments[1..].to_vec(),
        "self" => [current, &segments[1..]].concat(),
        "super" => {
            let ups = segments.iter().take_while(|s| *s == "super").count();
            let kept = current.len().saturating_sub(ups);
            [&current[..kept], &segments[ups..]].concat()
        }
        _ => {
            let child = [current, &segments[..1]].concat();
            if !logical.contains_key(&child) {
                return None;
            }
            [current, segments].concat()
        }
    })
}

/// One `use` leaf: the module it is in, its path, the name it binds, whether it is a glob.
type UseLeaf = (ModulePath, Vec<String>, Option<String>, bool);

/// Every `use` leaf of the crate.
#[derive(Default)]
struct UseLeaves {
    current: ModulePath,
    leaves: Vec<UseLeaf>,
}

impl UseLeaves {
    fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        let here = self.current.clone();
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) if n.ident == "self" => {
                let name = prefix.last().cloned();
                self.leaves.push((here, prefix.clone(), name, false));
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let path = [&prefix[..], std::slice::from_ref(&name)].concat();
                self.leaves.push((here, path, Some(name), false));
            }
            syn::UseTree::Rename(r) => {
                let path = [&prefix[..], &[r.ident.to_string()]].concat();
                self.leaves
                    .push((here, path, Some(r.rename.to_string()), false));
            }
            syn::UseTree::Glob(_) => self.leaves.push((here, prefix.clone(), None, true)),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(prefix, t);
                }
            }
        }
    }

    /// The module names each module's `use`s bind.
    fn bindings(&self, logical: &BTreeMap<ModulePath, ModulePath>) -> Bindings {
        let mut bindings = Bindings::new();
        for (current, path, name, glob) in &self.leaves {
            let Some(target) = absolute(logical, current, path) else {
                continue;
            };
            if !logical.contains_key(&target) {
                continue; // an item, not a module
            }
            let scope = bindings.entry(current.clone()).or_default();
            if *glob {
                for child in logical.keys() {
                    if child.len() == target.len() + 1 && child.starts_with(&target) {
                        scope.insert(child[target.len()].clone(), child.clone());
                    }
                }
            } else if let Some(name) = name {
                scope.insert(name.clone(), target);
            }
        }
        bindings
    }
}

/// A visitor that knows which module it is in.
trait InModule {
    fn current(&mut self) -> &mut ModulePath;
}

/// Visits an inline module's items as that module; an out-of-line one is a file of its own, read
/// separately.
fn visit_inline_module<'ast, V: Visit<'ast> + InModule>(v: &mut V, m: &'ast syn::ItemMod) {
    if let Some((_, items)) = &m.content {
        v.current().push(m.ident.to_string());
        for item in items {
            v.visit_item(item);
        }
        v.current().pop();
    }
}

impl InModule for UseLeaves {
    fn current(&mut self) -> &mut ModulePath {
        &mut self.current
    }
}

impl<'ast> Visit<'ast> for UseLeaves {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        visit_inline_module(self, m);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&mut Vec::new(), &u.tree);
    }
}

struct References<'a> {
    /// Every module (file or inline) → the module of the file it is in.
    logical: &'a BTreeMap<ModulePath, ModulePath>,
    bindings: &'a Bindings,
    file_module: &'a ModulePath,
    /// The module the visitor is in (the file's, or an inline module inside it).
    current: ModulePath,
    found: BTreeMap<ModulePath, String>,
}

impl References<'_> {
    fn reference(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let bound = || {
            let module = self.bindings.get(&self.current)?.get(first)?;
            Some([&module[..], &segments[1..]].concat())
        };
        let Some(absolute) = absolute(self.logical, &self.current, segments).or_else(bound) else {
            return; // another crate, std, or a local item
        };
        let target = (0..=absolute.len())
            .rev()
            .find_map(|n| self.logical.get(&absolute[..n]));
        if let Some(target) = target
            && target != self.file_module
        {
            self.found
                .entry(target.clone())
                .or_insert_with(|| segments.join("::"));
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            // `use a::b::{self, c}`: `self` is `a::b` itself.
            syn::UseTree::Name(n) if n.ident == "self" => self.reference(&prefix.clone()),
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.reference(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.reference(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.reference(&prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// Paths inside a macro's tokens (`ident(::ident)*`), which syn does not parse.
    fn tokens(&mut self, tokens: TokenStream) {
        let list: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < list.len() {
            match &list[i] {
                TokenTree::Group(g) => {
                    self.tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(first) => {
                    let mut segments = vec![first.to_string()];
                    let mut j = i + 1;
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (list.get(j), list.get(j + 1), list.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.reference(&segments);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
    }
}

impl InModule for References<'_> {
    fn current(&mut self) -> &mut ModulePath {
        &mut self.current
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        visit_inline_module(self, m);
    }

    // `pub(crate)`, `pub(super)`: who may see an item, not a reference to a module's items.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.reference(&segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// Tarjan's strongly connected components over the file graph.
#[derive(Default)]
struct Tarjan {
    next: usize,
    index: BTreeMap<ModulePath, usize>,
    low: BTreeMap<ModulePath, usize>,
    stack: Vec<ModulePath>,
    on_stack: BTreeSet<ModulePath>,
    components: Vec<Vec<ModulePath>>,
}

impl Tarjan {
    fn connect(
        &mut self,
        v: &ModulePath,
        edges: &BTreeMap<ModulePath, BTreeMap<ModulePath, String>>,
    ) {
        self.index.insert(v.clone(), self.next);
        self.low.insert(v.clone(), self.next);
        self.next += 1;
        self.stack.push(v.clone());
        self.on_stack.insert(v.clone());
        for w in edges.get(v).into_iter().flat_map(|e| e.keys()) {
            if !self.index.contains_key(w) {
                self.connect(w, edges);
                let low = self.low[v].min(self.low[w]);
                self.low.insert(v.clone(), low);
            } else if self.on_stack.contains(w) {
                let low = self.low[v].min(self.index[w]);
                self.low.insert(v.clone(), low);
            }
        }
        if self.low[v] == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack.remove(&w);
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn names(graph: &ImportGraph, module: &[&str]) -> Vec<String> {
        let module: ModulePath = module.iter().map(|s| s.to_string()).collect();
        graph.imports(&module).map(|(m, _)| display(m)).collect()
    }

    #[test]
    fn finds_references_of_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "lib.rs",
                    "mod a;\nmod b;\nmod serve;\nfn go() { a::run(); }\n",
                ),
                (
                    "a.rs",
                    "pub(crate) fn run() {}\npub(super) struct S;\n#[cfg(test)]\nmod tests { use super::*; }\n",
                ),
                // A path only inside a macro call is still a reference.
                // A module bound by `use` leads to its children.
                (
                    "b.rs",
                    "use crate::serve;\nfn f() { assert_eq!(crate::a::run(), ()); }\nfn g() { let _ = serve::queue::Queue; }\n",
                ),
                (
                    "serve/mod.rs",
                    "mod queue;\nmod http;\nmod worker;\npub use queue::Queue;\n",
                ),
                // `use super::*` brings the siblings' names: `queue::` is serve::queue.
                (
                    "serve/worker.rs",
                    "use super::*;\nfn f() { let _ = queue::Queue; }\n",
                ),
                ("serve/queue.rs", "pub struct Queue;\n"),
                (
                    "serve/http.rs",
                    "use super::{queue::Queue};\nfn f(_: &crate::b::B) {}\nmod inner { fn g() { super::super::queue::Queue; } }\n",
                ),
            ],
        );
        let graph = ImportGraph::of_crate(&dir.path().join("lib.rs")).unwrap();
        assert_eq!(names(&graph, &[]), vec!["a"]);
        assert!(
            names(&graph, &["a"]).is_empty(),
            "`use super::*` in a file's own tests"
        );
        assert_eq!(names(&graph, &["b"]), vec!["a", "serve", "serve::queue"]);
        assert_eq!(
            names(&graph, &["serve", "worker"]),
            vec!["serve", "serve::queue"]
        );
        assert_eq!(names(&graph, &["serve"]), vec!["serve::queue"]);
        assert_eq!(names(&graph, &["serve", "http"]), vec!["b", "serve::queue"]);
        assert!(graph.cycles().is_empty());
    }

    #[test]
    fn reports_two_files_that_import_each_other() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
                ("a.rs", "use crate::b::B;\npub struct A;\n"),
                ("b.rs", "pub struct B;\nfn f() { let _ = super::a::A; }\n"),
                ("c.rs", "use crate::a::A;\n"),
            ],
        );
        let graph = ImportGraph::of_crate(&dir.path().join("lib.rs")).unwrap();
        let cycles = graph.cycles();
        let shown: Vec<Vec<String>> = cycles
            .iter()
            .map(|c| c.iter().map(|m| display(m)).collect())
            .collect();
        assert_eq!(shown, vec![vec!["a".to_string(), "b".to_string()]]);
        let why = graph.explain(&cycles[0]);
        assert!(why.contains("a -> b (`crate::b::B`"), "{why}");
        assert!(why.contains("b -> a (`super::a::A`"), "{why}");
    }

    #[test]
    fn reports_a_cycle_through_the_crate_root_and_a_longer_one() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                // The root re-exports from `a`, and `a` reaches a helper defined in the root.
                (
                    "lib.rs",
                    "mod a;\nmod x;\nmod y;\nmod z;\npub use a::A;\npub fn helper() {}\n",
                ),
                ("a.rs", "pub struct A;\nfn f() { crate::helper() }\n"),
                ("x.rs", "use crate::y::Y;\npub struct X;\n"),
                ("y.rs", "pub struct Y;\nfn f() -> crate::z::Z { todo!() }\n"),
                ("z.rs", "pub struct Z(crate::x::X);\n"),
            ],
        );
        let graph = ImportGraph::of_crate(&dir.path().join("lib.rs")).unwrap();
        let shown: Vec<Vec<String>> = graph
            .cycles()
            .iter()
            .map(|c| c.iter().map(|m| display(m)).collect())
            .collect();
        assert_eq!(shown, vec![vec!["crate", "a"], vec!["x", "y", "z"]]);
    }

    #[test]
    fn a_declared_module_without_a_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("lib.rs", "mod gone;\n")]);
        let err = ImportGraph::of_crate(&dir.path().join("lib.rs")).unwrap_err();
        assert!(
            matches!(&err, ImportGraphError::MissingModule { module, .. } if module == "gone"),
            "{err}"
        );
        write(
            dir.path(),
            &[("lib.rs", "#[path = \"elsewhere.rs\"]\nmod moved;\n")],
        );
        let err = ImportGraph::of_crate(&dir.path().join("lib.rs")).unwrap_err();
        assert!(
            matches!(&err, ImportGraphError::PathAttribute { module, .. } if module == "moved"),
            "{err}"
        );
        write(dir.path(), &[("lib.rs", "fn broken( {\n")]);
        let err = ImportGraph::of_crate(&dir.path().join("lib.rs")).unwrap_err();
        assert!(matches!(err, ImportGraphError::Parse { .. }), "{err}");
    }
}
