//! `k8s_cluster` receiver (alias `k8scluster`): the cluster's object state as metrics, as the
//! Collector's receiver (and kube-state-metrics before it) reports it — nodes (the conditions of
//! `node_conditions_to_report`, the allocatable resources of `allocatable_types_to_report`),
//! pods (phase, status reason), containers (restarts, readiness, requests and limits, state),
//! deployments, replica sets, replication controllers, stateful sets, daemon sets, jobs, cron
//! jobs, HPAs, namespaces and resource quotas. Each kind is listed and then watched (resumed
//! after drops, relisted after `410 Gone`); what is known is reported every
//! `collection_interval`. While the API cannot be reached the last known state is still
//! reported and each failed read is counted. With `k8s_leader_elector`, it runs only while this
//! collector holds the Lease. In a logs pipeline it writes the objects' entity events
//! ([`entities`]).

mod config;
mod entities;
mod metrics;
mod state;

pub use config::Config;

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::ApiSource;
use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::kube::watch::{self, Event};
use crate::signal::{Batch, Signal};
use state::{Kind, State};

pub const FACTORY: Factory = Factory::receiver(
    "k8s_cluster",
    &[Signal::Metrics, Signal::Logs],
    Stability::Alpha,
    parse,
)
.aliases(&["k8scluster"]);

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
    crate::kube::api_auth(node, &[], cfg.auth_type)?;
    if !cfg.metadata_exporters.is_empty() {
        return Err(key_err(
            node,
            &["metadata_exporters"],
            "no ferrotel exporter takes metadata directly: list this receiver in a logs pipeline, which gets the entity events",
        ));
    }
    if let Some(d) = &cfg.distribution
        && d != "kubernetes"
    {
        return Err(key_err(
            node,
            &["distribution"],
            format!("{d:?}: only `kubernetes` is built in ferrotel (not the OpenShift quotas)"),
        ));
    }
    for (k, t) in &cfg.metrics {
        if metrics::NOT_BUILT.contains(&k.as_str()) {
            if t.enabled {
                return Err(key_err(
                    node,
                    &["metrics", k],
                    "this metric is not built in ferrotel yet",
                ));
            }
            continue;
        }
        let custom = k.starts_with("k8s.node.condition_") || k.starts_with("k8s.node.allocatable_");
        if !custom && !metrics::METRICS.iter().any(|(n, _)| n == k) {
            return Err(key_err(
                node,
                &["metrics", k],
                "not a metric of the k8s_cluster receiver",
            ));
        }
    }
    if let Some(k) =
        crate::signal::build::unknown(&cfg.resource_attributes, metrics::RESOURCE_ATTRIBUTES)
    {
        return Err(key_err(
            node,
            &["resource_attributes", k],
            "not a resource attribute ferrotel's k8s_cluster writes",
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
            let metrics = consumers[Signal::Metrics.index()].clone();
            let logs = consumers[Signal::Logs.index()].clone();
            let Some(consumer) = metrics.clone().or_else(|| logs.clone()) else {
                return Err(BuildError::new(
                    &ctx.id,
                    "no metrics or logs pipeline uses it",
                ));
            };
            let leading = ctx
                .leaders
                .lookup(&self.k8s_leader_elector)
                .map_err(|e| BuildError::new(&ctx.id, e))?;
            let shared = Arc::new(Shared {
                src: ApiSource::new(&ctx, consumer, self.auth_type, &self.context)?,
                metrics: metrics.is_some(),
                entities: logs.map(|l| super::Output::new(&ctx, "", l)),
                cfg: *self,
            });
            let stop = CancellationToken::new();
            let task = tokio::spawn(crate::kube::lease::while_leader(
                leading,
                stop.clone(),
                move |token| run(shared.clone(), token),
            ));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

struct Shared {
    /// Its output is the metrics pipelines' when `metrics`, else the logs pipelines'.
    src: ApiSource,
    metrics: bool,
    /// The logs pipelines', for entity events.
    entities: Option<super::Output>,
    cfg: Config,
}

impl std::ops::Deref for Shared {
    type Target = ApiSource;
    fn deref(&self) -> &ApiSource {
        &self.src
    }
}

/// One leadership term: a watch per kind (and namespace) into a fresh state, and a report
/// every interval.
async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let state = Arc::new(Mutex::new(State::default()));
    let entities = shared
        .entities
        .is_some()
        .then(|| Arc::new(Mutex::new(entities::Entities::default())));
    let mut tasks = Vec::new();
    for kind in Kind::ALL {
        let (_, _, namespaced) = kind.api();
        let scopes: Vec<Option<String>> = if namespaced && !shared.cfg.namespaces.is_empty() {
            shared.cfg.namespaces.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        let many = scopes.len() > 1;
        for ns in scopes {
            let resource = watch::Resource {
                path: kind.path(ns.as_deref()),
                query: Vec::new(),
            };
            let (shared, state, stop) = (shared.clone(), state.clone(), stop.clone());
            let entities = entities.clone();
            tasks.push(tokio::spawn(async move {
                let source = resource.path.clone();
                let follow = watch::run(&shared.client, &shared.api, &resource, |ev| {
                    // Entity events see each object before the state reduces it; a list is
                    // then parsed once for both.
                    let ev = match &entities {
                        Some(en) => entity_events(en, kind, ns.as_deref(), many, ev),
                        None => Seen::Event(ev),
                    };
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    let scope = ns.as_deref().filter(|_| many);
                    match ev {
                        Seen::Parsed(values) => apply_list(&mut st, kind, scope, values),
                        Seen::Event(Event::Listed(items)) => {
                            apply_list(&mut st, kind, scope, items)
                        }
                        Seen::Event(Event::Added(o) | Event::Applied(o)) => st.applied(kind, o),
                        Seen::Event(Event::Deleted(o)) => st.deleted(kind, &o),
                        Seen::Event(Event::Reachable(false)) => {
                            shared.failed(&source);
                        }
                        Seen::Event(Event::Reachable(true)) => {}
                    }
                });
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = follow => {}
                }
            }));
        }
    }
    let mut tick = tokio::time::interval(shared.cfg.collection_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, before anything is listed: skip it.
    tick.tick().await;
    // Entity events leave within a second; all of them again every metadata interval.
    let mut flush = tokio::time::interval(std::time::Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = shared.cfg.metadata_interval();
    let mut report = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            _ = flush.tick() => {
                send_entities(&shared, &entities, None).await;
                continue;
            }
            _ = report.tick() => {
                send_entities(&shared, &entities, Some(every)).await;
                continue;
            }
        }
        if !shared.metrics {
            continue;
        }
        let now = crate::component::now_nanos();
        let rms = {
            let st = state.lock().unwrap_or_else(|e| e.into_inner());
            metrics::build(&shared.cfg, &st, now)
        };
        if rms.is_empty() {
            continue;
        }
        if let Err(e) = shared
            .out
            .push(Batch::Metrics(rms), Default::default())
            .await
        {
            tracing::debug!(receiver = %shared.id, error = %e, "cluster metrics refused downstream");
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A watch event as the state takes it: a list already parsed for the entity events, or the
/// event as it came.
enum Seen {
    Parsed(Vec<serde_json::Value>),
    Event(Event),
}

/// A list of `kind`: the whole kind, or with several namespaces only `scope`'s part.
fn apply_list(
    st: &mut State,
    kind: Kind,
    scope: Option<&str>,
    items: impl IntoIterator<Item = serde_json::Value>,
) {
    match scope {
        Some(ns) => {
            if let Some(m) = st.objects.get_mut(&kind) {
                m.retain(|_, o| namespace_of(o) != ns);
            }
            for i in items {
                st.applied(kind, i);
            }
        }
        None => st.listed(kind, items),
    }
}

/// Records the entity events of one watch event and hands the event on.
fn entity_events(
    en: &Mutex<entities::Entities>,
    kind: Kind,
    ns: Option<&str>,
    many: bool,
    ev: Event,
) -> Seen {
    let now = crate::component::now_nanos();
    let mut en = en.lock().unwrap_or_else(|e| e.into_inner());
    match ev {
        Event::Listed(items) => {
            let values: Vec<serde_json::Value> = items.into_iter().collect();
            en.listed(kind, ns.filter(|_| many), values.iter(), now);
            return Seen::Parsed(values);
        }
        Event::Added(ref o) | Event::Applied(ref o) => en.applied(kind, o, now),
        Event::Deleted(ref o) => en.deleted(kind, o, now),
        Event::Reachable(_) => {}
    }
    Seen::Event(ev)
}

/// Sends the entity events waiting (after every known object's state, with `report`).
async fn send_entities(
    shared: &Shared,
    entities: &Option<Arc<Mutex<entities::Entities>>>,
    report: Option<std::time::Duration>,
) {
    let (Some(out), Some(en)) = (&shared.entities, entities) else {
        return;
    };
    let batch = {
        let mut en = en.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(every) = report {
            en.report_all(crate::component::now_nanos(), every.as_millis() as i64);
        }
        if en.dropped > 0 {
            tracing::warn!(
                receiver = %shared.id,
                dropped = en.dropped,
                "entity events dropped: the logs pipeline did not keep up (the next full report restores the state)"
            );
            en.dropped = 0;
        }
        en.take()
    };
    if batch.is_empty() {
        return;
    }
    if let Err(e) = out.push(Batch::Logs(batch), Default::default()).await {
        tracing::debug!(receiver = %shared.id, error = %e, "entity events refused downstream");
    }
}

fn namespace_of(o: &state::Object) -> &str {
    match o {
        state::Object::Node(n) => &n.id.namespace,
        state::Object::Pod(p) => &p.id.namespace,
        state::Object::Namespace(id, _) => &id.namespace,
        state::Object::Quota(q) => &q.id.namespace,
        state::Object::Workload(w) => &w.id.namespace,
    }
}

#[cfg(test)]
mod tests;
