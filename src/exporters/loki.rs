//! `loki` exporter: log records to Loki's push API (`POST /loki/api/v1/push`), protobuf with
//! snappy block compression (default) or JSON.
//!
//! Streams: labels must stay few, so only these become labels: `exporter="OTLP"`, `job`
//! (`service.namespace/service.name`), `instance` (`service.instance.id`), `level` (severity
//! text), the resource and record attributes listed under `labels`, and those named by the
//! Collector's hint attributes `loki.resource.labels` and `loki.attribute.labels` (comma
//! separated). Dots and other invalid characters in label names become `_`. Everything else goes
//! into the line (`format`: `json`, `logfmt` or `raw`), or into structured metadata when
//! `structured_metadata: true`. The tenant (`X-Scope-OrgID`) is `tenant_id`, or the value of the
//! resource attribute named by `tenant_attribute` or by the `loki.tenant` hint; records of
//! different tenants go in different requests. Entries are sorted by timestamp within each
//! stream, and requests are split to stay under `max_request_size`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, SendError, Sender, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node};
use crate::proto::loki as lp;
use crate::signal::{Batch, value};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Protobuf `PushRequest`, snappy block compressed (default).
    #[default]
    Protobuf,
    Json,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    #[default]
    Json,
    Logfmt,
    Raw,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Labels {
    /// Resource attributes to use as labels.
    pub resource: Vec<String>,
    /// Log record attributes to use as labels.
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `http://loki:3100/loki/api/v1/push`.
    pub endpoint: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// How the line is written. Default `json`.
    #[serde(default)]
    pub format: LineFormat,
    #[serde(default)]
    pub labels: Labels,
    /// Put the attributes that are not labels into structured metadata (Loki 3) instead of the
    /// line. Default false.
    #[serde(default)]
    pub structured_metadata: bool,
    /// A fixed tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// A resource attribute holding the tenant.
    #[serde(default)]
    pub tenant_attribute: Option<String>,
    /// Largest request body before compression, in bytes. Default 4 MiB.
    #[serde(default = "default_max")]
    pub max_request_size: usize,
    /// `tls`, `headers`, `timeout`, `retry_on_failure`, `sending_queue`: flattened in by
    /// [`client::parse`].
    #[serde(skip)]
    pub client: ClientSettings,
}

impl client::HasClient for Config {
    fn client_mut(&mut self) -> &mut ClientSettings {
        &mut self.client
    }
}

fn default_max() -> usize {
    4 << 20
}
/// `loki`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::exporter("loki", crate::signal::LOGS, Stability::Alpha, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = client::parse(node)?;
    crate::net::client::check_http_url(&cfg.endpoint).map_err(|m| {
        key_err(
            node,
            &["endpoint"],
            format!("{m}, e.g. http://loki:3100/loki/api/v1/push"),
        )
    })?;
    if cfg.max_request_size < 1024 {
        return Err(key_err(
            node,
            &["max_request_size"],
            "must be at least 1024 bytes",
        ));
    }
    if cfg.tenant_id.is_some() && cfg.tenant_attribute.is_some() {
        return Err(key_err(
            node,
            &["tenant_attribute"],
            "set either tenant_id or tenant_attribute, not both",
        ));
    }
    let settings = cfg.client.validate(node)?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn storage(&self) -> Option<&crate::config::ComponentId> {
        self.settings.storage.as_ref()
    }

    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let client = cfg
            .client
            .http_client()
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        let auth = cfg
            .client
            .authenticator(&ctx)
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        Helper::build(&ctx, settings, LokiSender { client, cfg, auth })
    }
}

/// A valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
/// A label name from an attribute key (the one rule, shared with remote-write).
pub fn label_name(s: &str) -> String {
    value::label_name(s).into_owned()
}

/// Appends `{a="x", b="y"}` (labels given sorted), values escaped as Prometheus label values.
fn label_string<'a>(s: &mut String, labels: impl Iterator<Item = (&'a str, &'a str)>) {
    s.push('{');
    for (i, (k, v)) in labels.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push_str("=\"");
        if v.contains(['\\', '"', '\n']) {
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
        } else {
            s.push_str(v);
        }
        s.push('"');
    }
    s.push('}');
}

