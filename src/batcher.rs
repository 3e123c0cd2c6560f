//! The batching engine: groups batches until `send_batch_size` items or `timeout`, splits what
//! it sends to `send_batch_max_size` items, keeps and redelivers what downstream refuses, and
//! bounds what it holds. Used by the `batch` processor and by the exporters'
//! `sending_queue.batch`; neither owns it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::component::{BoxFuture, ConsumeError, ConsumeResult, Consumer, DynConsumer, Lifecycle};
use crate::signal::{Batch, Signal};

/// When a batch goes out, and how large it may be.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Send a batch after this long even if it is smaller than `send_batch_size`.
    pub timeout: Duration,
    /// Send as soon as this many items are pending.
    pub send_batch_size: usize,
    /// Upper bound of one outgoing batch; 0 = no bound.
    pub send_batch_max_size: usize,
    /// Answer each caller only once the batch its data joined has been taken downstream (and
    /// with downstream's answer), instead of once it is buffered. For a durable downstream (a
    /// persistent queue) and `wait_for_result`: nothing is acknowledged before it is persisted.
    pub wait_for_downstream: bool,
}

#[derive(Clone, Default)]
pub struct Stats {
    pub incoming: Counter,
    pub outgoing: Counter,
    pub refused: Counter,
    pub size_trigger: Counter,
    pub timeout_trigger: Counter,
    /// Refused retryably by a downstream stage that did not give the batch back.
    pub dropped_unreturned: Counter,
    pub dropped_shutdown: Counter,
    /// Items per batch sent (`otelcol_processor_batch_batch_send_size`,
    /// `otelcol_exporter_queue_batch_send_size`).
    pub send_size: Option<prometheus_client::metrics::histogram::Histogram>,
}

/// Told the outcome of the batch a caller's data joined (`wait_for_downstream`).
type Waiter = oneshot::Sender<ConsumeResult>;

enum Msg {
    Data(Batch, Option<Waiter>),
    Shutdown(Instant, oneshot::Sender<()>),
}

/// The batching engine, also used by the exporter helper for `sending_queue.batch`.
pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    /// Items acknowledged but not yet taken by downstream.
    buffered: Arc<AtomicUsize>,
    /// Set while downstream refuses (batches wait for redelivery): new data is refused too, so
    /// the refusal travels back to clients at once.
    blocked: Arc<AtomicBool>,
    max_buffered: usize,
    refused: Counter,
    wait: bool,
}

/// Flushes handed downstream at the same time; more waits.
const MAX_CONCURRENT_FLUSHES: usize = 32;
/// Redelivery of a refused batch starts after this and doubles up to `MAX_RETRY_DELAY`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

impl Batcher {
    pub fn start(cfg: Limits, signal: Signal, next: DynConsumer, stats: Stats) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let buffered = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let max_buffered = Self::max_buffered(&cfg);
        let refused = stats.refused.clone();
        let wait = cfg.wait_for_downstream;
        tokio::spawn(Run::new(cfg, signal, next, stats, buffered.clone(), blocked.clone()).run(rx));
        Batcher {
            tx,
            buffered,
            blocked,
            max_buffered,
            refused,
            wait,
        }
    }

    /// The most items held (pending, in flight or waiting for redelivery) before new data is
    /// refused: two outgoing batches.
    pub fn max_buffered(cfg: &Limits) -> usize {
        cfg.send_batch_max_size.max(cfg.send_batch_size).max(1024) * 2
    }
}

impl Consumer for Batcher {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let n = batch.item_count();
            if self.blocked.load(Ordering::Acquire) {
                self.refused.inc_by(n as u64);
                return Err(ConsumeError::refuse(
                    "downstream is refusing data (e.g. an exporter queue is full); retry later",
                    batch,
                ));
            }
            let before = self.buffered.fetch_add(n, Ordering::AcqRel);
            // An empty buffer takes any batch, so one oversized request is never refused forever.
            if before > 0 && before + n > self.max_buffered {
                self.buffered.fetch_sub(n, Ordering::AcqRel);
                self.refused.inc_by(n as u64);
                return Err(ConsumeError::refuse(
                    format!(
                        "the batch processor holds {before} items that downstream has not taken yet; retry later"
                    ),
                    batch,
                ));
            }
            let (waiter, outcome) = if self.wait {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            if let Err(mpsc::error::SendError(msg)) = self.tx.send(Msg::Data(batch, waiter)).await {
                self.buffered.fetch_sub(n, Ordering::AcqRel);
                let Msg::Data(batch, _) = msg else {
                    unreachable!("only data is sent here")
                };
                return Err(ConsumeError::refuse(
                    "the batch processor is shutting down",
                    batch,
                ));
            }
            match outcome {
                None => Ok(()),
                Some(rx) => rx.await.unwrap_or_else(|_| {
                    Err(ConsumeError::retryable(
                        "the batch processor stopped before the batch was delivered downstream; retry",
                    ))
                }),
            }
        })
    }
}

