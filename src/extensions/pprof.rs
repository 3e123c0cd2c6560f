//! `pprof` extension: the Collector's profiling endpoint on `localhost:1777`, for `go tool pprof`
//! and every tool that reads the pprof format.
//!
//! - `/debug/pprof/profile?seconds=N` (default 30): a CPU profile of the whole process, sampled
//!   at 100 Hz with SIGPROF (the `pprof` crate's sampler), symbolized with file and line, as a
//!   gzipped `profile.proto` with the sample types `samples/count` and `cpu/nanoseconds` (Go's);
//!   each sample is labelled with its `thread`. One profile at a time, as in Go.
//! - `/debug/pprof/allocator`: mimalloc's own statistics, as text.
//! - `/debug/pprof/cmdline`: the command line, NUL-separated.
//! - `/debug/pprof/heap` (and `allocs`, `goroutine`, `block`, `mutex`, `threadcreate`): answered
//!   501 with why: ferrotel's allocator (mimalloc) records no allocation sites, so there is no
//!   heap profile to give, and the others are Go runtime profiles.
//!
//! `save_to_file`: the CPU profile of the whole run, written at shutdown (the Collector's
//! behaviour); while it runs, `/debug/pprof/profile` answers that profiling is in use.
//! `block_profile_fraction` and `mutex_profile_fraction` are read and have no effect (Go only).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};

/// Samples per second, Go's default CPU profile rate.
const FREQUENCY: i32 = 100;
/// The longest profile one request may ask for.
const MAX_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default `localhost:1777`.
    pub endpoint: String,
    /// Go's block profile rate: read, no effect here.
    pub block_profile_fraction: i64,
    /// Go's mutex profile rate: read, no effect here.
    pub mutex_profile_fraction: i64,
    /// Write the CPU profile of the whole run to this file at shutdown.
    pub save_to_file: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "localhost:1777".into(),
            block_profile_fraction: 0,
            mutex_profile_fraction: 0,
            save_to_file: None,
        }
    }
}

/// `pprof`'s identity.
pub const FACTORY: Factory = Factory::extension("pprof", Stability::Alpha, parse);

fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    crate::net::server::validate_endpoint(&cfg.endpoint)
        .map_err(|m| key_err(node, &["endpoint"], m))?;
    for (key, v) in [
        ("block_profile_fraction", cfg.block_profile_fraction),
        ("mutex_profile_fraction", cfg.mutex_profile_fraction),
    ] {
        if v < 0 {
            return Err(key_err(node, &[key], "must not be negative"));
        }
        if v > 0 {
            crate::config::warn_key(
                node,
                &[key],
                "has no effect: block and mutex profiles are Go runtime profiles",
            );
        }
    }
    if let Some(p) = &cfg.save_to_file
        && p.is_empty()
    {
        return Err(key_err(node, &["save_to_file"], "must not be empty"));
    }
    Ok(Box::new(cfg))
}

/// One CPU profile at a time: the sampler is process-wide.
static PROFILING: AtomicBool = AtomicBool::new(false);

/// Holds [`PROFILING`] for as long as it lives.
struct Profiling;

impl Profiling {
    fn take() -> Option<Profiling> {
        PROFILING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Profiling)
    }
}

impl Drop for Profiling {
    fn drop(&mut self) {
        PROFILING.store(false, Ordering::Release);
    }
}

/// Profiles the process until `done` says stop (checked every 50 ms; it is given the instant
/// sampling started) and returns the gzipped profile. Blocking: runs on a thread of its own, as
/// the sampler's report is not `Send`. Starting takes a while the first time (the unwinder
/// loads the binary's symbols), so durations count from `started`.
fn profile_until(
    started: impl FnOnce(),
    done: impl Fn(std::time::Instant) -> bool,
) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        // Frames inside these are unwound unreliably from a signal handler.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| format!("cannot start the CPU profiler: {e}"))?;
    let since = std::time::Instant::now();
    started();
    while !done(since) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("cannot build the profile: {e}"))?;
    drop(guard);
    let proto = encode(&report);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&proto).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// `profile.proto` (github.com/google/pprof/proto/profile.proto), the fields a CPU profile
