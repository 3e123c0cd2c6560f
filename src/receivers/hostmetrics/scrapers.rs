//! The scrapers: each reads its `/proc` files (under `root_path`) and writes the Collector's
//! metrics, named, typed and attributed as its `metadata.yaml` has them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::signal::build::MetricBuilder;
pub use crate::signal::build::Num;

use super::config::{NameFilter, ScraperConfig};
use super::procfs;

/// Each scraper's metrics and whether the Collector enables them by default.
pub const METRICS: &[(&str, &[(&str, bool)])] = &[
    (
        "cpu",
        &[
            ("system.cpu.time", true),
            ("system.cpu.utilization", false),
            ("system.cpu.frequency", false),
            ("system.cpu.logical.count", false),
            ("system.cpu.physical.count", false),
        ],
    ),
    (
        "memory",
        &[
            ("system.memory.usage", true),
            ("system.memory.utilization", false),
            ("system.memory.limit", false),
            ("system.memory.page_size", false),
            ("system.linux.memory.available", false),
            ("system.linux.memory.dirty", false),
        ],
    ),
    (
        "load",
        &[
            ("system.cpu.load_average.1m", true),
            ("system.cpu.load_average.5m", true),
            ("system.cpu.load_average.15m", true),
        ],
    ),
    (
        "filesystem",
        &[
            ("system.filesystem.usage", true),
            ("system.filesystem.inodes.usage", true),
            ("system.filesystem.utilization", false),
        ],
    ),
    (
        "network",
        &[
            ("system.network.io", true),
            ("system.network.packets", true),
            ("system.network.errors", true),
            ("system.network.dropped", true),
            ("system.network.connections", true),
            ("system.network.conntrack.count", false),
            ("system.network.conntrack.max", false),
        ],
    ),
    (
        "disk",
        &[
            ("system.disk.io", true),
            ("system.disk.operations", true),
            ("system.disk.io_time", true),
            ("system.disk.operation_time", true),
            ("system.disk.weighted_io_time", true),
            ("system.disk.pending_operations", true),
            ("system.disk.merged", true),
        ],
    ),
    (
        "paging",
        &[
            ("system.paging.usage", true),
            ("system.paging.operations", true),
            ("system.paging.faults", true),
            ("system.paging.utilization", false),
        ],
    ),
    (
        "processes",
        &[
            ("system.processes.count", true),
            ("system.processes.created", true),
        ],
    ),
    ("system", &[("system.uptime", true)]),
];

pub fn known(scraper: &str) -> Option<&'static [(&'static str, bool)]> {
    METRICS.iter().find(|(s, _)| *s == scraper).map(|(_, m)| *m)
}

/// Where the scrapers read: `/` or the host's root mounted into a container.
#[derive(Clone)]
pub struct Host {
    pub root: PathBuf,
}

impl Host {
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn read(&self, p: &str) -> Result<String, String> {
        let path = self.path(p);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Builds one scraper's metrics: its options beside the shared builder (which writes the
/// enabled metrics only, with the scrape's time and the start time of cumulative sums).
pub struct Emitter<'a> {
    pub cfg: &'a ScraperConfig,
    pub b: MetricBuilder<'a>,
}

impl<'a> std::ops::Deref for Emitter<'a> {
    type Target = MetricBuilder<'a>;
    fn deref(&self) -> &Self::Target {
        &self.b
    }
}

impl std::ops::DerefMut for Emitter<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.b
    }
}

/// Clock ticks per second of `/proc/stat`.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// What the cpu scraper keeps between scrapes for `system.cpu.utilization`.
#[derive(Default)]
pub struct CpuState {
    last: HashMap<String, [u64; 8]>,
}

