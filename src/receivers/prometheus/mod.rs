//! `prometheus` receiver: scrapes targets as Prometheus does, from `config.scrape_configs` in
//! Prometheus's own shape, and sends what it scrapes as OTLP metrics.
//!
//! Targets come from `static_configs`, `kubernetes_sd_configs` (every role, by watch, with
//! Prometheus's `__meta_kubernetes_*` labels), `file_sd_configs`, `http_sd_configs`,
//! `dns_sd_configs` and the target allocator, then `relabel_configs`. Each target is scraped every `scrape_interval` within `scrape_timeout`;
//! the text format and OpenMetrics are both accepted. Samples pass `metric_relabel_configs`,
//! become metrics (see [`convert`]) under a resource whose `service.name` is the `job` and
//! `service.instance.id` the `instance`, plus Prometheus's own `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped` and `scrape_samples_post_metric_relabeling` per scrape. A target
//! that cannot be scraped, or serves what does not parse, gets `up` = 0 (the latter also counts
//! in `otelcol_receiver_malformed_items`).

pub mod convert;
pub mod http;
mod kubernetes;
pub mod parse;
pub mod protobuf;
pub mod relabel;
pub mod sd;
mod stale;
mod target_allocator;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use self::convert::kv;
use self::kubernetes::KubernetesDiscovery;
pub use self::kubernetes::{AttachMetadata, KubernetesSd, Namespaces, Selector};
use self::relabel::{Labels, RelabelConfig, Rule};
use super::Output;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
    now_nanos,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::signal::{Batch, Signal};
use crate::telemetry::ReceiverLabels;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prometheus's configuration (`global`, `scrape_configs`, `scrape_config_files`).
    #[serde(default)]
    pub config: PromConfig,
    /// Jobs and targets from the OpenTelemetry Operator's target allocator.
    #[serde(default)]
    pub target_allocator: Option<target_allocator::TaConfig>,
    /// Drop the unit and `_total` suffixes from metric names (the Collector's option).
    #[serde(default)]
    pub trim_metric_suffixes: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PromConfig {
    pub global: Global,
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Files (globs) whose `scrape_configs` are added, as Prometheus reads them at load.
    pub scrape_config_files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// Default 1m, Prometheus's.
    #[serde(deserialize_with = "units::duration")]
    pub scrape_interval: Duration,
    /// Default 10s.
    #[serde(deserialize_with = "units::duration")]
    pub scrape_timeout: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
    /// The default of each scrape config's `scrape_protocols`.
    pub scrape_protocols: Option<Vec<String>>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            scrape_protocols: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(deserialize_with = "units::opt_duration")]
    pub scrape_interval: Option<Duration>,
    #[serde(deserialize_with = "units::opt_duration")]
    pub scrape_timeout: Option<Duration>,
    /// Default `/metrics`.
    pub metrics_path: Option<String>,
    /// Default `http`.
    pub scheme: Option<String>,
    /// Scraped labels win over target labels (else they are kept as `exported_<name>`).
    pub honor_labels: bool,
    /// Use the timestamps the target exposes. Default true.
    pub honor_timestamps: Option<bool>,
    pub params: BTreeMap<String, Vec<String>>,
    pub static_configs: Vec<StaticConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSd>,
    pub file_sd_configs: Vec<sd::FileSd>,
    pub http_sd_configs: Vec<sd::HttpSd>,
    pub dns_sd_configs: Vec<sd::DnsSd>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Scrapes with more samples than this fail (0 = no limit).
    pub sample_limit: usize,
    pub tls_config: Option<TlsConfig>,
    pub basic_auth: Option<http::BasicAuth>,
    pub authorization: Option<http::Authorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub oauth2: Option<http::OAuth2>,
    pub proxy_url: Option<String>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    /// Largest response body; a larger one fails the scrape. 0 = no limit (default).
    #[serde(deserialize_with = "units::bytes")]
    pub body_size_limit: u64,
    /// The formats asked for, in order of preference (`PrometheusProto`,
    /// `OpenMetricsText1.0.0`, `OpenMetricsText0.0.1`, `PrometheusText1.0.0`,
    /// `PrometheusText0.0.4`). Default: the global list, else OpenMetrics then the text format.
    /// Native histograms come only with `PrometheusProto`.
    pub scrape_protocols: Option<Vec<String>>,
    /// A histogram a target sends both native and classic also gives its classic buckets
    /// (Prometheus 3's name; `scrape_classic_histograms` is Prometheus 2's).
    pub always_scrape_classic_histograms: bool,
    pub scrape_classic_histograms: bool,
    /// A native histogram with more buckets is downscaled until it fits (0 = no limit).
    pub native_histogram_bucket_limit: u64,
    /// A native histogram with a finer resolution (a smaller growth factor from one bucket
    /// to the next) is downscaled to it (0 = as sent).
    pub native_histogram_min_bucket_factor: f64,
}

