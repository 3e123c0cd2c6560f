//! Config sources as the Collector's confmap resolves them: every `--config` URI (`file:`,
//! `env:`, `yaml:` or a bare path) read into a located tree, keys written `a::b::c` unfolded
//! into nested mappings, the trees merged in order (mappings key by key, anything else replaced
//! by the later value), then every `--set key::path=value` merged on top.
//!
//! Each source gets its own index in [`Errors::sources`], so an error in the merged config
//! names the file (or `env:NAME`, or the `--set` flag) it came from.

use super::errors::Errors;
use super::node::{self, Key, Node, Pos, Value};

/// How lists from different sources combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListMerge {
    /// A later list replaces an earlier one (the Collector's default).
    #[default]
    Replace,
    /// The `confmap.enableMergeAppendOption` gate: component lists (`service::extensions` and
    /// each pipeline's `receivers` and `exporters`) are combined, earlier ids first, without
    /// repeats; every other list, `processors` included (their order is behaviour), is replaced.
    AppendComponentLists,
}

/// What is read before a config is resolved; kept so that a reload reads the same sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `--config` values, in order.
    pub uris: Vec<String>,
    /// `--set` values, in order, applied after every URI.
    pub sets: Vec<String>,
    pub lists: ListMerge,
}

impl Sources {
    pub fn file(path: impl Into<String>) -> Self {
        Sources {
            uris: vec![path.into()],
            ..Default::default()
        }
    }

    /// What errors with no position are reported against: the only source, or all of them.
    pub fn label(&self) -> String {
        match self.uris.as_slice() {
            [one] if self.sets.is_empty() => display_name(one),
            _ => {
                let mut all: Vec<String> = self.uris.iter().map(|u| display_name(u)).collect();
                all.extend(self.sets.iter().map(|s| format!("--set {s}")));
                all.join(" + ")
            }
        }
    }
}

impl Errors {
    /// Errors of a config read from `sources`: the first source is index 0.
    pub fn for_sources(sources: &Sources) -> Self {
        let mut e = Errors::new(sources.label());
        if let Some(first) = sources.uris.first() {
            e.sources[0].0 = display_name(first);
        }
        e
    }
}

/// The largest config source read (a file or an environment variable).
const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// The name an error uses for a URI: a file's path, otherwise the URI itself (long inline YAML
/// shortened).
pub fn display_name(uri: &str) -> String {
    match split_scheme(uri) {
        None => uri.to_owned(),
        Some(("file", path)) => path.to_owned(),
        Some(("yaml", text)) if text.chars().count() > 40 => {
            format!("yaml:{}...", text.chars().take(40).collect::<String>())
        }
        Some(_) => uri.to_owned(),
    }
}

/// `scheme:rest` when the URI has a scheme as the Collector recognises one: a letter, then at
/// least one more of letters, digits, `+`, `-`, `.` (so `C:\x` is a path).
fn split_scheme(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = scheme.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some((scheme, rest))
}

/// Reads every source and merges them into one tree. `None` when nothing could be read;
/// otherwise the merged tree of what could, with each problem in `errors`.
pub fn resolve(
    sources: &Sources,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Node> {
    if sources.uris.is_empty() {
        errors.unplaced(
            "ferrotel",
            "no config given: pass --config with a file path or a `file:`, `env:` or `yaml:` URI",
        );
        return None;
    }
    let mut merged: Option<Node> = None;
    // The first source's name is already registered (index 0) by `Errors::new`.
    for (i, uri) in sources.uris.iter().enumerate() {
        let index = if i == 0 {
            0
        } else {
            errors.add_source(display_name(uri), true)
        };
        let Some(mut tree) = read_uri(uri, index, env, errors) else {
            continue;
        };
        tree.set_source(index);
        unfold_keys(&mut tree);
        merge_into(&mut merged, tree, sources.lists);
    }
    for set in &sources.sets {
        let index = errors.add_source(format!("--set {set}"), false);
        let Some(mut tree) = read_set(set, index, errors) else {
            continue;
        };
        tree.set_source(index);
        unfold_keys(&mut tree);
        merge_into(&mut merged, tree, sources.lists);
    }
    merged
}

fn merge_into(merged: &mut Option<Node>, tree: Node, lists: ListMerge) {
    match merged {
        None => *merged = Some(tree),
        Some(m) => merge(m, tree, lists, &mut Vec::new()),
    }
}

fn read_uri(
    uri: &str,
    index: u16,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Node> {
    let name = display_name(uri);
    let text = match split_scheme(uri) {
        None => read_file(uri).map_err(|e| format!("cannot read the config file: {e}")),
        Some(("file", path)) => {
            read_file(path).map_err(|e| format!("cannot read the config file: {e}"))
        }
        Some(("env", var)) => match env(var) {
            Some(v) => Ok(v),
            None => Err(format!(
                "the environment variable `{var}` that this config source names is not set"
            )),
        },
        Some(("yaml", text)) => Ok(text.to_owned()),
        Some((scheme @ ("http" | "https"), _)) => Err(format!(
            "the `{scheme}` config provider is not supported; fetch the file and pass its path"
        )),
        Some((scheme, _)) => Err(format!(
            "unknown config source scheme `{scheme}`; expected a file path or a `file:`, `env:` or `yaml:` URI"
        )),
    };
    let text = match text {
        Ok(t) => t,
        Err(msg) => {
            errors.unplaced(&name, msg);
            return None;
        }
    };
    parse_source(&text, index, errors)
}

fn parse_source(text: &str, index: u16, errors: &mut Errors) -> Option<Node> {
    match node::parse(text) {
        Ok(n) => Some(n),
        Err((pos, msg)) => {
            errors.at(
                Pos {
                    source: index,
                    ..pos
                },
                None,
                None,
                format!("invalid YAML: {msg}"),
            );
            None
        }
    }
}

/// A config file's text: at most [`MAX_SOURCE_BYTES`], UTF-8, and a regular file (a FIFO or a
/// device would block the start or never end).
pub fn read_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "{} bytes, more than the {} MiB a config source may have",
            meta.len(),
            MAX_SOURCE_BYTES >> 20
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_SOURCE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "the file is not valid UTF-8".into())
}

