//! The `operators` list as the Collector's stanza writes it, validated into [`Operators`]: every
//! key of every operator type, each refused with its line where the type does not take it; and
//! the receivers' `retry_on_failure` (stanza's adapter).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::entry::{Field, Value};
use super::expr::Expr;
use super::operators::{
    AddValue, END, OnError, Op, OpKind, ParseCache, Route, SeverityConfig, SeverityParser,
    TextParser, TimeConfig, TimeParser, parse_to,
};
use super::parsers::{self, Csv, KeyValue, Trace};
use super::stateful::{ContainerConfig, Format, RecombineConfig};
use crate::config::{DeError, Node, from_node, key_err, units};

/// `retry_on_failure` of a stanza-based receiver.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOnFailure {
    /// Default false: a refused batch is read again at the next poll either way; with retries
    /// the reader also backs off between attempts.
    pub enabled: bool,
    #[serde(deserialize_with = "units::duration")]
    pub initial_interval: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub max_interval: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryOnFailure {
    fn default() -> Self {
        RetryOnFailure {
            enabled: false,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// Every key an operator may have; which ones a type allows is checked separately.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct OpConfig {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    output: Option<OneOrMany>,
    on_error: OnError,
    #[serde(rename = "if")]
    cond: Option<String>,
    parse_from: Option<String>,
    parse_to: Option<String>,
    regex: Option<String>,
    cache: Option<CacheConfig>,
    timestamp: Option<TimeConfig>,
    severity: Option<SeverityConfig>,
    preset: Option<String>,
    mapping: Option<BTreeMap<String, serde_json::Value>>,
    overwrite_text: Option<bool>,
    layout_type: Option<String>,
    layout: Option<String>,
    location: Option<String>,
    from: Option<String>,
    to: Option<String>,
    field: Option<String>,
    value: Option<serde_json::Value>,
    format: Option<String>,
    add_metadata_from_filepath: Option<bool>,
    #[serde(deserialize_with = "opt_bytes")]
    max_log_size: Option<u64>,
    combine_field: Option<String>,
    is_first_entry: Option<String>,
    is_last_entry: Option<String>,
    combine_with: Option<String>,
    source_identifier: Option<String>,
    max_batch_size: Option<usize>,
    max_unmatched_batch_size: Option<usize>,
    #[serde(deserialize_with = "units::opt_duration")]
    force_flush_period: Option<Duration>,
    max_sources: Option<usize>,
    overwrite_with: Option<String>,
    routes: Option<Vec<RouteConfig>>,
    default: Option<OneOrMany>,
    delimiter: Option<String>,
    pair_delimiter: Option<String>,
    header: Option<String>,
    header_delimiter: Option<String>,
    header_attribute: Option<String>,
    lazy_quotes: Option<bool>,
    ignore_quotes: Option<bool>,
    trace_id: Option<ParseFrom>,
    span_id: Option<ParseFrom>,
    trace_flags: Option<ParseFrom>,
    fields: Option<Vec<String>>,
    keys: Option<Vec<String>>,
    regex_name: Option<String>,
    replace_with: Option<String>,
}

/// `output: id` or `output: [id, ...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn ids(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CacheConfig {
    /// Entries kept; default 0 (the Collector needs a size to enable it).
    #[serde(default)]
    size: usize,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ParseFrom {
    parse_from: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    expr: String,
    output: OneOrMany,
    #[serde(default)]
    attributes: BTreeMap<String, serde_json::Value>,
}

fn opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    units::bytes(d).map(Some)
}

const COMMON: &[&str] = &["type", "id", "output", "on_error", "if"];
const PARSER: &[&str] = &["parse_from", "parse_to", "timestamp", "severity"];

fn allowed(kind: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    let none: &[&str] = &[];
    Some(match kind {
        "regex_parser" => (PARSER, &["regex", "cache"]),
        "json_parser" | "uri_parser" => (PARSER, none),
        "key_value_parser" => (PARSER, &["delimiter", "pair_delimiter"]),
        "csv_parser" => (
            PARSER,
            &[
                "header",
                "header_delimiter",
                "header_attribute",
                "delimiter",
                "lazy_quotes",
                "ignore_quotes",
            ],
        ),
        "severity_parser" => (none, &["parse_from", "preset", "mapping", "overwrite_text"]),
        "time_parser" => (none, &["parse_from", "layout_type", "layout", "location"]),
        "trace_parser" => (none, &["trace_id", "span_id", "trace_flags"]),
        "scope_name_parser" => (none, &["parse_from"]),
        "move" | "copy" => (none, &["from", "to"]),
        "remove" | "flatten" | "unquote" => (none, &["field"]),
        "add" => (none, &["field", "value"]),
        "retain" => (none, &["fields"]),
        "assign_keys" => (none, &["field", "keys"]),
        "regex_replace" => (none, &["field", "regex", "regex_name", "replace_with"]),
        "router" => (none, &["routes", "default"]),
        "noop" => (none, none),
        "container" => (
            none,
            &[
                "format",
                "add_metadata_from_filepath",
                "max_log_size",
                "parse_from",
            ],
        ),
        "recombine" => (
            none,
            &[
                "combine_field",
                "is_first_entry",
                "is_last_entry",
                "combine_with",
                "source_identifier",
                "max_batch_size",
                "max_unmatched_batch_size",
                "max_log_size",
                "force_flush_period",
                "max_sources",
                "overwrite_with",
            ],
        ),
        _ => return None,
    })
}

const TYPES: &str = "regex_parser, json_parser, key_value_parser, csv_parser, uri_parser, severity_parser, time_parser, trace_parser, scope_name_parser, move, copy, remove, add, flatten, retain, unquote, assign_keys, regex_replace, router, noop, container, recombine";

/// The operators of a receiver: stateful ones (per file, checkpointed with the offset) first,
/// then the stateless ones as a graph ([`super::operators::run`]).
#[derive(Debug, Clone, Default)]
pub struct Operators {
    pub container: Option<ContainerConfig>,
    pub recombine: Option<RecombineConfig>,
    pub ops: Vec<Op>,
}

impl Operators {
    /// Only stateless operators (the receivers without per-file state: syslog, ...).
    pub fn stateless(node: Option<&Node>) -> Result<Operators, DeError> {
        let ops = operators(node)?;
        if ops.container.is_some() || ops.recombine.is_some() {
            return Err(DeError {
                pos: node.map(|n| n.pos),
                path: vec!["operators".into()],
                msg: "`container` and `recombine` keep per-file state: they are filelog operators"
                    .into(),
            });
        }
        Ok(ops)
    }
}

/// Stanza's ids: an operator without one takes its type; the second operator whose id is its
/// type becomes `<type>1`, the third `<type>2`, skipping ids already taken.
fn default_ids(items: &[(String, Option<String>)]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|(k, id)| id.clone().unwrap_or_else(|| k.clone()))
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..ids.len() {
        let kind = &items[i].0;
        if ids[i] != *kind {
            continue;
        }
        let n = seen.entry(kind.clone()).or_insert(0);
        if *n == 0 {
            *n = 1;
            continue;
        }
        let mut candidate = format!("{kind}{n}");
        while ids.contains(&candidate) {
            *n += 1;
            candidate = format!("{kind}{n}");
        }
        *n += 1;
        ids[i] = candidate;
    }
    ids
}