pub fn cpu(e: &mut Emitter<'_>, host: &Host, stat: &procfs::Stat, state: &mut CpuState) {
    let hz = clock_ticks();
    let mut time = Vec::new();
    let mut util = Vec::new();
    for c in &stat.cpus {
        for (i, st) in procfs::CPU_STATES.iter().enumerate() {
            time.push((
                vec![("cpu", c.cpu.as_str()), ("state", *st)],
                Num::from(c.ticks[i] as f64 / hz),
            ));
        }
        if let Some(prev) = state.last.get(&c.cpu) {
            let d: Vec<u64> = c
                .ticks
                .iter()
                .zip(prev)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            let total: u64 = d.iter().sum();
            if total > 0 {
                for (i, st) in procfs::CPU_STATES.iter().enumerate() {
                    util.push((
                        vec![("cpu", c.cpu.as_str()), ("state", *st)],
                        Num::from(d[i] as f64 / total as f64),
                    ));
                }
            }
        }
    }
    e.sum(
        "system.cpu.time",
        "s",
        "Total seconds each logical CPU spent on each mode.",
        true,
        time,
    );
    e.gauge(
        "system.cpu.utilization",
        "1",
        "Difference in system.cpu.time since the last measurement per logical CPU, divided by the elapsed time (value in interval [0,1]).",
        util,
    );
    state.last = stat.cpus.iter().map(|c| (c.cpu.clone(), c.ticks)).collect();
    e.sum(
        "system.cpu.logical.count",
        "{cpu}",
        "Number of available logical CPUs.",
        false,
        vec![(vec![], Num::from(stat.cpus.len() as u64))],
    );
    if e.on("system.cpu.frequency") || e.on("system.cpu.physical.count") {
        let (mhz, cores) = host
            .read("/proc/cpuinfo")
            .map(|t| procfs::cpuinfo(&t))
            .unwrap_or_default();
        let names: Vec<String> = (0..mhz.len()).map(|i| format!("cpu{i}")).collect();
        let freq = mhz
            .iter()
            .zip(&names)
            .map(|(m, n)| (vec![("cpu", n.as_str())], Num::from(m * 1e6)))
            .collect();
        e.gauge(
            "system.cpu.frequency",
            "Hz",
            "Current frequency of the CPU core in Hz.",
            freq,
        );
        e.sum(
            "system.cpu.physical.count",
            "{cpu}",
            "Number of available physical CPUs.",
            false,
            vec![(vec![], Num::from(cores as u64))],
        );
    }
}

pub fn memory(e: &mut Emitter<'_>, host: &Host) -> Result<(), String> {
    let m = procfs::meminfo(&host.read("/proc/meminfo")?);
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    let total = g("MemTotal");
    // As the Collector (gopsutil) counts them: reclaimable slab is part of `cached`, and
    // used, free, buffered and cached add up to the total.
    let cached = g("Cached") + g("SReclaimable");
    let used = total.saturating_sub(g("MemFree") + g("Buffers") + cached);
    let states = [
        ("used", used),
        ("free", g("MemFree")),
        ("buffered", g("Buffers")),
        ("cached", cached),
        ("slab_reclaimable", g("SReclaimable")),
        ("slab_unreclaimable", g("SUnreclaim")),
    ];
    let usage = states
        .iter()
        .map(|(s, v)| (vec![("state", *s)], Num::from(*v)))
        .collect();
    e.sum(
        "system.memory.usage",
        "By",
        "Bytes of memory in use.",
        false,
        usage,
    );
    if total > 0 {
        let util = states
            .iter()
            .map(|(s, v)| (vec![("state", *s)], Num::from(*v as f64 / total as f64)))
            .collect();
        e.gauge(
            "system.memory.utilization",
            "1",
            "Percentage of memory bytes in use.",
            util,
        );
    }
    e.sum(
        "system.memory.limit",
        "By",
        "Total bytes of memory available.",
        false,
        vec![(vec![], Num::from(total))],
    );
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    e.gauge(
        "system.memory.page_size",
        "By",
        "A constant value for the system's configured page size.",
        vec![(vec![], Num::from(page))],
    );
    e.sum("system.linux.memory.available", "By", "An estimate of how much memory is available for starting new applications, without swapping.", false, vec![(vec![], Num::from(g("MemAvailable")))]);
    e.sum(
        "system.linux.memory.dirty",
        "By",
        "The amount of dirty memory according to `/proc/meminfo`.",
        false,
        vec![(vec![], Num::from(g("Dirty")))],
    );
    Ok(())
}