/// The protocols Prometheus negotiates, with their media types.
const SCRAPE_PROTOCOLS: [(&str, &str); 5] = [
    (
        "PrometheusProto",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    ),
    (
        "OpenMetricsText1.0.0",
        "application/openmetrics-text;version=1.0.0",
    ),
    (
        "OpenMetricsText0.0.1",
        "application/openmetrics-text;version=0.0.1",
    ),
    ("PrometheusText1.0.0", "text/plain;version=1.0.0"),
    ("PrometheusText0.0.4", "text/plain;version=0.0.4"),
];

/// Prometheus's Accept header for `protocols`: each with a falling weight, then anything.
fn accept_header(protocols: &[String]) -> String {
    let mut weight = SCRAPE_PROTOCOLS.len() + 1;
    let mut parts = Vec::new();
    for p in protocols {
        if let Some((_, media)) = SCRAPE_PROTOCOLS.iter().find(|(n, _)| n == p) {
            parts.push(format!("{media};q=0.{weight}"));
            weight = weight.saturating_sub(1);
        }
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

pub use http::TlsConfig;

impl ScrapeConfig {
    fn settings(&self) -> http::ClientSettings {
        http::client_settings!(self)
    }
}

/// `scrape_config_files`: each glob's files, each a YAML document with `scrape_configs`.
fn read_scrape_config_files(patterns: &[String]) -> Result<Vec<ScrapeConfig>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        scrape_configs: Vec<ScrapeConfig>,
    }
    let mut out = Vec::new();
    for pattern in patterns {
        let paths = glob::glob(pattern).map_err(|e| format!("{pattern:?}: {e}"))?;
        for p in paths.filter_map(Result::ok) {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let node =
                crate::config::node::parse(&text).map_err(|e| format!("{}: {e:?}", p.display()))?;
            let f: File = from_node(&node).map_err(|e| {
                format!(
                    "{}:{}: `{}`: {}",
                    p.display(),
                    e.pos.map_or(0, |p| p.line),
                    e.path_string(),
                    e.msg
                )
            })?;
            out.extend(f.scrape_configs);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// `prometheus`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::receiver("prometheus", crate::signal::METRICS, Stability::Beta, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let mut cfg: Config = from_node(node)?;
    let files = read_scrape_config_files(&cfg.config.scrape_config_files)
        .map_err(|m| key_err(node, &["config", "scrape_config_files"], m))?;
    cfg.config.scrape_configs.extend(files);
    cfg.config.scrape_config_files.clear();
    if let Some(ta) = &cfg.target_allocator {
        ta.validate()
            .map_err(|m| key_err(node, &["target_allocator"], m))?;
    }
    let g = &cfg.config.global;
    if cfg.config.scrape_configs.is_empty() && cfg.target_allocator.is_none() {
        return Err(key_err(
            node,
            &["config", "scrape_configs"],
            "at least one scrape config (or a target_allocator) is required",
        ));
    }
    let mut names = Vec::new();
    for (i, sc) in cfg.config.scrape_configs.iter().enumerate() {
        let at = |k: &str, m: String| {
            let mut e = key_err(node, &["config", "scrape_configs"], m);
            e.path.push(format!("[{i}]"));
            e.path.push(k.to_string());
            e
        };
        if names.contains(&sc.job_name) {
            return Err(at(
                "job_name",
                format!("job `{}` is defined twice", sc.job_name),
            ));
        }
        names.push(sc.job_name.clone());
        check(sc, g).map_err(|(k, m)| at(k, m))?;
    }
    Ok(Box::new(cfg))
}

/// One scrape config's checks (the key at fault and why), for the config and for the jobs a
/// target allocator hands out.
fn check(sc: &ScrapeConfig, g: &Global) -> Result<(), (&'static str, String)> {
    if sc.job_name.is_empty() {
        return Err(("job_name", "`job_name` is required".into()));
    }
    let interval = sc.scrape_interval.unwrap_or(g.scrape_interval);
    let timeout = sc.scrape_timeout.unwrap_or(g.scrape_timeout.min(interval));
    if interval.is_zero() {
        return Err(("scrape_interval", "must be positive".into()));
    }
    if timeout > interval {
        return Err((
            "scrape_timeout",
            format!("{timeout:?} is longer than scrape_interval {interval:?}"),
        ));
    }
    for p in sc
        .scrape_protocols
        .iter()
        .chain(g.scrape_protocols.iter())
        .flatten()
    {
        if !SCRAPE_PROTOCOLS.iter().any(|(n, _)| n == p) {
            let known: Vec<&str> = SCRAPE_PROTOCOLS.iter().map(|(n, _)| *n).collect();
            return Err((
                "scrape_protocols",
                format!("unknown protocol {p:?} (known: {})", known.join(", ")),
            ));
        }
    }
    let f = sc.native_histogram_min_bucket_factor;
    if f != 0.0 && (f.is_nan() || f <= 1.0) {
        return Err((
            "native_histogram_min_bucket_factor",
            format!("{f}: a growth factor is greater than 1 (or 0 for none)"),
        ));
    }
    match sc.scheme.as_deref() {
        None | Some("http") | Some("https") => {}
        Some(s) => return Err(("scheme", format!("`{s}`: expected http or https"))),
    }
    for r in sc.relabel_configs.iter() {
        Rule::new(r).map_err(|m| ("relabel_configs", m))?;
    }
    for r in sc.metric_relabel_configs.iter() {
        Rule::new(r).map_err(|m| ("metric_relabel_configs", m))?;
    }
    sc.settings().validate().map_err(|m| ("basic_auth", m))?;
    for (j, h) in sc.http_sd_configs.iter().enumerate() {
        h.validate()
            .map_err(|m| ("http_sd_configs", format!("[{j}]: {m}")))?;
    }
    for (j, d) in sc.dns_sd_configs.iter().enumerate() {
        d.validate()
            .map_err(|m| ("dns_sd_configs", format!("[{j}]: {m}")))?;
    }
    for (j, sd) in sc.kubernetes_sd_configs.iter().enumerate() {
        sd.validate()
            .map_err(|m| ("kubernetes_sd_configs", format!("[{j}]: {m}")))?;
    }
    for st in &sc.static_configs {
        for t in &st.targets {
            if t.is_empty() || t.contains('/') {
                return Err(("static_configs", format!("target `{t}` must be host:port")));
            }
        }
    }
    Ok(())
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
            let out = Arc::new(Output::new(&ctx, "http", consumer));
            let malformed = ctx
                .telemetry
                .receiver_malformed
                .get_or_create(&ReceiverLabels {
                    receiver: ctx.id.to_string(),
                    transport: "http".into(),
                })
                .clone();
            let stop = CancellationToken::new();
            let mut tasks = Vec::new();
            let scraper = Scraper {
                out,
                malformed,
                trim_suffixes: self.trim_metric_suffixes,
            };
            for sc in &self.config.scrape_configs {
                let job = Arc::new(
                    Job::new(sc, &self.config.global, None)
                        .map_err(|m| BuildError::new(&ctx.id, m))?,
                );
                tasks.push(tokio::spawn(manage(job, scraper.clone(), stop.clone())));
            }
            if let Some(ta) = &self.target_allocator {
                tasks.push(tokio::spawn(run_target_allocator(
                    ta.clone(),
                    self.config.global.clone(),
                    scraper,
                    stop.clone(),
                )));
            }
            Ok(crate::component::Tasks::new(stop, tasks) as Box<dyn Lifecycle>)
        })
    }
}

