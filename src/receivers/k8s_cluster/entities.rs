//! Entity events: when `k8s_cluster` feeds a logs pipeline, each object's identity and metadata
//! as the Collector's receiver writes them, one log record per event: `entity_state` when an
//! object is listed, added or changed (and every `metadata_collection_interval` for all of
//! them, with `otel.entity.interval`), `entity_delete` when it is gone. A record's attributes
//! are `otel.entity.event.type`, `otel.entity.type` (`k8s.pod`, ...), `otel.entity.id`
//! (`{k8s.pod.uid: ...}`) and `otel.entity.attributes` (the labels, `k8s.workload.kind`,
//! `k8s.workload.name`, `<kind>.creation_timestamp`, each owner's `k8s.<kind>.name` and
//! `.uid`); the scope carries `otel.entity.event_as_log: true`.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use super::state::Kind;
use crate::signal::value::string_kv;

/// The Collector's names of a kind: its `k8s.workload.kind` and its lowercase form (in
/// `k8s.<kind>.uid` and `<kind>.creation_timestamp`), and the entity type.
fn names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Node => ("Node", "node"),
        Kind::Pod => ("Pod", "pod"),
        Kind::Namespace => ("Namespace", "namespace"),
        Kind::ResourceQuota => ("ResourceQuota", "resourcequota"),
        Kind::ReplicationController => ("ReplicationController", "replicationcontroller"),
        Kind::Deployment => ("Deployment", "deployment"),
        Kind::ReplicaSet => ("ReplicaSet", "replicaset"),
        Kind::StatefulSet => ("StatefulSet", "statefulset"),
        Kind::DaemonSet => ("DaemonSet", "daemonset"),
        Kind::Job => ("Job", "job"),
        Kind::CronJob => ("CronJob", "cronjob"),
        Kind::Hpa => ("HPA", "hpa"),
    }
}

/// One object's metadata, by uid.
pub type Metadata = BTreeMap<String, String>;

/// An object's uid and metadata; `None` without a uid.
pub fn metadata(kind: Kind, v: &serde_json::Value) -> Option<(String, Metadata)> {
    let m = v.get("metadata")?;
    let uid = m.get("uid")?.as_str().filter(|u| !u.is_empty())?.to_owned();
    let (kind_name, lower) = names(kind);
    let mut out = Metadata::new();
    if let Some(labels) = m.get("labels").and_then(|l| l.as_object()) {
        for (k, v) in labels {
            if let Some(v) = v.as_str() {
                out.insert(k.clone(), v.to_owned());
            }
        }
    }
    out.insert("k8s.workload.kind".into(), kind_name.into());
    let name = m.get("name").and_then(|n| n.as_str()).unwrap_or("");
    out.insert("k8s.workload.name".into(), name.into());
    if let Some(t) = m.get("creationTimestamp").and_then(|t| t.as_str()) {
        out.insert(format!("{lower}.creation_timestamp"), t.into());
    }
    for o in m
        .get("ownerReferences")
        .and_then(|o| o.as_array())
        .into_iter()
        .flatten()
    {
        let okind = o["kind"].as_str().unwrap_or("").to_ascii_lowercase();
        if okind.is_empty() {
            continue;
        }
        if let Some(n) = o["name"].as_str() {
            out.insert(format!("k8s.{okind}.name"), n.into());
        }
        if let Some(u) = o["uid"].as_str() {
            out.insert(format!("k8s.{okind}.uid"), u.into());
        }
    }
    if kind == Kind::Pod
        && let Some(n) = v.pointer("/spec/nodeName").and_then(|n| n.as_str())
    {
        out.insert("k8s.node.name".into(), n.into());
    }
    Some((uid, out))
}

fn namespace_of(v: &serde_json::Value) -> String {
    v.pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_owned()
}

/// The objects last seen, per kind, and the events not yet sent.
#[derive(Default)]
pub struct Entities {
    /// Per kind, by uid: the namespace and the metadata.
    known: HashMap<Kind, HashMap<String, (String, Metadata)>>,
    pending: Vec<LogRecord>,
    /// Events dropped because the pending list was full (the downstream too slow).
    pub dropped: u64,
}

/// At most this many events wait for the next flush; the next full report restores the rest.
const MAX_PENDING: usize = 100_000;

fn map(kvs: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values: kvs })),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn record(
    kind: Kind,
    uid: &str,
    state: Option<&Metadata>,
    now: u64,
    interval_ms: Option<i64>,
) -> LogRecord {
    let (_, lower) = names(kind);
    let mut attributes = vec![
        string_kv(
            "otel.entity.event.type",
            if state.is_some() {
                "entity_state"
            } else {
                "entity_delete"
            },
        ),
        kv(
            "otel.entity.id",
            map(vec![string_kv(&format!("k8s.{lower}.uid"), uid)]),
        ),
    ];
    if let Some(md) = state {
        attributes.push(string_kv("otel.entity.type", &format!("k8s.{lower}")));
        attributes.push(kv(
            "otel.entity.attributes",
            map(md.iter().map(|(k, v)| string_kv(k, v)).collect()),
        ));
        if let Some(ms) = interval_ms {
            attributes.push(kv(
                "otel.entity.interval",
                AnyValue {
                    value: Some(any_value::Value::IntValue(ms)),
                },
            ));
        }
    }
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        attributes,
        ..Default::default()
    }
}

impl Entities {
    fn push(&mut self, r: LogRecord) {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.pending.push(r);
    }

