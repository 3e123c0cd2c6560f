//! `kubeletstats` receiver (alias `kubelet_stats`): node, pod, container and volume metrics
//! from the kubelet's Summary API (`GET /stats/summary`) every `collection_interval`, named as
//! the Collector's receiver names them. The kubelet is reached as `auth_type` says: `tls`
//! (client certificate), `serviceAccount` (the pod's token and CA), `kubeConfig` (through the
//! API server's node proxy, `endpoint` being the node's name) or `none` (the read-only port
//! 10255). `extra_metadata_labels` and the utilization-against-limits metrics read the
//! kubelet's `/pods`; utilization against the node's capacity reads the node from the API
//! server (`k8s_api_config`, `node`).

mod config;
mod metrics;
mod summary;

pub use config::{Config, MetricGroup, NetworkInterfaces};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Output;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::kube::{ApiConfig, AuthType, Pod};
use crate::signal::{Batch, Signal};

const NODE_UTILIZATION: &[&str] = &[
    "k8s.pod.cpu.node.utilization",
    "k8s.pod.memory.node.utilization",
    "k8s.container.cpu.node.utilization",
    "k8s.container.memory.node.utilization",
];

const NEEDS_PODS: &[&str] = &[
    "k8s.pod.cpu_limit_utilization",
    "k8s.pod.cpu_request_utilization",
    "k8s.pod.memory_limit_utilization",
    "k8s.pod.memory_request_utilization",
    "k8s.container.cpu_limit_utilization",
    "k8s.container.cpu_request_utilization",
    "k8s.container.memory_limit_utilization",
    "k8s.container.memory_request_utilization",
];

/// `kubeletstats`' identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::receiver(
    "kubeletstats",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
)
.aliases(&["kubelet_stats"]);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    Ok(Box::new(parse_config(node)?))
}

