//! `jaeger` exporter: spans to Jaeger's `jaeger.api_v2.CollectorService/PostSpans` over gRPC
//! (port 14250), for Jaeger deployments older than 1.35. Jaeger 1.35+ and Jaeger v2 take OTLP:
//! use `otlp_grpc` to their port 4317 instead.
//!
//! Translation as the OpenTelemetry specification's Jaeger mapping says: one `Batch` per resource,
//! its `Process` named by `service.name` (else `unknown_service`) with the other resource
//! attributes as typed tags; the parent as a `CHILD_OF` reference and links as `FOLLOWS_FROM`;
//! attributes as typed tags (arrays and maps as JSON strings); `span.kind` (lowercase);
//! `otel.status_code`, `otel.status_description` and `error=true` for errors; events as logs
//! with an `event` field; the scope as `otel.scope.name`/`otel.scope.version`; dropped counts as
//! `otel.dropped_*_count`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, span::SpanKind, status::StatusCode};
use serde::Deserialize;
use tonic::transport::Channel;

use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, SendError, Sender, Validated};
use super::{key_err, otlp_grpc};
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node};
use crate::proto::jaeger as j;
use crate::signal::Batch;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` of the Jaeger collector's gRPC port, e.g. `jaeger-collector:14250`.
    pub endpoint: String,
    /// The largest `PostSpans` message sent, in bytes: a resource's spans past it go in several
    /// batches. Default 4 MiB, the Jaeger collector's `grpc-server.max-message-size`; 0 = no
    /// bound. Accepts units (`"8MiB"`).
    #[serde(
        default = "default_max_request",
        deserialize_with = "crate::config::units::bytes"
    )]
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
    otlp_grpc::DEFAULT_MAX_REQUEST
}

/// `jaeger`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::exporter("jaeger", crate::signal::TRACES, Stability::Alpha, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = client::parse(node)?;
    crate::net::client::parse_endpoint(&cfg.endpoint, cfg.client.tls.insecure)
        .map_err(|m| key_err(node, &["endpoint"], m))?;
    let settings = cfg.client.validate(node)?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn storage(&self) -> Option<&crate::config::ComponentId> {
        self.settings.storage.as_ref()
    }

    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let sender = JaegerSender {
            channel: cfg
                .client
                .grpc_channel(&cfg.endpoint)
                .map_err(|e| BuildError::new(&ctx.id, e))?,
            headers: cfg
                .client
                .grpc_metadata()
                .map_err(|e| BuildError::new(&ctx.id, e))?,
            timeout: cfg.client.timeout,
            auth: cfg
                .client
                .authenticator(&ctx)
                .map_err(|e| BuildError::new(&ctx.id, e))?,
            max_request: usize::try_from(cfg.max_request_size)
                .ok()
                .filter(|m| *m > 0)
                .unwrap_or(usize::MAX),
        };
        Helper::build(&ctx, settings, sender)
    }
}

fn tag(key: &str, v: &Option<AnyValue>) -> j::KeyValue {
    let mut kv = j::KeyValue {
        key: key.to_owned(),
        ..Default::default()
    };
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => {
            kv.v_type = j::ValueType::Bool as i32;
            kv.v_bool = *b;
        }
        Some(any_value::Value::IntValue(i)) => {
            kv.v_type = j::ValueType::Int64 as i32;
            kv.v_int64 = *i;
        }
        Some(any_value::Value::DoubleValue(d)) => {
            kv.v_type = j::ValueType::Float64 as i32;
            kv.v_float64 = *d;
        }
        Some(any_value::Value::BytesValue(b)) => {
            kv.v_type = j::ValueType::Binary as i32;
            kv.v_binary = b.clone();
        }
        Some(any_value::Value::StringValue(s)) => kv.v_str = s.clone(),
        // Arrays and maps: their JSON text, as the specification's non-OTLP mapping says.
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) => {
            kv.v_str = crate::signal::value::option_text(v).into_owned();
        }
        Some(any_value::Value::StringValueStrindex(i)) => {
            kv.v_type = j::ValueType::Int64 as i32;
            kv.v_int64 = i64::from(*i);
        }
        None => {}
    }
    kv
}

fn str_tag(key: &str, v: impl Into<String>) -> j::KeyValue {
    j::KeyValue {
        key: key.into(),
        v_str: v.into(),
        ..Default::default()
    }
}

fn timestamp(nanos: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (nanos / 1_000_000_000) as i64,
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

/// One Jaeger batch per resource.
pub fn translate(resources: &[ResourceSpans]) -> Vec<j::Batch> {
    resources
        .iter()
        .map(|rs| {
            let res_attrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let process = j::Process {
                service_name: crate::signal::value::find_str(res_attrs, "service.name")
                    .unwrap_or("unknown_service")
                    .to_owned(),
                tags: res_attrs
                    .iter()
                    .filter(|kv| kv.key != "service.name")
                    .map(|kv| tag(&kv.key, &kv.value))
                    .collect(),
            };
            let mut spans = Vec::new();
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    let mut tags: Vec<j::KeyValue> = sp
                        .attributes
                        .iter()
                        .map(|kv| tag(&kv.key, &kv.value))
                        .collect();
                    let kind = match SpanKind::try_from(sp.kind).unwrap_or(SpanKind::Unspecified) {
                        SpanKind::Server => Some("server"),
                        SpanKind::Client => Some("client"),
                        SpanKind::Producer => Some("producer"),
                        SpanKind::Consumer => Some("consumer"),
                        SpanKind::Internal => Some("internal"),
                        SpanKind::Unspecified => None,
                    };
                    if let Some(k) = kind {
                        tags.push(str_tag("span.kind", k));
                    }
                    if let Some(st) = &sp.status {
                        match StatusCode::try_from(st.code).unwrap_or(StatusCode::Unset) {
                            StatusCode::Ok => tags.push(str_tag("otel.status_code", "OK")),
                            StatusCode::Error => {
                                tags.push(str_tag("otel.status_code", "ERROR"));
                                if !st.message.is_empty() {
                                    tags.push(str_tag(
                                        "otel.status_description",
                                        st.message.clone(),
                                    ));
                                }
                                tags.push(j::KeyValue {
                                    key: "error".into(),
                                    v_type: j::ValueType::Bool as i32,
                                    v_bool: true,
                                    ..Default::default()
                                });
                            }
                            StatusCode::Unset => {}
                        }
                    }
                    if let Some(scope) = &ss.scope {
                        if !scope.name.is_empty() {
                            tags.push(str_tag("otel.scope.name", scope.name.clone()));
                        }
                        if !scope.version.is_empty() {
                            tags.push(str_tag("otel.scope.version", scope.version.clone()));
                        }
                    }
                    for (n, key) in [
                        (sp.dropped_attributes_count, "otel.dropped_attributes_count"),
                        (sp.dropped_events_count, "otel.dropped_events_count"),
                        (sp.dropped_links_count, "otel.dropped_links_count"),
                    ] {
                        if n > 0 {
                            tags.push(j::KeyValue {
                                key: key.into(),
                                v_type: j::ValueType::Int64 as i32,
                                v_int64: i64::from(n),
                                ..Default::default()
                            });
                        }
                    }
                    let mut references = Vec::new();
                    if !sp.parent_span_id.is_empty() {
                        references.push(j::SpanRef {
                            trace_id: sp.trace_id.clone(),
                            span_id: sp.parent_span_id.clone(),
                            ref_type: j::SpanRefType::ChildOf as i32,
                        });
                    }
                    references.extend(sp.links.iter().map(|l| j::SpanRef {
                        trace_id: l.trace_id.clone(),
                        span_id: l.span_id.clone(),
                        ref_type: j::SpanRefType::FollowsFrom as i32,
                    }));
                    let logs = sp
                        .events
                        .iter()
                        .map(|e| {
                            let mut fields = vec![str_tag("event", e.name.clone())];
                            fields.extend(e.attributes.iter().map(|kv| tag(&kv.key, &kv.value)));
                            j::Log {
                                timestamp: Some(timestamp(e.time_unix_nano)),
                                fields,
                            }
                        })
                        .collect();
                    let dur = sp
                        .end_time_unix_nano
                        .saturating_sub(sp.start_time_unix_nano);
                    spans.push(j::Span {
                        trace_id: sp.trace_id.clone(),
                        span_id: sp.span_id.clone(),
                        operation_name: sp.name.clone(),
                        references,
                        // Sampled: whatever reaches an exporter was kept.
                        flags: 1,
                        start_time: Some(timestamp(sp.start_time_unix_nano)),
                        duration: Some(prost_types::Duration {
                            seconds: (dur / 1_000_000_000) as i64,
                            nanos: (dur % 1_000_000_000) as i32,
                        }),
                        tags,
                        logs,
                        ..Default::default()
                    });
                }
            }
            j::Batch {
                spans,
                process: Some(process),
            }
        })
        .collect()
}

pub struct JaegerSender {
    channel: Channel,
    headers: http::HeaderMap,
    timeout: Duration,
    max_request: usize,
    auth: Option<Arc<dyn crate::net::auth::ClientAuthenticator>>,
}

/// Splits batches whose `PostSpansRequest` would pass `max` bytes into several with the same
/// process, at span boundaries (a span larger than `max` travels alone).
fn bound_batches(batches: Vec<j::Batch>, max: usize) -> Vec<j::Batch> {
    use prost::Message;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        // The request wraps the batch in one field: a few bytes of key and length.
        if b.encoded_len() + 8 <= max {
            out.push(b);
            continue;
        }
        let process = b.process;
        let overhead = process.as_ref().map_or(0, |p| p.encoded_len() + 8) + 8;
        let mut cur = Vec::new();
        let mut size = overhead;
        for span in b.spans {
            let n = span.encoded_len() + 4;
            if !cur.is_empty() && size + n > max {
                out.push(j::Batch {
                    spans: std::mem::take(&mut cur),
                    process: process.clone(),
                });
                size = overhead;
            }
            size += n;
            cur.push(span);
        }
        if !cur.is_empty() {
            out.push(j::Batch {
                spans: cur,
                process,
            });
        }
    }
    out
}

/// The batches of one export, and how many were accepted already: a retry resumes there, so a
/// batch Jaeger took is not sent twice.
pub struct Batches {
    batches: Vec<j::Batch>,
    done: AtomicUsize,
}

impl Sender for JaegerSender {
    type Request = Batches;

    fn encode(&self, batch: Batch) -> Result<Batches, SendError> {
        let Batch::Traces(resources) = batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?
        else {
            return Err(SendError::Permanent(
                "the jaeger exporter takes traces only".into(),
            ));
        };
        Ok(Batches {
            batches: bound_batches(translate(&resources), self.max_request),
            done: AtomicUsize::new(0),
        })
    }

    fn send<'a>(&'a self, req: &'a Batches) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut client =
                j::collector_service_client::CollectorServiceClient::new(self.channel.clone());
            while let Some(b) = req.batches.get(req.done.load(Ordering::Acquire)) {
                let mut request = tonic::Request::new(j::PostSpansRequest {
                    batch: Some(b.clone()),
                });
                let md = request.metadata_mut().as_mut();
                md.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                crate::net::auth::apply(self.auth.as_ref(), md)
                    .await
                    .map_err(|e| SendError::retryable(format!("auth: {e}")))?;
                if !self.timeout.is_zero() {
                    request.set_timeout(self.timeout);
                }
                client
                    .post_spans(request)
                    .await
                    .map_err(|s| otlp_grpc::classify(&s))?;
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
    fn config() {
        assert!(parse(&yaml("endpoint: jaeger:14250\ntls: {insecure: true}\n").unwrap()).is_ok());
        assert_eq!(
            parse(&yaml("endpoint: jaeger\n").unwrap())
                .err()
                .unwrap()
                .path_string(),
            "endpoint"
        );
    }

    #[test]
    fn large_batches_are_split_under_max_request_size() {
        use prost::Message;
        let mut b = crate::signal::testdata::spans("svc", 1, 300);
        if let Batch::Traces(rs) = &mut b {
            for sp in &mut rs[0].scope_spans[0].spans {
                sp.name = "x".repeat(200);
            }
        }
        let Batch::Traces(rs) = b else { unreachable!() };
        let batches = bound_batches(translate(&rs), 10_000);
        assert!(batches.len() > 5);
        let mut spans = 0;
        for b in &batches {
            let req = j::PostSpansRequest {
                batch: Some(b.clone()),
            };
            assert!(req.encoded_len() <= 10_000, "{}", req.encoded_len());
            assert_eq!(b.process, batches[0].process);
            spans += b.spans.len();
        }
        assert_eq!(spans, 300);
    }

    #[test]
    fn typed_tags() {
        let v = |x: any_value::Value| Some(AnyValue { value: Some(x) });
        assert_eq!(
            tag("b", &v(any_value::Value::BoolValue(true))).v_type,
            j::ValueType::Bool as i32
        );
        assert_eq!(tag("i", &v(any_value::Value::IntValue(7))).v_int64, 7);
        assert_eq!(
            tag("d", &v(any_value::Value::DoubleValue(0.5))).v_float64,
            0.5
        );
        let arr = tag(
            "a",
            &v(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    }],
                },
            )),
        );
        assert_eq!(
            (arr.v_type, arr.v_str.as_str()),
            (j::ValueType::String as i32, "[1]")
        );
        assert_eq!(
            timestamp(1_500_000_000_250),
            prost_types::Timestamp {
                seconds: 1500,
                nanos: 250
            }
        );
    }
}
