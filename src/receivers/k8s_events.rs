//! `k8s_events` receiver (alias `k8sevents`): Kubernetes Events (`core/v1`) as log records, as
//! the Collector's receiver writes them — what `kubectl describe` lists under Events. The
//! involved object on the resource (`k8s.object.kind`, `.name`, `.uid`, `.fieldpath`,
//! `.api_version`, `.resource_version`, and `k8s.node.name` from the event's source host), the
//! event's reason, action, name, uid, creation time, count and the object's namespace as
//! attributes, its message as the body, `Normal` → INFO and `Warning` → WARN. Only events
//! newer than the receiver's start are reported (a restart does not resend the past hour);
//! an event updated in place (its count went up) is reported again, each version once. The
//! watch resumes after drops and relists after `410 Gone`; with `k8s_leader_elector` it runs
//! only while this collector holds the Lease.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::ApiSource;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::kube::watch::{self, Event};
use crate::kube::{AuthType, timestamp_nanos};
use crate::signal::value::string_kv;
use crate::signal::{Batch, Signal};

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
    /// Only these namespaces; default all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Run only while this `k8s_leader_elector` extension holds its Lease.
    #[serde(default)]
    pub k8s_leader_elector: Option<String>,
}

pub const FACTORY: Factory =
    Factory::receiver("k8s_events", crate::signal::LOGS, Stability::Alpha, parse)
        .aliases(&["k8sevents"]);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    crate::kube::api_auth(node, &[], cfg.auth_type)?;
    Ok(Box::new(cfg))
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
            let shared = Arc::new(ApiSource::new(
                &ctx,
                consumer,
                self.auth_type,
                &self.context,
            )?);
            let paths: Vec<String> = if self.namespaces.is_empty() {
                vec!["/api/v1/events".into()]
            } else {
                self.namespaces
                    .iter()
                    .map(|ns| format!("/api/v1/namespaces/{ns}/events"))
                    .collect()
            };
            let stop = CancellationToken::new();
            let task = tokio::spawn(crate::kube::lease::while_leader(
                leading,
                stop.clone(),
                move |token| {
                    let (shared, paths) = (shared.clone(), paths.clone());
                    // Events from before this term are not reported: a new leader, like a
                    // restarted collector, does not resend what the last one may have sent.
                    // Event times have whole seconds: this second's events are new.
                    let now = crate::component::now_nanos();
                    let since = now - now % 1_000_000_000;
                    async move {
                        let tasks: Vec<_> = paths
                            .into_iter()
                            .map(|p| {
                                let (shared, token) = (shared.clone(), token.clone());
                                tokio::spawn(async move {
                                    tokio::select! {
                                        _ = token.cancelled() => {}
                                        _ = follow(&shared, p, since) => {}
                                    }
                                })
                            })
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

/// The event's versions already reported, by uid (events expire, and their deletion removes
/// them); bounded all the same.
const MAX_TRACKED: usize = 100_000;

async fn follow(shared: &ApiSource, path: String, since: u64) {
    let resource = watch::Resource {
        path: path.clone(),
        query: Vec::new(),
    };
    let mut reported: HashMap<String, String> = HashMap::new();
    watch::run_async(&shared.client, &shared.api, &resource, None, |ev| {
        // A listing is parsed one event at a time, as it is filtered.
        let items: Box<dyn Iterator<Item = serde_json::Value> + Send> = match ev {
            Event::Listed(items) => Box::new(items.into_iter()),
            Event::Added(o) | Event::Applied(o) => Box::new(std::iter::once(o)),
            Event::Deleted(o) => {
                if let Some(uid) = o.pointer("/metadata/uid").and_then(|u| u.as_str()) {
                    reported.remove(uid);
                }
                Box::new(std::iter::empty())
            }
            Event::Reachable(false) => {
                shared.failed(&path);
                Box::new(std::iter::empty())
            }
            Event::Reachable(true) => Box::new(std::iter::empty()),
        };
        let mut logs = Vec::new();
        for o in items {
            let Ok(ev) = serde_json::from_value::<K8sEvent>(o) else {
                continue;
            };
            if ev.timestamp() < since {
                continue;
            }
            let rv = &ev.metadata.resource_version;
            if reported.get(&ev.metadata.uid) == Some(rv) {
                continue;
            }
            if reported.len() >= MAX_TRACKED {
                reported.clear();
            }
            reported.insert(ev.metadata.uid.clone(), rv.clone());
            logs.push(to_logs(&ev));
        }
        shared.push(Batch::Logs(logs))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct K8sEvent {
    #[serde(default)]
    metadata: crate::kube::ObjectMeta,
    #[serde(default)]
    involved_object: ObjectRef,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    source: EventSource,
    #[serde(default)]
    first_timestamp: Option<String>,
    #[serde(default)]
    last_timestamp: Option<String>,
    #[serde(default)]
    event_time: Option<String>,
    #[serde(default)]
    count: i64,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    action: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    field_path: String,
}

#[derive(Debug, Default, Deserialize)]
struct EventSource {
    #[serde(default)]
    host: String,
}

impl K8sEvent {
    /// As the Collector: the last time it happened, else the first, else its event time, else
    /// when the object was made.
    fn timestamp(&self) -> u64 {
        [
            &self.last_timestamp,
            &self.first_timestamp,
            &self.event_time,
            &self.metadata.creation_timestamp,
        ]
        .into_iter()
        .flatten()
        .find_map(|t| timestamp_nanos(t))
        .unwrap_or(0)
    }
}

/// Go's `time.Time.String()` of an API timestamp, as the Collector writes `k8s.event.start_time`
/// (`2026-12-01 09:00:00 +0000 UTC`).
fn go_time(t: &str) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        Err(_) => t.to_owned(),
    }
}

fn to_logs(ev: &K8sEvent) -> ResourceLogs {
    let o = &ev.involved_object;
    let mut resource = vec![];
    if !ev.source.host.is_empty() {
        resource.push(string_kv("k8s.node.name", &ev.source.host));
    }
    for (k, v) in [
        ("k8s.object.kind", &o.kind),
        ("k8s.object.name", &o.name),
        ("k8s.object.uid", &o.uid),
        ("k8s.object.fieldpath", &o.field_path),
        ("k8s.object.api_version", &o.api_version),
        ("k8s.object.resource_version", &o.resource_version),
    ] {
        resource.push(string_kv(k, v));
    }
    let mut attributes = vec![
        string_kv("k8s.event.reason", &ev.reason),
        string_kv("k8s.event.action", &ev.action),
        string_kv(
            "k8s.event.start_time",
            &ev.metadata
                .creation_timestamp
                .as_deref()
                .map(go_time)
                .unwrap_or_default(),
        ),
        string_kv("k8s.event.name", &ev.metadata.name),
        string_kv("k8s.event.uid", &ev.metadata.uid),
        string_kv("k8s.namespace.name", &o.namespace),
    ];
    if ev.count != 0 {
        attributes.push(KeyValue {
            key: "k8s.event.count".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(ev.count)),
            }),
            ..Default::default()
        });
    }
    let (severity_number, severity_text) = match ev.kind.to_ascii_lowercase().as_str() {
        "normal" => (SeverityNumber::Info as i32, ev.kind.clone()),
        "warning" => (SeverityNumber::Warn as i32, ev.kind.clone()),
        _ => (0, String::new()),
    };
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8seventsreceiver".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            log_records: vec![LogRecord {
                time_unix_nano: ev.timestamp(),
                observed_time_unix_nano: crate::component::now_nanos(),
                severity_number,
                severity_text,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(ev.message.clone())),
                }),
                attributes,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::value::{find_int, find_str};

    #[test]
    fn an_event_becomes_the_collectors_record() {
        let ev: K8sEvent = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17d", "namespace": "shop", "uid": "e-1", "resourceVersion": "901", "creationTimestamp": "2026-12-01T09:00:00Z"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "p-1", "apiVersion": "v1", "resourceVersion": "880", "fieldPath": "spec.containers{web}"},
            "reason": "BackOff", "message": "Back-off restarting failed container web",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2026-12-01T09:00:00Z", "lastTimestamp": "2026-12-01T09:05:00Z",
            "count": 7, "type": "Warning", "reportingComponent": "kubelet"
        }))
        .unwrap();
        let rl = to_logs(&ev);
        let res = &rl.resource.as_ref().unwrap().attributes;
        assert_eq!(find_str(res, "k8s.object.kind"), Some("Pod"));
        assert_eq!(find_str(res, "k8s.object.name"), Some("web-1"));
        assert_eq!(
            find_str(res, "k8s.object.fieldpath"),
            Some("spec.containers{web}")
        );
        assert_eq!(find_str(res, "k8s.node.name"), Some("node-1"));
        let r = &rl.scope_logs[0].log_records[0];
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(r.severity_text, "Warning");
        assert_eq!(
            r.time_unix_nano,
            timestamp_nanos("2026-12-01T09:05:00Z").unwrap()
        );
        assert_eq!(find_str(&r.attributes, "k8s.event.reason"), Some("BackOff"));
        assert_eq!(find_str(&r.attributes, "k8s.namespace.name"), Some("shop"));
        assert_eq!(
            find_str(&r.attributes, "k8s.event.start_time"),
            Some("2026-12-01 09:00:00 +0000 UTC")
        );
        assert_eq!(find_int(&r.attributes, "k8s.event.count"), Some(7));
        assert_eq!(
            crate::signal::value::option_text(&r.body),
            "Back-off restarting failed container web"
        );
    }
}
