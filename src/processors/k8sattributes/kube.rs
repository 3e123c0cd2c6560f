//! A small Kubernetes API client: the list-then-watch protocol for pods, ReplicaSets and
//! namespaces (`GET ...?watch=1&resourceVersion=N&allowWatchBookmarks=true`, newline-delimited
//! `WatchEvent`s), resumed from the last resource version when a watch drops and relisted when
//! the version is too old (410 Gone), with credentials from the pod's service account or a
//! kubeconfig. Written on reqwest instead of kube-rs to keep the build small; it needs only
//! these three resources and the fields below.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where and how to reach the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub server: String,
    pub token: Option<String>,
    pub tls: crate::tls::ClientTlsConfig,
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl ApiConfig {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, token and CA files).
    pub fn in_cluster() -> Result<ApiConfig, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "KUBERNETES_SERVICE_HOST is not set: not running in a pod (use auth_type: kubeConfig outside a cluster)".to_string())?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let token = std::fs::read_to_string(format!("{SA_DIR}/token"))
            .map_err(|e| format!("{SA_DIR}/token: {e}"))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(ApiConfig {
            server: format!("https://{host}:{port}"),
            token: Some(token.trim().to_owned()),
            tls: crate::tls::ClientTlsConfig {
                ca_file: Some(format!("{SA_DIR}/ca.crt")),
                ..Default::default()
            },
        })
    }

    /// The current context of `$KUBECONFIG` (or `~/.kube/config`).
    pub fn from_kubeconfig() -> Result<ApiConfig, String> {
        let path = std::env::var("KUBECONFIG")
            .ok()
            .and_then(|p| p.split(':').next().map(str::to_owned))
            .or_else(|| {
                std::env::var("HOME")
                    .ok()
                    .map(|h| format!("{h}/.kube/config"))
            })
            .ok_or("no KUBECONFIG and no HOME")?;
        Self::from_kubeconfig_file(&path)
    }

    /// The current context of one kubeconfig file.
    pub fn from_kubeconfig_file(path: &str) -> Result<ApiConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let kc: KubeConfig = serde_saphyr::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let ctx_name = kc.current_context.clone().unwrap_or_default();
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .ok_or_else(|| format!("{path}: current-context {ctx_name:?} not found"))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| format!("{path}: cluster {:?} not found", ctx.context.cluster))?;
        let user = kc.users.iter().find(|u| u.name == ctx.context.user);
        let dir = std::env::temp_dir().join(format!("ferrotel-kube-{}", std::process::id()));
        let materialize = |data: &Option<String>, name: &str| -> Result<Option<String>, String> {
            use base64::Engine;
            let Some(d) = data else { return Ok(None) };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| format!("{path}: {name}: {e}"))?;
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
            Ok(Some(p.to_string_lossy().into_owned()))
        };
        let c = &cluster.cluster;
        let ca = match &c.certificate_authority {
            Some(f) => Some(f.clone()),
            None => materialize(&c.certificate_authority_data, "ca.crt")?,
        };
        let (mut cert, mut key, mut token) = (None, None, None);
        if let Some(u) = user.map(|u| &u.user) {
            cert = match &u.client_certificate {
                Some(f) => Some(f.clone()),
                None => materialize(&u.client_certificate_data, "client.crt")?,
            };
            key = match &u.client_key {
                Some(f) => Some(f.clone()),
                None => materialize(&u.client_key_data, "client.key")?,
            };
            token = u.token.clone();
        }
        Ok(ApiConfig {
            server: c.server.trim_end_matches('/').to_owned(),
            token,
            tls: crate::tls::ClientTlsConfig {
                insecure_skip_verify: c.insecure_skip_tls_verify,
                ca_file: ca,
                cert_file: cert,
                key_file: key,
                ..Default::default()
            },
        })
    }

    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("ferrotel/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10));
        if self.server.starts_with("https://") {
            let tls = self.tls.build(&[b"http/1.1"]).map_err(|e| e.to_string())?;
            b = b.tls_backend_preconfigured(tls);
        }
        b.build().map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct KubeConfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    cluster: T,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: ContextRef,
}

