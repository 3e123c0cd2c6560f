//! One Summary into OTLP: a resource per node, pod, container and volume, with the Collector's
//! metric names, units, types and resource attributes (its `metadata.yaml`).

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::{Config, MetricGroup};
use super::summary::{ContainerStats, CpuStats, FsStats, MemoryStats, NetworkStats, Summary};
use crate::kube::{Pod, container_id};
use crate::signal::build::{MetricBuilder, Num, Toggle, enabled};

/// Every metric and whether the Collector enables it by default.
pub const METRICS: &[(&str, bool)] = &[
    ("container.cpu.time", true),
    ("container.cpu.usage", true),
    ("container.filesystem.available", true),
    ("container.filesystem.capacity", true),
    ("container.filesystem.usage", true),
    ("container.memory.available", true),
    ("container.memory.major_page_faults", true),
    ("container.memory.page_faults", true),
    ("container.memory.rss", true),
    ("container.memory.usage", true),
    ("container.memory.working_set", true),
    ("container.uptime", false),
    ("k8s.container.cpu.node.utilization", false),
    ("k8s.container.cpu_limit_utilization", false),
    ("k8s.container.cpu_request_utilization", false),
    ("k8s.container.ephemeral_storage.usage", false),
    ("k8s.container.memory.node.utilization", false),
    ("k8s.container.memory_limit_utilization", false),
    ("k8s.container.memory_request_utilization", false),
    ("k8s.node.cpu.time", true),
    ("k8s.node.cpu.usage", true),
    ("k8s.node.filesystem.available", true),
    ("k8s.node.filesystem.capacity", true),
    ("k8s.node.filesystem.usage", true),
    ("k8s.node.filesystem.inode.count", false),
    ("k8s.node.filesystem.inode.free", false),
    ("k8s.node.memory.available", true),
    ("k8s.node.memory.major_page_faults", true),
    ("k8s.node.memory.page_faults", true),
    ("k8s.node.memory.rss", true),
    ("k8s.node.memory.usage", true),
    ("k8s.node.memory.working_set", true),
    ("k8s.node.network.errors", true),
    ("k8s.node.network.io", true),
    ("k8s.node.pid.limit", false),
    ("k8s.node.pid.usage", false),
    ("k8s.node.uptime", false),
    ("k8s.pod.cpu.node.utilization", false),
    ("k8s.pod.cpu.time", true),
    ("k8s.pod.cpu.usage", true),
    ("k8s.pod.cpu_limit_utilization", false),
    ("k8s.pod.cpu_request_utilization", false),
    ("k8s.pod.filesystem.available", true),
    ("k8s.pod.filesystem.capacity", true),
    ("k8s.pod.filesystem.usage", true),
    ("k8s.pod.memory.available", true),
    ("k8s.pod.memory.major_page_faults", true),
    ("k8s.pod.memory.node.utilization", false),
    ("k8s.pod.memory.page_faults", true),
    ("k8s.pod.memory.rss", true),
    ("k8s.pod.memory.usage", true),
    ("k8s.pod.memory.working_set", true),
    ("k8s.pod.memory_limit_utilization", false),
    ("k8s.pod.memory_request_utilization", false),
    ("k8s.pod.network.errors", true),
    ("k8s.pod.network.io", true),
    ("k8s.pod.uptime", false),
    ("k8s.pod.volume.usage", false),
    ("k8s.volume.available", true),
    ("k8s.volume.capacity", true),
    ("k8s.volume.inodes", true),
    ("k8s.volume.inodes.free", true),
    ("k8s.volume.inodes.used", true),
];

/// The Collector's metrics ferrotel does not write yet (refused by name when enabled).
pub const NOT_BUILT: &[&str] = &[
    "k8s.node.system_container.cpu.time",
    "k8s.node.system_container.cpu.usage",
    "k8s.node.system_container.memory.usage",
    "k8s.node.system_container.memory.working_set",
];

/// Resource attributes and whether they are on by default (the deprecated volume details off).
pub const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("aws.volume.id", false),
    ("container.id", true),
    ("fs.type", false),
    ("gce.pd.name", false),
    ("glusterfs.endpoints.name", false),
    ("glusterfs.path", false),
    ("k8s.container.name", true),
    ("k8s.namespace.name", true),
    ("k8s.node.name", true),
    ("k8s.node.system_container.name", true),
    ("k8s.persistentvolumeclaim.name", true),
    ("k8s.pod.name", true),
    ("k8s.pod.uid", true),
    ("k8s.volume.name", true),
    ("k8s.volume.type", true),
    ("partition", false),
];

