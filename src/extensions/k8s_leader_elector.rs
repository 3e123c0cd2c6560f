//! `k8s_leader_elector` extension: a leader election on a `coordination.k8s.io` Lease
//! ([`crate::kube::lease`]), so that receivers that read cluster-wide state (`k8s_cluster`,
//! `k8s_events`, `k8sobjects`) run on one replica of several. A receiver names it with
//! `k8s_leader_elector: <id>`; it runs while this process holds the Lease and stops when it
//! loses it. The identity is this host's name (the pod's name) with a random suffix, so two
//! collectors on one host are two candidates. Needs `get`, `create` and `update` on `leases`
//! in the lease's namespace.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::kube::{ApiSettings, AuthType};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub kube_api_qps: Option<f32>,
    /// The Lease's name (required).
    pub lease_name: String,
    /// Its namespace; default the collector's own (its service account's).
    #[serde(default)]
    pub lease_namespace: Option<String>,
    /// How long a holder's claim lasts without renewal. Default 15s.
    #[serde(default = "fifteen", deserialize_with = "units::duration")]
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it steps down. Default 10s.
    #[serde(default = "ten", deserialize_with = "units::duration")]
    pub renew_deadline: Duration,
    /// How often candidates try. Default 2s.
    #[serde(default = "two", deserialize_with = "units::duration")]
    pub retry_period: Duration,
}

fn fifteen() -> Duration {
    Duration::from_secs(15)
}

fn ten() -> Duration {
    Duration::from_secs(10)
}

fn two() -> Duration {
    Duration::from_secs(2)
}

pub const FACTORY: Factory = Factory::extension("k8s_leader_elector", Stability::Alpha, parse)
    .aliases(&["k8sleaderelector"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.lease_name.is_empty() {
        return Err(key_err(node, &["lease_name"], "must not be empty"));
    }
    if cfg.lease_duration.as_secs() < 1 {
        return Err(key_err(node, &["lease_duration"], "must be at least 1s"));
    }
    if cfg.renew_deadline >= cfg.lease_duration {
        return Err(key_err(
            node,
            &["renew_deadline"],
            "must be shorter than lease_duration",
        ));
    }
    if cfg.retry_period.is_zero() || cfg.retry_period >= cfg.renew_deadline {
        return Err(key_err(
            node,
            &["retry_period"],
            "must be more than 0 and shorter than renew_deadline",
        ));
    }
    crate::kube::api_auth(node, &[], cfg.auth_type)?;
    Ok(Box::new(cfg))
}

impl ExtensionConfig for Config {
    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let err = |e: String| BuildError::new(&ctx.id, e);
            let (api, client) = ApiSettings::inline(self.auth_type, &self.context)
                .client()
                .map_err(err)?;
            let namespace = match &self.lease_namespace {
                Some(ns) => ns.clone(),
                None => crate::kube::own_namespace()
                    .map_err(|e| err(format!("lease_namespace is not set and {e}")))?,
            };
            let host = crate::net::dns::hostname().unwrap_or_else(|_| "ferrotel".into());
            let identity = format!("{host}_{:016x}", rand::random::<u64>());
            let election = crate::kube::lease::Election {
                namespace,
                name: self.lease_name.clone(),
                identity,
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            };
            let (tx, rx) = tokio::sync::watch::channel(false);
            ctx.leaders.register(ctx.id.clone(), rx);
            let stop = CancellationToken::new();
            let task = tokio::spawn(crate::kube::lease::run(
                client,
                api,
                election,
                tx,
                stop.clone(),
            ));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn defaults_and_checks() {
        let n = yaml("auth_type: serviceAccount\nlease_name: k8s.cluster.receiver.opentelemetry.io\nlease_namespace: default\n").unwrap();
        let cfg: Config = from_node(&n).unwrap();
        assert_eq!(cfg.lease_duration, Duration::from_secs(15));
        assert_eq!(cfg.renew_deadline, Duration::from_secs(10));
        assert_eq!(cfg.retry_period, Duration::from_secs(2));
        parse(&n).unwrap();
        let e = parse(&yaml("lease_name: x\nrenew_deadline: 20s\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "renew_deadline");
        let e = parse(&yaml("lease_namespace: x\n").unwrap()).err().unwrap();
        assert!(e.to_string().contains("lease_name"), "{e}");
    }
}
