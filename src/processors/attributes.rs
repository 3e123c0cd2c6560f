//! `attributes` processor: edits the attributes of spans, log records and metric data points
//! with the Collector's actions, in the order given:
//!
//! - `insert` (only if the key is absent), `update` (only if present), `upsert` (either), the
//!   value coming from `value`, `from_attribute` (another attribute of the same item) or
//!   `from_context` (`metadata.<key>`: a request header, with the receiver's
//!   `include_metadata: true`; `auth.<key>`: what the receiver's authenticator found, e.g.
//!   `auth.username`, `auth.subject`, an OIDC claim; `client.address`: the sender's IP);
//! - `delete` and `hash` (SHA-256, hex) of `key` or of every key matching `pattern`;
//! - `extract`: the named groups of `pattern` matched against the value of `key` are upserted;
//! - `convert` of `key` to `converted_type` `int`, `double` or `string` (a value that does not
//!   convert is left as it is).
//!
//! `include`/`exclude` (match properties, see [`super::matcher`]) choose the items acted on.
//! The same actions, under `attributes:`, are the `resource` processor's, applied to resources.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::matcher::{Item, MatchConfig, Matcher, Scalar, text};
use super::{InPlace, Transform};
use crate::client::ClientInfo;
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::key_err;
use crate::config::{DeError, Node, from_node};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
    Extract,
    Convert,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    #[serde(default)]
    pub key: Option<String>,
    pub action: ActionKind,
    #[serde(default)]
    pub value: Option<Scalar>,
    #[serde(default)]
    pub from_attribute: Option<String>,
    #[serde(default)]
    pub from_context: Option<String>,
    /// A regex: keys for `delete`/`hash`, named groups for `extract`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `int`, `double` or `string`, for `convert`.
    #[serde(default)]
    pub converted_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub actions: Vec<ActionConfig>,
    #[serde(default)]
    pub include: Option<MatchConfig>,
    #[serde(default)]
    pub exclude: Option<MatchConfig>,
}

