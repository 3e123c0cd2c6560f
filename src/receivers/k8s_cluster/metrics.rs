//! The state as the Collector's `k8s_cluster` metrics: one resource per object, its metrics
//! named, typed and attributed as the Collector's `metadata.yaml` has them.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::Config;
use super::state::{Container, Id, Kind, Object, State};
use crate::signal::build::{MetricBuilder, Num, Toggle, enabled};

/// Every metric and whether the Collector enables it by default.
pub const METRICS: &[(&str, bool)] = &[
    ("k8s.container.cpu_limit", true),
    ("k8s.container.cpu_request", true),
    ("k8s.container.ephemeralstorage_limit", true),
    ("k8s.container.ephemeralstorage_request", true),
    ("k8s.container.memory_limit", true),
    ("k8s.container.memory_request", true),
    ("k8s.container.ready", true),
    ("k8s.container.restarts", true),
    ("k8s.container.storage_limit", true),
    ("k8s.container.storage_request", true),
    ("k8s.container.status.reason", false),
    ("k8s.container.status.state", false),
    ("k8s.cronjob.active_jobs", true),
    ("k8s.daemonset.current_scheduled_nodes", true),
    ("k8s.daemonset.desired_scheduled_nodes", true),
    ("k8s.daemonset.misscheduled_nodes", true),
    ("k8s.daemonset.ready_nodes", true),
    ("k8s.deployment.available", true),
    ("k8s.deployment.desired", true),
    ("k8s.hpa.current_replicas", true),
    ("k8s.hpa.desired_replicas", true),
    ("k8s.hpa.max_replicas", true),
    ("k8s.hpa.min_replicas", true),
    ("k8s.job.active_pods", true),
    ("k8s.job.desired_successful_pods", true),
    ("k8s.job.failed_pods", true),
    ("k8s.job.max_parallel_pods", true),
    ("k8s.job.successful_pods", true),
    ("k8s.namespace.phase", true),
    ("k8s.node.condition", false),
    ("k8s.pod.phase", true),
    ("k8s.pod.status_reason", false),
    ("k8s.replicaset.available", true),
    ("k8s.replicaset.desired", true),
    ("k8s.replication_controller.available", true),
    ("k8s.replication_controller.desired", true),
    ("k8s.resource_quota.hard_limit", true),
    ("k8s.resource_quota.used", true),
    ("k8s.statefulset.current_pods", true),
    ("k8s.statefulset.desired_pods", true),
    ("k8s.statefulset.ready_pods", true),
    ("k8s.statefulset.updated_pods", true),
];

/// The Collector's metrics ferrotel does not write yet (refused by name when enabled).
pub const NOT_BUILT: &[&str] = &[
    "k8s.persistentvolume.status.phase",
    "k8s.persistentvolume.storage.capacity",
    "k8s.persistentvolumeclaim.status.phase",
    "k8s.persistentvolumeclaim.storage.capacity",
    "k8s.persistentvolumeclaim.storage.request",
    "k8s.service.endpoint.count",
    "k8s.service.load_balancer.ingress.count",
    "k8s.statefulset.pod.available",
    "openshift.appliedclusterquota.limit",
    "openshift.appliedclusterquota.used",
    "openshift.clusterquota.limit",
    "openshift.clusterquota.used",
];

pub const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("container.id", true),
    ("container.image.name", true),
    ("container.image.tag", true),
    ("container.runtime", false),
    ("container.runtime.version", false),
    ("k8s.container.name", true),
    ("k8s.container.status.last_terminated_reason", false),
    ("k8s.cronjob.name", true),
    ("k8s.cronjob.uid", true),
    ("k8s.daemonset.name", true),
    ("k8s.daemonset.uid", true),
    ("k8s.deployment.name", true),
    ("k8s.deployment.uid", true),
    ("k8s.hpa.name", true),
    ("k8s.hpa.uid", true),
    ("k8s.job.name", true),
    ("k8s.job.uid", true),
    ("k8s.kubelet.version", false),
    ("k8s.namespace.name", true),
    ("k8s.namespace.uid", true),
    ("k8s.node.name", true),
    ("k8s.node.uid", true),
    ("k8s.pod.name", true),
    ("k8s.pod.qos_class", false),
    ("k8s.pod.uid", true),
    ("k8s.replicaset.name", true),
    ("k8s.replicaset.uid", true),
    ("k8s.replicationcontroller.name", true),
    ("k8s.replicationcontroller.uid", true),
    ("k8s.resourcequota.name", true),
    ("k8s.resourcequota.uid", true),
    ("k8s.statefulset.name", true),
    ("k8s.statefulset.uid", true),
    ("os.type", false),
];

