//! What k8sattributes knows of the cluster: pods by IP, UID and container id, the Deployment
//! of each ReplicaSet, namespace labels and annotations, kept current by one
//! [`crate::kube::watch`] per resource kind.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kube::watch::{self, Event, Resource};
use crate::kube::{ApiConfig, Meta, Pod, container_id};

/// The cache the processor reads: pods by IP, UID and container id; the Deployment of each
/// ReplicaSet; namespace labels and annotations. Deleted pods stay for a grace period, so that
/// telemetry sent just before a pod ended is still enriched.
#[derive(Default)]
pub struct Cache {
    pub pods: HashMap<String, Arc<Pod>>,
    pub by_ip: HashMap<String, String>,
    pub by_container: HashMap<String, String>,
    /// (namespace, ReplicaSet) → its Deployment's (name, uid).
    pub replicasets: HashMap<(String, String), (String, String)>,
    /// (namespace, Job) → its CronJob's (name, uid); watched only when a uid is extracted.
    pub jobs: HashMap<(String, String), (String, String)>,
    /// Node name → uid; watched only when `k8s.node.uid` is extracted.
    pub nodes: HashMap<String, String>,
    pub namespaces: HashMap<String, Arc<Meta>>,
    pub deleted: Vec<(Instant, String)>,
    /// Whether the pods are listed (false until the first list and while the API is unreachable
    /// at start).
    pub synced: bool,
}

/// Pods held at most; past it new pods are not cached (and counted as not found).
pub const MAX_PODS: usize = 200_000;
const DELETE_GRACE: Duration = Duration::from_secs(120);

impl Cache {
    fn upsert_pod(&mut self, pod: Pod, exclude: &[regex::Regex]) {
        let uid = pod.metadata.uid.clone();
        if exclude.iter().any(|re| re.is_match(&pod.metadata.name)) {
            return;
        }
        if uid.is_empty() || (!self.pods.contains_key(&uid) && self.pods.len() >= MAX_PODS) {
            return;
        }
        if let Some(old) = self.pods.get(&uid).cloned() {
            self.unindex(&old);
        }
        // A host-network pod shares the node's IP: it cannot be told apart by IP.
        if !pod.spec.host_network {
            for ip in std::iter::once(&pod.status.pod_ip)
                .chain(pod.status.pod_ips.iter().map(|p| &p.ip))
                .filter(|ip| !ip.is_empty())
            {
                self.by_ip.insert(ip.clone(), uid.clone());
            }
        }
        for cs in &pod.status.container_statuses {
            if let Some(id) = container_id(&cs.container_id) {
                self.by_container.insert(id.to_owned(), uid.clone());
            }
        }
        self.pods.insert(uid, Arc::new(pod));
    }

