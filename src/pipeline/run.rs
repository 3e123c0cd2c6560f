//! Builds the validated graph, starts it in order (extensions, exporters, processors,
//! receivers) and stops it in the reverse order within the shutdown deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::validate::Validated;
use crate::component::{BuildError, Context, DynConsumer, Exporter, FanOut, Lifecycle, Processor};
use crate::config::ComponentId;
use crate::health::Health;
use crate::signal::Signal;
use crate::telemetry::Telemetry;

/// A running collector.
pub struct Running {
    pub telemetry: Arc<Telemetry>,
    pub health: Arc<Health>,
    token: CancellationToken,
    shutdown_timeout: Duration,
    receivers: Vec<(ComponentId, Box<dyn Lifecycle>)>,
    /// Per pipeline, in pipeline order (first processor first).
    processors: Vec<Vec<Arc<dyn Processor>>>,
    exporters: Vec<(ComponentId, Arc<dyn Exporter>)>,
    extensions: Vec<(ComponentId, Box<dyn Lifecycle>)>,
    metrics_server: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

/// The context of component `id`: the shared parts of `base`, its own id.
fn ctx(id: &ComponentId, base: &Context) -> Context {
    Context {
        id: id.clone(),
        ..base.clone()
    }
}

/// A standalone context with its own telemetry, for tests and benches.
pub fn test_context(name: &str) -> Context {
    Context::standalone(name)
}

/// Builds and starts everything; on a failure, stops what was started and returns the error.
pub async fn start(mut v: Validated) -> Result<Running, BuildError> {
    let telemetry = Telemetry::new(&v.config.telemetry.resource);
    let health = Arc::new(Health::default());
    let token = CancellationToken::new();
    let mut running = Running {
        telemetry: telemetry.clone(),
        health: health.clone(),
        token: token.clone(),
        shutdown_timeout: v.config.shutdown_timeout,
        receivers: Vec::new(),
        processors: Vec::new(),
        exporters: Vec::new(),
        extensions: Vec::new(),
        metrics_server: None,
    };
    match build(&mut v, &mut running).await {
        Ok(()) => {
            health.set_ready();
            tracing::info!("everything is ready; begin running and processing data");
            Ok(running)
        }
        Err(e) => {
            running.shutdown().await;
            Err(e)
        }
    }
}

async fn build(v: &mut Validated, r: &mut Running) -> Result<(), BuildError> {
    let telemetry = r.telemetry.clone();
    let base = Context {
        id: ComponentId {
            kind: "service".into(),
            name: None,
        },
        telemetry: telemetry.clone(),
        shutdown: r.token.clone(),
        health: r.health.clone(),
        storage: Default::default(),
        pipeline: String::new(),
        memory: crate::admission::Budget::new(),
    };
    if let Some(addr) = v.config.telemetry.metrics.listen_address() {
        let stop = CancellationToken::new();
        let task = crate::telemetry::serve(&addr, telemetry.clone(), stop.clone())
            .await
            .map_err(|e| {
                let id = ComponentId {
                    kind: "telemetry".into(),
                    name: None,
                };
                BuildError::new(&id, e)
            })?;
        r.metrics_server = Some((stop, task));
    }
    for rf in &v.config.service_extensions {
        if let Some(cfg) = v.extensions.remove(&rf.id) {
            let running = cfg.start(ctx(&rf.id, &base)).await?;
            r.extensions.push((rf.id.clone(), running));
        }
    }
    // Exporters: one instance per id used by any pipeline.
    let mut exporters: HashMap<ComponentId, Arc<dyn Exporter>> = HashMap::new();
    for p in &v.config.pipelines {
        for e in &p.exporters {
            if exporters.contains_key(&e.id) {
                continue;
            }
            if let Some(cfg) = v.exporters.remove(&e.id) {
                let exp = cfg.build(ctx(&e.id, &base))?;
                r.exporters.push((e.id.clone(), exp.clone()));
                exporters.insert(e.id.clone(), exp);
            }
        }
    }
    // Pipelines: fan-out to exporters, wrapped by processors from last to first.
    let mut heads: Vec<(Signal, Vec<ComponentId>, DynConsumer)> = Vec::new();
    for p in &v.config.pipelines {
        let outs: Vec<DynConsumer> = p
            .exporters
            .iter()
            .filter_map(|e| exporters.get(&e.id).cloned().map(|x| x as DynConsumer))
            .collect();
        let mut next = FanOut::build(outs);
        let mut procs = Vec::new();
        for pr in p.processors.iter().rev() {
            let Some(cfg) = v.processors.get(&pr.id) else {
                continue;
            };
            let mut pctx = ctx(&pr.id, &base);
            pctx.pipeline = p.id().to_string();
            let proc = cfg.build(pctx, p.signal, next)?;
            next = proc.clone();
            procs.push(proc);
        }
        procs.reverse();
        r.processors.push(procs);
        heads.push((
            p.signal,
            p.receivers.iter().map(|x| x.id.clone()).collect(),
            next,
        ));
    }
    // Receivers last, so no data arrives before its path exists.
    let mut ids: Vec<ComponentId> = heads.iter().flat_map(|(_, rs, _)| rs.clone()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let consumers = Signal::ALL.map(|s| {
            let cs: Vec<DynConsumer> = heads
                .iter()
                .filter(|(sig, rs, _)| *sig == s && rs.contains(&id))
                .map(|(_, _, c)| c.clone())
                .collect();
            (!cs.is_empty()).then(|| FanOut::build(cs))
        });
        if let Some(cfg) = v.receivers.remove(&id) {
            let running = cfg.start(ctx(&id, &base), consumers).await?;
            r.receivers.push((id, running));
        }
    }
    Ok(())
}

impl Running {
    /// Stops receivers, drains processors and exporter queues within `shutdown_timeout`.
    pub async fn shutdown(self) {
        self.health.set_stopping();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down: receivers first, then processors and exporters");
        for (id, r) in &self.receivers {
            r.shutdown(deadline).await;
            tracing::debug!(receiver = %id, "stopped");
        }
        for procs in &self.processors {
            for p in procs {
                p.shutdown(deadline).await;
            }
        }
        for (id, e) in &self.exporters {
            e.shutdown(deadline).await;
            tracing::debug!(exporter = %id, "stopped");
        }
        for (_, e) in &self.extensions {
            e.shutdown(deadline).await;
        }
        if let Some((stop, task)) = self.metrics_server {
            stop.cancel();
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        self.token.cancel();
        tracing::info!("shutdown complete");
    }
}
