//! `hostmetrics` checked against an independent reader of the same machine: Debian's
//! `prometheus-node-exporter`, started here on 127.0.0.1. ferrotel's figures are read through its
//! `prometheus` exporter. Counters are bracketed (node_exporter before ≤ ferrotel ≤ node_exporter
//! after), totals must be equal, and the load average, which moves, must agree within 0.5 + 20%.
//! A second receiver reads a copied `/proc` tree through `root_path`, as a containerized agent
//! reads the host's.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Collector, free_port, http_get, wait_until};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name{labels}` → value, from a text exposition.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The one series named `name` whose labels include every `k="v"` of `labels`.
fn find(m: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = m
        .iter()
        .filter(|(s, _)| {
            let (n, rest) = s.split_once('{').unwrap_or((s, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .collect();
    assert!(hits.len() <= 1, "{name} {labels:?} matches {hits:?}");
    hits.first().copied()
}

fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (code, body) = http_get(port, "/metrics").expect("scrape");
    assert_eq!(code, 200);
    parse(&body)
}

#[test]
fn hostmetrics_agree_with_node_exporter() {
    let ne_port = free_port();
    let _ne = Killed(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter is installed (scripts/test.sh installs it)"),
    );
    wait_until("node exporter up", Duration::from_secs(20), || {
        http_get(ne_port, "/metrics").is_some_and(|(c, _)| c == 200)
    });

    // A copy of this machine's /proc files, frozen: through root_path they must come out as is.
    let hostfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(hostfs.path().join("proc")).unwrap();
    for f in ["stat", "meminfo", "loadavg"] {
        std::fs::copy(format!("/proc/{f}"), hostfs.path().join("proc").join(f)).unwrap();
    }
    let copied = std::fs::read_to_string(hostfs.path().join("proc/meminfo")).unwrap();
    let kib = |key: &str| -> f64 {
        copied
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap()
            * 1024.0
    };

    let (live, frozen, metrics, health) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  hostmetrics:
    collection_interval: 1s
    initial_delay: 0s
    scrapers:
      cpu:
      memory:
      load:
      filesystem:
      network:
  hostmetrics/hostfs:
    collection_interval: 1s
    initial_delay: 0s
    root_path: {root}
    scrapers:
      memory:
      load:
exporters:
  prometheus/live: {{ endpoint: "127.0.0.1:{live}", without_scope_info: true }}
  prometheus/frozen: {{ endpoint: "127.0.0.1:{frozen}", without_scope_info: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics/live: {{ receivers: [hostmetrics], exporters: [prometheus/live] }}
    metrics/frozen: {{ receivers: [hostmetrics/hostfs], exporters: [prometheus/frozen] }}
"#,
        root = hostfs.path().display()
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    wait_until("first scrape", Duration::from_secs(20), || {
        find(
            &scrape(live),
            "system_memory_usage_bytes",
            &[("state", "free")],
        )
        .is_some()
    });

    let before = scrape(ne_port);
    // At a 1s interval, the series shown were read after `before`.
    std::thread::sleep(Duration::from_millis(1600));
    let ours = scrape(live);
    let after = scrape(ne_port);

    // CPU seconds per CPU and mode, bracketed.
    let cpus = before
        .keys()
        .filter(|k| k.starts_with("node_cpu_seconds_total{") && k.contains("mode=\"user\""))
        .count();
    assert!(cpus > 0, "node_exporter shows no CPU");
    for cpu in 0..cpus {
        for (mode, state) in [
            ("user", "user"),
            ("system", "system"),
            ("idle", "idle"),
            ("iowait", "wait"),
        ] {
            let ne = |m: &BTreeMap<String, f64>| {
                let n = cpu.to_string();
                find(
                    m,
                    "node_cpu_seconds_total",
                    &[("cpu", n.as_str()), ("mode", mode)],
                )
                .unwrap()
            };
            let name = format!("cpu{cpu}");
            let v = find(
                &ours,
                "system_cpu_time_seconds_total",
                &[("cpu", name.as_str()), ("state", state)],
            )
            .unwrap_or_else(|| panic!("no system.cpu.time for {name} {state}"));
            // node_exporter rounds to its own float formatting: 10 ms of slack.
            assert!(
                ne(&before) - 0.01 <= v && v <= ne(&after) + 0.01,
                "{name} {state}: node_exporter {} .. {}, ferrotel {v}",
                ne(&before),
                ne(&after)
            );
        }
    }

    // Memory: used + free + buffered + cached is the total, as node_exporter reads it.
    let total = find(&before, "node_memory_MemTotal_bytes", &[]).unwrap();
    let sum: f64 = ["used", "free", "buffered", "cached"]
        .iter()
        .map(|s| find(&ours, "system_memory_usage_bytes", &[("state", s)]).unwrap())
        .sum();
    assert_eq!(sum, total);

    // The root file system: used + free + reserved is its size.
    let size = find(
        &before,
        "node_filesystem_size_bytes",
        &[("mountpoint", "/")],
    )
    .unwrap();
    let fs: f64 = ["used", "free", "reserved"]
        .iter()
        .map(|s| {
            find(
                &ours,
                "system_filesystem_usage_bytes",
                &[("mountpoint", "/"), ("state", s)],
            )
            .unwrap_or_else(|| {
                panic!(
                    "no / {s} in {:?}",
                    ours.keys()
                        .filter(|k| k.contains("filesystem"))
                        .collect::<Vec<_>>()
                )
            })
        })
        .sum();
    assert_eq!(fs, size);

    // An interface's bytes, both ways, bracketed: the busiest node_exporter shows (it reads
    // through netlink, which on some machines leaves out `lo`).
    let device = before
        .iter()
        .filter(|(k, _)| k.starts_with("node_network_receive_bytes_total{"))
        .max_by(|a, b| a.1.total_cmp(b.1))
        .and_then(|(k, _)| {
            k.split("device=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .expect("node_exporter shows an interface");
    for (ne_name, dir) in [
        ("node_network_receive_bytes_total", "receive"),
        ("node_network_transmit_bytes_total", "transmit"),
    ] {
        let (b, a) = (
            find(&before, ne_name, &[("device", &device)]).unwrap(),
            find(&after, ne_name, &[("device", &device)]).unwrap(),
        );
        let v = find(
            &ours,
            "system_network_io_bytes_total",
            &[("device", &device), ("direction", dir)],
        )
        .unwrap();
        assert!(
            b <= v && v <= a,
            "{device} {dir}: node_exporter {b} .. {a}, ferrotel {v}"
        );
    }

    // Load moves between the reads: close, not equal.
    let (ne_load, our_load) = (
        find(&after, "node_load1", &[]).unwrap(),
        find(&ours, "system_cpu_load_average_1m", &[]).unwrap(),
    );
    assert!(
        (ne_load - our_load).abs() <= 0.5 + 0.2 * ne_load,
        "load1: node_exporter {ne_load}, ferrotel {our_load}"
    );

    // root_path: the frozen copy, exactly.
    let frozen_m = scrape(frozen);
    assert_eq!(
        find(&frozen_m, "system_memory_usage_bytes", &[("state", "free")]),
        Some(kib("MemFree"))
    );
    assert_eq!(
        find(
            &frozen_m,
            "system_memory_usage_bytes",
            &[("state", "buffered")]
        ),
        Some(kib("Buffers"))
    );
    let load: f64 = std::fs::read_to_string(hostfs.path().join("proc/loadavg"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        find(&frozen_m, "system_cpu_load_average_1m", &[]),
        Some(load)
    );
    assert!(c.logs().contains("everything is ready"), "{}", c.logs());
}

fn attr(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue], k: &str) -> String {
    common::attr_text(kvs, k).unwrap_or_default()
}

/// `ps` (procps) about one process: the fields asked for, as it prints them.
fn ps(pid: u32, fields: &str) -> String {
    let out = Command::new("ps")
        .args(["-o", fields, "-p", &pid.to_string()])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The `process` scraper checked against `ps` (procps-ng, an independent reader of the same
/// `/proc`): a Python process that spins for 1.2 CPU seconds and then sleeps, and a `sleep`, chosen by
/// executable name; their identity, owner, command line, memory, threads and CPU time.
#[test]
fn process_scraper_agrees_with_ps() {
    let spin = Killed(
        Command::new("python3")
            .args([
                "-c",
                "import time; t = time.process_time(); [0 for _ in iter(lambda: time.process_time() - t < 1.2, False)]; time.sleep(600)",
            ])
            .spawn()
            .expect("python3"),
    );
    let nap = Killed(Command::new("sleep").arg("600").spawn().expect("sleep"));
    let (spin_pid, nap_pid) = (spin.0.id(), nap.0.id());
    // Let the spinner use its 1.2 CPU seconds (however long a loaded machine takes) and sleep.
    wait_until("the spinner asleep", Duration::from_secs(60), || {
        ps(spin_pid, "stat=").starts_with('S')
            && ps(spin_pid, "cputimes=")
                .parse::<f64>()
                .is_ok_and(|c| c >= 1.0)
    });
    let sink = common::sink::Sink::start();
    let cfg = format!(
        r#"
receivers:
  hostmetrics:
    collection_interval: 500ms
    initial_delay: 0s
    scrapers:
      process:
        include: {{ names: ['^python', '^sleep$'], match_type: regexp }}
        mute_process_exe_error: true
        metrics:
          process.threads: {{ enabled: true }}
          process.cpu.utilization: {{ enabled: true }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{m}" }} }}
  pipelines:
    metrics: {{ receivers: [hostmetrics], exporters: [otlp_grpc] }}
"#,
        sink = sink.port,
        m = free_port()
    );
    let c = Collector::start(&cfg, &[], None, None);
    let of = |pid: u32, with: &str| {
        sink.store
            .metrics
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|rm| {
                let attrs = &rm.resource.as_ref().unwrap().attributes;
                attr(attrs, "process.pid") == pid.to_string()
                    && rm.scope_metrics[0].metrics.iter().any(|m| m.name == with)
            })
            .cloned()
    };
    wait_until(
        "both processes, with utilization",
        Duration::from_secs(20),
        || {
            of(spin_pid, "process.cpu.utilization").is_some()
                && of(nap_pid, "process.threads").is_some()
        },
    );
    // Only the included names.
    for rm in sink.store.metrics.lock().unwrap().iter() {
        let name = attr(
            &rm.resource.as_ref().unwrap().attributes,
            "process.executable.name",
        );
        assert!(
            name.starts_with("python") || name == "sleep",
            "{name} is not included\n{}",
            c.logs()
        );
    }
    let value = |rm: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics,
                 name: &str,
                 state: Option<&str>|
     -> f64 {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
        let m = rm.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap();
        let points = match &m.data {
            Some(Data::Sum(s)) => &s.data_points,
            Some(Data::Gauge(g)) => &g.data_points,
            _ => panic!("{name}"),
        };
        points
            .iter()
            .filter(|p| state.is_none_or(|s| attr(&p.attributes, "state") == s))
            .map(|p| match p.value {
                Some(Value::AsInt(i)) => i as f64,
                Some(Value::AsDouble(d)) => d,
                None => 0.0,
            })
            .sum()
    };
    for (pid, comm) in [(spin_pid, "python3"), (nap_pid, "sleep")] {
        let rm = of(pid, "process.threads").unwrap();
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        let a = |k: &str| attr(attrs, k);
        assert_eq!(a("process.parent_pid"), ps(pid, "ppid="), "{comm} ppid");
        assert_eq!(a("process.owner"), ps(pid, "user="), "{comm} owner");
        assert_eq!(
            a("process.command_line"),
            ps(pid, "args="),
            "{comm} command line"
        );
        assert!(
            a("process.executable.name").starts_with(&ps(pid, "comm=")[..5.min(comm.len())]),
            "{comm} name"
        );
        assert!(a("process.executable.path").starts_with('/'), "{comm} path");
        assert_eq!(
            value(&rm, "process.threads", None),
            ps(pid, "nlwp=").parse::<f64>().unwrap(),
            "{comm} threads"
        );
        // ps prints KiB; the process is idle, so the two reads agree to a few pages.
        let rss = ps(pid, "rss=").parse::<f64>().unwrap() * 1024.0;
        let vsz = ps(pid, "vsz=").parse::<f64>().unwrap() * 1024.0;
        assert!(
            (value(&rm, "process.memory.usage", None) - rss).abs() <= 64.0 * 1024.0,
            "{comm} rss {} vs {rss}",
            value(&rm, "process.memory.usage", None)
        );
        assert!(
            (value(&rm, "process.memory.virtual", None) - vsz).abs() <= 1024.0,
            "{comm} vsz"
        );
    }
    // The spinner's CPU time: ps's whole seconds bracket it.
    let rm = of(spin_pid, "process.cpu.utilization").unwrap();
    let cpu = value(&rm, "process.cpu.time", Some("user"))
        + value(&rm, "process.cpu.time", Some("system"));
    let ps_cpu: f64 = ps(spin_pid, "cputimes=").parse().unwrap();
    assert!(
        cpu >= 1.2 && cpu >= ps_cpu && cpu < ps_cpu + 1.0,
        "cpu {cpu} vs ps {ps_cpu}"
    );
    // Asleep now: no CPU since the last scrape.
    assert!(value(&rm, "process.cpu.utilization", Some("user")) < 0.05);
    drop(c);
}
