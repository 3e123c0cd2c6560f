//! `k8s_cluster` receiver (alias `k8scluster`): the cluster's object state as metrics, as the
//! Collector's receiver (and kube-state-metrics before it) reports it — nodes (the conditions of
//! `node_conditions_to_report`, the allocatable resources of `allocatable_types_to_report`),
//! pods (phase, status reason), containers (restarts, readiness, requests and limits, state),
//! deployments, replica sets, replication controllers, stateful sets, daemon sets, jobs, cron
//! jobs, HPAs, namespaces and resource quotas. Each kind is listed and then watched (resumed
//! after drops, relisted after `410 Gone`); what is known is reported every
//! `collection_interval`. While the API cannot be reached the last known state is still
//! reported and each failed read is counted. With `k8s_leader_elector`, it runs only while this
//! collector holds the Lease.

mod config;
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
    crate::signal::METRICS,
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
            "entity metadata export is not built in ferrotel yet",
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
            let Some(consumer) = consumers[Signal::Metrics.index()].clone() else {
                return Err(BuildError::new(&ctx.id, "no metrics pipeline uses it"));
            };
            let leading = ctx
                .leaders
                .lookup(&self.k8s_leader_elector)
                .map_err(|e| BuildError::new(&ctx.id, e))?;
            let shared = Arc::new(Shared {
                src: ApiSource::new(&ctx, consumer, self.auth_type, &self.context)?,
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
    src: ApiSource,
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
            tasks.push(tokio::spawn(async move {
                let source = resource.path.clone();
                let follow = watch::run(&shared.client, &shared.api, &resource, |ev| {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    match ev {
                        // With several namespaces a list replaces only its own namespace's part.
                        Event::Listed(items) if many => {
                            if let Some(m) = st.objects.get_mut(&kind) {
                                m.retain(|_, o| namespace_of(o) != ns.as_deref().unwrap_or(""));
                            }
                            for i in items {
                                st.applied(kind, i);
                            }
                        }
                        Event::Listed(items) => st.listed(kind, items),
                        Event::Added(o) | Event::Applied(o) => st.applied(kind, o),
                        Event::Deleted(o) => st.deleted(kind, &o),
                        Event::Reachable(false) => {
                            shared.failed(&source);
                        }
                        Event::Reachable(true) => {}
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
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
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