#[derive(Debug, Deserialize)]
struct ContextRef {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Debug, Default, Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
struct User {
    token: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
}

// The API objects, only the fields used.

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub resource_version: String,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub owner_references: Vec<OwnerRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP")]
    pub pod_ip: String,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    #[serde(default, rename = "containerID")]
    pub container_id: String,
    #[serde(default)]
    pub restart_count: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

#[derive(Debug, Deserialize)]
struct List<T> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: String,
    #[serde(default, rename = "continue")]
    cont: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// The cache the processor reads: pods by IP, UID and container id; the Deployment of each
/// ReplicaSet; namespace labels and annotations. Deleted pods stay for a grace period, so that
/// telemetry sent just before a pod ended is still enriched.
#[derive(Default)]
pub struct Cache {
    pub pods: HashMap<String, Arc<Pod>>,
    pub by_ip: HashMap<String, String>,
    pub by_container: HashMap<String, String>,
    pub replicasets: HashMap<(String, String), String>,
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
    fn upsert_pod(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone();
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

/// `containerd://abc` → `abc`.
pub fn container_id(s: &str) -> Option<&str> {
    let id = s.split_once("://").map_or(s, |(_, id)| id);
    (!id.is_empty()).then_some(id)
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub node: Option<String>,
    pub namespace: Option<String>,
    pub namespaces: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Pods,
    ReplicaSets,
    Namespaces,
}

impl Kind {
    fn path(self, namespace: Option<&str>) -> String {
        match (self, namespace) {
            (Kind::Pods, None) => "/api/v1/pods".into(),
            (Kind::Pods, Some(ns)) => format!("/api/v1/namespaces/{ns}/pods"),
            (Kind::ReplicaSets, None) => "/apis/apps/v1/replicasets".into(),
            (Kind::ReplicaSets, Some(ns)) => format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
            (Kind::Namespaces, _) => "/api/v1/namespaces".into(),
        }
    }
}

/// Shared state the watchers write and the processor reads; `reachable` is false while the
/// API cannot be reached (the processor then counts what it could not enrich).
pub struct Watcher {
    pub cache: RwLock<Cache>,
    pub reachable: std::sync::atomic::AtomicBool,
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
        });
        let mut kinds = vec![Kind::Pods, Kind::ReplicaSets];
        if spec.namespaces {
            kinds.push(Kind::Namespaces);
        }
        for kind in kinds {
            let (w, client, api, spec, stop) = (
                w.clone(),
                client.clone(),
                api.clone(),
                spec.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = w.run(kind, &client, &api, &spec) => {}
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

    fn query(kind: Kind, spec: &WatchSpec) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if kind == Kind::Pods
            && let Some(node) = &spec.node
        {
            q.push(("fieldSelector".into(), format!("spec.nodeName={node}")));
        }
        q
    }

    async fn run(&self, kind: Kind, client: &reqwest::Client, api: &ApiConfig, spec: &WatchSpec) {
        let ns = if kind == Kind::Namespaces {
            None
        } else {
            spec.namespace.as_deref()
        };
        let url = format!("{}{}", api.server, kind.path(ns));
        let mut backoff = Duration::from_millis(200);
        let mut rv: Option<String> = None;
        loop {
            let result = match &rv {
                None => self.list(kind, client, api, &url, spec).await.map(Some),
                Some(v) => self.watch(kind, client, api, &url, spec, v).await,
            };
            match result {
                Ok(Some(next)) => {
                    rv = Some(next);
                    backoff = Duration::from_millis(200);
                }
                // 410 Gone: the version is too old; relist.
                Ok(None) => rv = None,
                Err(e) => {
                    if kind == Kind::Pods {
                        self.reachable
                            .store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    tracing::warn!(resource = ?kind, error = %e, retry_in = ?backoff, "Kubernetes API unreachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn request(
        client: &reqwest::Client,
        api: &ApiConfig,
        url: &str,
        query: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, String> {
        let url = reqwest::Url::parse_with_params(url, query).map_err(|e| format!("{url}: {e}"))?;
        let mut r = client.get(url).header("Accept", "application/json");
        if let Some(t) = &api.token {
            r = r.bearer_auth(t);
        }
        Ok(r)
    }

    /// Lists everything (following `continue`), replaces the cache's view; returns the version.
    async fn list(
        &self,
        kind: Kind,
        client: &reqwest::Client,
        api: &ApiConfig,
        url: &str,
        spec: &WatchSpec,
    ) -> Result<String, String> {
        let mut items: Vec<serde_json::Value> = Vec::new();
        let mut cont: Option<String> = None;
        let version = loop {
            let mut q = Self::query(kind, spec);
            q.push(("limit".into(), "500".into()));
            if let Some(c) = &cont {
                q.push(("continue".into(), c.clone()));
            }
            let resp = Self::request(client, api, url, &q)?
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("GET {url}: HTTP {}", resp.status()));
            }
            let list: List<serde_json::Value> =
                serde_json::from_slice(&resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?)
                    .map_err(|e| format!("GET {url}: {e}"))?;
            items.extend(list.items);
            match list.metadata.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => break list.metadata.resource_version,
            }
        };
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        match kind {
            Kind::Pods => {
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
                    cache.upsert_pod(p);
                }
                cache.synced = true;
                self.reachable
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Kind::ReplicaSets => {
                cache.replicasets.clear();
                for v in items {
                    if let Ok(m) = serde_json::from_value::<Meta>(v) {
                        apply_replicaset(&mut cache, &m, false);
                    }
                }
            }
            Kind::Namespaces => {
                cache.namespaces.clear();
                for v in items {
                    if let Ok(m) = serde_json::from_value::<Meta>(v) {
                        cache
                            .namespaces
                            .insert(m.metadata.name.clone(), Arc::new(m));
                    }
                }
            }
        }
        Ok(version)
    }

    /// Watches from `rv` until the server ends the stream; returns the last version seen, or
    /// `None` when it is too old (410) and a relist is needed.
    async fn watch(
        &self,
        kind: Kind,
        client: &reqwest::Client,
        api: &ApiConfig,
        url: &str,
        spec: &WatchSpec,
        rv: &str,
    ) -> Result<Option<String>, String> {
        let mut q = Self::query(kind, spec);
        q.extend([
            ("watch".to_string(), "1".to_string()),
            ("resourceVersion".into(), rv.to_owned()),
            ("allowWatchBookmarks".into(), "true".into()),
            ("timeoutSeconds".into(), "300".into()),
        ]);
        let resp = Self::request(client, api, url, &q)?
            .send()
            .await
            .map_err(|e| format!("watch {url}: {e}"))?;
        if resp.status() == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("watch {url}: HTTP {}", resp.status()));
        }
        if kind == Kind::Pods {
            self.reachable
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut last = rv.to_owned();
        let mut buf: Vec<u8> = Vec::new();
        let mut body = http::Response::from(resp).into_body();
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.map_err(|e| format!("watch {url}: {e}"))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev: WatchEvent = match serde_json::from_slice(&line) {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable watch event skipped");
                        continue;
                    }
                };
                if ev.kind == "ERROR" {
                    // A Status object; 410 means the version expired.
                    let code = ev.object.get("code").and_then(|c| c.as_u64());
                    if code == Some(410) {
                        return Ok(None);
                    }
                    return Err(format!("watch {url}: error event {}", ev.object));
                }
                if let Some(v) = ev
                    .object
                    .pointer("/metadata/resourceVersion")
                    .and_then(|v| v.as_str())
                {
                    last = v.to_owned();
                }
                if ev.kind == "BOOKMARK" {
                    continue;
                }
                self.apply(kind, &ev.kind, ev.object);
            }
        }
        Ok(Some(last))
    }

