//! What every connector needs: its input decoded, and a counter of what it drops.

use crate::component::{ConsumeError, Context};
use crate::signal::{Batch, Signal};

/// `batch` decoded (a pipeline without processors hands a request on as it arrived).
pub fn decoded(batch: Batch, id: &str) -> Result<Batch, ConsumeError> {
    match batch {
        Batch::Encoded(_) => batch
            .into_decoded()
            .map_err(|e| ConsumeError::Permanent(format!("{id}: {e}"))),
        b => Ok(b),
    }
}

/// The connector's `otelcol_processor_dropped_items{reason}` series for `signal`.
pub fn dropped(
    ctx: &Context,
    signal: Signal,
    reason: &str,
) -> prometheus_client::metrics::counter::Counter {
    ctx.telemetry
        .processor_dropped
        .get_or_create(&crate::telemetry::ProcessorDropLabels {
            processor: ctx.id.to_string(),
            pipeline: ctx.pipeline.clone(),
            otel_signal: signal.to_string(),
            reason: reason.into(),
        })
        .clone()
}
