//! The cluster's state as the receiver keeps it: per kind, each object reduced at arrival to the
//! few fields its metrics need (a pod is a few hundred bytes, not the kilobytes of its JSON), by
//! uid, replaced wholesale by a (re)list and changed by each watch event.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::kube::ObjectMeta;
use crate::kube::quantity;

/// The kinds watched, each with its collection's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Pod,
    Namespace,
    ResourceQuota,
    ReplicationController,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Hpa,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Node,
        Kind::Pod,
        Kind::Namespace,
        Kind::ResourceQuota,
        Kind::ReplicationController,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
        Kind::Hpa,
    ];

    /// `(group version path, plural, namespaced)`.
    pub fn api(self) -> (&'static str, &'static str, bool) {
        match self {
            Kind::Node => ("/api/v1", "nodes", false),
            Kind::Pod => ("/api/v1", "pods", true),
            Kind::Namespace => ("/api/v1", "namespaces", false),
            Kind::ResourceQuota => ("/api/v1", "resourcequotas", true),
            Kind::ReplicationController => ("/api/v1", "replicationcontrollers", true),
            Kind::Deployment => ("/apis/apps/v1", "deployments", true),
            Kind::ReplicaSet => ("/apis/apps/v1", "replicasets", true),
            Kind::StatefulSet => ("/apis/apps/v1", "statefulsets", true),
            Kind::DaemonSet => ("/apis/apps/v1", "daemonsets", true),
            Kind::Job => ("/apis/batch/v1", "jobs", true),
            Kind::CronJob => ("/apis/batch/v1", "cronjobs", true),
            Kind::Hpa => ("/apis/autoscaling/v2", "horizontalpodautoscalers", true),
        }
    }

    /// Its collection, cluster-wide or in one namespace.
    pub fn path(self, namespace: Option<&str>) -> String {
        let (base, plural, namespaced) = self.api();
        match namespace {
            Some(ns) if namespaced => format!("{base}/namespaces/{ns}/{plural}"),
            _ => format!("{base}/{plural}"),
        }
    }
}