/// `target_allocator` (see [`target_allocator`]): polls the job list every `interval` and runs
/// its jobs, each with the allocator's targets URL as its discovery; a changed list replaces
/// the jobs, an unreachable allocator keeps them.
async fn run_target_allocator(
    cfg: target_allocator::TaConfig,
    global: Global,
    scraper: Scraper,
    stop: CancellationToken,
) {
    let interval = cfg.interval.unwrap_or(Duration::from_secs(30));
    let settings = http::ClientSettings {
        tls_config: cfg.tls_config(),
        ..Default::default()
    };
    let client = match settings.client(cfg.timeout.unwrap_or(Duration::from_secs(10))) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "prometheus: target allocator client");
            return;
        }
    };
    let url = format!("{}/scrape_configs", cfg.base());
    let known = crate::config::de::struct_fields::<ScrapeConfig>();
    let mut current: Option<(serde_json::Value, CancellationToken)> = None;
    loop {
        match target_allocator::fetch(&client, &url, &cfg.headers).await {
            Ok(jobs) if current.as_ref().is_none_or(|(v, _)| *v != jobs) => {
                if let Some((_, tok)) = current.take() {
                    tok.cancel();
                }
                let tok = stop.child_token();
                let mut n = 0;
                for (name, v) in jobs.as_object().into_iter().flatten() {
                    let job = serde_json::from_value::<ScrapeConfig>(target_allocator::job_json(
                        name,
                        v.clone(),
                        known,
                    ))
                    .map_err(|e| format!("job {name:?}: {e}"))
                    .and_then(|sc| {
                        check(&sc, &global)
                            .map_err(|(k, m)| format!("job {name:?}: `{k}`: {m}"))?;
                        Job::new(&sc, &global, Some(cfg.targets_sd(name)))
                    });
                    match job {
                        Ok(job) => {
                            tokio::spawn(manage(Arc::new(job), scraper.clone(), tok.clone()));
                            n += 1;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "prometheus: a target allocator job is skipped")
                        }
                    }
                }
                tracing::info!(jobs = n, endpoint = %cfg.endpoint, "prometheus: jobs from the target allocator");
                current = Some((jobs, tok));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "prometheus: target allocator unreachable; keeping the current jobs");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Where a receiver's scrapes go.
#[derive(Clone)]
struct Scraper {
    out: Arc<Output>,
    malformed: Counter,
    trim_suffixes: bool,
}

/// A scrape config, compiled.
struct Job {
    name: String,
    /// Discovery: Kubernetes, files, HTTP, DNS (in that order of the label sets).
    kubernetes: Vec<KubernetesSd>,
    files: Vec<sd::FileSd>,
    http_sd: Vec<sd::HttpSd>,
    dns: Vec<sd::DnsSd>,
    interval: Duration,
    timeout: Duration,
    path: String,
    scheme: String,
    honor_labels: bool,
    honor_timestamps: bool,
    params: BTreeMap<String, Vec<String>>,
    statics: Vec<StaticConfig>,
    relabel: Vec<Rule>,
    metric_relabel: Vec<Rule>,
    sample_limit: usize,
    body_size_limit: u64,
    accept: String,
    keep_classic: bool,
    bucket_limit: u64,
    min_bucket_factor: f64,
    external: BTreeMap<String, String>,
    client: reqwest::Client,
    auth: http::Auth,
}

impl Job {
    /// `extra_sd`: a discovery the config does not name (the target allocator's targets URL).
    fn new(sc: &ScrapeConfig, g: &Global, extra_sd: Option<sd::HttpSd>) -> Result<Job, String> {
        let interval = sc.scrape_interval.unwrap_or(g.scrape_interval);
        let timeout = sc.scrape_timeout.unwrap_or(g.scrape_timeout.min(interval));
        let settings = sc.settings();
        let mut http_sd = sc.http_sd_configs.clone();
        http_sd.extend(extra_sd);
        Ok(Job {
            name: sc.job_name.clone(),
            kubernetes: sc.kubernetes_sd_configs.clone(),
            files: sc.file_sd_configs.clone(),
            http_sd,
            dns: sc.dns_sd_configs.clone(),
            interval,
            timeout,
            path: sc.metrics_path.clone().unwrap_or_else(|| "/metrics".into()),
            scheme: sc.scheme.clone().unwrap_or_else(|| "http".into()),
            honor_labels: sc.honor_labels,
            honor_timestamps: sc.honor_timestamps.unwrap_or(true),
            params: sc.params.clone(),
            statics: sc.static_configs.clone(),
            relabel: sc
                .relabel_configs
                .iter()
                .map(Rule::new)
                .collect::<Result<_, _>>()?,
            metric_relabel: sc
                .metric_relabel_configs
                .iter()
                .map(Rule::new)
                .collect::<Result<_, _>>()?,
            sample_limit: sc.sample_limit,
            body_size_limit: sc.body_size_limit,
            accept: match sc.scrape_protocols.as_ref().or(g.scrape_protocols.as_ref()) {
                Some(p) => accept_header(p),
                None => DEFAULT_ACCEPT.into(),
            },
            keep_classic: sc.always_scrape_classic_histograms || sc.scrape_classic_histograms,
            bucket_limit: sc.native_histogram_bucket_limit,
            min_bucket_factor: sc.native_histogram_min_bucket_factor,
            external: g.external_labels.clone(),
            client: settings.client(timeout)?,
            auth: settings.auth(),
        })
    }

    /// Discovered label sets → targets after `relabel_configs` (Prometheus's rules for
    /// `__address__`, `__scheme__`, `__metrics_path__`, `__param_*`, `instance`, `job`).
    fn targets(&self, discovered: Vec<Labels>) -> Vec<Target> {
        let mut out = Vec::new();
        for mut l in discovered {
            l.entry("job".into()).or_insert_with(|| self.name.clone());
            l.entry("__scheme__".into())
                .or_insert_with(|| self.scheme.clone());
            l.entry("__metrics_path__".into())
                .or_insert_with(|| self.path.clone());
            for (k, v) in &self.params {
                if let Some(first) = v.first() {
                    l.entry(format!("__param_{k}"))
                        .or_insert_with(|| first.clone());
                }
            }
            let Some(l) = relabel::apply(&self.relabel, l) else {
                continue;
            };
            let Some(addr) = l.get("__address__").cloned().filter(|a| !a.is_empty()) else {
                continue;
            };
            let mut url = format!(
                "{}://{}{}",
                l.get("__scheme__").map_or("http", String::as_str),
                addr,
                l.get("__metrics_path__").map_or("/metrics", String::as_str)
            );
            let params: Vec<(String, String)> = l
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("__param_")?.to_string(), v.clone())))
                .collect();
            if !params.is_empty() {
                let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                url.push('?');
                url.push_str(&q.join("&"));
            }
            let mut labels: Labels = l
                .into_iter()
                .filter(|(k, _)| !k.starts_with("__"))
                .collect();
            labels
                .entry("instance".into())
                .or_insert_with(|| addr.clone());
            out.push(Target { url, labels });
        }
        out.sort_by(|a, b| a.url.cmp(&b.url).then(a.labels.cmp(&b.labels)));
        out.dedup();
        out
    }

    fn static_labels(&self) -> Vec<Labels> {
        let mut v = Vec::new();
        for sc in &self.statics {
            for t in &sc.targets {
                let mut l: Labels = sc.labels.clone();
                l.insert("__address__".into(), t.clone());
                v.push(l);
            }
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Target {
    url: String,
    labels: Labels,
}

/// Keeps one scrape loop per current target of a job. Kubernetes discovery watches and wakes
/// the job on each change (at most once a second, as changes come in bursts); files, HTTP and
/// DNS are refreshed at the shortest of their intervals.
async fn manage(job: Arc<Job>, scraper: Scraper, stop: CancellationToken) {
    let mut loops: HashMap<Target, CancellationToken> = HashMap::new();
    let refresh = job
        .files
        .iter()
        .map(sd::FileSd::refresh)
        .chain(job.http_sd.iter().map(sd::HttpSd::refresh))
        .chain(job.dns.iter().map(sd::DnsSd::refresh))
        .min()
        .unwrap_or(Duration::from_secs(3600));
    // Discovery that cannot start (no service account outside a cluster) is retried, as
    // Prometheus does; the static targets and what was discovered last keep being scraped.
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut kube: Vec<Option<KubernetesDiscovery>> = job.kubernetes.iter().map(|_| None).collect();
    let http: Vec<Option<sd::HttpDiscovery>> = job
        .http_sd
        .iter()
        .map(|h| {
            sd::HttpDiscovery::new(h)
                .inspect_err(|e| tracing::warn!(job = %job.name, url = %h.url, error = %e, "prometheus: http_sd cannot start"))
                .ok()
        })
        .collect();
    let mut from_http: Vec<Vec<Labels>> = vec![Vec::new(); http.len()];
    let mut periodic: Vec<Labels> = Vec::new();
    let mut next_refresh = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        for (sdc, d) in job.kubernetes.iter().zip(kube.iter_mut()) {
            if d.is_none() {
                match KubernetesDiscovery::start(sdc, changed.clone()) {
                    Ok(started) => *d = Some(started),
                    Err(e) => {
                        tracing::warn!(job = %job.name, role = %sdc.role, error = %e, retry_in = "5s", "prometheus: kubernetes discovery cannot start");
                    }
                }
            }
        }
        if now >= next_refresh {
            let mut wait = refresh;
            for (i, h) in http.iter().enumerate() {
                let Some(h) = h else { continue };
                match h.discover().await {
                    Ok(l) => from_http[i] = l,
                    Err(e) => {
                        tracing::warn!(job = %job.name, error = %e, "prometheus: http_sd failed; keeping the current targets");
                        wait = Duration::from_secs(5).min(refresh);
                    }
                }
            }
            periodic.clear();
            for f in &job.files {
                periodic.extend(f.discover());
            }
            for l in &from_http {
                periodic.extend(l.iter().cloned());
            }
            for d in &job.dns {
                periodic.extend(d.discover().await);
            }
            next_refresh = now + wait;
        }
        let mut discovered = job.static_labels();
        for d in kube.iter().flatten() {
            discovered.extend(d.targets());
        }
        discovered.extend(periodic.iter().cloned());
        let targets = job.targets(discovered);
        loops.retain(|t, tok| {
            let keep = targets.contains(t);
            if !keep {
                tok.cancel();
            }
            keep
        });
        for t in targets {
            if loops.contains_key(&t) {
                continue;
            }
            let tok = stop.child_token();
            loops.insert(t.clone(), tok.clone());
            tracing::info!(job = %job.name, url = %t.url, "prometheus: scraping a new target");
            tokio::spawn(scrape_loop(
                job.clone(),
                t,
                scraper.clone(),
                tok,
                stop.clone(),
            ));
        }
        let since = tokio::time::Instant::now();
        // A Kubernetes discovery that could not start is tried again in 5s, without
        // refreshing the periodic discoveries early.
        let wake = if kube.iter().any(Option::is_none) {
            next_refresh.min(since + Duration::from_secs(5))
        } else {
            next_refresh
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
            _ = changed.notified() => {
                // Let a burst of changes (a rollout) land before rebuilding.
                let until = since + Duration::from_secs(1);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(until.min(next_refresh)) => {}
                }
            }
        }
    }
    for (_, t) in loops {
        t.cancel();
    }
}

