//! `zipkin` exporter: spans to a Zipkin v2 endpoint (`POST /api/v2/spans`, a JSON list),
//! translated as the OpenTelemetry specification's "OpenTelemetry to Zipkin Transformation"
//! says.
//!
//! Mapping: service name from `service.name` (else `default_service_name`); kind SERVER, CLIENT,
//! PRODUCER, CONSUMER (INTERNAL, which Zipkin lacks, as the tag `span.kind: internal`, as the
//! Collector writes it); `timestamp`/`duration` in microseconds; attributes and resource attributes (except `service.name`) as tags, non-strings stringified (arrays as JSON);
//! status as `otel.status_code` (`OK`/`ERROR`, unset → absent) and `error` (the description) for
//! errors; events as annotations (`name`, or `name: {attributes as JSON}`); the scope as
//! `otel.scope.name`/`otel.scope.version`; dropped counts as `otel.dropped_*_count`; links, which
//! Zipkin has no field for, as `otel.link.<i>` = `<trace id>-<span id>`; the remote endpoint of
//! CLIENT and PRODUCER spans from the ranked peer attributes; a trace id whose upper 64 bits are
//! zero as 16 hex digits.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, Part, SendError, Sender, Validated};
use super::{classify_http, key_err};
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node, units};
use crate::net::compression::Compression;
use crate::signal::{Batch, value};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Proto,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Zipkin v2 spans URL, e.g. `http://zipkin:9411/api/v2/spans`.
    pub endpoint: String,
    /// `json` (default) or `proto` (the zipkin2 protobuf `ListOfSpans`).
    #[serde(default)]
    pub format: Format,
    /// Service name for spans whose resource has no `service.name`. Default `unknown_service`.
    #[serde(default = "default_service")]
    pub default_service_name: String,
    /// `gzip`, `zstd` or `none` (default; Zipkin servers accept gzip).
    #[serde(default = "no_compression")]
    pub compression: Compression,
    /// The largest request body sent, in bytes before compression: larger batches go in several
    /// POSTs, at span boundaries, and a POST answered 413 is split again. Default 5 MiB; 0 = no
    /// bound. Accepts units (`"1MiB"`).
    #[serde(default = "default_max_request", deserialize_with = "units::bytes")]
    pub max_request_size: u64,
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

fn default_max_request() -> u64 {
    5 << 20
}

fn default_service() -> String {
    "unknown_service".into()
}
fn no_compression() -> Compression {
    Compression::None
}
/// `zipkin`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::exporter("zipkin", crate::signal::TRACES, Stability::Alpha, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = client::parse(node)?;
    crate::net::client::check_http_url(&cfg.endpoint).map_err(|m| {
        key_err(
            node,
            &["endpoint"],
            format!("{m}, e.g. http://zipkin:9411/api/v2/spans"),
        )
    })?;
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
        let sender = ZipkinSender {
            client,
            url: cfg.endpoint,
            default_service: cfg.default_service_name,
            compression: cfg.compression,
            format: cfg.format,
            max_request: usize::try_from(cfg.max_request_size)
                .ok()
                .filter(|m| *m > 0)
                .unwrap_or(usize::MAX),
            auth: cfg
                .client
                .authenticator(&ctx)
                .map_err(|e| BuildError::new(&ctx.id, e))?,
        };
        Helper::build(&ctx, settings, sender)
    }
}

pub struct ZipkinSender {
    client: reqwest::Client,
    url: String,
    default_service: String,
    compression: Compression,
    format: Format,
    max_request: usize,
    auth: Option<Arc<dyn crate::net::auth::ClientAuthenticator>>,
}

/// A Zipkin v2 span, as the API's JSON schema defines it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    pub trace_id: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub timestamp: u64,
    pub duration: u64,
    pub local_endpoint: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub annotations: Vec<Annotation>,
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub tags: Map<String, Value>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Annotation {
    pub timestamp: u64,
    pub value: String,
}

/// Zipkin tags are strings: the specification's non-OTLP text of the value.
fn tag_value(v: &Option<AnyValue>) -> String {
    value::option_text(v).into_owned()
}

