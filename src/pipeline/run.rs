//! Builds the validated graph, starts it in order (extensions, exporters, processors,
//! receivers), reloads it in place, and stops it in the reverse order within the shutdown
//! deadline.
//!
//! A reload keeps what did not change: an exporter whose config reads the same keeps its
//! instance and queue; a pipeline whose processors and exporters are all unchanged keeps its
//! processors and their state; a receiver whose config and signals are unchanged keeps its
//! listeners and connections and is pointed at the new pipelines through its [`Switch`]. What
//! changed is built new, and what it replaces is stopped and drained (receivers first, then
//! processors, then exporters), so nothing accepted is lost. A change to the extensions restarts
//! everything but the self-metrics endpoint, since exporters and receivers hold their storage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::switch::{InFlight, Switch};
use super::validate::Validated;
use crate::component::{
    BuildError, Context, Downstream, DynConsumer, Exporter, FanOut, Lifecycle, Processor,
};
use crate::config::{ComponentDef, ComponentId, Config, Node, PipelineDef};
use crate::health::Health;
use crate::signal::Signal;
use crate::telemetry::Telemetry;

struct PipelineRun {
    def: PipelineDef,
    /// First processor first.
    procs: Vec<Arc<dyn Processor>>,
    head: DynConsumer,
    /// The connectors it exports to, built for it (each feeds other pipelines).
    connectors: Vec<(ComponentId, Arc<dyn Exporter>)>,
    /// Its place in the build order: the pipelines a connector feeds are built (and ranked)
    /// before the pipeline that feeds it, so stopping by falling rank drains upstream first.
    rank: usize,
}

struct ReceiverRun {
    id: ComponentId,
    running: Box<dyn Lifecycle>,
    /// Per signal (in `Signal::EVERY` order), the switch it was given, if it feeds that signal.
    switches: [Option<Arc<Switch>>; crate::signal::Signal::COUNT],
}

/// The parts a reload may keep or retire.
#[derive(Default)]
struct Parts {
    receivers: Vec<ReceiverRun>,
    pipelines: Vec<PipelineRun>,
    exporters: Vec<(ComponentId, Arc<dyn Exporter>)>,
}

/// A running collector.
pub struct Running {
    pub telemetry: Arc<Telemetry>,
    pub health: Arc<Health>,
    token: CancellationToken,
    shutdown_timeout: Duration,
    base: Context,
    /// The config now applied, to tell what a reload changes.
    config: Config,
    parts: Parts,
    extensions: Vec<(ComponentId, Box<dyn Lifecycle>)>,
    /// One per periodic reader: its stop and its task (a last export when stopped).
    periodic: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// One per pull reader: its address and exposition, and the server.
    metrics_servers: Vec<(
        (String, crate::telemetry::Exposition),
        CancellationToken,
        tokio::task::JoinHandle<()>,
    )>,
}

/// What a reload kept and what it built new.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub receivers_kept: usize,
    pub receivers_started: usize,
    pub pipelines_kept: usize,
    pub pipelines_built: usize,
    pub exporters_kept: usize,
    pub exporters_built: usize,
    /// The extensions changed, so everything was restarted.
    pub restarted: bool,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "receivers: {} kept, {} started; pipelines: {} kept, {} built; exporters: {} kept, {} built{}",
            self.receivers_kept,
            self.receivers_started,
            self.pipelines_kept,
            self.pipelines_built,
            self.exporters_kept,
            self.exporters_built,
            if self.restarted {
                " (the extensions changed: everything restarted)"
            } else {
                ""
            }
        )
    }
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

fn node_of<'a>(defs: &'a [ComponentDef], id: &ComponentId) -> Option<&'a Node> {
    defs.iter().find(|d| d.id == *id).map(|d| &d.node)
}

fn same_node(old: &[ComponentDef], new: &[ComponentDef], id: &ComponentId) -> bool {
    match (node_of(old, id), node_of(new, id)) {
        (Some(a), Some(b)) => a.same_value(b),
        _ => false,
    }
}