/// What the scrape knows besides the Summary: the kubelet's pod list (when extra labels or
/// utilization against limits need it) and the node's capacity (utilization against it).
#[derive(Default)]
pub struct Extra {
    pub pods: HashMap<String, Pod>,
    pub node_cpu: Option<f64>,
    pub node_memory: Option<f64>,
}

/// RFC 3339 → nanoseconds since the epoch (0 when absent or unreadable).
fn nanos(t: &Option<String>) -> u64 {
    t.as_deref()
        .and_then(crate::kube::timestamp_nanos)
        .unwrap_or(0)
}

struct Res<'a> {
    toggles: &'a BTreeMap<String, Toggle>,
    attrs: Vec<KeyValue>,
}

impl Res<'_> {
    fn set(&mut self, k: &str, v: &str) {
        if enabled(self.toggles, RESOURCE_ATTRIBUTES, k) {
            self.attrs.push(crate::signal::value::string_kv(k, v));
        }
    }
}

/// Writes the CPU, memory, file-system and network metrics shared by node, pod and container
/// (`prefix` is `k8s.node`, `k8s.pod` or `container`).
struct Common<'a> {
    prefix: &'a str,
    b: MetricBuilder<'a>,
}

impl Common<'_> {
    fn name(&self, m: &str) -> String {
        format!("{}.{m}", self.prefix)
    }

    fn cpu(&mut self, c: &Option<CpuStats>) {
        let Some(c) = c else { return };
        let (t, u) = (self.name("cpu.time"), self.name("cpu.usage"));
        self.b.sum1(
            &t,
            "s",
            "Total cumulative CPU time (sum of all cores) spent by the container/pod/node since its creation",
            true,
            c.usage_core_nano_seconds.map(|n| Num::Double(n as f64 / 1e9)),
        );
        self.b.gauge1(
            &u,
            "{cpu}",
            "Total CPU usage (sum of all cores per second) averaged over the sample window",
            c.usage_nano_cores.map(|n| Num::Double(n as f64 / 1e9)),
        );
    }

    fn memory(&mut self, m: &Option<MemoryStats>) {
        let Some(m) = m else { return };
        for (what, unit, v) in [
            ("available", "By", m.available_bytes),
            ("usage", "By", m.usage_bytes),
            ("rss", "By", m.rss_bytes),
            ("working_set", "By", m.working_set_bytes),
            ("page_faults", "1", m.page_faults),
            ("major_page_faults", "1", m.major_page_faults),
        ] {
            let n = self.name(&format!("memory.{what}"));
            self.b.gauge1(&n, unit, "", v.map(Num::from));
        }
    }

    fn filesystem(&mut self, f: &Option<FsStats>) {
        let Some(f) = f else { return };
        for (what, v) in [
            ("available", f.available_bytes),
            ("capacity", f.capacity_bytes),
            ("usage", f.used_bytes),
        ] {
            let n = self.name(&format!("filesystem.{what}"));
            self.b.gauge1(&n, "By", "", v.map(Num::from));
        }
    }

    fn network(&mut self, n: &Option<NetworkStats>, all: bool) {
        let Some(n) = n else { return };
        let ifaces: Vec<_> = if all && !n.interfaces.is_empty() {
            n.interfaces.iter().collect()
        } else {
            vec![&n.default]
        };
        let (io, errors) = (self.name("network.io"), self.name("network.errors"));
        let mut io_points = Vec::new();
        let mut err_points = Vec::new();
        for i in ifaces {
            for (dir, bytes, errs) in [
                ("receive", i.rx_bytes, i.rx_errors),
                ("transmit", i.tx_bytes, i.tx_errors),
            ] {
                let a = vec![("interface", i.name.as_str()), ("direction", dir)];
                if let Some(b) = bytes {
                    io_points.push((a.clone(), Num::from(b)));
                }
                if let Some(e) = errs {
                    err_points.push((a, Num::from(e)));
                }
            }
        }
        self.b.sum(&io, "By", "", true, io_points);
        self.b.sum(&errors, "1", "", true, err_points);
    }

    fn uptime(&mut self, start: u64) {
        if start > 0 && self.b.now > start {
            let n = self.name("uptime");
            let secs = (self.b.now - start) / 1_000_000_000;
            self.b.sum1(&n, "s", "", true, Some(Num::from(secs)));
        }
    }

    /// `<prefix>.{cpu,memory}_{limit,request}_utilization` and `<prefix>.{cpu,memory}.node.utilization`
    /// (`k8s.pod` or `k8s.container`): usage against `[cpu limit, cpu request, memory limit,
    /// memory request]` and the node's capacity, each written only when its divisor is known.
    fn utilization(
        &mut self,
        (cpu, mem): (Option<f64>, Option<f64>),
        of: [Option<f64>; 4],
        extra: &Extra,
    ) {
        let p = if self.prefix == "container" {
            "k8s.container"
        } else {
            self.prefix
        };
        self.ratio(&format!("{p}.cpu_limit_utilization"), cpu, of[0]);
        self.ratio(&format!("{p}.cpu_request_utilization"), cpu, of[1]);
        self.ratio(&format!("{p}.memory_limit_utilization"), mem, of[2]);
        self.ratio(&format!("{p}.memory_request_utilization"), mem, of[3]);
        self.ratio(&format!("{p}.cpu.node.utilization"), cpu, extra.node_cpu);
        self.ratio(
            &format!("{p}.memory.node.utilization"),
            mem,
            extra.node_memory,
        );
    }

    fn ratio(&mut self, name: &str, v: Option<f64>, of: Option<f64>) {
        if let (Some(v), Some(of)) = (v, of)
            && of > 0.0
        {
            self.b.gauge1(name, "1", "", Some(Num::Double(v / of)));
        }
    }
}

