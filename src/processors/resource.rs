//! `resource` processor: edits resource attributes with the `attributes` processor's actions
//! (`insert`, `update`, `upsert`, `delete`, `hash`, `extract`, `convert`), listed under
//! `attributes:`.

use std::sync::Arc;

use serde::Deserialize;

use super::attributes::{Action, ActionConfig, apply, compile_actions};
use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::key_err;
use crate::config::{DeError, Node, from_node};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub attributes: Vec<ActionConfig>,
}

#[derive(Clone)]
struct Resource {
    actions: Vec<Action>,
}

/// `resource`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "resource",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.attributes.is_empty() {
        return Err(key_err(
            node,
            &["attributes"],
            "at least one action is required",
        ));
    }
    Ok(Box::new(Resource {
        actions: compile_actions(&cfg.attributes, node, "attributes")?,
    }))
}

impl ProcessorConfig for Resource {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        Ok(InPlace::build(&ctx, signal, next, self.clone(), "filtered"))
    }
}

impl Transform for Resource {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let client = crate::client::with(|c| c.cloned());
        let edit = |r: &mut Option<opentelemetry_proto::tonic::resource::v1::Resource>| {
            let r = r.get_or_insert_with(Default::default);
            apply(&self.actions, &mut r.attributes, client.as_ref());
        };
        match batch {
            Batch::Traces(rs) => rs.iter_mut().for_each(|r| edit(&mut r.resource)),
            Batch::Metrics(rm) => rm.iter_mut().for_each(|r| edit(&mut r.resource)),
            Batch::Logs(rl) => rl.iter_mut().for_each(|r| edit(&mut r.resource)),
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata;

    #[test]
    fn edits_every_resource_and_validates() {
        let node = yaml(
            "attributes:\n  - {key: service.instance.id, from_attribute: k8s.pod.uid, action: insert}\n  - {key: env, value: prod, action: upsert}\n",
        )
        .unwrap();
        let cfg: Config = from_node(&node).unwrap();
        let r = Resource {
            actions: compile_actions(&cfg.attributes, &node, "attributes").unwrap(),
        };
        let mut b = testdata::spans("a", 1, 1);
        if let Batch::Traces(rs) = &mut b {
            rs[0]
                .resource
                .as_mut()
                .unwrap()
                .attributes
                .push(testdata::kv("k8s.pod.uid", "uid-1"));
        }
        r.apply(&mut b).unwrap();
        let Batch::Traces(rs) = &b else { panic!() };
        let attrs = &rs[0].resource.as_ref().unwrap().attributes;
        let get = |k: &str| crate::signal::value::find_kv(attrs, k).map(|kv| kv.value.clone());
        assert_eq!(
            get("service.instance.id"),
            Some(Some(testdata::kv("x", "uid-1").value.unwrap()))
        );
        assert_eq!(
            get("env"),
            Some(Some(testdata::kv("x", "prod").value.unwrap()))
        );
        let e = parse(&yaml("attributes: []\n").unwrap()).err().unwrap();
        assert_eq!(e.path_string(), "attributes");
    }
}