/// Scrapes one target until `stop`; when the target is gone (`stop` without `job_stop`, the
/// receiver's), its series get staleness markers.
async fn scrape_loop(
    job: Arc<Job>,
    t: Target,
    scraper: Scraper,
    stop: CancellationToken,
    job_stop: CancellationToken,
) {
    // Spread targets over the interval, as Prometheus does, by a hash of the URL.
    let offset = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.url.hash(&mut h);
        Duration::from_nanos(h.finish() % job.interval.as_nanos().max(1) as u64)
    };
    let offset = offset.min(Duration::from_millis(500));
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(offset) => {}
    }
    let mut starts = convert::StartTimes::default();
    let mut staleness = stale::Staleness::default();
    let mut tick = tokio::time::interval(job.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // The target left discovery (not a shutdown): end its series now.
                if !job_stop.is_cancelled()
                    && let Some(markers) = staleness.all_stale(now_nanos())
                    && let Err(e) = scraper.out.push(markers, Default::default()).await
                {
                    tracing::debug!(job = %job.name, error = %e, "prometheus: the pipeline refused staleness markers");
                }
                return;
            }
            _ = tick.tick() => {}
        }
        let mut batch = scrape_once(&job, &t, &scraper.malformed, &mut starts).await;
        if scraper.trim_suffixes {
            convert::trim_suffixes(&mut batch);
        }
        staleness.observe(&mut batch, now_nanos());
        if let Err(e) = scraper.out.push(batch, Default::default()).await {
            // The next scrape brings fresh values; this one is counted as refused.
            tracing::debug!(job = %job.name, error = %e, "prometheus: the pipeline refused a scrape");
        }
        starts.sweep(now_nanos().saturating_sub(10 * job.interval.as_nanos() as u64));
    }
}