#[derive(Debug, Clone)]
enum Source {
    Value(AnyValue),
    Attribute(String),
    Metadata(String),
    /// `auth.<key>`: what the receiver's authenticator found.
    Auth(String),
    ClientAddress,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conversion {
    Int,
    Double,
    String,
}

/// One validated action.
#[derive(Debug, Clone)]
pub struct Action {
    kind: ActionKind,
    key: Option<String>,
    pattern: Option<Regex>,
    source: Option<Source>,
    conversion: Option<Conversion>,
}

fn scalar_value(s: &Scalar) -> AnyValue {
    AnyValue {
        value: Some(match s {
            Scalar::Bool(b) => any_value::Value::BoolValue(*b),
            Scalar::Int(i) => any_value::Value::IntValue(*i),
            Scalar::Float(f) => any_value::Value::DoubleValue(*f),
            Scalar::Str(s) => any_value::Value::StringValue(s.clone()),
        }),
    }
}

/// Validates the actions found under `key` of `node`.
pub fn compile_actions(
    list: &[ActionConfig],
    node: &Node,
    key: &str,
) -> Result<Vec<Action>, DeError> {
    let items = match node.get(key).map(|n| &n.value) {
        Some(crate::config::node::Value::Seq(items)) => items.as_slice(),
        _ => &[],
    };
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let at = items.get(i).unwrap_or(node);
            let idx = format!("[{i}]");
            let err = |field: &str, msg: String| {
                let mut e = key_err(at, &[field], msg);
                e.path.insert(0, idx.clone());
                e.path.insert(0, key.to_owned());
                e
            };
            let sources = [
                a.value.is_some(),
                a.from_attribute.is_some(),
                a.from_context.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            let pattern = match &a.pattern {
                None => None,
                Some(p) => Some(
                    Regex::new(p)
                        .map_err(|e| err("pattern", format!("invalid regular expression: {e}")))?,
                ),
            };
            let mut out = Action {
                kind: a.action,
                key: a.key.clone(),
                pattern,
                source: None,
                conversion: None,
            };
            match a.action {
                ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
                    if a.key.is_none() {
                        return Err(err("key", "key is required for this action".into()));
                    }
                    if sources != 1 {
                        return Err(err(
                            "action",
                            "set exactly one of value, from_attribute and from_context".into(),
                        ));
                    }
                    out.source = Some(if let Some(v) = &a.value {
                        Source::Value(scalar_value(v))
                    } else if let Some(f) = &a.from_attribute {
                        Source::Attribute(f.clone())
                    } else {
                        let c = a.from_context.as_deref().unwrap_or_default();
                        if c == "client.address" {
                            Source::ClientAddress
                        } else if let Some(k) = c.strip_prefix("metadata.") {
                            Source::Metadata(k.to_ascii_lowercase())
                        } else if let Some(k) = c.strip_prefix("auth.") {
                            Source::Auth(k.to_owned())
                        } else {
                            return Err(err(
                                "from_context",
                                format!("unsupported context key {c:?}: use metadata.<header>, auth.<key> or client.address"),
                            ));
                        }
                    });
                }
                ActionKind::Delete | ActionKind::Hash => {
                    if a.key.is_none() && a.pattern.is_none() {
                        return Err(err("key", "set key or pattern".into()));
                    }
                }
                ActionKind::Extract => {
                    if a.key.is_none() {
                        return Err(err("key", "key is required for extract".into()));
                    }
                    let Some(re) = &out.pattern else {
                        return Err(err("pattern", "pattern is required for extract".into()));
                    };
                    if re.capture_names().flatten().next().is_none() {
                        return Err(err(
                            "pattern",
                            "pattern needs named groups, e.g. ^/api/(?P<version>v\\d+)/".into(),
                        ));
                    }
                }
                ActionKind::Convert => {
                    if a.key.is_none() {
                        return Err(err("key", "key is required for convert".into()));
                    }
                    out.conversion = Some(match a.converted_type.as_deref() {
                        Some("int") => Conversion::Int,
                        Some("double") => Conversion::Double,
                        Some("string") => Conversion::String,
                        other => {
                            return Err(err(
                                "converted_type",
                                format!("converted_type must be int, double or string, got {other:?}"),
                            ));
                        }
                    });
                }
            }
            Ok(out)
        })
        .collect()
}

