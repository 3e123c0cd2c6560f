//! `resourcedetection` processor (alias `resource_detection`): finds what the process runs on
//! once, at start, with the listed `detectors` in order, and sets it on every resource that
//! passes: `env` (`OTEL_RESOURCE_ATTRIBUTES`), `system` (host name by `hostname_sources`,
//! `os.type`, and on request `host.id`, `host.arch`, `os.description`), `docker` (the daemon's
//! host name and OS type), `ec2` (IMDSv2), `gcp` (GCE / GKE metadata server), `azure` (IMDS),
//! and in a pod `k8s_api` (alias `k8snode`), `eks`, `aks`, `openshift` ([`kubernetes`]).
//! With `override: true` (default) a detected attribute replaces the resource's own; with
//! `false` it only fills a gap. A detector that fails or finds nothing (not on that cloud) is
//! logged and skipped; the earlier detector wins when two detect the same attribute.

mod config;
mod detectors;
mod kubernetes;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use opentelemetry_proto::tonic::common::v1::KeyValue;

pub use config::{Config, DetectorConfig, Toggle};

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, warn_key};
use crate::signal::{Batch, Signal};

/// The detectors ferrotel has.
const BUILT: &[&str] = &[
    "env",
    "system",
    "docker",
    "ec2",
    "gcp",
    "azure",
    "eks",
    "aks",
    "k8s_api",
    "k8snode",
    "openshift",
];
/// The Collector's other detectors: refused by name.
const NOT_BUILT: &[&str] = &[
    "ecs",
    "elastic_beanstalk",
    "lambda",
    "heroku",
    "consul",
    "gke",
    "gce",
    "dynatrace",
    "akamai",
    "scaleway",
    "upcloud",
    "vultr",
    "hetzner",
    "oraclecloud",
    "digitalocean",
];

/// `system`'s attributes and whether the Collector enables them by default; the ones ferrotel
/// does not detect are refused when enabled.
const SYSTEM_ATTRIBUTES: &[(&str, bool, bool)] = &[
    ("host.name", true, true),
    ("os.type", true, true),
    ("host.id", false, true),
    ("host.arch", false, true),
    ("os.description", false, true),
    ("host.ip", false, true),
    ("host.mac", false, true),
    ("host.interface", false, false),
    ("os.version", false, false),
    ("host.cpu.vendor.id", false, true),
    ("host.cpu.family", false, true),
    ("host.cpu.model.id", false, true),
    ("host.cpu.model.name", false, true),
    ("host.cpu.stepping", false, true),
    ("host.cpu.cache.l2.size", false, true),
];

/// The attributes of the Kubernetes-side detectors and whether the Collector enables each by
/// default; another name under their `resource_attributes` is refused.
const K8S_API_ATTRIBUTES: &[(&str, bool)] = &[
    ("k8s.cluster.uid", true),
    ("k8s.node.name", true),
    ("k8s.node.uid", true),
];
const EKS_ATTRIBUTES: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("k8s.cluster.name", false),
    ("cloud.account.id", false),
    ("cloud.availability_zone", false),
    ("cloud.region", false),
    ("host.id", false),
    ("host.image.id", false),
    ("host.name", false),
    ("host.type", false),
];
const AKS_ATTRIBUTES: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("k8s.cluster.name", false),
];
const OPENSHIFT_ATTRIBUTES: &[(&str, bool)] = &[
    ("cloud.provider", true),
    ("cloud.platform", true),
    ("cloud.region", true),
    ("k8s.cluster.name", true),
];

/// Whether `attr` is on, by the switches or else the table's default.
fn switched_on(switches: &BTreeMap<String, Toggle>, table: &[(&str, bool)], attr: &str) -> bool {
    switches.get(attr).map_or_else(
        || table.iter().any(|(n, on)| *n == attr && *on),
        |t| t.enabled,
    )
}