    /// A (re)list of `kind` (in `namespace`, when watched per namespace): a state event for
    /// each object, a delete event for each known one no longer there.
    pub fn listed<'a>(
        &mut self,
        kind: Kind,
        namespace: Option<&str>,
        items: impl IntoIterator<Item = &'a serde_json::Value>,
        now: u64,
    ) {
        let fresh: HashMap<String, (String, Metadata)> = items
            .into_iter()
            .filter_map(|v| Some((metadata(kind, v)?, namespace_of(v))))
            .map(|((uid, md), ns)| (uid, (ns, md)))
            .collect();
        let old = self.known.remove(&kind).unwrap_or_default();
        let mut keep = HashMap::new();
        for (uid, (ns, md)) in old {
            if fresh.contains_key(&uid) {
                continue;
            }
            if namespace.is_some_and(|listed| listed != ns) {
                // Listed per namespace: another namespace's objects stay as they are.
                keep.insert(uid, (ns, md));
            } else {
                self.push(record(kind, &uid, None, now, None));
            }
        }
        for (uid, (_, md)) in &fresh {
            self.push(record(kind, uid, Some(md), now, None));
        }
        keep.extend(fresh);
        self.known.insert(kind, keep);
    }

    pub fn applied(&mut self, kind: Kind, v: &serde_json::Value, now: u64) {
        if let Some((uid, md)) = metadata(kind, v) {
            self.push(record(kind, &uid, Some(&md), now, None));
            self.known
                .entry(kind)
                .or_default()
                .insert(uid, (namespace_of(v), md));
        }
    }

    pub fn deleted(&mut self, kind: Kind, v: &serde_json::Value, now: u64) {
        if let Some(uid) = v.pointer("/metadata/uid").and_then(|u| u.as_str())
            && self
                .known
                .get_mut(&kind)
                .and_then(|m| m.remove(uid))
                .is_some()
        {
            self.push(record(kind, uid, None, now, None));
        }
    }

    /// Every known object's state again, marked with the interval until the next report.
    pub fn report_all(&mut self, now: u64, interval_ms: i64) {
        let mut all = Vec::new();
        for (kind, m) in &self.known {
            for (uid, (_, md)) in m {
                all.push(record(*kind, uid, Some(md), now, Some(interval_ms)));
            }
        }
        for r in all {
            self.push(r);
        }
    }

    /// The events waiting, as one batch.
    pub fn take(&mut self) -> Vec<ResourceLogs> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        vec![ResourceLogs {
            resource: Some(Default::default()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    attributes: vec![kv(
                        "otel.entity.event_as_log",
                        AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        },
                    )],
                    ..Default::default()
                }),
                log_records: std::mem::take(&mut self.pending),
                ..Default::default()
            }],
            ..Default::default()
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str) -> serde_json::Value {
        serde_json::json!({"metadata": {"uid": uid, "name": name, "namespace": "shop",
            "creationTimestamp": "2026-12-01T10:00:00Z", "labels": {"app": "web"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs-1"}]},
            "spec": {"nodeName": "node-1"}})
    }

    fn attr<'a>(r: &'a LogRecord, k: &str) -> &'a any_value::Value {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .unwrap()
    }

    #[test]
    fn states_deletes_and_the_periodic_report() {
        let (_, md) = metadata(Kind::Pod, &pod("p1", "web-1")).unwrap();
        let want: Metadata = [
            ("app", "web"),
            ("k8s.workload.kind", "Pod"),
            ("k8s.workload.name", "web-1"),
            ("pod.creation_timestamp", "2026-12-01T10:00:00Z"),
            ("k8s.replicaset.name", "web-5d8f"),
            ("k8s.replicaset.uid", "rs-1"),
            ("k8s.node.name", "node-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(md, want);

        let mut e = Entities::default();
        let (a, b) = (pod("p1", "web-1"), pod("p2", "web-2"));
        e.listed(Kind::Pod, None, [&a, &b], 10);
        assert_eq!(e.take()[0].scope_logs[0].log_records.len(), 2);
        // A relist without p2: p1's state, p2's delete.
        e.listed(Kind::Pod, None, [&a], 20);
        let b2 = e.take();
        let rs = &b2[0].scope_logs[0].log_records;
        let types: Vec<String> = rs
            .iter()
            .map(|r| match attr(r, "otel.entity.event.type") {
                any_value::Value::StringValue(s) => s.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(types, ["entity_delete", "entity_state"]);
        let any_value::Value::KvlistValue(id) = attr(&rs[0], "otel.entity.id") else {
            panic!()
        };
        assert_eq!(id.values[0].key, "k8s.pod.uid");
        e.deleted(Kind::Pod, &a, 30);
        // Deleting what is gone already says nothing.
        e.deleted(Kind::Pod, &a, 31);
        assert_eq!(e.take()[0].scope_logs[0].log_records.len(), 1);
        e.applied(
            Kind::Deployment,
            &serde_json::json!({"metadata": {"uid": "d1", "name": "web"}}),
            40,
        );
        e.report_all(50, 300_000);
        let b3 = e.take();
        let rs = &b3[0].scope_logs[0].log_records;
        assert_eq!(rs.len(), 2);
        assert!(matches!(
            attr(&rs[1], "otel.entity.interval"),
            any_value::Value::IntValue(300_000)
        ));
        assert!(
            matches!(attr(&rs[1], "otel.entity.type"), any_value::Value::StringValue(s) if s == "k8s.deployment")
        );
        assert!(e.take().is_empty());
    }
}