    fn unindex(&mut self, pod: &Pod) {
        let uid = &pod.metadata.uid;
        self.by_ip.retain(|_, u| u != uid);
        self.by_container.retain(|_, u| u != uid);
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(p) = self.pods.remove(uid) {
            self.unindex(&p);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let due: Vec<String> = self
            .deleted
            .iter()
            .filter(|(at, _)| now.duration_since(*at) >= DELETE_GRACE)
            .map(|(_, uid)| uid.clone())
            .collect();
        self.deleted
            .retain(|(at, _)| now.duration_since(*at) < DELETE_GRACE);
        for uid in due {
            self.remove_pod(&uid);
        }
    }
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub node: Option<String>,
    pub namespace: Option<String>,
    pub namespaces: bool,
    pub jobs: bool,
    pub nodes: bool,
    /// Pods whose name matches one of these are not cached (`exclude.pods`).
    pub exclude: Vec<regex::Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Pods,
    ReplicaSets,
    Namespaces,
    Jobs,
    Nodes,
}

impl Kind {
    fn resource(self, spec: &WatchSpec) -> Resource {
        let ns = spec.namespace.as_deref();
        let path = match (self, ns) {
            (Kind::Pods, None) => "/api/v1/pods".into(),
            (Kind::Pods, Some(ns)) => format!("/api/v1/namespaces/{ns}/pods"),
            (Kind::ReplicaSets, None) => "/apis/apps/v1/replicasets".into(),
            (Kind::ReplicaSets, Some(ns)) => format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
            (Kind::Namespaces, _) => "/api/v1/namespaces".into(),
            (Kind::Jobs, None) => "/apis/batch/v1/jobs".into(),
            (Kind::Jobs, Some(ns)) => format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            (Kind::Nodes, _) => "/api/v1/nodes".into(),
        };
        let mut query = Vec::new();
        if self == Kind::Pods
            && let Some(node) = &spec.node
        {
            query.push(("fieldSelector".into(), format!("spec.nodeName={node}")));
        }
        Resource { path, query }
    }
}

/// Shared state the watchers write and the processor reads; `reachable` is false while the
/// API cannot be reached (the processor then counts what it could not enrich).
pub struct Watcher {
    pub cache: RwLock<Cache>,
    pub reachable: std::sync::atomic::AtomicBool,
    exclude: Vec<regex::Regex>,
}

impl Watcher {
    /// Starts one list-and-watch task per resource kind.
    pub fn start(
        api: ApiConfig,
        spec: WatchSpec,
        stop: CancellationToken,
    ) -> Result<Arc<Watcher>, String> {
        let client = api.client()?;
        let w = Arc::new(Watcher {
            cache: RwLock::new(Cache::default()),
            reachable: std::sync::atomic::AtomicBool::new(false),
            exclude: spec.exclude.clone(),
        });
        let mut kinds = vec![Kind::Pods, Kind::ReplicaSets];
        for (on, kind) in [
            (spec.namespaces, Kind::Namespaces),
            (spec.jobs, Kind::Jobs),
            (spec.nodes, Kind::Nodes),
        ] {
            if on {
                kinds.push(kind);
            }
        }
        for kind in kinds {
            let (w, client, api, stop) = (w.clone(), client.clone(), api.clone(), stop.clone());
            let resource = kind.resource(&spec);
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = watch::run(&client, &api, &resource, |ev| w.apply(kind, ev)) => {}
                }
            });
        }
        let (w2, stop2) = (w.clone(), stop);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = stop2.cancelled() => return,
                    _ = every.tick() => {
                        w2.cache.write().unwrap_or_else(|p| p.into_inner()).sweep(Instant::now());
                    }
                }
            }
        });
        Ok(w)
    }

    fn apply(&self, kind: Kind, event: Event) {
        use std::sync::atomic::Ordering::Relaxed;
        // Only the pods decide whether enrichment is possible.
        if let Event::Reachable(up) = event {
            if kind == Kind::Pods {
                self.reachable.store(up, Relaxed);
            }
            return;
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        match (kind, event) {
            (_, Event::Reachable(_)) => {}
            (Kind::Pods, Event::Listed(items)) => {
                let fresh: Vec<Pod> = items
                    .into_iter()
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .collect();
                let keep: std::collections::HashSet<String> =
                    fresh.iter().map(|p| p.metadata.uid.clone()).collect();
                let gone: Vec<String> = cache
                    .pods
                    .keys()
                    .filter(|k| !keep.contains(*k))
                    .cloned()
                    .collect();
                for uid in gone {
                    cache.remove_pod(&uid);
                }
                for p in fresh {
                    cache.upsert_pod(p, &self.exclude);
                }
                cache.synced = true;
            }
            (Kind::Pods, Event::Applied(object) | Event::Added(object)) => {
                if let Ok(pod) = serde_json::from_value::<Pod>(object) {
                    cache.upsert_pod(pod, &self.exclude);
                }
            }
            (Kind::Pods, Event::Deleted(object)) => {
                if let Ok(pod) = serde_json::from_value::<Pod>(object) {
                    cache
                        .deleted
                        .push((Instant::now(), pod.metadata.uid.clone()));
                }
            }
            (Kind::ReplicaSets, Event::Listed(items)) => {
                cache.replicasets.clear();
                for v in items {
                    if let Ok(m) = serde_json::from_value::<Meta>(v) {
                        apply_replicaset(&mut cache, &m, false);
                    }
                }
            }
            (Kind::ReplicaSets, Event::Applied(o) | Event::Added(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    apply_replicaset(&mut cache, &m, false);
                }
            }
            (Kind::ReplicaSets, Event::Deleted(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    apply_replicaset(&mut cache, &m, true);
                }
            }
            (Kind::Namespaces, Event::Listed(items)) => {
                cache.namespaces.clear();
                for v in items {
                    if let Ok(m) = serde_json::from_value::<Meta>(v) {
                        cache
                            .namespaces
                            .insert(m.metadata.name.clone(), Arc::new(m));
                    }
                }
            }
            (Kind::Namespaces, Event::Applied(o) | Event::Added(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    cache
                        .namespaces
                        .insert(m.metadata.name.clone(), Arc::new(m));
                }
            }
            (Kind::Namespaces, Event::Deleted(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    cache.namespaces.remove(&m.metadata.name);
                }
            }
            (Kind::Jobs, Event::Listed(items)) => {
                cache.jobs.clear();
                for v in items {
                    if let Ok(m) = serde_json::from_value::<Meta>(v) {
                        apply_owned(&mut cache.jobs, &m, "CronJob", false);
                    }
                }
            }
            (Kind::Jobs, Event::Applied(o) | Event::Added(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    apply_owned(&mut cache.jobs, &m, "CronJob", false);
                }
            }
            (Kind::Jobs, Event::Deleted(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    apply_owned(&mut cache.jobs, &m, "CronJob", true);
                }
            }
            (Kind::Nodes, Event::Listed(items)) => {
                cache.nodes.clear();
                for v in items {
                    if let Ok(m) = serde_json::from_value::<Meta>(v) {
                        cache.nodes.insert(m.metadata.name, m.metadata.uid);
                    }
                }
            }
            (Kind::Nodes, Event::Applied(o) | Event::Added(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    cache.nodes.insert(m.metadata.name, m.metadata.uid);
                }
            }
            (Kind::Nodes, Event::Deleted(o)) => {
                if let Ok(m) = serde_json::from_value::<Meta>(o) {
                    cache.nodes.remove(&m.metadata.name);
                }
            }
        }
    }
}

