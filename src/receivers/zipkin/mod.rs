//! `zipkin` receiver: Zipkin's span API over HTTP (default `0.0.0.0:9411`), for apps still
//! instrumented with Zipkin clients (and the chart's default receiver set). A POST to a path
//! containing `api/v1/spans` is Zipkin v1 (`application/x-thrift`: Thrift, else JSON); any other
//! path is v2 (`application/x-protobuf`: protobuf, else JSON), as the Collector's receiver reads
//! it. Bodies may be gzip, deflate, zstd or snappy compressed. Accepted requests are answered
//! `202 Accepted`; a body that cannot be read `400` with the reason; a pipeline that is full
//! `503` with `Retry-After` (Zipkin clients retry or drop; either way ferrotel counted it as
//! refused); memory not available `429`.
//!
//! The mapping to OTLP is in [`translate`], the wire formats in [`model`].

mod model;
mod translate;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::net::compression::{self, DecodeError};
use crate::net::tls::ServerTlsConfig;
use crate::receivers::Output;
use crate::receivers::http_answer::{busy, text};
use crate::signal::{Batch, Signal};

pub use model::{FormatError, ZSpan};
pub use translate::to_otlp;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address. Default `0.0.0.0:9411`.
    pub endpoint: String,
    /// Tags that spell an int, a double or a bool become attributes of that type (Zipkin tags
    /// are all strings). Default false.
    pub parse_string_tags: bool,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    /// `authenticator`: an auth extension every request must pass (401 if not).
    #[serde(deserialize_with = "crate::config::present")]
    pub auth: Option<crate::net::auth::AuthConfig>,
    /// Pass the request's headers to processors (`from_context: metadata.<key>`). Default false.
    pub include_metadata: bool,
    /// Largest accepted body in bytes, before and after decompression. Default 20 MiB.
    pub max_request_body_size: usize,
    /// Time a client has to send a request's headers (HTTP/1). Default 1m.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub read_header_timeout: Option<std::time::Duration>,
    /// Close a connection without a request for this long. Default 1m.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub idle_timeout: Option<std::time::Duration>,
    /// Open connections at most (the longest idle is shed beyond). Default 4096.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:9411".into(),
            parse_string_tags: false,
            tls: None,
            auth: None,
            include_metadata: false,
            max_request_body_size: 20 << 20,
            read_header_timeout: None,
            idle_timeout: None,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// `zipkin`'s identity.
pub const FACTORY: Factory =
    Factory::receiver("zipkin", crate::signal::TRACES, Stability::Alpha, parse);

fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    crate::net::server::validate_endpoint(&cfg.endpoint)
        .map_err(|m| key_err(node, &["endpoint"], m))?;
    if let Some(t) = &cfg.tls {
        t.validate().map_err(|m| key_err(node, &["tls"], m))?;
    }
    if !(1..=(4 << 30)).contains(&cfg.max_request_body_size) {
        return Err(key_err(
            node,
            &["max_request_body_size"],
            "must be between 1 and 4294967296 (4 GiB)",
        ));
    }
    if !(1..=1_000_000).contains(&cfg.max_connections) {
        return Err(key_err(
            node,
            &["max_connections"],
            "must be between 1 and 1000000",
        ));
    }
    Ok(Box::new(cfg))
}

/// What a request handler needs.
struct Handler {
    out: Output,
    limit: usize,
    parse_string_tags: bool,
    include_metadata: bool,
}

/// The body formats, by path and `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    V1Json,
    V1Thrift,
    V2Json,
    V2Proto,
}

fn format_of(path: &str, headers: &HeaderMap) -> Format {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match (path.contains("api/v1/spans"), ct.as_str()) {
        (true, "application/x-thrift") => Format::V1Thrift,
        (true, _) => Format::V1Json,
        (false, "application/x-protobuf" | "application/protobuf") => Format::V2Proto,
        (false, _) => Format::V2Json,
    }
}

/// Reads a decompressed body into spans.
pub fn read(format: Format, body: &[u8]) -> Result<Vec<ZSpan>, FormatError> {
    match format {
        Format::V1Json => model::v1_json(body),
        Format::V1Thrift => model::v1_thrift(body),
        Format::V2Json => model::v2_json(body),
        Format::V2Proto => model::v2_proto(body),
    }
}

/// Decoded spans take about four times their bytes on the wire (JSON a little less, Thrift
/// and protobuf a little more): reserved before decoding.
const DECODED_PER_BYTE: u64 = 4;

