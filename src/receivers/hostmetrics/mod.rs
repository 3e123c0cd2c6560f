//! `hostmetrics` receiver (alias `host_metrics`): the node's CPU, memory, load, file systems,
//! network, disks, paging, processes and uptime, read from `/proc` (and `statvfs`) every
//! `collection_interval`, under `root_path` when the host's root is mounted into a container.
//! Metric names, types, units and attributes are the Collector's (its scrapers'
//! `metadata.yaml`); each can be turned on or off under `metrics:`. Linux only. The per-process
//! `process` scraper ([`process`]) writes a resource per process.

mod config;
mod process;
mod procfs;
mod scrapers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};

use crate::signal::{Batch, Signal};
pub use config::{Config, MatchType, NameFilter, ScraperConfig, Toggle};

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
        "process" => &[
            "include",
            "exclude",
            "mute_process_name_error",
            "mute_process_exe_error",
            "mute_process_io_error",
            "mute_process_user_error",
            "mute_process_cgroup_error",
            "mute_process_all_errors",
            "scrape_process_delay",
        ],
        _ => &[],
    }
}

/// A scraper's metrics and their defaults, `None` for an unknown scraper.
fn metrics_of(scraper: &str) -> Option<&'static [(&'static str, bool)]> {
    if scraper == "process" {
        return Some(process::METRICS);
    }
    scrapers::known(scraper)
}

/// What scrapes keep from one to the next.
#[derive(Default)]
struct State {
    cpu: scrapers::CpuState,
    process: process::ProcessState,
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
        let Some(metrics) = metrics_of(name) else {
            let msg = format!(
                "unknown scraper; ferrotel has {}, process",
                scrapers::METRICS
                    .iter()
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Err(at(&[], msg));
        };
        let sc = sc.get_or_insert_with(ScraperConfig::default);
        for a in sc.resource_attributes.keys() {
            let known =
                name == "process" && process::RESOURCE_ATTRIBUTES.iter().any(|(n, _)| n == a);
            if !known {
                return Err(at(
                    &["resource_attributes", a],
                    if name == "process" {
                        format!(
                            "not a resource attribute of the process scraper; it has {}",
                            process::RESOURCE_ATTRIBUTES
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        format!("the {name} scraper's resource has no attributes")
                    },
                ));
            }
        }
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
    let mut kept = State::default();
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Reading /proc is quick but blocking: off the async workers.
        let (c, h) = (cfg.clone(), host.clone());
        let mut state = std::mem::take(&mut kept);
        let Ok((rm, errors, back)) = tokio::task::spawn_blocking(move || {
            let (rm, errors) = scrape(&c, &h, &mut state);
            (rm, errors, state)
        })
        .await
        else {
            continue;
        };
        kept = back;
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
        if rm.is_empty() {
            continue;
        }
        if let Err(e) = out.push(Batch::Metrics(rm), Default::default()).await {
            tracing::debug!(receiver = %id, error = %e, "scrape refused downstream");
        }
    }
}

/// One scrape of every configured scraper: the host's resource with one scope per scraper,
/// then a resource per process (the `process` scraper), and what failed.
fn scrape(
    cfg: &Config,
    host: &scrapers::Host,
    state: &mut State,
) -> (Vec<ResourceMetrics>, BTreeMap<String, String>) {
    let now = crate::component::now_nanos();
    let mut errors = BTreeMap::new();
    let stat = host.read("/proc/stat").map(|t| procfs::stat(&t));
    let boot = stat
        .as_ref()
        .map(|s| s.boot_time * 1_000_000_000)
        .unwrap_or(0);
    let default = ScraperConfig::default();
    let mut scopes = Vec::new();
    let mut processes = Vec::new();
    let scope_of = |name: &str| InstrumentationScope {
        name: format!(
            "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/{name}scraper"
        ),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    for (name, sc) in &cfg.scrapers {
        let cfg = sc.as_ref().unwrap_or(&default);
        if name == "process" {
            let boot_s = boot / 1_000_000_000;
            let (found, r) =
                process::scrape(cfg, host, boot_s, now, &mut state.process, &scope_of(name));
            processes = found;
            if let Err(err) = r {
                errors.insert(name.clone(), err);
            }
            continue;
        }
        let Some(defaults) = scrapers::known(name) else {
            continue;
        };
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
                scrapers::cpu(&mut e, host, s, &mut state.cpu);
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
                scope: Some(scope_of(name)),
                metrics: e.b.out,
                ..Default::default()
            });
        }
    }
    let mut out = Vec::with_capacity(1 + processes.len());
    if !scopes.is_empty() {
        out.push(ResourceMetrics {
            resource: Some(Default::default()),
            scope_metrics: scopes,
            ..Default::default()
        });
    }
    out.extend(processes);
    (out, errors)
}

#[cfg(test)]
mod tests;