/// `--set processors::batch::timeout=2s`: the value is YAML (`[a, b]` is a list).
fn read_set(set: &str, index: u16, errors: &mut Errors) -> Option<Node> {
    let pos = Pos {
        line: 1,
        column: 1,
        source: index,
    };
    let Some((key, value)) = set.split_once('=') else {
        errors.at(
            pos,
            None,
            None,
            "a --set flag is `key::path=value` (the Collector's `::` separator); there is no `=`",
        );
        return None;
    };
    if key.is_empty() || key.split("::").any(str::is_empty) {
        errors.at(
            pos,
            None,
            None,
            format!("`{key}` is not a key path: write its parts separated by `::`"),
        );
        return None;
    }
    if key.contains('.') && !key.contains("::") {
        // The Collector's old separator; a key with a dot is rare, a typo for `::` is not.
        errors.at(
            pos,
            None,
            Some(key),
            format!(
                "--set separates keys with `::` (the Collector's separator), not `.`: did you mean `{}`?",
                key.replace('.', "::")
            ),
        );
        return None;
    }
    let mut value = parse_source(value, index, errors)?;
    if value.is_null() && !set.ends_with("=null") && !set.ends_with("=~") {
        // `--set a=` is the empty string, not null.
        value.value = Value::Str(String::new());
    }
    Some(Node {
        pos,
        value: Value::Map(vec![(
            Key {
                name: key.to_owned(),
                pos,
            },
            value,
        )]),
    })
}

/// Unfolds `a::b: v` into `a: {b: v}` at every level, merging with siblings written either way.
pub fn unfold_keys(node: &mut Node) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(unfold_keys),
        Value::Map(entries) => {
            if !entries.iter().any(|(k, _)| k.name.contains("::")) {
                entries.iter_mut().for_each(|(_, v)| unfold_keys(v));
                return;
            }
            let old = std::mem::take(entries);
            let mut out = Node {
                pos: node.pos,
                value: Value::Map(Vec::new()),
            };
            for (k, mut v) in old {
                unfold_keys(&mut v);
                let mut parts: Vec<&str> = k.name.split("::").collect();
                let last = parts.pop().unwrap_or_default();
                let mut nested = Node {
                    pos: k.pos,
                    value: Value::Map(vec![(
                        Key {
                            name: last.to_owned(),
                            pos: k.pos,
                        },
                        v,
                    )]),
                };
                while let Some(p) = parts.pop() {
                    nested = Node {
                        pos: k.pos,
                        value: Value::Map(vec![(
                            Key {
                                name: p.to_owned(),
                                pos: k.pos,
                            },
                            nested,
                        )]),
                    };
                }
                merge(&mut out, nested, ListMerge::Replace, &mut Vec::new());
            }
            node.value = out.value;
        }
        _ => {}
    }
}

/// Is `path` one of the component lists the merge-append gate combines?
fn is_component_list(path: &[String]) -> bool {
    match path {
        [s, e] => s == "service" && e == "extensions",
        [s, p, _, list] => {
            s == "service" && p == "pipelines" && (list == "receivers" || list == "exporters")
        }
        _ => false,
    }
}

