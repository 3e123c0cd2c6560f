//! `nop` exporter: takes every batch and drops it, answering success, as the Collector's `nop`
//! exporter does (a pipeline end for tests and for data that is only wanted by a connector or
//! processor on the way). What it drops is counted in `otelcol_exporter_sent_*`: it was
//! delivered to where the config sends it.

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConsumeResult, Consumer, Context, Exporter, ExporterConfig, Factory,
    Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::signal::Batch;

/// No settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// `nop`'s identity.
pub const FACTORY: Factory =
    Factory::exporter("nop", crate::signal::WITH_PROFILES, Stability::Beta, parse);

fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    Ok(Box::new(cfg))
}

struct Nop {
    /// The exporter ledger holds: what it took (accepted) it sent.
    accepted: crate::telemetry::SignalCounters,
    sent: crate::telemetry::SignalCounters,
}

impl Consumer for Nop {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let (signal, n) = (batch.signal(), batch.item_count());
            self.accepted.add(signal, n);
            self.sent.add(signal, n);
            Ok(())
        })
    }
}

impl Lifecycle for Nop {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl ExporterConfig for Config {
    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let labels = crate::telemetry::ExporterLabels {
            exporter: ctx.id.to_string(),
        };
        Ok(Arc::new(Nop {
            accepted: ctx.telemetry.exporter_accepted.handles(&labels),
            sent: ctx.telemetry.exporter_sent.handles(&labels),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn takes_no_settings() {
        assert!(parse(&yaml("{}").unwrap()).is_ok());
        assert!(parse(&yaml("verbosity: basic\n").unwrap()).is_err());
    }
}
