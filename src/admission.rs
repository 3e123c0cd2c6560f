//! Memory admission: what a request will cost once decoded is reserved before it is spent.
//!
//! `memory_limiter` measures resident memory every `check_interval` and refuses data above its
//! soft limit, but one request can outrun it: 19 KiB of gzip inflate to 10 million empty spans,
//! 4 GB once decoded, between two measurements. So receivers ask the [`Budget`] first, with the
//! decoded size the wire scan estimated: a request is admitted only if the last measured RSS,
//! plus what admitted requests may still allocate, plus its own estimate stay under the hard
//! limit; and no single request may be larger than the spike allowance (`spike_limit_mib`), the
//! headroom the operator keeps for growth between measurements.
//!
//! A reservation lives while the request is being handed to the pipeline. When it ends, its
//! bytes count as "admitted, not yet measured" until the next RSS measurement sees them (held in
//! a queue) or not (sent and freed). When the budget looks full only because of those, it
//! measures again at once (at most every few milliseconds) before it refuses.
//!
//! Without a `memory_limiter` in the config there is no budget: only the per-request limit of
//! each receiver applies.
//!
//! Apart from that, and on by default, what the exporters' in-memory sending queues hold is
//! bounded in bytes for the whole process (`service.queue_memory_limit_mib`, default
//! [`DEFAULT_QUEUE_MEMORY_MIB`]): a queue of 1000 requests is 1000 requests of any size, so a
//! slow backend would otherwise grow the process by whatever the clients send. Beyond it a
//! queue refuses with a retryable error, which travels back to the clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It can never fit: larger than the spike allowance. Permanent for this request (an
    /// exporter splits it).
    #[error(
        "the request would take about {} MiB once decoded, more than memory_limiter's spike allowance of {} MiB; send smaller requests",
        mib(*.need), mib(*.limit)
    )]
    TooLarge { need: u64, limit: u64 },
    /// Not now: memory is in use. Retry later.
    #[error(
        "memory is in use (about {} MiB of the {} MiB limit); the request needs about {} MiB more; retry later",
        mib(*.used), mib(*.limit), mib(*.need)
    )]
    Busy { need: u64, used: u64, limit: u64 },
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

/// The process's memory budget, set by the `memory_limiter` processors of the config.
pub struct Budget {
    /// The lowest hard limit of any memory_limiter; `u64::MAX` when there is none.
    hard: AtomicU64,
    /// The lowest spike allowance; `u64::MAX` when there is none.
    spike: AtomicU64,
    rss: AtomicU64,
    /// Reserved by requests being handed to the pipeline.
    in_flight: AtomicU64,
    /// Released by requests since the last RSS measurement: maybe still held (queued), maybe
    /// freed; charged until a measurement tells.
    unmeasured: AtomicU64,
    /// When RSS was last measured, in nanoseconds since `epoch`.
    measured_at: AtomicU64,
    epoch: Instant,
    measure: fn() -> u64,
    /// The most bytes the in-memory sending queues hold together; `u64::MAX`: no bound.
    queue_limit: AtomicU64,
    /// Bytes they hold now (protobuf size of the queued requests).
    queued: AtomicU64,
}

/// The default bound of what all in-memory sending queues hold together, in MiB (declared with
/// the config key that sets it).
pub const DEFAULT_QUEUE_MEMORY_MIB: u64 = crate::config::DEFAULT_QUEUE_MEMORY_MIB;

/// Measurements made on demand are at least this far apart.
const REMEASURE_EVERY: Duration = Duration::from_millis(5);

/// Asks the allocator to return freed memory to the OS (the binary sets it: mimalloc's
/// `mi_collect`). An allocator keeps freed memory for reuse, and RSS with it: after a burst,
/// resident memory would stay above the limit and refuse data long after the data is gone. This
/// is what the Collector's memory_limiter does with the Go runtime's GC when it is above its
/// soft limit.
static RELEASE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();
/// When the allocator was last asked, in milliseconds since `START`.
static RELEASED_AT: AtomicU64 = AtomicU64::new(0);
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Sets the hook that returns freed memory to the OS (once, at start).
pub fn set_release_hook(f: fn()) {
    let _ = RELEASE.set(f);
}

