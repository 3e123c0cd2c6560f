//! What every exporter shares, with the Collector's `exporterhelper` keys and defaults:
//! `timeout`, `retry_on_failure`, `sending_queue` (with optional `batch`). An exporter supplies
//! only a [`Sender`]: how to encode a batch once and send it.

pub mod client;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, ConsumeError, ConsumeResult, Consumer, Context, DynConsumer, Exporter, Lifecycle,
};
use crate::config::{ComponentId, DeError, Node, units};
use crate::disk_queue::{DiskQueue, Entry, QueueError, Sizer};
use crate::signal::{Batch, Signal};
use crate::telemetry::{DropLabels, ExporterLabels, SignalCounters};

use queue::Queue;

/// `retry_on_failure`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Default true.
    pub enabled: bool,
    /// First wait after a failure. Default 5s.
    #[serde(deserialize_with = "units::duration")]
    pub initial_interval: Duration,
    /// Longest wait between attempts. Default 30s.
    #[serde(deserialize_with = "units::duration")]
    pub max_interval: Duration,
    /// Give up after this long in total; 0 = never. Default 300s.
    #[serde(deserialize_with = "units::duration")]
    pub max_elapsed_time: Duration,
    /// Growth of the wait between attempts. Default 1.5.
    pub multiplier: f64,
    /// Jitter: each wait is drawn from `interval * [1 - f, 1 + f]`. Default 0.5.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// `sending_queue`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Default true (false for `debug`).
    pub enabled: bool,
    /// Workers sending from the queue in parallel. Default 10.
    pub num_consumers: usize,
    /// Capacity, in the sizer's unit. Default 1000.
    pub queue_size: usize,
    /// The unit of `queue_size`: `requests` (default), `items` (spans, data points, log
    /// records) or `bytes` (of protobuf, before compression).
    pub sizer: String,
    /// The caller waits until its data is sent (or given up) instead of returning once it is
    /// queued; a failure then reaches the client. Default false.
    pub wait_for_result: bool,
    /// When full: wait for room (true) or refuse at once with a retryable error (false, default).
    pub block_on_overflow: bool,
    /// The storage extension (`file_storage`) that holds a persistent queue: requests are kept
    /// on disk until sent, across restarts and crashes, and the caller is answered once its data
    /// is on disk. None: the queue is in memory.
    pub storage: Option<String>,
    /// Batching in front of the queue, as the `batch` processor does. `batch:` alone turns it on.
    #[serde(deserialize_with = "crate::config::present")]
    pub batch: Option<QueueBatchConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: "requests".into(),
            wait_for_result: false,
            block_on_overflow: false,
            storage: None,
            batch: None,
        }
    }
}

/// `sending_queue.batch`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// Default 200ms.
    #[serde(deserialize_with = "units::duration")]
    pub flush_timeout: Duration,
    /// Default 8192 items.
    pub min_size: usize,
    /// 0 = no bound (default).
    pub max_size: usize,
    /// Only `items`.
    pub sizer: String,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        QueueBatchConfig {
            flush_timeout: Duration::from_millis(200),
            min_size: 8192,
            max_size: 0,
            sizer: "items".into(),
        }
    }
}

/// Each worker is a task: ten thousand are far more than any backend takes in parallel, and
/// ten million (accepted once) took 7.8 GB.
pub const MAX_CONSUMERS: usize = 10_000;
/// Requests a queue may hold. The queue allocates as it fills, so this is only a bound.
pub const MAX_QUEUE_SIZE: usize = 10_000_000;
/// Longest accepted timeout, retry interval or retry budget.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The helper keys of an exporter's config, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Per attempt; zero means no timeout (as in the Collector).
    pub timeout: Duration,
    pub retry: RetryConfig,
    pub queue: QueueConfig,
    /// At most this many requests in flight at once (an HTTP exporter's
    /// `max_conns_per_host`: one connection per request in flight). None: the consumers'.
    pub max_in_flight: Option<usize>,
    /// `sending_queue.storage`, parsed.
    pub storage: Option<ComponentId>,
}