const CONTAINER_REASONS: &[&str] = &[
    "ContainerCreating",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "ErrImagePull",
    "ImagePullBackOff",
    "OOMKilled",
    "Completed",
    "Error",
    "ContainerCannotRun",
];

/// `Ready` → `ready`, `MemoryPressure` → `memory_pressure`, `ephemeral-storage` →
/// `ephemeral_storage` (the Collector's strcase.ToSnake for these names).
pub fn snake(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &ch) in c.iter().enumerate() {
        if matches!(ch, '-' | '.' | '/' | ' ') {
            out.push('_');
            continue;
        }
        if ch.is_ascii_uppercase() && i > 0 {
            let prev = c[i - 1];
            let next_lower = c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // A word starts after a lower-case letter or digit, and at the last capital of an
            // acronym followed by lower case (`PIDPressure` → `pid_pressure`).
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// `repo/name:tag` (or `@digest`) → (name, tag); `latest` when no tag is given.
fn image(s: &str) -> (String, String) {
    let s = s.split('@').next().unwrap_or(s);
    let slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[slash..].rfind(':') {
        Some(i) => (s[..slash + i].to_owned(), s[slash + i + 1..].to_owned()),
        None => (s.to_owned(), "latest".to_owned()),
    }
}

struct Res<'a> {
    toggles: &'a BTreeMap<String, Toggle>,
    attrs: Vec<KeyValue>,
}

impl Res<'_> {
    fn set(&mut self, k: &str, v: &str) {
        if !v.is_empty() && enabled(self.toggles, RESOURCE_ATTRIBUTES, k) {
            self.attrs.push(crate::signal::value::string_kv(k, v));
        }
    }

    fn id(&mut self, kind: &str, id: &Id) {
        self.set(&format!("k8s.{kind}.name"), &id.name);
        self.set(&format!("k8s.{kind}.uid"), &id.uid);
        self.set("k8s.namespace.name", &id.namespace);
    }
}