/// One scrape of one target, as a batch (always: `up` says whether it worked).
async fn scrape_once(
    job: &Job,
    t: &Target,
    malformed: &Counter,
    starts: &mut convert::StartTimes,
) -> Batch {
    let began = Instant::now();
    let now = now_nanos();
    let result = fetch(job, &t.url).await;
    let mut metrics: Vec<Metric> = Vec::new();
    let parsed = result.map(|body| match body {
        Body::Text { text, openmetrics } => parse::parse(&text, openmetrics),
        Body::Proto(bytes) => protobuf::parse(&bytes, job.keep_classic),
    });
    let (up, scraped, kept) = match parsed {
        Ok(parsed) => match parsed {
            Ok(sc)
                if job.sample_limit > 0
                    && sc.samples.len() + sc.natives.len() > job.sample_limit =>
            {
                let n = sc.samples.len() + sc.natives.len();
                tracing::warn!(url = %t.url, samples = n, limit = job.sample_limit, "prometheus: sample_limit exceeded; scrape dropped");
                (0.0, n, 0)
            }
            Ok(mut sc) => {
                let scraped = sc.samples.len() + sc.natives.len();
                // The series move through the rules; `sc` keeps the families for conversion.
                let samples = relabel_samples(job, t, std::mem::take(&mut sc.samples));
                let natives = relabel_natives(job, t, std::mem::take(&mut sc.natives));
                let kept = samples.len() + natives.len();
                metrics = convert::convert(&sc, &samples, now, job.honor_timestamps, starts);
                metrics.extend(convert::natives(
                    &sc,
                    &natives,
                    now,
                    job.honor_timestamps,
                    starts,
                ));
                (1.0, scraped, kept)
            }
            Err(e) => {
                malformed.inc();
                tracing::warn!(url = %t.url, error = %e, "prometheus: the target's response does not parse");
                (0.0, 0, 0)
            }
        },
        Err(e) => {
            tracing::debug!(url = %t.url, error = %e, "prometheus: scrape failed");
            (0.0, 0, 0)
        }
    };
    let dur = began.elapsed().as_secs_f64();
    // The report series carry the target's labels, as Prometheus's do (`job` and `instance`
    // are the resource).
    let target_attrs: Vec<_> = t
        .labels
        .iter()
        .filter(|(k, _)| *k != "job" && *k != "instance")
        .map(|(k, v)| kv(k, v))
        .collect();
    for (name, v) in [
        ("up", up),
        ("scrape_duration_seconds", dur),
        ("scrape_samples_scraped", scraped as f64),
        ("scrape_samples_post_metric_relabeling", kept as f64),
    ] {
        metrics.push(Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: target_attrs.clone(),
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        });
    }
    // job/instance → service.name/service.instance.id, as the Collector maps them.
    let job_name = t.labels.get("job").cloned().unwrap_or_default();
    let instance = t.labels.get("instance").cloned().unwrap_or_default();
    let mut res = vec![
        kv("service.name", &job_name),
        kv("service.instance.id", &instance),
    ];
    if let Some((host, port)) = instance.rsplit_once(':') {
        res.push(kv("server.address", host));
        res.push(kv("server.port", port));
    }
    res.push(kv(
        "url.scheme",
        t.url.split("://").next().unwrap_or("http"),
    ));
    Batch::Metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: res,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Target labels onto a series (by `honor_labels`), then `metric_relabel_configs`; `job` and
