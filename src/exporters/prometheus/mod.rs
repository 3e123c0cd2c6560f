//! `prometheus` exporter: metrics kept for Prometheus to scrape at `http://<endpoint>/metrics`,
//! named and labelled by the same rules as `prometheus_remote_write` ([`crate::prom`]):
//!
//! - each series shows its latest value; delta sums and histograms are added up into cumulative
//!   ones (a histogram whose buckets change starts over); a cumulative point older than what a
//!   series shows is ignored; a point flagged "no recorded value" removes its series;
//! - a series not updated for `metric_expiration` (default 5m) is no longer shown;
//! - one `target_info` series per resource with its attributes (other than those `job` and
//!   `instance` come from);
//! - Prometheus text 0.0.4, or with `enable_open_metrics` OpenMetrics 1.0.0 when the scraper
//!   asks for it in `Accept` (exemplars on counters and histogram buckets, `_created`, `# UNIT`);
//!   gzip when the scraper accepts it;
//! - exponential histograms cannot be written in either text format: dropped and counted
//!   (`reason="exponential_histogram"`).

mod render;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::helper::{Helper, QueueConfig, RetryConfig, SendError, Sender, Settings, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node, from_node, units};
use crate::signal::Batch;

pub use render::{Format, negotiate, render};
pub use store::{Kind, Rules, Store};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the scrape endpoint listens, `host:port` (required; the Collector's examples use
    /// `0.0.0.0:8889`).
    pub endpoint: String,
    /// TLS for the scrape endpoint (the receivers' `tls` block).
    #[serde(default, deserialize_with = "crate::config::present")]
    pub tls: Option<crate::net::tls::ServerTlsConfig>,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels added to every series.
    #[serde(default, alias = "constlabels")]
    pub const_labels: BTreeMap<String, String>,
    /// Each sample with its point's timestamp. Default false (Prometheus stamps the scrape).
    #[serde(default)]
    pub send_timestamps: bool,
    /// A series is shown this long after its last update. Default 5m.
    #[serde(default = "five_min", deserialize_with = "units::duration")]
    pub metric_expiration: Duration,
    /// Every resource attribute as a label on every series. Default off.
    #[serde(default)]
    pub resource_to_telemetry_conversion: Enabled,
    /// Serve OpenMetrics to scrapers that ask for it. Default false.
    #[serde(default)]
    pub enable_open_metrics: bool,
    /// Unit and `_total` suffixes. Default true.
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// No `otel_scope_name` / `otel_scope_version` labels. Default false.
    #[serde(default)]
    pub without_scope_info: bool,
    /// The newer form of `add_metric_suffixes`: `UnderscoreEscapingWithSuffixes` (default) or
    /// `UnderscoreEscapingWithoutSuffixes`.
    #[serde(default)]
    pub translation_strategy: Option<String>,
}

fn yes() -> bool {
    true
}

fn five_min() -> Duration {
    Duration::from_secs(300)
}

/// `prometheus`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::exporter(
    "prometheus",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let mut cfg: Config = from_node(node)?;
    crate::net::server::validate_endpoint(&cfg.endpoint)
        .map_err(|m| key_err(node, &["endpoint"], m))?;
    if let Some(t) = &cfg.tls {
        t.validate().map_err(|m| key_err(node, &["tls"], m))?;
    }
    if cfg.metric_expiration.is_zero() {
        return Err(key_err(
            node,
            &["metric_expiration"],
            "must be more than 0 (a series would never be shown)",
        ));
    }
    match cfg.translation_strategy.as_deref() {
        None | Some("UnderscoreEscapingWithSuffixes") => {}
        Some("UnderscoreEscapingWithoutSuffixes") => cfg.add_metric_suffixes = false,
        Some(other) => {
            return Err(key_err(
                node,
                &["translation_strategy"],
                format!(
                    "{other:?}: ferrotel writes Prometheus' classic names only: \
                     UnderscoreEscapingWithSuffixes or UnderscoreEscapingWithoutSuffixes"
                ),
            ));
        }
    }
    // A pull exporter has nothing to queue or retry: a batch is applied to the series at once.
    let settings = Settings::new(
        Duration::ZERO,
        RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        },
        QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        },
        node,
    )?;
    Ok(Box::new(Validated { cfg, settings }))
}

/// The series and what shows them, shared by the exporter and its scrape handler.
pub struct Shared {
    store: Mutex<Store>,
    rules: Rules,
    expiration: Duration,
    open_metrics: bool,
    timestamps: bool,
}

