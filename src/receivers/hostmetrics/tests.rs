use super::*;
use crate::config::node::parse as yaml;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};

fn cfg(y: &str) -> Config {
    parse_config(&yaml(y).unwrap()).map_err(|e| e.msg).unwrap()
}

/// A host root with the `/proc` files the scrapers read, written as the kernel writes them.
fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let w = |p: &str, t: &str| {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    };
    w(
        "proc/stat",
        "cpu  300 0 100 600 0 0 0 0 0 0\ncpu0 200 0 50 250 0 0 0 0 0 0\ncpu1 100 0 50 350 0 0 0 0 0 0\nbtime 1700000000\nprocesses 900\nprocs_running 2\nprocs_blocked 1\n",
    );
    w(
        "proc/meminfo",
        "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 500 kB\nBuffers: 50 kB\nCached: 200 kB\nSReclaimable: 30 kB\nSUnreclaim: 20 kB\nSwapCached: 4 kB\nDirty: 8 kB\n",
    );
    w("proc/loadavg", "1.00 0.50 0.25 1/100 4242\n");
    w(
        "proc/net/dev",
        "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
    );
    w(
        "proc/net/tcp",
        "  sl local rem st\n 0: a b 0A 0\n 1: a b 01 0\n",
    );
    w(
        "proc/diskstats",
        " 253 0 vda 10 1 80 5 20 2 160 7 3 9 12 0 0 0 0\n   7 0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
    );
    w(
        "proc/swaps",
        "Filename Type Size Used Priority\n/swapfile file 2048 1024 -2\n",
    );
    w(
        "proc/vmstat",
        "pgpgin 11\npgpgout 12\npswpin 3\npswpout 4\npgfault 100\npgmajfault 7\n",
    );
    w("proc/uptime", "12345.67 999.00\n");
    w("proc/filesystems", "nodev\tproc\nnodev\ttmpfs\n\text4\n");
    // The fixture's own directory is the root file system: statvfs reads it for real.
    w(
        "proc/self/mounts",
        "/dev/vda / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\n",
    );
    d
}

