//! `load_balancing` exporter (alias `loadbalancing`): spreads data over several OTLP backends
//! (gateways) so that everything with the same routing key reaches the same backend —
//! `routing_key: traceID` (default; every span of a trace, for tail sampling), `service` or
//! `resource` (a whole resource). Backends come from `resolver.static.hostnames` or
//! `resolver.dns` (`hostname`, `port` default 4317, re-resolved every `interval`, default 5s:
//! a Kubernetes headless Service). Keys are assigned by rendezvous hashing, so adding a backend
//! moves about 1/n of the keys and removing one moves only its own.
//!
//! Each backend is an `otlp_grpc` exporter (settings under `protocol.otlp`) with its own queue;
//! with `sending_queue.storage`, one persistent queue sits in front of the routing instead and the
//! backends send in place.
//! When a send to a backend fails retryably, the backend is avoided for a while and the
//! request is routed again over the others (each key to its next choice), so a failed backend's
//! data is rerouted rather than lost; with no other backend left it stays queued and retried.
//! Metrics and logs are routed by resource (`traceID` means `resource` for them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::signal::value;
use serde::Deserialize;
use tokio::time::Instant;

use super::helper::{Helper, Part, SendError, Sender, Settings};
use super::key_err;
use super::otlp_grpc::{self, EncodedRequest, GrpcSender};
use crate::component::{
    BoxFuture, BuildError, ConsumeError, ConsumeResult, Consumer, Context, Exporter,
    ExporterConfig, Factory, Lifecycle, Stability,
};
use crate::config::node::{Key, Value};
use crate::config::{ComponentId, DeError, Node, from_node, units};
use crate::signal::Batch;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub enum RoutingKey {
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    #[serde(rename = "service")]
    Service,
    #[serde(rename = "resource")]
    Resource,
    /// Metrics: each metric by its name.
    #[serde(rename = "metric")]
    Metric,
    /// Metrics: each data point stream (resource, scope, metric name, point attributes).
    #[serde(rename = "streamID")]
    StreamId,
    /// Traces: each span by the values of `routing_attributes` (span, then resource), or by
    /// its trace id when it has none of them.
    #[serde(rename = "attributes")]
    Attributes,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticCfg {
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsCfg {
    pub hostname: String,
    /// Default 4317.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default 5s.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub interval: Option<Duration>,
    /// Default 1s.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
}

/// `resolver.k8s`: the ready endpoints of a Service, from its EndpointSlices, watched.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sCfg {
    /// `name.namespace` (namespace `default` when omitted).
    pub service: String,
    /// Ports of each endpoint to send to. Default `[4317]`.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Default 1s: the time the first list may take before the exporter starts without
    /// backends (data is then refused retryably until they appear).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
    /// Use `<hostname>.<service>.<namespace>` (a StatefulSet's stable names) instead of IPs.
    #[serde(default)]
    pub return_hostnames: bool,
}

impl K8sCfg {
    fn name_namespace(&self) -> (&str, &str) {
        self.service
            .split_once('.')
            .map_or((self.service.as_str(), "default"), |(n, ns)| {
                (n, ns.split('.').next().unwrap_or(ns))
            })
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResolverCfg {
    #[serde(default, rename = "static")]
    pub static_: Option<StaticCfg>,
    #[serde(default)]
    pub dns: Option<DnsCfg>,
    #[serde(default)]
    pub k8s: Option<K8sCfg>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default)]
    routing_key: RoutingKey,
    /// With `routing_key: attributes`, the attribute keys whose values route a span.
    #[serde(default)]
    routing_attributes: Vec<String>,
    /// Checked separately: `protocol.otlp` is an `otlp_grpc` config without `endpoint`.
    #[allow(dead_code)]
    #[serde(default)]
    protocol: Option<serde::de::IgnoredAny>,
    resolver: ResolverCfg,
    /// `timeout`, `retry_on_failure` and `sending_queue` at this level apply to every backend
    /// (over those under `protocol.otlp`).
    #[serde(default, deserialize_with = "units::opt_duration")]
    timeout: Option<Duration>,
    #[serde(default)]
    retry_on_failure: Option<super::helper::RetryConfig>,
    #[serde(default)]
    sending_queue: Option<super::helper::QueueConfig>,
}

/// Validated: the per-backend config (endpoint filled in per backend) and the routing.
struct Validated {
    routing_key: RoutingKey,
    routing_attributes: Vec<String>,
    otlp: otlp_grpc::Config,
    settings: Settings,
    resolver: ResolverCfg,
    /// `sending_queue.storage`: the persistent queue in front of the routing.
    front: Option<Settings>,
}

/// `protocol.otlp` with `endpoint` set, as a node `otlp_grpc` can parse.
fn with_endpoint(otlp: &Node, endpoint: &str) -> Node {
    let mut n = otlp.clone();
    let entry = (
        Key {
            name: "endpoint".into(),
            pos: otlp.pos,
        },
        Node {
            value: Value::Str(endpoint.into()),
            pos: otlp.pos,
        },
    );
    match &mut n.value {
        Value::Map(m) => {
            m.retain(|(k, _)| k.name != "endpoint");
            m.push(entry);
        }
        _ => n.value = Value::Map(vec![entry]),
    }
    n
}

/// `load_balancing`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::exporter(
    "load_balancing",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
)
.aliases(&["loadbalancing"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let top: Top = from_node(node)?;
    // No `protocol`: OTLP with its defaults (TLS on), as in the Collector.
    let empty = Node::null(node.pos);
    let protocol = node.get("protocol").unwrap_or(&empty);
    let otlp = protocol.get("otlp").unwrap_or(&empty);
    if protocol
        .entries()
        .is_some_and(|e| e.iter().any(|(k, _)| k.name != "otlp"))
    {
        return Err(key_err(
            node,
            &["protocol"],
            "only protocol.otlp is supported",
        ));
    }
    if otlp.get("endpoint").is_some() {
        return Err(key_err(
            node,
            &["protocol", "otlp", "endpoint"],
            "the endpoints come from the resolver; remove endpoint",
        ));
    }
    let probe = with_endpoint(otlp, "backend:4317");
    let mut otlp_cfg: otlp_grpc::Config =
        super::helper::client::parse(&probe).map_err(|mut e| {
            e.path.insert(0, "otlp".into());
            e.path.insert(0, "protocol".into());
            e
        })?;
    otlp_grpc::parse(&probe).map_err(|mut e| {
        e.path.insert(0, "otlp".into());
        e.path.insert(0, "protocol".into());
        e
    })?;
    if let Some(t) = top.timeout {
        otlp_cfg.client.timeout = t;
    }
    if let Some(r) = &top.retry_on_failure {
        otlp_cfg.client.retry_on_failure = r.clone();
    }
    if let Some(q) = &top.sending_queue {
        otlp_cfg.client.sending_queue = q.clone();
    }
    let at = if top.sending_queue.is_some() || top.retry_on_failure.is_some() {
        node
    } else {
        otlp
    };
    let settings = Settings::new(
        otlp_cfg.client.timeout,
        otlp_cfg.client.retry_on_failure.clone(),
        otlp_cfg.client.sending_queue.clone(),
        at,
    )?;
    // With `storage`, one persistent queue sits in front of the routing, and the backends send
    // in place: a record leaves the disk only once a backend took it, and a backend that goes
    // away takes no queue with it.
    let (front, settings) = if settings.storage.is_some() {
        let mut backend = settings.clone();
        backend.queue.enabled = false;
        backend.queue.batch = None;
        backend.storage = None;
        (Some(settings), backend)
    } else {
        (None, settings)
    };
    let chosen = [
        top.resolver.static_.is_some(),
        top.resolver.dns.is_some(),
        top.resolver.k8s.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chosen > 1 {
        return Err(key_err(
            node,
            &["resolver"],
            "set one of static, dns and k8s",
        ));
    }
    if let Some(k) = &top.resolver.k8s {
        let (name, _) = k.name_namespace();
        if name.is_empty() {
            return Err(key_err(
                node,
                &["resolver", "k8s", "service"],
                "name the Service as name.namespace",
            ));
        }
    }
    match (&top.resolver.static_, &top.resolver.dns) {
        _ if top.resolver.k8s.is_some() => {}
        (Some(s), None) => {
            if s.hostnames.is_empty() {
                return Err(key_err(
                    node,
                    &["resolver", "static", "hostnames"],
                    "list at least one backend",
                ));
            }
            for h in &s.hostnames {
                let with_port = if h
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    h.clone()
                } else {
                    format!("{h}:4317")
                };
                crate::net::client::parse_endpoint(&with_port, true)
                    .map_err(|m| key_err(node, &["resolver", "static", "hostnames"], m))?;
            }
        }
        (None, Some(d)) => {
            if d.hostname.is_empty() {
                return Err(key_err(
                    node,
                    &["resolver", "dns", "hostname"],
                    "must not be empty",
                ));
            }
        }
        (None, None) => {
            return Err(key_err(
                node,
                &["resolver"],
                "set resolver.static (hostnames), resolver.dns (hostname) or resolver.k8s (service)",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(key_err(
                node,
                &["resolver"],
                "set either static or dns, not both",
            ));
        }
    }
    otlp_cfg.endpoint = String::new();
    if top.routing_key == RoutingKey::Attributes && top.routing_attributes.is_empty() {
        return Err(key_err(
            node,
            &["routing_attributes"],
            "routing_key attributes needs routing_attributes (the keys to route by)",
        ));
    }
    Ok(Box::new(Validated {
        routing_attributes: top.routing_attributes,
        routing_key: top.routing_key,
        otlp: otlp_cfg,
        settings,
        resolver: top.resolver,
        front,
    }))
}

/// Rendezvous score of a key on a backend: FNV-1a 64 of both, finished with a mixer.
fn score(key: &[u8], backend: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.iter().chain([0xffu8].iter()).chain(backend.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer: FNV's low bits alone spread poorly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The backend a key goes to among `candidates`.
pub fn pick<'a>(key: &[u8], candidates: &'a [String]) -> Option<&'a String> {
    candidates.iter().max_by_key(|b| score(key, b))
}

struct Backend {
    exporter: Arc<dyn Exporter>,
}

/// What the load balancer and its backends' senders share.
struct Core {
    id: ComponentId,
    ctx: Context,
    routing_key: RoutingKey,
    routing_attributes: Vec<String>,
    otlp: otlp_grpc::Config,
    settings: Settings,
    backends: Mutex<BTreeMap<String, Backend>>,
    /// Backends to avoid until the given time, after a failed send.
    avoid: Mutex<HashMap<String, Instant>>,
    /// True once the resolver has answered (at build for `static`): until then a batch waits
    /// for the first backends instead of being refused.
    resolved: tokio::sync::watch::Sender<bool>,
    this: Weak<Core>,
}

const AVOID_FOR: Duration = Duration::from_secs(5);
/// How long data that arrives before the resolver's first answer waits for it.
const FIRST_RESOLUTION_WAIT: Duration = Duration::from_secs(10);

/// A backend's sender: gRPC to its endpoint; on a retryable failure the batch is routed again
/// over the other backends.
struct BackendSender {
    grpc: GrpcSender,
    endpoint: String,
    core: Weak<Core>,
}

/// The request as sent, and as a batch to route again if this backend fails.
struct BackendRequest {
    grpc: EncodedRequest,
    batch: Batch,
}

impl BackendSender {
    fn parts(
        &self,
        signal: crate::signal::Signal,
        raw: bytes::Bytes,
        items: usize,
        max: usize,
    ) -> Result<Vec<Part<BackendRequest>>, SendError> {
        Ok(self
            .grpc
            .raw_parts(signal, raw, items, max)?
            .into_iter()
            .map(|(bytes, items, grpc)| Part {
                shard: 0,
                items,
                req: BackendRequest {
                    grpc,
                    batch: Batch::Encoded(crate::signal::Encoded::new(signal, bytes, items)),
                },
            })
            .collect())
    }
}

impl Sender for BackendSender {
    type Request = BackendRequest;

    fn encode(&self, batch: Batch) -> Result<BackendRequest, SendError> {
        // Encoded once: the gRPC request is made from these bytes, and they are kept (shared,
        // not copied) to route again from if this backend fails.
        let (signal, items) = (batch.signal(), batch.item_count());
        let raw = Batch::Encoded(crate::signal::Encoded::new(
            signal,
            batch.into_request_bytes(),
            items,
        ));
        Ok(BackendRequest {
            grpc: self.grpc.encode(raw.clone())?,
            batch: raw,
        })
    }

    /// At most the backend's `max_request_size` per request; each part keeps its own bytes to
    /// route again from.
    fn encode_parts(
        &self,
        batch: Batch,
        _shards: usize,
    ) -> Result<Vec<Part<BackendRequest>>, SendError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        let raw = batch.into_request_bytes();
        self.parts(signal, raw, items, self.grpc.max_request())
    }

    fn split(&self, req: &BackendRequest) -> Option<Vec<Part<BackendRequest>>> {
        let raw = req.batch.clone().into_request_bytes();
        let half = raw.len() / 2 + 1;
        let parts = self
            .parts(req.batch.signal(), raw, req.batch.item_count(), half)
            .ok()?;
        (parts.len() > 1).then_some(parts)
    }

    fn send<'a>(&'a self, req: &'a BackendRequest) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let err = match self.grpc.send(&req.grpc).await {
                Ok(()) => return Ok(()),
                // Another backend would refuse it the same way: not routed again.
                Err(e @ (SendError::Permanent(_) | SendError::TooLarge(_))) => return Err(e),
                Err(e) => e,
            };
            let Some(core) = self.core.upgrade() else {
                return Err(err);
            };
            core.avoid
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.endpoint.clone(), Instant::now() + AVOID_FOR);
            if core.healthy_others(&self.endpoint).is_empty() {
                return Err(err);
            }
            tracing::warn!(exporter = %core.id, backend = %self.endpoint, error = %err, "backend failed; routing its data to the others");
            match core.route(req.batch.clone(), Some(&self.endpoint)).await {
                Ok(()) => Ok(()),
                Err(_) => Err(err),
            }
        })
    }
}