/// A non-empty string attribute.
fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    value::find_str(attrs, key).filter(|s| !s.is_empty())
}

/// The remote endpoint of a CLIENT or PRODUCER span, from the spec's ranked peer attributes
/// (current and older semantic convention names).
fn remote_endpoint(attrs: &[KeyValue]) -> Option<Endpoint> {
    let port = value::find_int(attrs, "server.port")
        .or_else(|| value::find_int(attrs, "network.peer.port"))
        .or_else(|| value::find_int(attrs, "net.peer.port"))
        .and_then(|p| u16::try_from(p).ok());
    for key in [
        "peer.service",
        "server.address",
        "net.peer.name",
        "network.peer.address",
        "net.sock.peer.addr",
        "net.peer.ip",
        "peer.hostname",
        "peer.address",
        "http.host",
        "db.name",
    ] {
        if let Some(v) = str_attr(attrs, key) {
            let mut ep = Endpoint {
                port,
                ..Default::default()
            };
            match v.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => ep.ipv4 = Some(ip.to_string()),
                Ok(std::net::IpAddr::V6(ip)) => ep.ipv6 = Some(ip.to_string()),
                Err(_) => ep.service_name = Some(v.to_owned()),
            }
            return Some(ep);
        }
    }
    None
}

/// 32 hex digits, or 16 when the upper 64 bits are zero (a 64-bit Zipkin trace id).
fn trace_id_hex(id: &[u8]) -> String {
    if id.len() == 16 && id[..8].iter().all(|b| *b == 0) {
        hex::encode(&id[8..])
    } else {
        hex::encode(id)
    }
}

/// Translates a batch of spans into Zipkin v2 spans.
pub fn translate(batch: &Batch, default_service: &str) -> Vec<ZipkinSpan> {
    let Batch::Traces(resources) = batch else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(batch.item_count());
    for rs in resources {
        let res_attrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = str_attr(res_attrs, "service.name")
            .unwrap_or(default_service)
            .to_owned();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let mut z = span_to_zipkin(span, &service);
                if let Some(scope) = &ss.scope {
                    if !scope.name.is_empty() {
                        z.tags
                            .insert("otel.scope.name".into(), Value::String(scope.name.clone()));
                    }
                    if !scope.version.is_empty() {
                        z.tags.insert(
                            "otel.scope.version".into(),
                            Value::String(scope.version.clone()),
                        );
                    }
                }
                for kv in res_attrs.iter().filter(|kv| kv.key != "service.name") {
                    // Span attributes win over resource attributes of the same name.
                    z.tags
                        .entry(kv.key.clone())
                        .or_insert_with(|| Value::String(tag_value(&kv.value)));
                }
                out.push(z);
            }
        }
    }
    out
}

