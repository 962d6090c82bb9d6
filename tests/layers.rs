//! The source tree is layered: no file under `src/` depends, directly or through others, on
//! a file that depends back on it, so that each file can be read knowing only what is below
//! it (issue #16).
//!
//! A file depends on another when it names it: a `use` (grouped, `pub use` re-exports and
//! aliases included) or a path in code (`crate::a::f()`, `super::X`, `child::Y`) that
//! resolves to a module the other file defines. `crate::a::Item`, where `Item` is not a
//! module, names `a.rs` or `a/mod.rs`, the file that holds or re-exports it. `mod x;` is not
//! a dependency: a parent declaring a child and the child importing the parent is a tree,
//! not a loop; but a `mod.rs` that re-exports a child (`pub use child::X`) while the child
//! imports from the `mod.rs` is.
//!
//! `#[cfg(test)]` modules count like any other: a test beside a file must not reach up
//! into a layer that reaches back down to it. Names of other crates, and paths inside
//! macro definitions (`$crate::`), are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

#[test]
fn no_file_in_src_imports_a_file_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tree = Tree::read(root, &["src/lib.rs", "src/main.rs"]);
    let unreached: Vec<_> = rust_files(&root.join("src"))
        .into_iter()
        .map(|path| relative(root, &path))
        .filter(|path| !tree.files.contains_key(path))
        .collect();
    assert!(unreached.is_empty(), "files under src/ that no `mod` reaches: {unreached:?}");
    let cycles = tree.cycles(&file);
    assert!(cycles.is_empty(), "{}", tree.describe(&cycles, &file));
}

/// The same one level up: the top-level modules (`proxy`, `inject`, `controller`...) are
/// layered too.
#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let tree = Tree::read(Path::new(env!("CARGO_MANIFEST_DIR")), &["src/lib.rs", "src/main.rs"]);
    let room = |f: &str| tree.room(f);
    let cycles = tree.cycles(&room);
    assert!(cycles.is_empty(), "{}", tree.describe(&cycles, &room));
}

fn file(f: &str) -> String {
    f.to_string()
}

/// The `.rs` files under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/")
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            Component::ParentDir if parts.last().is_some_and(|p| p != "..") => {
                parts.pop();
            }
            Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

// ---- tokens ----

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A number, a lifetime or a char literal: only its place matters.
    Other,
}

/// Rust source as tokens with their line numbers; comments are dropped and literals kept
/// whole, so that neither is read as code.
fn lex(src: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut toks = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                } else if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br#".."#: ends at a quote followed by as many hashes.
            let hashes = chars[i..i + len].iter().filter(|&&c| c == '#').count();
            i += len;
            let body_start = i;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    break;
                }
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            let body: String = chars[body_start..i.min(chars.len())].iter().collect();
            toks.push((Tok::Str(body), start_line));
            i += 1 + hashes;
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            i += if c == '"' { 1 } else { 2 };
            let mut body = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    body.push(chars[i]);
                    i += 1;
                }
                line += usize::from(at(i) == '\n');
                body.push(at(i));
                i += 1;
            }
            i += 1;
            toks.push((Tok::Str(body), start_line));
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            // A char literal ('a', '\n', b'x') or a lifetime ('a).
            let q = if c == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                i = q + 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(q + 2) == '\'' {
                i = q + 3;
            } else {
                i = q + 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
            toks.push((Tok::Other, start_line));
        } else if c.is_alphabetic() || c == '_' {
            if c == 'r' && at(i + 1) == '#' {
                i += 2;
            }
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            toks.push((Tok::Ident(chars[start..i].iter().collect()), start_line));
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            toks.push((Tok::Other, start_line));
        } else if c == ':' && at(i + 1) == ':' {
            toks.push((Tok::PathSep, start_line));
            i += 2;
        } else {
            toks.push((Tok::Punct(c), start_line));
            i += 1;
        }
    }
    toks
}