/// Returns what this thread freed to the OS, unthrottled: for the end of a task that held a
/// large buffer on a thread that may then sit idle (an idle thread's allocator never purges).
pub fn release_thread_memory() {
    if let Some(f) = RELEASE.get() {
        f();
    }
}

/// Returns freed memory to the OS, at most every 100 ms; true when it did.
pub fn release_free_memory() -> bool {
    let Some(f) = RELEASE.get() else {
        return false;
    };
    let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
    let last = RELEASED_AT.load(Ordering::Acquire);
    if last != 0 && now.saturating_sub(last) < 100 {
        return false;
    }
    if RELEASED_AT
        .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    f();
    true
}

impl Budget {
    pub fn new() -> Arc<Self> {
        Self::with_measure(crate::telemetry::rss_bytes)
    }

    /// A budget that measures memory with `measure` (tests give it a fake).
    pub fn with_measure(measure: fn() -> u64) -> Arc<Self> {
        Arc::new(Budget {
            hard: AtomicU64::new(u64::MAX),
            spike: AtomicU64::new(u64::MAX),
            rss: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            unmeasured: AtomicU64::new(0),
            measured_at: AtomicU64::new(0),
            epoch: Instant::now(),
            measure,
            queue_limit: AtomicU64::new(DEFAULT_QUEUE_MEMORY_MIB << 20),
            queued: AtomicU64::new(0),
        })
    }

    /// `service.queue_memory_limit_mib`: 0 lifts the bound.
    pub fn set_queue_limit(&self, bytes: u64) {
        let bytes = if bytes == 0 { u64::MAX } else { bytes };
        self.queue_limit.store(bytes, Ordering::Release);
    }

    pub fn queue_limit(&self) -> u64 {
        self.queue_limit.load(Ordering::Acquire)
    }

    /// Bytes the in-memory sending queues hold now.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Takes `bytes` for a request entering a sending queue, or says how much is held when they
    /// do not fit. While nothing is held any request fits, so one larger than the whole bound
    /// is still delivered rather than refused forever.
    pub fn hold_queued(self: &Arc<Self>, bytes: u64) -> Result<Held, QueueFull> {
        let limit = self.queue_limit.load(Ordering::Acquire);
        let before = self.queued.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before.saturating_add(bytes) > limit {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return Err(QueueFull {
                held: before,
                limit,
            });
        }
        Ok(Held {
            budget: Some(self.clone()),
            bytes,
        })
    }

    /// A memory_limiter's limits; the lowest of all apply, as memory is the whole process's.
    pub fn limit(&self, hard: u64, spike: u64) {
        self.hard.fetch_min(hard, Ordering::AcqRel);
        self.spike.fetch_min(spike.max(1), Ordering::AcqRel);
        self.sampled(self.measure_now());
    }

    pub fn is_limited(&self) -> bool {
        self.hard.load(Ordering::Acquire) != u64::MAX
    }

    /// A fresh RSS measurement (memory_limiter's periodic one): what was admitted before it is
    /// now part of it.
    pub fn sampled(&self, rss: u64) {
        self.unmeasured.store(0, Ordering::Release);
        self.rss.store(rss, Ordering::Release);
    }