pub fn load(e: &mut Emitter<'_>, host: &Host, cpus: usize) -> Result<(), String> {
    let text = host.read("/proc/loadavg")?;
    let l = procfs::loadavg(&text).ok_or_else(|| format!("/proc/loadavg: cannot read {text:?}"))?;
    let div = if e.cfg.cpu_average && cpus > 0 {
        cpus as f64
    } else {
        1.0
    };
    for (name, v) in ["1m", "5m", "15m"].iter().zip(l) {
        e.gauge(
            &format!("system.cpu.load_average.{name}"),
            "{thread}",
            &format!("Average CPU Load over {name}."),
            vec![(vec![], Num::from(v / div))],
        );
    }
    Ok(())
}

/// Include and exclude lists of one kind (devices, types, mount points, interfaces).
pub fn passes(include: &Option<NameFilter>, exclude: &Option<NameFilter>, name: &str) -> bool {
    include.as_ref().is_none_or(|f| f.matches(name))
        && !exclude.as_ref().is_some_and(|f| f.matches(name))
}

pub fn filesystem(e: &mut Emitter<'_>, host: &Host) -> Result<(), String> {
    let c = e.cfg;
    let text = host
        .read("/proc/1/mounts")
        .or_else(|_| host.read("/proc/self/mounts"))?;
    let virtual_types = host
        .read("/proc/filesystems")
        .map(|t| procfs::virtual_fs_types(&t))
        .unwrap_or_default();
    let mut usage = Vec::new();
    let mut inodes = Vec::new();
    let mut util = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // A later mount on the same point hides the earlier ones: keep the last of each.
    let mut mounts = procfs::mounts(&text);
    mounts.reverse();
    mounts.retain(|m| seen.insert(m.mountpoint.clone()));
    mounts.reverse();
    let rows: Vec<_> = mounts
        .into_iter()
        .filter(|m| c.include_virtual_filesystems || !virtual_types.contains(&m.fs_type))
        .filter(|m| passes(&c.include_devices, &c.exclude_devices, &m.device))
        .filter(|m| passes(&c.include_fs_types, &c.exclude_fs_types, &m.fs_type))
        .filter(|m| {
            passes(
                &c.include_mount_points,
                &c.exclude_mount_points,
                &m.mountpoint,
            )
        })
        .filter_map(|m| statvfs(&host.path(&m.mountpoint)).map(|s| (m, s)))
        .collect();
    for (m, s) in &rows {
        let mode = if m.read_only { "ro" } else { "rw" };
        let base = [
            ("device", m.device.as_str()),
            ("mode", mode),
            ("mountpoint", m.mountpoint.as_str()),
            ("type", m.fs_type.as_str()),
        ];
        let with = |state: &'static str| {
            let mut a = base.to_vec();
            a.push(("state", state));
            a
        };
        let used = s.blocks.saturating_sub(s.bfree) * s.frsize;
        let free = s.bavail * s.frsize;
        let reserved = s.bfree.saturating_sub(s.bavail) * s.frsize;
        usage.push((with("used"), Num::from(used)));
        usage.push((with("free"), Num::from(free)));
        usage.push((with("reserved"), Num::from(reserved)));
        inodes.push((with("used"), Num::from(s.files.saturating_sub(s.ffree))));
        inodes.push((with("free"), Num::from(s.ffree)));
        if used + free > 0 {
            util.push((base.to_vec(), Num::from(used as f64 / (used + free) as f64)));
        }
    }
    e.sum(
        "system.filesystem.usage",
        "By",
        "Filesystem bytes used.",
        false,
        usage,
    );
    e.sum(
        "system.filesystem.inodes.usage",
        "{inodes}",
        "FileSystem inodes used.",
        false,
        inodes,
    );
    e.gauge(
        "system.filesystem.utilization",
        "1",
        "Fraction of filesystem bytes used.",
        util,
    );
    Ok(())
}

pub struct Statvfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub frsize: u64,
    pub files: u64,
    pub ffree: u64,
}

fn statvfs(path: &Path) -> Option<Statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a pointer to a local struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(Statvfs {
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        frsize: if s.f_frsize > 0 {
            s.f_frsize
        } else {
            s.f_bsize
        },
        files: s.f_files,
        ffree: s.f_ffree,
    })
}