/// CPU in cores and memory in bytes, as utilization divides them.
fn usage(cpu: &Option<CpuStats>, mem: &Option<MemoryStats>) -> (Option<f64>, Option<f64>) {
    (
        cpu.as_ref()
            .and_then(|c| c.usage_nano_cores)
            .map(|n| n as f64 / 1e9),
        mem.as_ref().and_then(|m| m.usage_bytes).map(|b| b as f64),
    )
}

/// Every resource the Summary yields for the configured groups.
pub fn build(cfg: &Config, s: &Summary, extra: &Extra, now: u64) -> Vec<ResourceMetrics> {
    let mut out = Vec::new();
    let groups = &cfg.metric_groups;
    let all_if = cfg
        .collect_all_network_interfaces
        .clone()
        .unwrap_or_default();
    let res = |attrs: &[(&str, &str)]| res(cfg, attrs);
    let common = |prefix: &'static str, start: u64| common(cfg, prefix, now, start);
    let n = &s.node;
    let node_name = if n.node_name.is_empty() {
        cfg.node.clone().unwrap_or_default()
    } else {
        n.node_name.clone()
    };
    if groups.contains(&MetricGroup::Node) {
        let start = nanos(&n.start_time);
        let mut c = common("k8s.node", start);
        c.uptime(start);
        c.cpu(&n.cpu);
        c.memory(&n.memory);
        c.filesystem(&n.fs);
        c.network(&n.network, all_if.node);
        if let Some(f) = &n.fs {
            c.b.sum1(
                "k8s.node.filesystem.inode.count",
                "{inode}",
                "",
                false,
                f.inodes.map(Num::from),
            );
            c.b.sum1(
                "k8s.node.filesystem.inode.free",
                "{inode}",
                "",
                false,
                f.inodes_free.map(Num::from),
            );
        }
        if let Some(r) = &n.rlimit {
            c.b.sum1(
                "k8s.node.pid.limit",
                "{thread}",
                "",
                false,
                r.maxpid.map(Num::from),
            );
            c.b.sum1(
                "k8s.node.pid.usage",
                "{thread}",
                "",
                false,
                r.curproc.map(Num::from),
            );
        }
        push(&mut out, res(&[("k8s.node.name", &node_name)]), c.b.out);
    }
    for p in &s.pods {
        let r = &p.pod_ref;
        let pod_attrs = [
            ("k8s.pod.uid", r.uid.as_str()),
            ("k8s.pod.name", r.name.as_str()),
            ("k8s.namespace.name", r.namespace.as_str()),
        ];
        let spec = extra.pods.get(&r.uid);
        if groups.contains(&MetricGroup::Pod) {
            let start = nanos(&p.start_time);
            let mut c = common("k8s.pod", start);
            c.uptime(start);
            c.cpu(&p.cpu);
            c.memory(&p.memory);
            c.filesystem(&p.ephemeral_storage);
            c.network(&p.network, all_if.pod);
            // A pod's limit is its containers' sum, and only when every container has one.
            let total = |f: &dyn Fn(&crate::kube::Container) -> Option<f64>| {
                let s = spec?;
                s.spec.containers.iter().map(f).sum::<Option<f64>>()
            };
            c.utilization(
                usage(&p.cpu, &p.memory),
                [
                    total(&|k| k.resources.limit("cpu")),
                    total(&|k| k.resources.request("cpu")),
                    total(&|k| k.resources.limit("memory")),
                    total(&|k| k.resources.request("memory")),
                ],
                extra,
            );
            let used: Option<u64> = (!p.volume.is_empty())
                .then(|| p.volume.iter().filter_map(|v| v.fs.used_bytes).sum());
            c.b.sum1("k8s.pod.volume.usage", "By", "", false, used.map(Num::from));
            push(&mut out, res(&pod_attrs), c.b.out);
        }
        if groups.contains(&MetricGroup::Container) {
            for k in &p.containers {
                out_container(cfg, &mut out, now, &pod_attrs, spec, k, extra);
            }
        }
        if groups.contains(&MetricGroup::Volume) {
            for v in &p.volume {
                let mut r = res(&pod_attrs);
                r.set("k8s.volume.name", &v.name);
                if cfg
                    .extra_metadata_labels
                    .iter()
                    .any(|l| l == "k8s.volume.type")
                {
                    let vol = spec.and_then(|s| s.spec.volumes.iter().find(|x| x.name == v.name));
                    match vol {
                        Some(vol) => {
                            if let Some(kind) = vol.kind() {
                                r.set("k8s.volume.type", kind);
                            }
                            if let Some(c) = &vol.persistent_volume_claim {
                                r.set("k8s.persistentvolumeclaim.name", &c.claim_name);
                            }
                        }
                        // The Collector leaves out a volume it cannot describe.
                        None => continue,
                    }
                } else if let Some(pvc) = &v.pvc_ref {
                    r.set("k8s.persistentvolumeclaim.name", &pvc.name);
                }
                let mut b = common("k8s.volume", 0).b;
                let f = &v.fs;
                for (name, unit, val) in [
                    ("k8s.volume.available", "By", f.available_bytes),
                    ("k8s.volume.capacity", "By", f.capacity_bytes),
                    ("k8s.volume.inodes", "1", f.inodes),
                    ("k8s.volume.inodes.free", "1", f.inodes_free),
                    ("k8s.volume.inodes.used", "1", f.inodes_used),
                ] {
                    b.gauge1(name, unit, "", val.map(Num::from));
                }
                push(&mut out, r, b.out);
            }
        }
    }
    out
}

