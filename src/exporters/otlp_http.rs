//! `otlp_http` exporter (alias `otlphttp`): OTLP over HTTP, protobuf (default) or JSON.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;

use super::helper::Part;
use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, SendError, Sender, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node, units};
use crate::net::compression::Compression;
use crate::signal::response::{ExportResponse, log_partial_success};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, overriding `endpoint`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Default `<endpoint>/v1development/profiles`.
    #[serde(default)]
    pub profiles_endpoint: Option<String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// The largest request body sent, in bytes before compression (the Collector's OTLP/HTTP
    /// receiver refuses more than 20 MiB, before and after decompression): larger batches are
    /// split at item boundaries, and a request answered 413 is split again. With `encoding:
    /// json` the protobuf is split at half this, JSON being about twice as large. Default
    /// 20 MiB; 0 = no bound. Accepts units (`"4MiB"`).
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
    20 << 20
}

impl Config {
    fn url(&self, s: Signal) -> Option<String> {
        let specific = match s {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Logs => &self.logs_endpoint,
            Signal::Profiles => &self.profiles_endpoint,
        };
        // Profiles are still the development version: `/v1development/profiles`.
        let version = if s == Signal::Profiles {
            "v1development"
        } else {
            "v1"
        };
        specific.clone().filter(|u| !u.is_empty()).or_else(|| {
            let base = self.endpoint.as_deref().filter(|e| !e.is_empty())?;
            Some(format!("{}/{version}/{s}", base.trim_end_matches('/')))
        })
    }
}

