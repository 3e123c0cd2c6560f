pub mod attributes;
pub mod batch;
pub mod cumulativetodelta;
pub mod deltatocumulative;
pub mod filter;
pub mod groupbyattrs;
pub mod groupbytrace;
pub mod k8sattributes;
pub mod matcher;
pub mod memory_limiter;
pub mod metricstransform;
pub mod probabilistic_sampler;
pub mod redaction;
pub mod resource;
pub mod resourcedetection;
pub mod tail_sampling;
pub mod transform;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::component::{
    BoxFuture, ConsumeError, ConsumeResult, Consumer, Context, DynConsumer, Lifecycle, Processor,
};
use crate::signal::{Batch, Signal};
use crate::telemetry::{ProcessorDropLabels, ProcessorLabels};

/// What a processor that edits batches in place does to one decoded batch: change items, drop
/// some (the wrapper counts what went missing), or refuse the batch for good.
pub trait Transform: Send + Sync + 'static {
    fn apply(&self, batch: &mut Batch) -> Result<(), String>;
}

/// The shared shell of in-place processors: decodes, counts incoming, outgoing and dropped
/// items (`otelcol_processor_*`), forwards what is left, and forwards nothing when nothing is.
pub struct InPlace<T> {
    id: String,
    transform: T,
    next: DynConsumer,
    incoming: Counter,
    outgoing: Counter,
    dropped: Counter,
}

impl<T: Transform> InPlace<T> {
    /// `reason` labels the dropped items (`filtered`, `sampled`, ...).
    pub fn build(
        ctx: &Context,
        signal: Signal,
        next: DynConsumer,
        transform: T,
        reason: &str,
    ) -> Arc<dyn Processor> {
        let t = &ctx.telemetry;
        let labels = ProcessorLabels {
            processor: ctx.id.to_string(),
            pipeline: ctx.pipeline.clone(),
            otel_signal: signal.to_string(),
        };
        Arc::new(InPlace {
            id: ctx.id.to_string(),
            transform,
            next,
            incoming: t.processor_incoming.get_or_create(&labels).clone(),
            outgoing: t.processor_outgoing.get_or_create(&labels).clone(),
            dropped: t
                .processor_dropped
                .get_or_create(&ProcessorDropLabels {
                    processor: ctx.id.to_string(),
                    pipeline: ctx.pipeline.clone(),
                    otel_signal: signal.to_string(),
                    reason: reason.into(),
                })
                .clone(),
        })
    }
}

impl<T: Transform> Consumer for InPlace<T> {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let before = batch.item_count() as u64;
            self.incoming.inc_by(before);
            let mut batch = match batch.into_decoded() {
                Ok(b) => b,
                Err(e) => {
                    self.dropped.inc_by(before);
                    return Err(ConsumeError::Permanent(format!("{}: {e}", self.id)));
                }
            };
            if let Err(msg) = self.transform.apply(&mut batch) {
                self.dropped.inc_by(before);
                tracing::warn!(processor = %self.id, error = %msg, items = before, "batch dropped");
                return Err(ConsumeError::Permanent(format!("{}: {msg}", self.id)));
            }
            let after = batch.item_count() as u64;
            self.dropped.inc_by(before.saturating_sub(after));
            self.outgoing.inc_by(after);
            if after == 0 {
                return Ok(());
            }
            self.next.consume(batch).await
        })
    }
}

impl<T: Transform> Lifecycle for InPlace<T> {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Drops the scopes and resources left empty once items were removed.
pub fn prune(batch: &mut Batch) {
    match batch {
        Batch::Traces(rs) => {
            for r in rs.iter_mut() {
                r.scope_spans.retain(|s| !s.spans.is_empty());
            }
            rs.retain(|r| !r.scope_spans.is_empty());
        }
        Batch::Metrics(rm) => {
            for r in rm.iter_mut() {
                for s in &mut r.scope_metrics {
                    s.metrics.retain(|m| {
                        m.data
                            .as_ref()
                            .is_some_and(|d| crate::signal::data_point_count(d) > 0)
                    });
                }
                r.scope_metrics.retain(|s| !s.metrics.is_empty());
            }
            rm.retain(|r| !r.scope_metrics.is_empty());
        }
        Batch::Logs(rl) => {
            for r in rl.iter_mut() {
                r.scope_logs.retain(|s| !s.log_records.is_empty());
            }
            rl.retain(|r| !r.scope_logs.is_empty());
        }
        Batch::Encoded(_) => {}
    }
}