fn check_switches(
    node: &Node,
    detector: &str,
    switches: &BTreeMap<String, Toggle>,
    table: &[(&str, bool)],
) -> Result<(), DeError> {
    for name in switches.keys() {
        if !table.iter().any(|(n, _)| n == name) {
            return Err(key_err(
                node,
                &[detector, "resource_attributes", name],
                format!(
                    "not an attribute of the {detector} detector; it has {}",
                    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `resourcedetection`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "resourcedetection",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
)
.aliases(&["resource_detection"]);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    for (i, d) in cfg.detectors.iter().enumerate() {
        let at = |m: String| key_err(node, &["detectors", &format!("[{i}]")], m);
        if NOT_BUILT.contains(&d.as_str()) {
            return Err(at(format!("detector `{d}` is not built in ferrotel yet")));
        }
        if !BUILT.contains(&d.as_str()) {
            return Err(at(format!(
                "unknown detector `{d}`; ferrotel has {}",
                BUILT.join(", ")
            )));
        }
    }
    for (name, t) in &cfg.system.resource_attributes {
        match SYSTEM_ATTRIBUTES.iter().find(|(n, _, _)| n == name) {
            None => {
                return Err(key_err(
                    node,
                    &["system", "resource_attributes", name],
                    "not an attribute of the system detector",
                ));
            }
            Some((_, _, false)) if t.enabled => {
                return Err(key_err(
                    node,
                    &["system", "resource_attributes", name],
                    "ferrotel does not detect this attribute yet",
                ));
            }
            _ => {}
        }
    }
    for (i, s) in cfg.system.hostname_sources.iter().enumerate() {
        if !matches!(s.as_str(), "dns" | "os" | "cname" | "lookup") {
            return Err(key_err(
                node,
                &["system", "hostname_sources", &format!("[{i}]")],
                format!("{s:?}: expected dns, os, cname or lookup"),
            ));
        }
    }
    let k8s_key = if cfg.k8snode.is_some() {
        "k8snode"
    } else {
        "k8s_api"
    };
    check_switches(
        node,
        k8s_key,
        &cfg.k8s_api().resource_attributes,
        K8S_API_ATTRIBUTES,
    )?;
    check_switches(node, "eks", &cfg.eks.resource_attributes, EKS_ATTRIBUTES)?;
    check_switches(node, "aks", &cfg.aks.resource_attributes, AKS_ATTRIBUTES)?;
    check_switches(
        node,
        "openshift",
        &cfg.openshift.resource_attributes,
        OPENSHIFT_ATTRIBUTES,
    )?;
    crate::kube::api_auth(node, &[k8s_key], cfg.k8s_api().auth_type)?;
    if cfg.detectors.iter().any(|d| d == "k8snode") {
        warn_key(
            node,
            &["detectors"],
            "`k8snode` is the deprecated name of the `k8s_api` detector",
        );
    }
    if cfg.attributes.is_some() {
        warn_key(
            node,
            &["attributes"],
            "deprecated: turn attributes off under `<detector>.resource_attributes` instead",
        );
    }
    if cfg.refresh_interval.is_some_and(|r| !r.is_zero()) {
        warn_key(
            node,
            &["refresh_interval"],
            "accepted and ignored: ferrotel detects once, at start",
        );
    }
    Ok(Box::new(Detection {
        cfg: Arc::new(cfg),
        found: Arc::new(OnceLock::new()),
    }))
}

/// The config and, once the first pipeline built it, what was detected (shared by every
/// pipeline that lists this processor).
#[derive(Clone)]
struct Detection {
    cfg: Arc<Config>,
    found: Arc<OnceLock<Arc<Vec<KeyValue>>>>,
}

fn enabled(d: &DetectorConfig, attr: &str, default: bool) -> bool {
    d.resource_attributes
        .get(attr)
        .map_or(default, |t| t.enabled)
}

/// Runs the detectors in order; what each found, filtered by its switches.
async fn detect(cfg: &Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in &cfg.detectors {
        let r = match d.as_str() {
            "env" => detectors::env(&|k| std::env::var(k).ok()),
            "system" => {
                let sources = if cfg.system.hostname_sources.is_empty() {
                    vec!["dns".to_owned(), "os".to_owned()]
                } else {
                    cfg.system.hostname_sources.clone()
                };
                detectors::system(&sources).map(|found| {
                    found
                        .into_iter()
                        .filter(|(k, _)| {
                            let default = SYSTEM_ATTRIBUTES
                                .iter()
                                .find(|(n, _, _)| n == k)
                                .is_some_and(|(_, on, _)| *on);
                            enabled(&cfg.system, k, default)
                        })
                        .collect()
                })
            }
            "docker" => detectors::docker("/var/run/docker.sock", cfg.timeout)
                .await
                .map(|f| keep(f, &cfg.docker)),
            "ec2" => detectors::ec2(&crate::net::aws::imds_endpoint(), cfg.timeout)
                .await
                .map(|f| keep(f, &cfg.ec2)),
            "gcp" => {
                let host = std::env::var("GCE_METADATA_HOST")
                    .unwrap_or_else(|_| "metadata.google.internal".into());
                let in_k8s = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
                detectors::gcp(&host, in_k8s, cfg.timeout)
                    .await
                    .map(|f| keep(f, &cfg.gcp))
            }
            "azure" => detectors::azure(&azure_endpoint(), cfg.timeout)
                .await
                .map(|f| keep(f, &cfg.azure)),
            "k8s_api" | "k8snode" => {
                let k = cfg.k8s_api();
                let on = |a: &str| switched_on(&k.resource_attributes, K8S_API_ATTRIBUTES, a);
                kubernetes::k8s_api(k, &on, cfg.timeout)
                    .await
                    .map(|f| keep_on(f, &on))
            }
            "eks" => {
                let on = |a: &str| switched_on(&cfg.eks.resource_attributes, EKS_ATTRIBUTES, a);
                kubernetes::eks(&cfg.eks, &on, cfg.timeout)
                    .await
                    .map(|f| keep_on(f, &on))
            }
            "aks" => {
                let on = |a: &str| switched_on(&cfg.aks.resource_attributes, AKS_ATTRIBUTES, a);
                kubernetes::aks(&azure_endpoint(), cfg.timeout)
                    .await
                    .map(|f| keep_on(f, &on))
            }
            "openshift" => {
                let on = |a: &str| {
                    switched_on(&cfg.openshift.resource_attributes, OPENSHIFT_ATTRIBUTES, a)
                };
                kubernetes::openshift(&cfg.openshift, cfg.timeout)
                    .await
                    .map(|f| keep_on(f, &on))
            }
            _ => Ok(Vec::new()),
        };
        match r {
            Ok(found) => {
                tracing::info!(detector = %d, attributes = found.len(), "resource detected");
                for (k, v) in found {
                    if !out.iter().any(|(ok, _)| *ok == k) {
                        out.push((k, v));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(detector = %d, error = %e, "resource detection failed; skipped")
            }
        }
    }
    if let Some(only) = &cfg.attributes {
        out.retain(|(k, _)| only.contains(k));
    }
    out
}

/// A detected attribute with the type the Collector gives it: the L2 cache size an int, the
/// address lists (found comma-joined) arrays, the rest strings.
fn typed_kv(key: &str, v: &str) -> KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};
    let value = match key {
        "host.cpu.cache.l2.size" => match v.parse::<i64>() {
            Ok(i) => any_value::Value::IntValue(i),
            Err(_) => any_value::Value::StringValue(v.into()),
        },
        "host.ip" | "host.mac" => any_value::Value::ArrayValue(ArrayValue {
            values: v
                .split(',')
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.into())),
                })
                .collect(),
        }),
        _ => return crate::signal::value::string_kv(key, v),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn azure_endpoint() -> String {
    std::env::var("FERROTEL_AZURE_IMDS_ENDPOINT")
        .unwrap_or_else(|_| "http://169.254.169.254".into())
}

fn keep_on(found: detectors::Found, on: &dyn Fn(&str) -> bool) -> detectors::Found {
    found.into_iter().filter(|(k, _)| on(k)).collect()
}

fn keep(found: detectors::Found, d: &DetectorConfig) -> detectors::Found {
    found
        .into_iter()
        .filter(|(k, _)| enabled(d, k, true))
        .collect()
}

impl ProcessorConfig for Detection {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let found = self
            .found
            .get_or_init(|| {
                // Once, at start, as the Collector does: on a thread of its own with its own
                // runtime, so that the start waits for it (each detector bounded by `timeout`)
                // from any runtime.
                let cfg = Arc::clone(&self.cfg);
                let attrs = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|rt| rt.block_on(detect(&cfg)))
                        .unwrap_or_default()
                })
                .join()
                .unwrap_or_default();
                Arc::new(attrs.iter().map(|(k, v)| typed_kv(k, v)).collect())
            })
            .clone();
        let t = Apply {
            attrs: found,
            override_: self.cfg.override_,
        };
        Ok(InPlace::build(&ctx, signal, next, t, "filtered"))
    }
}