/// uses.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// The profile.proto form of a report: a location per distinct frame (its inlined symbols as
/// its lines, innermost first), a function per distinct (name, file).
fn encode(report: &pprof::Report) -> Vec<u8> {
    use prost::Message;
    let mut strings: Vec<String> = vec![String::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::from([(String::new(), 0)]);
    let mut intern = |s: String| -> i64 {
        if let Some(&i) = string_ids.get(&s) {
            return i;
        }
        let i = strings.len() as i64;
        strings.push(s.clone());
        string_ids.insert(s, i);
        i
    };
    let period = 1_000_000_000 / i64::from(FREQUENCY);
    let samples_t = proto::ValueType {
        r#type: intern("samples".into()),
        unit: intern("count".into()),
    };
    let cpu_t = proto::ValueType {
        r#type: intern("cpu".into()),
        unit: intern("nanoseconds".into()),
    };
    let thread_key = intern("thread".into());
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(i64, i64), u64> = HashMap::new();
    let mut locations: Vec<proto::Location> = Vec::new();
    let mut location_ids: HashMap<Vec<(u64, i64)>, u64> = HashMap::new();
    let mut samples = Vec::with_capacity(report.data.len());
    for (frames, &count) in &report.data {
        let mut location_id = Vec::with_capacity(frames.frames.len());
        for frame in &frames.frames {
            let lines: Vec<(u64, i64)> = frame
                .iter()
                .map(|sym| {
                    let name = intern(sym.name());
                    let file = intern(sym.filename().into_owned());
                    let next = functions.len() as u64 + 1;
                    let fid = *function_ids.entry((name, file)).or_insert_with(|| {
                        functions.push(proto::Function {
                            id: next,
                            name,
                            system_name: name,
                            filename: file,
                        });
                        next
                    });
                    (fid, i64::from(sym.lineno()))
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            let next = locations.len() as u64 + 1;
            let lid = *location_ids.entry(lines.clone()).or_insert_with(|| {
                locations.push(proto::Location {
                    id: next,
                    line: lines
                        .iter()
                        .map(|&(function_id, line)| proto::Line { function_id, line })
                        .collect(),
                });
                next
            });
            location_id.push(lid);
        }
        let count = count as i64;
        samples.push(proto::Sample {
            location_id,
            value: vec![count, count * period],
            label: vec![proto::Label {
                key: thread_key,
                str: intern(frames.thread_name_or_id()),
            }],
        });
    }
    let timing = &report.timing;
    let profile = proto::Profile {
        sample_type: vec![samples_t, cpu_t.clone()],
        sample: samples,
        location: locations,
        function: functions,
        time_nanos: timing
            .start_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        duration_nanos: timing.duration.as_nanos() as i64,
        period_type: Some(cpu_t),
        period,
        string_table: strings,
    };
    profile.encode_to_vec()
}

/// The value of `key` in a query string (`seconds=5&debug=1`).
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn cpu_profile(uri: axum::http::Uri) -> Response {
    let seconds = query_value(uri.query().unwrap_or(""), "seconds");
    let seconds = match seconds.map(str::parse::<u64>) {
        None => 30,
        Some(Ok(s)) if (1..=MAX_SECONDS).contains(&s) => s,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                format!("seconds must be a whole number from 1 to {MAX_SECONDS}\n"),
            )
                .into_response();
        }
    };
    let Some(held) = Profiling::take() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not enable CPU profiling: cpu profiling already in use\n",
        )
            .into_response();
    };
    let result = tokio::task::spawn_blocking(move || {
        let _held = held;
        profile_until(
            || {},
            |since| since.elapsed() >= Duration::from_secs(seconds),
        )
    })
    .await
    .unwrap_or_else(|e| Err(format!("the profiler failed: {e}")));
    match result {
        Ok(gz) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile\"",
                ),
            ],
            gz,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn not_available(which: &str) -> Response {
    let why = if matches!(which, "heap" | "allocs") {
        "ferrotel allocates with mimalloc, which records no allocation sites, so there is no heap profile to give; /debug/pprof/allocator has mimalloc's statistics and the otelcol_process_memory_rss self-metric the resident size"
    } else {
        "this is a Go runtime profile; ferrotel is not a Go program"
    };
    (
        StatusCode::NOT_IMPLEMENTED,
        format!("/debug/pprof/{which} is not available: {why}\n"),
    )
        .into_response()
}

/// mimalloc's statistics as it prints them.
fn allocator_stats() -> String {
    unsafe extern "C" fn append(msg: *const std::ffi::c_char, arg: *mut std::ffi::c_void) {
        // SAFETY: `arg` is the `String` passed below, alive for the call; mimalloc passes a
        // NUL-terminated message.
        unsafe {
            let out = &mut *(arg as *mut String);
            out.push_str(&std::ffi::CStr::from_ptr(msg).to_string_lossy());
        }
    }
    let mut out = String::new();
    // SAFETY: the callback only appends to `out`, which outlives the call.
    unsafe {
        libmimalloc_sys::mi_stats_print_out(
            Some(append),
            &mut out as *mut String as *mut std::ffi::c_void,
        );
    }
    out
}

