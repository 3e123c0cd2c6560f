//! `otlp_grpc` exporter (alias `otlp`): OTLP over gRPC, e.g. agent → gateway, or to Jaeger ≥1.35.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use prost::Message;
use serde::Deserialize;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::helper::{Helper, QueueConfig, RetryConfig, SendError, Sender, Settings, Validated};
use super::{ExportResponse, key_err, log_partial_success, validate_headers};
use crate::component::{BoxFuture, BuildError, Context, Exporter, ExporterConfig};
use crate::compression::Compression;
use crate::config::{DeError, Node, from_node, units};
use crate::signal::{Batch, Signal};
use crate::tls::ClientTlsConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` (TLS unless `tls.insecure`), or `http://host:port` / `https://host:port`.
    pub endpoint: String,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// Sent as gRPC metadata with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Per request. Default 5s.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Where to connect and whether to use TLS, from an endpoint as the Collector takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub fn parse_endpoint(endpoint: &str, insecure: bool) -> Result<Target, String> {
    let (rest, tls) = if let Some(r) = endpoint.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        (r, false)
    } else if endpoint.contains("://") {
        return Err(format!(
            "endpoint {endpoint:?}: only http:// and https:// URLs, or host:port"
        ));
    } else {
        (endpoint, !insecure)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} needs a port, e.g. gateway:4317"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("endpoint {endpoint:?} has an invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        tls,
    })
}

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    parse_endpoint(&cfg.endpoint, cfg.tls.insecure).map_err(|m| key_err(node, &["endpoint"], m))?;
    cfg.tls.validate().map_err(|m| key_err(node, &["tls"], m))?;
    validate_headers(node, &cfg.headers)?;
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
        let sender =
            GrpcSender::new(&cfg, &ctx.id.to_string()).map_err(|e| BuildError::new(&ctx.id, e))?;
        Ok(Helper::build(&ctx, settings, sender))
    }
}

pub struct GrpcSender {
    channel: Channel,
    metadata: tonic::metadata::MetadataMap,
    compression: Option<CompressionEncoding>,
    id: String,
}

impl GrpcSender {
    pub fn new(cfg: &Config, id: &str) -> Result<Self, String> {
        let target = parse_endpoint(&cfg.endpoint, cfg.tls.insecure)?;
        // The URI only names the peer; TLS (when on) is done by our connector with our rustls
        // config, so the scheme stays http.
        let uri = if target.host.contains(':') {
            format!("http://[{}]:{}", target.host, target.port)
        } else {
            format!("http://{}:{}", target.host, target.port)
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let channel = if target.tls {
            let tls = Arc::new(cfg.tls.build(&[b"h2"]).map_err(|e| e.to_string())?);
            let name = cfg
                .tls
                .server_name_override
                .clone()
                .unwrap_or_else(|| target.host.clone());
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
            let (host, port) = (target.host.clone(), target.port);
            let connector = tower::service_fn(move |_uri: http::Uri| {
                let (tls, server_name, host) = (tls.clone(), server_name.clone(), host.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    tcp.set_nodelay(true)?;
                    let stream = tokio_rustls::TlsConnector::from(tls)
                        .connect(server_name, tcp)
                        .await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            });
            endpoint.connect_with_connector_lazy(connector)
        } else {
            endpoint.connect_lazy()
        };
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (k, v) in &cfg.headers {
            let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|e| e.to_string())?;
            let val = v
                .parse()
                .map_err(|_| format!("invalid header value for {k:?}"))?;
            metadata.insert(key, val);
        }
        let compression = match cfg.compression {
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Zstd => Some(CompressionEncoding::Zstd),
            Compression::None => None,
        };
        Ok(GrpcSender {
            channel,
            metadata,
            compression,
            id: id.to_owned(),
        })
    }
}

/// An encoded `Export*ServiceRequest`.
pub struct EncodedRequest {
    signal: Signal,
    body: Bytes,
}

impl Sender for GrpcSender {
    type Request = EncodedRequest;

