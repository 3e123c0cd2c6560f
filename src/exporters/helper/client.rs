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
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            tls: ClientTlsConfig::default(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
        }
    }
}

impl ClientSettings {
    /// Validates the keys; `node` is the exporter's config node (for positions).
    pub fn validate(&self, node: &Node) -> Result<Settings, DeError> {
        self.tls
            .validate()
            .map_err(|m| key_err(node, &["tls"], m))?;
        validate_headers(node, &self.headers)?;
        Settings::new(
            self.timeout,
            self.retry_on_failure.clone(),
            self.sending_queue.clone(),
            node,
        )
    }
}

impl ClientSettings {
    /// An HTTP client with these settings' TLS and headers.
    pub fn http_client(&self) -> Result<reqwest::Client, String> {
        crate::net::client::http_client(&self.tls, &self.headers)
    }

    /// A lazily connecting gRPC channel to `endpoint` with these settings' TLS.
    pub fn grpc_channel(&self, endpoint: &str) -> Result<tonic::transport::Channel, String> {
        crate::net::client::grpc_channel(endpoint, &self.tls)
    }

    /// These settings' headers as gRPC metadata.
    pub fn grpc_metadata(&self) -> Result<http::HeaderMap, String> {
        crate::net::client::grpc_metadata(&self.headers)
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
