//! The `otlp` receiver's config: `protocols.grpc` and `protocols.http` with the Collector's
//! keys and defaults.

use serde::Deserialize;

use crate::net::tls::ServerTlsConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `grpc` and/or `http`; a protocol written with no value (`grpc:`) is on with its defaults.
    pub protocols: Protocols,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "crate::config::present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub http: Option<HttpConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address. Default `0.0.0.0:4317`.
    pub endpoint: String,
    /// Only `tcp`.
    pub transport: String,
    /// Largest accepted request message, in MiB (after decompression). Default 4.
    pub max_recv_msg_size_mib: u64,
    /// Largest request accepted by what it takes once decoded, in MiB (the wire scan estimates
    /// it before decoding: an empty span is 2 bytes on the wire and 240 in memory). Above it a
    /// request is refused with `RESOURCE_EXHAUSTED` and no retry info. Default 16 ×
    /// `max_recv_msg_size_mib`; real requests decode to 4–7 times their size.
    #[serde(deserialize_with = "crate::config::present")]
    pub max_decoded_size_mib: Option<u64>,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    /// Pass the request's metadata to processors (`attributes` `from_context: metadata.<key>`).
    /// Default false.
    pub include_metadata: bool,
    /// `authenticator`: an auth extension every request must pass (`UNAUTHENTICATED` if not).
    #[serde(deserialize_with = "crate::config::present")]
    pub auth: Option<crate::net::auth::AuthConfig>,
    /// Connection keepalive: idle and age limits, pings (see [`crate::net::server`]).
    #[serde(deserialize_with = "crate::config::present")]
    pub keepalive: Option<crate::net::server::KeepaliveConfig>,
    /// HTTP/2 streams per connection at once. Default hyper's (200).
    #[serde(deserialize_with = "crate::config::present")]
    pub max_concurrent_streams: Option<u32>,
    /// Accepted and ignored, with a warning: grpc-go's transport buffer sizes; hyper sizes its
    /// own and HTTP/2 flow control paces the peer.
    pub read_buffer_size: Option<usize>,
    pub write_buffer_size: Option<usize>,
    /// Open connections at most; beyond, the longest idle is shed (or the new one closed when
    /// all are busy). Default 4096.
    pub max_connections: usize,
}

impl GrpcConfig {
    /// The decoded-size limit in bytes.
    pub fn max_decoded_bytes(&self) -> u64 {
        self.max_decoded_size_mib
            .unwrap_or(16 * self.max_recv_msg_size_mib)
            .saturating_mul(1 << 20)
    }
}

impl HttpConfig {
    /// The decoded-size limit in bytes.
    pub fn max_decoded_bytes(&self) -> u64 {
        self.max_decoded_size
            .unwrap_or(16 * self.max_request_body_size as u64)
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "0.0.0.0:4317".into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: 4,
            max_decoded_size_mib: None,
            tls: None,
            include_metadata: false,
            auth: None,
            keepalive: None,
            max_concurrent_streams: None,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
            read_buffer_size: None,
            write_buffer_size: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Default `0.0.0.0:4318`.
    pub endpoint: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    /// Largest accepted request body in bytes, checked before and after decompression.
    /// Default 20 MiB (20971520).
    pub max_request_body_size: usize,
    /// Largest request accepted by what it takes once decoded, in bytes (estimated before
    /// decoding). Above it a request is refused with 413. Default 16 × `max_request_body_size`.
    #[serde(deserialize_with = "crate::config::present")]
    pub max_decoded_size: Option<u64>,
    /// Default `/v1/traces`.
    pub traces_url_path: String,
    /// Default `/v1/metrics`.
    pub metrics_url_path: String,
    /// Default `/v1/logs`.
    pub logs_url_path: String,
    /// Browser clients: origins allowed by CORS (`*` wildcards allowed). Off when absent.
    #[serde(deserialize_with = "crate::config::present")]
    pub cors: Option<CorsConfig>,
    /// Pass the request's headers to processors (`attributes` `from_context: metadata.<key>`).
    /// Default false.
    pub include_metadata: bool,
    /// `authenticator`: an auth extension every request must pass (401 if not).
    #[serde(deserialize_with = "crate::config::present")]
    pub auth: Option<crate::net::auth::AuthConfig>,
    /// Time a client has to send a request's headers (HTTP/1). Default 1m; 0 = the default.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub read_header_timeout: Option<std::time::Duration>,
    /// Close a connection without a request for this long. Default 1m; 0 = the default.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub idle_timeout: Option<std::time::Duration>,
    /// Open connections at most; beyond, the longest idle is shed (or the new one closed when
    /// all are busy). Default 4096.
    pub max_connections: usize,
    /// Headers added to every response.
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// The request `Content-Encoding`s accepted (`gzip`, `zstd`, `zlib`/`deflate`, `snappy`);
    /// others are refused with 415. Default: all of them.
    pub compression_algorithms: Option<Vec<String>>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "0.0.0.0:4318".into(),
            tls: None,
            max_request_body_size: 20 * 1024 * 1024,
            max_decoded_size: None,
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            cors: None,
            include_metadata: false,
            auth: None,
            read_header_timeout: None,
            idle_timeout: None,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
            response_headers: Default::default(),
            compression_algorithms: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    /// Extra request headers allowed besides the CORS-safelisted ones and Content-Type.
    pub allowed_headers: Vec<String>,
    /// Seconds a preflight answer may be cached; 0 = not sent.
    pub max_age: u64,
}
