//! The `operators` list as the Collector's stanza writes it, validated into [`Operators`]: every
//! key of every operator type, each refused with its line where the type does not take it; and
//! the receivers' `retry_on_failure` (stanza's adapter).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::entry::{Field, Value};
use super::expr::Expr;
use super::operators::{
    OnError, Op, OpKind, SeverityConfig, SeverityParser, TimeConfig, TimeParser, parse_to,
};
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
    output: Option<serde::de::IgnoredAny>,
    on_error: OnError,
    #[serde(rename = "if")]
    cond: Option<String>,
    parse_from: Option<String>,
    parse_to: Option<String>,
    regex: Option<String>,
    cache: Option<serde::de::IgnoredAny>,
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
}

fn opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    units::bytes(d).map(Some)
}

const COMMON: &[&str] = &["type", "id", "output", "on_error", "if"];

fn allowed(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "regex_parser" => &[
            "parse_from",
            "parse_to",
            "regex",
            "cache",
            "timestamp",
            "severity",
        ],
        "json_parser" => &["parse_from", "parse_to", "timestamp", "severity"],
        "severity_parser" => &["parse_from", "preset", "mapping", "overwrite_text"],
        "time_parser" => &["parse_from", "layout_type", "layout", "location"],
        "move" | "copy" => &["from", "to"],
        "remove" => &["field"],
        "add" => &["field", "value"],
        "noop" => &[],
        "container" => &[
            "format",
            "add_metadata_from_filepath",
            "max_log_size",
            "parse_from",
        ],
        "recombine" => &[
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
        _ => return None,
    })
}

/// The operators of a file: stateful ones (per file, checkpointed with the offset) first, then
/// stateless ones applied to each entry.
pub struct Operators {
    pub container: Option<ContainerConfig>,
    pub recombine: Option<RecombineConfig>,
    pub ops: Vec<Op>,
}

pub fn operators(node: Option<&Node>) -> Result<Operators, DeError> {
    let mut out = Operators {
        container: None,
        recombine: None,
        ops: Vec::new(),
    };
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
    let mut ids: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |e: DeError| {
            let mut e = e;
            e.path.insert(0, format!("[{i}]"));
            e.path.insert(0, "operators".into());
            e
        };
        let err = |key: &str, msg: String| at(key_err(item, &[key], msg));
        let kind = item
            .get("type")
            .and_then(Node::as_str)
            .ok_or_else(|| err("type", "every operator needs a `type`".into()))?;
        let Some(keys) = allowed(kind) else {
            return Err(err(
                "type",
                format!(
                    "unsupported operator type `{kind}` (ferrotel has regex_parser, json_parser, severity_parser, time_parser, move, copy, remove, add, noop, container, recombine)"
                ),
            ));
        };
        for (k, _) in item.entries().unwrap_or(&[]) {
            if !COMMON.contains(&k.name.as_str()) && !keys.contains(&k.name.as_str()) {
                return Err(at(DeError {
                    pos: Some(k.pos),
                    path: vec![k.name.clone()],
                    msg: format!("`{}` is not a key of operator type `{kind}`", k.name),
                }));
            }
        }
        let c: OpConfig = from_node(item).map_err(at)?;
        let id = c.id.clone().unwrap_or_else(|| kind.to_string());
        if ids.contains(&id) {
            return Err(err("id", format!("operator id `{id}` is used twice")));
        }
        ids.push(id);
        if c.output.is_some() {
            return Err(err(
                "output",
                "routing between operators (`output`) is not supported: operators run in list order".into(),
            ));
        }
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
        let stateful = matches!(kind, "container" | "recombine");
        if stateful && (cond.is_some() || !out.ops.is_empty()) {
            return Err(err(
                "type",
                format!(
                    "`{kind}` must come before the other operators and take no `if` (it keeps per-file state that is checkpointed with the file offset)"
                ),
            ));
        }
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
                    from: field("parse_from", &c.parse_from, Some("body"))?,
                    to: parse_to(c.parse_to.as_deref()).map_err(|m| err("parse_to", m))?,
                    time: time(&c.timestamp)?,
                    severity: sev(&c.severity)?,
                }
            }
            "json_parser" => OpKind::Json {
                from: field("parse_from", &c.parse_from, Some("body"))?,
                to: parse_to(c.parse_to.as_deref()).map_err(|m| err("parse_to", m))?,
                time: time(&c.timestamp)?,
                severity: sev(&c.severity)?,
            },
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
            "add" => OpKind::Add {
                field: field("field", &c.field, None)?,
                value: match &c.value {
                    Some(serde_json::Value::String(s)) if s.starts_with("EXPR(") => {
                        return Err(err("value", "EXPR(...) values are not supported".into()));
                    }
                    Some(v) => Value::from_json(v.clone()),
                    None => return Err(err("value", "`value` is required".into())),
                },
            },
            _ => OpKind::Noop,
        };
        out.ops.push(Op {
            cond,
            on_error: c.on_error,
            kind: kind_op,
        });
    }
    Ok(out)
}