/// The length of a raw string's opening (`r"`, `r##"`, `br#"`) at `i`, if one starts there.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') || chars.get(j) == Some(&'c') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

// ---- modules and what they name ----

/// A path some module names, as written.
#[derive(Clone, Debug)]
struct Named {
    /// The module in which the path is written.
    scope: Vec<String>,
    file: String,
    line: usize,
    segments: Vec<String>,
    /// The name a `use` binds (`use a::b as c;` binds `c`), if any.
    binds: Option<String>,
    /// The root the crate is known by from this file (`portcullis` in `main.rs`).
    from_bin: bool,
}

#[derive(Debug, Default)]
struct Tree {
    /// Each file, with its text.
    files: BTreeMap<String, String>,
    /// The file defining each module, by the module's path from the crate root; a binary's
    /// modules are under `["<bin>", n]`.
    modules: BTreeMap<Vec<String>, String>,
    named: Vec<Named>,
}

/// Reads files from the disk, or in the checker's own tests, from a map.
trait Source {
    fn read(&self, path: &str) -> Option<String>;
}

struct Disk<'a>(&'a Path);

impl Source for Disk<'_> {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.0.join(path)).ok()
    }
}

impl Source for BTreeMap<&str, &str> {
    fn read(&self, path: &str) -> Option<String> {
        self.get(path).map(|s| s.to_string())
    }
}

const BIN: &str = "<bin>";

impl Tree {
    fn read(root: &Path, crate_roots: &[&str]) -> Tree {
        Tree::from_source(&Disk(root), crate_roots)
    }

    /// The modules reached from each crate root (`lib.rs` first; the others are binaries
    /// that know the library by its name).
    fn from_source(source: &dyn Source, crate_roots: &[&str]) -> Tree {
        let mut tree = Tree::default();
        for (n, root) in crate_roots.iter().enumerate() {
            let path = if n == 0 { vec![] } else { vec![BIN.to_string(), n.to_string()] };
            let dir = Path::new(root).parent().unwrap().to_path_buf();
            tree.load(source, root, path, dir, n > 0);
        }
        tree
    }

    fn load(
        &mut self,
        source: &dyn Source,
        file: &str,
        path: Vec<String>,
        dir: PathBuf,
        bin: bool,
    ) {
        let text = source.read(file).unwrap_or_else(|| panic!("cannot read {file}"));
        self.files.insert(file.to_string(), text.clone());
        let toks = lex(&text);
        let mut parser = Parser { toks: &toks, i: 0 };
        let mut found = Found::default();
        parser.items(&path, &dir, file, bin, &mut found);
        for module in found.inline {
            self.modules.insert(module, file.to_string());
        }
        self.modules.insert(path, file.to_string());
        self.named.extend(found.named);
        for decl in found.declared {
            let candidates = match &decl.path_attr {
                Some(p) => vec![normalize(&decl.parent_file_dir.join(p))],
                None => {
                    let name = decl.module.last().unwrap();
                    vec![
                        normalize(&decl.dir.join(format!("{name}.rs"))),
                        normalize(&decl.dir.join(name).join("mod.rs")),
                    ]
                }
            };
            let Some(child) = candidates.iter().find(|c| source.read(c).is_some()) else {
                panic!("{file}: no file for `mod {}` among {candidates:?}", decl.module.join("::"));
            };
            let child_dir = if child.ends_with("/mod.rs") || decl.path_attr.is_some() {
                // A `#[path]` file's children sit beside it, as for a mod.rs.
                Path::new(child).parent().unwrap().to_path_buf()
            } else {
                Path::new(child).with_extension("")
            };
            self.load(source, child, decl.module, child_dir, bin);
        }
    }