impl Lifecycle for Batcher {
    fn shutdown(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (done, wait) = oneshot::channel();
            if self.tx.send(Msg::Shutdown(deadline, done)).await.is_ok() {
                let _ = wait.await;
            }
        })
    }
}

/// The batcher's task: owns the pending batch and the batches waiting for redelivery.
struct Run {
    cfg: Limits,
    signal: Signal,
    next: DynConsumer,
    stats: Stats,
    buffered: Arc<AtomicUsize>,
    blocked: Arc<AtomicBool>,
    flushes: Arc<Semaphore>,
    pending: Batch,
    pending_items: usize,
    /// Callers waiting for the outcome of `pending` (`wait_for_downstream`).
    pending_waiters: Vec<Waiter>,
    /// Batches downstream refused (retryably), oldest first.
    retry: VecDeque<Batch>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    results_tx: mpsc::Sender<Outcome>,
    results_rx: mpsc::Receiver<Outcome>,
}

/// The outcome of one chunk sent downstream; `waited` when callers were told it directly
/// (a refusal is then theirs to retry, not redelivered here).
struct Outcome {
    items: usize,
    result: ConsumeResult,
    waited: bool,
}

impl Run {
    fn new(
        cfg: Limits,
        signal: Signal,
        next: DynConsumer,
        stats: Stats,
        buffered: Arc<AtomicUsize>,
        blocked: Arc<AtomicBool>,
    ) -> Self {
        let (results_tx, results_rx) = mpsc::channel(MAX_CONCURRENT_FLUSHES);
        Run {
            cfg,
            signal,
            next,
            stats,
            buffered,
            blocked,
            flushes: Arc::new(Semaphore::new(MAX_CONCURRENT_FLUSHES)),
            pending: Batch::empty(signal),
            pending_items: 0,
            pending_waiters: Vec::new(),
            retry: VecDeque::new(),
            retry_at: None,
            retry_delay: FIRST_RETRY_DELAY,
            results_tx,
            results_rx,
        }
    }

