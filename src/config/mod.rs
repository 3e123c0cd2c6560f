//! Configuration: YAML text → located tree → env expansion → the service graph's shape.
//!
//! Component configs stay as located [`Node`]s here; each component's factory deserializes its
//! own typed `Config` from its node (see [`crate::component`]), so every error, wherever it is
//! found, names the file, line, column, the component id and the key.

pub mod de;
pub mod env;
pub mod errors;
pub mod node;
pub mod render;
pub mod sources;
pub mod units;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use de::{DeError, from_node, from_node_flat};
pub use errors::{ConfigError, Errors};
pub use node::{Key, Node, Pos, Value};
pub use sources::{ListMerge, Sources};

use crate::signal::Signal;

/// `type[/name]`, e.g. `otlp`, `otlp_grpc/gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let type_ok = kind.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !type_ok {
            return Err(format!(
                "invalid component id {s:?}: the type must start with a letter and contain only letters, digits and `_`"
            ));
        }
        if name.is_some_and(|n| n.is_empty() || n.chars().any(char::is_whitespace)) {
            return Err(format!(
                "invalid component id {s:?}: the name after `/` must be non-empty, without spaces"
            ));
        }
        Ok(ComponentId {
            kind: kind.to_owned(),
            name: name.map(str::to_owned),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

/// A component's definition: its id, where the id is written, and its config subtree.
#[derive(Debug, Clone)]
pub struct ComponentDef {
    pub id: ComponentId,
    pub pos: Pos,
    pub node: Node,
}

/// A reference to a component from `service`, with where it is written.
#[derive(Debug, Clone)]
pub struct Ref {
    pub id: ComponentId,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct PipelineDef {
    pub signal: Signal,
    pub name: Option<String>,
    pub pos: Pos,
    pub receivers: Vec<Ref>,
    pub processors: Vec<Ref>,
    pub exporters: Vec<Ref>,
}

impl PipelineDef {
    pub fn id(&self) -> String {
        match &self.name {
            Some(n) => format!("{}/{}", self.signal, n),
            None => self.signal.to_string(),
        }
    }
}

/// `service.telemetry`, in the Collector's shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: TelemetryLogs,
    pub metrics: TelemetryMetrics,
    pub traces: TelemetryTraces,
    /// Resource attributes of the collector itself; exported on the `target_info` self-metric.
    pub resource: std::collections::BTreeMap<String, Option<String>>,
}

/// `service.telemetry.logs`, with the Collector's keys and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogs {
    /// `debug`, `info` (default), `warn`, `error` (any case; `dpanic`, `panic`, `fatal` are
    /// `error`); `--log-level` and `RUST_LOG` take precedence.
    #[serde(deserialize_with = "log_level")]
    pub level: Option<String>,
    /// Accepted; zap's development mode (stack traces on warnings) has no equivalent here.
    pub development: bool,
    /// `console` (default) or `json`.
    pub encoding: LogEncoding,
    /// Accepted; ferrotel's lines carry no caller.
    pub disable_caller: bool,
    /// Accepted; ferrotel writes no stack traces.
    pub disable_stacktrace: bool,
    pub sampling: LogSampling,
    /// `stderr` (default), `stdout` or file paths; every line goes to each.
    pub output_paths: Vec<String>,
    /// Accepted; errors of the logger itself have nowhere else to go than stderr.
    pub error_output_paths: Vec<String>,
    /// Fields added to every line.
    #[serde(deserialize_with = "scalar_map")]
    pub initial_fields: std::collections::BTreeMap<String, String>,
    /// The collector's own logs exported over OTLP, besides the outputs.
    pub processors: Vec<LogProcessor>,
}

impl Default for TelemetryLogs {
    fn default() -> Self {
        TelemetryLogs {
            level: None,
            development: false,
            encoding: LogEncoding::Console,
            disable_caller: false,
            disable_stacktrace: false,
            sampling: LogSampling::default(),
            output_paths: vec!["stderr".into()],
            error_output_paths: vec!["stderr".into()],
            initial_fields: Default::default(),
            processors: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

/// zap's sampler: per log statement and `tick`, the first `initial` lines, then every
/// `thereafter`-th (none when 0).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSampling {
    /// Default true.
    pub enabled: bool,
    /// Default 10s.
    #[serde(deserialize_with = "units::duration")]
    pub tick: Duration,
    /// Default 10.
    pub initial: u64,
    /// Default 100.
    pub thereafter: u64,
}

impl Default for LogSampling {
    fn default() -> Self {
        LogSampling {
            enabled: true,
            tick: Duration::from_secs(10),
            initial: 10,
            thereafter: 100,
        }
    }
}

fn log_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(l) = &s {
        let known = ["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];
        if !known.contains(&l.to_ascii_lowercase().as_str()) {
            return Err(serde::de::Error::custom(format!(
                "unknown log level {l:?}; expected one of {}",
                known.join(", ")
            )));
        }
    }
    Ok(s)
}

/// A mapping of scalars, each kept as text.
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let m = Option::<std::collections::BTreeMap<String, Scalar>>::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// `service.telemetry.metrics.level`: which self-metrics exist. ferrotel's metrics are all at
/// `basic` in the Collector's tables, so `basic`, `normal` and `detailed` expose the same set
/// (the Collector's `detailed` adds HTTP and RPC client/server metrics ferrotel does not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetrics {
    /// `none` turns the self-metrics off; `basic`, `normal` (default), `detailed` keep them on.
    /// Any case, as the Collector reads it.
    #[serde(deserialize_with = "units::any_case")]
    pub level: MetricsLevel,
    /// The legacy form of one pull reader's address. Default `0.0.0.0:8888` when no reader is
    /// configured.
    pub address: Option<String>,
    /// `readers: [{pull: {exporter: {prometheus: {host, port, ...}}}}]`, any number.
    pub readers: Vec<MetricReader>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    pub pull: Option<PullReader>,
    pub periodic: Option<PeriodicReader>,
}

/// `periodic: {interval, timeout, exporter: {otlp: {...}}}`: the collector's own metrics pushed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeriodicReader {
    /// Milliseconds between exports. Default 60000.
    pub interval: u64,
    /// Milliseconds one export may take. Default 30000.
    pub timeout: u64,
    pub exporter: PushExporter,
}

impl Default for PeriodicReader {
    fn default() -> Self {
        PeriodicReader {
            interval: 60_000,
            timeout: 30_000,
            exporter: PushExporter::default(),
        }
    }
}

/// `exporter:` of a periodic reader or a log processor: `otlp` (with `protocol`), or the newer
/// `otlp_http` / `otlp_grpc` spellings of the SDK's declarative config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushExporter {
    pub otlp: Option<OtlpPush>,
    pub otlp_http: Option<OtlpPush>,
    pub otlp_grpc: Option<OtlpPush>,
}