    fn apply(&self, kind: Kind, event: &str, object: serde_json::Value) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let deleted = event == "DELETED";
        match kind {
            Kind::Pods => {
                let Ok(pod) = serde_json::from_value::<Pod>(object) else {
                    return;
                };
                if deleted {
                    cache
                        .deleted
                        .push((Instant::now(), pod.metadata.uid.clone()));
                } else {
                    cache.upsert_pod(pod);
                }
            }
            Kind::ReplicaSets => {
                if let Ok(m) = serde_json::from_value::<Meta>(object) {
                    apply_replicaset(&mut cache, &m, deleted);
                }
            }
            Kind::Namespaces => {
                if let Ok(m) = serde_json::from_value::<Meta>(object) {
                    if deleted {
                        cache.namespaces.remove(&m.metadata.name);
                    } else {
                        cache
                            .namespaces
                            .insert(m.metadata.name.clone(), Arc::new(m));
                    }
                }
            }
        }
    }
}

fn apply_replicaset(cache: &mut Cache, m: &Meta, deleted: bool) {
    let key = (m.metadata.namespace.clone(), m.metadata.name.clone());
    let deployment = m
        .metadata
        .owner_references
        .iter()
        .find(|o| o.kind == "Deployment")
        .map(|o| o.name.clone());
    match (deleted, deployment) {
        (false, Some(d)) => {
            cache.replicasets.insert(key, d);
        }
        _ => {
            cache.replicasets.remove(&key);
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
        c.upsert_pod(pod("a", "10.0.0.1", "containerd://aaa"));
        let t0 = Instant::now();
        c.deleted.push((t0, "a".into()));
        c.sweep(t0 + Duration::from_secs(60));
        assert_eq!(
            c.by_ip.get("10.0.0.1").map(String::as_str),
            Some("a"),
            "kept during the grace period"
        );
        // The IP goes to a new pod before the old one is forgotten.
        c.upsert_pod(pod("b", "10.0.0.1", "cri-o://bbb"));
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

    #[test]
    fn kubeconfig_current_context_and_inline_credentials() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\ncurrent-context: b\nclusters:\n- name: one\n  cluster: {{server: 'https://one:6443'}}\n- name: two\n  cluster:\n    server: https://two:6443/\n    certificate-authority-data: {ca}\ncontexts:\n- {{name: a, context: {{cluster: one, user: u}}}}\n- {{name: b, context: {{cluster: two, user: u}}}}\nusers:\n- name: u\n  user: {{token: abc}}\n"
            ),
        )
        .unwrap();
        let api = ApiConfig::from_kubeconfig_file(&path.to_string_lossy());
        let api = api.unwrap();
        assert_eq!(api.server, "https://two:6443");
        assert_eq!(api.token.as_deref(), Some("abc"));
        let ca_file = api.tls.ca_file.unwrap();
        assert_eq!(
            std::fs::read_to_string(ca_file).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
    }
}