fn position(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

fn set(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match position(attrs, key) {
        Some(i) => attrs[i].value = Some(value),
        None => attrs.push(KeyValue {
            key: key.to_owned(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn hash(v: &AnyValue) -> AnyValue {
    string(hex::encode(Sha256::digest(text(v).as_bytes())))
}

fn convert(v: &AnyValue, to: Conversion) -> Option<AnyValue> {
    use any_value::Value as V;
    let out = match (to, v.value.as_ref()?) {
        (Conversion::Int, V::IntValue(i)) => V::IntValue(*i),
        (Conversion::Int, V::DoubleValue(d)) if d.is_finite() => V::IntValue(d.trunc() as i64),
        (Conversion::Int, V::BoolValue(b)) => V::IntValue(*b as i64),
        (Conversion::Int, V::StringValue(s)) => V::IntValue(s.trim().parse().ok()?),
        (Conversion::Double, V::DoubleValue(d)) => V::DoubleValue(*d),
        (Conversion::Double, V::IntValue(i)) => V::DoubleValue(*i as f64),
        (Conversion::Double, V::BoolValue(b)) => V::DoubleValue(*b as i64 as f64),
        (Conversion::Double, V::StringValue(s)) => V::DoubleValue(s.trim().parse().ok()?),
        (Conversion::String, _) => V::StringValue(text(v).into_owned()),
        _ => return None,
    };
    Some(AnyValue { value: Some(out) })
}

/// Applies `actions` in order to one attribute list.
pub fn apply(actions: &[Action], attrs: &mut Vec<KeyValue>, client: Option<&ClientInfo>) {
    for a in actions {
        match a.kind {
            ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
                let key = a.key.as_deref().unwrap_or_default();
                let exists = position(attrs, key).is_some();
                let wanted = match a.kind {
                    ActionKind::Insert => !exists,
                    ActionKind::Update => exists,
                    _ => true,
                };
                if !wanted {
                    continue;
                }
                let value = match a.source.as_ref() {
                    Some(Source::Value(v)) => Some(v.clone()),
                    Some(Source::Attribute(from)) => {
                        position(attrs, from).and_then(|i| attrs[i].value.clone())
                    }
                    Some(Source::Metadata(k)) => client
                        .and_then(|c| c.metadata(k))
                        .map(|v| string(v.to_owned())),
                    Some(Source::Auth(k)) => {
                        client.and_then(|c| c.auth(k)).map(|v| string(v.to_owned()))
                    }
                    Some(Source::ClientAddress) => {
                        client.and_then(|c| c.addr).map(|ip| string(ip.to_string()))
                    }
                    None => None,
                };
                if let Some(v) = value {
                    set(attrs, key, v);
                }
            }
            ActionKind::Delete => attrs.retain(|kv| !targets(a, &kv.key)),
            ActionKind::Hash => {
                for kv in attrs.iter_mut().filter(|kv| targets(a, &kv.key)) {
                    if let Some(v) = &kv.value {
                        kv.value = Some(hash(v));
                    }
                }
            }
            ActionKind::Extract => {
                let (Some(key), Some(re)) = (a.key.as_deref(), a.pattern.as_ref()) else {
                    continue;
                };
                let Some(source) = position(attrs, key).and_then(|i| {
                    match attrs[i].value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    }
                }) else {
                    continue;
                };
                if let Some(caps) = re.captures(&source) {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            set(attrs, name, string(m.as_str().to_owned()));
                        }
                    }
                }
            }
            ActionKind::Convert => {
                let (Some(key), Some(to)) = (a.key.as_deref(), a.conversion) else {
                    continue;
                };
                if let Some(i) = position(attrs, key)
                    && let Some(v) = attrs[i].value.as_ref().and_then(|v| convert(v, to))
                {
                    attrs[i].value = Some(v);
                }
            }
        }
    }
}

/// Whether a delete/hash action takes this key.
fn targets(a: &Action, key: &str) -> bool {
    a.key.as_deref() == Some(key) || a.pattern.as_ref().is_some_and(|re| re.is_match(key))
}

#[derive(Clone)]
struct Attributes {
    actions: Vec<Action>,
    include: Option<(MatchConfig, Node)>,
    exclude: Option<(MatchConfig, Node)>,
}

struct Compiled {
    actions: Vec<Action>,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

/// `attributes`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "attributes",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.actions.is_empty() {
        return Err(key_err(
            node,
            &["actions"],
            "at least one action is required",
        ));
    }
    let actions = compile_actions(&cfg.actions, node, "actions")?;
    // Match properties depend on the signal: check them for every signal they could serve now,
    // so that errors show at load time; each pipeline compiles its own at build.
    for signal in Signal::ALL {
        for (key, m) in [("include", &cfg.include), ("exclude", &cfg.exclude)] {
            if let Some(m) = m {
                match Matcher::new(m, signal, node, &[key]) {
                    Err(e) if !e.msg.contains("does not apply") => return Err(e),
                    _ => {}
                }
            }
        }
    }
    Ok(Box::new(Attributes {
        actions,
        include: cfg.include.map(|m| (m, node.clone())),
        exclude: cfg.exclude.map(|m| (m, node.clone())),
    }))
}

impl ProcessorConfig for Attributes {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let compile = |m: &Option<(MatchConfig, Node)>, key: &str| {
            m.as_ref()
                .map(|(cfg, node)| Matcher::new(cfg, signal, node, &[key]))
                .transpose()
                .map_err(|e| BuildError::new(&ctx.id, format!("{}: {}", e.path_string(), e.msg)))
        };
        let t = Compiled {
            actions: self.actions.clone(),
            include: compile(&self.include, "include")?,
            exclude: compile(&self.exclude, "exclude")?,
        };
        Ok(InPlace::build(&ctx, signal, next, t, "filtered"))
    }
}

