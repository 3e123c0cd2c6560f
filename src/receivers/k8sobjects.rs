//! `k8sobjects` receiver (alias `k8s_objects`): any Kubernetes resource as log records, as the
//! Collector's receiver writes them. `pull` lists the resource every `interval`, one record per
//! object with the object as its body; `watch` follows its changes, one record per change with
//! `{type, object}` as its body and `event.domain: k8s`, `event.name: <object name>`. Every
//! record has `k8s.resource.name` and its resource `k8s.namespace.name`. Where a resource lives
//! is found by API discovery (`group` narrows it). A watch resumes from the last version it saw
//! and relists after `410 Gone`; an unreachable API is retried with backoff and each failed read
//! counted in `ferrotel_receiver_source_errors_total`. With `k8s_leader_elector`, it runs only
//! while this collector holds the Lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::ApiSource;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, ErrorMode, Node, from_node, key_err, units};
use crate::kube::AuthType;
use crate::kube::discovery::{self, DiscoveryError};
use crate::kube::watch::{self, Event};
use crate::signal::value::{from_json, string_kv};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Pull,
    Watch,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum WatchType {
    #[serde(rename = "ADDED")]
    Added,
    #[serde(rename = "MODIFIED")]
    Modified,
    #[serde(rename = "DELETED")]
    Deleted,
}

/// `{strict: name}` or `{regexp: pattern}` (the Collector's `filter.Config`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceFilter {
    #[serde(default)]
    pub strict: Option<String>,
    #[serde(default)]
    pub regexp: Option<String>,
    #[serde(skip)]
    compiled: Option<regex::Regex>,
}

impl PartialEq for NamespaceFilter {
    fn eq(&self, o: &Self) -> bool {
        self.strict == o.strict && self.regexp == o.regexp
    }
}

impl NamespaceFilter {
    fn matches(&self, ns: &str) -> bool {
        self.strict.as_deref() == Some(ns) || self.compiled.as_ref().is_some_and(|r| r.is_match(ns))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    /// The resource's plural name (`pods`, `events`, `deployments`).
    pub name: String,
    /// `pull` (default) or `watch`.
    #[serde(default)]
    pub mode: Mode,
    /// Only these namespaces; default all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Objects in these namespaces are left out.
    #[serde(default)]
    pub exclude_namespaces: Vec<NamespaceFilter>,
    /// The API group (`events.k8s.io`); default: the core group, else the first group that
    /// has the resource.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub label_selector: Option<String>,
    #[serde(default)]
    pub field_selector: Option<String>,
    /// `pull`: how often. Default 1h.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub interval: Option<Duration>,
    /// `watch`: changes of these types are not reported.
    #[serde(default)]
    pub exclude_watch_type: Vec<WatchType>,
    /// `watch`: the version to start from instead of the current one.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Refused: needs `storage`, which this receiver does not take yet.
    #[serde(default)]
    pub persist_resource_version: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub kube_api_qps: Option<f32>,
    pub objects: Vec<ObjectConfig>,
    /// A resource the API server does not have: `propagate` (default) and `ignore` log an
    /// error, `silent` does not; the other objects run on.
    #[serde(default)]
    pub error_mode: ErrorMode,
    /// `watch`: report the objects as they are at start (type `ADDED`) before their changes.
    #[serde(default)]
    pub include_initial_state: bool,
    /// Run only while this `k8s_leader_elector` extension holds its Lease.
    #[serde(default)]
    pub k8s_leader_elector: Option<String>,
    /// Refused: resource versions are not persisted yet.
    #[serde(default)]
    pub storage: Option<String>,
}

const ONE_HOUR: Duration = Duration::from_secs(3600);
const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sobjectsreceiver";

pub const FACTORY: Factory =
    Factory::receiver("k8sobjects", crate::signal::LOGS, Stability::Alpha, parse)
        .aliases(&["k8s_objects"]);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    Ok(Box::new(parse_config(node)?))
}

