//! `hostmetrics` receiver (alias `host_metrics`): the node's CPU, memory, load, file systems,
//! network, disks, paging, processes and uptime, read from `/proc` (and `statvfs`) every
//! `collection_interval`, under `root_path` when the host's root is mounted into a container.
//! Metric names, types, units and attributes are the Collector's (its scrapers'
//! `metadata.yaml`); each can be turned on or off under `metrics:`. Linux only. The per-process
//! `process` scraper is not built yet and is refused by name.

mod procfs;
mod scrapers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often every scraper reads. Default 1m.
    #[serde(default = "one_minute", deserialize_with = "units::duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape. Default 1s.
    #[serde(default = "one_second", deserialize_with = "units::duration")]
    pub initial_delay: Duration,
    /// Accepted (a scrape reads local files and does not wait on anything).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
    /// The host's root as mounted in the container (`/hostfs`): `/proc` and every mount point
    /// are read below it. Default `/`.
    #[serde(default)]
    pub root_path: Option<String>,
    /// The scrapers to run, each with its options (`cpu:` alone runs it with defaults).
    pub scrapers: BTreeMap<String, Option<ScraperConfig>>,
}

fn one_minute() -> Duration {
    Duration::from_secs(60)
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

pub use crate::signal::build::Toggle;

/// `match_type: strict` (default) or `regexp`, over a list of names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameFilter {
    #[serde(
        alias = "devices",
        alias = "fs_types",
        alias = "mount_points",
        alias = "interfaces",
        default
    )]
    pub names: Vec<String>,
    #[serde(default)]
    pub match_type: MatchType,
    #[serde(skip)]
    compiled: Vec<regex::Regex>,
}

impl PartialEq for NameFilter {
    fn eq(&self, o: &Self) -> bool {
        self.names == o.names && self.match_type == o.match_type
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

impl NameFilter {
    pub fn matches(&self, name: &str) -> bool {
        match self.match_type {
            MatchType::Strict => self.names.iter().any(|n| n == name),
            MatchType::Regexp => self.compiled.iter().any(|r| r.is_match(name)),
        }
    }
}

/// One scraper's options; each scraper accepts only its own (checked in [`parse`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScraperConfig {
    /// `<metric name>: {enabled: bool}`.
    pub metrics: BTreeMap<String, Toggle>,
    /// Accepted: these scrapers' resources have no attributes.
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// `load`: divide the averages by the number of logical CPUs.
    pub cpu_average: bool,
    /// `filesystem`.
    pub include_devices: Option<NameFilter>,
    pub exclude_devices: Option<NameFilter>,
    pub include_fs_types: Option<NameFilter>,
    pub exclude_fs_types: Option<NameFilter>,
    pub include_mount_points: Option<NameFilter>,
    pub exclude_mount_points: Option<NameFilter>,
    pub include_virtual_filesystems: bool,
    /// `network` (interfaces) and `disk` (devices).
    pub include: Option<NameFilter>,
    pub exclude: Option<NameFilter>,
}

impl ScraperConfig {
    fn set_keys(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        let d = ScraperConfig::default();
        if self.cpu_average != d.cpu_average {
            k.push("cpu_average");
        }
        for (name, set) in [
            ("include_devices", self.include_devices.is_some()),
            ("exclude_devices", self.exclude_devices.is_some()),
            ("include_fs_types", self.include_fs_types.is_some()),
            ("exclude_fs_types", self.exclude_fs_types.is_some()),
            ("include_mount_points", self.include_mount_points.is_some()),
            ("exclude_mount_points", self.exclude_mount_points.is_some()),
            (
                "include_virtual_filesystems",
                self.include_virtual_filesystems,
            ),
            ("include", self.include.is_some()),
            ("exclude", self.exclude.is_some()),
        ] {
            if set {
                k.push(name);
            }
        }
        k
    }

