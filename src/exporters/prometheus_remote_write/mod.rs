//! `prometheus_remote_write` exporter (alias `prometheusremotewrite`): metrics to any Prometheus
//! remote-write 1.0 receiver (`WriteRequest` protobuf, snappy block compressed), translated as
//! the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification says:
//!
//! - names: invalid characters → `_`, with `add_metric_suffixes` the unit as a suffix
//!   (`ms` → `_milliseconds`, `By` → `_bytes`, `1` on gauges → `_ratio`, `X/Y` → `_X_per_Y`)
//!   and `_total` on monotonic sums; `namespace` as a prefix;
//! - labels: data point attributes (invalid characters → `_`, a leading digit → `key_`),
//!   `otel_scope_name`/`otel_scope_version`, `job` (`service.namespace/service.name`), `instance`
//!   (`service.instance.id`), `external_labels`, and with `resource_to_telemetry_conversion` every
//!   resource attribute; the other resource attributes go to one `target_info` series per resource;
//! - gauges and non-monotonic sums → gauges; monotonic sums → counters; histograms →
//!   `_bucket{le}` (cumulative, `+Inf` included), `_sum`, `_count`; summaries → `{quantile}`,
//!   `_sum`, `_count`; exponential histograms → Prometheus native histograms (the receiver needs
//!   native histograms enabled); a point flagged "no recorded value" → the staleness marker;
//! - delta sums and histograms are converted to cumulative per series (state expires after
//!   `delta_expiry` without updates), or dropped and counted with `delta_temporality: drop`;
//!   delta exponential histograms are dropped and counted;
//! - labels sorted, empty values dropped, the samples of a series merged into one `TimeSeries`
//!   in time order; requests split to stay under `max_batch_size_bytes`;
//! - `num_consumers` (default 5) parallel shards: a series always goes to the shard its label
//!   hash picks, and each shard sends its requests one at a time, in order, retrying its oldest
//!   first, so no series is ever reordered (as Prometheus' own remote-write queue does).
//!
//! Requests are encoded straight from the OTLP data (no intermediate `TimeSeries` structs):
//! each distinct label set is encoded once into an arena and found again by hash.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, ResourceMetrics,
    metric::Data,
};
use prost::Message;
use prost::encoding::encoded_len_varint;
use serde::Deserialize;

use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, Part, QueueConfig, SendError, Sender, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node, units};
use crate::proto::prometheus as pb;
use crate::signal::Batch;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMode {
    #[default]
    Convert,
    Drop,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Default true.
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels added to every series.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Unit and `_total` suffixes. Default true.
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Every resource attribute as a label on every series. Default off.
    #[serde(default)]
    pub resource_to_telemetry_conversion: Enabled,
    /// One `target_info` series per resource with its attributes. Default on.
    #[serde(default)]
    pub target_info: TargetInfo,
    /// `convert` (default) or `drop` delta sums and histograms.
    #[serde(default)]
    pub delta_temporality: DeltaMode,
    /// Conversion state of a series is forgotten after this long without updates. Default 5m.
    #[serde(default = "five_min", deserialize_with = "units::duration")]
    pub delta_expiry: Duration,
    /// Largest request before compression. Default 3000000.
    #[serde(default = "three_mb")]
    pub max_batch_size_bytes: usize,
    /// The Collector's older name for the queue settings.
    #[serde(default)]
    pub remote_write_queue: Option<QueueConfig>,
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

fn yes() -> bool {
    true
}
fn five_min() -> Duration {
    Duration::from_secs(300)
}
fn three_mb() -> usize {
    3_000_000
}
/// `prometheus_remote_write`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::exporter(
    "prometheus_remote_write",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
)
.aliases(&["prometheusremotewrite"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let mut cfg: Config = client::parse(node)?;
    crate::net::client::check_http_url(&cfg.endpoint).map_err(|m| {
        key_err(
            node,
            &["endpoint"],
            format!("{m}, e.g. http://prometheus:9090/api/v1/write"),
        )
    })?;
    let queue_node = match (&cfg.remote_write_queue, node.get("remote_write_queue")) {
        (Some(q), n) => {
            cfg.client.sending_queue = q.clone();
            n
        }
        _ => node.get("sending_queue"),
    };
    // The Collector's default for this exporter is 5 concurrent senders, not the helper's 10.
    if queue_node.and_then(|q| q.get("num_consumers")).is_none() {
        cfg.client.sending_queue.num_consumers = 5;
    }
    if cfg.max_batch_size_bytes < 1024 {
        return Err(key_err(
            node,
            &["max_batch_size_bytes"],
            "must be at least 1024",
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
        let dropped = ctx
            .telemetry
            .exporter_dropped_items
            .get_or_create(&crate::telemetry::DropLabels {
                exporter: ctx.id.to_string(),
                reason: "delta_dropped".into(),
            })
            .clone();
        Helper::build(
            &ctx,
            settings,
            PrwSender {
                client,
                auth: cfg
                    .client
                    .authenticator(&ctx)
                    .map_err(|e| BuildError::new(&ctx.id, e))?,
                translator: Translator::new(cfg),
                dropped,
            },
        )
    }
}

mod encode;
mod send;
mod translate;

use crate::prom::naming::*;
pub use crate::prom::{label_name, metric_name};
use encode::*;
pub use send::PrwSender;
pub use translate::{Output, Shard, Translator, native_histogram};

#[cfg(test)]
mod tests;