pub fn operators(node: Option<&Node>) -> Result<Operators, DeError> {
    let mut out = Operators::default();
    let Some(node) = node else {
        return Ok(out);
    };
    let items: &[Node] = match &node.value {
        crate::config::Value::Seq(s) => s,
        crate::config::Value::Null => &[],
        _ => {
            return Err(DeError {
                pos: Some(node.pos),
                path: vec!["operators".into()],
                msg: format!("expected a list of operators, got {}", node.kind()),
            });
        }
    };
    let at = |i: usize, e: DeError| {
        let mut e = e;
        e.path.insert(0, format!("[{i}]"));
        e.path.insert(0, "operators".into());
        e
    };
    // First pass: every operator's type, keys and config, so `output` can name any of them.
    let mut configs: Vec<(&str, OpConfig)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let err = |key: &str, msg: String| at(i, key_err(item, &[key], msg));
        let kind = item
            .get("type")
            .and_then(Node::as_str)
            .ok_or_else(|| err("type", "every operator needs a `type`".into()))?;
        let Some((parser_keys, keys)) = allowed(kind) else {
            return Err(err(
                "type",
                format!("unsupported operator type `{kind}` (ferrotel has {TYPES})"),
            ));
        };
        for (k, _) in item.entries().unwrap_or(&[]) {
            let k_ = k.name.as_str();
            let common_ok = COMMON.contains(&k_)
                && !(kind == "router" && matches!(k_, "if" | "on_error" | "output"));
            if !common_ok && !parser_keys.contains(&k_) && !keys.contains(&k_) {
                return Err(at(
                    i,
                    DeError {
                        pos: Some(k.pos),
                        path: vec![k.name.clone()],
                        msg: format!("`{}` is not a key of operator type `{kind}`", k.name),
                    },
                ));
            }
        }
        let c: OpConfig = from_node(item).map_err(|e| at(i, e))?;
        configs.push((kind, c));
    }
    let ids = default_ids(
        &configs
            .iter()
            .map(|(k, c)| (k.to_string(), c.id.clone()))
            .collect::<Vec<_>>(),
    );
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(at(
                i,
                key_err(
                    &items[i],
                    &["id"],
                    format!("operator id `{id}` is used twice"),
                ),
            ));
        }
    }
    // The stateful operators come first and leave the graph; graph indices skip them.
    let graph: Vec<usize> = (0..configs.len())
        .filter(|i| !matches!(configs[*i].0, "container" | "recombine"))
        .collect();
    let index_of = |id: &str| -> Option<usize> {
        let item = ids.iter().position(|x| x == id)?;
        graph.iter().position(|g| *g == item)
    };
    let resolve = |i: usize, key: &str, list: &[String]| -> Result<Vec<usize>, DeError> {
        list.iter()
            .map(|o| {
                index_of(o).ok_or_else(|| {
                    let msg = if ids.contains(o) {
                        format!(
                            "`{o}` is a stateful operator, which runs first: it cannot be an output"
                        )
                    } else {
                        format!(
                            "output `{o}` is not the id of an operator here (ids: {})",
                            ids.join(", ")
                        )
                    };
                    at(i, key_err(&items[i], &[key], msg))
                })
            })
            .collect()
    };

    for (i, (kind, c)) in configs.iter().enumerate() {
        let kind: &str = kind;
        let item = &items[i];
        let err = |key: &str, msg: String| at(i, key_err(item, &[key], msg));
        let field =
            |key: &str, v: &Option<String>, default: Option<&str>| -> Result<Field, DeError> {
                let s = v
                    .as_deref()
                    .or(default)
                    .ok_or_else(|| err(key, format!("`{key}` is required")))?;
                Field::parse(s).map_err(|m| err(key, m))
            };
        let cond = c
            .cond
            .as_deref()
            .map(Expr::parse)
            .transpose()
            .map_err(|m| err("if", m))?;
        let time = |t: &Option<TimeConfig>| -> Result<Option<TimeParser>, DeError> {
            t.as_ref()
                .map(|t| {
                    if t.parse_from.is_none() {
                        return Err(err("timestamp", "`parse_from` is required".into()));
                    }
                    TimeParser::new(t).map_err(|m| err("timestamp", m))
                })
                .transpose()
        };
        let sev = |s: &Option<SeverityConfig>| -> Result<Option<SeverityParser>, DeError> {
            s.as_ref()
                .map(|s| SeverityParser::new(s).map_err(|m| err("severity", m)))
                .transpose()
        };
        let from = || field("parse_from", &c.parse_from, Some("body"));
        let to = || parse_to(c.parse_to.as_deref()).map_err(|m| err("parse_to", m));
        let stateful = matches!(kind, "container" | "recombine");
        if stateful && (cond.is_some() || !out.ops.is_empty() || c.output.is_some()) {
            return Err(err(
                "type",
                format!(
                    "`{kind}` must come before the other operators and take no `if` or `output` (it keeps per-file state that is checkpointed with the file offset)"
                ),
            ));
        }
        let add_value = |key: &str, v: &serde_json::Value| -> Result<AddValue, DeError> {
            match v {
                serde_json::Value::String(s) if s.starts_with("EXPR(") && s.ends_with(')') => {
                    Expr::parse(&s[5..s.len() - 1])
                        .map(AddValue::Expr)
                        .map_err(|m| err(key, m))
                }
                v => Ok(AddValue::Lit(Value::from_json(v.clone()))),
            }
        };
        let kind_op = match kind {
            "container" => {
                if out.container.is_some() || out.recombine.is_some() {
                    return Err(err(
                        "type",
                        "one `container` operator, before any `recombine`".into(),
                    ));
                }
                if c.parse_from.as_deref().is_some_and(|p| p != "body") {
                    return Err(err("parse_from", "only `body` is supported".into()));
                }
                let format = match c.format.as_deref() {
                    None | Some("") => None,
                    Some("docker") => Some(Format::Docker),
                    Some("crio") => Some(Format::Crio),
                    Some("containerd") => Some(Format::Containerd),
                    Some(f) => {
                        return Err(err(
                            "format",
                            format!("`{f}`: expected docker, crio or containerd"),
                        ));
                    }
                };
                out.container = Some(ContainerConfig {
                    format,
                    add_metadata_from_filepath: c.add_metadata_from_filepath.unwrap_or(true),
                    max_log_size: c.max_log_size.unwrap_or(0) as usize,
                });
                continue;
            }
            "recombine" => {
                if out.recombine.is_some() {
                    return Err(err("type", "one `recombine` operator".into()));
                }
                let first = c
                    .is_first_entry
                    .as_deref()
                    .map(Expr::parse)
                    .transpose()
                    .map_err(|m| err("is_first_entry", m))?;
                let last = c
                    .is_last_entry
                    .as_deref()
                    .map(Expr::parse)
                    .transpose()
                    .map_err(|m| err("is_last_entry", m))?;
                if first.is_some() == last.is_some() {
                    return Err(err(
                        "is_first_entry",
                        "exactly one of `is_first_entry` and `is_last_entry` is required".into(),
                    ));
                }
                let oldest = match c.overwrite_with.as_deref().unwrap_or("oldest") {
                    "oldest" => true,
                    "newest" => false,
                    o => {
                        return Err(err(
                            "overwrite_with",
                            format!("`{o}`: expected oldest or newest"),
                        ));
                    }
                };
                out.recombine = Some(RecombineConfig {
                    field: field("combine_field", &c.combine_field, None)?,
                    is_first: first,
                    is_last: last,
                    combine_with: c.combine_with.clone().unwrap_or_else(|| "\n".into()),
                    source: field(
                        "source_identifier",
                        &c.source_identifier,
                        Some(r#"attributes["log.file.path"]"#),
                    )?,
                    max_batch_size: c.max_batch_size.unwrap_or(1000).max(1),
                    max_log_size: c.max_log_size.unwrap_or(0) as usize,
                    force_flush_period: c.force_flush_period.unwrap_or(Duration::from_secs(5)),
                    oldest,
                });
                continue;
            }
            "regex_parser" => {
                let src = c
                    .regex
                    .as_deref()
                    .ok_or_else(|| err("regex", "`regex` is required".into()))?;
                let re = regex::Regex::new(src)
                    .map_err(|e| err("regex", format!("invalid regex: {e}")))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(err(
                        "regex",
                        "the regex needs at least one named group `(?P<name>...)`".into(),
                    ));
                }
                OpKind::Regex {
                    re,
                    from: from()?,
                    to: to()?,
                    time: time(&c.timestamp)?,
                    severity: sev(&c.severity)?,
                    cache: c
                        .cache
                        .as_ref()
                        .filter(|c| c.size > 0)
                        .map(|c| ParseCache::new(c.size)),
                }
            }
            "json_parser" => OpKind::Text {
                parser: TextParser::Json,
                from: from()?,
                to: to()?,
                time: time(&c.timestamp)?,
                severity: sev(&c.severity)?,
            },
            "key_value_parser" => {
                let delimiter = c.delimiter.clone().unwrap_or_else(|| "=".into());
                if delimiter.is_empty() {
                    return Err(err("delimiter", "must not be empty".into()));
                }
                if c.pair_delimiter
                    .as_ref()
                    .is_some_and(|p| p.is_empty() || *p == delimiter)
                {
                    return Err(err(
                        "pair_delimiter",
                        "must not be empty or equal to `delimiter`".into(),
                    ));
                }
                OpKind::Text {
                    parser: TextParser::KeyValue(KeyValue {
                        delimiter,
                        pair_delimiter: c.pair_delimiter.clone(),
                    }),
                    from: from()?,
                    to: to()?,
                    time: time(&c.timestamp)?,
                    severity: sev(&c.severity)?,
                }
            }
            "csv_parser" => {
                let one_char = |key: &str, v: &Option<String>, d: char| -> Result<char, DeError> {
                    match v.as_deref() {
                        None => Ok(d),
                        Some(s) if s.chars().count() == 1 => Ok(s.chars().next().unwrap_or(d)),
                        Some(s) => Err(err(key, format!("{s:?}: must be one character"))),
                    }
                };
                let delimiter = one_char("delimiter", &c.delimiter, ',')?;
                let header_delimiter =
                    one_char("header_delimiter", &c.header_delimiter, delimiter)?;
                if c.header.is_some() == c.header_attribute.is_some() {
                    return Err(err(
                        "header",
                        "set exactly one of `header` and `header_attribute`".into(),
                    ));
                }
                if c.lazy_quotes == Some(true) && c.ignore_quotes == Some(true) {
                    return Err(err(
                        "ignore_quotes",
                        "`lazy_quotes` and `ignore_quotes` exclude each other".into(),
                    ));
                }
                OpKind::Text {
                    parser: TextParser::Csv(Csv {
                        header: c
                            .header
                            .as_deref()
                            .map(|h| h.split(header_delimiter).map(str::to_string).collect()),
                        header_attribute: c.header_attribute.clone(),
                        header_delimiter,
                        delimiter,
                        lazy_quotes: c.lazy_quotes.unwrap_or(false),
                        ignore_quotes: c.ignore_quotes.unwrap_or(false),
                    }),
                    from: from()?,
                    to: to()?,
                    time: time(&c.timestamp)?,
                    severity: sev(&c.severity)?,
                }
            }
            "uri_parser" => OpKind::Text {
                parser: TextParser::Uri,
                from: from()?,
                to: to()?,
                time: time(&c.timestamp)?,
                severity: sev(&c.severity)?,
            },
            "trace_parser" => {
                let f = |key: &str, v: &Option<ParseFrom>, d: &str| {
                    field(key, &v.as_ref().and_then(|p| p.parse_from.clone()), Some(d))
                };
                OpKind::Trace(Trace {
                    trace_id: f("trace_id", &c.trace_id, "attributes.trace_id")?,
                    span_id: f("span_id", &c.span_id, "attributes.span_id")?,
                    trace_flags: f("trace_flags", &c.trace_flags, "attributes.trace_flags")?,
                })
            }
            "scope_name_parser" => OpKind::ScopeName(field("parse_from", &c.parse_from, None)?),
            "severity_parser" => OpKind::Severity(
                SeverityParser::new(&SeverityConfig {
                    parse_from: c.parse_from.clone(),
                    preset: c.preset.clone(),
                    mapping: c.mapping.clone(),
                    overwrite_text: c.overwrite_text,
                })
                .map_err(|m| err("mapping", m))?,
            ),
            "time_parser" => OpKind::Time(
                TimeParser::new(&TimeConfig {
                    parse_from: c.parse_from.clone(),
                    layout_type: c.layout_type.clone(),
                    layout: c.layout.clone(),
                    location: c.location.clone(),
                })
                .map_err(|m| err("layout", m))?,
            ),
            "move" => OpKind::Move {
                from: field("from", &c.from, None)?,
                to: field("to", &c.to, None)?,
            },
            "copy" => OpKind::Copy {
                from: field("from", &c.from, None)?,
                to: field("to", &c.to, None)?,
            },
            "remove" => OpKind::Remove(field("field", &c.field, None)?),
            "flatten" => {
                let f = field("field", &c.field, None)?;
                if !matches!(&f, Field::Body(p) if !p.is_empty()) {
                    return Err(err("field", "flatten takes a field inside the body".into()));
                }
                OpKind::Flatten(f)
            }
            "unquote" => OpKind::Unquote(field("field", &c.field, Some("body"))?),
            "retain" => {
                let list = c
                    .fields
                    .as_ref()
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| err("fields", "`fields` is required".into()))?;
                OpKind::Retain(
                    list.iter()
                        .map(|f| Field::parse(f).map_err(|m| err("fields", m)))
                        .collect::<Result<_, _>>()?,
                )
            }
            "assign_keys" => OpKind::AssignKeys {
                field: field("field", &c.field, None)?,
                keys: c
                    .keys
                    .clone()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| err("keys", "`keys` is required".into()))?,
            },
            "regex_replace" => {
                let src = match (&c.regex, &c.regex_name) {
                    (Some(r), None) => r.clone(),
                    (None, Some(n)) => parsers::named_regex(n)
                        .ok_or_else(|| {
                            err(
                                "regex_name",
                                format!("`{n}`: expected ansi_control_sequences"),
                            )
                        })?
                        .to_string(),
                    _ => {
                        return Err(err(
                            "regex",
                            "set exactly one of `regex` and `regex_name`".into(),
                        ));
                    }
                };
                let re = regex::Regex::new(&src)
                    .map_err(|e| err("regex", format!("invalid regex: {e}")))?;
                OpKind::RegexReplace {
                    field: field("field", &c.field, Some("body"))?,
                    re,
                    with: c
                        .replace_with
                        .clone()
                        .ok_or_else(|| err("replace_with", "`replace_with` is required".into()))?,
                }
            }
            "add" => OpKind::Add {
                field: field("field", &c.field, None)?,
                value: match &c.value {
                    Some(v) => add_value("value", v)?,
                    None => return Err(err("value", "`value` is required".into())),
                },
            },
            "router" => {
                let mut routes = Vec::new();
                for (r_i, r) in c.routes.iter().flatten().enumerate() {
                    let r_err = |key: &str, m: String| {
                        at(i, key_err(item, &["routes", &format!("[{r_i}]"), key], m))
                    };
                    let expr = Expr::parse(&r.expr).map_err(|m| r_err("expr", m))?;
                    let mut attributes = Vec::new();
                    for (k, v) in &r.attributes {
                        attributes.push((k.clone(), add_value("routes", v)?));
                    }
                    let outputs = resolve(i, "routes", &r.output.ids())?;
                    if outputs.is_empty() {
                        return Err(r_err("output", "a route needs an output".into()));
                    }
                    routes.push(Route {
                        expr,
                        attributes,
                        outputs,
                    });
                }
                if routes.is_empty() {
                    return Err(err("routes", "a router needs at least one route".into()));
                }
                OpKind::Router {
                    routes,
                    default: match &c.default {
                        Some(d) => resolve(i, "default", &d.ids())?,
                        None => Vec::new(),
                    },
                }
            }
            _ => OpKind::Noop,
        };
        // Without `output`, an operator feeds the next one, and the last the receiver.
        let outputs = match &c.output {
            Some(o) => resolve(i, "output", &o.ids())?,
            None => vec![if out.ops.len() + 1 < graph.len() {
                out.ops.len() + 1
            } else {
                END
            }],
        };
        out.ops.push(Op {
            cond,
            on_error: c.on_error,
            kind: kind_op,
            outputs,
        });
    }
    if let Some(cycle) = find_cycle(&out.ops) {
        let names: Vec<&str> = cycle.iter().map(|g| ids[graph[*g]].as_str()).collect();
        return Err(DeError {
            pos: Some(node.pos),
            path: vec!["operators".into()],
            msg: format!("the operators' outputs form a cycle: {}", names.join(" → ")),
        });
    }
    Ok(out)
}