    fn filters_mut(&mut self) -> [(&'static str, &mut Option<NameFilter>); 8] {
        [
            ("include_devices", &mut self.include_devices),
            ("exclude_devices", &mut self.exclude_devices),
            ("include_fs_types", &mut self.include_fs_types),
            ("exclude_fs_types", &mut self.exclude_fs_types),
            ("include_mount_points", &mut self.include_mount_points),
            ("exclude_mount_points", &mut self.exclude_mount_points),
            ("include", &mut self.include),
            ("exclude", &mut self.exclude),
        ]
    }
}

/// `hostmetrics`' identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::receiver(
    "hostmetrics",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
)
.aliases(&["host_metrics"]);

/// The options each scraper takes besides `metrics` and `resource_attributes`.
fn own_keys(scraper: &str) -> &'static [&'static str] {
    match scraper {
        "load" => &["cpu_average"],
        "filesystem" => &[
            "include_devices",
            "exclude_devices",
            "include_fs_types",
            "exclude_fs_types",
            "include_mount_points",
            "exclude_mount_points",
            "include_virtual_filesystems",
        ],
        "network" | "disk" => &["include", "exclude"],
        _ => &[],
    }
}

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    Ok(Box::new(parse_config(node)?))
}

/// The config, checked, with its regexps compiled.
pub fn parse_config(node: &Node) -> Result<Config, DeError> {
    let mut cfg: Config = from_node(node)?;
    if cfg.collection_interval.is_zero() {
        return Err(key_err(
            node,
            &["collection_interval"],
            "must be more than 0",
        ));
    }
    if cfg.scrapers.is_empty() {
        return Err(key_err(
            node,
            &["scrapers"],
            "must name at least one scraper",
        ));
    }
    for (name, sc) in cfg.scrapers.iter_mut() {
        let at = |path: &[&str], msg: String| {
            let mut p = vec!["scrapers", name.as_str()];
            p.extend_from_slice(path);
            key_err(node, &p, msg)
        };
        let Some(metrics) = scrapers::known(name) else {
            let msg = if name == "process" {
                "the per-process `process` scraper is not built in ferrotel yet".to_owned()
            } else {
                format!(
                    "unknown scraper; ferrotel has {}",
                    scrapers::METRICS
                        .iter()
                        .map(|(s, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(at(&[], msg));
        };
        let sc = sc.get_or_insert_with(ScraperConfig::default);
        for m in sc.metrics.keys() {
            if !metrics.iter().any(|(n, _)| n == m) {
                return Err(at(
                    &["metrics", m],
                    format!(
                        "not a metric of the {name} scraper; it has {}",
                        metrics
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if let Some(k) = sc
            .set_keys()
            .into_iter()
            .find(|k| !own_keys(name).contains(k))
        {
            return Err(at(
                &[k],
                format!("`{k}` is not an option of the {name} scraper"),
            ));
        }
        for (key, f) in sc.filters_mut() {
            if let Some(f) = f
                && f.match_type == MatchType::Regexp
            {
                f.compiled = f
                    .names
                    .iter()
                    .map(|n| regex::Regex::new(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| at(&[key], format!("invalid regexp: {e}")))?;
            }
        }
    }
    Ok(cfg)
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        Vec::new()
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let Some(consumer) = consumers[Signal::Metrics.index()].clone() else {
                return Err(BuildError::new(&ctx.id, "no metrics pipeline uses it"));
            };
            let host = scrapers::Host {
                root: PathBuf::from(self.root_path.clone().unwrap_or_else(|| "/".into())),
            };
            if !host.path("/proc/stat").exists() {
                return Err(BuildError::new(
                    &ctx.id,
                    format!(
                        "{} does not exist: hostmetrics reads Linux's /proc (root_path: {})",
                        host.path("/proc/stat").display(),
                        host.root.display()
                    ),
                ));
            }
            let out = Arc::new(Output::new(&ctx, "", consumer));
            let stop = CancellationToken::new();
            let errors = ctx.telemetry.receiver_source_errors.clone();
            let task = tokio::spawn(run(
                *self,
                host,
                out,
                errors,
                stop.clone(),
                ctx.id.to_string(),
            ));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

async fn run(
    cfg: Config,
    host: scrapers::Host,
    out: Arc<Output>,
    source_errors: crate::telemetry::SourceErrors,
    stop: CancellationToken,
    id: String,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(cfg.initial_delay) => {}
    }
    let mut tick = tokio::time::interval(cfg.collection_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = scrapers::CpuState::default();
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Reading /proc is quick but blocking: off the async workers.
        let (c, h) = (cfg.clone(), host.clone());
        let mut state = std::mem::take(&mut cpu);
        let Ok((rm, errors, back)) = tokio::task::spawn_blocking(move || {
            let (rm, errors) = scrape(&c, &h, &mut state);
            (rm, errors, state)
        })
        .await
        else {
            continue;
        };
        cpu = back;
        // Say once when a scraper starts failing and once when it recovers.
        for (s, e) in &errors {
            crate::telemetry::source_failed(&source_errors, &id, s);
            if failing.get(s) != Some(e) {
                tracing::warn!(receiver = %id, scraper = %s, error = %e, "scraper failed");
            }
        }
        for s in failing.keys() {
            if !errors.contains_key(s) {
                tracing::info!(receiver = %id, scraper = %s, "scraper works again");
            }
        }
        failing = errors;
        if let Err(e) = out.push(Batch::Metrics(vec![rm]), Default::default()).await {
            tracing::debug!(receiver = %id, error = %e, "scrape refused downstream");
        }
    }
}

/// One scrape of every configured scraper: one scope per scraper, and what failed.
fn scrape(
    cfg: &Config,
    host: &scrapers::Host,
    cpu: &mut scrapers::CpuState,
) -> (ResourceMetrics, BTreeMap<String, String>) {
    let now = crate::component::now_nanos();
    let mut errors = BTreeMap::new();
    let stat = host.read("/proc/stat").map(|t| procfs::stat(&t));
    let boot = stat
        .as_ref()
        .map(|s| s.boot_time * 1_000_000_000)
        .unwrap_or(0);
    let default = ScraperConfig::default();
    let mut scopes = Vec::new();
    for (name, sc) in &cfg.scrapers {
        let Some(defaults) = scrapers::known(name) else {
            continue;
        };
        let cfg = sc.as_ref().unwrap_or(&default);
        let mut e = scrapers::Emitter {
            cfg,
            b: crate::signal::build::MetricBuilder {
                toggles: &cfg.metrics,
                defaults,
                now,
                start: boot,
                out: Vec::new(),
            },
        };
        let r = match (name.as_str(), &stat) {
            ("cpu", Ok(s)) => {
                scrapers::cpu(&mut e, host, s, cpu);
                Ok(())
            }
            ("processes", Ok(s)) => {
                scrapers::processes(&mut e, s);
                Ok(())
            }
            ("cpu" | "processes", Err(err)) => Err(err.clone()),
            ("load", s) => scrapers::load(&mut e, host, s.as_ref().map_or(0, |s| s.cpus.len())),
            ("memory", _) => scrapers::memory(&mut e, host),
            ("filesystem", _) => scrapers::filesystem(&mut e, host),
            ("network", _) => scrapers::network(&mut e, host),
            ("disk", _) => scrapers::disk(&mut e, host),
            ("paging", _) => scrapers::paging(&mut e, host),
            ("system", _) => scrapers::system(&mut e, host),
            _ => Ok(()),
        };
        if let Err(err) = r {
            errors.insert(name.clone(), err);
        }
        if !e.b.out.is_empty() {
            scopes.push(ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: format!(
                        "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/{name}scraper"
                    ),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: e.b.out,
                ..Default::default()
            });
        }
    }
    (
        ResourceMetrics {
            resource: Some(Default::default()),
            scope_metrics: scopes,
            ..Default::default()
        },
        errors,
    )
}

#[cfg(test)]
mod tests;
