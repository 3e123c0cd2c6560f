//! The `process` scraper: one resource per process (`process.pid`, `process.executable.name`,
//! ..., as the Collector's `metadata.yaml` names them) with its CPU, memory, disk, paging,
//! thread, file descriptor and context switch figures from `/proc/<pid>/`. Processes are chosen
//! by executable name (`include`, `exclude`); a process that cannot be fully read counts as an
//! error of the scrape unless that kind of error is muted, as in the Collector (a kernel thread
//! has no executable: `mute_process_exe_error`; another user's I/O counters need privileges:
//! `mute_process_io_error`).

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::ScraperConfig;
use super::procfs;
use super::scrapers::{Host, Num, clock_ticks};
use crate::signal::build::{MetricBuilder, enabled};

/// The scraper's metrics and whether the Collector enables them by default.
pub const METRICS: &[(&str, bool)] = &[
    ("process.cpu.time", true),
    ("process.disk.io", true),
    ("process.memory.usage", true),
    ("process.memory.virtual", true),
    ("process.context_switches", false),
    ("process.cpu.utilization", false),
    ("process.disk.operations", false),
    ("process.handles", false),
    ("process.memory.utilization", false),
    ("process.open_file_descriptors", false),
    ("process.paging.faults", false),
    ("process.signals_pending", false),
    ("process.threads", false),
    ("process.uptime", false),
];

/// Its resource attributes and their defaults.
pub const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("process.pid", true),
    ("process.parent_pid", true),
    ("process.executable.name", true),
    ("process.executable.path", true),
    ("process.command", true),
    ("process.command_line", true),
    ("process.owner", true),
    ("process.cgroup", false),
];

/// CPU seconds (user, system, wait) of each process at the last scrape, for
/// `process.cpu.utilization`; keyed by pid and start time so that a reused pid starts over.
#[derive(Default)]
pub struct ProcessState {
    last: HashMap<(u32, u64), (u64, [f64; 3])>,
}

/// What went wrong reading processes in one scrape: how many reads failed, and the first.
#[derive(Default)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, muted: bool, what: impl FnOnce() -> String) {
        if muted {
            return;
        }
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(what());
        }
    }
}