struct Apply {
    attrs: Arc<Vec<KeyValue>>,
    override_: bool,
}

impl Apply {
    fn set(&self, r: &mut Option<opentelemetry_proto::tonic::resource::v1::Resource>) {
        if self.attrs.is_empty() {
            return;
        }
        let r = r.get_or_insert_with(Default::default);
        for kv in self.attrs.iter() {
            match r.attributes.iter_mut().find(|a| a.key == kv.key) {
                Some(a) if self.override_ => a.value = kv.value.clone(),
                Some(_) => {}
                None => r.attributes.push(kv.clone()),
            }
        }
    }
}

impl Transform for Apply {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        match batch {
            Batch::Traces(rs) => rs.iter_mut().for_each(|r| self.set(&mut r.resource)),
            Batch::Metrics(rm) => rm.iter_mut().for_each(|r| self.set(&mut r.resource)),
            Batch::Logs(rl) => rl.iter_mut().for_each(|r| self.set(&mut r.resource)),
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata::kv;

    #[test]
    fn override_replaces_and_otherwise_fills_gaps() {
        let attrs = Arc::new(vec![kv("host.name", "node-a"), kv("cloud.provider", "aws")]);
        let mut res = Some(opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: vec![kv("host.name", "mine")],
            ..Default::default()
        });
        let mut keep = res.clone();
        Apply {
            attrs: Arc::clone(&attrs),
            override_: true,
        }
        .set(&mut res);
        Apply {
            attrs,
            override_: false,
        }
        .set(&mut keep);
        let text = |r: &Option<opentelemetry_proto::tonic::resource::v1::Resource>| {
            r.as_ref()
                .unwrap()
                .attributes
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        crate::signal::value::option_text(&kv.value)
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(text(&res), ["host.name=node-a", "cloud.provider=aws"]);
        assert_eq!(text(&keep), ["host.name=mine", "cloud.provider=aws"]);
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = |y: &str| {
            parse(&yaml(y).unwrap())
                .err()
                .map(|e| (e.path_string(), e.msg))
        };
        assert!(
            e("detectors: [env, system, docker]\ntimeout: 2s\noverride: false\nsystem: {hostname_sources: [os], resource_attributes: {host.id: {enabled: true}}}\n")
                .is_none()
        );
        let (p, m) = e("detectors: [env, lambda]\n").unwrap();
        assert_eq!(p, "detectors[1]");
        assert!(m.contains("detector `lambda` is not built"), "{m}");
        assert!(
            e("detectors: [env, k8s_api, eks]\neks: {resource_attributes: {k8s.cluster.name: {enabled: true}}, max_attempts: 2, max_backoff: 1s}\nk8s_api: {auth_type: kubeConfig, node_from_env_var: MY_NODE}\nopenshift: {address: 'https://api:6443', token: t, tls: {insecure_skip_verify: true}}\n")
                .is_none()
        );
        let (p, m) =
            e("detectors: [eks]\neks: {resource_attributes: {k8s.node.name: {enabled: true}}}\n")
                .unwrap();
        assert_eq!(p, "eks.resource_attributes.k8s.node.name");
        assert!(m.contains("has cloud.provider"), "{m}");
        let (p, _) = e("detectors: [k8snode]\nk8snode: {auth_type: tls}\n").unwrap();
        assert_eq!(p, "k8snode.auth_type");
        let (p, _) =
            e("detectors: [aks]\naks: {resource_attributes: {cloud.region: {enabled: true}}}\n")
                .unwrap();
        assert_eq!(p, "aks.resource_attributes.cloud.region");
        assert!(
            e("detectors: [moon]\n")
                .unwrap()
                .1
                .contains("ferrotel has env")
        );
        let (p, m) = e(
            "detectors: [system]\nsystem: {resource_attributes: {os.version: {enabled: true}}}\n",
        )
        .unwrap();
        assert_eq!(p, "system.resource_attributes.os.version");
        assert!(m.contains("does not detect"), "{m}");
        assert!(e("detectors: [system]\nsystem: {hostname_sources: [ldap]}\n").is_some());
        assert!(e("detectors: [system]\nsystem: {resource_attributes: {host.mac: {enabled: true}, host.ip: {enabled: true}, host.cpu.model.name: {enabled: true}}}\n").is_none());
    }
}