    fn measure_now(&self) -> u64 {
        let rss = (self.measure)();
        self.measured_at
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Release);
        rss
    }

    /// Reserves `bytes` for a request about to be decoded or transcoded.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, Refusal> {
        self.take(bytes, bytes)
    }

    /// Reserves `bytes` more for a request that will then hold `total` (checked against the
    /// spike allowance).
    fn take(self: &Arc<Self>, bytes: u64, total: u64) -> Result<Reservation, Refusal> {
        let hard = self.hard.load(Ordering::Acquire);
        if hard == u64::MAX {
            return Ok(Reservation {
                budget: None,
                bytes,
            });
        }
        if bytes == 0 {
            // Nothing to take: an empty reservation that can grow.
            return Ok(Reservation {
                budget: Some(self.clone()),
                bytes: 0,
            });
        }
        let spike = self.spike.load(Ordering::Acquire);
        if total > spike {
            return Err(Refusal::TooLarge {
                need: total,
                limit: spike,
            });
        }
        for attempt in 0..2 {
            // Take first, then check: concurrent requests cannot all slip under the limit.
            let before = self.in_flight.fetch_add(bytes, Ordering::AcqRel);
            let used =
                self.rss.load(Ordering::Acquire) + before + self.unmeasured.load(Ordering::Acquire);
            if used.saturating_add(bytes) <= hard {
                return Ok(Reservation {
                    budget: Some(self.clone()),
                    bytes,
                });
            }
            self.in_flight.fetch_sub(bytes, Ordering::AcqRel);
            let now = self.epoch.elapsed().as_nanos() as u64;
            let last = self.measured_at.load(Ordering::Acquire);
            let stale = now.saturating_sub(last) >= REMEASURE_EVERY.as_nanos() as u64;
            if attempt == 1 || !stale {
                return Err(Refusal::Busy {
                    need: bytes,
                    used,
                    limit: hard,
                });
            }
            release_free_memory();
            let rss = self.measure_now();
            self.sampled(rss);
        }
        unreachable!("the second attempt returns")
    }
}

/// Bytes reserved for one request; released when dropped.
pub struct Reservation {
    budget: Option<Arc<Budget>>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows the reservation to `total` bytes, under the same rules as a new one; on refusal it
    /// keeps what it had.
    pub fn grow(&mut self, total: u64) -> Result<(), Refusal> {
        if total <= self.bytes {
            return Ok(());
        }
        let Some(budget) = &self.budget else {
            self.bytes = total;
            return Ok(());
        };
        let mut more = budget.take(total - self.bytes, total)?;
        // Merged: the new part is released with this one.
        self.bytes += std::mem::take(&mut more.bytes);
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = self.budget.as_ref().filter(|_| self.bytes > 0) {
            b.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
            b.unmeasured.fetch_add(self.bytes, Ordering::AcqRel);
        }
    }
}

/// The in-memory sending queues hold their bound already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the sending queues hold {} MiB, their bound (service.queue_memory_limit_mib) is {} MiB; retry later",
    mib(*.held), mib(*.limit)
)]
pub struct QueueFull {
    pub held: u64,
    pub limit: u64,
}

/// Bytes a queued request holds of the queues' bound; given back when dropped (sent, dropped,
/// or the queue discarded).
#[derive(Default)]
pub struct Held {
    budget: Option<Arc<Budget>>,
    bytes: u64,
}