impl Compiled {
    fn selected(&self, item: &Item<'_>) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(item))
            && self.exclude.as_ref().is_none_or(|m| !m.matches(item))
    }
}

impl Transform for Compiled {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let client = crate::client::with(|c| c.cloned());
        let client = client.as_ref();
        let filtered = self.include.is_some() || self.exclude.is_some();
        match batch {
            Batch::Traces(rs) => {
                for r in rs {
                    let resource = r.resource.as_ref().map_or(&[][..], |r| &r.attributes);
                    for ss in &mut r.scope_spans {
                        for span in &mut ss.spans {
                            if filtered {
                                let item = Item {
                                    resource,
                                    scope: ss.scope.as_ref(),
                                    span: Some(span),
                                    log: None,
                                    metric_name: None,
                                    attributes: &span.attributes,
                                };
                                if !self.selected(&item) {
                                    continue;
                                }
                            }
                            apply(&self.actions, &mut span.attributes, client);
                        }
                    }
                }
            }
            Batch::Logs(rl) => {
                for r in rl {
                    let resource = r.resource.as_ref().map_or(&[][..], |r| &r.attributes);
                    for sl in &mut r.scope_logs {
                        for log in &mut sl.log_records {
                            if filtered {
                                let item = Item {
                                    resource,
                                    scope: sl.scope.as_ref(),
                                    span: None,
                                    log: Some(log),
                                    metric_name: None,
                                    attributes: &log.attributes,
                                };
                                if !self.selected(&item) {
                                    continue;
                                }
                            }
                            apply(&self.actions, &mut log.attributes, client);
                        }
                    }
                }
            }
            Batch::Metrics(rm) => {
                for r in rm {
                    let resource = r.resource.as_ref().map_or(&[][..], |r| &r.attributes);
                    for sm in &mut r.scope_metrics {
                        for m in &mut sm.metrics {
                            if filtered {
                                let item = Item {
                                    resource,
                                    scope: sm.scope.as_ref(),
                                    span: None,
                                    log: None,
                                    metric_name: Some(&m.name),
                                    attributes: &[],
                                };
                                if !self.selected(&item) {
                                    continue;
                                }
                            }
                            let actions = &self.actions;
                            match &mut m.data {
                                Some(Data::Gauge(g)) => g
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| apply(actions, &mut p.attributes, client)),
                                Some(Data::Sum(s)) => s
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| apply(actions, &mut p.attributes, client)),
                                Some(Data::Histogram(h)) => h
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| apply(actions, &mut p.attributes, client)),
                                Some(Data::ExponentialHistogram(h)) => h
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| apply(actions, &mut p.attributes, client)),
                                Some(Data::Summary(s)) => s
                                    .data_points
                                    .iter_mut()
                                    .for_each(|p| apply(actions, &mut p.attributes, client)),
                                None => {}
                            }
                        }
                    }
                }
            }
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }
    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn actions(text: &str) -> Result<Vec<Action>, DeError> {
        let node = yaml(text).unwrap();
        let cfg: Config = from_node(&node)?;
        compile_actions(&cfg.actions, &node, "actions")
    }

    fn run(text: &str, attrs: &mut Vec<KeyValue>, client: Option<&ClientInfo>) {
        apply(&actions(text).unwrap(), attrs, client);
    }

    fn get(attrs: &[KeyValue], k: &str) -> Option<any_value::Value> {
        crate::signal::value::find_value(attrs, k).cloned()
    }

    #[test]
    fn insert_update_upsert_from_value_attribute_and_context() {
        let mut a = vec![kv("env", s("prod")), kv("user", s("u1"))];
        let client = ClientInfo {
            addr: Some("10.1.2.3".parse().unwrap()),
            metadata: vec![("x-tenant".into(), "acme".into())],
            auth: vec![("subject".into(), "svc-a".into())],
        };
        run(
            "actions:
  - {key: env, value: dev, action: insert}
  - {key: region, value: eu, action: insert}
  - {key: user, value: 7, action: update}
  - {key: missing, value: x, action: update}
  - {key: env2, from_attribute: env, action: upsert}
  - {key: tenant, from_context: metadata.X-Tenant, action: upsert}
  - {key: peer, from_context: client.address, action: insert}
  - {key: caller, from_context: auth.subject, action: insert}
  - {key: nope, from_attribute: absent, action: insert}
",
            &mut a,
            Some(&client),
        );
        assert_eq!(get(&a, "env"), Some(s("prod")), "insert does not overwrite");
        assert_eq!(get(&a, "region"), Some(s("eu")));
        assert_eq!(get(&a, "user"), Some(any_value::Value::IntValue(7)));
        assert_eq!(get(&a, "missing"), None, "update does not create");
        assert_eq!(get(&a, "env2"), Some(s("prod")));
        assert_eq!(get(&a, "tenant"), Some(s("acme")));
        assert_eq!(get(&a, "peer"), Some(s("10.1.2.3")));
        assert_eq!(get(&a, "caller"), Some(s("svc-a")));
        assert_eq!(get(&a, "nope"), None);
    }

    #[test]
    fn delete_hash_extract_convert() {
        let mut a = vec![
            kv("password", s("hunter2")),
            kv("db.password.old", s("x")),
            kv("email", s("abc")),
            kv("http.url", s("/api/v2/users/42")),
            kv("count", s("17")),
            kv("ratio", s("0.5")),
            kv("flag", any_value::Value::BoolValue(true)),
            kv("bad", s("x1")),
        ];
        run(
            r#"actions:
  - {key: password, action: delete}
  - {pattern: ".*\\.password\\..*", action: delete}
  - {key: email, action: hash}
  - {key: http.url, pattern: "^/api/(?P<version>v\\d+)/(?P<resource>\\w+)/", action: extract}
  - {key: count, action: convert, converted_type: int}
  - {key: ratio, action: convert, converted_type: double}
  - {key: flag, action: convert, converted_type: string}
  - {key: bad, action: convert, converted_type: int}
"#,
            &mut a,
            None,
        );
        assert_eq!(get(&a, "password"), None);
        assert_eq!(get(&a, "db.password.old"), None);
        // The SHA-256 test vector of "abc" (FIPS 180-2).
        assert_eq!(
            get(&a, "email"),
            Some(s(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        assert_eq!(get(&a, "version"), Some(s("v2")));
        assert_eq!(get(&a, "resource"), Some(s("users")));
        assert_eq!(get(&a, "count"), Some(any_value::Value::IntValue(17)));
        assert_eq!(get(&a, "ratio"), Some(any_value::Value::DoubleValue(0.5)));
        assert_eq!(get(&a, "flag"), Some(s("true")));
        assert_eq!(
            get(&a, "bad"),
            Some(s("x1")),
            "what does not convert is left alone"
        );
    }

    #[test]
    fn validation_errors_are_located() {
        let e = actions("actions:\n  - {key: a, action: insert}\n").unwrap_err();
        assert_eq!(e.path_string(), "actions[0].action");
        assert!(e.msg.contains("exactly one"), "{}", e.msg);
        let e = actions("actions:\n  - {key: a, value: 1, action: insert}\n  - {action: delete}\n")
            .unwrap_err();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("actions[1].key", 3)
        );
        let e = actions("actions:\n  - {key: a, action: extract, pattern: \"(x)\"}\n").unwrap_err();
        assert!(e.msg.contains("named groups"), "{}", e.msg);
        let e =
            actions("actions:\n  - {key: a, action: convert, converted_type: bool}\n").unwrap_err();
        assert_eq!(e.path_string(), "actions[0].converted_type");
        let e = actions("actions:\n  - {key: a, action: upsert, from_context: request.sub}\n")
            .unwrap_err();
        assert!(e.msg.contains("unsupported context key"), "{}", e.msg);
        let e = actions("actions:\n  - {key: a, action: rename}\n").unwrap_err();
        assert!(e.path_string().contains("action"), "{e:?}");
    }
}