impl Settings {
    /// Validates the helper keys; `node` is the exporter's config node (for positions).
    pub fn new(
        timeout: Duration,
        retry: RetryConfig,
        queue: QueueConfig,
        node: &Node,
    ) -> Result<Self, DeError> {
        let at = |path: &[&str], msg: String| {
            let mut n = node;
            for p in path {
                if let Some(c) = n.get(p) {
                    n = c;
                }
            }
            DeError {
                pos: Some(n.pos),
                path: path.iter().map(|s| s.to_string()).collect(),
                msg,
            }
        };
        if retry.multiplier < 1.0 {
            return Err(at(
                &["retry_on_failure", "multiplier"],
                "must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&retry.randomization_factor) {
            return Err(at(
                &["retry_on_failure", "randomization_factor"],
                "must be between 0 and 1".into(),
            ));
        }
        if retry.enabled && retry.initial_interval.is_zero() {
            return Err(at(
                &["retry_on_failure", "initial_interval"],
                "must be greater than zero".into(),
            ));
        }
        for (key, d) in [
            (
                &["retry_on_failure", "initial_interval"][..],
                retry.initial_interval,
            ),
            (
                &["retry_on_failure", "max_interval"][..],
                retry.max_interval,
            ),
            (
                &["retry_on_failure", "max_elapsed_time"][..],
                retry.max_elapsed_time,
            ),
            (&["timeout"][..], timeout),
        ] {
            if d > MAX_DURATION {
                return Err(at(key, "must be at most 24h".into()));
            }
        }
        if queue.enabled {
            if !(1..=MAX_CONSUMERS).contains(&queue.num_consumers) {
                return Err(at(
                    &["sending_queue", "num_consumers"],
                    format!("must be between 1 and {MAX_CONSUMERS}"),
                ));
            }
            let max = if queue.sizer == "bytes" {
                usize::MAX >> 1
            } else {
                MAX_QUEUE_SIZE
            };
            if !(1..=max).contains(&queue.queue_size) {
                return Err(at(
                    &["sending_queue", "queue_size"],
                    format!(
                        "must be between 1 and {MAX_QUEUE_SIZE} requests (memory is bounded by memory_limiter, not by this)"
                    ),
                ));
            }
            if !matches!(queue.sizer.as_str(), "requests" | "items" | "bytes") {
                return Err(at(
                    &["sending_queue", "sizer"],
                    format!("sizer {:?}: expected requests, items or bytes", queue.sizer),
                ));
            }
        }
        let storage = match (&queue.storage, queue.enabled) {
            (Some(s), true) => Some(
                ComponentId::parse(s)
                    .map_err(|e| at(&["sending_queue", "storage"], e.to_string()))?,
            ),
            _ => None,
        };
        if let Some(b) = &queue.batch {
            if b.sizer != "items" {
                return Err(at(
                    &["sending_queue", "batch", "sizer"],
                    format!("sizer {:?} is not supported yet; use `items`", b.sizer),
                ));
            }
            if b.max_size != 0 && b.max_size < b.min_size {
                return Err(at(
                    &["sending_queue", "batch", "max_size"],
                    "must be 0 or at least min_size".into(),
                ));
            }
        }
        Ok(Settings {
            timeout,
            retry,
            queue,
            max_in_flight: None,
            storage,
        })
    }
}

/// An exporter's own config with its helper settings, both validated at parse time; what
/// `parse` returns and `build` consumes.
pub struct Validated<C> {
    pub cfg: C,
    pub settings: Settings,
}

/// Why one send failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("{msg}")]
    Retryable {
        msg: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
    /// The peer refused the request as too large (gRPC `RESOURCE_EXHAUSTED` saying so, HTTP
    /// 413): sending the same bytes again cannot work, a split one may.
    #[error("{0}")]
    TooLarge(String),
}

impl SendError {
    pub fn retryable(msg: impl Into<String>) -> Self {
        SendError::Retryable {
            msg: msg.into(),
            retry_after: None,
        }
    }
}

/// An exporter's protocol: encode a batch once, send it as often as retries need.
pub trait Sender: Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    fn encode(&self, batch: Batch) -> Result<Self::Request, SendError>;
    fn send<'a>(&'a self, req: &'a Self::Request) -> BoxFuture<'a, Result<(), SendError>>;

    /// True when what is sent must reach the backend in order (remote-write: each series' samples
    /// in time order). The queue is then split into `num_consumers` shards, each with its own
    /// queue and a single worker, and [`Sender::encode_parts`] decides which shard gets what; a
    /// shard retrying its oldest request holds back only the requests behind it in that shard.
    fn ordered(&self) -> bool {
        false
    }

    /// Splits a request the peer refused as too large into smaller ones (about halves), each
    /// with its items; `None` when it cannot be split (one item). The default: never.
    fn split(&self, req: &Self::Request) -> Option<Vec<Part<Self::Request>>> {
        let _ = req;
        None
    }

    /// Encodes a batch into parts for `shards` shards (see [`Sender::ordered`]). The default:
    /// one part, for shard 0.
    fn encode_parts(
        &self,
        batch: Batch,
        shards: usize,
    ) -> Result<Vec<Part<Self::Request>>, SendError> {
        let _ = shards;
        let items = batch.item_count();
        Ok(vec![Part {
            shard: 0,
            items,
            req: self.encode(batch)?,
        }])
    }
}

/// One shard's share of an encoded batch.
pub struct Part<R> {
    pub shard: usize,
    /// Items it carries (counted as sent or failed with it).
    pub items: usize,
    pub req: R,
}

struct Job<R> {
    req: R,
    signal: Signal,
    items: usize,
    /// `wait_for_result`: told the outcome when the send ends.
    done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// What it takes of the queue, in the sizer's unit (set when queued).
    weight: usize,
    /// From the persistent queue: cut short at shutdown, it stays on disk for the next start
    /// instead of being counted as dropped.
    persistent: bool,
    /// The request's client (its metadata and what its authenticator found), when the receiver
    /// passed any: the send runs in its scope, so `headers_setter` can read it.
    client: Option<Arc<crate::client::ClientInfo>>,
    /// Its share of the process's bound on what in-memory queues hold; given back when the
    /// job is dropped.
    _held: crate::admission::Held,
}

/// The caller's client info when it carries metadata or auth data (nothing to keep otherwise).
fn current_client() -> Option<Arc<crate::client::ClientInfo>> {
    crate::client::with(|c| {
        c.filter(|c| !c.metadata.is_empty() || !c.auth.is_empty())
            .map(|c| Arc::new(c.clone()))
    })
}

struct Inner<S: Sender> {
    sender: S,
    settings: Settings,
    id: String,
    /// Empty when the queue is off; one queue per shard for ordered senders, else one.
    queues: Vec<Queue<Job<S::Request>>>,
    sent: SignalCounters,
    failed: SignalCounters,
    enqueue_failed: SignalCounters,
    accepted: SignalCounters,
    /// Requests and items held from enqueue until their send ends (sent, or given up): in a
    /// queue, with a worker, or waiting between retries. So accepted = sent + failed + held.
    /// Per signal.
    queue_size: [prometheus_client::metrics::gauge::Gauge; crate::signal::Signal::COUNT],
    queued_items: [prometheus_client::metrics::gauge::Gauge; crate::signal::Signal::COUNT],
    telemetry: Arc<crate::telemetry::Telemetry>,
    /// This exporter's status for the health extensions.
    status: crate::health::Reporter,
    /// Cancelled at the shutdown deadline: retries stop, what is left is dropped and counted.
    hard_stop: CancellationToken,
    /// `max_in_flight`: a permit per attempt.
    in_flight: Option<tokio::sync::Semaphore>,
    /// `sending_queue.storage`: the persistent queue, in place of `queues`.
    disk: Option<Arc<DiskQueue>>,
    /// `wait_for_result` with the persistent queue: the callers waiting, by record.
    disk_waiters: std::sync::Mutex<std::collections::HashMap<u64, Waiter>>,
    /// The process's memory budget: what the in-memory queues hold counts against its bound.
    memory: Arc<crate::admission::Budget>,
}

type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;

/// How the send of a record from the persistent queue ended.
enum Ended {
    /// Sent, or given up and counted: it leaves the queue.
    Done(Result<(), SendError>),
    /// Cut short by the shutdown deadline: it stays on disk.
    Interrupted,
}

/// The exporter every component returns: [batch →] queue → workers → retry → sender.
pub struct Helper<S: Sender> {
    inner: Arc<Inner<S>>,
    /// `sending_queue.batch`: one batcher per signal in front of the queue.
    batchers: Option<[crate::batcher::Batcher; crate::signal::Signal::COUNT]>,
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl<S: Sender> Helper<S> {
    /// Starts the exporter: opens its persistent queue (if `storage` names one), spawns its
    /// workers and its batchers.
    pub fn build(
        ctx: &Context,
        settings: Settings,
        sender: S,
    ) -> Result<Arc<dyn Exporter>, crate::component::BuildError> {
        let labels = ExporterLabels {
            exporter: ctx.id.to_string(),
        };
        let t = &ctx.telemetry;
        let ordered = sender.ordered();
        let disk = match &settings.storage {
            Some(sid) => Some(open_disk_queue(ctx, sid, &settings)?),
            None => None,
        };
        let (n_queues, workers_per_queue) = match (settings.queue.enabled, ordered) {
            (false, _) => (0, 0),
            _ if disk.is_some() => (0, 0),
            (true, true) => (settings.queue.num_consumers, 1),
            (true, false) => (1, settings.queue.num_consumers),
        };
        // A batch puts at most one request into each shard: every shard holds `queue_size`.
        let queues: Vec<_> = (0..n_queues)
            .map(|_| Queue::new(settings.queue.queue_size))
            .collect();
        // One queue serves the exporter's signals: the capacity is reported under each, so
        // `queue_size / queue_capacity` by `data_type` reads as in the Collector.
        let queue_labels = |s: Signal| crate::telemetry::QueueLabels {
            exporter: ctx.id.to_string(),
            data_type: s.to_string(),
        };
        let capacity = match &disk {
            Some((q, _)) => q.capacity() as usize,
            None => queues.iter().map(Queue::capacity).sum(),
        };
        if !queues.is_empty() || disk.is_some() {
            for s in &ctx.signals {
                t.exporter_queue_capacity
                    .get_or_create(&queue_labels(*s))
                    .set(capacity as i64);
            }
        }
        let inner = Arc::new(Inner {
            sender,
            id: ctx.id.to_string(),
            queues,
            sent: t.exporter_sent.handles(&labels),
            failed: t.exporter_send_failed.handles(&labels),
            enqueue_failed: t.exporter_enqueue_failed.handles(&labels),
            accepted: t.exporter_accepted.handles(&labels),
            queue_size: Signal::EVERY.map(|s| {
                let g = t
                    .exporter_queue_size
                    .get_or_create(&queue_labels(s))
                    .clone();
                if !ctx.signals.contains(&s) {
                    // Not a signal of this exporter's pipelines: no series.
                    t.exporter_queue_size.remove(&queue_labels(s));
                }
                g
            }),
            queued_items: t.exporter_queued.handles(&labels),
            telemetry: t.clone(),
            status: ctx.health.reporter("exporter", &ctx.id.to_string()),
            hard_stop: CancellationToken::new(),
            in_flight: settings
                .max_in_flight
                .filter(|n| *n > 0)
                .map(tokio::sync::Semaphore::new),
            disk: disk.as_ref().map(|(q, _)| q.clone()),
            disk_waiters: Default::default(),
            memory: ctx.memory.clone(),
            settings,
        });
        let mut workers = Vec::new();
        for shard in 0..inner.queues.len() {
            for _ in 0..workers_per_queue {
                let inner = inner.clone();
                workers.push(tokio::spawn(async move { inner.work(shard).await }));
            }
        }
        if let Some((q, rec)) = disk {
            inner.restored(&rec);
            // An ordered sender reads the log with one worker and sends each record's shards
            // in parallel: the order of every shard is the order of the log.
            let n = if ordered {
                1
            } else {
                inner.settings.queue.num_consumers
            };
            for _ in 0..n {
                let (inner, q) = (inner.clone(), q.clone());
                workers.push(tokio::spawn(async move { inner.work_disk(q).await }));
            }
        }
        let batchers = inner.settings.queue.batch.clone().map(|b| {
            let cfg = crate::batcher::Limits {
                timeout: b.flush_timeout,
                send_batch_size: b.min_size,
                send_batch_max_size: b.max_size,
                // Callers of a persistent or `wait_for_result` queue are answered with the
                // outcome of the request their data joined.
                wait_for_downstream: inner.disk.is_some() || inner.settings.queue.wait_for_result,
            };
            let send_size = t.queue_batch_send_size.get_or_create(&labels).clone();
            Signal::EVERY.map(|s| {
                let front: DynConsumer = Arc::new(Front(inner.clone()));
                let stats = crate::batcher::Stats {
                    send_size: Some(send_size.clone()),
                    ..Default::default()
                };
                crate::batcher::Batcher::start(cfg.clone(), s, front, stats)
            })
        });
        Ok(Arc::new(Helper {
            inner,
            batchers,
            workers: std::sync::Mutex::new(workers),
        }))
    }
}

/// Opens the persistent queue of the exporter in `ctx` through storage extension `sid`.
fn open_disk_queue(
    ctx: &Context,
    sid: &ComponentId,
    settings: &Settings,
) -> Result<(Arc<DiskQueue>, crate::disk_queue::Recovered), crate::component::BuildError> {
    let err = |m: String| crate::component::BuildError::new(&ctx.id, m);
    let ext = ctx
        .storage
        .get(sid)
        .map_err(|e| err(format!("sending_queue.storage: {e}")))?;
    let loc = ext
        .queue_dir("exporter", &ctx.id, "")
        .map_err(|e| err(format!("sending_queue.storage: {e}")))?;
    let opts = crate::disk_queue::Options {
        fsync: loc.fsync,
        capacity: settings.queue.queue_size as u64,
        sizer: match settings.queue.sizer.as_str() {
            "items" => Sizer::Items,
            "bytes" => Sizer::Bytes,
            _ => Sizer::Requests,
        },
        segment_bytes: 8 << 20,
    };
    let (q, rec) =
        DiskQueue::open(&loc.dir, opts).map_err(|e| err(format!("sending_queue.storage: {e}")))?;
    let n: u64 = rec.records.iter().sum();
    if n > 0 || rec.corrupt_records + rec.torn_records > 0 {
        tracing::info!(
            exporter = %ctx.id,
            dir = %loc.dir.display(),
            requests = n,
            items = rec.items.iter().sum::<u64>(),
            corrupt_records = rec.corrupt_records,
            torn_records = rec.torn_records,
            skipped_bytes = rec.skipped_bytes,
            "persistent queue restored"
        );
    }
    Ok((q, rec))
}

/// The part behind the optional batcher: enqueue, or send in place when there is no queue.
struct Front<S: Sender>(Arc<Inner<S>>);

impl<S: Sender> Consumer for Front<S> {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(self.0.accept(batch))
    }
}

impl<S: Sender> Consumer for Helper<S> {
    fn durable(&self) -> bool {
        self.inner.disk.is_some()
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        match &self.batchers {
            // Profiles requests do not merge: they go to the queue as they came.
            Some(b) if batch.signal() != Signal::Profiles => {
                b[batch.signal().index()].consume(batch)
            }
            _ => Box::pin(self.inner.accept(batch)),
        }
    }
}

impl<S: Sender> Lifecycle for Helper<S> {
    fn shutdown(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(bs) = &self.batchers {
                for b in bs {
                    b.shutdown(deadline).await;
                }
            }
            let workers =
                std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
            if let Some(disk) = &self.inner.disk {
                // What is queued stays on disk for the next start; sends in progress get
                // until the deadline.
                disk.close();
                let drain = async {
                    for w in workers {
                        let _ = w.await;
                    }
                };
                if tokio::time::timeout_at(deadline, drain).await.is_err() {
                    self.inner.hard_stop.cancel();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let left: i64 = self.inner.queued_items.iter().map(|g| g.get()).sum();
                tracing::info!(exporter = %self.inner.id, requests = disk.unacknowledged(), items = left, dir = %disk.dir().display(), "left in the persistent queue for the next start");
                disk.release();
                return;
            }
            let queues = &self.inner.queues;
            if !queues.is_empty() {
                // Workers drain what is queued, then stop; at the deadline retries are cut short.
                for q in queues {
                    q.close();
                }
                let stop = self.inner.hard_stop.clone();
                let drain = async {
                    for w in workers {
                        let _ = w.await;
                    }
                };
                if tokio::time::timeout_at(deadline, drain).await.is_err() {
                    stop.cancel();
                    // Workers see the cancellation at once; what they drop is counted.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let mut left = 0;
                while let Some(job) = queues.iter().find_map(|q| q.try_pop()) {
                    left += 1;
                    self.inner.give_up(
                        &job,
                        "shutdown",
                        "the collector stopped before it could be sent",
                    );
                    self.inner.release(&job);
                }
                if left > 0 {
                    tracing::warn!(exporter = %self.inner.id, requests = left, "requests still queued at shutdown were dropped");
                }
            }
        })
    }
}

impl<S: Sender> Inner<S> {
    /// Takes a batch from a pipeline: queue it, or send it now when the queue is off.
    async fn accept(self: &Arc<Self>, batch: Batch) -> ConsumeResult {
        let (signal, items) = (batch.signal(), batch.item_count());
        if items == 0 {
            return Ok(());
        }
        if let Some(disk) = &self.disk {
            return self.accept_disk(disk, batch).await;
        }
        // Full: refuse before taking the batch, and give it back to the caller.
        // The protobuf size, walked once: the bytes sizer and the queues' shared bound use it.
        let size = if self.queues.is_empty() {
            0
        } else {
            batch.encoded_len()
        };
        let bytes = if self.settings.queue.sizer == "bytes" {
            (size, items)
        } else {
            (0, 1)
        };
        let weight = self.weight(items, bytes);
        if weight > self.queues.first().map_or(usize::MAX, Queue::capacity) {
            self.enqueue_failed.add(signal, items);
            return Err(ConsumeError::Permanent(format!(
                "{items} items ({weight} {}) are more than the sending queue of exporter {} holds (queue_size {})",
                self.settings.queue.sizer, self.id, self.settings.queue.queue_size
            )));
        }
        if self
            .queues
            .iter()
            .any(|q| q.len() + weight.min(q.capacity()) > q.capacity())
            && !self.settings.queue.block_on_overflow
        {
            self.enqueue_failed.add(signal, items);
            return Err(ConsumeError::refuse(
                format!("sending queue of exporter {} is full", self.id),
                batch,
            ));
        }
        // The process-wide bound on what in-memory queues hold, in protobuf bytes.
        let mut held = if self.queues.is_empty() {
            crate::admission::Held::none()
        } else {
            match self.hold(size as u64).await {
                Ok(h) => h,
                Err(e) => {
                    self.enqueue_failed.add(signal, items);
                    return Err(ConsumeError::refuse(
                        format!("sending queue of exporter {}: {e}", self.id),
                        batch,
                    ));
                }
            }
        };
        let held_total = held.bytes();
        self.accepted.add(signal, items);
        let client = current_client();
        let parts = match self.sender.encode_parts(batch, self.queues.len().max(1)) {
            Ok(r) => r,
            Err(e) => {
                let job = Job {
                    req: (),
                    signal,
                    items,
                    done: None,
                    weight: 0,
                    persistent: false,
                    client: None,
                    _held: crate::admission::Held::none(),
                };
                self.give_up(&job, "encode_error", &e.to_string());
                return Err(ConsumeError::Permanent(e.to_string()));
            }
        };
        if self.queues.is_empty() {
            // Without a queue the caller waits for the outcome; a final failure has been
            // counted (send_failed), so it is permanent for the caller.
            let mut result = Ok(());
            for part in parts {
                let job = Job {
                    req: part.req,
                    signal,
                    items: part.items,
                    done: None,
                    weight: 0,
                    persistent: false,
                    client: client.clone(),
                    _held: crate::admission::Held::none(),
                };
                if let Err(e) = self.send_with_retry(&job).await {
                    result = Err(ConsumeError::Permanent(e.to_string()));
                }
            }
            return result;
        }
        let mut result = Ok(());
        let mut waiting = Vec::new();
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.into_iter().enumerate() {
            let q = &self.queues[part.shard.min(self.queues.len() - 1)];
            let done = self.settings.queue.wait_for_result.then(|| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                waiting.push(rx);
                tx
            });
            // Shares by items; the last part takes what rounding left.
            let share = if i == last {
                u64::MAX
            } else {
                (held_total as u128 * part.items as u128 / items.max(1) as u128) as u64
            };
            let mut job = Job {
                req: part.req,
                signal,
                items: part.items,
                done,
                weight: 0,
                persistent: false,
                client: client.clone(),
                _held: held.split_off(share),
            };
            // Another producer may have taken the last slot since the check above: wait for
            // room rather than drop what is already encoded.
            loop {
                let (sig, n) = (job.signal, job.items);
                let w = self.weight(n, bytes);
                job.weight = w;
                match q.push_weighted(job, w) {
                    Ok(()) => {
                        self.queue_size[sig.index()].inc_by(w as i64);
                        self.queued_items[sig.index()].inc_by(n as i64);
                        break;
                    }
                    Err(back) if !self.hard_stop.is_cancelled() => {
                        job = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(back) => {
                        self.give_up(
                            &back,
                            "shutdown",
                            "the collector stopped before it could be queued",
                        );
                        result = Err(ConsumeError::Permanent("shutting down".into()));
                        break;
                    }
                }
            }
        }
        // `wait_for_result`: the outcome of every part (a final failure was counted when the
        // worker gave up, so it is permanent for the caller, as without a queue).
        for rx in waiting {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(m)) => result = Err(ConsumeError::Permanent(m)),
                Err(_) => {
                    result = Err(ConsumeError::Permanent(
                        "the request was dropped before it was sent".into(),
                    ))
                }
            }
        }
        result
    }

    /// Appends a batch to the persistent queue; answers once it is on disk (synced when the
    /// storage extension says `fsync`). Full queue or full disk: a retryable refusal that gives
    /// the batch back.
    async fn accept_disk(self: &Arc<Self>, disk: &Arc<DiskQueue>, batch: Batch) -> ConsumeResult {
        let (signal, items) = (batch.signal(), batch.item_count());
        let bytes = batch.into_request_bytes();
        let sizer = match self.settings.queue.sizer.as_str() {
            "items" => Sizer::Items,
            "bytes" => Sizer::Bytes,
            _ => Sizer::Requests,
        };
        let weight = sizer.weight(items as u64, bytes.len() as u64);
        let give_back =
            |bytes: bytes::Bytes| Batch::Encoded(crate::signal::Encoded::new(signal, bytes, items));
        if weight > disk.capacity() {
            self.enqueue_failed.add(signal, items);
            return Err(ConsumeError::Permanent(format!(
                "{items} items ({weight} {}) are more than the sending queue of exporter {} holds (queue_size {})",
                self.settings.queue.sizer, self.id, self.settings.queue.queue_size
            )));
        }
        // `wait_for_result`: the worker that ends the record's send tells this caller.
        let mut rx = None;
        loop {
            let tx = self.settings.queue.wait_for_result.then(|| {
                let (tx, r) = tokio::sync::oneshot::channel();
                rx = Some(r);
                tx
            });
            let (q, b, me) = (disk.clone(), bytes.clone(), self.clone());
            let pushed = tokio::task::spawn_blocking(move || {
                q.push_then(signal, items as u64, weight, &b, |seq| {
                    if let Some(t) = tx {
                        me.disk_waiters
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(seq, t);
                    }
                })
            })
            .await
            .unwrap_or_else(|e| {
                Err(QueueError::Io {
                    dir: disk.dir().display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            match pushed {
                Ok(_) => {
                    self.accepted.add(signal, items);
                    self.queue_size[signal.index()].inc_by(weight as i64);
                    self.queued_items[signal.index()].inc_by(items as i64);
                    break;
                }
                Err(QueueError::Full)
                    if self.settings.queue.block_on_overflow && !self.hard_stop.is_cancelled() =>
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(e) => {
                    self.enqueue_failed.add(signal, items);
                    let why = match &e {
                        QueueError::Full => {
                            format!("sending queue of exporter {} is full", self.id)
                        }
                        QueueError::Closed => {
                            format!("exporter {} is shutting down", self.id)
                        }
                        e if e.is_disk_full() => {
                            tracing::warn!(exporter = %self.id, error = %e, "the persistent queue's disk is full; refusing data until there is room");
                            format!("exporter {}: the persistent queue's disk is full", self.id)
                        }
                        e => {
                            tracing::error!(exporter = %self.id, error = %e, "cannot write to the persistent queue");
                            format!("exporter {}: {e}", self.id)
                        }
                    };
                    return Err(ConsumeError::refuse(why, give_back(bytes)));
                }
            }
        }
        match rx {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(m)) => Err(ConsumeError::Permanent(m)),
                // Shutdown before it was sent: it is on disk, and the next start sends it.
                Err(_) => Ok(()),
            },
        }
    }

    /// Counts what the persistent queue held at start as held (queued).
    fn restored(&self, rec: &crate::disk_queue::Recovered) {
        for s in Signal::EVERY {
            let i = s.index();
            self.queue_size[i].inc_by(rec.weight[i] as i64);
            self.queued_items[i].inc_by(rec.items[i] as i64);
            if rec.items[i] > 0 {
                self.telemetry
                    .exporter_queue_restored
                    .get_or_create(&crate::telemetry::QueueLabels {
                        exporter: self.id.clone(),
                        data_type: s.to_string(),
                    })
                    .inc_by(rec.items[i]);
            }
        }
        for (reason, n) in [("corrupt", rec.corrupt_records), ("torn", rec.torn_records)] {
            if n > 0 {
                self.telemetry
                    .exporter_queue_skipped
                    .get_or_create(&DropLabels {
                        exporter: self.id.clone(),
                        reason: reason.into(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// A worker of the persistent queue: read a record, send it, acknowledge it when its send
    /// ended (so a crash before then sends it again).
    async fn work_disk(self: Arc<Self>, q: Arc<DiskQueue>) {
        while let Some(entry) = q.pop().await {
            let ended = self.send_record(&q, &entry).await;
            let Ended::Done(result) = ended else {
                continue;
            };
            let q2 = q.clone();
            let e2 = entry.clone();
            let acked = tokio::task::spawn_blocking(move || q2.ack(&e2)).await;
            if let Ok(Err(e)) | Err(e) = acked.map_err(|e| QueueError::Io {
                dir: String::new(),
                source: std::io::Error::other(e.to_string()),
            }) {
                // Not remembered as done: it may be sent again after a restart, never lost.
                tracing::warn!(exporter = %self.id, error = %e, "cannot record a sent request in the persistent queue");
            }
            self.queue_size[entry.signal.index()].dec_by(entry.weight as i64);
            self.queued_items[entry.signal.index()].dec_by(entry.items as i64);
            let waiter = self
                .disk_waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&entry.seq);
            if let Some(w) = waiter {
                let _ = w.send(result.map_err(|e| e.to_string()));
            }
        }
    }

    async fn send_record(&self, q: &Arc<DiskQueue>, entry: &Entry) -> Ended {
        let (signal, items) = (entry.signal, entry.items as usize);
        let job0 = Job {
            req: (),
            signal,
            items,
            done: None,
            weight: 0,
            persistent: true,
            client: None,
            _held: crate::admission::Held::none(),
        };
        let (q2, e2) = (q.clone(), entry.clone());
        let read = tokio::task::spawn_blocking(move || q2.read(&e2))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                self.give_up(&job0, "corrupt", &e);
                return Ended::Done(Err(SendError::Permanent(e)));
            }
        };
        // The checksum held; the scan keeps a record written by another version from reaching
        // a decoder it could upset.
        if let Err(e) = crate::signal::wire::scan(signal, &bytes) {
            let m = format!("a record of the persistent queue is not a valid request: {e}");
            self.give_up(&job0, "corrupt", &m);
            return Ended::Done(Err(SendError::Permanent(m)));
        }
        let batch = Batch::Encoded(crate::signal::Encoded::new(signal, bytes, items));
        let parts = match self
            .sender
            .encode_parts(batch, self.settings.queue.num_consumers.max(1))
        {
            Ok(p) => p,
            Err(e) => {
                self.give_up(&job0, "encode_error", &e.to_string());
                return Ended::Done(Err(e));
            }
        };
        let jobs: Vec<Job<S::Request>> = parts
            .into_iter()
            .map(|p| Job {
                req: p.req,
                signal,
                items: p.items,
                done: None,
                weight: 0,
                persistent: true,
                client: None,
                _held: crate::admission::Held::none(),
            })
            .collect();
        let results = futures::future::join_all(jobs.iter().map(|j| self.send_with_retry(j))).await;
        if self.hard_stop.is_cancelled() && results.iter().any(Result::is_err) {
            return Ended::Interrupted;
        }
        Ended::Done(results.into_iter().find(Result::is_err).unwrap_or(Ok(())))
    }

    /// Takes `bytes` (a batch's protobuf size) of the in-memory queues' bound; with `block_on_overflow`
    /// waits for room (until the shutdown deadline) instead of refusing.
    async fn hold(
        &self,
        bytes: u64,
    ) -> Result<crate::admission::Held, crate::admission::QueueFull> {
        loop {
            match self.memory.hold_queued(bytes) {
                Ok(h) => return Ok(h),
                Err(e)
                    if !self.settings.queue.block_on_overflow || self.hard_stop.is_cancelled() =>
                {
                    return Err(e);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    /// What a request of `items` takes of the queue, in the sizer's unit (`bytes`: the
    /// batch's protobuf size shared among its parts by their items).
    fn weight(&self, items: usize, (bytes, of_items): (usize, usize)) -> usize {
        match self.settings.queue.sizer.as_str() {
            "items" => items.max(1),
            "bytes" => (items.saturating_mul(bytes) / of_items.max(1)).max(1),
            _ => 1,
        }
    }

    /// A queued job's send ended (sent or given up): it is no longer held.
    fn release<R>(&self, job: &Job<R>) {
        self.queue_size[job.signal.index()].dec_by(job.weight as i64);
        self.queued_items[job.signal.index()].dec_by(job.items as i64);
    }

    async fn work(self: Arc<Self>, shard: usize) {
        let q = &self.queues[shard];
        while let Some(job) = q.pop().await {
            // The outcome is counted inside; a worker has nobody to report it to.
            let mut job = job;
            let result = self.send_with_retry(&job).await;
            self.release(&job);
            if let Some(done) = job.done.take() {
                let _ = done.send(result.map_err(|e| e.to_string()));
            }
        }
    }

    fn give_up<R>(&self, job: &Job<R>, reason: &str, msg: &str) {
        self.failed.add(job.signal, job.items);
        if reason != "shutdown" {
            self.status.permanent(msg);
        }
        self.telemetry
            .exporter_dropped_items
            .get_or_create(&DropLabels {
                exporter: self.id.clone(),
                reason: reason.into(),
            })
            .inc_by(job.items as u64);
        tracing::error!(exporter = %self.id, items = job.items, signal = %job.signal, reason, error = msg, "dropping data");
    }

    /// Sends with the configured timeout and retries; counts the outcome. A request the peer
    /// finds too large is split and its parts sent the same way; only an item too large by
    /// itself is dropped (counted, reason `too_large`).
    fn send_with_retry<'a>(
        &'a self,
        job: &'a Job<S::Request>,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            match self.send_once_with_retry(job).await {
                Err(SendError::TooLarge(msg)) => {
                    let Some(parts) = self.sender.split(&job.req).filter(|p| p.len() > 1) else {
                        self.give_up(job, "too_large", &msg);
                        return Err(SendError::Permanent(msg));
                    };
                    tracing::warn!(exporter = %self.id, items = job.items, parts = parts.len(), error = %msg, "the peer refused a request as too large; sending it in parts");
                    let mut result = Ok(());
                    for part in parts {
                        let sub = Job {
                            req: part.req,
                            signal: job.signal,
                            items: part.items,
                            done: None,
                            weight: 0,
                            persistent: job.persistent,
                            client: job.client.clone(),
                            _held: crate::admission::Held::none(),
                        };
                        if let Err(e) = self.send_with_retry(&sub).await {
                            result = Err(e);
                        }
                    }
                    result
                }
                other => other,
            }
        })
    }

    async fn send_once_with_retry(&self, job: &Job<S::Request>) -> Result<(), SendError> {
        let retry = &self.settings.retry;
        let started = Instant::now();
        let mut interval = retry.initial_interval;
        loop {
            // A zero timeout is none: the attempt runs until the sender gives up by itself.
            let limit = if self.settings.timeout.is_zero() {
                MAX_DURATION
            } else {
                self.settings.timeout
            };
            // The collector's own span of this export request, when it records them.
            let mut span = crate::selfexport::tracing_enabled().then(|| {
                let mut s = crate::selfexport::span(format!("exporter/{}/{}", self.id, job.signal));
                s.attr("items", job.items);
                s
            });
            let attempt = tokio::time::timeout(limit, async {
                // Held for the attempt only, not while waiting to retry.
                let _permit = match &self.in_flight {
                    Some(s) => s.acquire().await.ok(),
                    None => None,
                };
                match &job.client {
                    Some(c) => {
                        crate::client::scope((**c).clone(), self.sender.send(&job.req)).await
                    }
                    None => self.sender.send(&job.req).await,
                }
            });
            let err = tokio::select! {
                r = attempt => match r {
                    Ok(Ok(())) => {
                        self.sent.add(job.signal, job.items);
                        self.status.ok();
                        return Ok(());
                    }
                    Ok(Err(e)) => e,
                    Err(_) => SendError::retryable(format!("request timed out after {:?}", self.settings.timeout)),
                },
                _ = self.hard_stop.cancelled() => {
                    if !job.persistent {
                        self.give_up(job, "shutdown", "the shutdown deadline passed during a send");
                    }
                    return Err(SendError::Permanent("shutdown".into()));
                }
            };
            if let (Some(s), SendError::Permanent(m) | SendError::TooLarge(m)) = (&mut span, &err) {
                s.error(m);
            } else if let (Some(s), SendError::Retryable { msg, .. }) = (&mut span, &err) {
                s.error(msg);
            }
            drop(span);
            let (msg, hint) = match &err {
                SendError::Permanent(m) => {
                    self.give_up(job, "permanent_error", m);
                    return Err(err);
                }
                // Counted by the caller: split, or given up.
                SendError::TooLarge(_) => return Err(err),
                SendError::Retryable { msg, retry_after } => (msg.clone(), *retry_after),
            };
            if !retry.enabled {
                self.give_up(job, "retries_disabled", &msg);
                return Err(err);
            }
            let wait = hint.unwrap_or_else(|| jitter(interval, retry.randomization_factor));
            if !retry.max_elapsed_time.is_zero()
                && started.elapsed() + wait > retry.max_elapsed_time
            {
                self.give_up(job, "retries_exhausted", &msg);
                return Err(err);
            }
            self.status.recoverable(&msg);
            tracing::warn!(exporter = %self.id, error = %msg, retry_in = ?wait, "send failed; will retry");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.hard_stop.cancelled() => {
                    if !job.persistent {
                        self.give_up(job, "shutdown", &msg);
                    }
                    return Err(SendError::Permanent("shutdown".into()));
                }
            }
            interval = Duration::from_secs_f64(
                (interval.as_secs_f64() * retry.multiplier).min(retry.max_interval.as_secs_f64()),
            );
        }
    }
}

fn jitter(interval: Duration, factor: f64) -> Duration {
    if factor == 0.0 {
        return interval;
    }
    let f = rand::rng().random_range(1.0 - factor..=1.0 + factor);
    Duration::from_secs_f64(interval.as_secs_f64() * f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::testdata;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails the first `fail` sends with the given error, then succeeds.
    struct Flaky {
        fail: AtomicUsize,
        err: SendError,
        delivered: Mutex<Vec<usize>>,
    }
    impl Sender for Arc<Flaky> {
        type Request = Batch;
        fn encode(&self, batch: Batch) -> Result<Batch, SendError> {
            Ok(batch)
        }
        fn send<'a>(&'a self, req: &'a Batch) -> BoxFuture<'a, Result<(), SendError>> {
            Box::pin(async move {
                if self.fail.load(Ordering::SeqCst) > 0 {
                    self.fail.fetch_sub(1, Ordering::SeqCst);
                    return Err(self.err.clone());
                }
                self.delivered.lock().unwrap().push(req.item_count());
                Ok(())
            })
        }
    }

    fn settings(queue: bool, queue_size: usize) -> Settings {
        Settings {
            timeout: Duration::from_secs(5),
            retry: RetryConfig {
                initial_interval: Duration::from_millis(100),
                max_elapsed_time: Duration::from_secs(10),
                ..Default::default()
            },
            queue: QueueConfig {
                enabled: queue,
                num_consumers: 1,
                queue_size,
                ..Default::default()
            },
            max_in_flight: None,
            storage: None,
        }
    }

    /// Counts the sends in flight at once.
    #[derive(Default)]
    struct Concurrent {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    impl Sender for Arc<Concurrent> {
        type Request = Batch;
        fn encode(&self, batch: Batch) -> Result<Batch, SendError> {
            Ok(batch)
        }
        fn send<'a>(&'a self, _: &'a Batch) -> BoxFuture<'a, Result<(), SendError>> {
            Box::pin(async move {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    /// `max_conns_per_host` bounds the sends in flight below the consumers' count.
    #[tokio::test(start_paused = true)]
    async fn max_in_flight_bounds_concurrent_sends() {
        let ctx = crate::component::Context::standalone("otlp_http");
        for (limit, want) in [(None, 4), (Some(1), 1)] {
            let slow = Arc::new(Concurrent::default());
            let mut s = settings(true, 100);
            s.queue.num_consumers = 4;
            s.max_in_flight = limit;
            let e = Helper::build(&ctx, s, slow.clone()).unwrap();
            for _ in 0..12 {
                e.consume(testdata::logs(1)).await.unwrap();
            }
            e.shutdown(Instant::now() + Duration::from_secs(5)).await;
            assert_eq!(slow.max.load(Ordering::SeqCst), want, "limit {limit:?}");
        }
    }

    fn flaky(fail: usize, err: SendError) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail: AtomicUsize::new(fail),
            err,
            delivered: Mutex::new(vec![]),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_then_delivers() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(3, SendError::retryable("503"));
        let e = Helper::build(&ctx, settings(false, 1), f.clone()).unwrap();
        e.consume(testdata::spans("a", 1, 4)).await.unwrap();
        assert_eq!(*f.delivered.lock().unwrap(), vec![4]);
        let text = ctx.telemetry.encode();
        assert!(
            text.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp\"} 4"),
            "{text}"
        );
    }

    /// Takes `delay` for every send.
    struct Slow(Duration, Mutex<usize>);
    impl Sender for Arc<Slow> {
        type Request = Batch;
        fn encode(&self, batch: Batch) -> Result<Batch, SendError> {
            Ok(batch)
        }
        fn send<'a>(&'a self, _: &'a Batch) -> BoxFuture<'a, Result<(), SendError>> {
            Box::pin(async move {
                tokio::time::sleep(self.0).await;
                *self.1.lock().unwrap() += 1;
                Ok(())
            })
        }
    }

    /// Refuses requests of more than `max` items as too large; splits in halves.
    struct Picky {
        max: usize,
        delivered: Mutex<Vec<usize>>,
    }
    impl Sender for Arc<Picky> {
        type Request = Batch;
        fn encode(&self, batch: Batch) -> Result<Batch, SendError> {
            Ok(batch)
        }
        fn send<'a>(&'a self, req: &'a Batch) -> BoxFuture<'a, Result<(), SendError>> {
            Box::pin(async move {
                if req.item_count() > self.max {
                    return Err(SendError::TooLarge("message too large".into()));
                }
                self.delivered.lock().unwrap().push(req.item_count());
                Ok(())
            })
        }
        fn split(&self, req: &Batch) -> Option<Vec<Part<Batch>>> {
            let n = req.item_count();
            (n > 1).then(|| {
                req.clone()
                    .split(n.div_ceil(2))
                    .into_iter()
                    .map(|b| Part {
                        shard: 0,
                        items: b.item_count(),
                        req: b,
                    })
                    .collect()
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_refused_as_too_large_is_split_not_dropped() {
        let ctx = crate::component::Context::standalone("otlp");
        let p = Arc::new(Picky {
            max: 3,
            delivered: Mutex::new(vec![]),
        });
        let e = Helper::build(&ctx, settings(true, 10), p.clone()).unwrap();
        e.consume(testdata::spans("a", 1, 20)).await.unwrap();
        e.shutdown(Instant::now() + Duration::from_secs(5)).await;
        let got = p.delivered.lock().unwrap().clone();
        assert_eq!(got.iter().sum::<usize>(), 20, "{got:?}");
        assert!(got.iter().all(|n| *n <= 3), "{got:?}");
        let text = ctx.telemetry.encode();
        assert!(
            text.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp\"} 20"),
            "{text}"
        );
        // An item too large by itself cannot be split: dropped, counted with its reason.
        let ctx = crate::component::Context::standalone("otlp");
        let p = Arc::new(Picky {
            max: 0,
            delivered: Mutex::new(vec![]),
        });
        let e = Helper::build(&ctx, settings(false, 1), p.clone()).unwrap();
        assert!(e.consume(testdata::spans("a", 1, 2)).await.is_err());
        let text = ctx.telemetry.encode();
        assert!(
            text.contains(
                "otelcol_exporter_dropped_items_total{exporter=\"otlp\",reason=\"too_large\"} 2"
            ),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_timeout_means_none() {
        let ctx = crate::component::Context::standalone("otlp");
        let slow = Arc::new(Slow(Duration::from_secs(600), Mutex::new(0)));
        let mut s = settings(false, 1);
        s.timeout = Duration::ZERO;
        let e = Helper::build(&ctx, s, slow.clone()).unwrap();
        e.consume(testdata::logs(1)).await.unwrap();
        assert_eq!(*slow.1.lock().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried_and_are_counted() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(1, SendError::Permanent("400 bad request".into()));
        let e = Helper::build(&ctx, settings(false, 1), f.clone()).unwrap();
        assert!(matches!(
            e.consume(testdata::logs(2)).await,
            Err(ConsumeError::Permanent(_))
        ));
        assert!(f.delivered.lock().unwrap().is_empty());
        let text = ctx.telemetry.encode();
        assert!(
            text.contains("otelcol_exporter_send_failed_log_records_total{exporter=\"otlp\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "otelcol_exporter_dropped_items_total{exporter=\"otlp\",reason=\"permanent_error\"} 2"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_hint_is_honoured_and_max_elapsed_gives_up() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(
            100,
            SendError::Retryable {
                msg: "429".into(),
                retry_after: Some(Duration::from_secs(4)),
            },
        );
        let e = Helper::build(&ctx, settings(false, 1), f.clone()).unwrap();
        let t0 = Instant::now();
        // Without a queue the caller waits; a final failure is counted and permanent for it.
        assert!(matches!(
            e.consume(testdata::logs(1)).await,
            Err(ConsumeError::Permanent(_))
        ));
        assert!(
            ctx.telemetry
                .encode()
                .contains("reason=\"retries_exhausted\"} 1")
        );
        // 4s waits within a 10s budget: two retries (8s), the third would pass 10s.
        assert_eq!(f.fail.load(Ordering::SeqCst), 97);
        assert_eq!(t0.elapsed(), Duration::from_secs(8));
    }

    /// The process-wide bound on queued bytes (`service.queue_memory_limit_mib`) is shared by
    /// every exporter of the context: a queue of 1000 requests refuses, retryably, once the
    /// queues hold the bound, and takes data again when it drains.
    #[tokio::test(start_paused = true)]
    async fn the_queues_share_a_byte_bound_and_refuse_retryably_beyond_it() {
        let ctx = crate::component::Context::standalone("otlp");
        let one = testdata::logs(100);
        let size = one.encoded_len() as u64;
        // Room for three such requests (the first is taken by the retrying worker).
        ctx.memory.set_queue_limit(size * 3);
        let f = flaky(usize::MAX, SendError::retryable("down"));
        let a = Helper::build(&ctx, settings(true, 1000), f.clone()).unwrap();
        let mut other_ctx = ctx.clone();
        other_ctx.id = crate::config::ComponentId::parse("otlp/b").unwrap();
        let g = flaky(usize::MAX, SendError::retryable("down"));
        let b = Helper::build(&other_ctx, settings(true, 1000), g.clone()).unwrap();
        a.consume(testdata::logs(100)).await.unwrap();
        tokio::task::yield_now().await;
        a.consume(testdata::logs(100)).await.unwrap();
        b.consume(testdata::logs(100)).await.unwrap();
        assert_eq!(ctx.memory.queued_bytes(), size * 3);
        // Full for both exporters, though each queue has 997 free slots.
        for e in [&a, &b] {
            let r = e.consume(testdata::logs(100)).await;
            assert!(
                matches!(r, Err(ConsumeError::Retryable { ref reason, returned: Some(_), .. }) if reason.contains("queue_memory_limit_mib")),
                "{r:?}"
            );
        }
        let text = ctx.telemetry.encode();
        assert!(
            text.contains(
                "otelcol_exporter_enqueue_failed_log_records_total{exporter=\"otlp\"} 100"
            ),
            "{text}"
        );
        // The backends recover: everything accepted is delivered and the bytes are given back.
        f.fail.store(0, Ordering::SeqCst);
        g.fail.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            f.delivered.lock().unwrap().len() + g.delivered.lock().unwrap().len(),
            3
        );
        assert_eq!(ctx.memory.queued_bytes(), 0);
        a.consume(testdata::logs(100)).await.unwrap();
        a.shutdown(Instant::now() + Duration::from_secs(60)).await;
        b.shutdown(Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(ctx.memory.queued_bytes(), 0);
        assert_eq!(f.delivered.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_with_a_retryable_error_and_drains_on_shutdown() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(usize::MAX, SendError::retryable("down"));
        let e = Helper::build(&ctx, settings(true, 2), f.clone()).unwrap();
        // One request is taken by the worker (retrying), two fill the queue, the fourth is refused.
        e.consume(testdata::logs(1)).await.unwrap();
        tokio::task::yield_now().await;
        e.consume(testdata::logs(1)).await.unwrap();
        e.consume(testdata::logs(1)).await.unwrap();
        let r = e.consume(testdata::logs(1)).await;
        assert!(
            matches!(r, Err(ConsumeError::Retryable { ref reason, .. }) if reason.contains("queue") ),
            "{r:?}"
        );
        // The request the retrying worker holds is counted with the queued ones: the ledger
        // (accepted = sent + failed + held) adds up during the outage.
        let text = ctx.telemetry.encode();
        assert!(
            text.contains("otelcol_exporter_queue_size{exporter=\"otlp\",data_type=\"logs\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_exporter_queued_log_records{exporter=\"otlp\"} 3"),
            "{text}"
        );
        // The backend recovers: everything accepted is delivered before shutdown returns.
        f.fail.store(0, Ordering::SeqCst);
        e.shutdown(Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(f.delivered.lock().unwrap().len(), 3);
        let text = ctx.telemetry.encode();
        assert!(
            text.contains("otelcol_exporter_enqueue_failed_log_records_total{exporter=\"otlp\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_exporter_queue_size{exporter=\"otlp\",data_type=\"logs\"} 0")
                && text.contains("otelcol_exporter_queued_log_records{exporter=\"otlp\"} 0"),
            "{text}"
        );
    }

    /// `sizer: items`: `queue_size` counts spans/points/records; a request larger than the whole
    /// queue is refused permanently (it would never fit), one that does not fit now retryably.
    #[tokio::test(start_paused = true)]
    async fn the_items_sizer_bounds_the_queue_in_items() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(usize::MAX, SendError::retryable("down"));
        let mut s = settings(true, 10);
        s.queue.sizer = "items".into();
        let e = Helper::build(&ctx, s, f.clone()).unwrap();
        e.consume(testdata::logs(4)).await.unwrap();
        e.consume(testdata::logs(4)).await.unwrap();
        let r = e.consume(testdata::logs(4)).await;
        assert!(
            matches!(r, Err(ConsumeError::Retryable { .. })),
            "8 + 4 > 10: {r:?}"
        );
        e.consume(testdata::logs(2)).await.unwrap();
        let r = e.consume(testdata::logs(11)).await;
        assert!(
            matches!(r, Err(ConsumeError::Permanent(ref m)) if m.contains("more than the sending queue")),
            "{r:?}"
        );
        let text = ctx.telemetry.encode();
        assert!(
            text.contains("otelcol_exporter_queue_size{exporter=\"otlp\",data_type=\"logs\"} 10"),
            "in items: {text}"
        );
        f.fail.store(0, Ordering::SeqCst);
        e.shutdown(Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(f.delivered.lock().unwrap().iter().sum::<usize>(), 10);
    }

    /// `sizer: bytes`: the queue holds up to `queue_size` bytes of protobuf.
    #[tokio::test(start_paused = true)]
    async fn the_bytes_sizer_bounds_the_queue_in_bytes() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(usize::MAX, SendError::retryable("down"));
        let one = testdata::logs(4).encoded_len();
        let mut s = settings(true, one * 2 + one / 2);
        s.queue.sizer = "bytes".into();
        let e = Helper::build(&ctx, s, f.clone()).unwrap();
        e.consume(testdata::logs(4)).await.unwrap();
        e.consume(testdata::logs(4)).await.unwrap();
        let r = e.consume(testdata::logs(4)).await;
        assert!(matches!(r, Err(ConsumeError::Retryable { .. })), "{r:?}");
        let text = ctx.telemetry.encode();
        assert!(
            text.contains(&format!(
                "otelcol_exporter_queue_size{{exporter=\"otlp\",data_type=\"logs\"}} {}",
                2 * one
            )),
            "in bytes: {text}"
        );
        f.fail.store(0, Ordering::SeqCst);
        e.shutdown(Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(f.delivered.lock().unwrap().iter().sum::<usize>(), 8);
        assert!(
            ctx.telemetry
                .encode()
                .contains("otelcol_exporter_queue_size{exporter=\"otlp\",data_type=\"logs\"} 0")
        );
    }

    /// `wait_for_result`: the caller returns when its data is sent, and learns of a failure.
    #[tokio::test(start_paused = true)]
    async fn wait_for_result_returns_the_outcome() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(2, SendError::retryable("503"));
        let mut s = settings(true, 10);
        s.queue.wait_for_result = true;
        let e = Helper::build(&ctx, s, f.clone()).unwrap();
        e.consume(testdata::logs(3)).await.unwrap();
        assert_eq!(
            *f.delivered.lock().unwrap(),
            vec![3],
            "sent before consume returned"
        );
        let g = flaky(0, SendError::Permanent("schema".into()));
        g.fail.store(1, Ordering::SeqCst);
        let mut s = settings(true, 10);
        s.queue.wait_for_result = true;
        let e2 = Helper::build(&ctx, s, g.clone()).unwrap();
        let r = e2.consume(testdata::logs(1)).await;
        assert!(
            matches!(r, Err(ConsumeError::Permanent(ref m)) if m.contains("schema")),
            "{r:?}"
        );
        e.shutdown(Instant::now() + Duration::from_secs(5)).await;
        e2.shutdown(Instant::now() + Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn queue_batching_merges_small_batches() {
        let ctx = crate::component::Context::standalone("otlp");
        let f = flaky(0, SendError::retryable("x"));
        let mut s = settings(true, 10);
        s.queue.batch = Some(QueueBatchConfig {
            min_size: 6,
            ..Default::default()
        });
        let e = Arc::new(Helper::build(&ctx, s, f.clone()).unwrap());
        let (a, b) = (e.clone(), e.clone());
        let (r1, r2) = tokio::join!(a.consume(testdata::logs(3)), b.consume(testdata::logs(3)));
        r1.unwrap();
        r2.unwrap();
        e.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(*f.delivered.lock().unwrap(), vec![6]);
    }

    /// A storage extension with only a queue directory.
    struct QueueDir(std::path::PathBuf);
    impl crate::storage::StorageExtension for QueueDir {
        fn queue_dir(
            &self,
            _: &str,
            _: &ComponentId,
            _: &str,
        ) -> Result<crate::storage::QueueLocation, crate::storage::StorageError> {
            Ok(crate::storage::QueueLocation {
                dir: self.0.clone(),
                fsync: true,
            })
        }
        fn client(
            &self,
            _: &str,
            _: &ComponentId,
            _: &str,
        ) -> Result<Arc<crate::storage::Store>, crate::storage::StorageError> {
            Err(crate::storage::StorageError::NoSuchExtension("kv".into()))
        }
    }

    fn persistent(dir: &std::path::Path) -> (Context, Settings) {
        let ctx = crate::component::Context::standalone("otlp");
        let sid = ComponentId::parse("file_storage").unwrap();
        ctx.storage
            .register(sid.clone(), Arc::new(QueueDir(dir.to_path_buf())));
        let mut s = settings(true, 100);
        s.queue.num_consumers = 2;
        s.storage = Some(sid);
        (ctx, s)
    }

    fn metric(ctx: &Context, line: &str) -> Option<f64> {
        let text = ctx.telemetry.encode();
        text.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// What was acknowledged while the backend was down is sent after a restart, and the
    /// queue's size is right before it is.
    #[tokio::test]
    async fn the_persistent_queue_keeps_what_was_acknowledged_across_a_restart() {
        let d = tempfile::tempdir().unwrap();
        {
            let (ctx, mut s) = persistent(d.path());
            s.retry.initial_interval = Duration::from_secs(3600);
            s.retry.max_elapsed_time = Duration::ZERO;
            s.retry.max_elapsed_time = Duration::ZERO;
            let down = flaky(usize::MAX, SendError::retryable("503"));
            let e = Helper::build(&ctx, s, down.clone()).unwrap();
            assert!(e.durable());
            for _ in 0..5 {
                e.consume(testdata::spans("a", 1, 3)).await.unwrap();
            }
            // Stopped with two sends waiting to retry: nothing is dropped, all stays on disk.
            e.shutdown(Instant::now() + Duration::from_millis(200))
                .await;
            assert_eq!(
                metric(&ctx, "otelcol_exporter_send_failed_spans_total"),
                Some(0.0)
            );
        }
        let (ctx, s) = persistent(d.path());
        let up = flaky(0, SendError::retryable("x"));
        let e = Helper::build(&ctx, s, up.clone()).unwrap();
        for _ in 0..200 {
            if up.delivered.lock().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*up.delivered.lock().unwrap(), vec![3; 5]);
        assert_eq!(
            metric(
                &ctx,
                "ferrotel_exporter_queue_restored_items_total{exporter=\"otlp\",data_type=\"traces\"}"
            ),
            Some(15.0)
        );
        assert_eq!(
            metric(&ctx, "otelcol_exporter_sent_spans_total{exporter=\"otlp\"}"),
            Some(15.0)
        );
        e.shutdown(Instant::now() + Duration::from_secs(1)).await;
        // Everything was acknowledged: a third start finds nothing.
        let (ctx, s) = persistent(d.path());
        let again = flaky(0, SendError::retryable("x"));
        let e = Helper::build(&ctx, s, again.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(again.delivered.lock().unwrap().is_empty());
        e.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_full_persistent_queue_refuses_retryably_and_gives_the_batch_back() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, mut s) = persistent(d.path());
        s.queue.queue_size = 2;
        s.retry.initial_interval = Duration::from_secs(3600);
        s.retry.max_elapsed_time = Duration::ZERO;
        let down = flaky(usize::MAX, SendError::retryable("503"));
        let e = Helper::build(&ctx, s, down).unwrap();
        e.consume(testdata::logs(2)).await.unwrap();
        e.consume(testdata::logs(2)).await.unwrap();
        match e.consume(testdata::logs(2)).await {
            Err(ConsumeError::Retryable {
                returned: Some(b), ..
            }) => assert_eq!(b.item_count(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            metric(
                &ctx,
                "otelcol_exporter_queue_size{exporter=\"otlp\",data_type=\"logs\"}"
            ),
            Some(2.0)
        );
        e.shutdown(Instant::now() + Duration::from_millis(100))
            .await;
    }

    /// `wait_for_result` with the persistent queue and its batching: each caller learns the
    /// outcome of the request its data joined.
    #[tokio::test]
    async fn wait_for_result_reaches_callers_through_the_persistent_queue_and_batching() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, mut s) = persistent(d.path());
        s.queue.wait_for_result = true;
        s.queue.batch = Some(QueueBatchConfig {
            min_size: 4,
            ..Default::default()
        });
        let f = flaky(0, SendError::retryable("x"));
        let e = Arc::new(Helper::build(&ctx, s, f.clone()).unwrap());
        let (a, b) = (e.clone(), e.clone());
        let (r1, r2) = tokio::join!(a.consume(testdata::logs(2)), b.consume(testdata::logs(2)));
        r1.unwrap();
        r2.unwrap();
        // Answered after the send: delivered already.
        assert_eq!(*f.delivered.lock().unwrap(), vec![4]);
        let bad = Arc::new(Flaky {
            fail: AtomicUsize::new(1),
            err: SendError::Permanent("400 schema".into()),
            delivered: Mutex::new(vec![]),
        });
        drop(e);
        let d2 = tempfile::tempdir().unwrap();
        let (ctx, mut s) = persistent(d2.path());
        s.queue.wait_for_result = true;
        let e = Helper::build(&ctx, s, bad).unwrap();
        let r = e.consume(testdata::logs(1)).await;
        assert!(
            matches!(r, Err(ConsumeError::Permanent(ref m)) if m.contains("schema")),
            "{r:?}"
        );
        e.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }
}