pub fn parse_config(node: &Node) -> Result<Config, DeError> {
    let mut cfg: Config = from_node(node)?;
    if cfg.objects.is_empty() {
        return Err(key_err(node, &["objects"], "list at least one object"));
    }
    if cfg.storage.is_some() {
        return Err(key_err(
            node,
            &["storage"],
            "persisting resource versions is not built in ferrotel yet",
        ));
    }
    crate::kube::api_auth(node, &[], cfg.auth_type)?;
    for (i, o) in cfg.objects.iter_mut().enumerate() {
        let at = |k: &str, m: &str| key_err(node, &["objects", &format!("[{i}]"), k], m);
        if o.name.is_empty() {
            return Err(at("name", "must name a resource (its plural, e.g. pods)"));
        }
        match o.mode {
            Mode::Pull if !o.exclude_watch_type.is_empty() => {
                return Err(at("exclude_watch_type", "applies to mode: watch only"));
            }
            Mode::Pull if o.resource_version.is_some() => {
                return Err(at("resource_version", "applies to mode: watch only"));
            }
            Mode::Watch if o.interval.is_some() => {
                return Err(at("interval", "applies to mode: pull only"));
            }
            _ => {}
        }
        if o.interval.is_some_and(|d| d.is_zero()) {
            return Err(at("interval", "must be more than 0"));
        }
        if o.persist_resource_version {
            return Err(at(
                "persist_resource_version",
                "persisting resource versions is not built in ferrotel yet",
            ));
        }
        for (j, f) in o.exclude_namespaces.iter_mut().enumerate() {
            let at = |m: String| {
                key_err(
                    node,
                    &[
                        "objects",
                        &format!("[{i}]"),
                        "exclude_namespaces",
                        &format!("[{j}]"),
                    ],
                    m,
                )
            };
            if f.strict.is_some() == f.regexp.is_some() {
                return Err(at("set one of strict or regexp".into()));
            }
            if let Some(r) = &f.regexp {
                f.compiled =
                    Some(regex::Regex::new(r).map_err(|e| at(format!("invalid regexp: {e}")))?);
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
            let Some(consumer) = consumers[Signal::Logs.index()].clone() else {
                return Err(BuildError::new(&ctx.id, "no logs pipeline uses it"));
            };
            let leading = ctx
                .leaders
                .lookup(&self.k8s_leader_elector)
                .map_err(|e| BuildError::new(&ctx.id, e))?;
            let shared = Arc::new(Shared {
                src: ApiSource::new(&ctx, consumer, self.auth_type, &self.context)?,
                error_mode: self.error_mode,
                include_initial_state: self.include_initial_state,
            });
            let stop = CancellationToken::new();
            let objects = self.objects.clone();
            let task = tokio::spawn(crate::kube::lease::while_leader(
                leading,
                stop.clone(),
                move |token| {
                    let (shared, objects) = (shared.clone(), objects.clone());
                    async move {
                        let tasks: Vec<_> = objects
                            .into_iter()
                            .map(|o| tokio::spawn(object(shared.clone(), o, token.clone())))
                            .collect();
                        for t in tasks {
                            let _ = t.await;
                        }
                    }
                },
            ));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

struct Shared {
    src: ApiSource,
    error_mode: ErrorMode,
    include_initial_state: bool,
}

impl std::ops::Deref for Shared {
    type Target = ApiSource;
    fn deref(&self) -> &ApiSource {
        &self.src
    }
}

/// One configured object until `stop`: where it lives, then pulls or a watch per namespace.
async fn object(shared: Arc<Shared>, o: ObjectConfig, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    let found = loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = discovery::find(&shared.client, &shared.api, &o.name, o.group.as_deref()) => r,
        };
        match r {
            Ok(f) => break f,
            Err(DiscoveryError::NotFound(what)) => {
                if shared.error_mode != ErrorMode::Silent {
                    tracing::error!(receiver = %shared.id, resource = %what, "the API server has no such resource; this object is not collected");
                }
                return;
            }
            Err(DiscoveryError::Unreachable(e)) => {
                shared.failed(&format!("discovery {}", o.name));
                tracing::warn!(receiver = %shared.id, error = %e, retry_in = ?backoff, "Kubernetes API unreachable");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let namespaces: Vec<Option<String>> = if o.namespaces.is_empty() || !found.namespaced {
        vec![None]
    } else {
        o.namespaces.iter().cloned().map(Some).collect()
    };
    let mut query = Vec::new();
    if let Some(l) = &o.label_selector {
        query.push(("labelSelector".to_string(), l.clone()));
    }
    if let Some(f) = &o.field_selector {
        query.push(("fieldSelector".to_string(), f.clone()));
    }
    let tasks: Vec<_> = namespaces
        .into_iter()
        .map(|ns| {
            let resource = watch::Resource {
                path: found.path(&o.name, ns.as_deref()),
                query: query.clone(),
            };
            let (shared, o, stop) = (shared.clone(), o.clone(), stop.clone());
            tokio::spawn(async move {
                match o.mode {
                    Mode::Pull => pull(&shared, &o, &resource, stop).await,
                    Mode::Watch => {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = watch_one(&shared, &o, &resource) => {}
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn pull(
    shared: &Shared,
    o: &ObjectConfig,
    resource: &watch::Resource,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(o.interval.unwrap_or(ONE_HOUR));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = watch::list_all(&shared.client, &shared.api, resource) => r,
        };
        match r {
            Ok(items) => {
                let now = crate::component::now_nanos();
                let records = items
                    .into_iter()
                    .filter(|i| !excluded(o, i))
                    .map(|i| (namespace_of(&i), record(&o.name, now, None, i)));
                shared.push(Batch::Logs(by_namespace(records))).await;
            }
            Err(e) => {
                shared.failed(&resource.path);
                tracing::warn!(receiver = %shared.id, error = %e, "pull failed");
            }
        }
    }
}

async fn watch_one(shared: &Shared, o: &ObjectConfig, resource: &watch::Resource) {
    let mut listed_once = false;
    let from = o.resource_version.clone();
    let initial = shared.include_initial_state && from.is_none();
    watch::run_async(&shared.client, &shared.api, resource, from, |ev| {
        let now = crate::component::now_nanos();
        let (kind, objects) = match ev {
            Event::Listed(items) => {
                // The first list gives the version the watch starts from; its objects are the
                // state at start, reported only when asked for. A relist after 410 is not
                // reported: what changed in between is not known as changes.
                let first = !listed_once;
                listed_once = true;
                if first && initial {
                    (Some(WatchType::Added), items.into_iter().collect())
                } else {
                    (None, Vec::new())
                }
            }
            Event::Added(o) => (Some(WatchType::Added), vec![o]),
            Event::Applied(o) => (Some(WatchType::Modified), vec![o]),
            Event::Deleted(o) => (Some(WatchType::Deleted), vec![o]),
            Event::Reachable(false) => {
                shared.failed(&resource.path);
                (None, Vec::new())
            }
            Event::Reachable(true) => (None, Vec::new()),
        };
        let logs = match kind {
            Some(k) if !o.exclude_watch_type.contains(&k) => by_namespace(
                objects
                    .into_iter()
                    .filter(|i| !excluded(o, i))
                    .map(|i| (namespace_of(&i), record(&o.name, now, Some(k), i))),
            ),
            _ => Vec::new(),
        };
        shared.push(Batch::Logs(logs))
    })
    .await
}

fn namespace_of(o: &serde_json::Value) -> String {
    o.pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_owned()
}

fn excluded(o: &ObjectConfig, obj: &serde_json::Value) -> bool {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("");
    o.exclude_namespaces.iter().any(|f| f.matches(ns))
}

fn record(resource: &str, now: u64, watch: Option<WatchType>, obj: serde_json::Value) -> LogRecord {
    let mut attributes = vec![string_kv("k8s.resource.name", resource)];
    let body = match watch {
        None => from_json(obj),
        Some(t) => {
            if let Some(name) = obj
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .filter(|n| !n.is_empty())
            {
                attributes.push(string_kv("event.domain", "k8s"));
                attributes.push(string_kv("event.name", name));
            }
            let t = match t {
                WatchType::Added => "ADDED",
                WatchType::Modified => "MODIFIED",
                WatchType::Deleted => "DELETED",
            };
            from_json(serde_json::json!({"type": t, "object": obj}))
        }
    };
    LogRecord {
        observed_time_unix_nano: now,
        attributes,
        body: Some(body),
        ..Default::default()
    }
}

/// One resource per namespace (with `k8s.namespace.name` when there is one), in first-seen order.
fn by_namespace(records: impl Iterator<Item = (String, LogRecord)>) -> Vec<ResourceLogs> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    for (ns, r) in records {
        if !groups.contains_key(&ns) {
            order.push(ns.clone());
        }
        groups.entry(ns).or_default().push(r);
    }
    order
        .into_iter()
        .map(|ns| {
            let log_records = groups.remove(&ns).unwrap_or_default();
            let attributes = if ns.is_empty() {
                Vec::new()
            } else {
                vec![string_kv("k8s.namespace.name", &ns)]
            };
            ResourceLogs {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

    /// A string of a body map, for tests.
    fn body_str<'a>(v: &'a AnyValue, key: &str) -> Option<&'a AnyValue> {
        match &v.value {
            Some(any_value::Value::KvlistValue(kv)) => kv
                .values
                .iter()
                .find(|k| k.key == key)
                .and_then(|k| k.value.as_ref()),
            _ => None,
        }
    }

    fn err(text: &str) -> String {
        parse_config(&yaml(text).unwrap())
            .unwrap_err()
            .path_string()
    }

    #[test]
    fn config_checks_name_the_object() {
        let c = parse_config(&yaml("objects:\n  - name: pods\n    mode: pull\n    interval: 15m\n  - name: events\n    mode: watch\n    group: events.k8s.io\n    namespaces: [default]\n    exclude_watch_type: [DELETED]\n    exclude_namespaces: [{regexp: '^kube-'}]\n").unwrap()).unwrap();
        assert_eq!(c.objects[0].interval, Some(Duration::from_secs(900)));
        assert!(c.objects[1].exclude_namespaces[0].matches("kube-system"));
        assert!(!c.objects[1].exclude_namespaces[0].matches("default"));
        assert_eq!(err("objects: []\n"), "objects");
        assert_eq!(
            err("objects:\n  - {name: pods}\n  - {name: events, mode: watch, interval: 1m}\n"),
            "objects[1].interval"
        );
        assert_eq!(
            err("objects:\n  - {name: pods, exclude_watch_type: [ADDED]}\n"),
            "objects[0].exclude_watch_type"
        );
        assert_eq!(
            err("objects:\n  - {name: pods, mode: watch, exclude_watch_type: [UPDATED]}\n"),
            "objects[0].exclude_watch_type[0]"
        );
        assert_eq!(
            err("objects:\n  - {name: pods, mode: poll}\n"),
            "objects[0].mode"
        );
        assert_eq!(
            err("objects:\n  - {name: pods}\nstorage: file_storage\n"),
            "storage"
        );
    }

    #[test]
    fn records_are_the_collectors() {
        let pod = serde_json::json!({"kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop"}, "spec": {"nodeName": "n1"}});
        let r = record("pods", 7, None, pod.clone());
        assert_eq!(
            crate::signal::value::find_str(&r.attributes, "k8s.resource.name"),
            Some("pods")
        );
        assert!(crate::signal::value::find_str(&r.attributes, "event.name").is_none());
        let body = r.body.as_ref().unwrap();
        assert_eq!(
            body_str(body, "kind")
                .map(crate::signal::value::text)
                .as_deref(),
            Some("Pod")
        );
        let w = record("pods", 7, Some(WatchType::Deleted), pod);
        assert_eq!(
            crate::signal::value::find_str(&w.attributes, "event.name"),
            Some("web-1")
        );
        assert_eq!(
            crate::signal::value::find_str(&w.attributes, "event.domain"),
            Some("k8s")
        );
        let body = w.body.as_ref().unwrap();
        assert_eq!(
            body_str(body, "type")
                .map(crate::signal::value::text)
                .as_deref(),
            Some("DELETED")
        );
        let rl = by_namespace(
            [
                ("shop".to_string(), r.clone()),
                (String::new(), r.clone()),
                ("shop".to_string(), r),
            ]
            .into_iter(),
        );
        assert_eq!(rl.len(), 2);
        assert_eq!(rl[0].scope_logs[0].log_records.len(), 2);
        assert_eq!(
            crate::signal::value::find_str(
                &rl[0].resource.as_ref().unwrap().attributes,
                "k8s.namespace.name"
            ),
            Some("shop")
        );
        assert!(rl[1].resource.as_ref().unwrap().attributes.is_empty());
    }
}