impl Shared {
    pub fn new(cfg: &Config) -> Self {
        Shared {
            store: Mutex::new(Store::default()),
            rules: Rules {
                namespace: cfg.namespace.clone(),
                const_labels: cfg.const_labels.clone(),
                resource_to_telemetry: cfg.resource_to_telemetry_conversion.enabled,
                suffixes: cfg.add_metric_suffixes,
                scope_info: !cfg.without_scope_info,
            },
            expiration: cfg.metric_expiration,
            open_metrics: cfg.enable_open_metrics,
            timestamps: cfg.send_timestamps,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies an export; returns the exponential histogram points it could not keep.
    pub fn apply(
        &self,
        resources: &[opentelemetry_proto::tonic::metrics::v1::ResourceMetrics],
    ) -> usize {
        let now = Instant::now();
        let mut store = self.lock();
        store
            .update(&self.rules, resources, now)
            .exponential_dropped
    }

    /// What a scrape gets: the content type and the exposition.
    pub fn scrape(&self, accept: Option<&str>) -> (&'static str, String) {
        let format = negotiate(accept, self.open_metrics);
        let mut store = self.lock();
        store.expire(Instant::now(), self.expiration);
        let body = render(&store, format, self.timestamps);
        drop(store);
        let ctype = match format {
            Format::Text => render::TEXT,
            Format::OpenMetrics => render::OPENMETRICS,
        };
        (ctype, body)
    }
}

struct PromSender {
    shared: Arc<Shared>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl Sender for PromSender {
    type Request = Vec<opentelemetry_proto::tonic::metrics::v1::ResourceMetrics>;

    fn encode(&self, batch: Batch) -> Result<Self::Request, SendError> {
        match batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?
        {
            Batch::Metrics(r) => Ok(r),
            _ => Err(SendError::Permanent(
                "the prometheus exporter takes metrics only".into(),
            )),
        }
    }

    fn send<'a>(&'a self, req: &'a Self::Request) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let dropped = self.shared.apply(req);
            if dropped > 0 {
                self.dropped.inc_by(dropped as u64);
            }
            Ok(())
        })
    }
}

/// The scrape endpoint: `GET /metrics`.
fn router(shared: Arc<Shared>) -> axum::Router {
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let shared = Arc::clone(&shared);
            async move {
                let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
                let (ctype, body) = shared.scrape(text(header::ACCEPT));
                let gzip = text(header::ACCEPT_ENCODING)
                    .is_some_and(|e| e.split(',').any(|p| p.trim().starts_with("gzip")));
                let mut h = HeaderMap::new();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
                if gzip {
                    use std::io::Write;
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    match enc.write_all(body.as_bytes()).and_then(|()| enc.finish()) {
                        Ok(z) => {
                            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                            return (StatusCode::OK, h, z).into_response();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "gzip of the scrape failed; sent plain")
                        }
                    }
                }
                (StatusCode::OK, h, body).into_response()
            }
        }),
    )
}

/// The exporter: its sender (behind the shared helper, for the counters) and its server.
struct Running {
    helper: Arc<dyn Exporter>,
    server: Box<dyn crate::component::Lifecycle>,
}

impl crate::component::Consumer for Running {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, crate::component::ConsumeResult> {
        self.helper.consume(batch)
    }
}

impl crate::component::Lifecycle for Running {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.helper.shutdown(deadline).await;
            self.server.shutdown(deadline).await;
        })
    }
}

impl ExporterConfig for Validated<Config> {
    fn listens(&self) -> bool {
        true
    }

    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let tls = cfg
            .tls
            .as_ref()
            .map(|t| t.build())
            .transpose()
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        let addr = if cfg.endpoint.starts_with(':') {
            format!("0.0.0.0{}", cfg.endpoint)
        } else {
            cfg.endpoint.clone()
        };
        let listener = std::net::TcpListener::bind(addr.as_str())
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| {
                BuildError::new(&ctx.id, format!("cannot listen on {}: {e}", cfg.endpoint))
            })?;
        let shared = Arc::new(Shared::new(&cfg));
        let dropped = ctx
            .telemetry
            .exporter_dropped_items
            .get_or_create(&crate::telemetry::DropLabels {
                exporter: ctx.id.to_string(),
                reason: "exponential_histogram".into(),
            })
            .clone();
        let helper = Helper::build(
            &ctx,
            settings,
            PromSender {
                shared: Arc::clone(&shared),
                dropped,
            },
        )?;
        let stop = tokio_util::sync::CancellationToken::new();
        tracing::info!(exporter = %ctx.id, endpoint = %cfg.endpoint, "prometheus scrape endpoint listening");
        let task = crate::net::server::serve(listener, tls, router(shared), stop.clone());
        Ok(Arc::new(Running {
            helper,
            server: crate::component::Tasks::new(stop, vec![task]),
        }))
    }
}

#[cfg(test)]
mod tests;