impl PushExporter {
    /// The exporter and its protocol (`grpc`, `http/protobuf`).
    pub fn otlp(&self) -> Option<(OtlpPush, &'static str)> {
        if let Some(g) = &self.otlp_grpc {
            return Some((g.clone(), "grpc"));
        }
        if let Some(h) = &self.otlp_http {
            return Some((h.clone(), "http/protobuf"));
        }
        self.otlp.as_ref().map(|o| {
            let proto = match o.protocol.as_deref() {
                Some("grpc") => "grpc",
                _ => "http/protobuf",
            };
            (o.clone(), proto)
        })
    }
}

/// An OTLP exporter of the SDK's declarative config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpPush {
    /// `grpc` or `http/protobuf` (default); `http/json` is refused.
    pub protocol: Option<String>,
    /// gRPC: `http://host:4317`; HTTP: the URL, `/v1/metrics` or `/v1/logs` added when it has
    /// no path.
    pub endpoint: String,
    /// `{name: value}` or `[{name, value}]`.
    #[serde(deserialize_with = "header_list")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// `gzip` or `none` (default).
    pub compression: Option<String>,
    /// Milliseconds. Default 10000.
    pub timeout: Option<u64>,
    /// gRPC without TLS on a host:port endpoint.
    pub insecure: Option<bool>,
    /// CA bundle to verify the server with.
    pub certificate: Option<String>,
    pub client_certificate: Option<String>,
    pub client_key: Option<String>,
    /// `cumulative` (default), `delta`, `lowmemory` (metrics only).
    pub temporality_preference: Option<String>,
    /// Accepted (the SDK's histogram aggregation choice): explicit buckets are written.
    pub default_histogram_aggregation: Option<String>,
    /// Accepted; `protobuf` is what is written.
    pub encoding: Option<String>,
}

