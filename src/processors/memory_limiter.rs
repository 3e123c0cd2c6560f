//! `memory_limiter` processor: measures the process's resident memory every `check_interval`;
//! above the soft limit (`limit - spike_limit`) it refuses data with a retryable error, so
//! receivers tell clients to back off instead of the collector running out of memory. Its limits
//! also set the process's admission budget ([`crate::admission`]): receivers reserve each
//! request's decoded size under the hard limit before decoding it, and refuse a request larger
//! than the spike allowance.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConsumeError, ConsumeResult, Consumer, Context, DynConsumer, Factory,
    Lifecycle, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node, units};
use crate::signal::{Batch, Signal};
use crate::telemetry::ProcessorLabels;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How often memory is measured. Required, > 0 (the Collector's examples use 1s).
    #[serde(deserialize_with = "units::duration")]
    pub check_interval: Duration,
    /// Hard limit in MiB. Either this or `limit_percentage` is required.
    pub limit_mib: u64,
    /// Headroom below the hard limit where refusing starts. Default 20% of the limit.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the memory available (cgroup limit, else total RAM).
    pub limit_percentage: u64,
    /// Spike headroom as a percentage of the available memory.
    pub spike_limit_percentage: u64,
    /// The Go heap ballast of old Collectors; it has no meaning here and is ignored (warns).
    pub ballast_size_mib: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub hard: u64,
    pub soft: u64,
}

fn err(node: &Node, key: &str, msg: String) -> DeError {
    DeError {
        pos: node.get(key).map(|n| n.pos).or(Some(node.pos)),
        path: vec![key.into()],
        msg,
    }
}

impl Config {
    /// Limits in bytes, given the memory available to the process.
    pub fn limits(&self, available: u64) -> Limits {
        let (hard, spike) = if self.limit_mib > 0 {
            let hard = self.limit_mib * MIB;
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib * MIB
            } else {
                hard / 5
            };
            (hard, spike)
        } else {
            let hard = available / 100 * self.limit_percentage;
            (hard, available / 100 * self.spike_limit_percentage)
        };
        Limits {
            hard,
            soft: hard.saturating_sub(spike),
        }
    }
}

/// `memory_limiter`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "memory_limiter",
    crate::signal::ALL_SIGNALS,
    Stability::Beta,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.ballast_size_mib.is_some() {
        crate::config::warn_key(
            node,
            &["ballast_size_mib"],
            "deprecated and ignored: a Go heap ballast has no meaning in ferrotel (the Collector \
             removed it too; remove the key)",
        );
    }
    if cfg.check_interval.is_zero() {
        return Err(err(
            node,
            "check_interval",
            "must be greater than zero, e.g. 1s".into(),
        ));
    }
    match (cfg.limit_mib > 0, cfg.limit_percentage > 0) {
        (false, false) => {
            return Err(err(
                node,
                "limit_mib",
                "set limit_mib or limit_percentage".into(),
            ));
        }
        (true, true) => {
            return Err(err(
                node,
                "limit_percentage",
                "set either limit_mib or limit_percentage, not both".into(),
            ));
        }
        _ => {}
    }
    if cfg.limit_mib > 0 && cfg.spike_limit_mib >= cfg.limit_mib {
        return Err(err(
            node,
            "spike_limit_mib",
            format!("must be below limit_mib ({})", cfg.limit_mib),
        ));
    }
    if cfg.limit_percentage > 100 {
        return Err(err(node, "limit_percentage", "must be at most 100".into()));
    }
    if cfg.limit_percentage > 0 && cfg.spike_limit_percentage >= cfg.limit_percentage {
        return Err(err(
            node,
            "spike_limit_percentage",
            format!("must be below limit_percentage ({})", cfg.limit_percentage),
        ));
    }
    Ok(Box::new(Shared {
        cfg,
        state: OnceLock::new(),
    }))
}

/// Memory available to this process: the cgroup limit when there is one, else physical RAM.
pub fn available_memory() -> u64 {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
                .map(|kb| kb * 1024)
        })
        .unwrap_or(u64::MAX);
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    match cgroup {
        Some(c) if c < total => c,
        _ => total,
    }
}

/// One measuring task per `memory_limiter` id, shared by the pipelines that list it, as the
/// limit is about the whole process.
struct State {
    refusing: AtomicBool,
    last_rss: AtomicU64,
}

struct Shared {
    cfg: Config,
    state: OnceLock<Arc<State>>,
}

impl Shared {
    fn state(&self, ctx: &Context) -> Arc<State> {
        self.state
            .get_or_init(|| {
                let limits = self.cfg.limits(available_memory());
                tracing::info!(
                    processor = %ctx.id,
                    hard_limit_mib = limits.hard / MIB,
                    soft_limit_mib = limits.soft / MIB,
                    "memory limiter"
                );
                let st = Arc::new(State {
                    refusing: AtomicBool::new(false),
                    last_rss: AtomicU64::new(0),
                });
                // Receivers reserve a request's decoded size against these limits before
                // decoding it (see `admission`): one request cannot outrun the measurements.
                ctx.memory
                    .limit(limits.hard, limits.hard.saturating_sub(limits.soft));
                spawn_checker(
                    st.clone(),
                    limits,
                    self.cfg.check_interval,
                    ctx.clone(),
                    crate::telemetry::rss_bytes,
                );
                st
            })
            .clone()
    }
}