/// Who an object is: the attributes every resource of it carries.
#[derive(Debug, Clone, Default)]
pub struct Id {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl From<ObjectMeta> for Id {
    fn from(m: ObjectMeta) -> Self {
        Id {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: Id,
    /// Condition type → `True`/`False`/`Unknown`.
    pub conditions: Vec<(String, String)>,
    /// Resource name → quantity (`cpu` in cores, the rest in units).
    pub allocatable: Vec<(String, f64)>,
    pub kubelet_version: String,
    pub container_runtime: String,
    pub os: String,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub id: String,
    pub image: String,
    pub ready: bool,
    pub restarts: u32,
    /// `running`, `waiting` or `terminated`, with the waiting or terminated reason.
    pub state: &'static str,
    pub reason: String,
    pub last_terminated_reason: String,
    /// `[cpu, memory, storage, ephemeral-storage]` requests and limits.
    pub requests: [Option<f64>; 4],
    pub limits: [Option<f64>; 4],
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub id: Id,
    pub node: String,
    pub phase: i64,
    pub reason: i64,
    pub qos: String,
    pub containers: Vec<Container>,
}

/// A workload's counts, by the Collector's metric suffix.
#[derive(Debug, Clone)]
pub struct Workload {
    pub id: Id,
    pub counts: Vec<(&'static str, i64)>,
}

#[derive(Debug, Clone)]
pub struct Quota {
    pub id: Id,
    /// Resource name → (hard, used).
    pub resources: BTreeMap<String, (Option<f64>, Option<f64>)>,
}

#[derive(Debug, Clone)]
pub enum Object {
    Node(Node),
    Pod(Pod),
    Namespace(Id, bool),
    Quota(Quota),
    Workload(Workload),
}

/// Every kind's objects by uid.
#[derive(Default)]
pub struct State {
    pub objects: HashMap<Kind, HashMap<String, Object>>,
}

impl State {
    pub fn listed(&mut self, kind: Kind, items: impl IntoIterator<Item = serde_json::Value>) {
        let m: HashMap<String, Object> =
            items.into_iter().filter_map(|v| reduce(kind, v)).collect();
        self.objects.insert(kind, m);
    }

    pub fn applied(&mut self, kind: Kind, v: serde_json::Value) {
        if let Some((uid, o)) = reduce(kind, v) {
            self.objects.entry(kind).or_default().insert(uid, o);
        }
    }

    pub fn deleted(&mut self, kind: Kind, v: &serde_json::Value) {
        if let Some(uid) = v.pointer("/metadata/uid").and_then(|u| u.as_str())
            && let Some(m) = self.objects.get_mut(&kind)
        {
            m.remove(uid);
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    metadata: ObjectMeta,
    spec: serde_json::Value,
    status: serde_json::Value,
}

fn int(v: &serde_json::Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(|x| x.as_i64())
}

fn text(v: &serde_json::Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(|x| x.as_str())
        .unwrap_or("")
        .to_owned()
}

fn qty(v: &serde_json::Value) -> Option<f64> {
    v.as_str().and_then(quantity::parse).or_else(|| v.as_f64())
}

const RESOURCES: [&str; 4] = ["cpu", "memory", "storage", "ephemeral-storage"];

fn resources(v: &serde_json::Value, which: &str) -> [Option<f64>; 4] {
    RESOURCES.map(|r| v.get(which).and_then(|m| m.get(r)).and_then(qty))
}

/// The pod phase as the Collector numbers it.
fn phase(p: &str) -> i64 {
    match p {
        "Pending" => 1,
        "Running" => 2,
        "Succeeded" => 3,
        "Failed" => 4,
        _ => 5,
    }
}

/// The pod status reason as the Collector numbers it (0 when there is none).
fn reason(r: &str) -> i64 {
    match r {
        "" => 0,
        "Evicted" => 1,
        "NodeAffinity" => 2,
        "NodeLost" => 3,
        "Shutdown" => 4,
        "UnexpectedAdmissionError" => 5,
        _ => 6,
    }
}

fn containers(spec: &serde_json::Value, status: &serde_json::Value) -> Vec<Container> {
    let statuses = status
        .get("containerStatuses")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    spec.get("containers")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .map(|c| {
            let name = text(c, "/name");
            let st = statuses
                .iter()
                .find(|s| s.get("name").and_then(|n| n.as_str()) == Some(name.as_str()));
            let (state, why) = match st.and_then(|s| s.get("state")) {
                Some(s) if s.get("running").is_some() => ("running", String::new()),
                Some(s) if s.get("waiting").is_some() => ("waiting", text(s, "/waiting/reason")),
                Some(s) if s.get("terminated").is_some() => {
                    ("terminated", text(s, "/terminated/reason"))
                }
                _ => ("", String::new()),
            };
            let res = c.get("resources").cloned().unwrap_or_default();
            Container {
                id: st
                    .map(|s| text(s, "/containerID"))
                    .and_then(|id| crate::kube::container_id(&id).map(str::to_owned))
                    .unwrap_or_default(),
                image: st
                    .map(|s| text(s, "/image"))
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| text(c, "/image")),
                ready: st
                    .and_then(|s| s.get("ready"))
                    .and_then(|r| r.as_bool())
                    .unwrap_or(false),
                restarts: st
                    .and_then(|s| s.get("restartCount"))
                    .and_then(|r| r.as_u64())
                    .unwrap_or(0) as u32,
                state,
                reason: why,
                last_terminated_reason: st
                    .map(|s| text(s, "/lastState/terminated/reason"))
                    .unwrap_or_default(),
                requests: resources(&res, "requests"),
                limits: resources(&res, "limits"),
                name,
            }
        })
        .collect()
}

/// An object's uid and the fields its metrics need; `None` for what cannot be read.
pub fn reduce(kind: Kind, v: serde_json::Value) -> Option<(String, Object)> {
    let raw: Raw = serde_json::from_value(v).ok()?;
    let (spec, status) = (&raw.spec, &raw.status);
    let uid = raw.metadata.uid.clone();
    if uid.is_empty() {
        return None;
    }
    let id: Id = raw.metadata.into();
    let count = |ptr: &str| int(status, ptr).unwrap_or(0);
    let w = |counts: Vec<(&'static str, i64)>| {
        Object::Workload(Workload {
            id: id.clone(),
            counts,
        })
    };
    let o = match kind {
        Kind::Node => Object::Node(Node {
            conditions: status
                .get("conditions")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .map(|c| (text(c, "/type"), text(c, "/status")))
                .collect(),
            allocatable: status
                .get("allocatable")
                .and_then(|a| a.as_object())
                .into_iter()
                .flatten()
                .filter_map(|(k, q)| Some((k.clone(), qty(q)?)))
                .collect(),
            kubelet_version: text(status, "/nodeInfo/kubeletVersion"),
            container_runtime: text(status, "/nodeInfo/containerRuntimeVersion"),
            os: text(status, "/nodeInfo/operatingSystem"),
            id,
        }),
        Kind::Pod => Object::Pod(Pod {
            node: text(spec, "/nodeName"),
            phase: phase(&text(status, "/phase")),
            reason: reason(&text(status, "/reason")),
            qos: text(status, "/qosClass"),
            containers: containers(spec, status),
            id,
        }),
        Kind::Namespace => {
            let active = text(status, "/phase") != "Terminating";
            Object::Namespace(id, active)
        }
        Kind::ResourceQuota => {
            let mut resources: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
            for (which, slot) in [("hard", 0), ("used", 1)] {
                for (k, q) in status
                    .get(which)
                    .and_then(|h| h.as_object())
                    .into_iter()
                    .flatten()
                {
                    let e = resources.entry(k.clone()).or_default();
                    let v = qty(q);
                    if slot == 0 {
                        e.0 = v;
                    } else {
                        e.1 = v;
                    }
                }
            }
            Object::Quota(Quota { id, resources })
        }
        Kind::Deployment | Kind::ReplicaSet | Kind::ReplicationController => w(vec![
            ("desired", int(spec, "/replicas").unwrap_or(1)),
            ("available", count("/availableReplicas")),
        ]),
        Kind::StatefulSet => w(vec![
            ("desired_pods", int(spec, "/replicas").unwrap_or(1)),
            ("ready_pods", count("/readyReplicas")),
            ("current_pods", count("/currentReplicas")),
            ("updated_pods", count("/updatedReplicas")),
        ]),
        Kind::DaemonSet => w(vec![
            ("current_scheduled_nodes", count("/currentNumberScheduled")),
            ("desired_scheduled_nodes", count("/desiredNumberScheduled")),
            ("misscheduled_nodes", count("/numberMisscheduled")),
            ("ready_nodes", count("/numberReady")),
        ]),
        Kind::Job => {
            let mut c = vec![
                ("active_pods", count("/active")),
                ("failed_pods", count("/failed")),
                ("successful_pods", count("/succeeded")),
            ];
            if let Some(n) = int(spec, "/completions") {
                c.push(("desired_successful_pods", n));
            }
            if let Some(n) = int(spec, "/parallelism") {
                c.push(("max_parallel_pods", n));
            }
            w(c)
        }
        Kind::CronJob => w(vec![(
            "active_jobs",
            status
                .get("active")
                .and_then(|a| a.as_array())
                .map_or(0, |a| a.len() as i64),
        )]),
        Kind::Hpa => w(vec![
            ("current_replicas", count("/currentReplicas")),
            ("desired_replicas", count("/desiredReplicas")),
            ("max_replicas", int(spec, "/maxReplicas").unwrap_or(0)),
            ("min_replicas", int(spec, "/minReplicas").unwrap_or(1)),
        ]),
    };
    Some((uid, o))
}
