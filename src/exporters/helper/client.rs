//! The client keys every network exporter takes, declared once: the Collector's
//! `confighttp.ClientConfig`/`configgrpc.ClientConfig` (`tls`, `headers`, `timeout`),
//! `configretry.BackOffConfig` (`retry_on_failure`) and `QueueBatchConfig` (`sending_queue`).
//! An exporter's own `Config` leaves them out; [`parse`] flattens them in (the config
//! deserializer's `squash`), so every key is still refused with its line when unknown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{QueueConfig, RetryConfig, Settings};
use crate::config::{DeError, Node, from_node_flat, key_err, units};
use crate::net::tls::ClientTlsConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    pub tls: ClientTlsConfig,
    /// Sent with every request (HTTP headers, or gRPC metadata).
    pub headers: BTreeMap<String, String>,
    /// Per request; 0 = no timeout. Default 5s.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    pub retry_on_failure: RetryConfig,
    pub sending_queue: QueueConfig,
    /// `confighttp`'s connection keys (HTTP exporters; a gRPC exporter refuses them).
    /// A forward proxy for every request (`http://` or `https://`).
    pub proxy_url: Option<String>,
    /// Idle connections kept in total / per host. The pool here is per host, so the smaller
    /// of the two applies. Default: unbounded (the Collector's 100 total).
    pub max_idle_conns: Option<usize>,
    pub max_idle_conns_per_host: Option<usize>,
    /// At most this many requests in flight to the backend at once (each takes one
    /// connection). Default: as many as `sending_queue.num_consumers`.
    pub max_conns_per_host: Option<usize>,
    /// How long an idle connection is kept. Default 90s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub idle_conn_timeout: Option<Duration>,
    /// A new connection per request.
    pub disable_keep_alives: bool,
    /// HTTP/2 pings after this much silence, and the wait for their answer.
    #[serde(deserialize_with = "units::opt_duration")]
    pub http2_read_idle_timeout: Option<Duration>,
    #[serde(deserialize_with = "units::opt_duration")]
    pub http2_ping_timeout: Option<Duration>,
    /// Accepted and ignored, with a warning (both protocols): Go's transport buffer sizes;
    /// hyper sizes its own.
    pub read_buffer_size: Option<usize>,
    pub write_buffer_size: Option<usize>,
    /// Accepted: HTTP/2 is negotiated by ALPN where the server offers it.
    pub force_attempt_http2: Option<bool>,
    /// `authenticator`: an auth extension that adds credentials to every request.
    #[serde(deserialize_with = "crate::config::present")]
    pub auth: Option<crate::net::auth::AuthConfig>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            tls: ClientTlsConfig::default(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
            proxy_url: None,
            max_idle_conns: None,
            max_idle_conns_per_host: None,
            max_conns_per_host: None,
            idle_conn_timeout: None,
            disable_keep_alives: false,
            http2_read_idle_timeout: None,
            http2_ping_timeout: None,
            read_buffer_size: None,
            write_buffer_size: None,
            force_attempt_http2: None,
            auth: None,
        }
    }
}

/// The keys of [`ClientSettings`] only HTTP clients have.
pub const HTTP_ONLY_KEYS: &[&str] = &[
    "proxy_url",
    "max_idle_conns",
    "max_idle_conns_per_host",
    "max_conns_per_host",
    "idle_conn_timeout",
    "disable_keep_alives",
    "http2_read_idle_timeout",
    "http2_ping_timeout",
    "force_attempt_http2",
];

impl ClientSettings {
    /// Validates the keys; `node` is the exporter's config node (for positions).
    pub fn validate(&self, node: &Node) -> Result<Settings, DeError> {
        self.tls
            .validate()
            .map_err(|m| key_err(node, &["tls"], m))?;
        validate_headers(node, &self.headers)?;
        for (key, set) in [
            ("read_buffer_size", self.read_buffer_size.is_some()),
            ("write_buffer_size", self.write_buffer_size.is_some()),
        ] {
            if set {
                crate::config::warn_key(node, &[key], crate::net::server::BUFFER_SIZE_IGNORED);
            }
        }
        if let Some(p) = &self.proxy_url {
            reqwest::Proxy::all(p)
                .map_err(|e| key_err(node, &["proxy_url"], format!("{p:?}: {e}")))?;
        }
        let mut s = Settings::new(
            self.timeout,
            self.retry_on_failure.clone(),
            self.sending_queue.clone(),
            node,
        )?;
        s.max_in_flight = self.max_conns_per_host;
        Ok(s)
    }
}