pub fn parse_config(node: &Node) -> Result<Config, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.collection_interval.is_zero() {
        return Err(key_err(
            node,
            &["collection_interval"],
            "must be more than 0",
        ));
    }
    for (k, _) in cfg.metrics.iter().filter(|(_, t)| t.enabled) {
        if metrics::NOT_BUILT.contains(&k.as_str()) {
            return Err(key_err(
                node,
                &["metrics", k],
                "the system-container metrics are not built in ferrotel yet",
            ));
        }
    }
    if let Some(k) = crate::signal::build::unknown(&cfg.metrics, metrics::METRICS)
        && !metrics::NOT_BUILT.contains(&k)
    {
        return Err(key_err(
            node,
            &["metrics", k],
            "not a metric of the kubeletstats receiver",
        ));
    }
    if let Some(k) =
        crate::signal::build::unknown(&cfg.resource_attributes, metrics::RESOURCE_ATTRIBUTES)
    {
        return Err(key_err(
            node,
            &["resource_attributes", k],
            "not a resource attribute of the kubeletstats receiver",
        ));
    }
    let mut seen = Vec::new();
    for (i, l) in cfg.extra_metadata_labels.iter().enumerate() {
        let idx = format!("[{i}]");
        if l != "container.id" && l != "k8s.volume.type" {
            return Err(key_err(
                node,
                &["extra_metadata_labels", &idx],
                format!("label {l:?} is not supported (container.id, k8s.volume.type)"),
            ));
        }
        if seen.contains(&l) {
            return Err(key_err(
                node,
                &["extra_metadata_labels", &idx],
                format!("duplicate metadata label {l:?}"),
            ));
        }
        seen.push(l);
    }
    if cfg.auth_type == AuthType::Tls && (cfg.cert_file.is_none() || cfg.key_file.is_none()) {
        return Err(key_err(
            node,
            &["auth_type"],
            "auth_type tls needs cert_file and key_file (or use serviceAccount)",
        ));
    }
    if cfg.auth_type == AuthType::KubeConfig && cfg.endpoint.is_none() && cfg.node.is_none() {
        return Err(key_err(
            node,
            &["endpoint"],
            "with auth_type kubeConfig the kubelet is reached through the API server: set endpoint (or node) to the node's name",
        ));
    }
    let on = |m: &str| crate::signal::build::enabled(&cfg.metrics, metrics::METRICS, m);
    if let Some(m) = NODE_UTILIZATION.iter().find(|m| on(m))
        && (cfg.node.is_none() || cfg.k8s_api_config.is_none())
    {
        return Err(key_err(
            node,
            &["metrics", m],
            "utilization against the node's capacity needs `node` and `k8s_api_config` (the node is read from the API server)",
        ));
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
            let Some(consumer) = consumers[Signal::Metrics.index()].clone() else {
                return Err(BuildError::new(&ctx.id, "no metrics pipeline uses it"));
            };
            let kubelet = Kubelet::new(&self).map_err(|e| BuildError::new(&ctx.id, e))?;
            let api = match &self.k8s_api_config {
                Some(a) => Some(a.client().map_err(|e| BuildError::new(&ctx.id, e))?),
                None => None,
            };
            let out = Arc::new(Output::new(&ctx, "http", consumer));
            let errors = ctx.telemetry.receiver_source_errors.clone();
            let stop = CancellationToken::new();
            let id = ctx.id.to_string();
            let task = tokio::spawn(run(*self, kubelet, api, out, errors, stop.clone(), id));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

/// How the kubelet is reached: the base URL its paths are joined to, and the credentials.
struct Kubelet {
    base: String,
    client: reqwest::Client,
    /// A bearer token given inline (a kubeconfig's).
    token: Option<String>,
    /// A token file read at every scrape (the service account's, which the kubelet rotates).
    token_file: Option<String>,
}

impl Kubelet {
    fn new(cfg: &Config) -> Result<Kubelet, String> {
        let host = || {
            crate::net::dns::hostname()
                .map_err(|e| format!("no endpoint set and this host's name is unknown: {e}"))
        };
        let with_scheme = |secure: bool| -> Result<String, String> {
            let (scheme, port) = if secure {
                ("https", 10250)
            } else {
                ("http", 10255)
            };
            Ok(match &cfg.endpoint {
                Some(e) if e.starts_with("http://") || e.starts_with("https://") => e.clone(),
                Some(e) => format!("{scheme}://{e}"),
                None => format!("{scheme}://{}:{port}", host()?),
            })
        };
        let tls = |t: crate::net::tls::ClientTlsConfig| -> Result<reqwest::Client, String> {
            let t = t.build(&[b"http/1.1"]).map_err(|e| e.to_string())?;
            reqwest::Client::builder()
                .user_agent(concat!("ferrotel/", env!("CARGO_PKG_VERSION")))
                .tls_backend_preconfigured(t)
                .build()
                .map_err(|e| e.to_string())
        };
        Ok(match cfg.auth_type {
            AuthType::None => Kubelet {
                base: with_scheme(false)?,
                client: reqwest::Client::new(),
                token: None,
                token_file: None,
            },
            AuthType::Tls => Kubelet {
                base: with_scheme(true)?,
                client: tls(crate::net::tls::ClientTlsConfig {
                    ca_file: cfg.ca_file.clone(),
                    cert_file: cfg.cert_file.clone(),
                    key_file: cfg.key_file.clone(),
                    insecure_skip_verify: cfg.insecure_skip_verify,
                    include_system_ca_certs_pool: true,
                    ..Default::default()
                })?,
                token: None,
                token_file: None,
            },
            AuthType::ServiceAccount => {
                let dir = crate::kube::sa_dir();
                let token_file = format!("{dir}/token");
                std::fs::metadata(&token_file).map_err(|e| format!("{token_file}: {e}"))?;
                Kubelet {
                    base: with_scheme(true)?,
                    client: tls(crate::net::tls::ClientTlsConfig {
                        ca_file: Some(format!("{dir}/ca.crt")),
                        insecure_skip_verify: cfg.insecure_skip_verify,
                        include_system_ca_certs_pool: true,
                        ..Default::default()
                    })?,
                    token: None,
                    token_file: Some(token_file),
                }
            }
            AuthType::KubeConfig => {
                let mut api = ApiConfig::from_kubeconfig(cfg.context.as_deref())?;
                if cfg.insecure_skip_verify {
                    api.tls.insecure_skip_verify = true;
                    api.tls.ca_file = None;
                }
                let node = cfg
                    .endpoint
                    .clone()
                    .or_else(|| cfg.node.clone())
                    .unwrap_or_default();
                Kubelet {
                    base: format!("{}/api/v1/nodes/{node}/proxy", api.server),
                    client: api.client()?,
                    token: api.token.clone(),
                    token_file: None,
                }
            }
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.client.get(&url).timeout(timeout);
        let token = match &self.token_file {
            Some(f) => Some(
                tokio::fs::read_to_string(f)
                    .await
                    .map_err(|e| format!("{f}: {e}"))?
                    .trim()
                    .to_owned(),
            ),
            None => self.token.clone(),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(format!("GET {url}: HTTP {status}: {text}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
    }
}

/// The node's capacity, re-read this often (it changes only when the node is resized).
const NODE_REFRESH: Duration = Duration::from_secs(300);

#[allow(clippy::too_many_arguments)]
async fn run(
    cfg: Config,
    kubelet: Kubelet,
    api: Option<(ApiConfig, reqwest::Client)>,
    out: Arc<Output>,
    errors: crate::telemetry::SourceErrors,
    stop: CancellationToken,
    id: String,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(cfg.initial_delay) => {}
    }
    let timeout = cfg.timeout.unwrap_or(cfg.collection_interval);
    let on = |m: &str| crate::signal::build::enabled(&cfg.metrics, metrics::METRICS, m);
    let wants_pods = !cfg.extra_metadata_labels.is_empty() || NEEDS_PODS.iter().any(|m| on(m));
    let wants_node = NODE_UTILIZATION.iter().any(|m| on(m));
    let mut tick = tokio::time::interval(cfg.collection_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut node_capacity: Option<(std::time::Instant, Option<f64>, Option<f64>)> = None;
    let mut report = |source: &'static str, r: Result<(), String>| match r {
        Ok(()) => {
            if failing.remove(source).is_some() {
                tracing::info!(receiver = %id, source, "kubelet read works again");
            }
        }
        Err(e) => {
            crate::telemetry::source_failed(&errors, &id, source);
            if failing.get(source) != Some(&e) {
                tracing::warn!(receiver = %id, source, error = %e, "kubelet read failed");
            }
            failing.insert(source, e);
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let summary: summary::Summary = match kubelet.get("/stats/summary", timeout).await {
            Ok(s) => {
                report("/stats/summary", Ok(()));
                s
            }
            Err(e) => {
                report("/stats/summary", Err(e));
                continue;
            }
        };
        let mut extra = metrics::Extra::default();
        if wants_pods {
            match kubelet
                .get::<crate::kube::objects::List<Pod>>("/pods", timeout)
                .await
            {
                Ok(list) => {
                    report("/pods", Ok(()));
                    extra.pods = list
                        .items
                        .into_iter()
                        .map(|p| (p.metadata.uid.clone(), p))
                        .collect::<HashMap<String, Pod>>();
                }
                // As the Collector: without the pod list this scrape yields nothing.
                Err(e) => {
                    report("/pods", Err(e));
                    continue;
                }
            }
        }
        if wants_node && let Some((api, client)) = &api {
            let stale = node_capacity
                .as_ref()
                .is_none_or(|(at, _, _)| at.elapsed() > NODE_REFRESH);
            if stale {
                let node = cfg.node.clone().unwrap_or_default();
                match read_node(api, client, &node, timeout).await {
                    Ok((cpu, mem)) => {
                        report("node", Ok(()));
                        node_capacity = Some((std::time::Instant::now(), cpu, mem));
                    }
                    Err(e) => report("node", Err(e)),
                }
            }
            if let Some((_, cpu, mem)) = node_capacity {
                extra.node_cpu = cpu;
                extra.node_memory = mem;
            }
        }
        let now = crate::component::now_nanos();
        let rms = metrics::build(&cfg, &summary, &extra, now);
        if rms.is_empty() {
            continue;
        }
        if let Err(e) = out.push(Batch::Metrics(rms), Default::default()).await {
            tracing::debug!(receiver = %id, error = %e, "scrape refused downstream");
        }
    }
}

/// The node's CPU (cores) and memory (bytes) capacity from the API server.
async fn read_node(
    api: &ApiConfig,
    client: &reqwest::Client,
    node: &str,
    timeout: Duration,
) -> Result<(Option<f64>, Option<f64>), String> {
    let url = format!("{}/api/v1/nodes/{node}", api.server);
    let mut req = client.get(&url).timeout(timeout);
    if let Some(t) = &api.token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))?;
    let q = |k: &str| {
        v.pointer(&format!("/status/capacity/{k}"))
            .and_then(|q| q.as_str())
            .and_then(crate::kube::quantity::parse)
    };
    Ok((q("cpu"), q("memory")))
}

#[cfg(test)]
mod tests;