pub fn network(e: &mut Emitter<'_>, host: &Host) -> Result<(), String> {
    let c = e.cfg;
    let devs: Vec<_> = procfs::net_dev(&host.read("/proc/net/dev")?)
        .into_iter()
        .filter(|d| passes(&c.include, &c.exclude, &d.device))
        .collect();
    let series = |i: usize| {
        let mut v = Vec::new();
        for d in &devs {
            v.push((
                vec![("device", d.device.as_str()), ("direction", "receive")],
                Num::from(d.rx[i]),
            ));
            v.push((
                vec![("device", d.device.as_str()), ("direction", "transmit")],
                Num::from(d.tx[i]),
            ));
        }
        v
    };
    e.sum(
        "system.network.io",
        "By",
        "The number of bytes transmitted and received.",
        true,
        series(0),
    );
    e.sum(
        "system.network.packets",
        "{packets}",
        "The number of packets transferred.",
        true,
        series(1),
    );
    e.sum(
        "system.network.errors",
        "{errors}",
        "The number of errors encountered.",
        true,
        series(2),
    );
    e.sum(
        "system.network.dropped",
        "{packets}",
        "The number of packets dropped.",
        true,
        series(3),
    );
    if e.on("system.network.connections") {
        let mut counts = HashMap::new();
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(t) = host.read(f) {
                procfs::tcp_states(&t, &mut counts);
            }
        }
        let mut states: Vec<_> = counts.into_iter().collect();
        states.sort();
        let points = states
            .into_iter()
            .map(|(s, n)| (vec![("protocol", "tcp"), ("state", s)], Num::from(n)))
            .collect();
        e.sum(
            "system.network.connections",
            "{connections}",
            "The number of connections.",
            false,
            points,
        );
    }
    let one = |f: &str| host.read(f).ok().and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(n) = one("/proc/sys/net/netfilter/nf_conntrack_count") {
        e.sum(
            "system.network.conntrack.count",
            "{entries}",
            "The count of entries in conntrack table.",
            false,
            vec![(vec![], Num::from(n))],
        );
    }
    if let Some(n) = one("/proc/sys/net/netfilter/nf_conntrack_max") {
        e.sum(
            "system.network.conntrack.max",
            "{entries}",
            "The limit for entries in the conntrack table.",
            false,
            vec![(vec![], Num::from(n))],
        );
    }
    Ok(())
}

pub fn disk(e: &mut Emitter<'_>, host: &Host) -> Result<(), String> {
    let c = e.cfg;
    let disks: Vec<_> = procfs::diskstats(&host.read("/proc/diskstats")?)
        .into_iter()
        .filter(|d| passes(&c.include, &c.exclude, &d.device))
        .collect();
    let rw = |r: &dyn Fn(&procfs::DiskStat) -> Num, w: &dyn Fn(&procfs::DiskStat) -> Num| {
        let mut v = Vec::new();
        for d in &disks {
            v.push((
                vec![("device", d.device.as_str()), ("direction", "read")],
                r(d),
            ));
            v.push((
                vec![("device", d.device.as_str()), ("direction", "write")],
                w(d),
            ));
        }
        v
    };
    let one = |f: &dyn Fn(&procfs::DiskStat) -> Num| {
        disks
            .iter()
            .map(|d| (vec![("device", d.device.as_str())], f(d)))
            .collect::<Vec<_>>()
    };
    let secs = |ms: u64| Num::from(ms as f64 / 1000.0);
    e.sum(
        "system.disk.io",
        "By",
        "Disk bytes transferred.",
        true,
        rw(&|d| Num::from(d.sectors_read * 512), &|d| {
            Num::from(d.sectors_written * 512)
        }),
    );
    e.sum(
        "system.disk.operations",
        "{operations}",
        "Disk operations count.",
        true,
        rw(&|d| Num::from(d.reads), &|d| Num::from(d.writes)),
    );
    e.sum("system.disk.io_time", "s", "Time disk spent activated. On Windows, this is calculated as the inverse of disk idle time.", true, one(&|d| secs(d.io_ms)));
    e.sum(
        "system.disk.operation_time",
        "s",
        "Time spent in disk operations.",
        true,
        rw(&|d| secs(d.read_ms), &|d| secs(d.write_ms)),
    );
    e.sum(
        "system.disk.weighted_io_time",
        "s",
        "Time disk spent activated multiplied by the queue length.",
        true,
        one(&|d| secs(d.weighted_ms)),
    );
    e.sum(
        "system.disk.pending_operations",
        "{operations}",
        "The queue size of pending I/O operations.",
        false,
        one(&|d| Num::from(d.in_progress)),
    );
    e.sum(
        "system.disk.merged",
        "{operations}",
        "The number of disk reads/writes merged into single physical disk access operations.",
        true,
        rw(&|d| Num::from(d.reads_merged), &|d| {
            Num::from(d.writes_merged)
        }),
    );
    Ok(())
}