/// `instance` leave it (they are the resource). `None`: the rules dropped it.
fn relabel_series(
    job: &Job,
    t: &Target,
    name: &str,
    labels: &[(String, String)],
) -> Option<(String, Vec<(String, String)>)> {
    let mut l: Labels = labels.iter().cloned().collect();
    for (k, v) in t.labels.iter().chain(job.external.iter()) {
        match l.get(k) {
            Some(_) if job.honor_labels => {}
            Some(existing) => {
                let e = existing.clone();
                l.insert(format!("exported_{k}"), e);
                l.insert(k.clone(), v.clone());
            }
            None => {
                l.insert(k.clone(), v.clone());
            }
        }
    }
    let mut name = name.to_string();
    if !job.metric_relabel.is_empty() {
        l.insert("__name__".into(), name.clone());
        let mut nl = relabel::apply(&job.metric_relabel, l)?;
        if let Some(n) = nl.remove("__name__") {
            name = n;
        }
        l = nl;
    }
    l.remove("job");
    l.remove("instance");
    Some((name, l.into_iter().collect()))
}

fn relabel_samples(job: &Job, t: &Target, samples: Vec<parse::Sample>) -> Vec<parse::Sample> {
    let mut out = Vec::with_capacity(samples.len());
    for mut s in samples {
        if let Some((name, labels)) = relabel_series(job, t, &s.name, &s.labels) {
            s.name = name;
            s.labels = labels;
            out.push(s);
        }
    }
    out
}