fn res<'a>(cfg: &'a Config, attrs: &[(&str, &str)]) -> Res<'a> {
    let mut r = Res {
        toggles: &cfg.resource_attributes,
        attrs: Vec::new(),
    };
    for (k, v) in attrs {
        r.set(k, v);
    }
    r
}

fn common<'a>(cfg: &'a Config, prefix: &'a str, now: u64, start: u64) -> Common<'a> {
    Common {
        prefix,
        b: MetricBuilder {
            toggles: &cfg.metrics,
            defaults: METRICS,
            now,
            start,
            out: Vec::new(),
        },
    }
}

fn out_container(
    cfg: &Config,
    out: &mut Vec<ResourceMetrics>,
    now: u64,
    pod_attrs: &[(&str, &str)],
    spec: Option<&Pod>,
    k: &ContainerStats,
    extra: &Extra,
) {
    let mut r = res(cfg, pod_attrs);
    r.set("k8s.container.name", &k.name);
    if cfg
        .extra_metadata_labels
        .iter()
        .any(|l| l == "container.id")
    {
        let status = spec.and_then(|s| {
            s.status
                .container_statuses
                .iter()
                .chain(&s.status.init_container_statuses)
                .find(|c| c.name == k.name)
        });
        match status.and_then(|s| container_id(&s.container_id)) {
            Some(id) => r.set("container.id", id),
            // As the Collector: a container whose id is not known yet is skipped this scrape.
            None => return,
        }
    }
    let start = nanos(&k.start_time);
    let mut c = common(cfg, "container", now, start);
    c.uptime(start);
    c.cpu(&k.cpu);
    c.memory(&k.memory);
    c.filesystem(&k.rootfs);
    let res_spec = spec.and_then(|s| s.spec.containers.iter().find(|c| c.name == k.name));
    let lim = |n: &str| res_spec.and_then(|s| s.resources.limit(n));
    let req = |n: &str| res_spec.and_then(|s| s.resources.request(n));
    c.utilization(
        usage(&k.cpu, &k.memory),
        [lim("cpu"), req("cpu"), lim("memory"), req("memory")],
        extra,
    );
    let mut eph = Vec::new();
    for (kind, fs) in [("rootfs", &k.rootfs), ("logs", &k.logs)] {
        if let Some(used) = fs.as_ref().and_then(|f| f.used_bytes) {
            eph.push((vec![("fs.type", kind)], Num::from(used)));
        }
    }
    c.b.sum(
        "k8s.container.ephemeral_storage.usage",
        "By",
        "Ephemeral storage used by the container.",
        false,
        eph,
    );
    push(out, r, c.b.out);
}

fn push(
    out: &mut Vec<ResourceMetrics>,
    r: Res<'_>,
    metrics: Vec<opentelemetry_proto::tonic::metrics::v1::Metric>,
) {
    if metrics.is_empty() {
        return;
    }
    out.push(ResourceMetrics {
        resource: Some(Resource {
            attributes: r.attrs,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    });
}
