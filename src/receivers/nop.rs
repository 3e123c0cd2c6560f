//! `nop` receiver: takes no input. For pipelines that must exist with nothing in them yet
//! (a connector's far side, a config skeleton), as the Collector's `nop` receiver is used.

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node};

/// No settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// `nop`'s identity.
pub const FACTORY: Factory =
    Factory::receiver("nop", crate::signal::WITH_PROFILES, Stability::Beta, parse);

fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    Ok(Box::new(cfg))
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        Vec::new()
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        _consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            Ok(
                crate::component::Tasks::new(ctx.shutdown.child_token(), Vec::new())
                    as Box<dyn Lifecycle>,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn takes_no_settings() {
        assert!(parse(&yaml("{}").unwrap()).is_ok());
        assert!(parse(&yaml("endpoint: x\n").unwrap()).is_err());
    }
}
