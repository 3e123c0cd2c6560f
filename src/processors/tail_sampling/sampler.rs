//! The sampler: traces held until their decision, decisions remembered, spans passed on.

use super::*;
use crate::signal::split::{TraceId, split_by_trace};

pub(super) struct Held {
    pub(super) fragments: Vec<ResourceSpans>,
    pub(super) spans: usize,
}

/// Remembered decisions, oldest forgotten first.
pub(super) struct Decided {
    pub(super) map: HashMap<TraceId, bool>,
    pub(super) order: VecDeque<TraceId>,
    pub(super) cap: usize,
}

impl Decided {
    pub(super) fn insert(&mut self, id: TraceId, sampled: bool) {
        if self.map.insert(id, sampled).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

pub(super) struct State {
    pub(super) held: HashMap<TraceId, Held>,
    pub(super) order: VecDeque<(Instant, TraceId)>,
    pub(super) decided: Decided,
}

pub(super) struct Inner {
    pub(super) id: String,
    pub(super) cfg: Config,
    pub(super) policies: Vec<Policy>,
    pub(super) next: DynConsumer,
    pub(super) state: Mutex<State>,
    pub(super) sampled_out: Counter,
    pub(super) not_sampled: Counter,
    pub(super) evicted: Counter,
    pub(super) refused: Counter,
    pub(super) on_memory: Gauge,
    pub(super) decisions: Vec<[Counter; 2]>,
}

pub struct TailSampler {
    pub(super) inner: Arc<Inner>,
    pub(super) stop: CancellationToken,
    pub(super) ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TailSampler {
    pub(super) fn start(
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
        cfg: Config,
        policies: Vec<Policy>,
    ) -> Arc<dyn Processor> {
        let t = &ctx.telemetry;
        let drop = |reason: &str| {
            t.processor_dropped
                .get_or_create(&ProcessorDropLabels {
                    processor: ctx.id.to_string(),
                    pipeline: ctx.pipeline.clone(),
                    otel_signal: signal.to_string(),
                    reason: reason.into(),
                })
                .clone()
        };
        let labels = ProcessorLabels {
            processor: ctx.id.to_string(),
            pipeline: ctx.pipeline.clone(),
            otel_signal: signal.to_string(),
        };
        let decisions = policies
            .iter()
            .map(|p| {
                ["true", "false"].map(|s| {
                    t.tail_sampling_decisions
                        .get_or_create(&PolicyLabels {
                            processor: ctx.id.to_string(),
                            policy: p.name.clone(),
                            sampled: s.into(),
                        })
                        .clone()
                })
            })
            .collect();
        let cap = cfg.num_traces;
        let decided_cap = cfg
            .decision_cache
            .as_ref()
            .map(|d| d.sampled_cache_size.max(d.non_sampled_cache_size))
            .filter(|c| *c > 0)
            .unwrap_or(cap);
        let inner = Arc::new(Inner {
            id: ctx.id.to_string(),
            policies,
            next,
            state: Mutex::new(State {
                // A hint only: past 64k the map grows as traces come (a huge
                // `expected_new_traces_per_sec` once allocated gigabytes at start).
                held: HashMap::with_capacity(cfg.expected_new_traces_per_sec.min(cap).min(1 << 16)),
                order: VecDeque::new(),
                decided: Decided {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    cap: decided_cap,
                },
            }),
            sampled_out: t.processor_outgoing.get_or_create(&labels).clone(),
            not_sampled: drop("sampled"),
            evicted: drop("evicted"),
            refused: drop("refused"),
            on_memory: t.tail_sampling_traces.get_or_create(&labels).clone(),
            decisions,
            cfg,
        });
        let stop = CancellationToken::new();
        let tick =
            (inner.cfg.decision_wait / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let (i2, s2) = (inner.clone(), stop.clone());
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = s2.cancelled() => return,
                    _ = every.tick() => i2.decide_due(Instant::now()).await,
                }
            }
        });
        Arc::new(TailSampler {
            inner,
            stop,
            ticker: Mutex::new(Some(ticker)),
        })
    }
}

impl Inner {
    /// Decides one trace as the Collector does: a `drop` match drops it; else an inverted
    /// policy that did not match (`invert_match`) vetoes it; else any policy sampling it keeps
    /// it; else an inverted match keeps it when no policy said no.
    pub(super) fn decide(&self, id: &TraceId, t: &Held) -> bool {
        let (mut sampled, mut not_sampled, mut invert_sampled, mut veto) =
            (false, false, false, false);
        for (p, counters) in self.policies.iter().zip(&self.decisions) {
            let d = p.evaluate(id, t);
            let yes = matches!(d, Decision::Sampled | Decision::InvertSampled);
            counters[usize::from(!yes)].inc();
            match d {
                Decision::Dropped => return false,
                Decision::Sampled => sampled = true,
                Decision::NotSampled => not_sampled = true,
                Decision::InvertSampled => invert_sampled = true,
                Decision::InvertNotSampled => veto = true,
            }
            if self.cfg.sample_on_first_match && d == Decision::Sampled {
                break;
            }
        }
        !veto && (sampled || (invert_sampled && !not_sampled))
    }