fn header_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    struct Pair {
        name: String,
        value: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Map(std::collections::BTreeMap<String, String>),
        List(Vec<Pair>),
    }
    Ok(match Option::<Headers>::deserialize(d)? {
        None => Default::default(),
        Some(Headers::Map(m)) => m,
        Some(Headers::List(l)) => l.into_iter().map(|p| (p.name, p.value)).collect(),
    })
}

/// `service.telemetry.traces`: the collector's own spans (start-up, config reloads, each
/// export request) over OTLP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryTraces {
    /// `none` turns them off; any other level (default `basic`) keeps them.
    pub level: Option<String>,
    /// Accepted (`tracecontext`, `b3`): ferrotel starts every trace itself.
    pub propagators: Vec<String>,
    /// Span processors, in the shape of the log processors.
    pub processors: Vec<LogProcessor>,
}

/// `logs.processors[]` and `traces.processors[]`: `batch` or `simple`, each with an OTLP exporter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogProcessor {
    pub batch: Option<LogBatch>,
    pub simple: Option<LogBatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogBatch {
    /// Milliseconds between exports (batch). Default 1000.
    pub schedule_delay: Option<u64>,
    /// Records one export carries at most. Default 512.
    pub max_export_batch_size: Option<usize>,
    /// Records held at most; more are dropped and counted. Default 2048.
    pub max_queue_size: Option<usize>,
    /// Milliseconds one export may take. Default 30000.
    pub export_timeout: Option<u64>,
    pub exporter: PushExporter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: Option<PrometheusPull>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusPull {
    /// Default `0.0.0.0`.
    pub host: Option<String>,
    /// Default 8888.
    pub port: Option<u16>,
    /// Accepted: ferrotel writes no `otel_scope_*` labels, so there is nothing to remove.
    #[serde(default)]
    pub without_scope_info: bool,
    /// Counters without their `_total` suffix.
    #[serde(default)]
    pub without_type_suffix: bool,
    /// Names without their unit suffix (`otelcol_process_memory_rss`, not `..._rss_bytes`).
    #[serde(default)]
    pub without_units: bool,
    /// Accepted; the resource goes to `target_info` instead.
    #[serde(default)]
    pub with_resource_constant_labels: Option<serde::de::IgnoredAny>,
}

/// How one pull reader writes the exposition: the Collector's `without_units` and
/// `without_type_suffix`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposition {
    pub without_units: bool,
    pub without_type_suffix: bool,
}

impl TelemetryMetrics {
    /// Each pull reader's listen address and exposition; none when the level is `none`.
    pub fn pull_readers(&self) -> Vec<(String, Exposition)> {
        if self.level == MetricsLevel::None {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in &self.readers {
            if let Some(p) = r.pull.as_ref().and_then(|p| p.exporter.prometheus.as_ref()) {
                let host = p.host.clone().unwrap_or_else(|| "0.0.0.0".into());
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host
                };
                out.push((
                    format!("{host}:{}", p.port.unwrap_or(8888)),
                    Exposition {
                        without_units: p.without_units,
                        without_type_suffix: p.without_type_suffix,
                    },
                ));
            }
        }
        if self.readers.is_empty() {
            out.push((
                self.address
                    .clone()
                    .unwrap_or_else(|| "0.0.0.0:8888".into()),
                Default::default(),
            ));
        }
        out
    }

    /// The endpoints the readers listen on, for clash checks.
    pub fn listen_addresses(&self) -> Vec<String> {
        self.pull_readers().into_iter().map(|(a, _)| a).collect()
    }
}