    /// Where a path written in `scope` leads: the module it names or the module holding the
    /// item it names, or `None` for another crate's names.
    fn resolve(
        &self,
        named: &Named,
        aliases: &BTreeMap<(Vec<String>, String), Vec<String>>,
    ) -> Option<Vec<String>> {
        let mut segments = named.segments.iter().peekable();
        let first = segments.peek()?.as_str();
        let mut base: Vec<String> = match first {
            "crate" => {
                segments.next();
                if named.from_bin { named.scope[..2].to_vec() } else { vec![] }
            }
            "portcullis" if named.from_bin => {
                segments.next();
                vec![]
            }
            "self" => {
                segments.next();
                named.scope.clone()
            }
            "super" => {
                let mut base = named.scope.clone();
                while segments.peek().is_some_and(|s| *s == "super") {
                    segments.next();
                    base.pop();
                }
                base
            }
            "Self" => return None,
            name => {
                let mut child = named.scope.clone();
                child.push(name.to_string());
                if self.modules.contains_key(&child) {
                    segments.next();
                    child
                } else if let Some(target) = aliases.get(&(named.scope.clone(), name.to_string())) {
                    segments.next();
                    target.clone()
                } else {
                    return None;
                }
            }
        };
        base.extend(segments.cloned());
        Some(base)
    }

    /// The file defining the longest module prefix of `path`.
    fn file_of(&self, path: &[String]) -> Option<&str> {
        (0..=path.len()).rev().find_map(|n| self.modules.get(&path[..n]).map(String::as_str))
    }

    /// The top-level module a file belongs to (`src/proxy/app_h1/body.rs`: `proxy`), or the
    /// file itself for the library's root.
    fn room(&self, file: &str) -> String {
        let paths = self.modules.iter().filter(|(_, f)| f.as_str() == file).map(|(p, _)| p);
        let top = paths.min_by_key(|p| p.len()).and_then(|p| p.first());
        top.map_or_else(|| file.to_string(), String::clone)
    }

    /// Each dependency between two nodes (a file, or what `node` makes of it), with where it
    /// is written.
    fn edges(&self, node: &dyn Fn(&str) -> String) -> BTreeMap<(String, String), Vec<String>> {
        // What each `use` binds, resolved in order so that a `use` may build on an earlier one.
        let mut aliases = BTreeMap::new();
        for _ in 0..3 {
            for named in &self.named {
                if let (Some(name), Some(target)) = (&named.binds, self.resolve(named, &aliases)) {
                    aliases.insert((named.scope.clone(), name.clone()), target);
                }
            }
        }
        let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for named in &self.named {
            let Some(target) = self.resolve(named, &aliases) else { continue };
            let Some(to) = self.file_of(&target) else { continue };
            let (from, to) = (node(&named.file), node(to));
            if to != from {
                let at = format!("{}:{} `{}`", named.file, named.line, named.segments.join("::"));
                edges.entry((from, to)).or_default().push(at);
            }
        }
        edges
    }

    /// The strongly connected components of more than one node (Tarjan's algorithm).
    fn cycles(&self, node: &dyn Fn(&str) -> String) -> Vec<Vec<String>> {
        let edges = self.edges(node);
        let nodes: BTreeSet<String> = self.files.keys().map(|f| node(f)).collect();
        let files: Vec<&String> = nodes.iter().collect();
        let index_of: BTreeMap<&String, usize> =
            files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
        for (from, to) in edges.keys() {
            out[index_of[from]].push(index_of[to]);
        }
        let mut state = Tarjan {
            out: &out,
            index: vec![None; files.len()],
            low: vec![0; files.len()],
            ..Default::default()
        };
        for v in 0..files.len() {
            if state.index[v].is_none() {
                state.visit(v);
            }
        }
        let mut cycles: Vec<Vec<String>> = state
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut names: Vec<String> = c.iter().map(|&v| files[v].clone()).collect();
                names.sort();
                names
            })
            .collect();
        cycles.sort();
        cycles
    }

    /// The cycles, each with the imports that tie it.
    fn describe(&self, cycles: &[Vec<String>], node: &dyn Fn(&str) -> String) -> String {
        let edges = self.edges(node);
        let mut text = format!("{} import cycle(s):\n", cycles.len());
        for (n, cycle) in cycles.iter().enumerate() {
            let members: BTreeSet<&String> = cycle.iter().collect();
            writeln!(text, "\ncycle {} ({} parts): {}", n + 1, cycle.len(), cycle.join(", "))
                .unwrap();
            for ((from, to), places) in &edges {
                if members.contains(from) && members.contains(to) {
                    writeln!(text, "  {from} -> {to}").unwrap();
                    for place in places.iter().take(3) {
                        writeln!(text, "      {place}").unwrap();
                    }
                    if places.len() > 3 {
                        writeln!(text, "      and {} more", places.len() - 3).unwrap();
                    }
                }
            }
        }
        text
    }
}