fn apply_replicaset(cache: &mut Cache, m: &Meta, deleted: bool) {
    apply_owned(&mut cache.replicasets, m, "Deployment", deleted);
}

/// Records the owner of `kind` (name and uid) of an object, or forgets the object.
fn apply_owned(
    map: &mut HashMap<(String, String), (String, String)>,
    m: &Meta,
    kind: &str,
    deleted: bool,
) {
    let key = (m.metadata.namespace.clone(), m.metadata.name.clone());
    let owner = m
        .metadata
        .owner_references
        .iter()
        .find(|o| o.kind == kind)
        .map(|o| (o.name.clone(), o.uid.clone()));
    match (deleted, owner) {
        (false, Some(o)) => {
            map.insert(key, o);
        }
        _ => {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ip: &str, container: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "status": {"podIP": ip, "containerStatuses": [{"name": "c", "containerID": container}]}
        }))
        .unwrap()
    }

    #[test]
    fn deleted_pods_linger_then_go_and_reused_ips_follow_the_new_pod() {
        let mut c = Cache::default();
        c.upsert_pod(pod("a", "10.0.0.1", "containerd://aaa"), &[]);
        let t0 = Instant::now();
        c.deleted.push((t0, "a".into()));
        c.sweep(t0 + Duration::from_secs(60));
        assert_eq!(
            c.by_ip.get("10.0.0.1").map(String::as_str),
            Some("a"),
            "kept during the grace period"
        );
        // The IP goes to a new pod before the old one is forgotten.
        c.upsert_pod(pod("b", "10.0.0.1", "cri-o://bbb"), &[]);
        // An excluded pod's name is never cached.
        let jaeger = regex::Regex::new("^jaeger-agent$").unwrap();
        let mut p = pod("j", "10.0.0.9", "containerd://jjj");
        p.metadata.name = "jaeger-agent".into();
        c.upsert_pod(p, &[jaeger]);
        assert!(!c.by_ip.contains_key("10.0.0.9"));
        assert_eq!(c.by_ip.get("10.0.0.1").map(String::as_str), Some("b"));
        c.sweep(t0 + DELETE_GRACE);
        assert!(!c.pods.contains_key("a"));
        assert_eq!(
            c.by_ip.get("10.0.0.1").map(String::as_str),
            Some("b"),
            "the new pod keeps its IP"
        );
        assert_eq!(c.by_container.get("bbb").map(String::as_str), Some("b"));
        assert!(!c.by_container.contains_key("aaa"));
        assert_eq!(container_id("docker://x1"), Some("x1"));
        assert_eq!(container_id(""), None);
    }
}
