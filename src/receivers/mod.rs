//! Receivers, and what they share: [`Output`], which hands a receiver's batches to its
//! pipelines and counts them.

use crate::component::{ConsumeError, Context, DynConsumer};
use crate::signal::Batch;
use crate::telemetry::{ReceiverLabels, SignalCounters};

pub mod otlp;

/// Hands decoded batches of one signal and transport to the pipelines, counting as it goes.
pub(crate) struct Output {
    consumer: DynConsumer,
    accepted: SignalCounters,
    refused: SignalCounters,
    failed: SignalCounters,
    /// The memory budget requests are admitted against before they are decoded.
    pub(crate) budget: std::sync::Arc<crate::admission::Budget>,
}

impl Output {
    pub(crate) fn new(ctx: &Context, transport: &str, consumer: DynConsumer) -> Self {
        let labels = ReceiverLabels {
            receiver: ctx.id.to_string(),
            transport: transport.into(),
        };
        Output {
            consumer,
            accepted: ctx.telemetry.receiver_accepted.handles(&labels),
            refused: ctx.telemetry.receiver_refused.handles(&labels),
            failed: ctx.telemetry.receiver_failed.handles(&labels),
            budget: ctx.memory.clone(),
        }
    }

    /// Counts items refused before they reached the pipeline (not admitted).
    pub(crate) fn refused(&self, signal: crate::signal::Signal, n: usize) {
        self.refused.add(signal, n);
    }

    pub(crate) async fn push(
        &self,
        batch: Batch,
        client: crate::client::ClientInfo,
    ) -> Result<(), ConsumeError> {
        let (signal, n) = (batch.signal(), batch.item_count());
        if n == 0 {
            return Ok(());
        }
        match crate::client::scope(client, self.consumer.consume(batch)).await {
            Ok(()) => {
                self.accepted.add(signal, n);
                Ok(())
            }
            // Backpressure is `refused` (the client retries); anything else `failed`.
            Err(e @ ConsumeError::Retryable { .. }) => {
                self.refused.add(signal, n);
                Err(e)
            }
            Err(e) => {
                self.failed.add(signal, n);
                Err(e)
            }
        }
    }
}

pub mod filelog;
pub mod hostmetrics;
pub mod k8s_cluster;
pub mod k8s_events;
pub mod k8sobjects;
pub mod kubeletstats;
pub mod prometheus;
pub mod syslog;

#[cfg(test)]
mod fuzz_tests;