fn span_to_zipkin(span: &Span, service: &str) -> ZipkinSpan {
    let kind = match SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal | SpanKind::Unspecified => None,
    };
    let mut tags: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), Value::String(tag_value(&kv.value))))
        .collect();
    // Zipkin has no INTERNAL kind: a tag keeps it, as the Collector writes it (and its receiver
    // and ferrotel's read it back).
    if kind.is_none() && span.kind == SpanKind::Internal as i32 {
        tags.insert("span.kind".into(), "internal".into());
    }
    if let Some(st) = &span.status {
        match StatusCode::try_from(st.code).unwrap_or(StatusCode::Unset) {
            StatusCode::Ok => drop(tags.insert("otel.status_code".into(), "OK".into())),
            StatusCode::Error => {
                tags.insert("otel.status_code".into(), "ERROR".into());
                tags.insert("error".into(), Value::String(st.message.clone()));
            }
            StatusCode::Unset => {}
        }
    }
    for (n, key) in [
        (
            span.dropped_attributes_count,
            "otel.dropped_attributes_count",
        ),
        (span.dropped_events_count, "otel.dropped_events_count"),
        (span.dropped_links_count, "otel.dropped_links_count"),
    ] {
        if n > 0 {
            tags.insert(key.into(), Value::String(n.to_string()));
        }
    }
    for (i, l) in span.links.iter().enumerate() {
        tags.insert(
            format!("otel.link.{i}"),
            Value::String(format!(
                "{}-{}",
                hex::encode(&l.trace_id),
                hex::encode(&l.span_id)
            )),
        );
    }
    let annotations = span
        .events
        .iter()
        .map(|e| Annotation {
            timestamp: e.time_unix_nano / 1000,
            value: if e.attributes.is_empty() {
                e.name.clone()
            } else {
                let attrs: Map<String, Value> = e
                    .attributes
                    .iter()
                    .map(|kv| {
                        (
                            kv.key.clone(),
                            kv.value.as_ref().map_or(Value::Null, value::to_json),
                        )
                    })
                    .collect();
                Value::Object(
                    [(e.name.clone(), Value::Object(attrs))]
                        .into_iter()
                        .collect(),
                )
                .to_string()
            },
        })
        .collect();
    let remote = matches!(kind, Some("CLIENT") | Some("PRODUCER"))
        .then(|| remote_endpoint(&span.attributes))
        .flatten();
    ZipkinSpan {
        trace_id: trace_id_hex(&span.trace_id),
        id: hex::encode(&span.span_id),
        parent_id: (!span.parent_span_id.is_empty()).then(|| hex::encode(&span.parent_span_id)),
        name: span.name.clone(),
        kind: kind.map(str::to_owned),
        timestamp: span.start_time_unix_nano / 1000,
        duration: span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1000,
        local_endpoint: Endpoint {
            service_name: Some(service.to_owned()),
            ..Default::default()
        },
        remote_endpoint: remote,
        annotations,
        tags,
    }
}

fn endpoint_proto(e: &Endpoint) -> crate::proto::zipkin::Endpoint {
    crate::proto::zipkin::Endpoint {
        service_name: e.service_name.clone().unwrap_or_default(),
        ipv4: e
            .ipv4
            .as_deref()
            .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
            .map(|a| a.octets().to_vec())
            .unwrap_or_default(),
        ipv6: e
            .ipv6
            .as_deref()
            .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
            .map(|a| a.octets().to_vec())
            .unwrap_or_default(),
        port: e.port.map_or(0, i32::from),
    }
}

/// The same spans in the zipkin2 protobuf model (ids as bytes, kind as an enum).
pub fn to_proto(spans: &[ZipkinSpan]) -> crate::proto::zipkin::ListOfSpans {
    use crate::proto::zipkin as zp;
    let kind = |k: Option<&str>| match k {
        Some("CLIENT") => zp::span::Kind::Client,
        Some("SERVER") => zp::span::Kind::Server,
        Some("PRODUCER") => zp::span::Kind::Producer,
        Some("CONSUMER") => zp::span::Kind::Consumer,
        _ => zp::span::Kind::SpanKindUnspecified,
    } as i32;
    zp::ListOfSpans {
        spans: spans
            .iter()
            .map(|s| zp::Span {
                trace_id: hex::decode(&s.trace_id).unwrap_or_default(),
                parent_id: s
                    .parent_id
                    .as_deref()
                    .and_then(|p| hex::decode(p).ok())
                    .unwrap_or_default(),
                id: hex::decode(&s.id).unwrap_or_default(),
                kind: kind(s.kind.as_deref()),
                name: s.name.clone(),
                timestamp: s.timestamp,
                duration: s.duration,
                local_endpoint: Some(endpoint_proto(&s.local_endpoint)),
                remote_endpoint: s.remote_endpoint.as_ref().map(endpoint_proto),
                annotations: s
                    .annotations
                    .iter()
                    .map(|a| zp::Annotation {
                        timestamp: a.timestamp,
                        value: a.value.clone(),
                    })
                    .collect(),
                tags: s
                    .tags
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect(),
                debug: false,
                shared: false,
            })
            .collect(),
    }
}

pub struct EncodedSpans {
    body: Bytes,
}