fn hint_list(attrs: &[KeyValue], key: &str) -> Vec<String> {
    value::find_kv(attrs, key)
        .map(|kv| {
            value::option_text(&kv.value)
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

const HINTS: [&str; 3] = [
    "loki.resource.labels",
    "loki.attribute.labels",
    "loki.tenant",
];

/// One tenant's streams: label string → entries.
type Streams = BTreeMap<String, Vec<lp::EntryAdapter>>;

/// Groups records into tenants and streams, entries sorted by timestamp.
pub fn translate(resources: &[ResourceLogs], cfg: &Config) -> BTreeMap<Option<String>, Streams> {
    // Per tenant: stream label string → index into `streams`.
    let mut tenants: Vec<(Option<String>, HashMap<String, usize>)> = Vec::new();
    let mut streams: Vec<(usize, Vec<lp::EntryAdapter>)> = Vec::new();
    let mut key = String::new();
    for rl in resources {
        let res: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
        let res_hint = hint_list(res, "loki.resource.labels");
        let is_res_label =
            |k: &str| cfg.labels.resource.iter().any(|l| l == k) || res_hint.iter().any(|l| l == k);
        let tenant = cfg.tenant_id.clone().or_else(|| {
            let key = cfg.tenant_attribute.clone().or_else(|| {
                value::find_kv(res, "loki.tenant")
                    .map(|kv| value::option_text(&kv.value).into_owned())
            })?;
            value::find_kv(res, &key)
                .map(|kv| value::option_text(&kv.value).into_owned())
                .filter(|t| !t.is_empty())
        });
        let t = match tenants.iter().position(|(t, _)| *t == tenant) {
            Some(t) => t,
            None => {
                tenants.push((tenant, HashMap::new()));
                tenants.len() - 1
            }
        };
        let mut base: Vec<(Cow<'_, str>, Cow<'_, str>)> = vec![("exporter".into(), "OTLP".into())];
        if let Some(svc) =
            value::find_kv(res, "service.name").map(|kv| value::option_text(&kv.value))
        {
            let job = match value::find_kv(res, "service.namespace") {
                Some(ns) => Cow::Owned(format!("{}/{svc}", value::option_text(&ns.value))),
                None => svc,
            };
            base.push(("job".into(), job));
        }
        if let Some(inst) = value::find_kv(res, "service.instance.id") {
            base.push(("instance".into(), value::option_text(&inst.value)));
        }
        for k in cfg.labels.resource.iter().chain(&res_hint) {
            if let Some(kv) = value::find_kv(res, k) {
                base.push((label_name(k).into(), value::option_text(&kv.value)));
            }
        }
        let res_rest: Vec<&KeyValue> = res
            .iter()
            .filter(|kv| !is_res_label(&kv.key) && !HINTS.contains(&kv.key.as_str()))
            .collect();
        // What every line of this resource shares, rendered once.
        let mut res_json = String::new();
        let mut res_logfmt = String::new();
        if !cfg.structured_metadata && !res_rest.is_empty() {
            let mut sorted = res_rest.clone();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            json_object(&mut res_json, &sorted);
            for kv in &res_rest {
                let k = format!("resource_{}", label_name(&kv.key));
                logfmt_pair(&mut res_logfmt, &k, &value::option_text(&kv.value));
            }
        }
        let mut labels: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        for sl in &rl.scope_logs {
            let scope_json = sl.scope.as_ref().filter(|s| !s.name.is_empty()).map(|s| {
                let mut o = String::from("{\"name\":");
                json_str(&mut o, &s.name);
                o.push_str(",\"version\":");
                json_str(&mut o, &s.version);
                o.push('}');
                o
            });
            for rec in &sl.log_records {
                let attr_hint = hint_list(&rec.attributes, "loki.attribute.labels");
                let is_attr_label = |k: &str| {
                    cfg.labels.attributes.iter().any(|l| l == k) || attr_hint.iter().any(|l| l == k)
                };
                labels.clear();
                labels.extend(
                    base.iter()
                        .map(|(k, v)| (Cow::Borrowed(&**k), Cow::Borrowed(&**v))),
                );
                if !rec.severity_text.is_empty() {
                    labels.push((
                        "level".into(),
                        rec.severity_text.to_ascii_lowercase().into(),
                    ));
                }
                for k in cfg.labels.attributes.iter().chain(&attr_hint) {
                    if let Some(kv) = value::find_kv(&rec.attributes, k) {
                        labels.push((label_name(k).into(), value::option_text(&kv.value)));
                    }
                }
                // Later sources win on equal names, as inserting into a map would.
                labels.reverse();
                labels.sort_by(|a, b| a.0.cmp(&b.0));
                labels.dedup_by(|a, b| a.0 == b.0);
                key.clear();
                label_string(&mut key, labels.iter().map(|(k, v)| (&**k, &**v)));

                let mut rec_rest: Vec<&KeyValue> = rec
                    .attributes
                    .iter()
                    .filter(|kv| !is_attr_label(&kv.key) && !HINTS.contains(&kv.key.as_str()))
                    .collect();
                let mut metadata = Vec::new();
                if cfg.structured_metadata {
                    for kv in rec_rest.iter().chain(&res_rest) {
                        metadata.push(lp::LabelPairAdapter {
                            name: label_name(&kv.key),
                            value: value::option_text(&kv.value).into_owned(),
                        });
                    }
                    if !rec.trace_id.is_empty() {
                        metadata.push(lp::LabelPairAdapter {
                            name: "trace_id".into(),
                            value: hex::encode(&rec.trace_id),
                        });
                    }
                    if !rec.span_id.is_empty() {
                        metadata.push(lp::LabelPairAdapter {
                            name: "span_id".into(),
                            value: hex::encode(&rec.span_id),
                        });
                    }
                    rec_rest.clear();
                }
                let mut line = String::with_capacity(128);
                match cfg.format {
                    LineFormat::Raw => line.push_str(&value::option_text(&rec.body)),
                    LineFormat::Json => {
                        // Keys in alphabetical order, as a sorted JSON map writes them.
                        line.push('{');
                        if !rec_rest.is_empty() {
                            rec_rest.sort_by(|a, b| a.key.cmp(&b.key));
                            line.push_str("\"attributes\":");
                            json_object(&mut line, &rec_rest);
                            line.push(',');
                        }
                        line.push_str("\"body\":");
                        json_value(&mut line, rec.body.as_ref());
                        if let Some(scope) = &scope_json {
                            line.push_str(",\"instrumentation_scope\":");
                            line.push_str(scope);
                        }
                        if !res_json.is_empty() {
                            line.push_str(",\"resources\":");
                            line.push_str(&res_json);
                        }
                        if !rec.severity_text.is_empty() {
                            line.push_str(",\"severity\":");
                            json_str(&mut line, &rec.severity_text);
                        }
                        if !cfg.structured_metadata {
                            if !rec.span_id.is_empty() {
                                line.push_str(",\"spanid\":\"");
                                push_hex(&mut line, &rec.span_id);
                                line.push('"');
                            }
                            if !rec.trace_id.is_empty() {
                                line.push_str(",\"traceid\":\"");
                                push_hex(&mut line, &rec.trace_id);
                                line.push('"');
                            }
                        }
                        line.push('}');
                    }
                    LineFormat::Logfmt => {
                        logfmt_pair(&mut line, "body", &value::option_text(&rec.body));
                        for kv in &rec_rest {
                            logfmt_pair(
                                &mut line,
                                &format!("attribute_{}", label_name(&kv.key)),
                                &value::option_text(&kv.value),
                            );
                        }
                        if !res_logfmt.is_empty() {
                            line.push(' ');
                            line.push_str(&res_logfmt);
                        }
                        if !cfg.structured_metadata {
                            if !rec.trace_id.is_empty() {
                                logfmt_pair(&mut line, "traceid", &hex::encode(&rec.trace_id));
                            }
                            if !rec.span_id.is_empty() {
                                logfmt_pair(&mut line, "spanid", &hex::encode(&rec.span_id));
                            }
                        }
                        if !rec.severity_text.is_empty() {
                            logfmt_pair(&mut line, "severity", &rec.severity_text);
                        }
                    }
                }
                let nanos = if rec.time_unix_nano > 0 {
                    rec.time_unix_nano
                } else {
                    rec.observed_time_unix_nano
                };
                let entry = lp::EntryAdapter {
                    timestamp: Some(prost_types::Timestamp {
                        seconds: (nanos / 1_000_000_000) as i64,
                        nanos: (nanos % 1_000_000_000) as i32,
                    }),
                    line,
                    structured_metadata: metadata,
                };
                let index = &mut tenants[t].1;
                let s = match index.get(key.as_str()) {
                    Some(&s) => s,
                    None => {
                        index.insert(key.clone(), streams.len());
                        streams.push((t, Vec::new()));
                        streams.len() - 1
                    }
                };
                streams[s].1.push(entry);
            }
        }
    }
    let mut out: BTreeMap<Option<String>, Streams> = BTreeMap::new();
    let mut streams: Vec<Option<Vec<lp::EntryAdapter>>> =
        streams.into_iter().map(|(_, e)| Some(e)).collect();
    for (tenant, index) in tenants {
        let per_tenant = out.entry(tenant).or_default();
        for (labels, s) in index {
            let mut entries = streams[s].take().unwrap_or_default();
            // Loki wants each stream in time order.
            let ts = |e: &lp::EntryAdapter| e.timestamp.map(|t| (t.seconds, t.nanos));
            if !entries.is_sorted_by_key(ts) {
                entries.sort_by_key(ts);
            }
            per_tenant.insert(labels, entries);
        }
    }
    out
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Appends an attribute value as JSON (the non-OTLP mapping of `any_value_json`; strings and
/// integers written directly).
fn json_value(out: &mut String, v: Option<&AnyValue>) {
    match v.and_then(|v| v.value.as_ref()) {
        None => out.push_str("null"),
        Some(any_value::Value::StringValue(s)) => json_str(out, s),
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(_) => {
            let v = v.map_or(Value::Null, value::to_json);
            out.push_str(&v.to_string());
        }
    }
}

/// Appends `{"k":v,...}` for attributes already sorted by key.
fn json_object(out: &mut String, kvs: &[&KeyValue]) {
    out.push('{');
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, &kv.key);
        out.push(':');
        json_value(out, kv.value.as_ref());
    }
    out.push('}');
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// Appends ` k=v` (no leading space on an empty line), quoting `v` when it needs it.
fn logfmt_pair(out: &mut String, k: &str, v: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(k);
    out.push('=');
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=')
    {
        out.push_str(v);
    } else {
        json_str(out, v);
    }
}

/// Splits one tenant's streams into push requests of at most `max` encoded bytes (a stream
/// larger than that is split between requests).
pub fn requests(streams: Streams, max: usize) -> Vec<lp::PushRequest> {
    let mut out = Vec::new();
    let mut cur = lp::PushRequest::default();
    let mut size = 0usize;
    for (labels, entries) in streams {
        let mut stream = lp::StreamAdapter {
            labels: labels.clone(),
            entries: Vec::new(),
            hash: 0,
        };
        let mut stream_size = labels.len() + 8;
        for e in entries {
            let n = e.encoded_len() + 4;
            if size + stream_size + n > max
                && (!stream.entries.is_empty() || !cur.streams.is_empty())
            {
                if !stream.entries.is_empty() {
                    cur.streams.push(std::mem::replace(
                        &mut stream,
                        lp::StreamAdapter {
                            labels: labels.clone(),
                            entries: Vec::new(),
                            hash: 0,
                        },
                    ));
                }
                out.push(std::mem::take(&mut cur));
                size = 0;
                stream_size = labels.len() + 8;
            }
            stream_size += n;
            stream.entries.push(e);
        }
        if !stream.entries.is_empty() {
            size += stream_size;
            cur.streams.push(stream);
        }
    }
    if !cur.streams.is_empty() {
        out.push(cur);
    }
    out
}

fn json_body(req: &lp::PushRequest) -> Vec<u8> {
    let streams: Vec<Value> = req
        .streams
        .iter()
        .map(|s| {
            // The JSON push API wants the labels as an object: parse them back from our own,
            // well-formed label string.
            let values: Vec<Value> = s
                .entries
                .iter()
                .map(|e| {
                    let ts = e
                        .timestamp
                        .map_or(0, |t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128);
                    let mut v = vec![Value::String(ts.to_string()), Value::String(e.line.clone())];
                    if !e.structured_metadata.is_empty() {
                        v.push(Value::Object(
                            e.structured_metadata
                                .iter()
                                .map(|p| (p.name.clone(), Value::String(p.value.clone())))
                                .collect(),
                        ));
                    }
                    Value::Array(v)
                })
                .collect();
            serde_json::json!({"stream": parse_labels(&s.labels), "values": values})
        })
        .collect();
    serde_json::json!({ "streams": streams })
        .to_string()
        .into_bytes()
}

fn parse_labels(s: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let inner = s.trim_start_matches('{').trim_end_matches('}');
    let mut rest = inner;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(", ").to_owned();
        let mut val = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, c)) => val.push(c),
                    None => {}
                },
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.insert(key, Value::String(val));
        rest = &rest[end.min(rest.len())..];
    }
    out
}