/// `otlp_http`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::exporter(
    "otlp_http",
    crate::signal::WITH_PROFILES,
    Stability::Beta,
    parse,
)
.aliases(&["otlphttp"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = client::parse(node)?;
    let mut any = false;
    for (s, key) in [
        (Signal::Traces, "traces_endpoint"),
        (Signal::Metrics, "metrics_endpoint"),
        (Signal::Logs, "logs_endpoint"),
        (Signal::Profiles, "profiles_endpoint"),
    ] {
        if let Some(u) = cfg.url(s) {
            any = true;
            let key = if node.get(key).is_some() {
                key
            } else {
                "endpoint"
            };
            crate::net::client::check_http_url(&u).map_err(|m| key_err(node, &[key], m))?;
        }
    }
    if !any {
        return Err(key_err(
            node,
            &["endpoint"],
            "set `endpoint` (or traces_endpoint, metrics_endpoint, logs_endpoint)",
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
        let sender = HttpSender {
            client,
            urls: Signal::EVERY.map(|s| cfg.url(s)),
            compression: cfg.compression,
            encoding: cfg.encoding,
            max_request: usize::try_from(cfg.max_request_size)
                .ok()
                .filter(|m| *m > 0)
                .unwrap_or(usize::MAX),
            id: ctx.id.to_string(),
            auth: cfg
                .client
                .authenticator(&ctx)
                .map_err(|e| BuildError::new(&ctx.id, e))?,
        };
        Helper::build(&ctx, settings, sender)
    }
}

pub struct HttpSender {
    client: reqwest::Client,
    urls: [Option<String>; crate::signal::Signal::COUNT],
    compression: Compression,
    encoding: Encoding,
    max_request: usize,
    id: String,
    auth: Option<Arc<dyn crate::net::auth::ClientAuthenticator>>,
}

pub struct EncodedRequest {
    signal: Signal,
    body: Bytes,
}

impl HttpSender {
    /// The most protobuf bytes per request for the configured encoding.
    fn max_protobuf(&self, max: usize) -> usize {
        match self.encoding {
            Encoding::Proto => max,
            Encoding::Json => max / 2,
        }
    }

    /// One request body from a request's protobuf: JSON when configured, compressed.
    fn body(&self, signal: Signal, raw: Bytes, items: usize) -> Result<EncodedRequest, SendError> {
        let raw = match self.encoding {
            Encoding::Proto => raw,
            Encoding::Json => Bytes::from(
                crate::signal::json::from_batch(Batch::Encoded(crate::signal::Encoded::new(
                    signal, raw, items,
                )))
                .map_err(|e| SendError::Permanent(format!("JSON encoding failed: {e}")))?,
            ),
        };
        Ok(EncodedRequest {
            signal,
            body: self
                .compression
                .encode(raw)
                .map_err(|e| SendError::Permanent(format!("compression failed: {e}")))?,
        })
    }

    fn parts(
        &self,
        signal: Signal,
        raw: Bytes,
        items: usize,
        max: usize,
    ) -> Result<Vec<Part<EncodedRequest>>, SendError> {
        if raw.len() <= max {
            return Ok(vec![Part {
                shard: 0,
                items,
                req: self.body(signal, raw, items)?,
            }]);
        }
        crate::signal::wire_split::split_request(signal, &raw, max)
            .into_iter()
            .map(|(bytes, items)| {
                Ok(Part {
                    shard: 0,
                    items,
                    req: self.body(signal, Bytes::from(bytes), items)?,
                })
            })
            .collect()
    }
}

/// Seconds in a `Retry-After` header (the HTTP-date form is rare from OTLP receivers).
fn retry_after(h: &http::HeaderMap) -> Option<Duration> {
    h.get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Sender for HttpSender {
    type Request = EncodedRequest;

    fn encode(&self, batch: Batch) -> Result<EncodedRequest, SendError> {
        let signal = batch.signal();
        if self.urls[signal.index()].is_none() {
            return Err(SendError::Permanent(format!(
                "no endpoint configured for {signal}"
            )));
        }
        let items = batch.item_count();
        self.body(signal, batch.into_request_bytes(), items)
    }

    /// Never more than `max_request_size` per request: larger batches go out in parts.
    fn encode_parts(
        &self,
        batch: Batch,
        _shards: usize,
    ) -> Result<Vec<Part<EncodedRequest>>, SendError> {
        let signal = batch.signal();
        if self.urls[signal.index()].is_none() {
            return Err(SendError::Permanent(format!(
                "no endpoint configured for {signal}"
            )));
        }
        let items = batch.item_count();
        let max = self.max_protobuf(self.max_request);
        self.parts(signal, batch.into_request_bytes(), items, max)
    }

    /// A body answered 413, as protobuf again (uncompressed; JSON transcoded back) in halves.
    fn split(&self, req: &EncodedRequest) -> Option<Vec<Part<EncodedRequest>>> {
        let plain = match self.compression.header_value() {
            None => req.body.to_vec(),
            Some(enc) => crate::net::compression::decode(enc, &req.body, usize::MAX).ok()?,
        };
        let raw = match self.encoding {
            Encoding::Proto => plain,
            Encoding::Json => crate::signal::json::to_protobuf(req.signal, &plain).ok()?,
        };
        let half = raw.len() / 2 + 1;
        let parts = self.parts(req.signal, Bytes::from(raw), 0, half).ok()?;
        (parts.len() > 1).then_some(parts)
    }

    fn send<'a>(&'a self, req: &'a EncodedRequest) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let Some(url) = &self.urls[req.signal.index()] else {
                return Err(SendError::Permanent(format!(
                    "no endpoint configured for {}",
                    req.signal
                )));
            };
            let ct = match self.encoding {
                Encoding::Proto => "application/x-protobuf",
                Encoding::Json => "application/json",
            };
            let mut rb = self
                .client
                .post(url)
                .header(http::header::CONTENT_TYPE, ct)
                .body(req.body.clone());
            if let Some(enc) = self.compression.header_value() {
                rb = rb.header(http::header::CONTENT_ENCODING, enc);
            }
            rb = super::helper::client::authorize(rb, self.auth.as_ref()).await?;
            let resp = rb.send().await.map_err(|e| {
                SendError::retryable(format!("POST {url}: {}", crate::text::error_chain(&e)))
            })?;
            let status = resp.status();
            let hint = retry_after(resp.headers());
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                if self.encoding == Encoding::Proto
                    && let Ok(r) = ExportResponse::decode(body)
                {
                    log_partial_success(&self.id, &r);
                }
                return Ok(());
            }
            let detail = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
            let msg = format!("POST {url}: HTTP {status}: {detail}");
            Err(match status.as_u16() {
                429 | 502 | 503 | 504 => SendError::Retryable {
                    msg,
                    retry_after: hint,
                },
                413 => SendError::TooLarge(msg),
                _ => SendError::Permanent(msg),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn urls_per_signal() {
        let c: Config = client::parse(
            &yaml("endpoint: https://otlp.example.com/\ntraces_endpoint: http://t:1/x\n").unwrap(),
        )
        .unwrap();
        assert_eq!(c.url(Signal::Traces).unwrap(), "http://t:1/x");
        assert_eq!(
            c.url(Signal::Logs).unwrap(),
            "https://otlp.example.com/v1/logs"
        );
    }

    #[test]
    fn validation() {
        let e = parse(&yaml("headers: {a: b}\n").unwrap()).err().unwrap();
        assert!(e.msg.contains("set `endpoint`"));
        let e = parse(&yaml("endpoint: otlp.example.com:4318\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "endpoint");
        let e = parse(&yaml("endpoint: http://x:1\nencoding: xml\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "encoding");
        assert!(
            parse(
                &yaml("endpoint: http://x:4318\nheaders:\n  Authorization: \"Api-Token abc\"\n")
                    .unwrap()
            )
            .is_ok()
        );
    }
}