/// Native histograms through the same rules, then within `native_histogram_bucket_limit` and
/// `native_histogram_min_bucket_factor` (downscaled as Prometheus does; one that cannot fit is
/// dropped with a warning).
fn relabel_natives(job: &Job, t: &Target, natives: Vec<parse::Native>) -> Vec<parse::Native> {
    let mut out = Vec::with_capacity(natives.len());
    for mut n in natives {
        let Some((name, labels)) = relabel_series(job, t, &n.name, &n.labels) else {
            continue;
        };
        n.name = name;
        n.labels = labels;
        if job.min_bucket_factor > 1.0 {
            // Bucket growth at scale s is 2^(2^-s).
            while 2f64.powf(2f64.powi(-n.scale)) < job.min_bucket_factor && n.downscale() {}
        }
        if job.bucket_limit > 0 {
            while (n.positive.len() + n.negative.len()) as u64 > job.bucket_limit {
                if !n.downscale() {
                    break;
                }
            }
            if (n.positive.len() + n.negative.len()) as u64 > job.bucket_limit {
                tracing::warn!(url = %t.url, metric = %n.name, limit = job.bucket_limit, "prometheus: native histogram over native_histogram_bucket_limit at the lowest resolution; dropped");
                continue;
            }
        }
        out.push(n);
    }
    out
}

/// OpenMetrics, then the text format (what Prometheus asks without `scrape_protocols`).
const DEFAULT_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A scrape's body, by the format the target answered in.
enum Body {
    Text { text: String, openmetrics: bool },
    Proto(Vec<u8>),
}