fn spawn_checker(
    st: Arc<State>,
    limits: Limits,
    every: Duration,
    ctx: Context,
    measure: fn() -> u64,
) {
    let budget = ctx.memory.clone();
    let check = move |st: &State| {
        let mut rss = measure();
        // Above the soft limit, first hand freed memory back (the Collector runs the GC here):
        // what counts is what is in use, not what the allocator kept.
        if rss >= limits.soft && crate::admission::release_free_memory() {
            rss = measure();
        }
        st.last_rss.store(rss, Ordering::Relaxed);
        budget.sampled(rss);
        let refuse = rss >= limits.soft;
        let was = st.refusing.swap(refuse, Ordering::Relaxed);
        if refuse && !was {
            tracing::warn!(processor = %ctx.id, rss_mib = rss / MIB, soft_limit_mib = limits.soft / MIB,
                hard = rss >= limits.hard, "memory usage above the soft limit: refusing data");
        } else if !refuse && was {
            tracing::info!(processor = %ctx.id, rss_mib = rss / MIB, "memory usage back below the soft limit: accepting data");
        }
    };
    check(&st);
    let stop = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => check(&st),
            }
        }
    });
}

impl ProcessorConfig for Shared {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let labels = ProcessorLabels {
            processor: ctx.id.to_string(),
            pipeline: ctx.pipeline.clone(),
            otel_signal: signal.to_string(),
        };
        Ok(Arc::new(Limiter {
            state: self.state(&ctx),
            next,
            refused: ctx
                .telemetry
                .processor_refused
                .get_or_create(&labels)
                .clone(),
            passed: ctx
                .telemetry
                .processor_outgoing
                .get_or_create(&labels)
                .clone(),
        }))
    }
}

struct Limiter {
    state: Arc<State>,
    next: DynConsumer,
    refused: prometheus_client::metrics::counter::Counter,
    passed: prometheus_client::metrics::counter::Counter,
}

impl Consumer for Limiter {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        if self.state.refusing.load(Ordering::Relaxed) {
            self.refused.inc_by(batch.item_count() as u64);
            let rss = self.state.last_rss.load(Ordering::Relaxed) / MIB;
            return Box::pin(async move {
                Err(ConsumeError::refuse(
                    format!("data refused due to high memory usage ({rss} MiB resident)"),
                    batch,
                ))
            });
        }
        self.passed.inc_by(batch.item_count() as u64);
        self.next.consume(batch)
    }
}

impl Lifecycle for Limiter {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata;

    #[test]
    fn limits_from_mib_and_percentages() {
        let c = Config {
            limit_mib: 1000,
            spike_limit_mib: 200,
            ..Default::default()
        };
        assert_eq!(
            c.limits(0),
            Limits {
                hard: 1000 * MIB,
                soft: 800 * MIB
            }
        );
        let c = Config {
            limit_mib: 500,
            ..Default::default()
        };
        assert_eq!(c.limits(0).soft, 400 * MIB);
        let c = Config {
            limit_percentage: 80,
            spike_limit_percentage: 25,
            ..Default::default()
        };
        assert_eq!(
            c.limits(1000 * MIB),
            Limits {
                hard: 800 * MIB,
                soft: 550 * MIB
            }
        );
    }

    #[test]
    fn validation() {
        let e = |s: &str| parse(&yaml(s).unwrap()).err().unwrap();
        assert_eq!(e("limit_mib: 100\n").path_string(), "check_interval");
        assert!(
            e("check_interval: 1s\n")
                .msg
                .contains("limit_mib or limit_percentage")
        );
        assert_eq!(
            e("check_interval: 1s\nlimit_mib: 100\nspike_limit_mib: 100\n")
                .pos
                .unwrap()
                .line,
            3
        );
        assert!(
            e("check_interval: 1s\nlimit_percentage: 80\nspike_limit_percentage: 90\n")
                .msg
                .contains("below")
        );
        assert!(
            parse(
                &yaml("check_interval: 5s\nlimit_percentage: 80\nspike_limit_percentage: 25\n")
                    .unwrap()
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn refuses_with_a_retryable_error_above_the_soft_limit() {
        struct Ok_;
        impl Consumer for Ok_ {
            fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
                Box::pin(async { Ok(()) })
            }
        }
        let st = Arc::new(State {
            refusing: AtomicBool::new(false),
            last_rss: AtomicU64::new(0),
        });
        let ctx = crate::component::Context::standalone("memory_limiter");
        // 1 MiB hard limit: any real process is above it.
        spawn_checker(
            st.clone(),
            Limits {
                hard: MIB,
                soft: MIB / 2,
            },
            Duration::from_secs(3600),
            ctx.clone(),
            crate::telemetry::rss_bytes,
        );
        let l = Limiter {
            state: st.clone(),
            next: Arc::new(Ok_),
            refused: Default::default(),
            passed: Default::default(),
        };
        match l.consume(testdata::logs(3)).await {
            Err(ConsumeError::Retryable { reason, .. }) => {
                assert!(reason.contains("high memory usage"))
            }
            other => panic!("expected a retryable refusal, got {other:?}"),
        }
        assert_eq!(l.refused.get(), 3);
        // Below the limit, data passes.
        st.refusing.store(false, Ordering::Relaxed);
        l.consume(testdata::logs(2)).await.unwrap();
        assert_eq!(l.passed.get(), 2);
        ctx.shutdown.cancel();
    }
}