/// Builds and starts everything; on a failure, stops what was started and returns the error.
pub async fn start(mut v: Validated) -> Result<Running, BuildError> {
    let telemetry = Telemetry::new(&v.config.telemetry.resource);
    let health = Arc::new(Health::default());
    let token = CancellationToken::new();
    let base = Context {
        id: ComponentId {
            kind: "service".into(),
            name: None,
        },
        telemetry: telemetry.clone(),
        shutdown: token.clone(),
        health: health.clone(),
        storage: Default::default(),
        auth: Default::default(),
        leaders: Default::default(),
        taps: Default::default(),
        pipeline: String::new(),
        memory: crate::admission::Budget::new(),
        signals: Vec::new(),
        durable: false,
    };
    base.memory
        .set_queue_limit(v.config.queue_memory_limit_mib << 20);
    let mut running = Running {
        telemetry,
        health: health.clone(),
        token,
        shutdown_timeout: v.config.shutdown_timeout,
        base,
        config: empty_config(),
        parts: Parts::default(),
        extensions: Vec::new(),
        metrics_servers: Vec::new(),
        periodic: Vec::new(),
    };
    let mut span = crate::selfexport::span("service.start");
    span.attr("pipelines", v.config.pipelines.len());
    let result = async {
        running.serve_metrics(&v.config).await?;
        running.push_metrics(&v.config).await?;
        running.start_extensions(&mut v).await?;
        running.assemble(v, Parts::default()).await.map(|_| ())
    }
    .await;
    match result {
        Ok(()) => {
            health.set_ready();
            tracing::info!("everything is ready; begin running and processing data");
            Ok(running)
        }
        Err(e) => {
            span.error(&e.to_string());
            running.shutdown().await;
            Err(e)
        }
    }
}

fn empty_config() -> Config {
    Config {
        file: String::new(),
        receivers: Vec::new(),
        processors: Vec::new(),
        exporters: Vec::new(),
        extensions: Vec::new(),
        connectors: Vec::new(),
        service_extensions: Vec::new(),
        pipelines: Vec::new(),
        telemetry: Default::default(),
        shutdown_timeout: Duration::from_secs(10),
        queue_memory_limit_mib: crate::config::DEFAULT_QUEUE_MEMORY_MIB,
    }
}