impl Core {
    /// The backends a batch may go to (not `except`, not those being avoided unless no other is
    /// left), and every backend's exporter.
    fn targets(&self, except: Option<&str>) -> (Vec<String>, HashMap<String, Arc<dyn Exporter>>) {
        let map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let avoid = self.avoid.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<String> = map.keys().cloned().collect();
        let mut healthy: Vec<String> = all
            .iter()
            .filter(|b| Some(b.as_str()) != except && avoid.get(*b).is_none_or(|t| *t <= now))
            .cloned()
            .collect();
        if healthy.is_empty() {
            healthy = all
                .into_iter()
                .filter(|b| Some(b.as_str()) != except)
                .collect();
        }
        let exporters = map
            .iter()
            .map(|(k, b)| (k.clone(), b.exporter.clone()))
            .collect();
        (healthy, exporters)
    }

    fn healthy_others(&self, except: &str) -> Vec<String> {
        let now = Instant::now();
        let avoid = self.avoid.lock().unwrap_or_else(|p| p.into_inner());
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|b| *b != except && avoid.get(*b).is_none_or(|t| *t <= now))
            .cloned()
            .collect()
    }

    /// Adds and removes backends to match `endpoints`.
    async fn set_backends(&self, endpoints: Vec<String>) {
        let mut removed = Vec::new();
        {
            let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
            let keep: std::collections::BTreeSet<&String> = endpoints.iter().collect();
            let gone: Vec<String> = map.keys().filter(|k| !keep.contains(k)).cloned().collect();
            for g in gone {
                if let Some(b) = map.remove(&g) {
                    removed.push(b);
                }
            }
            for e in endpoints {
                if map.contains_key(&e) {
                    continue;
                }
                match self.backend(&e) {
                    Ok(b) => {
                        tracing::info!(exporter = %self.id, backend = %e, "backend added");
                        map.insert(e, b);
                    }
                    Err(err) => {
                        tracing::error!(exporter = %self.id, backend = %e, error = %err, "backend not usable")
                    }
                }
            }
        }
        self.resolved.send_replace(true);
        // A removed backend drains its queue; what it cannot send is routed to the others.
        for b in removed {
            b.exporter
                .shutdown(Instant::now() + Duration::from_secs(30))
                .await;
        }
    }

    fn backend(&self, endpoint: &str) -> Result<Backend, String> {
        let mut cfg = self.otlp.clone();
        cfg.endpoint = endpoint.to_owned();
        let id = ComponentId::parse(&format!("{}/{endpoint}", self.id.kind))
            .or_else(|_| ComponentId::parse(&self.id.to_string()))?;
        let mut ctx = self.ctx.clone();
        ctx.id = id;
        let mut grpc = GrpcSender::new(&cfg, &ctx.id.to_string())?;
        grpc.auth = cfg.client.authenticator(&ctx)?;
        let sender = BackendSender {
            grpc,
            endpoint: endpoint.to_owned(),
            core: self.this.clone(),
        };
        Ok(Backend {
            exporter: Helper::build(&ctx, self.settings.clone(), sender).map_err(|e| e.msg)?,
        })
    }

    /// Splits a batch by routing key and hands each part to its backend (skipping `except`
    /// and backends being avoided, unless none is left).
    async fn route(&self, batch: Batch, except: Option<&str>) -> ConsumeResult {
        let batch = batch
            .into_decoded()
            .map_err(|e| ConsumeError::Permanent(format!("{}: {e}", self.id)))?;
        let (mut targets, mut exporters) = self.targets(except);
        if targets.is_empty() && !*self.resolved.borrow() {
            let mut rx = self.resolved.subscribe();
            let _ = tokio::time::timeout(FIRST_RESOLUTION_WAIT, rx.wait_for(|r| *r)).await;
            (targets, exporters) = self.targets(except);
        }
        if targets.is_empty() {
            return Err(ConsumeError::refuse(
                format!("{}: no backend to send to", self.id),
                batch,
            ));
        }
        let mut parts: BTreeMap<String, Batch> = BTreeMap::new();
        let mut add = |target: &String, b: Batch| match parts.get_mut(target) {
            Some(p) => {
                let _ = p.append(b);
            }
            None => {
                parts.insert(target.clone(), b);
            }
        };
        match batch {
            Batch::Traces(rs) => {
                for r in rs {
                    match self.routing_key {
                        RoutingKey::TraceId | RoutingKey::Metric | RoutingKey::StreamId => {
                            let mut frags = Vec::new();
                            crate::signal::split::split_by_trace(r, &mut frags);
                            for (tid, frag) in frags {
                                if let Some(t) = pick(&tid, &targets) {
                                    add(t, Batch::Traces(vec![frag]));
                                }
                            }
                        }
                        RoutingKey::Attributes => {
                            for (key, part) in
                                split_spans_by_attributes(r, &self.routing_attributes)
                            {
                                if let Some(t) = pick(&key, &targets) {
                                    add(t, Batch::Traces(vec![part]));
                                }
                            }
                        }
                        _ => {
                            let key = resource_key(self.routing_key, r.resource.as_ref());
                            if let Some(t) = pick(&key, &targets) {
                                add(t, Batch::Traces(vec![r]));
                            }
                        }
                    }
                }
            }
            Batch::Metrics(rm) => {
                for r in rm {
                    match self.routing_key {
                        RoutingKey::Metric | RoutingKey::StreamId => {
                            let per_point = self.routing_key == RoutingKey::StreamId;
                            for (key, part) in split_metrics(r, per_point) {
                                if let Some(t) = pick(&key, &targets) {
                                    add(t, Batch::Metrics(vec![part]));
                                }
                            }
                        }
                        _ => {
                            let key = resource_key(self.routing_key, r.resource.as_ref());
                            if let Some(t) = pick(&key, &targets) {
                                add(t, Batch::Metrics(vec![r]));
                            }
                        }
                    }
                }
            }
            Batch::Logs(rl) => {
                for r in rl {
                    let key = resource_key(self.routing_key, r.resource.as_ref());
                    if let Some(t) = pick(&key, &targets) {
                        add(t, Batch::Logs(vec![r]));
                    }
                }
            }
            Batch::Encoded(_) => unreachable!("decoded above"),
        }
        // Every part is offered even if one is refused; the first refusal is reported (the
        // parts accepted are not resent by a retrying client only if it does not retry).
        let mut first_err = None;
        for (target, part) in parts {
            let Some(exp) = exporters.get(&target) else {
                continue;
            };
            if let Err(e) = exp.consume(part).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Spans grouped by the values of `keys` (span attributes first, then the resource's); a span
/// with none of them goes by its trace id.
fn split_spans_by_attributes(
    r: opentelemetry_proto::tonic::trace::v1::ResourceSpans,
    keys: &[String],
) -> Vec<(
    Vec<u8>,
    opentelemetry_proto::tonic::trace::v1::ResourceSpans,
)> {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    let res_attrs = r
        .resource
        .as_ref()
        .map_or(&[][..], |x| &x.attributes)
        .to_vec();
    let mut out: Vec<(Vec<u8>, ResourceSpans)> = Vec::new();
    for ss in r.scope_spans {
        for span in ss.spans {
            let mut key = Vec::new();
            for k in keys {
                let v =
                    value::find_kv(&span.attributes, k).or_else(|| value::find_kv(&res_attrs, k));
                if let Some(kv) = v {
                    key.extend_from_slice(k.as_bytes());
                    key.push(0);
                    key.extend_from_slice(value::option_text(&kv.value).as_bytes());
                    key.push(1);
                }
            }
            if key.is_empty() {
                key = span.trace_id.clone();
            }
            let slot = match out.iter_mut().position(|(k, _)| *k == key) {
                Some(i) => &mut out[i].1,
                None => {
                    out.push((
                        key,
                        ResourceSpans {
                            resource: r.resource.clone(),
                            schema_url: r.schema_url.clone(),
                            scope_spans: Vec::new(),
                        },
                    ));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            match slot
                .scope_spans
                .iter_mut()
                .find(|s| s.scope == ss.scope && s.schema_url == ss.schema_url)
            {
                Some(s) => s.spans.push(span),
                None => slot.scope_spans.push(ScopeSpans {
                    scope: ss.scope.clone(),
                    schema_url: ss.schema_url.clone(),
                    spans: vec![span],
                }),
            }
        }
    }
    out
}

/// Metrics one by one (`metric`: keyed by name), or data point by data point (`streamID`:
/// keyed by the resource, scope, name and point attributes), each under its resource and scope.
fn split_metrics(
    r: opentelemetry_proto::tonic::metrics::v1::ResourceMetrics,
    per_point: bool,
) -> Vec<(
    Vec<u8>,
    opentelemetry_proto::tonic::metrics::v1::ResourceMetrics,
)> {
    use crate::signal::split::{metric_points, point_attributes};
    use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
    let res_key = resource_key(RoutingKey::Resource, r.resource.as_ref());
    let wrap = |scope: &ScopeMetrics, m: Metric| ResourceMetrics {
        resource: r.resource.clone(),
        schema_url: r.schema_url.clone(),
        scope_metrics: vec![ScopeMetrics {
            scope: scope.scope.clone(),
            schema_url: scope.schema_url.clone(),
            metrics: vec![m],
        }],
    };
    let mut out = Vec::new();
    for sm in &r.scope_metrics {
        for m in &sm.metrics {
            if !per_point {
                out.push((m.name.clone().into_bytes(), wrap(sm, m.clone())));
                continue;
            }
            for p in metric_points(m) {
                let mut k = res_key.clone();
                k.extend_from_slice(sm.scope.as_ref().map_or("", |s| s.name.as_str()).as_bytes());
                k.push(2);
                k.extend_from_slice(m.name.as_bytes());
                k.push(2);
                value::attrs_key(point_attributes(&p), &mut k);
                out.push((k, wrap(sm, p)));
            }
        }
    }
    out
}

/// The key of a whole resource: its `service.name`, or all its attributes.
fn resource_key(
    key: RoutingKey,
    resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Vec<u8> {
    let attrs = resource.map_or(&[][..], |r| &r.attributes);
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| {
        value::option_text(v).into_owned()
    };
    match key {
        RoutingKey::Service => value::find_kv(attrs, "service.name")
            .map(|kv| text(&kv.value))
            .unwrap_or_default()
            .into_bytes(),
        _ => {
            let mut out = Vec::new();
            value::attrs_key(attrs, &mut out);
            out
        }
    }
}

pub struct LoadBalancer {
    core: Arc<Core>,
    resolver: Option<tokio::task::JoinHandle<()>>,
    /// The persistent queue in front of the routing (`sending_queue.storage`).
    front: Option<Arc<dyn Exporter>>,
}

/// What the persistent queue in front sends through: the routing, to backends that send in
/// place (so the record is done only once a backend took it).
struct RouteSender(Arc<Core>);

impl Sender for RouteSender {
    type Request = Batch;

    fn encode(&self, batch: Batch) -> Result<Batch, SendError> {
        Ok(batch)
    }

    fn send<'a>(&'a self, req: &'a Batch) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            match self.0.route(req.clone(), None).await {
                Ok(()) => Ok(()),
                Err(ConsumeError::Retryable {
                    reason,
                    retry_after,
                    ..
                }) => Err(SendError::Retryable {
                    msg: reason,
                    retry_after,
                }),
                Err(ConsumeError::Permanent(m)) => Err(SendError::Permanent(m)),
            }
        })
    }
}

impl ExporterConfig for Validated {
    fn storage(&self) -> Option<&ComponentId> {
        self.front.as_ref().and_then(|f| f.storage.as_ref())
    }

    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated {
            routing_key,
            routing_attributes,
            otlp,
            settings,
            resolver,
            front,
        } = *self;
        // A missing authenticator fails the start, not each backend as it appears.
        otlp.client
            .authenticator(&ctx)
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        let core = Arc::new_cyclic(|this| Core {
            id: ctx.id.clone(),
            ctx: ctx.clone(),
            routing_key,
            routing_attributes,
            otlp,
            settings,
            backends: Mutex::new(BTreeMap::new()),
            avoid: Mutex::new(HashMap::new()),
            resolved: tokio::sync::watch::Sender::new(false),
            this: this.clone(),
        });
        let mut task = None;
        if let Some(s) = resolver.static_ {
            let endpoints: Vec<String> = s
                .hostnames
                .iter()
                .map(|h| {
                    if h.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    {
                        h.clone()
                    } else {
                        format!("{h}:4317")
                    }
                })
                .collect();
            let mut map = core.backends.lock().unwrap_or_else(|p| p.into_inner());
            for e in endpoints {
                let b = core.backend(&e).map_err(|m| BuildError::new(&ctx.id, m))?;
                map.insert(e, b);
            }
            core.resolved.send_replace(true);
        } else if let Some(d) = resolver.dns {
            let core2 = core.clone();
            let stop = ctx.shutdown.clone();
            let port = d.port.unwrap_or(4317);
            let every = d.interval.unwrap_or(Duration::from_secs(5));
            let timeout = d.timeout.unwrap_or(Duration::from_secs(1));
            task = Some(tokio::spawn(async move {
                loop {
                    let lookup = tokio::net::lookup_host((d.hostname.as_str(), port));
                    match tokio::time::timeout(timeout, lookup).await {
                        Ok(Ok(addrs)) => {
                            let mut eps: Vec<String> = addrs
                                .map(|a| match a {
                                    std::net::SocketAddr::V4(v) => {
                                        format!("{}:{}", v.ip(), v.port())
                                    }
                                    std::net::SocketAddr::V6(v) => {
                                        format!("[{}]:{}", v.ip(), v.port())
                                    }
                                })
                                .collect();
                            eps.sort();
                            eps.dedup();
                            core2.set_backends(eps).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(exporter = %core2.id, host = %d.hostname, error = %e, "DNS lookup failed; keeping the backends")
                        }
                        Err(_) => {
                            tracing::warn!(exporter = %core2.id, host = %d.hostname, "DNS lookup timed out; keeping the backends")
                        }
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            }));
        }
        if let Some(k) = resolver.k8s {
            task = Some(k8s_resolver(core.clone(), k, ctx.shutdown.clone())?);
        }
        let front = match front {
            Some(f) => Some(Helper::build(&ctx, f, RouteSender(core.clone()))?),
            None => None,
        };
        Ok(Arc::new(LoadBalancer {
            core,
            resolver: task,
            front,
        }))
    }
}

/// The backends of `resolver.k8s`: the Service's EndpointSlices are listed and watched; each
/// change sets the ready endpoints (× `ports`) as the backends. A backend that goes away drains
/// its queue, and what it cannot send is routed to the others (see [`Core::set_backends`]).
fn k8s_resolver(
    core: Arc<Core>,
    k: K8sCfg,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BuildError> {
    // In a pod: the service account; outside one: $KUBECONFIG (a developer's cluster, tests).
    let api = crate::kube::ApiConfig::in_cluster()
        .or_else(|e| {
            crate::kube::ApiConfig::from_kubeconfig(None)
                .map_err(|e2| format!("{e}; and no kubeconfig: {e2}"))
        })
        .map_err(|m| BuildError::new(&core.id, format!("resolver.k8s: {m}")))?;
    let client = api
        .client()
        .map_err(|m| BuildError::new(&core.id, format!("resolver.k8s: {m}")))?;
    let (name, ns) = k.name_namespace();
    let (name, ns) = (name.to_owned(), ns.to_owned());
    let resource = crate::kube::watch::Resource {
        path: format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"),
        query: vec![(
            "labelSelector".into(),
            format!("kubernetes.io/service-name={name}"),
        )],
    };
    let ports = if k.ports.is_empty() {
        vec![4317]
    } else {
        k.ports.clone()
    };
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<Vec<String>>>(None);
    let id = core.id.clone();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut slices: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let publish = |slices: &BTreeMap<String, Vec<String>>| {
                let mut eps: Vec<String> = slices
                    .values()
                    .flatten()
                    .flat_map(|host| {
                        ports.iter().map(move |p| {
                            if host.contains(':') {
                                format!("[{host}]:{p}")
                            } else {
                                format!("{host}:{p}")
                            }
                        })
                    })
                    .collect();
                eps.sort();
                eps.dedup();
                let _ = tx.send(Some(eps));
            };
            let on = |ev: crate::kube::watch::Event| {
                use crate::kube::watch::Event;
                match ev {
                    Event::Listed(items) => {
                        slices.clear();
                        for v in items {
                            if let Some((n, hosts)) =
                                slice_hosts(&v, k.return_hostnames, &name, &ns)
                            {
                                slices.insert(n, hosts);
                            }
                        }
                        publish(&slices);
                    }
                    Event::Applied(v) | Event::Added(v) => {
                        if let Some((n, hosts)) = slice_hosts(&v, k.return_hostnames, &name, &ns) {
                            slices.insert(n, hosts);
                            publish(&slices);
                        }
                    }
                    Event::Deleted(v) => {
                        if let Some((n, _)) = slice_hosts(&v, k.return_hostnames, &name, &ns) {
                            slices.remove(&n);
                            publish(&slices);
                        }
                    }
                    Event::Reachable(false) => {
                        tracing::warn!(exporter = %id, "resolver.k8s: the API server is unreachable; keeping the backends")
                    }
                    Event::Reachable(true) => {}
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = crate::kube::watch::run(&client, &api, &resource, on) => {}
            }
        })
    };
    let first_wait = k.timeout.unwrap_or(Duration::from_secs(1));
    Ok(tokio::spawn(async move {
        // The first list, within `timeout`: until then (or after it) data is refused
        // retryably while there is no backend.
        let _ = tokio::time::timeout(first_wait, rx.wait_for(Option::is_some)).await;
        loop {
            let eps = rx.borrow_and_update().clone();
            if let Some(eps) = eps {
                core.set_backends(eps).await;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                r = rx.changed() => if r.is_err() { break },
            }
        }
        watcher.abort();
    }))
}

/// An EndpointSlice's name and the addresses of its ready endpoints (or their hostnames).
fn slice_hosts(
    v: &serde_json::Value,
    hostnames: bool,
    service: &str,
    ns: &str,
) -> Option<(String, Vec<String>)> {
    let name = v.pointer("/metadata/name")?.as_str()?.to_owned();
    let mut hosts = Vec::new();
    for ep in v
        .get("endpoints")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        // `ready` unset means ready (the API's rule for consumers).
        if ep.pointer("/conditions/ready").and_then(|r| r.as_bool()) == Some(false) {
            continue;
        }
        let host = ep.get("hostname").and_then(|h| h.as_str());
        match (hostnames, host) {
            (true, Some(h)) => hosts.push(format!("{h}.{service}.{ns}")),
            _ => {
                if let Some(a) = ep
                    .get("addresses")
                    .and_then(|a| a.as_array())
                    .and_then(|a| a.first())
                    .and_then(|a| a.as_str())
                {
                    hosts.push(a.to_owned());
                }
            }
        }
    }
    Some((name, hosts))
}

impl Consumer for LoadBalancer {
    fn durable(&self) -> bool {
        self.front.as_ref().is_some_and(|f| f.durable())
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        match &self.front {
            Some(f) => f.consume(batch),
            None => Box::pin(self.core.route(batch, None)),
        }
    }
}

impl Lifecycle for LoadBalancer {
    fn shutdown(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(f) = &self.front {
                f.shutdown(deadline).await;
            }
            if let Some(t) = &self.resolver {
                t.abort();
            }
            let backends: Vec<Arc<dyn Exporter>> = self
                .core
                .backends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|b| b.exporter.clone())
                .collect();
            futures::future::join_all(backends.iter().map(|b| b.shutdown(deadline))).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn endpointslice_hosts_ready_only_and_hostnames() {
        let v = serde_json::json!({
            "metadata": {"name": "gw-1"},
            "endpoints": [
                {"addresses": ["10.0.0.1"], "hostname": "gw-0", "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "hostname": "gw-1", "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {}}
            ]
        });
        assert_eq!(
            slice_hosts(&v, false, "gw", "obs"),
            Some(("gw-1".into(), vec!["10.0.0.1".into(), "10.0.0.3".into()]))
        );
        assert_eq!(
            slice_hosts(&v, true, "gw", "obs"),
            Some(("gw-1".into(), vec!["gw-0.gw.obs".into(), "10.0.0.3".into()]))
        );
        let k = K8sCfg {
            service: "gw".into(),
            ports: vec![],
            timeout: None,
            return_hostnames: false,
        };
        assert_eq!(k.name_namespace(), ("gw", "default"));
    }

    #[test]
    fn metric_stream_and_attribute_keys_split_as_documented() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        };
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let point = |host: &str| NumberDataPoint {
            attributes: vec![kv("host", host)],
            ..Default::default()
        };
        let gauge = |name: &str, points: Vec<NumberDataPoint>| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        };
        let rm = ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge("cpu", vec![point("a"), point("b")]),
                    gauge("mem", vec![point("a")]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let by_metric = split_metrics(rm.clone(), false);
        assert_eq!(
            by_metric.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![b"cpu".to_vec(), b"mem".to_vec()]
        );
        let streams = split_metrics(rm, true);
        assert_eq!(streams.len(), 3, "one part per data point");
        assert_ne!(
            streams[0].0, streams[1].0,
            "cpu{{host=a}} and cpu{{host=b}} are two streams"
        );
        for (_, part) in &streams {
            let Some(Data::Gauge(g)) = &part.scope_metrics[0].metrics[0].data else {
                panic!("a gauge")
            };
            assert_eq!(g.data_points.len(), 1);
        }
        let span = |tenant: Option<&str>, t: u8| Span {
            trace_id: vec![t; 16],
            attributes: tenant.map(|v| vec![kv("tenant", v)]).unwrap_or_default(),
            ..Default::default()
        };
        let rs = ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(Some("x"), 1),
                    span(Some("x"), 2),
                    span(Some("y"), 3),
                    span(None, 4),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let parts = split_spans_by_attributes(rs, &["tenant".to_string()]);
        let sizes: Vec<usize> = parts
            .iter()
            .map(|(_, p)| p.scope_spans[0].spans.len())
            .collect();
        assert_eq!(
            sizes,
            vec![2, 1, 1],
            "x together, y alone, no tenant by trace id"
        );
        assert_eq!(parts[2].0, vec![4u8; 16]);
        assert!(
            parse(&yaml("routing_key: attributes\nprotocol: {otlp: {}}\nresolver:\n  dns: {hostname: gw}\n").unwrap())
                .err()
                .unwrap()
                .msg
                .contains("routing_attributes")
        );
    }

    #[test]
    fn rendezvous_moves_about_one_nth_when_a_backend_is_added() {
        let three: Vec<String> = (1..=3).map(|i| format!("10.0.0.{i}:4317")).collect();
        let mut four = three.clone();
        four.push("10.0.0.4:4317".into());
        let keys: Vec<[u8; 16]> = (0u64..20_000)
            .map(|i| {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&i.to_be_bytes());
                k
            })
            .collect();
        let mut counts = HashMap::new();
        let mut moved = 0;
        for k in &keys {
            let a = pick(k, &three).unwrap();
            let b = pick(k, &four).unwrap();
            *counts.entry(a.clone()).or_insert(0) += 1;
            if a != b {
                moved += 1;
                assert_eq!(b, "10.0.0.4:4317", "keys only move to the new backend");
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
        for n in counts.values() {
            assert!((6000..7400).contains(n), "{counts:?}");
        }
    }

    #[tokio::test]
    async fn dns_resolver_adds_what_the_name_resolves_to() {
        let node = yaml(
            "protocol:\n  otlp:\n    tls: {insecure: true}\nresolver:\n  dns: {hostname: localhost, port: 4999, interval: 50ms}\n",
        )
        .unwrap();
        let cfg = parse(&node).unwrap();
        let ctx = crate::component::Context::standalone("loadbalancing");
        let _exp = cfg.build(ctx.clone()).unwrap();
        // The backends are in the exporter's telemetry once built.
        let mut seen = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let text = ctx.telemetry.encode();
            if text.contains("exporter=\"loadbalancing/127.0.0.1:4999\"")
                || text.contains("exporter=\"loadbalancing/[::1]:4999\"")
            {
                seen = true;
                break;
            }
        }
        assert!(seen, "{}", ctx.telemetry.encode());
        ctx.shutdown.cancel();
    }

    #[test]
    fn config_validation() {
        let ok = "protocol:\n  otlp:\n    tls: {insecure: true}\nresolver:\n  static:\n    hostnames: [gw-1:4317, gw-2]\n";
        assert!(parse(&yaml(ok).unwrap()).is_ok());
        let e = parse(
            &yaml("protocol:\n  otlp:\n    endpoint: x:1\nresolver:\n  static: {hostnames: [a]}\n")
                .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(e.path_string(), "protocol.otlp.endpoint");
        let e = parse(&yaml("protocol:\n  otlp: {}\nresolver: {}\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("resolver.static"), "{}", e.msg);
        let e = parse(
            &yaml("protocol:\n  otlp:\n    compresion: gzip\nresolver:\n  dns: {hostname: gw}\n")
                .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(e.path_string(), "protocol.otlp.compresion");
        let e = parse(
            &yaml("routing_key: span\nprotocol: {otlp: {}}\nresolver:\n  dns: {hostname: gw}\n")
                .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(e.path_string(), "routing_key");
    }
}
