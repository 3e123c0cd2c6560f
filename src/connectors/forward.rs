//! `forward` connector: hands everything from one pipeline to the pipelines of the same signal
//! that list it as a receiver, unchanged (a shared front part of several pipelines, or several
//! front parts merged into one).

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConnectorConfig, ConsumeResult, Consumer, Context, Downstream,
    DynConsumer, Exporter, Factory, FanOut, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::signal::{Batch, Signal};

pub const FACTORY: Factory = Factory::connector(
    "forward",
    crate::signal::ALL_SIGNALS,
    &[
        (Signal::Traces, Signal::Traces),
        (Signal::Metrics, Signal::Metrics),
        (Signal::Logs, Signal::Logs),
    ],
    Stability::Beta,
    parse,
);

/// `forward` has no options.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(node: &Node) -> Result<Box<dyn ConnectorConfig>, DeError> {
    let cfg: Option<Config> = if node.is_null() {
        None
    } else {
        Some(from_node(node)?)
    };
    Ok(Box::new(cfg.unwrap_or_default()))
}

impl ConnectorConfig for Config {
    fn build(
        &self,
        _ctx: Context,
        _from: Signal,
        _to: Signal,
        next: Vec<Downstream>,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        Ok(Arc::new(Forward {
            next: FanOut::build(next.into_iter().map(|d| d.head).collect()),
        }))
    }
}

struct Forward {
    next: DynConsumer,
}

impl Consumer for Forward {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        // The downstream pipelines' answer is this pipeline's: backpressure passes through.
        self.next.consume(batch)
    }

    fn durable(&self) -> bool {
        self.next.durable()
    }
}

impl Lifecycle for Forward {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