/// `service.queue_memory_limit_mib`'s default: what all in-memory sending queues hold together.
pub const DEFAULT_QUEUE_MEMORY_MIB: u64 = 32;

/// The whole file in the service graph's shape, component configs still untyped.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: String,
    pub receivers: Vec<ComponentDef>,
    pub processors: Vec<ComponentDef>,
    pub exporters: Vec<ComponentDef>,
    pub extensions: Vec<ComponentDef>,
    pub connectors: Vec<ComponentDef>,
    pub service_extensions: Vec<Ref>,
    pub pipelines: Vec<PipelineDef>,
    pub telemetry: TelemetryConfig,
    pub shutdown_timeout: Duration,
    /// `service.queue_memory_limit_mib` (ferrotel's own): the most the exporters' in-memory
    /// sending queues hold together, in MiB of protobuf; 0 = no bound. Default
    /// [`DEFAULT_QUEUE_MEMORY_MIB`].
    pub queue_memory_limit_mib: u64,
}

/// Reads and parses a config file. Structural errors are collected into `errors`; the returned
/// config holds whatever could be read, so that later checks can still report their own errors.
pub fn load_file(path: &Path, errors: &mut Errors) -> Option<Config> {
    let sources = Sources::file(path.display().to_string());
    let root = resolve(&sources, &|n| std::env::var(n).ok(), errors)?;
    from_tree(root, errors)
}