impl Running {
    async fn serve_metrics(&mut self, config: &Config) -> Result<(), BuildError> {
        let want = config.telemetry.metrics.pull_readers();
        let have: Vec<_> = self
            .metrics_servers
            .iter()
            .map(|(r, _, _)| r.clone())
            .collect();
        if have == want {
            return Ok(());
        }
        for (_, stop, task) in self.metrics_servers.drain(..) {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for (addr, how) in want {
            let stop = CancellationToken::new();
            let task = crate::telemetry::serve(&addr, self.telemetry.clone(), how, stop.clone())
                .await
                .map_err(|e| {
                    let id = ComponentId {
                        kind: "telemetry".into(),
                        name: None,
                    };
                    BuildError::new(&id, e)
                })?;
            self.metrics_servers.push(((addr, how), stop, task));
        }
        Ok(())
    }

    /// (Re)starts the periodic readers: the old ones make their last export first.
    async fn push_metrics(&mut self, config: &Config) -> Result<(), BuildError> {
        for (stop, task) in self.periodic.drain(..) {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let metrics = &config.telemetry.metrics;
        if metrics.level == crate::config::MetricsLevel::None {
            return Ok(());
        }
        let resource = crate::selfexport::resource(&crate::telemetry::resource_attributes(
            &config.telemetry.resource,
        ));
        for r in metrics.readers.iter().filter_map(|r| r.periodic.as_ref()) {
            let Some((otlp, protocol)) = r.exporter.otlp() else {
                continue;
            };
            let client = crate::selfexport::Client::new(&otlp, protocol).map_err(|e| {
                let id = ComponentId {
                    kind: "telemetry".into(),
                    name: None,
                };
                BuildError::new(&id, format!("metrics.readers periodic exporter: {e}"))
            })?;
            let temporality = match otlp.temporality_preference.as_deref() {
                Some("delta") | Some("lowmemory") => crate::selfexport::Temporality::Delta,
                _ => crate::selfexport::Temporality::Cumulative,
            };
            let stop = CancellationToken::new();
            let task = tokio::spawn(crate::selfexport::run_periodic_reader(
                self.telemetry.clone(),
                client,
                Duration::from_millis(r.interval.max(1)),
                Duration::from_millis(r.timeout.max(1)),
                temporality,
                resource.clone(),
                stop.clone(),
            ));
            self.periodic.push((stop, task));
        }
        Ok(())
    }

    async fn start_extensions(&mut self, v: &mut Validated) -> Result<(), BuildError> {
        for rf in &v.config.service_extensions {
            if let Some(cfg) = v.extensions.remove(&rf.id) {
                let c = ctx(&rf.id, &self.base);
                let health = c.health.clone();
                let running = cfg.start(c).await?;
                // Started: listed as running (zpages' extensionz, healthcheckv2's report).
                health.extension_started(&rf.id.to_string());
                self.extensions.push((rf.id.clone(), running));
            }
        }
        Ok(())
    }

    /// Builds the graph of `v`, keeping from `old` what reads the same, then stops what `old`
    /// had that is not kept. On an error the parts built so far are in place (and are stopped
    /// by the caller or by the next shutdown).
    async fn assemble(
        &mut self,
        mut v: Validated,
        old: Parts,
    ) -> Result<ReloadSummary, BuildError> {
        let mut sum = ReloadSummary::default();
        let old_config = std::mem::replace(&mut self.config, empty_config());
        let Parts {
            receivers: mut old_receivers,
            pipelines: mut old_pipelines,
            exporters: mut old_exporters,
        } = old;
        let new = &v.config;

        // Exporters: one instance per id used by any pipeline; unchanged ones are kept.
        let mut exporters: HashMap<ComponentId, Arc<dyn Exporter>> = HashMap::new();
        let mut kept_exporters = Vec::new();
        let is_connector = |id: &ComponentId| new.connectors.iter().any(|d| d.id == *id);
        for p in &new.pipelines {
            for e in &p.exporters {
                if exporters.contains_key(&e.id) || is_connector(&e.id) {
                    continue;
                }
                let kept = old_exporters
                    .iter()
                    .position(|(id, _)| *id == e.id)
                    .filter(|_| same_node(&old_config.exporters, &new.exporters, &e.id));
                let exp = match kept {
                    Some(i) => {
                        sum.exporters_kept += 1;
                        kept_exporters.push(e.id.clone());
                        old_exporters.swap_remove(i).1
                    }
                    None => match v.exporters.remove(&e.id) {
                        Some(cfg) => {
                            sum.exporters_built += 1;
                            // A persistent queue is one directory, a listener one address:
                            // the old instance lets go of it (what a queue holds stays on disk)
                            // before the new one opens it.
                            if (cfg.storage().is_some() || cfg.listens())
                                && let Some(i) =
                                    old_exporters.iter().position(|(id, _)| *id == e.id)
                            {
                                let (_, old) = old_exporters.swap_remove(i);
                                old.shutdown(tokio::time::Instant::now() + self.shutdown_timeout)
                                    .await;
                            }
                            let mut ectx = ctx(&e.id, &self.base);
                            ectx.signals = Signal::EVERY
                                .into_iter()
                                .filter(|s| {
                                    new.pipelines.iter().any(|p| {
                                        p.signal == *s && p.exporters.iter().any(|x| x.id == e.id)
                                    })
                                })
                                .collect();
                            cfg.build(ectx)?
                        }
                        None => continue,
                    },
                };
                self.parts.exporters.push((e.id.clone(), exp.clone()));
                exporters.insert(e.id.clone(), exp);
            }
        }

        // Pipelines: fan-out to exporters, wrapped by processors from last to first. One whose
        // processors and exporters are all unchanged is kept with its processors' state; one
        // joined to others by a connector is always built anew, together with them. A pipeline
        // a connector feeds is built before the one that feeds it (validation refused loops).
        let touches_connector = |p: &PipelineDef| {
            p.receivers
                .iter()
                .chain(&p.exporters)
                .any(|r| is_connector(&r.id))
        };
        let feeds = |a: &PipelineDef, b: &PipelineDef| {
            a.exporters
                .iter()
                .any(|e| is_connector(&e.id) && b.receivers.iter().any(|r| r.id == e.id))
        };
        let mut order: Vec<usize> = Vec::with_capacity(new.pipelines.len());
        while order.len() < new.pipelines.len() {
            let before = order.len();
            for (i, p) in new.pipelines.iter().enumerate() {
                let ready = !order.contains(&i)
                    && new
                        .pipelines
                        .iter()
                        .enumerate()
                        .all(|(j, q)| j == i || !feeds(p, q) || order.contains(&j));
                if ready {
                    order.push(i);
                }
            }
            if order.len() == before {
                // A loop got past validation: build the rest in config order.
                order.extend(
                    (0..new.pipelines.len())
                        .filter(|i| !order.contains(i))
                        .collect::<Vec<_>>(),
                );
            }
        }
        for (rank, &pi) in order.iter().enumerate() {
            let p = &new.pipelines[pi];
            let unchanged = |o: &PipelineRun| {
                o.def.id() == p.id()
                    && !touches_connector(p)
                    && o.connectors.is_empty()
                    && ids(&o.def.processors) == ids(&p.processors)
                    && ids(&o.def.exporters) == ids(&p.exporters)
                    && p.processors
                        .iter()
                        .all(|r| same_node(&old_config.processors, &new.processors, &r.id))
                    && p.exporters.iter().all(|r| kept_exporters.contains(&r.id))
            };
            if let Some(i) = old_pipelines.iter().position(unchanged) {
                let mut kept = old_pipelines.swap_remove(i);
                kept.def = p.clone();
                kept.rank = rank;
                self.parts.pipelines.push(kept);
                sum.pipelines_kept += 1;
                continue;
            }
            let taps = self.base.taps.clone();
            let pid = p.id().to_string();
            let mut outs: Vec<DynConsumer> = Vec::new();
            let mut connectors = Vec::new();
            for e in &p.exporters {
                if let Some(x) = exporters.get(&e.id) {
                    outs.push(super::tapped::wrap(
                        &taps,
                        &pid,
                        &format!("exporter:{}", e.id),
                        x.clone() as DynConsumer,
                    ));
                    continue;
                }
                let Some(cfg) = v.connectors.get(&e.id) else {
                    continue;
                };
                // One instance per signal it turns this one into, for the pipelines of that
                // signal it feeds (a pipeline of another signal takes it from elsewhere).
                let pairs = crate::registry::factory(crate::component::Kind::Connector, &e.id.kind)
                    .map_or(&[][..], |f| f.pairs);
                for to in Signal::EVERY {
                    if !pairs.contains(&(p.signal, to)) {
                        continue;
                    }
                    let next: Vec<Downstream> = self
                        .parts
                        .pipelines
                        .iter()
                        .filter(|q| {
                            q.def.signal == to && q.def.receivers.iter().any(|r| r.id == e.id)
                        })
                        .map(|q| Downstream {
                            pipeline: q.def.id().to_string(),
                            head: super::tapped::wrap(
                                &taps,
                                &q.def.id().to_string(),
                                &format!("connector:{}", e.id),
                                q.head.clone(),
                            ),
                        })
                        .collect();
                    if next.is_empty() {
                        continue;
                    }
                    let mut cctx = ctx(&e.id, &self.base);
                    cctx.pipeline = p.id().to_string();
                    let c = cfg.build(cctx, p.signal, to, next)?;
                    outs.push(super::tapped::wrap(
                        &taps,
                        &pid,
                        &format!("connector:{}", e.id),
                        c.clone() as DynConsumer,
                    ));
                    connectors.push((e.id.clone(), c));
                }
            }
            let durable = outs.iter().any(|c| c.durable());
            let mut next = FanOut::build(outs);
            let mut procs = Vec::new();
            for pr in p.processors.iter().rev() {
                let Some(cfg) = v.processors.get(&pr.id) else {
                    continue;
                };
                let mut pctx = ctx(&pr.id, &self.base);
                pctx.pipeline = p.id().to_string();
                pctx.durable = durable;
                let proc = cfg.build(
                    pctx,
                    p.signal,
                    super::tapped::wrap(&taps, &pid, &format!("processor:{}", pr.id), next),
                )?;
                next = proc.clone();
                procs.push(proc);
            }
            procs.reverse();
            self.parts.pipelines.push(PipelineRun {
                def: p.clone(),
                procs,
                head: super::tapped::wrap(&taps, &pid, crate::tap::INPUT, next),
                connectors,
                rank,
            });
            sum.pipelines_built += 1;
        }

        // Receivers last, so no data arrives before its path exists.
        let mut receiver_ids: Vec<ComponentId> = new
            .pipelines
            .iter()
            .flat_map(|p| p.receivers.iter().map(|r| r.id.clone()))
            .filter(|id| !is_connector(id))
            .collect();
        receiver_ids.sort();
        receiver_ids.dedup();
        let taps = self.base.taps.clone();
        let heads_of = |id: &ComponentId| -> [Option<DynConsumer>; crate::signal::Signal::COUNT] {
            Signal::EVERY.map(|s| {
                let cs: Vec<DynConsumer> = self
                    .parts
                    .pipelines
                    .iter()
                    .filter(|p| p.def.signal == s && p.def.receivers.iter().any(|r| r.id == *id))
                    .map(|p| {
                        super::tapped::wrap(
                            &taps,
                            &p.def.id().to_string(),
                            &format!("receiver:{id}"),
                            p.head.clone(),
                        )
                    })
                    .collect();
                (!cs.is_empty()).then(|| FanOut::build(cs))
            })
        };
        let mut inflight: Vec<InFlight> = Vec::new();
        let mut to_start = Vec::new();
        let mut kept_receivers = Vec::new();
        for id in receiver_ids {
            let heads = heads_of(&id);
            let kept = old_receivers.iter().position(|o| {
                o.id == id
                    && same_node(&old_config.receivers, &new.receivers, &id)
                    && o.switches
                        .iter()
                        .zip(&heads)
                        .all(|(s, h)| s.is_some() == h.is_some())
            });
            match kept {
                Some(i) => {
                    let r = old_receivers.swap_remove(i);
                    for (s, h) in r.switches.iter().zip(heads) {
                        if let (Some(s), Some(h)) = (s, h) {
                            inflight.push(s.set(h));
                        }
                    }
                    kept_receivers.push(r);
                    sum.receivers_kept += 1;
                }
                None => to_start.push((id, heads)),
            }
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        // A changed receiver may listen where its old self did: the old one goes first.
        for r in &old_receivers {
            r.running.shutdown(deadline).await;
            tracing::debug!(receiver = %r.id, "stopped");
        }
        self.parts.receivers.extend(kept_receivers);
        let mut first_error = None;
        for (id, heads) in to_start {
            let Some(cfg) = v.receivers.remove(&id) else {
                continue;
            };
            let switches = heads.map(|h| h.map(Switch::new));
            let consumers = switches.clone().map(|s| s.map(|s| s as DynConsumer));
            match cfg.start(ctx(&id, &self.base), consumers).await {
                Ok(running) => {
                    self.parts.receivers.push(ReceiverRun {
                        id,
                        running,
                        switches,
                    });
                    sum.receivers_started += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // What is retired is stopped once nothing runs inside it: calls that entered an old
        // pipeline through a kept receiver finish first, then processors flush to exporters.
        for f in inflight {
            if !f.wait(deadline).await {
                tracing::warn!("calls into a replaced pipeline were still running at the deadline");
            }
        }
        stop_pipelines(old_pipelines.iter().collect(), deadline).await;
        for (id, e) in &old_exporters {
            e.shutdown(deadline).await;
            tracing::debug!(exporter = %id, "stopped");
        }
        self.shutdown_timeout = v.config.shutdown_timeout;
        self.base
            .memory
            .set_queue_limit(v.config.queue_memory_limit_mib << 20);
        self.config = std::mem::replace(&mut v.config, empty_config());
        // What the health extensions show per pipeline, in the Collector's `kind:id` keys.
        self.health.set_pipelines(
            self.config
                .pipelines
                .iter()
                .map(|p| {
                    let members = p
                        .receivers
                        .iter()
                        .map(|r| format!("receiver:{}", r.id))
                        .chain(p.processors.iter().map(|r| format!("processor:{}", r.id)))
                        .chain(p.exporters.iter().map(|r| format!("exporter:{}", r.id)))
                        .collect();
                    (format!("pipeline:{}", p.id()), members)
                })
                .collect(),
        );
        match first_error {
            Some(e) => Err(e),
            None => Ok(sum),
        }
    }

    /// Applies a new, validated config in place (see the module's documentation). On an error
    /// (a listener that cannot bind, say) everything else of the new config is running and the
    /// error is returned.
    pub async fn reload(&mut self, v: Validated) -> Result<ReloadSummary, BuildError> {
        let mut span = crate::selfexport::span("service.reload");
        let r = self.reload_inner(v).await;
        match &r {
            Ok(sum) => span.attr("summary", sum),
            Err(e) => span.error(&e.to_string()),
        }
        r
    }

    async fn reload_inner(&mut self, mut v: Validated) -> Result<ReloadSummary, BuildError> {
        let extensions_changed = ids(&self.config.service_extensions)
            != ids(&v.config.service_extensions)
            || v.config
                .service_extensions
                .iter()
                .any(|r| !same_node(&self.config.extensions, &v.config.extensions, &r.id));
        self.serve_metrics(&v.config).await?;
        self.push_metrics(&v.config).await?;
        let old = std::mem::take(&mut self.parts);
        if !extensions_changed {
            return self.assemble(v, old).await;
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        stop_parts(&old, deadline).await;
        for (_, e) in self.extensions.drain(..) {
            e.shutdown(deadline).await;
        }
        self.base.storage = Default::default();
        self.base.auth = Default::default();
        self.start_extensions(&mut v).await?;
        let mut sum = self.assemble(v, Parts::default()).await?;
        sum.restarted = true;
        Ok(sum)
    }

    /// Stops receivers, drains processors and exporter queues within `shutdown_timeout`.
    pub async fn shutdown(self) {
        self.health.set_stopping();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down: receivers first, then processors and exporters");
        stop_parts(&self.parts, deadline).await;
        for (_, e) in &self.extensions {
            e.shutdown(deadline).await;
        }
        for (_, stop, task) in self.metrics_servers {
            stop.cancel();
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        // Last, so the last push has everything counted.
        for (stop, task) in self.periodic {
            stop.cancel();
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        self.token.cancel();
        // Items, summed over signals and components; `held` is what queues kept (a persistent
        // queue's is on disk for the next start).
        let ledger = crate::telemetry::ledger_line(&self.telemetry.encode());
        tracing::info!(%ledger, "shutdown complete");
    }
}

fn ids(refs: &[crate::config::Ref]) -> Vec<&ComponentId> {
    refs.iter().map(|r| &r.id).collect()
}

/// Flushes pipelines upstream first: a pipeline's processors, then the connectors it feeds,
/// before the pipelines those feed.
async fn stop_pipelines(mut pipelines: Vec<&PipelineRun>, deadline: tokio::time::Instant) {
    pipelines.sort_by_key(|p| std::cmp::Reverse(p.rank));
    for p in pipelines {
        for proc in &p.procs {
            proc.shutdown(deadline).await;
        }
        for (id, c) in &p.connectors {
            c.shutdown(deadline).await;
            tracing::debug!(connector = %id, pipeline = %p.def.id(), "stopped");
        }
    }
}

async fn stop_parts(parts: &Parts, deadline: tokio::time::Instant) {
    for r in &parts.receivers {
        r.running.shutdown(deadline).await;
        tracing::debug!(receiver = %r.id, "stopped");
    }
    stop_pipelines(parts.pipelines.iter().collect(), deadline).await;
    for (id, e) in &parts.exporters {
        e.shutdown(deadline).await;
        tracing::debug!(exporter = %id, "stopped");
    }
}
