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
    let mut state = State::default();
    let (rms, errors) = scrape(&c, &host, &mut state);
    assert_eq!(rms.len(), 1, "one host resource");
    let rm = rms.into_iter().next().unwrap();
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
    let (rm, _) = scrape(&c, &host, &mut state);
    let rm = &rm[0];
    assert_eq!(
        one(
            rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "user")]
        ),
        Some(0.25)
    );
    assert_eq!(
        one(
            rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "idle")]
        ),
        Some(0.75)
    );

    // A scraper whose file is gone fails alone.
    std::fs::remove_file(root.path().join("proc/loadavg")).unwrap();
    let (rm, errors) = scrape(&c, &host, &mut state);
    assert!(errors["load"].contains("loadavg"), "{errors:?}");
    assert!(one(&rm[0], "system.memory.usage", &[("state", "free")]).is_some());
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
    assert!(e("scrapers: {process: {include: {names: [nginx], match_type: strict}, mute_process_exe_error: true, scrape_process_delay: 10s, resource_attributes: {process.cgroup: {enabled: true}}}}\n").is_none());
    let (p, m) =
        e("scrapers: {process: {resource_attributes: {host.name: {enabled: true}}}}\n").unwrap();
    assert_eq!(p, "scrapers.process.resource_attributes.host.name");
    assert!(m.contains("process.pid"), "{m}");
    let (p, _) = e("scrapers: {cpu: {mute_process_io_error: true}}\n").unwrap();
    assert_eq!(p, "scrapers.cpu.mute_process_io_error");
    let (p, m) = e("scrapers: {moon: {}}\n").unwrap();
    assert_eq!(p, "scrapers.moon");
    assert!(m.contains("process"), "{m}");
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