/// Reads and merges every source and expands `${...}` references: the tree a config is read
/// from, and what `print-config` shows.
pub fn resolve(
    sources: &Sources,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Node> {
    let mut root = sources::resolve(sources, env, errors)?;
    expand_refs(&mut root, env::Providers { env, files: true }, errors);
    Some(root)
}

fn expand_refs(root: &mut Node, providers: env::Providers<'_>, errors: &mut Errors) {
    let mut env_errors = Vec::new();
    env::expand(root, providers, &mut env_errors);
    for e in env_errors {
        errors.at(e.pos, None, None, e.msg);
    }
}

const SECTIONS: [&str; 6] = [
    "receivers",
    "processors",
    "exporters",
    "extensions",
    "connectors",
    "service",
];

pub fn load_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Config> {
    let mut root = match node::parse(text) {
        Ok(n) => n,
        Err((pos, msg)) => {
            errors.at(pos, None, None, format!("invalid YAML: {msg}"));
            return None;
        }
    };
    sources::unfold_keys(&mut root);
    expand_refs(&mut root, env::Providers::env_only(lookup), errors);
    from_tree(root, errors)
}

/// The service graph's shape read from a resolved tree.
pub fn from_tree(root: Node, errors: &mut Errors) -> Option<Config> {
    let Some(entries) = root.entries() else {
        errors.at(
            root.pos,
            None,
            None,
            format!("the config must be a mapping, found {}", root.kind()),
        );
        return None;
    };
    for (k, _) in entries {
        if !SECTIONS.contains(&k.name.as_str()) {
            errors.at(
                k.pos,
                None,
                Some(&k.name),
                format!(
                    "unknown top-level key; expected one of {}",
                    SECTIONS.join(", ")
                ),
            );
        }
    }
    let mut cfg = Config {
        file: errors.file.clone(),
        receivers: components(&root, "receivers", errors),
        processors: components(&root, "processors", errors),
        exporters: components(&root, "exporters", errors),
        extensions: components(&root, "extensions", errors),
        connectors: components(&root, "connectors", errors),
        service_extensions: Vec::new(),
        pipelines: Vec::new(),
        telemetry: TelemetryConfig::default(),
        shutdown_timeout: Duration::from_secs(10),
        queue_memory_limit_mib: DEFAULT_QUEUE_MEMORY_MIB,
    };
    match root.get("service") {
        None => errors.at(
            root.pos,
            None,
            Some("service"),
            "missing `service` section with `pipelines`",
        ),
        Some(service) => read_service(service, &mut cfg, errors),
    }
    Some(cfg)
}

fn components(root: &Node, section: &str, errors: &mut Errors) -> Vec<ComponentDef> {
    let Some(node) = root.get(section) else {
        return Vec::new();
    };
    let Some(entries) = node.entries() else {
        errors.at(
            node.pos,
            None,
            Some(section),
            format!("must be a mapping of component ids, found {}", node.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        match ComponentId::parse(&k.name) {
            Ok(id) => out.push(ComponentDef {
                id,
                pos: k.pos,
                node: v.clone(),
            }),
            Err(msg) => errors.at(k.pos, Some(&format!("{section}::{}", k.name)), None, msg),
        }
    }
    out
}

fn id_list(node: &Node, what: &str, errors: &mut Errors) -> Vec<Ref> {
    match &node.value {
        Value::Null => Vec::new(),
        Value::Seq(items) => items
            .iter()
            .filter_map(|n| match &n.value {
                Value::Str(s) => match ComponentId::parse(s) {
                    Ok(id) => Some(Ref { id, pos: n.pos }),
                    Err(msg) => {
                        errors.at(n.pos, Some(what), None, msg);
                        None
                    }
                },
                _ => {
                    errors.at(
                        n.pos,
                        Some(what),
                        None,
                        format!("expected a component id, found {}", n.kind()),
                    );
                    None
                }
            })
            .collect(),
        _ => {
            errors.at(
                node.pos,
                Some(what),
                None,
                format!("expected a list of component ids, found {}", node.kind()),
            );
            Vec::new()
        }
    }
}

fn read_service(service: &Node, cfg: &mut Config, errors: &mut Errors) {
    let Some(entries) = service.entries() else {
        errors.at(
            service.pos,
            None,
            Some("service"),
            format!("must be a mapping, found {}", service.kind()),
        );
        return;
    };
    for (k, v) in entries {
        match k.name.as_str() {
            "extensions" => cfg.service_extensions = id_list(v, "service::extensions", errors),
            "pipelines" => read_pipelines(v, cfg, errors),
            "telemetry" => match from_node::<TelemetryConfig>(v) {
                Ok(t) => {
                    for e in check_telemetry(&t, v) {
                        errors.de("service::telemetry", v.pos, e);
                    }
                    cfg.telemetry = t;
                }
                Err(e) => errors.de("service::telemetry", v.pos, e),
            },
            "shutdown_timeout" => match from_node::<DurationField>(v) {
                Ok(d) => cfg.shutdown_timeout = d.0,
                Err(e) => errors.de(
                    "service",
                    v.pos,
                    DeError {
                        path: vec!["shutdown_timeout".into()],
                        ..e
                    },
                ),
            },
            "queue_memory_limit_mib" => match from_node::<u64>(v) {
                Ok(n) if n <= 1 << 30 => cfg.queue_memory_limit_mib = n,
                Ok(n) => errors.at(
                    v.pos,
                    Some("service"),
                    Some("queue_memory_limit_mib"),
                    format!("{n} MiB is more than any machine has; 0 lifts the bound"),
                ),
                Err(e) => errors.de(
                    "service",
                    v.pos,
                    DeError {
                        path: vec!["queue_memory_limit_mib".into()],
                        ..e
                    },
                ),
            },
            _ => errors.at(
                k.pos,
                Some("service"),
                Some(&k.name),
                "unknown key; expected extensions, pipelines, telemetry, shutdown_timeout or queue_memory_limit_mib",
            ),
        }
    }
}

/// The checks of `service.telemetry` that serde cannot make: readers and log processors with
/// exactly one kind each, OTLP exporters with a protocol, endpoint and options ferrotel has.
fn check_telemetry(t: &TelemetryConfig, node: &Node) -> Vec<DeError> {
    let mut out = Vec::new();
    let exporter = |e: &PushExporter, at: &[&str], out: &mut Vec<DeError>| {
        let path: Vec<&str> = at.iter().copied().chain(["exporter"]).collect();
        let n = [
            e.otlp.is_some(),
            e.otlp_http.is_some(),
            e.otlp_grpc.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            out.push(key_err(
                node,
                &path,
                "needs exactly one of `otlp`, `otlp_http`, `otlp_grpc`",
            ));
            return;
        }
        let Some((o, protocol)) = e.otlp() else {
            return;
        };
        let mut p = path.clone();
        p.push(if e.otlp.is_some() {
            "otlp"
        } else if e.otlp_http.is_some() {
            "otlp_http"
        } else {
            "otlp_grpc"
        });
        let at = |k: &'static str| {
            let mut q = p.clone();
            q.push(k);
            q
        };
        if let Some(pr) = o.protocol.as_deref()
            && !matches!(pr, "grpc" | "http/protobuf")
        {
            out.push(key_err(
                node,
                &at("protocol"),
                format!("{pr:?} is not supported; use `grpc` or `http/protobuf`"),
            ));
        }
        if o.endpoint.is_empty() {
            out.push(key_err(node, &at("endpoint"), "is required"));
        } else if protocol == "http/protobuf"
            && let Err(m) = crate::net::client::check_http_url(&o.endpoint)
        {
            out.push(key_err(node, &at("endpoint"), m));
        } else if protocol == "grpc"
            && let Err(m) =
                crate::net::client::parse_endpoint(&o.endpoint, o.insecure.unwrap_or(false))
        {
            out.push(key_err(node, &at("endpoint"), m));
        }
        if let Some(c) = o.compression.as_deref()
            && !matches!(c, "gzip" | "none" | "")
        {
            out.push(key_err(
                node,
                &at("compression"),
                format!("{c:?}: expected `gzip` or `none`"),
            ));
        }
        if let Some(t) = o.temporality_preference.as_deref()
            && !matches!(t, "cumulative" | "delta" | "lowmemory")
        {
            out.push(key_err(
                node,
                &at("temporality_preference"),
                format!("{t:?}: expected `cumulative`, `delta` or `lowmemory`"),
            ));
        }
    };
    for (i, r) in t.metrics.readers.iter().enumerate() {
        let idx = format!("[{i}]");
        let at = ["metrics", "readers", idx.as_str()];
        match (&r.pull, &r.periodic) {
            (Some(_), None) => {}
            (None, Some(p)) => exporter(&p.exporter, &[&at[..], &["periodic"]].concat(), &mut out),
            _ => out.push(key_err(
                node,
                &at,
                "a reader is exactly one of `pull` or `periodic`",
            )),
        }
    }
    let processors = t
        .logs
        .processors
        .iter()
        .map(|p| ("logs", p))
        .chain(t.traces.processors.iter().map(|p| ("traces", p)));
    let mut index = std::collections::HashMap::new();
    for (signal, p) in processors {
        let i = index.entry(signal).or_insert(0usize);
        let idx = format!("[{i}]");
        *i += 1;
        let at = [signal, "processors", idx.as_str()];
        match (&p.batch, &p.simple) {
            (Some(b), None) => exporter(&b.exporter, &[&at[..], &["batch"]].concat(), &mut out),
            (None, Some(b)) => exporter(&b.exporter, &[&at[..], &["simple"]].concat(), &mut out),
            _ => out.push(key_err(
                node,
                &at,
                "a log processor is exactly one of `batch` or `simple`",
            )),
        }
    }
    out
}

struct DurationField(Duration);
impl<'de> Deserialize<'de> for DurationField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        units::duration(d).map(DurationField)
    }
}

