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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::helper::{Helper, QueueConfig, RetryConfig, SendError, Sender, Settings, Validated};
use super::key_err;
use crate::component::{BoxFuture, BuildError, Context, Exporter, ExporterConfig};
use crate::config::{DeError, Node, from_node, units};
use crate::proto::loki as lp;
use crate::signal::Batch;
use crate::tls::ClientTlsConfig;

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
    #[serde(default)]
    pub tls: ClientTlsConfig,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn default_max() -> usize {
    4 << 20
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    super::check_http_url(&cfg.endpoint).map_err(|m| {
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
    cfg.tls.validate().map_err(|m| key_err(node, &["tls"], m))?;
    super::validate_headers(node, &cfg.headers)?;
    let settings = Settings::new(
        cfg.timeout,
        cfg.retry_on_failure.clone(),
        cfg.sending_queue.clone(),
        node,
    )?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let client =
            super::http_client(&cfg.tls, &cfg.headers).map_err(|e| BuildError::new(&ctx.id, e))?;
        Ok(Helper::build(&ctx, settings, LokiSender { client, cfg }))
    }
}

/// A valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `{a="x", b="y"}` with keys sorted and values escaped as Prometheus label values.
fn label_string(labels: &BTreeMap<String, String>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        None => String::new(),
        _ => v
            .as_ref()
            .map(super::any_value_json)
            .unwrap_or(Value::Null)
            .to_string(),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

fn hint_list(attrs: &[KeyValue], key: &str) -> Vec<String> {
    attr(attrs, key)
        .map(|kv| {
            text(&kv.value)
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
    let mut tenants: BTreeMap<Option<String>, Streams> = BTreeMap::new();
    for rl in resources {
        let res: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
        let res_label_keys: Vec<String> = cfg
            .labels
            .resource
            .iter()
            .cloned()
            .chain(hint_list(res, "loki.resource.labels"))
            .collect();
        let tenant = cfg.tenant_id.clone().or_else(|| {
            let key = cfg
                .tenant_attribute
                .clone()
                .or_else(|| attr(res, "loki.tenant").map(|kv| text(&kv.value)))?;
            attr(res, &key)
                .map(|kv| text(&kv.value))
                .filter(|t| !t.is_empty())
        });
        let mut base: BTreeMap<String, String> = BTreeMap::new();
        base.insert("exporter".into(), "OTLP".into());
        let service = attr(res, "service.name").map(|kv| text(&kv.value));
        let namespace = attr(res, "service.namespace").map(|kv| text(&kv.value));
        if let Some(svc) = &service {
            base.insert(
                "job".into(),
                namespace
                    .as_ref()
                    .map_or_else(|| svc.clone(), |ns| format!("{ns}/{svc}")),
            );
        }
        if let Some(inst) = attr(res, "service.instance.id") {
            base.insert("instance".into(), text(&inst.value));
        }
        for k in &res_label_keys {
            if let Some(kv) = attr(res, k) {
                base.insert(label_name(k), text(&kv.value));
            }
        }
        let res_rest: Vec<&KeyValue> = res
            .iter()
            .filter(|kv| !res_label_keys.contains(&kv.key) && !HINTS.contains(&kv.key.as_str()))
            .collect();
        for sl in &rl.scope_logs {
            for rec in &sl.log_records {
                let attr_label_keys: Vec<String> = cfg
                    .labels
                    .attributes
                    .iter()
                    .cloned()
                    .chain(hint_list(&rec.attributes, "loki.attribute.labels"))
                    .collect();
                let mut labels = base.clone();
                if !rec.severity_text.is_empty() {
                    labels.insert("level".into(), rec.severity_text.to_ascii_lowercase());
                }
                for k in &attr_label_keys {
                    if let Some(kv) = attr(&rec.attributes, k) {
                        labels.insert(label_name(k), text(&kv.value));
                    }
                }
                let rec_rest: Vec<&KeyValue> = rec
                    .attributes
                    .iter()
                    .filter(|kv| {
                        !attr_label_keys.contains(&kv.key) && !HINTS.contains(&kv.key.as_str())
                    })
                    .collect();
                let mut metadata = Vec::new();
                let (line_attrs, line_res): (Vec<&KeyValue>, Vec<&KeyValue>) =
                    if cfg.structured_metadata {
                        for kv in rec_rest.iter().chain(res_rest.iter()) {
                            metadata.push(lp::LabelPairAdapter {
                                name: label_name(&kv.key),
                                value: text(&kv.value),
                            });
                        }
                        (Vec::new(), Vec::new())
                    } else {
                        (rec_rest, res_rest.clone())
                    };
                let trace_id = (!rec.trace_id.is_empty()).then(|| hex::encode(&rec.trace_id));
                let span_id = (!rec.span_id.is_empty()).then(|| hex::encode(&rec.span_id));
                if cfg.structured_metadata {
                    if let Some(t) = &trace_id {
                        metadata.push(lp::LabelPairAdapter {
                            name: "trace_id".into(),
                            value: t.clone(),
                        });
                    }
                    if let Some(s) = &span_id {
                        metadata.push(lp::LabelPairAdapter {
                            name: "span_id".into(),
                            value: s.clone(),
                        });
                    }
                }
                let body = text(&rec.body);
                let line = match cfg.format {
                    LineFormat::Raw => body,
                    LineFormat::Json => {
                        let mut m = Map::new();
                        m.insert(
                            "body".into(),
                            rec.body.as_ref().map_or(Value::Null, super::any_value_json),
                        );
                        let obj = |kvs: &[&KeyValue]| -> Value {
                            Value::Object(
                                kvs.iter()
                                    .map(|kv| {
                                        (
                                            kv.key.clone(),
                                            kv.value
                                                .as_ref()
                                                .map_or(Value::Null, super::any_value_json),
                                        )
                                    })
                                    .collect(),
                            )
                        };
                        if !line_attrs.is_empty() {
                            m.insert("attributes".into(), obj(&line_attrs));
                        }
                        if !line_res.is_empty() {
                            m.insert("resources".into(), obj(&line_res));
                        }
                        if let Some(scope) = sl.scope.as_ref().filter(|s| !s.name.is_empty()) {
                            m.insert(
                                "instrumentation_scope".into(),
                                serde_json::json!({"name": scope.name, "version": scope.version}),
                            );
                        }
                        if !cfg.structured_metadata {
                            if let Some(t) = &trace_id {
                                m.insert("traceid".into(), Value::String(t.clone()));
                            }
                            if let Some(s) = &span_id {
                                m.insert("spanid".into(), Value::String(s.clone()));
                            }
                        }
                        if !rec.severity_text.is_empty() {
                            m.insert("severity".into(), Value::String(rec.severity_text.clone()));
                        }
                        Value::Object(m).to_string()
                    }
                    LineFormat::Logfmt => {
                        let mut parts = vec![logfmt_pair("body", &body)];
                        for kv in &line_attrs {
                            parts.push(logfmt_pair(
                                &format!("attribute_{}", label_name(&kv.key)),
                                &text(&kv.value),
                            ));
                        }
                        for kv in &line_res {
                            parts.push(logfmt_pair(
                                &format!("resource_{}", label_name(&kv.key)),
                                &text(&kv.value),
                            ));
                        }
                        if !cfg.structured_metadata {
                            if let Some(t) = &trace_id {
                                parts.push(logfmt_pair("traceid", t));
                            }
                            if let Some(s) = &span_id {
                                parts.push(logfmt_pair("spanid", s));
                            }
                        }
                        if !rec.severity_text.is_empty() {
                            parts.push(logfmt_pair("severity", &rec.severity_text));
                        }
                        parts.join(" ")
                    }
                };
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
                tenants
                    .entry(tenant.clone())
                    .or_default()
                    .entry(label_string(&labels))
                    .or_default()
                    .push(entry);
            }
        }
    }
    for streams in tenants.values_mut() {
        for entries in streams.values_mut() {
            // Loki wants each stream in time order.
            entries.sort_by_key(|e| e.timestamp.map(|t| (t.seconds, t.nanos)));
        }
    }
    tenants
}

fn logfmt_pair(k: &str, v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=')
    {
        format!("{k}={v}")
    } else {
        format!("{k}={}", serde_json::Value::String(v.to_owned()))
    }
}

/// Splits one tenant's streams into push requests of at most `max` encoded bytes (a stream
/// larger than that is split between requests).
fn requests(streams: Streams, max: usize) -> Vec<lp::PushRequest> {
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
                let resp = rb.send().await.map_err(|e| {
                    SendError::retryable(format!("POST {}: {e}", self.cfg.endpoint))
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
        assert_eq!(label_name("1abc"), "_1abc");
        let l: BTreeMap<String, String> =
            [("b".into(), "x\"y\\".into()), ("a".into(), "1".into())].into();
        assert_eq!(label_string(&l), "{a=\"1\", b=\"x\\\"y\\\\\"}");
        let parsed = parse_labels(&label_string(&l));
        assert_eq!(parsed.get("b"), Some(&Value::String("x\"y\\".into())));
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
