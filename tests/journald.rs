//! The `journald` receiver with the real journalctl (systemd, Debian) reading journal files that
//! the test writes with systemd-journal-remote (Debian's `systemd-journal-remote`: it turns
//! journal export format into a journal file, as a node's journald would have written it).
//! Matching entries arrive once with their fields; the cursor in `file_storage` makes a restart
//! read only what came after.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::common::v1::any_value;

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Writes `entries` (MESSAGE, unit, priority) as a new journal file in `dir`.
fn write_journal(dir: &Path, name: &str, first_us: u64, entries: &[(&str, &str, u8)]) {
    let mut export = String::new();
    for (i, (msg, unit, prio)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE={msg}\nPRIORITY={prio}\n_SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER=test\n\n",
            first_us + i as u64,
            first_us + i as u64
        ));
    }
    let src = dir.join(format!("{name}.export"));
    std::fs::write(&src, export).unwrap();
    let out = Command::new(JOURNAL_REMOTE)
        .arg(format!(
            "--output={}",
            dir.join(format!("{name}.journal")).display()
        ))
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("{JOURNAL_REMOTE} (Debian systemd-journal-remote): {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(src).unwrap();
}

fn messages(sink: &Sink) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for rl in sink.store.logs.lock().unwrap().iter() {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let Some(any_value::Value::KvlistValue(kv)) =
                    r.body.as_ref().and_then(|b| b.value.as_ref())
                else {
                    panic!("the body is the entry's fields: {:?}", r.body);
                };
                let field = |k: &str| {
                    kv.values
                        .iter()
                        .find(|f| f.key == k)
                        .and_then(|f| match f.value.as_ref()?.value.as_ref()? {
                            any_value::Value::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default()
                };
                assert!(
                    field("__CURSOR").is_empty(),
                    "the cursor is not in the body"
                );
                out.push((field("MESSAGE"), field("_SYSTEMD_UNIT"), r.time_unix_nano));
            }
        }
    }
    out
}

#[test]
fn journal_entries_arrive_filtered_and_a_restart_resumes_after_the_cursor() {
    let journal = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000_000u64;
    write_journal(
        journal.path(),
        "a",
        t0,
        &[
            ("kubelet started", "kubelet.service", 6),
            ("containerd noise", "containerd.service", 6),
            ("kubelet debug chatter", "kubelet.service", 7),
            ("kubelet failed", "kubelet.service", 3),
        ],
    );
    let sink = Sink::start();
    let config = |health: u16| {
        format!(
            r#"
receivers:
  journald:
    directory: "{dir}"
    units: [kubelet.service]
    priority: info
    start_at: beginning
    storage: file_storage
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{storage}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [journald], exporters: [otlp_grpc] }}
"#,
            dir = journal.path().display(),
            sink = sink.port,
            storage = storage.path().display()
        )
    };
    let health = free_port();
    let mut c = Collector::start(&config(health), &[], Some(health), None);
    wait_until("the two kubelet entries", Duration::from_secs(15), || {
        sink.store.log_count() >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = messages(&sink);
    // The containerd entry is another unit; the debug one is below `info`.
    assert_eq!(
        got.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["kubelet started", "kubelet failed"],
        "{}",
        c.logs()
    );
    assert!(got.iter().all(|m| m.1 == "kubelet.service"));
    assert_eq!(got[0].2, t0 * 1000, "__REALTIME_TIMESTAMP is the time");
    assert!(c.terminate().success(), "{}", c.logs());

    // More entries while it is down; the restart reads those, not the old ones again.
    write_journal(
        journal.path(),
        "b",
        t0 + 1_000_000,
        &[("kubelet restarted", "kubelet.service", 5)],
    );
    let health = free_port();
    let c = Collector::start(&config(health), &[], Some(health), None);
    wait_until("the new entry", Duration::from_secs(15), || {
        sink.store.log_count() >= 3
    });
    std::thread::sleep(Duration::from_millis(800));
    let got = messages(&sink);
    assert_eq!(
        got.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["kubelet started", "kubelet failed", "kubelet restarted"],
        "each entry once across the restart:\n{}",
        c.logs()
    );
}
