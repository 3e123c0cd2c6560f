//! `k8sattributes` processor: adds Kubernetes metadata to the resource of every span, data point
//! and log record, found by `pod_association` (by default the resource attributes `k8s.pod.ip`,
//! `k8s.pod.uid`, `container.id`, then the sending connection's IP) in a cache that watches
//! the API server ([`kube`]). `extract.metadata` chooses among `k8s.namespace.name`,
//! `k8s.pod.name`, `k8s.pod.uid`, `k8s.pod.ip`, `k8s.pod.start_time`, `k8s.node.name`,
//! `k8s.deployment.name` (through the ReplicaSet's owner), `k8s.replicaset.name`,
//! `k8s.statefulset.name`, `k8s.daemonset.name`, `k8s.job.name`, `k8s.cronjob.name`, and, when
//! the resource names its `k8s.container.name`, `container.image.name`, `container.image.tag`
//! and `container.id`; `extract.labels`/`annotations` copy pod or namespace labels by key or
//! regex. Attributes already present are kept.
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

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub enum AuthType {
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    #[serde(rename = "kubeConfig")]
    KubeConfig,
    #[serde(rename = "none")]
    None,
}

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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssociationCfg {
    pub sources: Vec<SourceCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub auth_type: AuthType,
    pub passthrough: bool,
    pub filter: FilterCfg,
    pub extract: ExtractCfg,
    pub pod_association: Vec<AssociationCfg>,
    /// Accepted for compatibility: data is never held back waiting for metadata here.
    pub wait_for_metadata: bool,
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub wait_for_metadata_timeout: std::time::Duration,
}

const METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.ip",
    "k8s.pod.start_time",
    "k8s.node.name",
    "k8s.deployment.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.job.name",
    "k8s.cronjob.name",
    "container.image.name",
    "container.image.tag",
    "container.id",
];

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
    let cfg: Config = from_node(node)?;
    for m in &cfg.extract.metadata {
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
                let api = match self.cfg.auth_type {
                    AuthType::ServiceAccount => ApiConfig::in_cluster()?,
                    AuthType::KubeConfig => ApiConfig::from_kubeconfig()?,
                    AuthType::None => ApiConfig {
                        server: std::env::var("KUBERNETES_SERVICE_HOST")
                            .map(|h| format!("http://{h}:{}", std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "80".into())))
                            .map_err(|_| "auth_type none needs KUBERNETES_SERVICE_HOST".to_string())?,
                        token: None,
                        tls: Default::default(),
                    },
                };
                let node = match &self.cfg.filter.node_from_env_var {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("filter.node_from_env_var: environment variable {var} is not set")
                    })?),
                    None => self.cfg.filter.node.clone(),
                };
                let spec = WatchSpec {
                    node,
                    namespace: self.cfg.filter.namespace.clone(),
                    namespaces: self.labels.iter().chain(&self.annotations).any(|r| r.namespace),
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
        let e = Enricher {
            watcher,
            metadata: self.cfg.extract.metadata.clone(),
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

struct Enricher {
    watcher: Option<Arc<Watcher>>,
    metadata: Vec<String>,
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
        let owner = |kind: &str| {
            m.owner_references
                .iter()
                .find(|o| o.kind == kind)
                .map(|o| o.name.as_str())
        };
        let replicaset = owner("ReplicaSet");
        let job = owner("Job");
        let container = get(attrs, "k8s.container.name").map(str::to_owned);
        let spec_container = container.as_deref().and_then(|c| {
            pod.spec
                .containers
                .iter()
                .chain(&pod.spec.init_containers)
                .find(|x| x.name == c)
        });
        for key in &self.metadata {
            let value: Option<String> = match key.as_str() {
                "k8s.namespace.name" => Some(m.namespace.clone()),
                "k8s.pod.name" => Some(m.name.clone()),
                "k8s.pod.uid" => Some(m.uid.clone()),
                "k8s.pod.ip" => Some(pod.status.pod_ip.clone()),
                "k8s.pod.start_time" => pod
                    .status
                    .start_time
                    .clone()
                    .or_else(|| m.creation_timestamp.clone()),
                "k8s.node.name" => Some(pod.spec.node_name.clone()),
                "k8s.replicaset.name" => replicaset.map(str::to_owned),
                "k8s.deployment.name" => replicaset.and_then(|rs| {
                    cache
                        .replicasets
                        .get(&(m.namespace.clone(), rs.to_owned()))
                        .cloned()
                }),
                "k8s.statefulset.name" => owner("StatefulSet").map(str::to_owned),
                "k8s.daemonset.name" => owner("DaemonSet").map(str::to_owned),
                "k8s.job.name" => job.map(str::to_owned),
                "k8s.cronjob.name" => job.and_then(cronjob_of).map(str::to_owned),
                "container.image.name" => {
                    spec_container.map(|c| image_parts(&c.image).0.to_owned())
                }
                "container.image.tag" => spec_container.map(|c| image_parts(&c.image).1.to_owned()),
                "container.id" => container.as_deref().and_then(|c| {
                    pod.status
                        .container_statuses
                        .iter()
                        .find(|s| s.name == c)
                        .and_then(|s| kube::container_id(&s.container_id))
                        .map(str::to_owned)
                }),
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
