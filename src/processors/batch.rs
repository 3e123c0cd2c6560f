//! `batch` processor: groups incoming batches until `send_batch_size` items or `timeout`, and
//! splits what it sends to at most `send_batch_max_size` items.
//!
//! Unlike the Collector's batch processor, a caller's `consume` completes only when the batch
//! holding its items has been handed downstream, and with downstream's result: a full exporter
//! queue travels back to the receiver as a retryable refusal instead of being dropped here.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::component::{
    BoxFuture, BuildError, ConsumeError, ConsumeResult, Consumer, Context, DynConsumer, Lifecycle,
    Processor, ProcessorConfig,
};
use crate::config::{DeError, Node, from_node, units};
use crate::signal::{Batch, Signal};
use crate::telemetry::ProcessorLabels;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Send a batch after this long even if it is smaller than `send_batch_size`. Default 200ms.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Send as soon as this many items (spans, data points, log records) are pending. Default 8192.
    pub send_batch_size: usize,
    /// Upper bound of one outgoing batch; larger ones are split. 0 = no bound (default).
    pub send_batch_max_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_millis(200),
            send_batch_size: 8192,
            send_batch_max_size: 0,
        }
    }
}

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.send_batch_max_size != 0 && cfg.send_batch_max_size < cfg.send_batch_size {
        return Err(DeError {
            pos: node.get("send_batch_max_size").map(|n| n.pos),
            path: vec!["send_batch_max_size".into()],
            msg: format!(
                "must be 0 (no limit) or at least send_batch_size ({}), got {}",
                cfg.send_batch_size, cfg.send_batch_max_size
            ),
        });
    }
    Ok(Box::new(cfg))
}

impl ProcessorConfig for Config {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let labels = ProcessorLabels {
            processor: ctx.id.to_string(),
            pipeline: String::new(),
            otel_signal: signal.to_string(),
        };
        let t = &ctx.telemetry;
        let stats = Stats {
            incoming: t.processor_incoming.get_or_create(&labels).clone(),
            outgoing: t.processor_outgoing.get_or_create(&labels).clone(),
            size_trigger: t.batch_size_trigger.get_or_create(&labels).clone(),
            timeout_trigger: t.batch_timeout_trigger.get_or_create(&labels).clone(),
        };
        Ok(Arc::new(Batcher::start(self.clone(), signal, next, stats)))
    }
}

#[derive(Clone, Default)]
pub struct Stats {
    pub incoming: prometheus_client::metrics::counter::Counter,
    pub outgoing: prometheus_client::metrics::counter::Counter,
    pub size_trigger: prometheus_client::metrics::counter::Counter,
    pub timeout_trigger: prometheus_client::metrics::counter::Counter,
}

enum Msg {
    Data(Batch, oneshot::Sender<ConsumeResult>),
    Shutdown(oneshot::Sender<()>),
}

/// The batching engine, also used by the exporter helper for `sending_queue.batch`.
pub struct Batcher {
    tx: mpsc::Sender<Msg>,
}

/// Flushes handed downstream at the same time; more waits (backpressure).
const MAX_CONCURRENT_FLUSHES: usize = 32;

impl Batcher {
    pub fn start(cfg: Config, signal: Signal, next: DynConsumer, stats: Stats) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(cfg, signal, next, stats, rx));
        Batcher { tx }
    }
}

impl Consumer for Batcher {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let (done, wait) = oneshot::channel();
            self.tx
                .send(Msg::Data(batch, done))
                .await
                .map_err(|_| ConsumeError::retryable("the batch processor is shutting down"))?;
            wait.await
                .unwrap_or_else(|_| Err(ConsumeError::retryable("the batch processor stopped")))
        })
    }
}

impl Lifecycle for Batcher {
    fn shutdown(&self, _deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (done, wait) = oneshot::channel();
            if self.tx.send(Msg::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        })
    }
}

