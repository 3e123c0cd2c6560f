//! Live taps: a copy of what flows through a point of a running pipeline, for `ferrotel tap`.
//!
//! The `tap` extension enables them. Only then does the pipeline builder put a tapped
//! consumer (`pipeline::tapped`) at each point (what each receiver puts into a pipeline, the pipeline's input, what
//! each processor emits, what each exporter or connector takes); without the extension the data
//! path is exactly as without this module. While nobody taps a point, its consumer costs one
//! relaxed atomic load before it hands the batch on (`benches/processors.rs`, `tap/*`). A tap
//! gets clones of the batches through a bounded channel; when it falls behind, batches are
//! skipped for it (and it is told how many), never waited for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::signal::Batch;

/// Batches queued for one tap before more are skipped.
const TAP_QUEUE: usize = 16;

/// The component name of a pipeline's input point (everything its receivers put in).
pub const INPUT: &str = "";

/// Every tap point of the service, by pipeline and component.
#[derive(Default)]
pub struct Taps {
    enabled: AtomicBool,
    points: Mutex<HashMap<(String, String), Arc<Point>>>,
}

impl Taps {
    /// Called by the `tap` extension before the pipelines are built.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The point of `component` in `pipeline`, made on first use.
    pub fn point(&self, pipeline: &str, component: &str) -> Arc<Point> {
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        points
            .entry((pipeline.to_string(), component.to_string()))
            .or_default()
            .clone()
    }

    /// The points of a pipeline, as (component) names; [`INPUT`] is the pipeline's input.
    pub fn components(&self, pipeline: &str) -> Vec<String> {
        let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = points
            .keys()
            .filter(|(p, _)| p == pipeline)
            .map(|(_, c)| c.clone())
            .collect();
        v.sort();
        v
    }

    pub fn pipelines(&self) -> Vec<String> {
        let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = points.keys().map(|(p, _)| p.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Starts a tap on an existing point; `None` when the pipeline has no such point.
    pub fn subscribe(&self, pipeline: &str, component: &str) -> Option<Subscription> {
        let point = {
            let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
            points
                .get(&(pipeline.to_string(), component.to_string()))?
                .clone()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(TAP_QUEUE);
        let skipped = Arc::new(AtomicU64::new(0));
        let id = {
            let mut subs = point.subs.lock().unwrap_or_else(|p| p.into_inner());
            let id = subs.iter().map(|s| s.id).max().map_or(0, |m| m + 1);
            subs.push(Sub {
                id,
                tx,
                skipped: skipped.clone(),
            });
            point.count.store(subs.len(), Ordering::Release);
            id
        };
        Some(Subscription {
            point,
            id,
            rx,
            skipped,
        })
    }
}

/// One place of a pipeline that can be tapped.
#[derive(Default)]
pub struct Point {
    /// Subscribers, read on the data path without the lock.
    count: AtomicUsize,
    subs: Mutex<Vec<Sub>>,
}

struct Sub {
    id: u64,
    tx: tokio::sync::mpsc::Sender<Batch>,
    skipped: Arc<AtomicU64>,
}

impl Point {
    /// True while a tap is attached: one relaxed load, the whole cost on the data path.
    #[inline]
    pub fn tapped(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// A copy of `batch` to each tap with room in its queue.
    pub fn offer(&self, batch: &Batch) {
        let subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            match s.tx.try_reserve() {
                Ok(permit) => permit.send(batch.clone()),
                Err(_) => {
                    s.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One running tap; dropping it detaches it.
pub struct Subscription {
    point: Arc<Point>,
    id: u64,
    pub rx: tokio::sync::mpsc::Receiver<Batch>,
    /// Batches not delivered because this tap's queue was full.
    pub skipped: Arc<AtomicU64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.point.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| s.id != self.id);
        self.point.count.store(subs.len(), Ordering::Release);
    }
}

/// What a tap client asks for: one JSON line, answered by `ok ...` or `error: ...`, then the
/// debug exporter's text of each batch, then a closing `-- ...` line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `traces`, `traces/name`, ...
    pub pipeline: String,
    /// A component of the pipeline (`batch`, or `exporter:otlp` when a name is ambiguous);
    /// none: the pipeline's input.
    #[serde(default)]
    pub component: Option<String>,
    /// Stop after at least this many items (whole batches). Default 100.
    #[serde(default = "default_limit")]
    pub limit: u64,
    #[serde(default)]
    pub verbosity: crate::signal::text::Verbosity,
}

fn default_limit() -> u64 {
    100
}

/// Where a tap is served: `unix:///path` or a loopback `host:port`.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// Refuses anything but a Unix socket or a loopback address: a tap shows the data itself.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err("a unix:// endpoint needs a path".into());
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("endpoint {s:?} must be host:port or unix:///path"));
        };
        port.parse::<u16>()
            .map_err(|_| format!("endpoint {s:?} has an invalid port {port:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!(
                "endpoint {s:?} is not a loopback address: a tap is served on localhost, 127.0.0.1, ::1 or a unix:// socket only"
            ));
        }
        Ok(Endpoint::Tcp(s.to_string()))
    }
}

/// Resolves what a client named to a point of the pipeline: `kind:id` exactly, or an id that
/// names one component of the pipeline.
pub fn resolve(taps: &Taps, req: &Request) -> Result<String, String> {
    let points = taps.components(&req.pipeline);
    if points.is_empty() {
        return Err(format!(
            "no pipeline {:?}; the pipelines are: {}",
            req.pipeline,
            taps.pipelines().join(", ")
        ));
    }
    let Some(c) = req.component.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(INPUT.to_string());
    };
    let found: Vec<&String> = points
        .iter()
        .filter(|p| p.as_str() == c || p.split_once(':').is_some_and(|(_, id)| id == c))
        .collect();
    let names = || {
        points
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "pipeline {:?} has no component {c:?}; it has: {}",
            req.pipeline,
            names()
        )),
        many => Err(format!(
            "{c:?} is ambiguous in pipeline {:?}: write one of {}",
            req.pipeline,
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The client side of `ferrotel tap`: sends the request and copies the answer to `out` until
/// the collector closes the connection. An `error:` answer is returned as the error.
pub fn run_client(
    endpoint: &Endpoint,
    req: &Request,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    let line = serde_json::to_string(req).map_err(|e| e.to_string())? + "\n";
    let stream: Box<dyn std::io::Read> = match endpoint {
        Endpoint::Unix(p) => {
            let mut s = std::os::unix::net::UnixStream::connect(p)
                .map_err(|e| format!("cannot connect to {}: {e}", p.display()))?;
            s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            Box::new(s)
        }
        Endpoint::Tcp(a) => {
            let mut s = std::net::TcpStream::connect(a.as_str())
                .map_err(|e| format!("cannot connect to {a}: {e} (is the `tap` extension on?)"))?;
            s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            Box::new(s)
        }
    };
    let mut r = BufReader::new(stream);
    let mut first = String::new();
    r.read_line(&mut first).map_err(|e| e.to_string())?;
    if let Some(e) = first.strip_prefix("error: ") {
        return Err(e.trim_end().to_string());
    }
    out.write_all(first.as_bytes()).map_err(|e| e.to_string())?;
    std::io::copy(&mut r, out).map_err(|e| e.to_string())?;
    Ok(())
}
