//! The layout rules of `src/`, checked on the source: no component module imports a module of
//! another kind (shared code lives outside the component folders), the contracts import no
//! component, and modules import each other without loops (but for the generated wire schema,
//! whose tables and scanner refer to each other by design). Test modules are left out: a test
//! may use what it likes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

type Module = Vec<String>;

/// Every module of `src/` (by path: `exporters::zipkin`) and the modules its code refers to.
fn imports() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in glob::glob(&format!("{}/**/*.rs", src.display())).unwrap() {
        let path = entry.unwrap();
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut parts: Module = rel
            .trim_end_matches(".rs")
            .split('/')
            .map(String::from)
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] || parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        files.push((parts, std::fs::read_to_string(&path).unwrap()));
    }
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    // The longest prefix of a path that is a module.
    let resolve = |path: &[String]| {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    let crate_path = Regex::new(r"\bcrate::((?:\w+::)*\w+)").unwrap();
    let super_path = Regex::new(r"\b((?:super::)+)((?:\w+::)*\w+)").unwrap();
    let self_path = Regex::new(r"\bself::(\w+)").unwrap();
    // `use super::{a, b::C}` and `use crate::x::{y, z}`: each item a path of its own.
    let group = Regex::new(r"\b(crate::|(?:super::)+)((?:\w+::)*)\{([^}]*)\}").unwrap();
    let comment = Regex::new(r"//[^\n]*").unwrap();
    let mut out = BTreeMap::new();
    for (m, text) in &files {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code = comment.replace_all(code, "");
        let mut deps = BTreeSet::new();
        for c in crate_path.captures_iter(&code) {
            let p: Module = c[1].split("::").map(String::from).collect();
            deps.extend(resolve(&p));
        }
        for c in super_path.captures_iter(&code) {
            let ups = c[1].matches("super::").count();
            let mut p: Module = m[..m.len().saturating_sub(ups)].to_vec();
            p.extend(c[2].split("::").map(String::from));
            deps.extend(resolve(&p));
        }
        for c in group.captures_iter(&code) {
            let mut base: Module = if &c[1] == "crate::" {
                Vec::new()
            } else {
                m[..m.len().saturating_sub(c[1].matches("super::").count())].to_vec()
            };
            base.extend(c[2].split("::").filter(|s| !s.is_empty()).map(String::from));
            for item in c[3].split(',') {
                let item = item.split(" as ").next().unwrap_or("").trim();
                if item.is_empty() || item == "*" || item == "self" {
                    continue;
                }
                let mut p = base.clone();
                p.extend(item.split("::").map(|s| s.trim().to_string()));
                deps.extend(resolve(&p));
            }
        }
        for c in self_path.captures_iter(&code) {
            let mut p = m.clone();
            p.push(c[1].to_string());
            deps.extend(resolve(&p));
        }
        // Paths relative to the module: `run::Running`, `use tailer::*`.
        for child in modules
            .iter()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
        {
            let name = child.last().unwrap();
            if Regex::new(&format!(r"(?:^|[^:\w]){name}::"))
                .unwrap()
                .is_match(&code)
            {
                deps.insert(child.clone());
            }
        }
        deps.remove(m);
        out.insert(m.clone(), deps);
    }
    out
}

const KINDS: [&str; 5] = [
    "receivers",
    "processors",
    "exporters",
    "extensions",
    "connectors",
];

#[test]
fn no_component_imports_a_module_of_another_kind() {
    let mut wrong = Vec::new();
    for (m, deps) in imports() {
        let Some(kind) = m.first().filter(|k| KINDS.contains(&k.as_str())) else {
            continue;
        };
        for d in deps {
            let other = &d[0];
            if (KINDS.contains(&other.as_str()) && other != kind) || other == "pipeline" {
                wrong.push(format!("{} imports {}", m.join("::"), d.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_contracts_and_shared_modules_import_no_component() {
    let mut wrong = Vec::new();
    for (m, deps) in imports() {
        let first = m[0].as_str();
        // The registry lists the components and the service builds them; the fuzz entry points
        // call into them.
        if KINDS.contains(&first) || ["registry", "pipeline", "fuzz"].contains(&first) {
            continue;
        }
        for d in deps {
            if KINDS.contains(&d[0].as_str()) {
                wrong.push(format!("{} imports {}", m.join("::"), d.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn modules_import_each_other_without_loops() {
    let graph = imports();
    // Tarjan's strongly connected components.
    struct Walk<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        loops: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g Module) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.loops.push(comp);
                }
            }
        }
    }
    let mut walk = Walk {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        loops: Vec::new(),
    };
    for m in graph.keys() {
        if !walk.index.contains_key(m) {
            walk.visit(m);
        }
    }
    let generated = vec![
        "signal::wire".to_string(),
        "signal::wire_schema".to_string(),
    ];
    walk.loops.retain(|l| *l != generated);
    assert!(walk.loops.is_empty(), "{:#?}", walk.loops);
    // The analysis sees imports at all: the service imports the registry.
    assert!(
        graph[&vec!["pipeline".to_string(), "validate".to_string()]]
            .contains(&vec!["registry".to_string()])
    );
}