async fn handle(
    State(h): State<Arc<Handler>>,
    method: Method,
    uri: Uri,
    peer: Option<axum::Extension<crate::net::server::PeerAddr>>,
    auth: Option<axum::Extension<crate::net::auth::AuthInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST spans to /api/v2/spans (or /api/v1/spans)",
        );
    }
    let client = crate::client::ClientInfo::from_headers(
        peer.map(|p| p.0.0.ip()),
        &headers,
        h.include_metadata,
    )
    .with_auth(auth.as_ref().map(|a| &a.0));
    let format = format_of(uri.path(), &headers);
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("invalid").to_owned())
        .unwrap_or_default();
    let (raw, inflating) =
        match compression::decode_reserved(&encoding, &body, h.limit, &h.out.budget) {
            Ok(x) => x,
            Err(e @ DecodeError::TooLarge(_)) => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
            }
            Err(DecodeError::Busy(e)) => return busy(e.to_string()),
            Err(e @ DecodeError::Unsupported(_)) => {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
            }
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
    drop(body);
    let reservation = match h.out.budget.reserve(DECODED_PER_BYTE * raw.len() as u64) {
        Ok(r) => r,
        Err(e @ crate::admission::Refusal::TooLarge { .. }) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("zipkin request: {e}"),
            );
        }
        Err(e) => return busy(format!("zipkin request: {e}")),
    };
    drop(inflating);
    let parse_tags = h.parse_string_tags;
    let decoded = if raw.len() > 256 << 10 {
        // Milliseconds of CPU: on the blocking pool, off the workers serving other requests.
        tokio::task::spawn_blocking(move || read(format, &raw).map(|s| to_otlp(s, parse_tags)))
            .await
            .unwrap_or_else(|e| Err(FormatError(format!("decoding failed: {e}"))))
    } else {
        read(format, &raw).map(|s| to_otlp(s, parse_tags))
    };
    let spans = match decoded {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let pushed = h.out.push(Batch::Traces(spans), client).await;
    drop(reservation);
    crate::receivers::http_answer::pushed(pushed)
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let Some(consumer) = consumers[Signal::Traces.index()].clone() else {
                return Err(BuildError::new(
                    &ctx.id,
                    "the zipkin receiver has only traces; list it in a traces pipeline",
                ));
            };
            let (listener, tls) =
                crate::receivers::listen(&ctx, &self.endpoint, self.tls.as_ref(), "http").await?;
            let handler = Arc::new(Handler {
                out: Output::new(&ctx, "http", consumer),
                limit: self.max_request_body_size,
                parse_string_tags: self.parse_string_tags,
                include_metadata: self.include_metadata,
            });
            let router = axum::Router::new()
                .fallback(handle)
                .with_state(handler)
                .layer(DefaultBodyLimit::max(self.max_request_body_size));
            let router = crate::receivers::protect(&ctx, "http", self.auth.as_ref(), router)?;
            tracing::info!(receiver = %ctx.id, endpoint = %self.endpoint, tls = tls.is_some(), "Zipkin listening");
            let stop = ctx.shutdown.child_token();
            let task = crate::net::server::serve_with(
                listener,
                tls,
                router,
                stop.clone(),
                crate::net::server::Limits::http(
                    self.read_header_timeout,
                    self.idle_timeout,
                    self.max_connections,
                ),
                ctx.telemetry.connection_metrics(&self.endpoint),
            );
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn config_defaults_and_errors_name_the_key() {
        let c: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert_eq!(c.endpoint, "0.0.0.0:9411");
        assert!(!c.parse_string_tags);
        let e = parse(&yaml("endpoint: nowhere\n").unwrap()).err().unwrap();
        assert_eq!(e.path_string(), "endpoint");
        let e = parse(&yaml("parse_string_tag: true\n").unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("parse_string_tag"), "{e}");
    }

    #[test]
    fn path_and_content_type_choose_the_format() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_str(ct).unwrap(),
            );
            m
        };
        assert_eq!(
            format_of("/api/v1/spans", &h("application/x-thrift")),
            Format::V1Thrift
        );
        assert_eq!(
            format_of("/api/v1/spans", &h("application/json")),
            Format::V1Json
        );
        assert_eq!(
            format_of("/api/v2/spans", &h("application/x-protobuf")),
            Format::V2Proto
        );
        assert_eq!(
            format_of("/api/v2/spans", &h("application/json; charset=utf-8")),
            Format::V2Json
        );
        assert_eq!(format_of("/", &HeaderMap::new()), Format::V2Json);
    }
}