pub fn paging(e: &mut Emitter<'_>, host: &Host) -> Result<(), String> {
    let swaps = procfs::swaps(&host.read("/proc/swaps").unwrap_or_default());
    let mem = procfs::meminfo(&host.read("/proc/meminfo")?);
    let mut usage = Vec::new();
    let mut util = Vec::new();
    for (dev, size, used) in &swaps {
        let free = size.saturating_sub(*used);
        usage.push((
            vec![("device", dev.as_str()), ("state", "used")],
            Num::from(*used),
        ));
        usage.push((
            vec![("device", dev.as_str()), ("state", "free")],
            Num::from(free),
        ));
        if *size > 0 {
            util.push((
                vec![("device", dev.as_str()), ("state", "used")],
                Num::from(*used as f64 / *size as f64),
            ));
            util.push((
                vec![("device", dev.as_str()), ("state", "free")],
                Num::from(free as f64 / *size as f64),
            ));
        }
    }
    if let Some(c) = mem.get("SwapCached").filter(|_| !swaps.is_empty()) {
        usage.push((vec![("device", ""), ("state", "cached")], Num::from(*c)));
    }
    e.sum(
        "system.paging.usage",
        "By",
        "Swap (unix) or pagefile (windows) usage.",
        false,
        usage,
    );
    e.gauge(
        "system.paging.utilization",
        "1",
        "Swap (unix) or pagefile (windows) utilization.",
        util,
    );
    let vm: BTreeMap<String, u64> = host
        .read("/proc/vmstat")?
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect();
    let g = |k: &str| vm.get(k).copied().unwrap_or(0);
    e.sum(
        "system.paging.operations",
        "{operations}",
        "The number of paging operations.",
        true,
        vec![
            (
                vec![("direction", "page_in"), ("type", "major")],
                Num::from(g("pswpin")),
            ),
            (
                vec![("direction", "page_out"), ("type", "major")],
                Num::from(g("pswpout")),
            ),
            (
                vec![("direction", "page_in"), ("type", "minor")],
                Num::from(g("pgpgin")),
            ),
            (
                vec![("direction", "page_out"), ("type", "minor")],
                Num::from(g("pgpgout")),
            ),
        ],
    );
    e.sum(
        "system.paging.faults",
        "{faults}",
        "The number of page faults.",
        true,
        vec![
            (vec![("type", "major")], Num::from(g("pgmajfault"))),
            (
                vec![("type", "minor")],
                Num::from(g("pgfault").saturating_sub(g("pgmajfault"))),
            ),
        ],
    );
    Ok(())
}

pub fn processes(e: &mut Emitter<'_>, stat: &procfs::Stat) {
    e.sum(
        "system.processes.count",
        "{processes}",
        "Total number of processes in each state.",
        false,
        vec![
            (vec![("status", "running")], Num::from(stat.procs_running)),
            (vec![("status", "blocked")], Num::from(stat.procs_blocked)),
        ],
    );
    e.sum(
        "system.processes.created",
        "{processes}",
        "Total number of created processes.",
        true,
        vec![(vec![], Num::from(stat.processes_created))],
    );
}

pub fn system(e: &mut Emitter<'_>, host: &Host) -> Result<(), String> {
    let text = host.read("/proc/uptime")?;
    let up: f64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("/proc/uptime: cannot read {text:?}"))?;
    e.gauge(
        "system.uptime",
        "s",
        "The time the system has been running.",
        vec![(vec![], Num::from(up))],
    );
    Ok(())
}