pub struct LokiSender {
    client: reqwest::Client,
    cfg: Config,
    auth: Option<Arc<dyn crate::net::auth::ClientAuthenticator>>,
}

/// The push requests of one export (per tenant, split by size) and how many Loki took already.
pub struct Pushes {
    bodies: Vec<(Option<String>, Bytes)>,
    done: AtomicUsize,
}

impl Sender for LokiSender {
    type Request = Pushes;

    fn encode(&self, batch: Batch) -> Result<Pushes, SendError> {
        let Batch::Logs(resources) = batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?
        else {
            return Err(SendError::Permanent(
                "the loki exporter takes logs only".into(),
            ));
        };
        let mut bodies = Vec::new();
        for (tenant, streams) in translate(&resources, &self.cfg) {
            for req in requests(streams, self.cfg.max_request_size) {
                let body = match self.cfg.encoding {
                    Encoding::Protobuf => snap::raw::Encoder::new()
                        .compress_vec(&req.encode_to_vec())
                        .map_err(|e| SendError::Permanent(format!("snappy: {e}")))?,
                    Encoding::Json => json_body(&req),
                };
                bodies.push((tenant.clone(), Bytes::from(body)));
            }
        }
        Ok(Pushes {
            bodies,
            done: AtomicUsize::new(0),
        })
    }