impl ZipkinSender {
    /// Each span encoded on its own (a JSON value, or a zipkin2 protobuf `Span`).
    fn encode_spans(&self, batch: Batch) -> Result<Vec<Vec<u8>>, SendError> {
        use prost::Message;
        let batch = batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?;
        let spans = translate(&batch, &self.default_service);
        match self.format {
            Format::Json => spans
                .iter()
                .map(|s| {
                    serde_json::to_vec(s)
                        .map_err(|e| SendError::Permanent(format!("JSON encoding failed: {e}")))
                })
                .collect(),
            Format::Proto => Ok(to_proto(&spans)
                .spans
                .iter()
                .map(Message::encode_to_vec)
                .collect()),
        }
    }

    /// Request bodies of at most `max` bytes from encoded spans: a JSON list, or a
    /// `ListOfSpans` (field 1 repeated); each compressed, with its span count.
    fn bodies(
        &self,
        spans: Vec<Vec<u8>>,
        max: usize,
    ) -> Result<Vec<Part<EncodedSpans>>, SendError> {
        let framing = |len: usize| match self.format {
            Format::Json => len + 1,
            Format::Proto => 1 + prost::encoding::encoded_len_varint(len as u64) + len,
        };
        let mut out = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        let mut n = 0;
        let finish = |cur: &mut Vec<u8>, n: &mut usize, out: &mut Vec<Part<EncodedSpans>>| {
            let mut body = std::mem::take(cur);
            if self.format == Format::Json {
                if body.is_empty() {
                    body.push(b'[');
                }
                body.push(b']');
            }
            let body = self
                .compression
                .encode(Bytes::from(body))
                .map_err(|e| SendError::Permanent(format!("compression failed: {e}")))?;
            out.push(Part {
                shard: 0,
                items: std::mem::take(n),
                req: EncodedSpans { body },
            });
            Ok::<_, SendError>(())
        };
        for span in spans {
            if n > 0 && cur.len() + framing(span.len()) + 1 > max {
                finish(&mut cur, &mut n, &mut out)?;
            }
            match self.format {
                Format::Json => {
                    cur.push(if n == 0 { b'[' } else { b',' });
                    cur.extend_from_slice(&span);
                }
                Format::Proto => {
                    cur.push(0x0a);
                    prost::encoding::encode_varint(span.len() as u64, &mut cur);
                    cur.extend_from_slice(&span);
                }
            }
            n += 1;
        }
        if n > 0 || out.is_empty() {
            finish(&mut cur, &mut n, &mut out)?;
        }
        Ok(out)
    }
}

impl Sender for ZipkinSender {
    type Request = EncodedSpans;

    fn encode(&self, batch: Batch) -> Result<EncodedSpans, SendError> {
        let spans = self.encode_spans(batch)?;
        let mut parts = self.bodies(spans, usize::MAX)?;
        Ok(parts.remove(0).req)
    }

    /// At most `max_request_size` per POST.
    fn encode_parts(
        &self,
        batch: Batch,
        _shards: usize,
    ) -> Result<Vec<Part<EncodedSpans>>, SendError> {
        let spans = self.encode_spans(batch)?;
        self.bodies(spans, self.max_request)
    }

