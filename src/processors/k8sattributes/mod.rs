//! `k8sattributes` processor: adds Kubernetes metadata to the resource of every span, data point
//! and log record, found by `pod_association` (by default the resource attributes `k8s.pod.ip`,
//! `k8s.pod.uid`, `container.id`, then the sending connection's IP; the legacy flat
//! `from`/`name` entries are read too, with a warning) in a cache that watches the API server
//! ([`kube`]). `extract.metadata` chooses among the Collector's keys ([`METADATA`]): the pod's
//! names, uid, IP, hostname and start time; its node's name and uid; the cluster's uid (the
//! `kube-system` namespace's); the names and uids of its ReplicaSet, Deployment (through the
//! ReplicaSet), StatefulSet, DaemonSet, Job and CronJob (through the Job); the container's name
//! (from the resource, or found by `container.id`), image name, tag and repo digests; and
//! `service.namespace`/`name`/`version`/`instance.id` by the semantic conventions' order.
//! `extract.otel_annotations` copies `resource.opentelemetry.io/*` pod annotations first;
//! `extract.labels`/`annotations` copy pod or namespace labels by key or regex. Attributes
//! already present are kept. `exclude.pods` leaves pods out by name; `wait_for_metadata` holds
//! the start until the pods are listed.
//!
//! `filter.node_from_env_var` makes a DaemonSet agent watch only its own node's pods;
//! `passthrough: true` watches nothing and only adds `k8s.pod.ip` from the connection (an agent
//! in front of an enriching gateway). While the API cannot be reached, data flows unenriched and
//! is counted in `otelcol_processor_k8sattributes_unenriched_resources{reason}`.

pub mod cache;

use std::sync::{Arc, OnceLock};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prometheus_client::metrics::counter::Counter;
use regex::Regex;
use serde::Deserialize;

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::key_err;
use crate::config::{DeError, Node, from_node};
use crate::kube::{self, ApiConfig, Pod};
use crate::signal::{Batch, Signal};
use crate::telemetry::ProcessorDropLabels;
use cache::{WatchSpec, Watcher};