    fn encode(&self, batch: Batch) -> Result<EncodedRequest, SendError> {
        Ok(EncodedRequest {
            signal: batch.signal(),
            body: batch.into_request_bytes(),
        })
    }

    fn send<'a>(&'a self, req: &'a EncodedRequest) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone())
                .accept_compressed(CompressionEncoding::Gzip);
            if let Some(c) = self.compression {
                grpc = grpc.send_compressed(c);
            }
            grpc.ready()
                .await
                .map_err(|e| SendError::retryable(format!("connecting: {e}")))?;
            let mut request = tonic::Request::new(req.body.clone());
            *request.metadata_mut() = self.metadata.clone();
            let path = PathAndQuery::from_static(match req.signal {
                Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                Signal::Metrics => {
                    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
                }
                Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            });
            match grpc.unary(request, path, RawCodec).await {
                Ok(resp) => {
                    log_partial_success(&self.id, resp.get_ref());
                    Ok(())
                }
                Err(status) => Err(classify(&status)),
            }
        })
    }
}

/// OTLP's retry rules for gRPC status codes.
pub fn classify(status: &Status) -> SendError {
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let msg = format!("gRPC status {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => SendError::Retryable { msg, retry_after },
        // The server says "slow down" only when it tells us how long to wait.
        Code::ResourceExhausted if retry_after.is_some() => {
            SendError::Retryable { msg, retry_after }
        }
        _ => SendError::Permanent(msg),
    }
}

/// Sends already-encoded request bytes (encode once, send on every retry); decodes the
/// response. Public so the load generator can send pre-encoded requests too.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = super::ExportResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ExportResponse>, Status> {
        let n = src.remaining();
        ExportResponse::decode(src.copy_to_bytes(n))
            .map(Some)
            .map_err(|e| Status::internal(format!("invalid export response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn endpoints_as_the_collector_takes_them() {
        assert_eq!(
            parse_endpoint("gateway:4317", false).unwrap(),
            Target {
                host: "gateway".into(),
                port: 4317,
                tls: true
            }
        );
        assert!(!parse_endpoint("gateway:4317", true).unwrap().tls);
        assert!(!parse_endpoint("http://gw:4317", false).unwrap().tls);
        assert!(parse_endpoint("https://gw:4317/", true).unwrap().tls);
        assert_eq!(parse_endpoint("[::1]:4317", true).unwrap().host, "::1");
        assert!(
            parse_endpoint("YOUR_JAEGER_URL", false)
                .unwrap_err()
                .contains("needs a port")
        );
        assert!(parse_endpoint("grpc://x:1", false).is_err());
    }

    #[test]
    fn status_codes_are_classified_as_otlp_says() {
        assert!(matches!(
            classify(&Status::unavailable("x")),
            SendError::Retryable { .. }
        ));
        assert!(matches!(
            classify(&Status::resource_exhausted("x")),
            SendError::Permanent(_)
        ));
        let with_info = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            classify(&with_info),
            SendError::Retryable {
                msg: "gRPC status ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            classify(&Status::invalid_argument("x")),
            SendError::Permanent(_)
        ));
    }

    #[test]
    fn config_errors_point_at_keys() {
        let e = parse(&yaml("endpoint: gw\n").unwrap()).err().unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("endpoint", 1)
        );
        let e = parse(&yaml("endpoint: gw:4317\ncompression: brotli\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "compression");
        let e = parse(&yaml("endpoint: gw:4317\nsending_queue:\n  num_consumers: 0\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("sending_queue.num_consumers", 3)
        );
        let e = parse(&yaml("endpoint: gw:4317\ntimeout: 5\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("missing unit"), "{}", e.msg);
        assert!(
            parse(
                &yaml("endpoint: gw:4317\ntls:\n  insecure: true\nsending_queue:\n  batch:\n")
                    .unwrap()
            )
            .is_ok()
        );
    }
}