/// Successors of an operator: its outputs, and for a router every route's and the default's.
fn successors(op: &Op) -> Vec<usize> {
    let mut s = op.outputs.clone();
    if let OpKind::Router { routes, default } = &op.kind {
        s = routes
            .iter()
            .flat_map(|r| r.outputs.iter().copied())
            .collect();
        s.extend(default);
    }
    s.retain(|j| *j != END);
    s
}

/// A cycle in the operator graph, as the ids along it (first repeated at the end).
fn find_cycle(ops: &[Op]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the current path, 2 = done. Iterative, so a long chain is fine.
    let mut state = vec![0u8; ops.len()];
    for start in 0..ops.len() {
        if state[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, Vec<usize>)> = vec![(start, successors(&ops[start]))];
        state[start] = 1;
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            match next.pop() {
                Some(j) if state[j] == 1 => {
                    let from = path.iter().position(|(n, _)| *n == j).unwrap_or(0);
                    let mut c: Vec<usize> = path[from..].iter().map(|(n, _)| *n).collect();
                    c.push(j);
                    return Some(c);
                }
                Some(j) if state[j] == 0 => {
                    state[j] = 1;
                    path.push((j, successors(&ops[j])));
                }
                Some(_) => {}
                None => {
                    state[node] = 2;
                    path.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::entry::Entry;
    use crate::stanza::operators::run;

    fn ops(yaml: &str) -> Result<Operators, String> {
        let n = crate::config::node::parse(yaml).map_err(|e| format!("{e:?}"))?;
        operators(n.get("operators")).map_err(|e| format!("{}: {}", e.path_string(), e.msg))
    }

    fn through(o: &Operators, body: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        run(&o.ops, Entry::new(body.into(), 0), &mut out);
        out
    }

    fn attr<'a>(e: &'a Entry, k: &str) -> Option<&'a Value> {
        crate::stanza::entry::map_get(&e.attributes, k)
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn default_ids_are_deduplicated_as_stanza_does() {
        let items: Vec<(String, Option<String>)> = [
            ("move", None),
            ("move", Some("move1")),
            ("move", None),
            ("add", None),
            ("move", None),
        ]
        .iter()
        .map(|(k, id)| (k.to_string(), id.map(str::to_string)))
        .collect();
        assert_eq!(
            default_ids(&items),
            ["move", "move1", "move2", "add", "move3"]
        );
        // Two `move`s without ids (corpus file 24) are valid.
        let o = ops("operators:\n- {type: move, from: attributes.a, to: attributes.b}\n- {type: move, from: attributes.b, to: body}\n").unwrap();
        let mut e = Entry::new("x".into(), 0);
        e.attributes.push(("a".into(), s("moved")));
        let mut out = Vec::new();
        run(&o.ops, e, &mut out);
        assert_eq!(out[0].body, s("moved"));
        assert!(
            ops("operators:\n- {type: noop, id: a}\n- {type: add, id: a, field: body, value: 1}\n")
                .unwrap_err()
                .contains("operators[1].id: operator id `a` is used twice")
        );
    }

    /// The routing chain of corpus file 30 (the contrib DaemonSet example): each container
    /// runtime's line reaches its parser, then the shared path parser and the moves.
    #[test]
    fn router_and_outputs_route_each_format_to_its_parser() {
        let o = ops(r#"operators:
- type: router
  id: get-format
  routes:
  - output: parser-docker
    expr: 'body matches "^\\{"'
  - output: parser-crio
    expr: 'body matches "^[^ Z]+ "'
- type: regex_parser
  id: parser-crio
  regex: '^(?P<time>[^ Z]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$'
  output: moves
- type: json_parser
  id: parser-docker
  output: moves
- type: move
  id: moves
  from: attributes.log
  to: body
- type: move
  from: attributes.stream
  to: attributes["log.iostream"]
"#)
        .unwrap();
        let crio = through(
            &o,
            "2024-05-01T10:00:00.000000000+00:00 stdout F hello crio",
        );
        assert_eq!(crio.len(), 1);
        assert_eq!(crio[0].body, s("hello crio"));
        assert_eq!(attr(&crio[0], "log.iostream"), Some(&s("stdout")));
        assert_eq!(attr(&crio[0], "logtag"), Some(&s("F")));
        let docker = through(&o, r#"{"log":"hello docker","stream":"stderr"}"#);
        assert_eq!(docker[0].body, s("hello docker"));
        assert_eq!(attr(&docker[0], "log.iostream"), Some(&s("stderr")));
        // No route matches and there is no default: the router drops it, as stanza does.
        assert!(through(&o, "plain").is_empty());
    }

    #[test]
    fn router_default_attributes_fan_out_and_expr_values() {
        let o = ops(r#"operators:
- type: router
  routes:
  - expr: 'body startsWith "ERR"'
    output: [tag, copy-out]
    attributes:
      route: errors
      upper: 'EXPR(body + "!")'
  default: tag
- type: add
  id: tag
  field: attributes.tagged
  value: EXPR(attributes.route == "errors")
- type: add
  id: copy-out
  field: attributes.copy
  value: true
"#)
        .unwrap();
        let out = through(&o, "ERR boom");
        assert_eq!(out.len(), 2, "one copy per output");
        assert_eq!(attr(&out[0], "route"), Some(&s("errors")));
        assert_eq!(attr(&out[0], "upper"), Some(&s("ERR boom!")));
        assert_eq!(attr(&out[0], "tagged"), Some(&Value::Bool(true)));
        assert_eq!(attr(&out[0], "copy"), Some(&Value::Bool(true)));
        assert_eq!(attr(&out[1], "copy"), Some(&Value::Bool(true)));
        assert_eq!(
            attr(&out[1], "tagged"),
            None,
            "the second copy skipped `tag`"
        );
        let out = through(&o, "fine");
        assert_eq!(out.len(), 1, "default → tag → copy-out → end");
        assert_eq!(attr(&out[0], "route"), None);
    }

    #[test]
    fn graph_errors_are_located() {
        let e =
            ops("operators:\n- {type: noop, id: a, output: b}\n- {type: noop, id: b, output: a}\n")
                .unwrap_err();
        assert!(
            e.contains("the operators' outputs form a cycle: a → b → a"),
            "{e}"
        );
        let e = ops("operators:\n- {type: noop, output: nowhere}\n").unwrap_err();
        assert!(
            e.contains("operators[0].output: output `nowhere` is not the id of an operator here (ids: noop)"),
            "{e}"
        );
        let e = ops("operators:\n- {type: router, if: 'true', routes: [{expr: 'true', output: x}]}\n- {type: noop, id: x}\n").unwrap_err();
        assert!(
            e.contains("`if` is not a key of operator type `router`"),
            "{e}"
        );
        let e = ops("operators:\n- {type: router}\n").unwrap_err();
        assert!(e.contains("a router needs at least one route"), "{e}");
        let e =
            ops("operators:\n- {type: add, field: body, value: 'EXPR(len(body))'}\n").unwrap_err();
        assert!(e.contains("operators[0].value: expression"), "{e}");
    }

    #[test]
    fn parsers_through_config_with_exact_output() {
        let o = ops(r#"operators:
- type: key_value_parser
  parse_from: body
  parse_to: attributes
- type: csv_parser
  parse_from: attributes.row
  parse_to: attributes.row
  header: a;b
  delimiter: ';'
- type: uri_parser
  parse_from: attributes.url
  parse_to: attributes.url
- type: trace_parser
- type: scope_name_parser
  parse_from: attributes.logger
- type: unquote
  field: attributes.quoted
- type: regex_replace
  field: attributes.secret
  regex: '\d'
  replace_with: '#'
"#)
        .unwrap();
        let out = through(
            &o,
            r#"row="1;2" url="/p?q=v" trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331 trace_flags=01 logger=com.example quoted='"hi"' secret=a1b22"#,
        );
        let e = &out[0];
        assert_eq!(
            attr(e, "row"),
            Some(&Value::Map(vec![
                ("a".into(), s("1")),
                ("b".into(), s("2"))
            ]))
        );
        assert_eq!(
            attr(e, "url"),
            Some(&Value::Map(vec![
                ("path".into(), s("/p")),
                (
                    "query".into(),
                    Value::Map(vec![("q".into(), Value::Array(vec![s("v")]))])
                ),
            ]))
        );
        assert_eq!(hex::encode(&e.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(&e.span_id), "b7ad6b7169203331");
        assert_eq!(e.trace_flags, 1);
        assert_eq!(e.scope_name, "com.example");
        assert_eq!(attr(e, "quoted"), Some(&s("hi")));
        assert_eq!(attr(e, "secret"), Some(&s("a#b##")));
    }

    #[test]
    fn transformers_and_on_error() {
        let o = ops(r#"operators:
- type: json_parser
  parse_to: body
- type: flatten
  field: body.nested
- type: assign_keys
  field: body.list
  keys: [first, second]
- type: retain
  fields: [body.k, body.list]
"#)
        .unwrap();
        let out = through(
            &o,
            r#"{"nested":{"k":"v","drop":"me"},"list":[1,"two"],"other":3}"#,
        );
        assert_eq!(
            out[0].body,
            Value::Map(vec![
                ("k".into(), s("v")),
                (
                    "list".into(),
                    Value::Map(vec![
                        ("first".into(), Value::Int(1)),
                        ("second".into(), s("two"))
                    ])
                ),
            ])
        );
        // on_error: send keeps an entry a parser failed on, drop_quiet drops it.
        let send = ops("operators:\n- {type: json_parser, on_error: send_quiet}\n").unwrap();
        assert_eq!(through(&send, "not json").len(), 1);
        let drop = ops("operators:\n- {type: json_parser, on_error: drop_quiet}\n").unwrap();
        assert!(through(&drop, "not json").is_empty());
        assert_eq!(through(&drop, "{}").len(), 1);
    }

    #[test]
    fn regex_cache_gives_the_same_result() {
        let o = ops("operators:\n- type: regex_parser\n  regex: '^(?P<a>\\w+) (?P<b>\\w+)$'\n  cache:\n    size: 2\n").unwrap();
        let OpKind::Regex { cache, .. } = &o.ops[0].kind else {
            panic!("a regex parser")
        };
        assert!(cache.is_some());
        for body in ["x y", "x y", "p q", "r s", "x y"] {
            let out = through(&o, body);
            let (a, b) = body.split_once(' ').unwrap();
            assert_eq!(attr(&out[0], "a"), Some(&s(a)));
            assert_eq!(attr(&out[0], "b"), Some(&s(b)));
        }
    }
}