pub use crate::kube::AuthType;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterCfg {
    /// The environment variable holding this node's name (downward API `spec.nodeName`).
    pub node_from_env_var: Option<String>,
    pub node: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FieldExtract {
    /// Attribute name; default `k8s.pod.labels.<key>` (annotations, namespace: alike). With
    /// `key_regex`, `$1`… refer to its groups.
    pub tag_name: Option<String>,
    pub key: Option<String>,
    pub key_regex: Option<String>,
    /// `pod` (default) or `namespace`.
    pub from: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractCfg {
    pub metadata: Vec<String>,
    pub labels: Vec<FieldExtract>,
    pub annotations: Vec<FieldExtract>,
    /// Pod annotations `resource.opentelemetry.io/<key>` become resource attributes `<key>`
    /// (before the `service.*` rules, which they then take precedence over). Default false.
    pub otel_annotations: bool,
}

impl Default for ExtractCfg {
    fn default() -> Self {
        ExtractCfg {
            metadata: [
                "k8s.namespace.name",
                "k8s.pod.name",
                "k8s.pod.uid",
                "k8s.pod.start_time",
                "k8s.deployment.name",
                "k8s.node.name",
            ]
            .map(String::from)
            .to_vec(),
            labels: Vec::new(),
            annotations: Vec::new(),
            otel_annotations: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceCfg {
    /// `resource_attribute` or `connection`.
    pub from: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// One association rule: `sources` (all must match), or the legacy flat form, one source
/// written as `from`/`name` directly (deprecated, warns).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssociationCfg {
    #[serde(default)]
    pub sources: Vec<SourceCfg>,
    pub from: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExcludePod {
    /// A regular expression on the pod name.
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExcludeCfg {
    #[serde(default)]
    pub pods: Vec<ExcludePod>,
}

impl Default for ExcludeCfg {
    /// The Collector's default: its own Jaeger pods.
    fn default() -> Self {
        ExcludeCfg {
            pods: ["jaeger-agent", "jaeger-collector"]
                .map(|n| ExcludePod { name: n.into() })
                .to_vec(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub auth_type: AuthType,
    pub passthrough: bool,
    pub filter: FilterCfg,
    pub extract: ExtractCfg,
    pub pod_association: Vec<AssociationCfg>,
    /// Pods left out of the cache (default: `jaeger-agent`, `jaeger-collector`).
    pub exclude: ExcludeCfg,
    /// Start only once the pods are listed, failing the start after
    /// `wait_for_metadata_timeout` (default 10s). Default false: start at once, and data that
    /// comes before the list is counted as unenriched.
    pub wait_for_metadata: bool,
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub wait_for_metadata_timeout: Option<std::time::Duration>,
}

/// The Collector's `extract.metadata` keys, all supported.
const METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.hostname",
    "k8s.pod.uid",
    "k8s.pod.ip",
    "k8s.pod.start_time",
    "k8s.node.name",
    "k8s.node.uid",
    "k8s.cluster.uid",
    "k8s.deployment.name",
    "k8s.deployment.uid",
    "k8s.replicaset.name",
    "k8s.replicaset.uid",
    "k8s.statefulset.name",
    "k8s.statefulset.uid",
    "k8s.daemonset.name",
    "k8s.daemonset.uid",
    "k8s.job.name",
    "k8s.job.uid",
    "k8s.cronjob.name",
    "k8s.cronjob.uid",
    "k8s.container.name",
    "container.image.name",
    "container.image.tag",
    "container.image.repo_digests",
    "container.id",
    "service.namespace",
    "service.name",
    "service.version",
    "service.instance.id",
];

/// Keys of old Collectors, accepted with a warning and never set.
const REMOVED_METADATA: &[(&str, &str)] = &[(
    "k8s.cluster.name",
    "deprecated and never set: Kubernetes removed the pod's clusterName field in 1.25 (use the resource processor to set it)",
)];

#[derive(Debug, Clone)]
enum Source {
    Attribute(String),
    Connection,
}

#[derive(Debug, Clone)]
struct Rule {
    tag: Option<String>,
    key: Option<String>,
    regex: Option<Regex>,
    namespace: bool,
    default_prefix: &'static str,
}

struct Shared {
    cfg: Config,
    associations: Vec<Vec<Source>>,
    labels: Vec<Rule>,
    annotations: Vec<Rule>,
    watcher: OnceLock<Result<Arc<Watcher>, String>>,
}

fn rules(
    list: &[FieldExtract],
    node: &Node,
    key: &str,
    pod_prefix: &'static str,
    ns_prefix: &'static str,
) -> Result<Vec<Rule>, DeError> {
    list.iter()
        .map(|f| {
            let err = |m: String| key_err(node, &["extract", key], m);
            let namespace = match f.from.as_deref() {
                None | Some("pod") => false,
                Some("namespace") => true,
                Some(other) => {
                    return Err(err(format!("from must be pod or namespace, got {other:?}")));
                }
            };
            if f.key.is_some() == f.key_regex.is_some() {
                return Err(err("set exactly one of key and key_regex".into()));
            }
            let regex = match &f.key_regex {
                Some(r) => Some(
                    Regex::new(&format!("^(?:{r})$"))
                        .map_err(|e| err(format!("invalid key_regex: {e}")))?,
                ),
                None => None,
            };
            Ok(Rule {
                tag: f.tag_name.clone(),
                key: f.key.clone(),
                regex,
                namespace,
                default_prefix: if namespace { ns_prefix } else { pod_prefix },
            })
        })
        .collect()
}

/// `k8sattributes`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "k8sattributes",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
)
.aliases(&["k8s_attributes"]);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let mut cfg: Config = from_node(node)?;
    let mut removed = Vec::new();
    for (i, m) in cfg.extract.metadata.iter().enumerate() {
        if let Some((_, why)) = REMOVED_METADATA.iter().find(|(k, _)| k == m) {
            crate::config::warn_key(
                node,
                &["extract", "metadata", &format!("[{i}]")],
                format!("`{m}`: {why}"),
            );
            removed.push(m.clone());
            continue;
        }
        if !METADATA.contains(&m.as_str()) {
            return Err(key_err(
                node,
                &["extract", "metadata"],
                format!(
                    "unsupported metadata {m:?}; supported: {}",
                    METADATA.join(", ")
                ),
            ));
        }
    }
    cfg.extract.metadata.retain(|m| !removed.contains(m));
    for (i, a) in cfg.pod_association.iter_mut().enumerate() {
        if a.from.is_none() && a.name.is_none() {
            if a.sources.is_empty() {
                return Err(key_err(
                    node,
                    &["pod_association", &format!("[{i}]")],
                    "an association needs `sources`",
                ));
            }
            continue;
        }
        if !a.sources.is_empty() {
            return Err(key_err(
                node,
                &["pod_association", &format!("[{i}]"), "from"],
                "write `sources` or the legacy `from`/`name`, not both",
            ));
        }
        crate::config::warn_key(
            node,
            &["pod_association", &format!("[{i}]"), "from"],
            "deprecated flat form: write `sources: [{from: ..., name: ...}]`",
        );
        a.sources = vec![SourceCfg {
            from: a.from.take().unwrap_or_default(),
            name: a.name.take(),
        }];
    }
    for (i, p) in cfg.exclude.pods.iter().enumerate() {
        Regex::new(&p.name).map_err(|e| {
            key_err(
                node,
                &["exclude", "pods", &format!("[{i}]"), "name"],
                format!("invalid regex: {e}"),
            )
        })?;
    }
    let associations = if cfg.pod_association.is_empty() {
        vec![
            vec![Source::Attribute("k8s.pod.ip".into())],
            vec![Source::Attribute("k8s.pod.uid".into())],
            vec![Source::Attribute("container.id".into())],
            vec![Source::Connection],
        ]
    } else {
        cfg.pod_association
            .iter()
            .map(|a| {
                a.sources
                    .iter()
                    .map(|s| match (s.from.as_str(), &s.name) {
                        ("connection", _) => Ok(Source::Connection),
                        ("resource_attribute", Some(n)) => Ok(Source::Attribute(n.clone())),
                        ("resource_attribute", None) => Err(key_err(
                            node,
                            &["pod_association"],
                            "a resource_attribute source needs a name (k8s.pod.ip, k8s.pod.uid, container.id)",
                        )),
                        (other, _) => Err(key_err(
                            node,
                            &["pod_association"],
                            format!("unknown source {other:?}: use resource_attribute or connection"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if let Some(var) = &cfg.filter.node_from_env_var
        && var.is_empty()
    {
        return Err(key_err(
            node,
            &["filter", "node_from_env_var"],
            "must name a variable",
        ));
    }
    let labels = rules(
        &cfg.extract.labels,
        node,
        "labels",
        "k8s.pod.labels.",
        "k8s.namespace.labels.",
    )?;
    let annotations = rules(
        &cfg.extract.annotations,
        node,
        "annotations",
        "k8s.pod.annotations.",
        "k8s.namespace.annotations.",
    )?;
    Ok(Box::new(Shared {
        cfg,
        associations,
        labels,
        annotations,
        watcher: OnceLock::new(),
    }))
}

impl Shared {
    /// One watcher per processor id, shared by the pipelines that list it.
    fn watcher(&self, ctx: &Context) -> Result<Option<Arc<Watcher>>, String> {
        if self.cfg.passthrough {
            return Ok(None);
        }
        self.watcher
            .get_or_init(|| {
                let api = ApiConfig::from_auth(self.cfg.auth_type, None)?;
                let node = match &self.cfg.filter.node_from_env_var {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("filter.node_from_env_var: environment variable {var} is not set")
                    })?),
                    None => self.cfg.filter.node.clone(),
                };
                let wants = |k: &str| self.cfg.extract.metadata.iter().any(|m| m == k);
                let spec = WatchSpec {
                    node,
                    namespace: self.cfg.filter.namespace.clone(),
                    namespaces: self.labels.iter().chain(&self.annotations).any(|r| r.namespace)
                        || wants("k8s.cluster.uid"),
                    jobs: wants("k8s.cronjob.uid"),
                    nodes: wants("k8s.node.uid"),
                    exclude: self
                        .cfg
                        .exclude
                        .pods
                        .iter()
                        .filter_map(|p| Regex::new(&p.name).ok())
                        .collect(),
                };
                tracing::info!(processor = %ctx.id, server = %api.server, node = ?spec.node, "watching the Kubernetes API");
                Watcher::start(api, spec, ctx.shutdown.clone())
            })
            .clone()
            .map(Some)
    }
}

impl ProcessorConfig for Shared {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let watcher = self
            .watcher(&ctx)
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        let counter = |reason: &str| {
            ctx.telemetry
                .k8s_unenriched
                .get_or_create(&ProcessorDropLabels {
                    processor: ctx.id.to_string(),
                    pipeline: ctx.pipeline.clone(),
                    otel_signal: signal.to_string(),
                    reason: reason.into(),
                })
                .clone()
        };
        if self.cfg.wait_for_metadata
            && let Some(w) = &watcher
        {
            let timeout = self
                .cfg
                .wait_for_metadata_timeout
                .unwrap_or(std::time::Duration::from_secs(10));
            wait_synced(w, timeout).map_err(|m| BuildError::new(&ctx.id, m))?;
        }
        let e = Enricher {
            watcher,
            metadata: self.cfg.extract.metadata.clone(),
            otel_annotations: self.cfg.extract.otel_annotations,
            associations: self.associations.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            unreachable: counter("api_unreachable"),
            not_found: counter("pod_not_found"),
            no_association: counter("no_association"),
        };
        Ok(InPlace::build(&ctx, signal, next, e, "filtered"))
    }
}

/// `wait_for_metadata`: holds the start until the pods are listed. The start runs on the
/// runtime, so the wait gives its worker thread up to the others while it blocks.
fn wait_synced(w: &Watcher, timeout: std::time::Duration) -> Result<(), String> {
    let synced = || w.cache.read().map(|c| c.synced).unwrap_or(false);
    let deadline = std::time::Instant::now() + timeout;
    let poll = || {
        while !synced() {
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "wait_for_metadata: the pods were not listed within {timeout:?} (is the API server reachable?)"
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(poll),
        _ => poll(),
    }
}

struct Enricher {
    watcher: Option<Arc<Watcher>>,
    metadata: Vec<String>,
    otel_annotations: bool,
    associations: Vec<Vec<Source>>,
    labels: Vec<Rule>,
    annotations: Vec<Rule>,
    unreachable: Counter,
    not_found: Counter,
    no_association: Counter,
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match crate::signal::value::find_value(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn insert(attrs: &mut Vec<KeyValue>, key: &str, value: &str) {
    if value.is_empty() || attrs.iter().any(|kv| kv.key == key) {
        return;
    }
    attrs.push(KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    });
}

/// `registry:5000/team/app:1.2` → (`registry:5000/team/app`, `1.2`); no tag → `latest`; a
/// digest (`@sha256:…`) is not a tag.
pub fn image_parts(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// A Job made by a CronJob is named `<cronjob>-<schedule time in minutes>`.
fn cronjob_of(job: &str) -> Option<&str> {
    let (base, suffix) = job.rsplit_once('-')?;
    (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

impl Enricher {
    /// The pod of a resource. As in the Collector, the first association whose sources are all
    /// present identifies the pod; later rules are not tried when it is unknown. Returns the pod
    /// and whether any rule identified one.
    fn find(
        &self,
        cache: &cache::Cache,
        attrs: &[KeyValue],
        peer: Option<&str>,
    ) -> (Option<Arc<Pod>>, bool) {
        for rule in &self.associations {
            let values: Option<Vec<(&Source, &str)>> = rule
                .iter()
                .map(|src| match src {
                    Source::Connection => peer.map(|p| (src, p)),
                    Source::Attribute(name) => get(attrs, name).map(|v| (src, v)),
                })
                .collect();
            let Some(values) = values else { continue };
            let mut uid: Option<&String> = None;
            for (src, v) in values {
                let found = match src {
                    Source::Connection => cache.by_ip.get(v),
                    Source::Attribute(name) => match name.as_str() {
                        "k8s.pod.uid" => cache.pods.get_key_value(v).map(|(k, _)| k),
                        "container.id" => {
                            kube::container_id(v).and_then(|id| cache.by_container.get(id))
                        }
                        _ => cache.by_ip.get(v),
                    },
                };
                match (found, uid) {
                    (Some(f), None) => uid = Some(f),
                    (Some(f), Some(u)) if f == u => {}
                    _ => return (None, true),
                }
            }
            return (uid.and_then(|u| cache.pods.get(u).cloned()), true);
        }
        (None, false)
    }

    fn enrich(&self, cache: &cache::Cache, attrs: &mut Vec<KeyValue>, pod: &Pod) {
        let m = &pod.metadata;
        let owner = |kind: &str| m.owner_references.iter().find(|o| o.kind == kind);
        let replicaset = owner("ReplicaSet");
        let job = owner("Job");
        let deployment = replicaset.and_then(|rs| {
            cache
                .replicasets
                .get(&(m.namespace.clone(), rs.name.clone()))
        });
        let cronjob = job.and_then(|j| cache.jobs.get(&(m.namespace.clone(), j.name.clone())));
        // The container: named by the resource, or found by its id in the pod's statuses.
        let container: Option<String> = get(attrs, "k8s.container.name")
            .map(str::to_owned)
            .or_else(|| {
                let id = get(attrs, "container.id")?;
                let id = kube::container_id(id).unwrap_or(id);
                pod.status
                    .container_statuses
                    .iter()
                    .find(|s| kube::container_id(&s.container_id) == Some(id))
                    .map(|s| s.name.clone())
            });
        let status = container
            .as_deref()
            .and_then(|c| pod.status.container_statuses.iter().find(|s| s.name == c));
        let spec_container = container.as_deref().and_then(|c| {
            pod.spec
                .containers
                .iter()
                .chain(&pod.spec.init_containers)
                .find(|x| x.name == c)
        });
        if self.otel_annotations {
            for (k, v) in &m.annotations {
                if let Some(key) = k.strip_prefix("resource.opentelemetry.io/") {
                    insert(attrs, key, v);
                }
            }
        }
        let label = |k: &str| m.labels.get(k).cloned();
        let first_owner_name = || {
            deployment
                .map(|d| d.0.clone())
                .or_else(|| replicaset.map(|o| o.name.clone()))
                .or_else(|| owner("StatefulSet").map(|o| o.name.clone()))
                .or_else(|| owner("DaemonSet").map(|o| o.name.clone()))
                .or_else(|| cronjob.map(|c| c.0.clone()))
                .or_else(|| job.and_then(|j| cronjob_of(&j.name)).map(str::to_owned))
                .or_else(|| job.map(|o| o.name.clone()))
                .or_else(|| Some(m.name.clone()))
        };
        for key in &self.metadata {
            let value: Option<String> = match key.as_str() {
                "k8s.namespace.name" => Some(m.namespace.clone()),
                "k8s.pod.name" => Some(m.name.clone()),
                "k8s.pod.hostname" => Some(if pod.spec.hostname.is_empty() {
                    m.name.clone()
                } else {
                    pod.spec.hostname.clone()
                }),
                "k8s.pod.uid" => Some(m.uid.clone()),
                "k8s.pod.ip" => Some(pod.status.pod_ip.clone()),
                "k8s.pod.start_time" => pod
                    .status
                    .start_time
                    .clone()
                    .or_else(|| m.creation_timestamp.clone()),
                "k8s.node.name" => Some(pod.spec.node_name.clone()),
                "k8s.node.uid" => cache.nodes.get(&pod.spec.node_name).cloned(),
                // The cluster's uid is, by convention, the kube-system namespace's.
                "k8s.cluster.uid" => cache
                    .namespaces
                    .get("kube-system")
                    .map(|n| n.metadata.uid.clone()),
                "k8s.replicaset.name" => replicaset.map(|o| o.name.clone()),
                "k8s.replicaset.uid" => replicaset.map(|o| o.uid.clone()),
                "k8s.deployment.name" => deployment.map(|d| d.0.clone()),
                "k8s.deployment.uid" => deployment.map(|d| d.1.clone()),
                "k8s.statefulset.name" => owner("StatefulSet").map(|o| o.name.clone()),
                "k8s.statefulset.uid" => owner("StatefulSet").map(|o| o.uid.clone()),
                "k8s.daemonset.name" => owner("DaemonSet").map(|o| o.name.clone()),
                "k8s.daemonset.uid" => owner("DaemonSet").map(|o| o.uid.clone()),
                "k8s.job.name" => job.map(|o| o.name.clone()),
                "k8s.job.uid" => job.map(|o| o.uid.clone()),
                "k8s.cronjob.name" => cronjob
                    .map(|c| c.0.clone())
                    .or_else(|| job.and_then(|j| cronjob_of(&j.name)).map(str::to_owned)),
                "k8s.cronjob.uid" => cronjob.map(|c| c.1.clone()),
                "k8s.container.name" => container.clone(),
                "container.image.name" => {
                    spec_container.map(|c| image_parts(&c.image).0.to_owned())
                }
                "container.image.tag" => spec_container.map(|c| image_parts(&c.image).1.to_owned()),
                "container.image.repo_digests" => {
                    if let Some(s) = status
                        && let Some((_, digest)) = s.image_id.rsplit_once('@')
                        && !attrs.iter().any(|kv| kv.key == *key)
                    {
                        let repo = spec_container.map_or("", |c| image_parts(&c.image).0);
                        attrs.push(KeyValue {
                            key: key.clone(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::ArrayValue(
                                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                                        values: vec![AnyValue {
                                            value: Some(any_value::Value::StringValue(format!(
                                                "{repo}@{digest}"
                                            ))),
                                        }],
                                    },
                                )),
                            }),
                            ..Default::default()
                        });
                    }
                    None
                }
                "container.id" => status
                    .and_then(|s| kube::container_id(&s.container_id))
                    .map(str::to_owned),
                // Semantic conventions' "Service attributes" order (the annotations, when
                // `otel_annotations` is on, were inserted first and so win).
                "service.namespace" => Some(m.namespace.clone()),
                "service.name" => label("app.kubernetes.io/instance")
                    .or_else(|| label("app.kubernetes.io/name"))
                    .or_else(first_owner_name),
                "service.version" => label("app.kubernetes.io/version").or_else(|| {
                    let tag = spec_container.map(|c| image_parts(&c.image).1.to_owned());
                    let digest = status
                        .and_then(|s| s.image_id.rsplit_once('@'))
                        .map(|(_, d)| d.to_owned());
                    match (tag, digest) {
                        (Some(t), Some(d)) => Some(format!("{t}@{d}")),
                        (None, Some(d)) => Some(d),
                        (t, None) => t,
                    }
                }),
                "service.instance.id" => container
                    .as_deref()
                    .map(|c| format!("{}.{}.{c}", m.namespace, m.name)),
                _ => None,
            };
            if let Some(v) = value {
                insert(attrs, key, &v);
            }
        }
        let ns_meta = cache.namespaces.get(&m.namespace);
        for (rules, pod_map, ns_map) in [
            (&self.labels, &m.labels, ns_meta.map(|n| &n.metadata.labels)),
            (
                &self.annotations,
                &m.annotations,
                ns_meta.map(|n| &n.metadata.annotations),
            ),
        ] {
            for r in rules {
                let Some(map) = (if r.namespace { ns_map } else { Some(pod_map) }) else {
                    continue;
                };
                match (&r.key, &r.regex) {
                    (Some(k), _) => {
                        if let Some(v) = map.get(k) {
                            let tag = r
                                .tag
                                .clone()
                                .unwrap_or_else(|| format!("{}{k}", r.default_prefix));
                            insert(attrs, &tag, v);
                        }
                    }
                    (None, Some(re)) => {
                        for (k, v) in map {
                            if let Some(caps) = re.captures(k) {
                                let tag = match &r.tag {
                                    Some(t) => {
                                        let mut out = String::new();
                                        caps.expand(t, &mut out);
                                        out
                                    }
                                    None => format!("{}{k}", r.default_prefix),
                                };
                                insert(attrs, &tag, v);
                            }
                        }
                    }
                    (None, None) => {}
                }
            }
        }
    }
}

impl Transform for Enricher {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let peer = crate::client::with(|c| c.and_then(|c| c.addr).map(|ip| ip.to_string()));
        let cache = self
            .watcher
            .as_ref()
            .map(|w| (w, w.cache.read().unwrap_or_else(|p| p.into_inner())));
        // One resource's attributes and how many items it holds (for the counters).
        let handle = |attrs: &mut Vec<KeyValue>, n: u64| {
            let Some((w, cache)) = &cache else {
                // Passthrough: only the pod IP, from the connection.
                if let Some(ip) = &peer {
                    insert(attrs, "k8s.pod.ip", ip);
                }
                return;
            };
            let (pod, identified) = self.find(cache, attrs, peer.as_deref());
            let reachable = w.reachable.load(std::sync::atomic::Ordering::Relaxed) && cache.synced;
            match pod {
                Some(pod) => self.enrich(cache, attrs, &pod),
                None if !reachable => {
                    self.unreachable.inc_by(n);
                }
                None if !identified => {
                    self.no_association.inc_by(n);
                }
                None => {
                    self.not_found.inc_by(n);
                }
            }
        };
        let attrs = |r: &mut Option<opentelemetry_proto::tonic::resource::v1::Resource>| {
            std::mem::take(&mut r.get_or_insert_with(Default::default).attributes)
        };
        let put = |r: &mut Option<opentelemetry_proto::tonic::resource::v1::Resource>, a| {
            r.get_or_insert_with(Default::default).attributes = a;
        };
        match batch {
            Batch::Traces(rs) => {
                for r in rs {
                    let n = r.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
                    let mut a = attrs(&mut r.resource);
                    handle(&mut a, n);
                    put(&mut r.resource, a);
                }
            }
            Batch::Metrics(rm) => {
                for r in rm {
                    let n = r
                        .scope_metrics
                        .iter()
                        .flat_map(|s| &s.metrics)
                        .map(|m| m.data.as_ref().map_or(0, crate::signal::data_point_count) as u64)
                        .sum();
                    let mut a = attrs(&mut r.resource);
                    handle(&mut a, n);
                    put(&mut r.resource, a);
                }
            }
            Batch::Logs(rl) => {
                for r in rl {
                    let n = r
                        .scope_logs
                        .iter()
                        .map(|s| s.log_records.len() as u64)
                        .sum();
                    let mut a = attrs(&mut r.resource);
                    handle(&mut a, n);
                    put(&mut r.resource, a);
                }
            }
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn image_and_cronjob_names() {
        assert_eq!(image_parts("nginx"), ("nginx", "latest"));
        assert_eq!(image_parts("nginx:1.25"), ("nginx", "1.25"));
        assert_eq!(
            image_parts("registry:5000/team/app:2.0.1"),
            ("registry:5000/team/app", "2.0.1")
        );
        assert_eq!(
            image_parts("registry:5000/team/app"),
            ("registry:5000/team/app", "latest")
        );
        assert_eq!(image_parts("app@sha256:abcd"), ("app", "latest"));
        assert_eq!(cronjob_of("backup-28734120"), Some("backup"));
        assert_eq!(cronjob_of("backup"), None);
        assert_eq!(cronjob_of("db-migrate-v2"), None);
    }

    #[tokio::test]
    async fn passthrough_adds_only_the_connection_ip() {
        let e = Enricher {
            watcher: None,
            metadata: ExtractCfg::default().metadata,
            otel_annotations: false,
            associations: vec![vec![Source::Connection]],
            labels: vec![],
            annotations: vec![],
            unreachable: Counter::default(),
            not_found: Counter::default(),
            no_association: Counter::default(),
        };
        let mut b = crate::signal::testdata::spans("a", 1, 1);
        let client = crate::client::ClientInfo {
            addr: Some("10.4.0.12".parse().unwrap()),
            metadata: vec![],
            auth: vec![],
        };
        crate::client::scope(client, async { e.apply(&mut b).unwrap() }).await;
        let Batch::Traces(rs) = &b else { panic!() };
        let attrs = &rs[0].resource.as_ref().unwrap().attributes;
        assert_eq!(get(attrs, "k8s.pod.ip"), Some("10.4.0.12"));
        assert_eq!(
            attrs.len(),
            2,
            "service.name and the pod IP only: {attrs:?}"
        );
    }

    #[test]
    fn config_validation() {
        assert!(parse(&yaml("{}\n").unwrap()).is_ok());
        let e = parse(&yaml("extract:\n  metadata: [k8s.pod.name, k8s.pod.color]\n").unwrap())
            .err()
            .unwrap();
        assert!(
            e.msg.contains("unsupported metadata \"k8s.pod.color\""),
            "{}",
            e.msg
        );
        let e = parse(&yaml("pod_association:\n  - sources: [{from: somewhere}]\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("unknown source"), "{}", e.msg);
        let e = parse(&yaml("extract:\n  labels: [{key: a, key_regex: b}]\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("exactly one"), "{}", e.msg);
        let e = parse(&yaml("auth_type: token\n").unwrap()).err().unwrap();
        assert_eq!(e.path_string(), "auth_type");
    }
}