fn values(rm: &ResourceMetrics, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let m: Vec<&Metric> = rm
        .scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .collect();
    assert!(m.len() <= 1, "{name} twice");
    let Some(m) = m.first() else { return vec![] };
    let points = match m.data.as_ref().unwrap() {
        Data::Sum(s) => &s.data_points,
        Data::Gauge(g) => &g.data_points,
        _ => panic!("{name}"),
    };
    let mut out: Vec<_> = points
        .iter()
        .map(|p| {
            let attrs: Vec<(String, String)> = p
                .attributes
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        crate::signal::value::option_text(&kv.value).into_owned(),
                    )
                })
                .collect();
            let v = match p.value.unwrap() {
                number_data_point::Value::AsInt(i) => i as f64,
                number_data_point::Value::AsDouble(d) => d,
            };
            (attrs, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn one(rm: &ResourceMetrics, name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
    values(rm, name)
        .into_iter()
        .find(|(a, _)| {
            attrs
                .iter()
                .all(|(k, v)| a.iter().any(|(ak, av)| ak == k && av == v))
        })
        .map(|(_, v)| v)
}

/// Every scraper over a fixture tree under `root_path`, with exact values.
#[test]
fn every_scraper_reads_the_root_path_exactly() {
    let root = fixture();
    let c = cfg(&format!(
        "root_path: {}\nscrapers:\n  cpu:\n    metrics: {{system.cpu.utilization: {{enabled: true}}, system.cpu.logical.count: {{enabled: true}}}}\n  memory:\n    metrics: {{system.memory.utilization: {{enabled: true}}}}\n  load: {{cpu_average: true}}\n  filesystem:\n  network:\n    exclude: {{interfaces: [lo], match_type: strict}}\n  disk:\n    exclude: {{devices: ['^loop'], match_type: regexp}}\n  paging:\n  processes:\n  system:\n",
        root.path().display()
    ));
    let host = scrapers::Host {
        root: root.path().to_owned(),
    };
    let mut cpu = scrapers::CpuState::default();
    let (rm, errors) = scrape(&c, &host, &mut cpu);
    assert!(errors.is_empty(), "{errors:?}");
    let hz = scrapers::clock_ticks();
    assert_eq!(
        one(
            &rm,
            "system.cpu.time",
            &[("cpu", "cpu0"), ("state", "user")]
        ),
        Some(200.0 / hz)
    );
    assert_eq!(values(&rm, "system.cpu.time").len(), 16);
    assert_eq!(one(&rm, "system.cpu.logical.count", &[]), Some(2.0));
    // Utilization needs two scrapes.
    assert!(values(&rm, "system.cpu.utilization").is_empty());
    let kib = 1024.0;
    for (state, v) in [
        ("used", 620.0),
        ("free", 100.0),
        ("buffered", 50.0),
        ("cached", 230.0),
        ("slab_reclaimable", 30.0),
        ("slab_unreclaimable", 20.0),
    ] {
        assert_eq!(
            one(&rm, "system.memory.usage", &[("state", state)]),
            Some(v * kib),
            "{state}"
        );
    }
    assert_eq!(
        one(&rm, "system.memory.utilization", &[("state", "used")]),
        Some(0.62)
    );
    assert_eq!(one(&rm, "system.cpu.load_average.1m", &[]), Some(0.5));
    assert_eq!(one(&rm, "system.cpu.load_average.15m", &[]), Some(0.125));
    // Only the real file system: proc and tmpfs are virtual.
    let fs = values(&rm, "system.filesystem.usage");
    assert_eq!(fs.len(), 3, "{fs:?}");
    assert!(
        fs.iter()
            .all(|(a, _)| a.contains(&("mountpoint".into(), "/".into()))
                && a.contains(&("mode".into(), "rw".into())))
    );
    assert!(one(&rm, "system.filesystem.usage", &[("state", "free")]).unwrap() > 0.0);
    assert_eq!(
        one(
            &rm,
            "system.network.io",
            &[("device", "eth0"), ("direction", "transmit")]
        ),
        Some(2000.0)
    );
    assert_eq!(
        one(
            &rm,
            "system.network.dropped",
            &[("device", "eth0"), ("direction", "receive")]
        ),
        Some(2.0)
    );
    assert_eq!(one(&rm, "system.network.io", &[("device", "lo")]), None);
    assert_eq!(
        one(&rm, "system.network.connections", &[("state", "LISTEN")]),
        Some(1.0)
    );
    assert_eq!(
        one(
            &rm,
            "system.disk.io",
            &[("device", "vda"), ("direction", "write")]
        ),
        Some(160.0 * 512.0)
    );
    assert_eq!(
        one(&rm, "system.disk.weighted_io_time", &[("device", "vda")]),
        Some(0.012)
    );
    assert_eq!(
        one(&rm, "system.disk.pending_operations", &[("device", "vda")]),
        Some(3.0)
    );
    assert_eq!(one(&rm, "system.disk.io", &[("device", "loop0")]), None);
    assert_eq!(
        one(
            &rm,
            "system.paging.usage",
            &[("device", "/swapfile"), ("state", "free")]
        ),
        Some(1024.0 * kib)
    );
    assert_eq!(
        one(&rm, "system.paging.faults", &[("type", "minor")]),
        Some(93.0)
    );
    assert_eq!(
        one(
            &rm,
            "system.paging.operations",
            &[("direction", "page_out"), ("type", "major")]
        ),
        Some(4.0)
    );
    assert_eq!(
        one(&rm, "system.processes.count", &[("status", "blocked")]),
        Some(1.0)
    );
    assert_eq!(one(&rm, "system.processes.created", &[]), Some(900.0));
    assert_eq!(one(&rm, "system.uptime", &[]), Some(12345.67));
    // Cumulative sums start at boot.
    let cpu_time = rm.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "system.cpu.time")
        .unwrap();
    let Some(Data::Sum(s)) = &cpu_time.data else {
        panic!()
    };
    assert_eq!(
        s.data_points[0].start_time_unix_nano,
        1_700_000_000_000_000_000
    );
    assert!(s.is_monotonic);

    // A second scrape, 100 more ticks on cpu0 of which 25 user: utilization 0.25.
    std::fs::write(
        root.path().join("proc/stat"),
        "cpu  0\ncpu0 225 0 50 325 0 0 0 0 0 0\ncpu1 100 0 50 350 0 0 0 0 0 0\nbtime 1700000000\n",
    )
    .unwrap();
    let (rm, _) = scrape(&c, &host, &mut cpu);
    assert_eq!(
        one(
            &rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "user")]
        ),
        Some(0.25)
    );
    assert_eq!(
        one(
            &rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "idle")]
        ),
        Some(0.75)
    );

    // A scraper whose file is gone fails alone.
    std::fs::remove_file(root.path().join("proc/loadavg")).unwrap();
    let (rm, errors) = scrape(&c, &host, &mut cpu);
    assert!(errors["load"].contains("loadavg"), "{errors:?}");
    assert!(one(&rm, "system.memory.usage", &[("state", "free")]).is_some());
}

#[test]
fn config_errors_name_the_key() {
    let e = |y: &str| {
        parse(&yaml(y).unwrap())
            .err()
            .map(|e| (e.path_string(), e.msg))
    };
    assert!(
        e("scrapers: {cpu: null, load: null}\ncollection_interval: 10s\nroot_path: /hostfs\n")
            .is_none()
    );
    let (p, m) = e("scrapers: {cpu: {metrics: {system.cpu.nope: {enabled: true}}}}\n").unwrap();
    assert_eq!(p, "scrapers.cpu.metrics.system.cpu.nope");
    assert!(m.contains("system.cpu.time"), "{m}");
    let (p, m) = e("scrapers: {process: {}}\n").unwrap();
    assert_eq!(p, "scrapers.process");
    assert!(m.contains("not built"), "{m}");
    assert_eq!(
        e("scrapers: {cpu: {cpu_average: true}}\n").unwrap().0,
        "scrapers.cpu.cpu_average"
    );
    assert_eq!(
        e("scrapers: {filesystem: {exclude_mount_points: {mount_points: ['('], match_type: regexp}}}\n").unwrap().0,
        "scrapers.filesystem.exclude_mount_points"
    );
    assert_eq!(e("scrapers: {}\n").unwrap().0, "scrapers");
    assert!(e("scrapers: {cpu: {}}\ncollection_interval: 0s\n").is_some());
}