fn index() -> Html<String> {
    Html(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>/debug/pprof/</title></head><body>\n<h1>/debug/pprof/</h1>\n<ul>\n<li><a href=\"profile?seconds=30\">profile</a>: CPU profile (pprof format, gzipped); <code>?seconds=N</code></li>\n<li><a href=\"allocator\">allocator</a>: mimalloc's statistics</li>\n<li><a href=\"cmdline\">cmdline</a>: the command line</li>\n<li><a href=\"heap\">heap</a>: not available (mimalloc records no allocation sites)</li>\n</ul>\n</body></html>\n"
            .into(),
    )
}

/// Runs the whole-run profile of `save_to_file` on a thread of its own.
struct SaveToFile {
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Running {
    tasks: Box<crate::component::Tasks>,
    save: Option<SaveToFile>,
}

impl Lifecycle for Running {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.tasks.shutdown(deadline).await;
            if let Some(s) = &self.save {
                s.stop.store(true, Ordering::Release);
                let t = s.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(t) = t {
                    let _ = tokio::task::spawn_blocking(move || t.join()).await;
                }
            }
        })
    }
}

impl ExtensionConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let listener = crate::net::server::bind(&self.endpoint)
                .await
                .map_err(|e| {
                    BuildError::new(&ctx.id, format!("cannot listen on {}: {e}", self.endpoint))
                })?;
            let router = axum::Router::new()
                .route("/debug/pprof/", axum::routing::get(|| async { index() }))
                .route("/debug/pprof", axum::routing::get(|| async { index() }))
                .route("/debug/pprof/profile", axum::routing::get(cpu_profile))
                .route(
                    "/debug/pprof/allocator",
                    axum::routing::get(|| async { allocator_stats() }),
                )
                .route(
                    "/debug/pprof/cmdline",
                    axum::routing::get(|| async {
                        std::env::args().collect::<Vec<_>>().join("\0")
                    }),
                )
                .route(
                    "/debug/pprof/{which}",
                    axum::routing::get(
                        |axum::extract::Path(which): axum::extract::Path<String>| async move {
                            not_available(&which)
                        },
                    ),
                );
            let save = match &self.save_to_file {
                None => None,
                Some(path) => {
                    let held = Profiling::take().ok_or_else(|| {
                        BuildError::new(&ctx.id, "another pprof extension is profiling already")
                    })?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let (s, path, id) = (stop.clone(), path.clone(), ctx.id.to_string());
                    let thread = std::thread::Builder::new()
                        .name("pprof-save".into())
                        .spawn(move || {
                            let _held = held;
                            let sid = id.clone();
                            let written = profile_until(
                                || tracing::info!(extension = %sid, "CPU profiling of the whole run started"),
                                |_| s.load(Ordering::Acquire),
                            )
                                .and_then(|gz| std::fs::write(&path, gz).map_err(|e| e.to_string()));
                            match written {
                                Ok(()) => tracing::info!(extension = %id, path = %path, "CPU profile saved"),
                                Err(e) => tracing::warn!(extension = %id, path = %path, error = %e, "cannot save the CPU profile"),
                            }
                        })
                        .map_err(|e| BuildError::new(&ctx.id, e.to_string()))?;
                    Some(SaveToFile {
                        stop,
                        thread: std::sync::Mutex::new(Some(thread)),
                    })
                }
            };
            tracing::info!(extension = %ctx.id, endpoint = %self.endpoint, "pprof listening");
            let stop = ctx.shutdown.child_token();
            let task = crate::net::server::serve(listener, None, router, stop.clone());
            Ok(Box::new(Running {
                tasks: crate::component::Tasks::new(stop, vec![task]),
                save,
            }) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn config_defaults_and_checks() {
        let c: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert_eq!(c.endpoint, "localhost:1777");
        assert!(parse(&yaml("endpoint: ':1888'\n").unwrap()).is_ok());
        assert!(parse(&yaml("block_profile_fraction: -1\n").unwrap()).is_err());
        assert!(parse(&yaml("save_to_file: ''\n").unwrap()).is_err());
        assert!(parse(&yaml("tls: {}\n").unwrap()).is_err());
    }
}