    /// Hands `batch` downstream in a task of its own; the outcome comes back on `results`, and
    /// to `waiters` (the first failure of its chunks, a refusal preferred, or success).
    async fn send(&self, batch: Batch, waiters: Vec<Waiter>) {
        let Ok(permit) = self.flushes.clone().acquire_owned().await else {
            return;
        };
        let waited = !waiters.is_empty();
        let (next, results, max) = (
            self.next.clone(),
            self.results_tx.clone(),
            self.cfg.send_batch_max_size,
        );
        let send_size = self.stats.send_size.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut first: Option<ConsumeError> = None;
            for chunk in batch.split(max) {
                let n = chunk.item_count();
                if let Some(h) = &send_size {
                    h.observe(n as f64);
                }
                let result = next.consume(chunk).await;
                if let Err(e) = &result {
                    let told = match e {
                        ConsumeError::Retryable {
                            reason,
                            retry_after,
                            ..
                        } => ConsumeError::Retryable {
                            reason: reason.clone(),
                            retry_after: *retry_after,
                            returned: None,
                        },
                        p => p.clone(),
                    };
                    if first
                        .as_ref()
                        .is_none_or(|f| matches!(f, ConsumeError::Permanent(_)))
                    {
                        first = Some(told);
                    }
                }
                let _ = results
                    .send(Outcome {
                        items: n,
                        result,
                        waited,
                    })
                    .await;
            }
            let told = first.map_or(Ok(()), Err);
            for w in waiters {
                let _ = w.send(told.clone());
            }
        });
    }

    async fn flush_pending(&mut self) {
        if self.pending_items == 0 {
            return;
        }
        let batch = std::mem::replace(&mut self.pending, Batch::empty(self.signal));
        self.pending_items = 0;
        let waiters = std::mem::take(&mut self.pending_waiters);
        self.send(batch, waiters).await;
    }

    fn on_result(&mut self, o: Outcome) {
        let (n, r) = (o.items, o.result);
        match r {
            Err(ConsumeError::Retryable { reason, .. }) if o.waited => {
                // The callers were told to retry: not redelivered, or it would arrive twice.
                tracing::debug!(signal = %self.signal, items = n, %reason, "downstream refused a batch; its callers retry");
                self.stats.refused.inc_by(n as u64);
                self.buffered.fetch_sub(n, Ordering::AcqRel);
            }
            Ok(()) => {
                self.stats.outgoing.inc_by(n as u64);
                self.buffered.fetch_sub(n, Ordering::AcqRel);
                self.retry_delay = FIRST_RETRY_DELAY;
                if self.retry.is_empty() {
                    self.blocked.store(false, Ordering::Release);
                }
            }
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
                returned: Some(batch),
            }) => {
                tracing::debug!(signal = %self.signal, items = n, %reason, "downstream refused a batch; it will be redelivered");
                self.blocked.store(true, Ordering::Release);
                self.retry.push_back(*batch);
                let delay = retry_after.unwrap_or(self.retry_delay).min(MAX_RETRY_DELAY);
                self.retry_at.get_or_insert(Instant::now() + delay);
                self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(ConsumeError::Retryable {
                reason,
                returned: None,
                ..
            }) => {
                tracing::error!(signal = %self.signal, items = n, %reason, "downstream refused a batch without giving it back; dropped");
                self.stats.dropped_unreturned.inc_by(n as u64);
                self.buffered.fetch_sub(n, Ordering::AcqRel);
            }
            Err(ConsumeError::Permanent(reason)) => {
                // Dropped and counted downstream.
                tracing::debug!(signal = %self.signal, items = n, %reason, "downstream dropped a batch");
                self.buffered.fetch_sub(n, Ordering::AcqRel);
            }
        }
    }

    async fn redeliver(&mut self) {
        self.retry_at = None;
        while let Some(b) = self.retry.pop_front() {
            self.send(b, Vec::new()).await;
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = sleep_until(deadline);
            let retry_timer = sleep_until(self.retry_at);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Data(batch, waiter)) => {
                        let n = batch.item_count();
                        self.stats.incoming.inc_by(n as u64);
                        if n == 0 || self.pending.append(batch).is_err() {
                            self.buffered.fetch_sub(n, Ordering::AcqRel);
                            if let Some(w) = waiter {
                                let _ = w.send(Ok(()));
                            }
                            continue;
                        }
                        self.pending_items += n;
                        self.pending_waiters.extend(waiter);
                        let size_reached = self.cfg.send_batch_size > 0 && self.pending_items >= self.cfg.send_batch_size;
                        if size_reached || self.cfg.timeout.is_zero() {
                            if size_reached {
                                self.stats.size_trigger.inc();
                            }
                            self.flush_pending().await;
                            deadline = None;
                        } else if deadline.is_none() {
                            deadline = Some(Instant::now() + self.cfg.timeout);
                        }
                    }
                    Some(Msg::Shutdown(until, done)) => {
                        rx.close();
                        while let Ok(Msg::Data(b, w)) = rx.try_recv() {
                            self.pending_items += b.item_count();
                            let _ = self.pending.append(b);
                            self.pending_waiters.extend(w);
                        }
                        self.drain(until).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                Some(o) = self.results_rx.recv() => self.on_result(o),
                _ = timer => {
                    self.stats.timeout_trigger.inc();
                    deadline = None;
                    self.flush_pending().await;
                }
                _ = retry_timer => self.redeliver().await,
            }
        }
    }

    /// At shutdown: deliver everything held, redelivering refused batches until `until`; what is
    /// still held then is dropped and counted.
    async fn drain(&mut self, until: Instant) {
        self.flush_pending().await;
        loop {
            let idle = self.flushes.available_permits() == MAX_CONCURRENT_FLUSHES
                && self.results_rx.is_empty();
            if idle && self.retry.is_empty() {
                return;
            }
            let retry_timer = sleep_until(self.retry_at);
            tokio::select! {
                Some(o) = self.results_rx.recv() => self.on_result(o),
                _ = retry_timer => self.redeliver().await,
                _ = tokio::time::sleep_until(until) => {
                    let left = self.buffered.swap(0, Ordering::AcqRel);
                    if left > 0 {
                        self.stats.dropped_shutdown.inc_by(left as u64);
                        tracing::error!(signal = %self.signal, items = left, "shutdown deadline passed: batched items dropped");
                    }
                    return;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::testdata;
    use std::sync::Mutex;

    /// Records item counts; refuses (giving the batch back) while `refuse` is set.
    #[derive(Default)]
    struct Sink {
        got: Mutex<Vec<usize>>,
        refuse: AtomicBool,
    }
    impl Consumer for Sink {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            if self.refuse.load(Ordering::SeqCst) {
                return Box::pin(async move { Err(ConsumeError::refuse("queue full", batch)) });
            }
            self.got.lock().unwrap().push(batch.item_count());
            Box::pin(async { Ok(()) })
        }
    }

    fn cfg(size: usize, max: usize, timeout_ms: u64) -> Limits {
        Limits {
            wait_for_downstream: false,
            timeout: Duration::from_millis(timeout_ms),
            send_batch_size: size,
            send_batch_max_size: max,
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledges_at_once_then_merges_by_size_and_splits_by_max() {
        let sink = Arc::new(Sink::default());
        let b = Batcher::start(
            cfg(10, 12, 10_000),
            Signal::Traces,
            sink.clone(),
            Stats::default(),
        );
        for _ in 0..3 {
            // Returns before anything is sent: acknowledgement on buffering.
            b.consume(testdata::spans("a", 1, 4)).await.unwrap();
        }
        settle().await;
        // 4 + 4 + 4 = 12 pending >= 10: one flush of 12 items, within the max of 12.
        assert_eq!(*sink.got.lock().unwrap(), vec![12]);
        b.consume(testdata::spans("a", 2, 15)).await.unwrap();
        settle().await;
        assert_eq!(sink.got.lock().unwrap()[1..], [12, 12, 6]);
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
        b.consume(testdata::logs(3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(sink.got.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(60)).await;
        settle().await;
        assert_eq!(*sink.got.lock().unwrap(), vec![3]);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_batches_are_kept_and_redelivered_and_the_buffer_is_bounded() {
        let sink = Arc::new(Sink::default());
        sink.refuse.store(true, Ordering::SeqCst);
        let c = cfg(1024, 0, 60_000);
        let max = Batcher::max_buffered(&c);
        let b = Batcher::start(c, Signal::Logs, sink.clone(), Stats::default());
        // Without timer flushes, the buffer fills to its bound, then refuses.
        let mut accepted = 0;
        loop {
            match b.consume(testdata::logs(512)).await {
                Ok(()) => accepted += 512,
                Err(ConsumeError::Retryable {
                    returned: Some(back),
                    ..
                }) => {
                    assert_eq!(back.item_count(), 512, "the refused batch comes back whole");
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(accepted, max);
        // Once a flush is refused downstream, new data is refused at once, even small.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(
            b.consume(testdata::logs(1)).await,
            Err(ConsumeError::Retryable {
                returned: Some(_),
                ..
            })
        ));
        // Downstream recovers: everything acknowledged arrives, nothing twice.
        sink.refuse.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sink.got.lock().unwrap().iter().sum::<usize>(), max);
        b.consume(testdata::logs(1)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_and_counts_what_cannot_be_delivered_by_the_deadline() {
        let sink = Arc::new(Sink::default());
        let stats = Stats::default();
        let b = Batcher::start(
            cfg(100, 0, 60_000),
            Signal::Logs,
            sink.clone(),
            stats.clone(),
        );
        b.consume(testdata::logs(5)).await.unwrap();
        b.shutdown(Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(*sink.got.lock().unwrap(), vec![5]);
        assert!(b.consume(testdata::logs(1)).await.is_err());

        let sink = Arc::new(Sink::default());
        sink.refuse.store(true, Ordering::SeqCst);
        let b = Batcher::start(
            cfg(100, 0, 60_000),
            Signal::Logs,
            sink.clone(),
            stats.clone(),
        );
        b.consume(testdata::logs(7)).await.unwrap();
        b.shutdown(Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(stats.dropped_shutdown.get(), 7);
    }

    /// In front of a durable stage, callers are answered with the outcome of the batch their
    /// data joined; a refusal goes back to them (who retry) and is not redelivered here.
    #[tokio::test(start_paused = true)]
    async fn waiting_callers_get_the_outcome_of_their_batch() {
        let sink = Arc::new(Sink::default());
        let mut c = cfg(6, 0, 10_000);
        c.wait_for_downstream = true;
        let b = Arc::new(Batcher::start(
            c,
            Signal::Traces,
            sink.clone(),
            Stats::default(),
        ));
        let b2 = b.clone();
        let first = tokio::spawn(async move { b2.consume(testdata::spans("a", 1, 3)).await });
        settle().await;
        assert!(!first.is_finished(), "answered before its batch went out");
        b.consume(testdata::spans("a", 1, 3)).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(*sink.got.lock().unwrap(), vec![6]);

        sink.refuse.store(true, Ordering::SeqCst);
        let r = b.consume(testdata::spans("a", 1, 6)).await;
        assert!(
            matches!(r, Err(ConsumeError::Retryable { returned: None, .. })),
            "{r:?}"
        );
        sink.refuse.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(
            *sink.got.lock().unwrap(),
            vec![6],
            "a refusal told to the callers is not redelivered as well"
        );
        // The timeout flushes a partial batch and answers its caller.
        b.consume(testdata::spans("a", 1, 1)).await.unwrap();
        assert_eq!(*sink.got.lock().unwrap(), vec![6, 1]);
    }
}