async fn run(
    cfg: Config,
    signal: Signal,
    next: DynConsumer,
    stats: Stats,
    mut rx: mpsc::Receiver<Msg>,
) {
    let flushes = Arc::new(Semaphore::new(MAX_CONCURRENT_FLUSHES));
    let mut pending = Batch::empty(signal);
    let mut pending_items = 0usize;
    let mut waiters: Vec<oneshot::Sender<ConsumeResult>> = Vec::new();
    let mut deadline: Option<Instant> = None;
    let flush = |pending: &mut Batch,
                 waiters: &mut Vec<oneshot::Sender<ConsumeResult>>,
                 items: &mut usize,
                 permit: tokio::sync::OwnedSemaphorePermit| {
        let batch = std::mem::replace(pending, Batch::empty(signal));
        let ws = std::mem::take(waiters);
        stats.outgoing.inc_by(*items as u64);
        *items = 0;
        let next = next.clone();
        let max = cfg.send_batch_max_size;
        tokio::spawn(async move {
            let _permit = permit;
            let mut result = Ok(());
            for chunk in batch.split(max) {
                if let Err(e) = next.consume(chunk).await {
                    result = Err(e);
                }
            }
            for w in ws {
                let _ = w.send(result.clone());
            }
        });
    };
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Data(batch, done)) => {
                    let n = batch.item_count();
                    stats.incoming.inc_by(n as u64);
                    if n == 0 {
                        let _ = done.send(Ok(()));
                        continue;
                    }
                    if pending.append(batch).is_err() {
                        let _ = done.send(Err(ConsumeError::Permanent(format!("batch processor of a {signal} pipeline got another signal"))));
                        continue;
                    }
                    pending_items += n;
                    waiters.push(done);
                    let size_reached = cfg.send_batch_size > 0 && pending_items >= cfg.send_batch_size;
                    if size_reached || cfg.timeout.is_zero() {
                        if size_reached {
                            stats.size_trigger.inc();
                        }
                        let Ok(permit) = flushes.clone().acquire_owned().await else { break };
                        flush(&mut pending, &mut waiters, &mut pending_items, permit);
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(Instant::now() + cfg.timeout);
                    }
                }
                Some(Msg::Shutdown(done)) => {
                    rx.close();
                    // Whatever is still queued in the channel is flushed too.
                    while let Ok(Msg::Data(b, w)) = rx.try_recv() {
                        pending_items += b.item_count();
                        let _ = pending.append(b);
                        waiters.push(w);
                    }
                    if !waiters.is_empty() {
                        if let Ok(permit) = flushes.clone().acquire_owned().await {
                            flush(&mut pending, &mut waiters, &mut pending_items, permit);
                        }
                    }
                    // Wait for every flush in flight.
                    let _ = flushes.acquire_many(MAX_CONCURRENT_FLUSHES as u32).await;
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            _ = timer => {
                stats.timeout_trigger.inc();
                deadline = None;
                let Ok(permit) = flushes.clone().acquire_owned().await else { break };
                flush(&mut pending, &mut waiters, &mut pending_items, permit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::testdata;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Sink(Mutex<Vec<usize>>);
    impl Consumer for Sink {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            self.0.lock().unwrap().push(batch.item_count());
            Box::pin(async { Ok(()) })
        }
    }

    fn cfg(size: usize, max: usize, timeout_ms: u64) -> Config {
        Config {
            timeout: Duration::from_millis(timeout_ms),
            send_batch_size: size,
            send_batch_max_size: max,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn size_trigger_merges_and_max_size_splits() {
        let sink = Arc::new(Sink::default());
        let b = Arc::new(Batcher::start(
            cfg(10, 12, 10_000),
            Signal::Traces,
            sink.clone(),
            Stats::default(),
        ));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.consume(testdata::spans("a", 1, 4)).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // 4 + 4 + 4 = 12 pending ≥ 10 → one flush of 12 items, within the max of 12.
        assert_eq!(*sink.0.lock().unwrap(), vec![12]);
        // One big batch is split to the max size.
        b.consume(testdata::spans("a", 2, 15)).await.unwrap();
        assert_eq!(sink.0.lock().unwrap()[1..], [12, 12, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_trigger_sends_a_small_batch() {
        let sink = Arc::new(Sink::default());
        let b = Batcher::start(
            cfg(100, 0, 200),
            Signal::Logs,
            sink.clone(),
            Stats::default(),
        );
        let started = Instant::now();
        b.consume(testdata::logs(3)).await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![3]);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn downstream_errors_reach_every_caller_of_the_batch() {
        struct Refuse;
        impl Consumer for Refuse {
            fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
                Box::pin(async { Err(ConsumeError::retryable("queue full")) })
            }
        }
        let b = Arc::new(Batcher::start(
            cfg(4, 0, 50),
            Signal::Logs,
            Arc::new(Refuse),
            Stats::default(),
        ));
        let (b1, b2) = (b.clone(), b.clone());
        let (r1, r2) = tokio::join!(b1.consume(testdata::logs(2)), b2.consume(testdata::logs(2)));
        assert_eq!(r1, Err(ConsumeError::retryable("queue full")));
        assert_eq!(r2, Err(ConsumeError::retryable("queue full")));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_pending_items() {
        let sink = Arc::new(Sink::default());
        let b = Arc::new(Batcher::start(
            cfg(100, 0, 60_000),
            Signal::Logs,
            sink.clone(),
            Stats::default(),
        ));
        let b2 = b.clone();
        let t = tokio::spawn(async move { b2.consume(testdata::logs(5)).await });
        tokio::task::yield_now().await;
        b.shutdown(Instant::now()).await;
        t.await.unwrap().unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![5]);
        assert!(b.consume(testdata::logs(1)).await.is_err());
    }

    #[test]
    fn max_below_size_is_refused_with_its_key() {
        let n =
            crate::config::node::parse("send_batch_size: 100\nsend_batch_max_size: 10\n").unwrap();
        let e = parse(&n).err().unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("send_batch_max_size", 2)
        );
    }
}