/// Merges `src` into `dst`: mappings key by key, anything else replaced by `src`.
pub fn merge(dst: &mut Node, src: Node, lists: ListMerge, path: &mut Vec<String>) {
    match (&mut dst.value, src.value) {
        (Value::Map(d), Value::Map(s)) => {
            for (k, v) in s {
                match d.iter_mut().find(|(dk, _)| dk.name == k.name) {
                    Some((_, dv)) => {
                        path.push(k.name.clone());
                        merge(dv, v, lists, path);
                        path.pop();
                    }
                    None => d.push((k, v)),
                }
            }
        }
        (Value::Seq(d), Value::Seq(s))
            if lists == ListMerge::AppendComponentLists && is_component_list(path) =>
        {
            for item in s {
                if !d.iter().any(|x| x.value == item.value) {
                    d.push(item);
                }
            }
        }
        (_, value) => {
            dst.value = value;
            dst.pos = src.pos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        let mut n = node::parse(text).unwrap();
        unfold_keys(&mut n);
        n
    }

    fn yaml_of(n: &Node) -> String {
        super::super::render::json_text(n)
    }

    #[test]
    fn schemes_are_told_from_paths() {
        assert_eq!(
            split_scheme("env:OTEL_CONFIG"),
            Some(("env", "OTEL_CONFIG"))
        );
        assert_eq!(split_scheme("yaml:a::b: 1"), Some(("yaml", "a::b: 1")));
        assert_eq!(split_scheme("/etc/otel/config.yaml"), None);
        assert_eq!(split_scheme("C:\\otel\\config.yaml"), None);
        assert_eq!(split_scheme("relay.yaml"), None);
    }

    #[test]
    fn double_colon_keys_unfold_and_join_their_siblings() {
        let n =
            tree("processors::batch::timeout: 2s\nprocessors:\n  batch:\n    send_batch_size: 5\n");
        assert_eq!(
            yaml_of(&n),
            r#"{"processors":{"batch":{"timeout":"2s","send_batch_size":5}}}"#
        );
    }

    #[test]
    fn maps_merge_key_by_key_and_lists_are_replaced() {
        let mut a = tree("a: {x: 1, y: [1, 2]}\nb: keep\n");
        let b = tree("a: {y: [3], z: 4}\n");
        merge(&mut a, b, ListMerge::Replace, &mut Vec::new());
        assert_eq!(yaml_of(&a), r#"{"a":{"x":1,"y":[3],"z":4},"b":"keep"}"#);
    }

    #[test]
    fn merge_append_combines_component_lists_only() {
        let base = "service:\n  extensions: [health_check]\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n";
        let extra = "service:\n  extensions: [pprof, health_check]\n  pipelines:\n    traces:\n      receivers: [zipkin]\n      processors: [memory_limiter]\n      exporters: [otlp]\n";
        let mut a = tree(base);
        merge(
            &mut a,
            tree(extra),
            ListMerge::AppendComponentLists,
            &mut Vec::new(),
        );
        assert_eq!(
            yaml_of(&a),
            r#"{"service":{"extensions":["health_check","pprof"],"pipelines":{"traces":{"receivers":["otlp","zipkin"],"processors":["memory_limiter"],"exporters":["debug","otlp"]}}}}"#
        );
    }

    #[test]
    fn set_flags_are_checked() {
        let mut errors = Errors::new("x");
        let n = read_set("exporters::debug::verbosity=detailed", 1, &mut errors).unwrap();
        let mut n = n;
        unfold_keys(&mut n);
        assert_eq!(
            yaml_of(&n),
            r#"{"exporters":{"debug":{"verbosity":"detailed"}}}"#
        );
        let n = read_set("a::b=[1, 2]", 1, &mut errors).unwrap();
        assert_eq!(yaml_of(&n), r#"{"a::b":[1,2]}"#);
        assert!(errors.list.is_empty());
        assert!(read_set("no-equals", 1, &mut errors).is_none());
        assert!(read_set("processors.batch.timeout=2s", 1, &mut errors).is_none());
        assert!(read_set("a::::b=1", 1, &mut errors).is_none());
        let msgs: Vec<String> = errors.list.iter().map(|e| e.msg.clone()).collect();
        assert!(msgs[0].contains("there is no `=`"), "{msgs:?}");
        assert!(
            msgs[1].contains("did you mean `processors::batch::timeout`"),
            "{msgs:?}"
        );
        assert!(msgs[2].contains("is not a key path"), "{msgs:?}");
    }
}