impl ClientSettings {
    /// An HTTP client with these settings' TLS and headers.
    pub fn http_client(&self) -> Result<reqwest::Client, String> {
        let idle = match (self.max_idle_conns, self.max_idle_conns_per_host) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        crate::net::client::http_client_with(
            &self.tls,
            &self.headers,
            &crate::net::client::HttpOptions {
                proxy_url: self.proxy_url.clone(),
                max_idle_per_host: if self.disable_keep_alives {
                    Some(0)
                } else {
                    idle
                },
                idle_timeout: self.idle_conn_timeout,
                h2_ping_interval: self.http2_read_idle_timeout,
                h2_ping_timeout: self.http2_ping_timeout,
            },
        )
    }

    /// A lazily connecting gRPC channel to `endpoint` with these settings' TLS.
    pub fn grpc_channel(&self, endpoint: &str) -> Result<tonic::transport::Channel, String> {
        crate::net::client::grpc_channel(endpoint, &self.tls)
    }

    /// The client authenticator `auth` names (started before any exporter).
    pub fn authenticator(
        &self,
        ctx: &crate::component::Context,
    ) -> Result<Option<std::sync::Arc<dyn crate::net::auth::ClientAuthenticator>>, String> {
        self.auth.as_ref().map(|a| ctx.auth.client(a)).transpose()
    }

    /// These settings' headers as gRPC metadata.
    pub fn grpc_metadata(&self) -> Result<http::HeaderMap, String> {
        crate::net::client::grpc_metadata(&self.headers)
    }
}

/// `rb` with the client authenticator's headers (a failure to get them is retryable).
pub async fn authorize(
    rb: reqwest::RequestBuilder,
    auth: Option<&std::sync::Arc<dyn crate::net::auth::ClientAuthenticator>>,
) -> Result<reqwest::RequestBuilder, super::SendError> {
    match auth {
        None => Ok(rb),
        Some(a) => a
            .headers()
            .await
            .map(|h| rb.headers(h))
            .map_err(|e| super::SendError::retryable(format!("auth: {e}"))),
    }
}

/// An exporter config that holds the client settings (in a `#[serde(skip)]` field that
/// [`parse`] fills).
pub trait HasClient: DeserializeOwned {
    fn client_mut(&mut self) -> &mut ClientSettings;
}

/// An exporter's config with its client settings flattened in, from one node.
pub fn parse<T: HasClient>(node: &Node) -> Result<T, DeError> {
    let (mut cfg, client): (T, ClientSettings) = from_node_flat(node)?;
    *cfg.client_mut() = client;
    Ok(cfg)
}

pub(crate) fn validate_headers(
    node: &Node,
    headers: &BTreeMap<String, String>,
) -> Result<(), DeError> {
    for (k, v) in headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(key_err(
                node,
                &["headers", k],
                format!("{k:?} is not a valid header name"),
            ));
        }
        if http::HeaderValue::from_str(v).is_err() {
            return Err(key_err(
                node,
                &["headers", k],
                "the header value contains invalid characters",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `proxy_url`: requests go to the proxy in absolute form; the pool keys are taken.
    #[tokio::test]
    async fn http_client_keys_reach_the_client() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = proxy.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut s, _) = proxy.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let c = ClientSettings {
            proxy_url: Some(format!("http://{addr}")),
            max_idle_conns: Some(4),
            idle_conn_timeout: Some(Duration::from_secs(30)),
            http2_read_idle_timeout: Some(Duration::from_secs(10)),
            http2_ping_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let client = c.http_client().unwrap();
        let resp = client
            .post("http://backend.example:4318/v1/traces")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let req = seen.await.unwrap();
        assert!(
            req.starts_with("POST http://backend.example:4318/v1/traces HTTP/1.1"),
            "{req}"
        );
    }
}