fn read_pipelines(node: &Node, cfg: &mut Config, errors: &mut Errors) {
    let Some(entries) = node.entries() else {
        errors.at(
            node.pos,
            Some("service"),
            Some("pipelines"),
            format!("must be a mapping, found {}", node.kind()),
        );
        return;
    };
    for (k, v) in entries {
        let what = format!("service::pipelines::{}", k.name);
        let (sig, name) = match k.name.split_once('/') {
            Some((s, n)) => (s, Some(n.to_owned())),
            None => (k.name.as_str(), None),
        };
        let signal = match sig {
            "traces" => Signal::Traces,
            "metrics" => Signal::Metrics,
            "logs" => Signal::Logs,
            "profiles" => Signal::Profiles,
            other => {
                errors.at(
                    k.pos,
                    Some(&what),
                    None,
                    format!("unknown signal {other:?} in pipeline id; expected traces, metrics, logs or profiles (optionally /name)"),
                );
                continue;
            }
        };
        if name.as_deref() == Some("") {
            errors.at(
                k.pos,
                Some(&what),
                None,
                "the pipeline name after `/` must not be empty",
            );
            continue;
        }
        let mut p = PipelineDef {
            signal,
            name,
            pos: k.pos,
            receivers: Vec::new(),
            processors: Vec::new(),
            exporters: Vec::new(),
        };
        let Some(fields) = v.entries() else {
            errors.at(
                v.pos,
                Some(&what),
                None,
                format!("must be a mapping, found {}", v.kind()),
            );
            continue;
        };
        for (fk, fv) in fields {
            match fk.name.as_str() {
                "receivers" => p.receivers = id_list(fv, &what, errors),
                "processors" => p.processors = id_list(fv, &what, errors),
                "exporters" => p.exporters = id_list(fv, &what, errors),
                _ => errors.at(
                    fk.pos,
                    Some(&what),
                    Some(&fk.name),
                    "unknown key; expected receivers, processors or exporters",
                ),
            }
        }
        cfg.pipelines.push(p);
    }
}