    /// Decides every trace whose wait is over (all of them with `now` far enough ahead).
    pub(super) async fn decide_due(&self, now: Instant) {
        let due: Vec<(TraceId, Held)> = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            while let Some((arrived, _)) = st.order.front() {
                if *arrived + self.cfg.decision_wait > now {
                    break;
                }
                let Some((_, id)) = st.order.pop_front() else {
                    break;
                };
                if let Some(t) = st.held.remove(&id) {
                    due.push((id, t));
                }
            }
            self.on_memory.set(st.held.len() as i64);
            due
        };
        if due.is_empty() {
            return;
        }
        let mut out: Vec<ResourceSpans> = Vec::new();
        let mut verdicts = Vec::with_capacity(due.len());
        for (id, t) in due {
            let keep = self.decide(&id, &t);
            verdicts.push((id, keep));
            if keep {
                out.extend(t.fragments);
            } else {
                self.not_sampled.inc_by(t.spans as u64);
            }
        }
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for (id, keep) in verdicts {
                st.decided.insert(id, keep);
            }
        }
        if !out.is_empty() {
            self.forward(Batch::Traces(out)).await;
        }
    }

    /// Passes sampled spans on; a retryable refusal is retried a few times, then counted.
    pub(super) async fn forward(&self, batch: Batch) {
        let mut batch = batch;
        for attempt in 0..5u32 {
            let n = batch.item_count() as u64;
            match self.next.consume(batch).await {
                Ok(()) => {
                    self.sampled_out.inc_by(n);
                    return;
                }
                Err(ConsumeError::Retryable {
                    returned: Some(b),
                    reason,
                    ..
                }) => {
                    tracing::debug!(processor = %self.id, %reason, attempt, "sampled traces refused; retrying");
                    batch = *b;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    self.refused.inc_by(n);
                    tracing::warn!(processor = %self.id, error = %e, spans = n, "sampled traces dropped");
                    return;
                }
            }
        }
        let n = batch.item_count() as u64;
        self.refused.inc_by(n);
        tracing::warn!(processor = %self.id, spans = n, "sampled traces dropped after retries");
    }
}

impl Consumer for TailSampler {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let inner = &self.inner;
            let Batch::Traces(resources) = batch
                .into_decoded()
                .map_err(|e| ConsumeError::Permanent(format!("{}: {e}", inner.id)))?
            else {
                return Err(ConsumeError::Permanent(format!(
                    "{}: tail_sampling takes traces only",
                    inner.id
                )));
            };
            let mut frags = Vec::new();
            for rs in resources {
                split_by_trace(rs, &mut frags);
            }
            let now = Instant::now();
            let mut late = Vec::new();
            {
                let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
                for (id, frag) in frags {
                    let n: usize = frag.scope_spans.iter().map(|s| s.spans.len()).sum();
                    if let Some(&keep) = st.decided.map.get(&id) {
                        if keep {
                            late.push(frag);
                        } else {
                            inner.not_sampled.inc_by(n as u64);
                        }
                        continue;
                    }
                    if let Some(t) = st.held.get_mut(&id) {
                        t.fragments.push(frag);
                        t.spans += n;
                        continue;
                    }
                    st.held.insert(
                        id,
                        Held {
                            fragments: vec![frag],
                            spans: n,
                        },
                    );
                    st.order.push_back((now, id));
                    // Bounded: past `num_traces`, the oldest undecided trace is dropped.
                    while st.held.len() > inner.cfg.num_traces {
                        let Some((_, old)) = st.order.pop_front() else {
                            break;
                        };
                        if let Some(t) = st.held.remove(&old) {
                            inner.evicted.inc_by(t.spans as u64);
                            st.decided.insert(old, false);
                        }
                    }
                }
                inner.on_memory.set(st.held.len() as i64);
            }
            if !late.is_empty() {
                let b = Batch::Traces(late);
                let n = b.item_count() as u64;
                inner.next.consume(b).await?;
                inner.sampled_out.inc_by(n);
            }
            Ok(())
        })
    }
}

impl Lifecycle for TailSampler {
    fn shutdown(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let ticker = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = ticker {
                let _ = t.await;
            }
            // Decide what is still held now rather than lose it.
            let far = Instant::now() + self.inner.cfg.decision_wait + Duration::from_secs(1);
            if tokio::time::timeout_at(deadline, self.inner.decide_due(far))
                .await
                .is_err()
            {
                tracing::warn!(processor = %self.inner.id, "shutdown deadline passed while passing on sampled traces");
            }
        })
    }
}
