//! A real Prometheus server (Debian's `prometheus`) on 127.0.0.1, and its HTTP query API.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http_get, wait_until};

pub struct Prometheus {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn prometheus() -> Prometheus {
    prometheus_with("global:\n  scrape_interval: 1m\n")
}

/// A Prometheus with `config` as its prometheus.yml.
pub fn prometheus_with(config: &str) -> Prometheus {
    let bin = std::env::var("FERROTEL_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--enable-feature=native-histograms")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} ({e}): install Debian's prometheus package (scripts/test.sh does)"));
    wait_until("prometheus ready", Duration::from_secs(30), || {
        http_get(port, "/-/ready").is_some_and(|(c, _)| c == 200)
    });
    Prometheus { child, port, dir }
}

pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; returns the result vector.
pub fn query(rt: &tokio::runtime::Runtime, port: u16, q: &str) -> Vec<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={}", encode(q));
    let body = rt.block_on(async { reqwest::get(&url).await.unwrap().bytes().await.unwrap() });
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

pub fn value(rt: &tokio::runtime::Runtime, port: u16, q: &str) -> Option<f64> {
    query(rt, port, q)
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|s| s.parse().ok())
}