/// Every object's resource and metrics, as of `now`.
pub fn build(cfg: &Config, state: &State, now: u64) -> Vec<ResourceMetrics> {
    // The node condition and allocatable metrics are named from the config: on by being listed.
    let custom: Vec<String> = cfg
        .node_conditions_to_report
        .iter()
        .map(|c| format!("k8s.node.condition_{}", snake(c)))
        .chain(
            cfg.allocatable_types_to_report
                .iter()
                .map(|a| format!("k8s.node.allocatable_{}", snake(a))),
        )
        .collect();
    let mut defaults: Vec<(&str, bool)> = METRICS.to_vec();
    defaults.extend(custom.iter().map(|c| (c.as_str(), true)));
    let mut out = Vec::new();
    let mut emit = |res: Res<'_>, f: &mut dyn FnMut(&mut MetricBuilder<'_>)| {
        let mut b = MetricBuilder {
            toggles: &cfg.metrics,
            defaults: &defaults,
            now,
            start: 0,
            out: Vec::new(),
        };
        f(&mut b);
        push(&mut out, res.attrs, b.out);
    };
    let res = || Res {
        toggles: &cfg.resource_attributes,
        attrs: Vec::new(),
    };
    for kind in Kind::ALL {
        let Some(objects) = state.objects.get(&kind) else {
            continue;
        };
        // A stable order: by namespace and name.
        let mut objects: Vec<&Object> = objects.values().collect();
        objects.sort_by_key(|o| match o {
            Object::Node(n) => (&n.id.namespace, &n.id.name),
            Object::Pod(p) => (&p.id.namespace, &p.id.name),
            Object::Namespace(id, _) => (&id.namespace, &id.name),
            Object::Quota(q) => (&q.id.namespace, &q.id.name),
            Object::Workload(w) => (&w.id.namespace, &w.id.name),
        });
        for o in objects {
            match o {
                Object::Node(n) => {
                    let mut r = res();
                    r.set("k8s.node.name", &n.id.name);
                    r.set("k8s.node.uid", &n.id.uid);
                    r.set("k8s.kubelet.version", &n.kubelet_version);
                    r.set("os.type", &n.os);
                    let (rt, rtv) = n.container_runtime.split_once("://").unwrap_or(("", ""));
                    r.set("container.runtime", rt);
                    r.set("container.runtime.version", rtv);
                    emit(r, &mut |b| {
                        let value = |t: &str| match n.conditions.iter().find(|(c, _)| c == t) {
                            Some((_, s)) if s == "True" => 1,
                            Some((_, s)) if s == "False" => 0,
                            _ => -1,
                        };
                        for c in &cfg.node_conditions_to_report {
                            let name = format!("k8s.node.condition_{}", snake(c));
                            let desc = format!(
                                "{c} condition status of the node (true=1, false=0, unknown=-1)"
                            );
                            b.gauge1(&name, "", &desc, Some(Num::Int(value(c))));
                        }
                        for a in &cfg.allocatable_types_to_report {
                            let Some((_, q)) = n.allocatable.iter().find(|(k, _)| k == a) else {
                                continue;
                            };
                            let name = format!("k8s.node.allocatable_{}", snake(a));
                            let (unit, v) = match a.as_str() {
                                "cpu" => ("{cpu}", Num::Double(*q)),
                                "memory" | "ephemeral-storage" | "storage" => {
                                    ("By", Num::Int(*q as i64))
                                }
                                "pods" => ("{pod}", Num::Int(*q as i64)),
                                other => {
                                    let u = format!("{{{other}}}");
                                    b.gauge1(&name, &u, "", Some(Num::Int(*q as i64)));
                                    continue;
                                }
                            };
                            b.gauge1(&name, unit, "", Some(v));
                        }
                        let points: Vec<_> = n
                            .conditions
                            .iter()
                            .map(|(c, s)| {
                                let v = match s.as_str() {
                                    "True" => 1,
                                    "False" => 0,
                                    _ => -1,
                                };
                                (vec![("condition", c.as_str())], Num::Int(v))
                            })
                            .collect();
                        b.gauge(
                            "k8s.node.condition",
                            "{condition}",
                            "The condition of a particular Node.",
                            points,
                        );
                    });
                }
                Object::Pod(p) => {
                    let pod_res = |r: &mut Res<'_>| {
                        r.set("k8s.namespace.name", &p.id.namespace);
                        r.set("k8s.node.name", &p.node);
                        r.set("k8s.pod.name", &p.id.name);
                        r.set("k8s.pod.uid", &p.id.uid);
                    };
                    let mut r = res();
                    pod_res(&mut r);
                    r.set("k8s.pod.qos_class", &p.qos);
                    emit(r, &mut |b| {
                        b.gauge1("k8s.pod.phase", "", "Current phase of the pod (1 - Pending, 2 - Running, 3 - Succeeded, 4 - Failed, 5 - Unknown)", Some(Num::Int(p.phase)));
                        if p.reason > 0 {
                            b.gauge1("k8s.pod.status_reason", "", "Current status reason of the pod (1 - Evicted, 2 - NodeAffinity, 3 - NodeLost, 4 - Shutdown, 5 - UnexpectedAdmissionError, 6 - Unknown)", Some(Num::Int(p.reason)));
                        }
                    });
                    for c in &p.containers {
                        let mut r = res();
                        pod_res(&mut r);
                        container_res(&mut r, c);
                        emit(r, &mut |b| container(b, c));
                    }
                }
                Object::Namespace(id, active) => {
                    let mut r = res();
                    r.set("k8s.namespace.name", &id.name);
                    r.set("k8s.namespace.uid", &id.uid);
                    emit(r, &mut |b| {
                        b.gauge1(
                            "k8s.namespace.phase",
                            "",
                            "The current phase of namespaces (1 for active and 0 for terminating)",
                            Some(Num::Int(i64::from(*active))),
                        );
                    });
                }
                Object::Quota(q) => {
                    let mut r = res();
                    r.id("resourcequota", &q.id);
                    emit(r, &mut |b| {
                        // CPU in millicores, as the Collector sends it.
                        let scaled = |k: &str, v: f64| {
                            let v = if k.ends_with("cpu") { v * 1000.0 } else { v };
                            Num::Int(v.round() as i64)
                        };
                        let hard: Vec<_> = q
                            .resources
                            .iter()
                            .filter_map(|(k, (h, _))| {
                                Some((vec![("resource", k.as_str())], scaled(k, (*h)?)))
                            })
                            .collect();
                        let used: Vec<_> = q
                            .resources
                            .iter()
                            .filter_map(|(k, (_, u))| {
                                Some((vec![("resource", k.as_str())], scaled(k, (*u)?)))
                            })
                            .collect();
                        b.gauge("k8s.resource_quota.hard_limit", "{resource}", "", hard);
                        b.gauge("k8s.resource_quota.used", "{resource}", "", used);
                    });
                }
                Object::Workload(w) => {
                    let (prefix, attr, unit) = match kind {
                        Kind::Deployment => ("k8s.deployment", "deployment", "{pod}"),
                        Kind::ReplicaSet => ("k8s.replicaset", "replicaset", "{pod}"),
                        Kind::ReplicationController => (
                            "k8s.replication_controller",
                            "replicationcontroller",
                            "{pod}",
                        ),
                        Kind::StatefulSet => ("k8s.statefulset", "statefulset", "{pod}"),
                        Kind::DaemonSet => ("k8s.daemonset", "daemonset", "{node}"),
                        Kind::Job => ("k8s.job", "job", "{pod}"),
                        Kind::CronJob => ("k8s.cronjob", "cronjob", "{job}"),
                        Kind::Hpa => ("k8s.hpa", "hpa", "{pod}"),
                        _ => continue,
                    };
                    let mut r = res();
                    r.id(attr, &w.id);
                    emit(r, &mut |b| {
                        for (suffix, v) in &w.counts {
                            b.gauge1(&format!("{prefix}.{suffix}"), unit, "", Some(Num::Int(*v)));
                        }
                    });
                }
            }
        }
    }
    out
}