fn int_kv(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// One scrape: a resource per chosen process, and a summary of the reads that failed.
pub fn scrape(
    cfg: &ScraperConfig,
    host: &Host,
    boot_time: u64,
    now: u64,
    state: &mut ProcessState,
    scope: &InstrumentationScope,
) -> (Vec<ResourceMetrics>, Result<(), String>) {
    let all = cfg.mute_process_all_errors;
    let on = |m: &str| enabled(&cfg.metrics, METRICS, m);
    let attr_on = |a: &str| enabled(&cfg.resource_attributes, RESOURCE_ATTRIBUTES, a);
    let hz = clock_ticks();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let users = if attr_on("process.owner") {
        host.read("/etc/passwd")
            .map(|t| procfs::passwd(&t))
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    let mem_total = if on("process.memory.utilization") {
        host.read("/proc/meminfo")
            .ok()
            .and_then(|t| procfs::meminfo(&t).get("MemTotal").copied())
    } else {
        None
    };
    let dir = match std::fs::read_dir(host.path("/proc")) {
        Ok(d) => d,
        Err(e) => return (Vec::new(), Err(format!("/proc: {e}"))),
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let delay_ms = cfg.scrape_process_delay.map_or(0, |d| d.as_millis() as u64);
    let mut fail = Failures::default();
    let mut out = Vec::new();
    let mut seen = HashSet::with_capacity(pids.len());
    for pid in pids {
        let base = format!("/proc/{pid}");
        // A process that ended since the listing is not an error.
        let Some(st) = host
            .read(&format!("{base}/stat"))
            .ok()
            .and_then(|t| procfs::pid_stat(&t))
        else {
            continue;
        };
        let status = match host.read(&format!("{base}/status")) {
            Ok(t) => procfs::pid_status(&t),
            Err(e) => {
                fail.add(all || cfg.mute_process_name_error, || {
                    format!("error reading process name for pid {pid}: {e}")
                });
                continue;
            }
        };
        let name = status.name.as_str();
        if cfg.include.as_ref().is_some_and(|f| !f.matches(name))
            || cfg.exclude.as_ref().is_some_and(|f| f.matches(name))
        {
            continue;
        }
        let created_ms = boot_time * 1000 + (st.starttime as f64 * 1000.0 / hz) as u64;
        let now_ms = now / 1_000_000;
        if delay_ms > 0 && now_ms.saturating_sub(created_ms) < delay_ms {
            continue;
        }
        seen.insert((pid, st.starttime));
        let mut attrs = Vec::new();
        if attr_on("process.pid") {
            attrs.push(int_kv("process.pid", pid.into()));
        }
        if attr_on("process.parent_pid") {
            attrs.push(int_kv("process.parent_pid", st.ppid));
        }
        if attr_on("process.executable.name") {
            attrs.push(crate::signal::value::string_kv(
                "process.executable.name",
                name,
            ));
        }
        if attr_on("process.executable.path") {
            match std::fs::read_link(host.path(&format!("{base}/exe"))) {
                Ok(p) => attrs.push(crate::signal::value::string_kv(
                    "process.executable.path",
                    &p.to_string_lossy(),
                )),
                Err(e) => fail.add(all || cfg.mute_process_exe_error, || {
                    format!("error reading process executable for pid {pid}: {e}")
                }),
            }
        }
        if attr_on("process.command") || attr_on("process.command_line") {
            match std::fs::read(host.path(&format!("{base}/cmdline"))) {
                Ok(raw) => {
                    let args: Vec<String> = raw
                        .split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    if let Some(first) = args.first()
                        && attr_on("process.command")
                    {
                        attrs.push(crate::signal::value::string_kv("process.command", first));
                    }
                    if !args.is_empty() && attr_on("process.command_line") {
                        attrs.push(crate::signal::value::string_kv(
                            "process.command_line",
                            &args.join(" "),
                        ));
                    }
                }
                Err(e) => fail.add(all, || {
                    format!("error reading command for process {name:?} (pid {pid}): {e}")
                }),
            }
        }
        if attr_on("process.owner") {
            match status.uid.and_then(|u| users.get(&u)) {
                Some(u) => attrs.push(crate::signal::value::string_kv("process.owner", u)),
                None => fail.add(all || cfg.mute_process_user_error, || {
                    format!(
                        "error reading username for process {name:?} (pid {pid}): unknown uid {:?}",
                        status.uid
                    )
                }),
            }
        }
        if attr_on("process.cgroup") {
            match host.read(&format!("{base}/cgroup")) {
                Ok(t) => {
                    // cgroup v2's one line `0::/path`; else the first hierarchy's path.
                    let path = t
                        .lines()
                        .find_map(|l| l.strip_prefix("0::"))
                        .or_else(|| t.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))
                        .unwrap_or("");
                    attrs.push(crate::signal::value::string_kv("process.cgroup", path));
                }
                Err(e) => fail.add(all || cfg.mute_process_cgroup_error, || {
                    format!("error reading cgroup for process {name:?} (pid {pid}): {e}")
                }),
            }
        }
        let mut b = MetricBuilder {
            toggles: &cfg.metrics,
            defaults: METRICS,
            now,
            start: created_ms * 1_000_000,
            out: Vec::new(),
        };
        let cpu = [
            st.utime as f64 / hz,
            st.stime as f64 / hz,
            st.blkio_ticks as f64 / hz,
        ];
        const STATES: [&str; 3] = ["user", "system", "wait"];
        b.sum(
            "process.cpu.time",
            "s",
            "Total CPU seconds broken down by different states.",
            true,
            STATES
                .iter()
                .zip(cpu)
                .map(|(s, v)| (vec![("state", *s)], Num::from(v)))
                .collect(),
        );
        if let Some((at, prev)) = state.last.get(&(pid, st.starttime))
            && now > *at
        {
            let elapsed = (now - at) as f64 / 1e9;
            b.gauge(
                "process.cpu.utilization",
                "1",
                "Percentage of total CPU time used by the process since last scrape, expressed as a value between 0 and 1. On the first scrape, no data point is emitted for this metric.",
                STATES
                    .iter()
                    .zip(cpu.iter().zip(prev))
                    .map(|(s, (c, p))| (vec![("state", *s)], Num::from((c - p).max(0.0) / elapsed)))
                    .collect(),
            );
        }
        state.last.insert((pid, st.starttime), (now, cpu));
        if on("process.memory.usage")
            || on("process.memory.virtual")
            || on("process.memory.utilization")
        {
            // statm, as the Collector reads it (and `ps`): stat's rss field lags behind.
            match host
                .read(&format!("{base}/statm"))
                .map(|t| procfs::pid_statm(&t))
            {
                Ok(Some((size, resident))) => {
                    let rss = resident * page;
                    b.sum1(
                        "process.memory.usage",
                        "By",
                        "The amount of physical memory in use.",
                        false,
                        Some(Num::from(rss)),
                    );
                    b.sum1(
                        "process.memory.virtual",
                        "By",
                        "Virtual memory size.",
                        false,
                        Some(Num::from(size * page)),
                    );
                    // As the Collector (gopsutil's MemoryPercent): a percentage, 0-100.
                    b.gauge1(
                        "process.memory.utilization",
                        "1",
                        "Percentage of total physical memory that is used by the process.",
                        mem_total
                            .filter(|t| *t > 0)
                            .map(|t| Num::from(100.0 * rss as f64 / t as f64)),
                    );
                }
                Ok(None) => fail.add(all, || format!("{base}/statm: not a statm line")),
                Err(e) => fail.add(all, || {
                    format!("error reading memory info for process {name:?} (pid {pid}): {e}")
                }),
            }
        }
        if on("process.disk.io") || on("process.disk.operations") {
            match host.read(&format!("{base}/io")) {
                Ok(t) => {
                    let io = procfs::pid_io(&t);
                    b.sum(
                        "process.disk.io",
                        "By",
                        "Disk bytes transferred.",
                        true,
                        vec![
                            (vec![("direction", "read")], Num::from(io.read_bytes)),
                            (vec![("direction", "write")], Num::from(io.write_bytes)),
                        ],
                    );
                    b.sum(
                        "process.disk.operations",
                        "{operations}",
                        "Number of disk operations performed by the process.",
                        true,
                        vec![
                            (vec![("direction", "read")], Num::from(io.syscr)),
                            (vec![("direction", "write")], Num::from(io.syscw)),
                        ],
                    );
                }
                Err(e) => fail.add(all || cfg.mute_process_io_error, || {
                    format!("error reading disk usage for process {name:?} (pid {pid}): {e}")
                }),
            }
        }
        b.sum(
            "process.paging.faults",
            "{faults}",
            "Number of page faults the process has made.",
            true,
            vec![
                (vec![("type", "major")], Num::from(st.majflt)),
                (vec![("type", "minor")], Num::from(st.minflt)),
            ],
        );
        b.sum1(
            "process.threads",
            "{threads}",
            "Process threads count.",
            false,
            Some(Num::from(st.num_threads)),
        );
        if let (Some(inv), Some(vol)) = (status.involuntary_switches, status.voluntary_switches) {
            b.sum(
                "process.context_switches",
                "{count}",
                "Number of times the process has been context switched.",
                true,
                vec![
                    (vec![("type", "involuntary")], Num::from(inv)),
                    (vec![("type", "voluntary")], Num::from(vol)),
                ],
            );
        }
        if on("process.open_file_descriptors") {
            match std::fs::read_dir(host.path(&format!("{base}/fd"))) {
                Ok(d) => b.sum1(
                    "process.open_file_descriptors",
                    "{count}",
                    "Number of file descriptors in use by the process.",
                    false,
                    Some(Num::from(d.count() as u64)),
                ),
                Err(e) => fail.add(all, || {
                    format!("error reading open file descriptor count for process {name:?} (pid {pid}): {e}")
                }),
            }
        }
        b.sum1(
            "process.signals_pending",
            "{signals}",
            "Number of pending signals for the process.",
            false,
            status.signals_queued.map(Num::from),
        );
        b.gauge1(
            "process.uptime",
            "s",
            "The time the process has been running.",
            Some(Num::from(now_ms.saturating_sub(created_ms) as f64 / 1000.0)),
        );
        out.push(ResourceMetrics {
            resource: Some(Resource {
                attributes: attrs,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope.clone()),
                metrics: b.out,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    // Forget the processes that ended.
    state.last.retain(|k, _| seen.contains(k));
    let r = match fail.first {
        None => Ok(()),
        Some(first) if fail.count == 1 => Err(first),
        Some(first) => Err(format!(
            "{} process reads failed; the first: {first}",
            fail.count
        )),
    };
    (out, r)
}
