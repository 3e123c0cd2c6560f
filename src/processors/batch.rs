//! `batch` processor: groups incoming batches until `send_batch_size` items or `timeout`, and
//! splits what it sends to at most `send_batch_max_size` items.
//!
//! A batch is acknowledged once it is buffered, as in the Collector, so a client with one export
//! in flight is not slowed to one request per `timeout`. Unlike the Collector's batch processor,
//! nothing acknowledged is dropped when downstream refuses: a retryable refusal (an exporter's
//! full queue) hands the batch back, it is redelivered with backoff, and the buffer is bounded:
//! past [`Batcher::max_buffered`] items new data is refused with a retryable error, which travels
//! back to the client. Only a permanent error or the shutdown deadline drops data, counted.
//! The engine is [`crate::batcher`], shared with the exporters' `sending_queue.batch`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::batcher::{Batcher, Limits, Stats};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node, units};
use crate::signal::Signal;
use crate::telemetry::{ProcessorDropLabels, ProcessorLabels};

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

/// `batch`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::processor("batch", crate::signal::ALL_SIGNALS, Stability::Beta, parse);

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
        let id = ctx.id.to_string();
        let labels = ProcessorLabels {
            processor: id.clone(),
            pipeline: ctx.pipeline.clone(),
            otel_signal: signal.to_string(),
        };
        let t = &ctx.telemetry;
        let dropped = |reason: &str| {
            t.processor_dropped
                .get_or_create(&ProcessorDropLabels {
                    processor: id.clone(),
                    pipeline: ctx.pipeline.clone(),
                    otel_signal: signal.to_string(),
                    reason: reason.into(),
                })
                .clone()
        };
        let stats = Stats {
            incoming: t.processor_incoming.get_or_create(&labels).clone(),
            outgoing: t.processor_outgoing.get_or_create(&labels).clone(),
            refused: t.processor_refused.get_or_create(&labels).clone(),
            size_trigger: t.batch_size_trigger.get_or_create(&labels).clone(),
            timeout_trigger: t.batch_timeout_trigger.get_or_create(&labels).clone(),
            dropped_unreturned: dropped("refused_without_data"),
            dropped_shutdown: dropped("shutdown"),
            send_size: Some(t.batch_send_size.get_or_create(&labels).clone()),
        };
        // In front of a persistent queue, callers are answered once their batch is on disk.
        let mut limits = self.limits();
        limits.wait_for_downstream = ctx.durable || next.durable();
        if limits.wait_for_downstream {
            tracing::debug!(processor = %id, pipeline = %ctx.pipeline, "downstream is durable: callers are answered once their batch is persisted");
        }
        Ok(Arc::new(Batcher::start(limits, signal, next, stats)))
    }
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: self.timeout,
            send_batch_size: self.send_batch_size,
            send_batch_max_size: self.send_batch_max_size,
            wait_for_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