fn container_res(r: &mut Res<'_>, c: &Container) {
    let (name, tag) = image(&c.image);
    r.set("container.id", &c.id);
    r.set("container.image.name", &name);
    r.set("container.image.tag", &tag);
    r.set("k8s.container.name", &c.name);
    r.set(
        "k8s.container.status.last_terminated_reason",
        &c.last_terminated_reason,
    );
}

fn container(b: &mut MetricBuilder<'_>, c: &Container) {
    b.gauge1(
        "k8s.container.restarts",
        "{restart}",
        "",
        Some(Num::Int(i64::from(c.restarts))),
    );
    b.gauge1(
        "k8s.container.ready",
        "",
        "",
        Some(Num::Int(i64::from(c.ready))),
    );
    for (i, what) in ["cpu", "memory", "storage", "ephemeralstorage"]
        .iter()
        .enumerate()
    {
        let (unit, as_num): (&str, fn(f64) -> Num) = if i == 0 {
            ("{cpu}", Num::Double)
        } else {
            ("By", |v| Num::Int(v as i64))
        };
        b.gauge1(
            &format!("k8s.container.{what}_request"),
            unit,
            "",
            c.requests[i].map(as_num),
        );
        b.gauge1(
            &format!("k8s.container.{what}_limit"),
            unit,
            "",
            c.limits[i].map(as_num),
        );
    }
    if !c.state.is_empty() {
        let states: Vec<_> = ["terminated", "running", "waiting"]
            .iter()
            .map(|s| {
                (
                    vec![("k8s.container.status.state", *s)],
                    Num::Int(i64::from(c.state == *s)),
                )
            })
            .collect();
        b.sum(
            "k8s.container.status.state",
            "{container}",
            "",
            false,
            states,
        );
    }
    let reasons: Vec<_> = CONTAINER_REASONS
        .iter()
        .map(|r| {
            (
                vec![("k8s.container.status.reason", *r)],
                Num::Int(i64::from(c.reason == *r)),
            )
        })
        .collect();
    b.sum(
        "k8s.container.status.reason",
        "{container}",
        "",
        false,
        reasons,
    );
}

fn push(out: &mut Vec<ResourceMetrics>, attributes: Vec<KeyValue>, metrics: Vec<Metric>) {
    if metrics.is_empty() {
        return;
    }
    out.push(ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_images() {
        assert_eq!(snake("Ready"), "ready");
        assert_eq!(snake("MemoryPressure"), "memory_pressure");
        assert_eq!(snake("PIDPressure"), "pid_pressure");
        assert_eq!(snake("NetworkUnavailable"), "network_unavailable");
        assert_eq!(snake("ephemeral-storage"), "ephemeral_storage");
        assert_eq!(
            image("docker.io/shop/web:1.4"),
            ("docker.io/shop/web".into(), "1.4".into())
        );
        assert_eq!(
            image("localhost:5000/web"),
            ("localhost:5000/web".into(), "latest".into())
        );
        assert_eq!(image("nginx@sha256:abc"), ("nginx".into(), "latest".into()));
    }
}