#[derive(Default)]
struct Tarjan<'a> {
    out: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: BTreeSet<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack.insert(v);
        for &w in &self.out[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack.contains(&w) => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            loop {
                let w = self.stack.pop().unwrap();
                self.on_stack.remove(&w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// A `mod x;` to load.
struct Declared {
    module: Vec<String>,
    dir: PathBuf,
    parent_file_dir: PathBuf,
    path_attr: Option<String>,
}

#[derive(Default)]
struct Found {
    declared: Vec<Declared>,
    inline: Vec<Vec<String>>,
    named: Vec<Named>,
}

struct Parser<'a> {
    toks: &'a [(Tok, usize)],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.i + k).map(|(t, _)| t)
    }

    fn ident(&self, k: usize) -> Option<&str> {
        match self.peek(k) {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn line(&self) -> usize {
        self.toks.get(self.i).map_or(0, |(_, l)| *l)
    }

    /// The items of the module `scope`, up to the `}` that closes it (or the end of file).
    fn items(&mut self, scope: &[String], dir: &Path, file: &str, bin: bool, found: &mut Found) {
        let mut path_attr: Option<String> = None;
        let mut depth = 0usize;
        let file_dir = Path::new(file).parent().unwrap().to_path_buf();
        while let Some(tok) = self.peek(0).cloned() {
            match tok {
                Tok::Punct('#') => {
                    // An attribute: remember `#[path = ".."]` for the `mod` it precedes.
                    let mut k = 1;
                    if self.peek(k) == Some(&Tok::Punct('!')) {
                        k += 1;
                    }
                    if self.peek(k) == Some(&Tok::Punct('[')) {
                        if self.ident(k + 1) == Some("path")
                            && self.peek(k + 2) == Some(&Tok::Punct('='))
                            && let Some(Tok::Str(p)) = self.peek(k + 3)
                        {
                            path_attr = Some(p.clone());
                        }
                        self.i += k;
                        self.skip_group();
                        continue;
                    }
                    self.i += 1;
                }
                Tok::Punct('$') => self.i += 2,
                Tok::Ident(word) if word == "pub" && self.peek(1) == Some(&Tok::Punct('(')) => {
                    // `pub(in crate::a)` names a module only to set visibility.
                    self.i += 1;
                    self.skip_group();
                    continue;
                }
                Tok::Ident(word) if word == "pub" => {
                    self.i += 1;
                    continue;
                }
                Tok::Ident(word) if word == "mod" && self.ident(1).is_some() => {
                    let name = self.ident(1).unwrap().to_string();
                    let mut module = scope.to_vec();
                    module.push(name.clone());
                    self.i += 2;
                    if self.peek(0) == Some(&Tok::Punct('{')) {
                        self.i += 1;
                        let child_dir = dir.join(&name);
                        found.inline.push(module.clone());
                        self.items(&module, &child_dir, file, bin, found);
                    } else {
                        found.declared.push(Declared {
                            module,
                            dir: dir.to_path_buf(),
                            parent_file_dir: file_dir.clone(),
                            path_attr: path_attr.take(),
                        });
                    }
                    path_attr = None;
                    continue;
                }
                Tok::Ident(word) if word == "use" && self.peek(1) != Some(&Tok::Punct('<')) => {
                    let line = self.line();
                    self.i += 1;
                    if self.peek(0) == Some(&Tok::PathSep) {
                        self.i += 1;
                    }
                    let mut trees = Vec::new();
                    self.use_tree(Vec::new(), &mut trees);
                    for (segments, binds) in trees {
                        found.named.push(Named {
                            scope: scope.to_vec(),
                            file: file.to_string(),
                            line,
                            segments,
                            binds,
                            from_bin: bin,
                        });
                    }
                    path_attr = None;
                    continue;
                }
                Tok::Ident(first)
                    if self.peek(1) == Some(&Tok::PathSep) && self.ident(2).is_some() =>
                {
                    // A path in code: `a::b::c`, up to what is not a name.
                    let line = self.line();
                    let mut segments = vec![first.clone()];
                    self.i += 1;
                    while self.peek(0) == Some(&Tok::PathSep) && self.ident(1).is_some() {
                        segments.push(self.ident(1).unwrap().to_string());
                        self.i += 2;
                    }
                    found.named.push(Named {
                        scope: scope.to_vec(),
                        file: file.to_string(),
                        line,
                        segments,
                        binds: None,
                        from_bin: bin,
                    });
                    continue;
                }
                Tok::PathSep => {
                    // `x::<T>::y` or `<T as U>::y`: what follows belongs to the path before.
                    self.i += 1;
                    if self.ident(0).is_some() {
                        self.i += 1;
                    }
                }
                Tok::Punct('{') => {
                    depth += 1;
                    self.i += 1;
                }
                Tok::Punct('}') => {
                    self.i += 1;
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                _ => self.i += 1,
            }
            path_attr = None;
        }
    }

    /// Skips a bracketed group starting at the current token.
    fn skip_group(&mut self) {
        let mut depth = 0;
        while let Some(tok) = self.peek(0).cloned() {
            self.i += 1;
            match tok {
                Tok::Punct('[' | '(' | '{') => depth += 1,
                Tok::Punct(']' | ')' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// A use tree after `prefix`: each full path with the name it binds (none for a glob).
    fn use_tree(&mut self, mut prefix: Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
        loop {
            match self.peek(0).cloned() {
                Some(Tok::Ident(name)) => {
                    self.i += 1;
                    if self.peek(0) == Some(&Tok::PathSep) {
                        self.i += 1;
                        prefix.push(name);
                        continue;
                    }
                    let mut binds = name.clone();
                    if self.ident(0) == Some("as") {
                        binds = self.ident(1).unwrap_or("_").to_string();
                        self.i += 2;
                    }
                    if name != "self" {
                        prefix.push(name);
                    } else if let Some(last) = prefix.last()
                        && binds == "self"
                    {
                        binds = last.clone();
                    }
                    out.push((prefix, Some(binds).filter(|b| b != "_")));
                }
                Some(Tok::Punct('*')) => {
                    self.i += 1;
                    out.push((prefix, None));
                }
                Some(Tok::Punct('{')) => {
                    self.i += 1;
                    while !matches!(self.peek(0), Some(Tok::Punct('}')) | None) {
                        self.use_tree(prefix.clone(), out);
                        if self.peek(0) == Some(&Tok::Punct(',')) {
                            self.i += 1;
                        }
                    }
                    self.i += 1;
                }
                _ => {}
            }
            break;
        }
        if self.peek(0) == Some(&Tok::Punct(';')) {
            self.i += 1;
        }
    }
}

// ---- the checker's own tests ----

fn cycles_in(files: &[(&'static str, &'static str)]) -> Vec<Vec<String>> {
    let source: BTreeMap<&str, &str> = files.iter().copied().collect();
    Tree::from_source(&source, &["src/lib.rs"]).cycles(&file)
}

#[test]
fn a_file_and_a_file_it_imports_importing_it_back_are_a_cycle() {
    let cycles = cycles_in(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "use crate::b::Thing;\npub struct Other;"),
        ("src/b.rs", "pub struct Thing(crate::a::Other);"),
    ]);
    assert_eq!(cycles, [["src/a.rs", "src/b.rs"]]);
}

#[test]
fn a_chain_through_grouped_nested_and_relative_uses_is_a_cycle() {
    let cycles = cycles_in(&[
        ("src/lib.rs", "mod p;\n"),
        ("src/p/mod.rs", "mod a;\nmod b;\nmod c;\n"),
        ("src/p/a.rs", "use super::{b::{self, X}, c as see};\n"),
        ("src/p/b.rs", "pub struct X;\n"),
        ("src/p/c.rs", "use self::inner::Y; mod inner { pub use crate::p::a::*; }\n"),
    ]);
    assert_eq!(cycles, [["src/p/a.rs", "src/p/c.rs"]]);
}

#[test]
fn a_mod_rs_re_exporting_a_child_that_imports_it_is_a_cycle() {
    let cycles = cycles_in(&[
        ("src/lib.rs", "pub mod p;\n"),
        ("src/p/mod.rs", "mod child;\npub use child::Thing;\npub const LIMIT: usize = 1;\n"),
        ("src/p/child.rs", "use super::LIMIT;\npub struct Thing([u8; LIMIT]);\n"),
    ]);
    assert_eq!(cycles, [["src/p/child.rs", "src/p/mod.rs"]]);
}

#[test]
fn declaring_a_child_is_not_importing_it() {
    let cycles = cycles_in(&[
        ("src/lib.rs", "pub mod p;\n"),
        ("src/p/mod.rs", "pub mod child;\n#[cfg(test)]\n#[path = \"p_tests.rs\"]\nmod tests;\n"),
        ("src/p/child.rs", "use super::super::p::tests as _;\n"),
        ("src/p/p_tests.rs", "use super::*;\n"),
    ]);
    assert!(cycles.is_empty(), "{cycles:?}");
}

#[test]
fn comments_strings_and_other_crates_are_not_imports() {
    let cycles = cycles_in(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/a.rs",
            "use std::b::X; // use crate::b::X;\n/* crate::b::Y */ const S: &str = \"crate::b::Z\";\nconst R: &str = r#\"crate::b::W\"#; fn f<'a>(c: &'a char) -> char { '\"' }",
        ),
        ("src/b.rs", "use crate::a::S;\n"),
    ]);
    assert!(cycles.is_empty(), "{cycles:?}");
}

#[test]
fn a_path_through_a_use_alias_is_followed() {
    let cycles = cycles_in(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "use crate::b as bee;\nfn f() { bee::g() }\n"),
        ("src/b.rs", "pub fn g() { crate::a::h() }\n"),
    ]);
    assert_eq!(cycles, [["src/a.rs", "src/b.rs"]]);
}

#[test]
fn files_without_a_cycle_can_tie_their_modules_in_one() {
    let files = [
        ("src/lib.rs", "mod a;\nmod b;\n"),
        ("src/a/mod.rs", "mod low;\nmod high;\n"),
        ("src/a/low.rs", ""),
        ("src/a/high.rs", "use crate::b::high::X;\n"),
        ("src/b/mod.rs", "pub mod low;\npub mod high;\n"),
        ("src/b/low.rs", "use crate::a::low::*;\n"),
        ("src/b/high.rs", "use super::low::*;\npub struct X;\n"),
    ];
    let source: BTreeMap<&str, &str> = files.iter().copied().collect();
    let tree = Tree::from_source(&source, &["src/lib.rs"]);
    assert!(tree.cycles(&file).is_empty());
    assert_eq!(tree.cycles(&|f| tree.room(f)), [["a", "b"]]);
}