impl Held {
    /// Nothing held (a request outside any in-memory queue).
    pub fn none() -> Held {
        Held::default()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves `bytes` (at most all) of this hold into a new one: a request encoded in parts
    /// hands each part its share.
    pub fn split_off(&mut self, bytes: u64) -> Held {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Held {
            budget: self.budget.clone(),
            bytes,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(b) = self.budget.as_ref().filter(|_| self.bytes > 0) {
            b.queued.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64 as A;

    const MIB: u64 = 1 << 20;
    // One fake RSS per test: tests run in parallel.
    static RSS_A: A = A::new(0);
    static RSS_B: A = A::new(0);

    fn fake_a() -> u64 {
        RSS_A.load(Ordering::SeqCst)
    }
    fn fake_b() -> u64 {
        RSS_B.load(Ordering::SeqCst)
    }

    #[test]
    fn without_a_limiter_everything_is_admitted() {
        let b = Budget::with_measure(fake_a);
        assert!(!b.is_limited());
        assert!(b.reserve(u64::MAX / 2).is_ok());
    }

    #[test]
    fn requests_are_admitted_while_they_fit_under_the_hard_limit() {
        RSS_A.store(100 * MIB, Ordering::SeqCst);
        let b = Budget::with_measure(fake_a);
        b.limit(400 * MIB, 80 * MIB);
        // Larger than the spike allowance: never.
        assert_eq!(
            b.reserve(81 * MIB).err(),
            Some(Refusal::TooLarge {
                need: 81 * MIB,
                limit: 80 * MIB
            })
        );
        // 100 MiB resident + 3 × 80 MiB in flight = 340; a fourth would pass 400.
        let held: Vec<_> = (0..3).map(|_| b.reserve(80 * MIB).unwrap()).collect();
        let e = b.reserve(80 * MIB).err().unwrap();
        assert!(matches!(e, Refusal::Busy { .. }), "{e}");
        assert!(e.to_string().contains("retry later"), "{e}");
        // Released, not yet measured: still charged, until a measurement says it was freed.
        drop(held);
        std::thread::sleep(REMEASURE_EVERY * 2);
        let r = b.reserve(80 * MIB).unwrap();
        assert_eq!(r.bytes(), 80 * MIB);
    }

    #[test]
    fn a_reservation_grows_under_the_same_rules() {
        static RSS_C: A = A::new(0);
        let b = Budget::with_measure(|| RSS_C.load(Ordering::SeqCst));
        b.limit(100 * MIB, 30 * MIB);
        let mut r = b.reserve(0).unwrap();
        r.grow(10 * MIB).unwrap();
        r.grow(20 * MIB).unwrap();
        assert_eq!(r.bytes(), 20 * MIB);
        // The total, not the step, is held to the spike allowance.
        assert!(matches!(r.grow(31 * MIB), Err(Refusal::TooLarge { .. })));
        assert_eq!(r.bytes(), 20 * MIB);
        let others: Vec<_> = (0..3).map(|_| b.reserve(25 * MIB).unwrap()).collect();
        assert!(matches!(r.grow(30 * MIB), Err(Refusal::Busy { .. })));
        drop(others);
        drop(r);
        assert_eq!(b.in_flight.load(Ordering::SeqCst), 0);
        assert_eq!(b.unmeasured.load(Ordering::SeqCst), 95 * MIB);
    }

    #[test]
    fn memory_held_after_admission_is_seen_by_the_next_measurement() {
        let b = Budget::with_measure(fake_b);
        b.limit(100 * MIB, 60 * MIB);
        drop(b.reserve(50 * MIB).unwrap());
        // The 50 MiB are now held somewhere (a queue): RSS shows them.
        RSS_B.store(50 * MIB, Ordering::SeqCst);
        b.sampled(50 * MIB);
        assert!(b.reserve(50 * MIB).is_ok());
        assert!(matches!(b.reserve(51 * MIB), Err(Refusal::Busy { .. })));
    }

    #[test]
    fn the_queues_hold_at_most_their_bound_and_give_it_back_when_dropped() {
        let b = Budget::with_measure(fake_a);
        assert_eq!(b.queue_limit(), DEFAULT_QUEUE_MEMORY_MIB * MIB);
        b.set_queue_limit(10 * MIB);
        // Nothing held: even a request larger than the bound is taken.
        let big = b.hold_queued(12 * MIB).unwrap();
        let e = b.hold_queued(1).err().unwrap();
        assert_eq!(e.held, 12 * MIB);
        assert!(e.to_string().contains("retry later"), "{e}");
        drop(big);
        assert_eq!(b.queued_bytes(), 0);
        let mut a = b.hold_queued(6 * MIB).unwrap();
        assert!(b.hold_queued(5 * MIB).is_err(), "6 + 5 > 10");
        let part = a.split_off(2 * MIB);
        assert_eq!((a.bytes(), part.bytes()), (4 * MIB, 2 * MIB));
        drop(a);
        assert_eq!(b.queued_bytes(), 2 * MIB, "the part still holds its share");
        let c = b.hold_queued(8 * MIB).unwrap();
        drop((part, c));
        assert_eq!(b.queued_bytes(), 0);
        // 0 lifts the bound.
        b.set_queue_limit(0);
        let _x = b.hold_queued(u64::MAX / 4).unwrap();
        assert!(b.hold_queued(u64::MAX / 4).is_ok());
    }
}