    fn send<'a>(&'a self, req: &'a Pushes) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            while let Some((tenant, body)) = req.bodies.get(req.done.load(Ordering::Acquire)) {
                let mut rb = self.client.post(&self.cfg.endpoint).body(body.clone());
                rb = match self.cfg.encoding {
                    Encoding::Protobuf => rb
                        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                        .header(http::header::CONTENT_ENCODING, "snappy"),
                    Encoding::Json => rb.header(http::header::CONTENT_TYPE, "application/json"),
                };
                if let Some(t) = tenant {
                    rb = rb.header("X-Scope-OrgID", t);
                }
                rb = super::helper::client::authorize(rb, self.auth.as_ref()).await?;
                let resp = rb.send().await.map_err(|e| {
                    SendError::retryable(format!(
                        "POST {}: {}",
                        self.cfg.endpoint,
                        crate::text::error_chain(&e)
                    ))
                })?;
                let status = resp.status();
                if !status.is_success() {
                    let headers = resp.headers().clone();
                    let text = resp.bytes().await.unwrap_or_default();
                    let detail = String::from_utf8_lossy(&text[..text.len().min(256)]).into_owned();
                    return Err(super::classify_http(
                        status,
                        &headers,
                        format!("POST {}: HTTP {status}: {detail}", self.cfg.endpoint),
                    ));
                }
                req.done.fetch_add(1, Ordering::AcqRel);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn label_names_and_strings() {
        assert_eq!(label_name("k8s.namespace.name"), "k8s_namespace_name");
        // The one rule for label names (signal::value::label_name), as remote-write writes them;
        // before the shared rule this exporter wrote `_1abc`.
        assert_eq!(label_name("1abc"), "key_1abc");
        let l: BTreeMap<String, String> =
            [("b".into(), "x\"y\\".into()), ("a".into(), "1".into())].into();
        let mut text = String::new();
        label_string(&mut text, l.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(text, "{a=\"1\", b=\"x\\\"y\\\\\"}");
        let parsed = parse_labels(&text);
        assert_eq!(parsed.get("b"), Some(&Value::String("x\"y\\".into())));
    }

    #[test]
    fn json_strings_escape_as_serde_json_does() {
        for s in [
            "plain",
            "quote \" backslash \\ slash /",
            "tab\tnl\ncr\r bell\u{7} bs\u{8} ff\u{c} nul\u{0} us\u{1f}",
            "unicode ✗ 日本 🎉 \u{2028}",
            "",
        ] {
            let mut ours = String::new();
            json_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).unwrap(), "{s:?}");
        }
        let mut line = String::new();
        logfmt_pair(&mut line, "body", "a b");
        logfmt_pair(&mut line, "k", "v=1");
        logfmt_pair(&mut line, "e", "");
        logfmt_pair(&mut line, "ok", "x/y");
        assert_eq!(line, "body=\"a b\" k=\"v=1\" e=\"\" ok=x/y");
    }

    #[test]
    fn config_validation() {
        assert!(parse(&yaml("endpoint: http://loki:3100/loki/api/v1/push\n").unwrap()).is_ok());
        let e =
            parse(&yaml("endpoint: http://l:1/x\ntenant_id: a\ntenant_attribute: b\n").unwrap())
                .err()
                .unwrap();
        assert_eq!(e.path_string(), "tenant_attribute");
        assert_eq!(
            parse(&yaml("endpoint: http://l:1/x\nformat: xml\n").unwrap())
                .err()
                .unwrap()
                .path_string(),
            "format"
        );
    }

    #[test]
    fn json_push_body() {
        let req = lp::PushRequest {
            streams: vec![lp::StreamAdapter {
                labels: "{job=\"a\\\"b\", level=\"info\"}".into(),
                entries: vec![lp::EntryAdapter {
                    timestamp: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                    line: "hello".into(),
                    structured_metadata: vec![lp::LabelPairAdapter {
                        name: "trace_id".into(),
                        value: "ab".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let v: Value = serde_json::from_slice(&json_body(&req)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams": [{"stream": {"job": "a\"b", "level": "info"},
                "values": [["1700000000000000005", "hello", {"trace_id": "ab"}]]}]})
        );
    }

    #[test]
    fn requests_are_split_by_size() {
        let entry = |i: i64| lp::EntryAdapter {
            timestamp: Some(prost_types::Timestamp {
                seconds: i,
                nanos: 0,
            }),
            line: "x".repeat(100),
            structured_metadata: vec![],
        };
        let mut streams = Streams::new();
        streams.insert("{a=\"1\"}".into(), (0..50).map(entry).collect());
        streams.insert("{a=\"2\"}".into(), (0..50).map(entry).collect());
        let reqs = requests(streams, 2048);
        assert!(reqs.len() >= 5, "{}", reqs.len());
        assert!(
            reqs.iter().all(|r| r.encoded_len() <= 2048 + 200),
            "{:?}",
            reqs.iter().map(|r| r.encoded_len()).collect::<Vec<_>>()
        );
        let total: usize = reqs
            .iter()
            .flat_map(|r| &r.streams)
            .map(|s| s.entries.len())
            .sum();
        assert_eq!(total, 100);
    }
}