    /// A body answered 413, in halves (its spans as they were encoded).
    fn split(&self, req: &EncodedSpans) -> Option<Vec<Part<EncodedSpans>>> {
        let plain = match self.compression.header_value() {
            None => req.body.to_vec(),
            Some(enc) => crate::net::compression::decode(enc, &req.body, usize::MAX).ok()?,
        };
        let spans: Vec<Vec<u8>> = match self.format {
            Format::Json => serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&plain)
                .ok()?
                .into_iter()
                .map(|v| v.get().as_bytes().to_vec())
                .collect(),
            Format::Proto => {
                use prost::Message;
                crate::proto::zipkin::ListOfSpans::decode(&plain[..])
                    .ok()?
                    .spans
                    .iter()
                    .map(Message::encode_to_vec)
                    .collect()
            }
        };
        let parts = self.bodies(spans, plain.len() / 2 + 1).ok()?;
        (parts.len() > 1).then_some(parts)
    }

    fn send<'a>(&'a self, req: &'a EncodedSpans) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut rb = self
                .client
                .post(&self.url)
                .header(
                    http::header::CONTENT_TYPE,
                    if self.format == Format::Proto {
                        "application/x-protobuf"
                    } else {
                        "application/json"
                    },
                )
                .body(req.body.clone());
            if let Some(enc) = self.compression.header_value() {
                rb = rb.header(http::header::CONTENT_ENCODING, enc);
            }
            rb = super::helper::client::authorize(rb, self.auth.as_ref()).await?;
            let resp = rb.send().await.map_err(|e| {
                SendError::retryable(format!(
                    "POST {}: {}",
                    self.url,
                    crate::text::error_chain(&e)
                ))
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            let detail = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
            let msg = format!("POST {}: HTTP {status}: {detail}", self.url);
            if status == http::StatusCode::PAYLOAD_TOO_LARGE {
                return Err(SendError::TooLarge(msg));
            }
            Err(classify_http(status, &headers, msg))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use std::time::Duration;

    #[test]
    fn batches_go_in_posts_of_at_most_max_request_size_and_split_again_on_413() {
        for (format, compression) in [
            (Format::Json, Compression::None),
            (Format::Proto, Compression::Gzip),
        ] {
            let sender = ZipkinSender {
                client: reqwest::Client::new(),
                url: "http://z/api/v2/spans".into(),
                default_service: "svc".into(),
                compression,
                format,
                max_request: 3_000,
                auth: None,
            };
            let parts = sender
                .encode_parts(crate::signal::testdata::spans("a", 2, 150), 1)
                .unwrap();
            assert!(parts.len() > 3, "{format:?}");
            let count = |body: &Bytes| -> usize {
                let plain = match compression.header_value() {
                    None => body.to_vec(),
                    Some(e) => crate::net::compression::decode(e, body, usize::MAX).unwrap(),
                };
                assert!(plain.len() <= 3_000);
                match format {
                    Format::Json => serde_json::from_slice::<Vec<ZipkinSpan>>(&plain)
                        .unwrap()
                        .len(),
                    Format::Proto => {
                        use prost::Message;
                        crate::proto::zipkin::ListOfSpans::decode(&plain[..])
                            .unwrap()
                            .spans
                            .len()
                    }
                }
            };
            let mut total = 0;
            for p in &parts {
                assert_eq!(count(&p.req.body), p.items);
                total += p.items;
            }
            assert_eq!(total, 300);
            let halves = sender.split(&parts[0].req).unwrap();
            assert!(halves.len() >= 2);
            assert_eq!(
                halves.iter().map(|p| count(&p.req.body)).sum::<usize>(),
                parts[0].items
            );
        }
    }

    #[test]
    fn config() {
        assert!(parse(&yaml("endpoint: http://zipkin:9411/api/v2/spans\n").unwrap()).is_ok());
        assert_eq!(
            parse(&yaml("endpoint: zipkin:9411\n").unwrap())
                .err()
                .unwrap()
                .path_string(),
            "endpoint"
        );
        assert!(
            parse(
                &yaml(
                    "endpoint: http://z:9411/api/v2/spans
format: proto
"
                )
                .unwrap()
            )
            .is_ok()
        );
        assert_eq!(
            parse(&yaml("endpoint: http://z:1/x\nformat: thrift\n").unwrap())
                .err()
                .unwrap()
                .path_string(),
            "format"
        );
    }

    #[test]
    fn http_classification() {
        let h = http::HeaderMap::new();
        assert!(matches!(
            classify_http(reqwest::StatusCode::BAD_REQUEST, &h, "x".into()),
            SendError::Permanent(_)
        ));
        assert!(matches!(
            classify_http(reqwest::StatusCode::INTERNAL_SERVER_ERROR, &h, "x".into()),
            SendError::Retryable { .. }
        ));
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("3"),
        );
        assert_eq!(
            classify_http(reqwest::StatusCode::TOO_MANY_REQUESTS, &h, "x".into()),
            SendError::Retryable {
                msg: "x".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn sixty_four_bit_trace_ids() {
        let mut id = vec![0u8; 8];
        id.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(trace_id_hex(&id), "0102030405060708");
        assert_eq!(
            trace_id_hex(&[0xab; 16]),
            "abababababababababababababababab"
        );
    }
}