/// For `Option<T>` keys where writing the key with no value means "on, with defaults"
/// (`grpc:`, `sending_queue: batch:`), as in the Collector. Use with `#[serde(default)]`.
pub fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

thread_local! {
    /// Old keys a component's parse accepted, with what to write instead; taken by the
    /// validation after each component so the warning names its file and line.
    static KEY_WARNINGS: std::cell::RefCell<Vec<DeError>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records that an accepted key is deprecated (`msg` says what replaces it).
pub fn warn_key(node: &Node, path: &[&str], msg: impl Into<String>) {
    let w = key_err(node, path, msg);
    KEY_WARNINGS.with(|k| k.borrow_mut().push(w));
}

/// The warnings [`warn_key`] recorded on this thread since the last call.
pub fn take_key_warnings() -> Vec<DeError> {
    KEY_WARNINGS.with(|k| std::mem::take(&mut *k.borrow_mut()))
}

/// A config error at a key path inside a component's node (at the deepest key that exists).
/// The Collector's `error_mode` (OTTL components, k8sobjects): what a failure does — `propagate`
/// it (the default), `ignore` it with a log line, or stay `silent`.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    Ignore,
    Silent,
    #[default]
    Propagate,
}

pub fn key_err(node: &Node, path: &[&str], msg: impl Into<String>) -> DeError {
    let mut n = node;
    for p in path {
        let next = match (
            &n.value,
            p.strip_prefix('[').and_then(|i| i.strip_suffix(']')),
        ) {
            (Value::Seq(items), Some(i)) => i.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => n.get(p),
        };
        match next {
            Some(c) => n = c,
            None => break,
        }
    }
    DeError {
        pos: Some(n.pos),
        path: path.iter().map(|s| s.to_string()).collect(),
        msg: msg.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(body: &str) -> (Option<Config>, Vec<String>) {
        let yaml = format!(
            "receivers:\n  nop:\nexporters:\n  nop:\nservice:\n{body}  pipelines:\n    logs:\n      receivers: [nop]\n      exporters: [nop]\n"
        );
        let mut errors = Errors::new("t.yaml");
        let cfg = load_str(&yaml, &|_| None, &mut errors);
        (cfg, errors.list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn queue_memory_limit_defaults_reads_and_names_its_key_when_wrong() {
        let (cfg, e) = service("");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            cfg.unwrap().queue_memory_limit_mib,
            DEFAULT_QUEUE_MEMORY_MIB
        );
        let (cfg, e) = service("  queue_memory_limit_mib: 0\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(cfg.unwrap().queue_memory_limit_mib, 0);
        let (_, e) = service("  queue_memory_limit_mib: lots\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.yaml:6:")
                && e[0].contains("service")
                && e[0].contains("queue_memory_limit_mib"),
            "{e:?}"
        );
        let (_, e) = service("  queue_memory_limit_mib: 99999999999\n");
        assert!(e.len() == 1 && e[0].contains("0 lifts the bound"), "{e:?}");
    }
}