/// The process scraper over a fixture `/proc/<pid>/` tree (as the kernel writes it), with the
/// owner from the root's `/etc/passwd`, exactly.
#[test]
fn process_scraper_reads_each_process_exactly() {
    let root = fixture();
    let w = |p: &str, t: &[u8]| {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    };
    let hz = scrapers::clock_ticks() as u64;
    // Started 10 s after boot; 2.5 s user, 0.5 s system, 0.09 s waiting on block I/O.
    let stat = |pid: u32, ppid: u32, comm: &str| {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1500 0 7 0 {} {} 0 0 20 0 3 0 {} 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 {} 0 0\n",
            hz * 5 / 2,
            hz / 2,
            hz * 10,
            hz * 9 / 100
        )
    };
    w("proc/4242/stat", stat(4242, 1, "web (main)").as_bytes());
    w("proc/4242/status", b"Name:\tweb (main)\nUid:\t1000\t1000\t1000\t1000\nSigQ:\t1/63340\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t5\n");
    w("proc/4242/cmdline", b"/opt/web/bin/web\0--port\x008080\0");
    w("proc/4242/statm", b"25600 2560 500 10 0 900 0\n");
    w("proc/2/statm", b"0 0 0 0 0 0 0\n");
    w(
        "proc/4242/io",
        b"rchar: 1\nwchar: 2\nsyscr: 30\nsyscw: 40\nread_bytes: 4096\nwrite_bytes: 8192\n",
    );
    w("proc/4242/cgroup", b"0::/kubepods/pod1/web\n");
    for fd in ["0", "1", "2"] {
        w(&format!("proc/4242/fd/{fd}"), b"");
    }
    std::os::unix::fs::symlink("/opt/web/bin/web", root.path().join("proc/4242/exe")).unwrap();
    // A kernel thread: no executable, no command line, no I/O file readable.
    w("proc/2/stat", stat(2, 0, "kthreadd").as_bytes());
    w("proc/2/status", b"Name:\tkthreadd\nUid:\t0\t0\t0\t0\n");
    w("proc/2/cmdline", b"");
    w("proc/2/io", b"read_bytes: 0\nwrite_bytes: 0\n");
    // Excluded by name.
    w("proc/77/stat", stat(77, 1, "sshd").as_bytes());
    w("proc/77/status", b"Name:\tsshd\nUid:\t0\t0\t0\t0\n");
    w(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\nweb:x:1000:1000::/home/web:/bin/sh\n",
    );
    let c = cfg(&format!(
        "root_path: {}\nscrapers:\n  process:\n    exclude: {{names: ['^ssh'], match_type: regexp}}\n    metrics:\n      process.threads: {{enabled: true}}\n      process.paging.faults: {{enabled: true}}\n      process.context_switches: {{enabled: true}}\n      process.open_file_descriptors: {{enabled: true}}\n      process.disk.operations: {{enabled: true}}\n      process.signals_pending: {{enabled: true}}\n      process.memory.utilization: {{enabled: true}}\n      process.cpu.utilization: {{enabled: true}}\n    resource_attributes:\n      process.cgroup: {{enabled: true}}\n",
        root.path().display()
    ));
    let host = scrapers::Host {
        root: root.path().to_owned(),
    };
    let mut state = State::default();
    let (rms, errors) = scrape(&c, &host, &mut state);
    assert_eq!(rms.len(), 2, "kthreadd and web; sshd excluded");
    // kthreadd has no executable: the one error, not muted.
    let err = &errors["process"];
    assert!(err.contains("process executable for pid 2"), "{err}");
    assert!(!err.contains("4242"), "{err}");
    let web = &rms[1];
    let attrs: BTreeMap<String, String> = web
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                crate::signal::value::option_text(&kv.value).into_owned(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("process.pid", "4242"),
        ("process.parent_pid", "1"),
        ("process.executable.name", "web (main)"),
        ("process.executable.path", "/opt/web/bin/web"),
        ("process.command", "/opt/web/bin/web"),
        ("process.command_line", "/opt/web/bin/web --port 8080"),
        ("process.owner", "web"),
        ("process.cgroup", "/kubepods/pod1/web"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attrs, want);
    assert!(matches!(
        crate::signal::value::find(&web.resource.as_ref().unwrap().attributes, "process.pid")
            .and_then(|v| v.value.as_ref()),
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(4242))
    ));
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    for (name, attrs, v) in [
        ("process.cpu.time", vec![("state", "user")], 2.5),
        ("process.cpu.time", vec![("state", "system")], 0.5),
        (
            "process.cpu.time",
            vec![("state", "wait")],
            (hz * 9 / 100) as f64 / hz as f64,
        ),
        ("process.memory.usage", vec![], 2560.0 * page),
        ("process.memory.virtual", vec![], 25600.0 * page),
        (
            "process.memory.utilization",
            vec![],
            100.0 * 2560.0 * page / 1024000.0,
        ),
        ("process.disk.io", vec![("direction", "read")], 4096.0),
        ("process.disk.io", vec![("direction", "write")], 8192.0),
        (
            "process.disk.operations",
            vec![("direction", "write")],
            40.0,
        ),
        ("process.paging.faults", vec![("type", "major")], 7.0),
        ("process.paging.faults", vec![("type", "minor")], 1500.0),
        ("process.threads", vec![], 3.0),
        (
            "process.context_switches",
            vec![("type", "voluntary")],
            42.0,
        ),
        (
            "process.context_switches",
            vec![("type", "involuntary")],
            5.0,
        ),
        ("process.open_file_descriptors", vec![], 3.0),
        ("process.signals_pending", vec![], 1.0),
    ] {
        assert_eq!(one(web, name, &attrs), Some(v), "{name} {attrs:?}");
    }
    // The points start when the process did: boot + 10 s.
    let m = web.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "process.cpu.time")
        .unwrap();
    let Some(Data::Sum(s)) = &m.data else {
        panic!("a sum")
    };
    assert_eq!(
        s.data_points[0].start_time_unix_nano,
        1_700_000_010 * 1_000_000_000
    );
    assert!(
        values(web, "process.cpu.utilization").is_empty(),
        "needs two scrapes"
    );
    // A second scrape, 0.5 s of user time later: utilization over the elapsed time.
    std::thread::sleep(std::time::Duration::from_millis(50));
    w(
        "proc/4242/stat",
        stat(4242, 1, "web (main)")
            .replacen(
                &format!(" {} {} 0 0 20", hz * 5 / 2, hz / 2),
                &format!(" {} {} 0 0 20", hz * 3, hz / 2),
                1,
            )
            .as_bytes(),
    );
    let (rms, _) = scrape(&c, &host, &mut state);
    let u = one(&rms[1], "process.cpu.utilization", &[("state", "user")]).unwrap();
    assert!(u > 0.0 && u <= 0.5 / 0.05, "{u}");
    assert_eq!(
        one(&rms[1], "process.cpu.utilization", &[("state", "system")]),
        Some(0.0)
    );
    // Muted: no error for the kernel thread.
    let muted = cfg(&format!(
        "root_path: {}\nscrapers:\n  process:\n    mute_process_exe_error: true\n    exclude: {{names: [sshd]}}\n",
        root.path().display()
    ));
    let (_, errors) = scrape(&muted, &host, &mut State::default());
    assert!(errors.is_empty(), "{errors:?}");
}