async fn fetch(job: &Job, url: &str) -> Result<Body, String> {
    let mut req = job
        .client
        .get(url)
        .header("Accept", job.accept.as_str())
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", job.timeout.as_secs_f64()),
        );
    req = job.auth.apply(&job.client, req).await?;
    let resp = req.send().await.map_err(|e| crate::text::error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let openmetrics = content_type.starts_with("application/openmetrics-text");
    let proto = content_type.starts_with("application/vnd.google.protobuf")
        && content_type.contains("io.prometheus.client.metricfamily");
    // Read in frames so that a limit stops a huge body early.
    let limit = job.body_size_limit;
    let mut body_stream = ::http::Response::from(resp).into_body();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body_stream).await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            bytes.extend_from_slice(d);
            if limit > 0 && bytes.len() as u64 > limit {
                return Err(format!(
                    "the response is larger than body_size_limit ({limit} bytes)"
                ));
            }
        }
    }
    if proto {
        return Ok(Body::Proto(bytes));
    }
    let text = String::from_utf8(bytes).map_err(|_| "the response is not UTF-8".to_string())?;
    Ok(Body::Text { text, openmetrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(honor: bool) -> Job {
        let sc = ScrapeConfig {
            job_name: "j".into(),
            honor_labels: honor,
            ..Default::default()
        };
        Job::new(&sc, &Global::default(), None).unwrap()
    }

    #[test]
    fn honor_labels_decides_who_wins_a_clash() {
        let sc = parse::parse("m{team=\"scraped\",x=\"1\"} 1\n", false).unwrap();
        let t = Target {
            url: "http://h:1/metrics".into(),
            labels: [("team", "target"), ("job", "j"), ("instance", "h:1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let get = |s: &parse::Sample, k: &str| {
            s.labels
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let off = relabel_samples(&job(false), &t, sc.samples.clone());
        assert_eq!(get(&off[0], "team").as_deref(), Some("target"));
        assert_eq!(get(&off[0], "exported_team").as_deref(), Some("scraped"));
        assert!(get(&off[0], "job").is_none(), "job is the resource");
        let on = relabel_samples(&job(true), &t, sc.samples.clone());
        assert_eq!(get(&on[0], "team").as_deref(), Some("scraped"));
        assert!(get(&on[0], "exported_team").is_none());
    }

    #[test]
    fn targets_follow_prometheus_relabel_rules() {
        let j = job(false);
        let mut l = Labels::new();
        l.insert("__address__".into(), "10.0.0.1:9100".into());
        l.insert("__param_module".into(), "http_2xx".into());
        l.insert("__meta_x".into(), "dropped".into());
        let t = j.targets(vec![l]);
        assert_eq!(t[0].url, "http://10.0.0.1:9100/metrics?module=http_2xx");
        assert_eq!(t[0].labels["instance"], "10.0.0.1:9100");
        assert_eq!(t[0].labels["job"], "j");
        assert!(!t[0].labels.contains_key("__meta_x"));
    }

    /// Prometheus's weights: the first protocol highest, then each lower, then anything.
    #[test]
    fn accept_header_follows_scrape_protocols() {
        let h = accept_header(&["PrometheusProto".into(), "PrometheusText0.0.4".into()]);
        assert_eq!(
            h,
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.5,*/*;q=0.4"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |yaml: &str| {
            let n = crate::config::node::parse(yaml).unwrap();
            parse(&n)
                .err()
                .map(|e| format!("{} {}", e.path_string(), e.msg))
                .unwrap()
        };
        let e = bad(
            "config:\n  scrape_configs:\n    - job_name: a\n      scrape_interval: 5s\n      scrape_timeout: 10s\n",
        );
        assert!(e.contains("scrape_timeout") && e.contains("longer"), "{e}");
        let e = bad(
            "config:\n  scrape_configs:\n    - job_name: a\n      kubernetes_sd_configs: [{role: nodes}]\n",
        );
        assert!(
            e.contains("role \"nodes\"") && e.contains("endpointslice"),
            "{e}"
        );
        let e = bad(
            "config:\n  scrape_configs:\n    - job_name: a\n      relabel_configs: [{action: explode}]\n",
        );
        assert!(e.contains("unknown relabel action"), "{e}");
        let e = bad(
            "config:\n  scrape_configs:\n    - job_name: a\n      scrape_protocols: [PrometheusProtobuf]\n",
        );
        assert!(
            e.contains("scrape_protocols") && e.contains("PrometheusProto,"),
            "{e}"
        );
        let e = bad("config:\n  scrape_configs:\n    - job_name: a\n      scrape_intervall: 5s\n");
        assert!(e.contains("scrape_intervall"), "{e}");
    }
}
