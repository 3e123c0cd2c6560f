//! `file` exporter: writes what it receives to a file, as the Collector's `file` exporter does,
//! so that the `otlpjsonfile` receiver (or any tool reading OTLP) can replay it.
//!
//! The bytes on disk are the Collector's: with `format: json` and no compression one OTLP/JSON
//! export request per line; otherwise (`format: proto`, or any `compression`) each request is
//! preceded by its length as a 4-byte big-endian unsigned integer, and with `compression: zstd`
//! each request is a zstd frame of its own (the Collector's default, not its
//! `exporter.file.nativeCompression` stream gate).
//!
//! Writes are buffered and flushed every `flush_interval` (and at shutdown); with `rotation` they
//! go to the file at once, as in the Collector. What sits in the buffer when the process is
//! killed is lost: the exporter answers its pipeline when the bytes are in the buffer, not when
//! they are on disk. A write that fails is a permanent error for that batch, counted in
//! `otelcol_exporter_send_failed_*`.
//!
//! Rotation (`rotation`): when the next write would take the file over `max_megabytes`, it is
//! renamed with the time before its extension (`data-2022-09-14T05-02-14.173.json`) and a new
//! file is started at `path`; backups beyond `max_backups`, or older than `max_days`, are removed.
//!
//! `group_by`: the `*` in `path` is replaced by each resource's `resource_attribute` (a string);
//! resources without it are dropped, counted with reason `missing_group_by_attribute`. The
//! result always stays below the part of `path` before the `*` (`..` segments are dropped). At
//! most `max_open_files` files are open; the least recently written is closed first.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::key_err;
use crate::component::{
    BoxFuture, BuildError, ConsumeError, ConsumeResult, Consumer, Context, Exporter,
    ExporterConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, units};
use crate::signal::Batch;

/// Bytes buffered before a write reaches the file even before `flush_interval`.
const BUFFER_LIMIT: usize = 256 << 10;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OTLP/JSON (default).
    #[default]
    Json,
    /// OTLP protobuf.
    Proto,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Size in MiB at which the file is rotated. Default 100.
    #[serde(default = "hundred")]
    pub max_megabytes: u64,
    /// Backups older than this many days are removed. Default 0: kept whatever their age.
    #[serde(default)]
    pub max_days: u64,
    /// Backups kept. Default 100; 0 keeps them all.
    #[serde(default = "hundred")]
    pub max_backups: usize,
    /// Timestamps in backup names in local time rather than UTC. Default false.
    #[serde(default)]
    pub localtime: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 100,
            max_days: 0,
            max_backups: 100,
            localtime: false,
        }
    }
}

fn hundred<T: From<u8>>() -> T {
    T::from(100)
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupBy {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The resource attribute whose value replaces `*` in `path`. Default
    /// `fileexporter.path_segment`.
    #[serde(default = "path_segment")]
    pub resource_attribute: String,
    /// Files open at once. Default 100.
    #[serde(default = "hundred")]
    pub max_open_files: usize,
}

fn path_segment() -> String {
    "fileexporter.path_segment".into()
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// zstd level, 0 (the library's default, 3) to 22. Default 0.
    #[serde(default)]
    pub level: i32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file written (required). With `group_by`, contains exactly one `*`.
    pub path: String,
    /// Append to an existing file instead of truncating it. Default false; not with `rotation`
    /// or `compression`.
    #[serde(default)]
    pub append: bool,
    /// Present (even empty): rotate, with these defaults. Absent: one file, never rotated.
    #[serde(default)]
    pub rotation: Option<Rotation>,
    /// `json` (default) or `proto`.
    #[serde(default)]
    pub format: Format,
    /// An encoding extension (not in ferrotel): refused with a message.
    #[serde(default)]
    pub encoding: Option<String>,
    /// `zstd`, or empty for none (default).
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// How often buffered writes reach the file. Default 1s.
    #[serde(default = "one_second", deserialize_with = "units::duration")]
    pub flush_interval: Duration,
    #[serde(default)]
    pub group_by: Option<GroupBy>,
    /// Create the parent directory of `path` at start. Default false.
    #[serde(default)]
    pub create_directory: bool,
    /// Octal mode of directories created (`create_directory`, `group_by`). Default `0755`.
    #[serde(default)]
    pub directory_permissions: Option<String>,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

/// `file`'s identity.
pub const FACTORY: Factory =
    Factory::exporter("file", crate::signal::ALL_SIGNALS, Stability::Alpha, parse);

/// The checked config, with what parsing worked out.
#[derive(Debug, Clone)]
struct Validated {
    cfg: Config,
    rotation: Option<Rotation>,
    zstd: Option<i32>,
    /// The parts of `path` around its `*`, with `group_by` on.
    group: Option<(String, String, GroupBy)>,
    dir_mode: u32,
}

fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.path.is_empty() {
        return Err(key_err(node, &["path"], "path must be non-empty"));
    }
    // `rotation:` written without settings turns rotation on with the defaults.
    let rotation = node
        .get("rotation")
        .map(|_| cfg.rotation.clone().unwrap_or_default());
    if cfg.encoding.is_some() {
        return Err(key_err(
            node,
            &["encoding"],
            "encoding extensions are not in ferrotel: use `format: json` or `format: proto`",
        ));
    }
    let zstd = match cfg.compression.as_deref() {
        None | Some("") => None,
        Some("zstd") => Some(cfg.compression_params.level),
        Some(other) => {
            return Err(key_err(
                node,
                &["compression"],
                format!("compression {other:?} is not supported: use zstd or leave it empty"),
            ));
        }
    };
    if !(0..=22).contains(&cfg.compression_params.level) {
        return Err(key_err(
            node,
            &["compression_params", "level"],
            "the zstd level must be between 0 and 22",
        ));
    }
    if cfg.append && zstd.is_some() {
        return Err(key_err(
            node,
            &["append"],
            "append and compression enabled at the same time is not supported",
        ));
    }
    if cfg.append && rotation.is_some() {
        return Err(key_err(
            node,
            &["append"],
            "append and rotation enabled at the same time is not supported",
        ));
    }
    if cfg.flush_interval.is_zero() {
        return Err(key_err(
            node,
            &["flush_interval"],
            "flush_interval must be larger than zero",
        ));
    }
    if let Some(r) = &rotation
        && r.max_megabytes == 0
    {
        return Err(key_err(
            node,
            &["rotation", "max_megabytes"],
            "max_megabytes must be at least 1",
        ));
    }
    let group = match &cfg.group_by {
        Some(g) if g.enabled => {
            let parts: Vec<&str> = cfg.path.split('*').collect();
            if parts.len() != 2 {
                return Err(key_err(
                    node,
                    &["path"],
                    "path must contain exactly one * when group_by is enabled",
                ));
            }
            if parts[0].is_empty() {
                return Err(key_err(
                    node,
                    &["path"],
                    "path must not start with * when group_by is enabled",
                ));
            }
            if g.resource_attribute.is_empty() {
                return Err(key_err(
                    node,
                    &["group_by", "resource_attribute"],
                    "resource_attribute must not be empty when group_by is enabled",
                ));
            }
            if g.max_open_files == 0 {
                return Err(key_err(
                    node,
                    &["group_by", "max_open_files"],
                    "max_open_files must be at least 1",
                ));
            }
            Some((parts[0].to_string(), parts[1].to_string(), g.clone()))
        }
        _ => None,
    };
    let dir_mode = match &cfg.directory_permissions {
        None => 0o755,
        Some(_) if !cfg.create_directory => {
            return Err(key_err(
                node,
                &["directory_permissions"],
                "directory_permissions requires create_directory to be true",
            ));
        }
        Some(p) => match u32::from_str_radix(p.trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => m,
            Ok(_) => {
                return Err(key_err(
                    node,
                    &["directory_permissions"],
                    "directory_permissions contain invalid bits for file access",
                ));
            }
            Err(_) => {
                return Err(key_err(
                    node,
                    &["directory_permissions"],
                    "directory_permissions value must be a valid octal representation",
                ));
            }
        },
    };
    Ok(Box::new(Validated {
        cfg,
        rotation,
        zstd,
        group,
        dir_mode,
    }))
}

impl ExporterConfig for Validated {
    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let v = *self;
        let id = ctx.id.to_string();
        let labels = crate::telemetry::ExporterLabels {
            exporter: id.clone(),
        };
        let dropped = |reason: &str| {
            ctx.telemetry
                .exporter_dropped_items
                .get_or_create(&crate::telemetry::DropLabels {
                    exporter: id.clone(),
                    reason: reason.into(),
                })
                .clone()
        };
        let mut files = Files {
            open: HashMap::new(),
            clock: 0,
        };
        if v.group.is_none() {
            // The single file is opened (and truncated) at start, as the Collector does.
            let path = PathBuf::from(&v.cfg.path);
            if v.cfg.create_directory
                && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            {
                create_dirs(dir, v.dir_mode).map_err(|e| {
                    BuildError::new(&ctx.id, format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let w = Writer::open(path, v.cfg.append, v.rotation.clone())
                .map_err(|e| BuildError::new(&ctx.id, e))?;
            files.open.insert(PathBuf::from(&v.cfg.path), (w, 0));
        }
        let shared = Arc::new(Shared {
            files: Mutex::new(files),
            format: v.cfg.format,
            zstd: v.zstd,
            // With rotation, every write goes to the file (the Collector does not buffer then).
            buffered: v.rotation.is_none(),
            rotation: v.rotation,
            group: v.group,
            dir_mode: v.dir_mode,
            accepted: ctx.telemetry.exporter_accepted.handles(&labels),
            sent: ctx.telemetry.exporter_sent.handles(&labels),
            failed: ctx.telemetry.exporter_send_failed.handles(&labels),
            missing_attribute: dropped("missing_group_by_attribute"),
            write_failed: dropped("permanent_error"),
            id,
        });
        let stop = CancellationToken::new();
        let flusher = tokio::spawn(flush_every(
            Arc::clone(&shared),
            v.cfg.flush_interval,
            stop.clone(),
        ));
        Ok(Arc::new(FileExporter {
            shared,
            stop,
            flusher: Mutex::new(Some(flusher)),
        }))
    }
}

fn create_dirs(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
}

struct Shared {
    files: Mutex<Files>,
    format: Format,
    zstd: Option<i32>,
    buffered: bool,
    rotation: Option<Rotation>,
    group: Option<(String, String, GroupBy)>,
    dir_mode: u32,
    accepted: crate::telemetry::SignalCounters,
    sent: crate::telemetry::SignalCounters,
    failed: crate::telemetry::SignalCounters,
    missing_attribute: prometheus_client::metrics::counter::Counter,
    write_failed: prometheus_client::metrics::counter::Counter,
    id: String,
}

/// The open files and, for each, when it was last written (for closing the least recent).
struct Files {
    open: HashMap<PathBuf, (Writer, u64)>,
    clock: u64,
}

struct FileExporter {
    shared: Arc<Shared>,
    stop: CancellationToken,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

async fn flush_every(shared: Arc<Shared>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => shared.flush_all(),
        }
    }
}

impl Shared {
    fn flush_all(&self) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        for (path, (w, _)) in files.open.iter_mut() {
            if let Err(e) = w.flush() {
                tracing::warn!(exporter = %self.id, path = %path.display(), error = %e, "cannot flush");
            }
        }
    }

    /// One export request in the file's framing: a JSON line, or length-prefixed bytes.
    fn frame(&self, batch: Batch, out: &mut Vec<u8>) -> Result<(), String> {
        let body = match self.format {
            Format::Json => crate::signal::json::from_batch(batch)?,
            Format::Proto => batch.encode_request(),
        };
        match self.zstd {
            None if self.format == Format::Json => {
                out.extend_from_slice(&body);
                out.push(b'\n');
            }
            None => push_length_prefixed(out, &body)?,
            Some(level) => {
                let z = zstd::bulk::compress(&body, level).map_err(|e| format!("zstd: {e}"))?;
                push_length_prefixed(out, &z)?;
            }
        }
        Ok(())
    }

    /// The batch split by the group_by attribute, as (path, part) pairs, and the items dropped
    /// for want of the attribute.
    fn split(&self, batch: Batch) -> Result<(Vec<(PathBuf, Batch)>, usize), String> {
        let Some((prefix, suffix, g)) = &self.group else {
            unreachable!("split is only called with group_by on");
        };
        let signal = batch.signal();
        let batch = batch.into_decoded().map_err(|e| e.to_string())?;
        let mut parts: Vec<(PathBuf, Batch)> = Vec::new();
        let mut missing = 0;
        let mut put = |res: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
                       one: Batch| {
            match res.and_then(|r| string_attr(&r.attributes, &g.resource_attribute)) {
                Some(seg) => {
                    let path = grouped_path(prefix, seg, suffix);
                    match parts.iter_mut().find(|(p, _)| *p == path) {
                        Some((_, b)) => {
                            let _ = b.append(one);
                        }
                        None => parts.push((path, one)),
                    }
                }
                None => missing += one.item_count(),
            }
        };
        match batch {
            Batch::Traces(v) => v
                .into_iter()
                .for_each(|r| put(r.resource.clone().as_ref(), Batch::Traces(vec![r]))),
            Batch::Metrics(v) => v
                .into_iter()
                .for_each(|r| put(r.resource.clone().as_ref(), Batch::Metrics(vec![r]))),
            Batch::Logs(v) => v
                .into_iter()
                .for_each(|r| put(r.resource.clone().as_ref(), Batch::Logs(vec![r]))),
            Batch::Encoded(_) => return Err(format!("{signal} cannot be grouped")),
        }
        Ok((parts, missing))
    }

    /// Writes `bytes` to `path`, opening it (and closing the least recently written file when
    /// `max_open_files` are open) if needed.
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.clock += 1;
        let now = files.clock;
        if !files.open.contains_key(path) {
            let max = self.group.as_ref().map_or(1, |(_, _, g)| g.max_open_files);
            while files.open.len() >= max {
                let Some(oldest) = files
                    .open
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(p, _)| p.clone())
                else {
                    break;
                };
                if let Some((mut w, _)) = files.open.remove(&oldest)
                    && let Err(e) = w.flush()
                {
                    tracing::warn!(exporter = %self.id, path = %oldest.display(), error = %e, "cannot flush");
                }
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_dirs(dir, self.dir_mode)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            // Grouped files are appended to: one closed for `max_open_files` and opened again
            // keeps what it had (the Collector truncates it then).
            let w = Writer::open(path.to_path_buf(), true, self.rotation.clone())?;
            files.open.insert(path.to_path_buf(), (w, now));
        }
        let (w, used) = files.open.get_mut(path).expect("opened above");
        *used = now;
        w.write(bytes, self.buffered)
    }
}

fn push_length_prefixed(out: &mut Vec<u8>, body: &[u8]) -> Result<(), String> {
    let n = u32::try_from(body.len())
        .map_err(|_| format!("a request of {} bytes is too large to frame", body.len()))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn string_attr<'a>(
    attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a str> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// `prefix` + `segment` + `suffix`, with the segment's empty, `.` and `..` parts dropped so the
/// result stays below `prefix`.
fn grouped_path(prefix: &str, segment: &str, suffix: &str) -> PathBuf {
    let clean: Vec<&str> = segment
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    PathBuf::from(format!("{prefix}{}{suffix}", clean.join("/")))
}

impl Consumer for FileExporter {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        let s = &self.shared;
        let (signal, n) = (batch.signal(), batch.item_count());
        s.accepted.add(signal, n);
        let result = if s.group.is_some() {
            s.split(batch).and_then(|(parts, missing)| {
                if missing > 0 {
                    s.missing_attribute.inc_by(missing as u64);
                    s.failed.add(signal, missing);
                }
                let mut written = 0;
                for (path, part) in parts {
                    let items = part.item_count();
                    let mut buf = Vec::new();
                    match s.frame(part, &mut buf).and_then(|()| s.write(&path, &buf)) {
                        Ok(()) => written += items,
                        Err(e) => {
                            s.sent.add(signal, written);
                            let lost = n - missing - written;
                            s.failed.add(signal, lost);
                            s.write_failed.inc_by(lost as u64);
                            return Err(format!("{}: {e}", path.display()));
                        }
                    }
                }
                s.sent.add(signal, written);
                Ok(())
            })
        } else {
            let mut buf = Vec::new();
            let path = s
                .files
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .keys()
                .next()
                .cloned();
            match path {
                None => Err("the exporter is shut down".to_string()),
                Some(path) => s.frame(batch, &mut buf).and_then(|()| s.write(&path, &buf)),
            }
            .inspect(|()| s.sent.add(signal, n))
            .inspect_err(|_| {
                s.failed.add(signal, n);
                s.write_failed.inc_by(n as u64);
            })
        };
        Box::pin(async move {
            result.map_err(|e| {
                tracing::warn!(exporter = %s.id, error = %e, "cannot write");
                ConsumeError::Permanent(format!("file exporter: {e}"))
            })
        })
    }
}

impl Lifecycle for FileExporter {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let flusher = self
                .flusher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(t) = flusher {
                let _ = t.await;
            }
            self.shared.flush_all();
        })
    }
}

/// One open output file, its buffer and, with rotation, its size.
struct Writer {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    size: u64,
    rotation: Option<Rotation>,
}

impl Writer {
    fn open(path: PathBuf, append: bool, rotation: Option<Rotation>) -> Result<Writer, String> {
        let mut o = std::fs::OpenOptions::new();
        o.create(true);
        if append || rotation.is_some() {
            // A rotated file continues to grow until it reaches the limit, as lumberjack does.
            o.append(true);
        } else {
            o.write(true).truncate(true);
        }
        let file = o
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer {
            path,
            file,
            buf: Vec::new(),
            size,
            rotation,
        })
    }

    fn write(&mut self, bytes: &[u8], buffered: bool) -> Result<(), String> {
        if let Some(r) = &self.rotation {
            let max = r.max_megabytes.saturating_mul(1 << 20);
            if bytes.len() as u64 > max {
                return Err(format!(
                    "a write of {} bytes is larger than the rotation size of {} MiB",
                    bytes.len(),
                    r.max_megabytes
                ));
            }
            if self.size + bytes.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.size += bytes.len() as u64;
        if buffered {
            self.buf.extend_from_slice(bytes);
            if self.buf.len() >= BUFFER_LIMIT {
                self.flush().map_err(|e| e.to_string())?;
            }
            Ok(())
        } else {
            self.file
                .write_all(bytes)
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let r = self.file.write_all(&self.buf);
            self.buf.clear();
            r?;
        }
        Ok(())
    }

    /// Renames the file with the time in its name, starts a new one at the path and removes
    /// the backups the rotation settings no longer keep.
    fn rotate(&mut self) -> Result<(), String> {
        let r = self.rotation.clone().unwrap_or_default();
        self.flush()
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        let now = jiff::Timestamp::now();
        let backup = backup_name(&self.path, now, r.localtime);
        std::fs::rename(&self.path, &backup)
            .map_err(|e| format!("cannot rotate {}: {e}", self.path.display()))?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        self.size = 0;
        prune_backups(&self.path, &r, now);
        Ok(())
    }
}

/// The file's stem and extension around the time.
fn stem_and_ext(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name, String::new()),
    }
}

const BACKUP_TIME: &str = "%Y-%m-%dT%H-%M-%S%.3f";

fn backup_name(path: &Path, now: jiff::Timestamp, localtime: bool) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    let tz = if localtime {
        jiff::tz::TimeZone::system()
    } else {
        jiff::tz::TimeZone::UTC
    };
    let time = now.to_zoned_datetime(tz).strftime(BACKUP_TIME).to_string();
    path.with_file_name(format!("{stem}-{time}{ext}"))
}

/// Removes backups beyond `max_backups` (the oldest first) and older than `max_days`.
fn prune_backups(path: &Path, r: &Rotation, now: jiff::Timestamp) {
    let (stem, ext) = stem_and_ext(path);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut backups: Vec<(jiff::Timestamp, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let time = name
                .strip_prefix(&format!("{stem}-"))?
                .strip_suffix(ext.as_str())?;
            // Local-time names parse as UTC: close enough to order and age them.
            let t = jiff::civil::DateTime::strptime(BACKUP_TIME, time)
                .ok()?
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .ok()?
                .timestamp();
            Some((t, e.path()))
        })
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (i, (t, p)) in backups.iter().enumerate() {
        let too_many = r.max_backups > 0 && i >= r.max_backups;
        let too_old =
            r.max_days > 0 && now.duration_since(*t).as_secs_f64() > (r.max_days * 86_400) as f64;
        if too_many || too_old {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata;

    fn exporter(cfg: &str) -> Arc<dyn Exporter> {
        let node = yaml(cfg).unwrap();
        parse(&node)
            .unwrap()
            .build(Context::standalone("file"))
            .unwrap()
    }

    fn refused(cfg: &str) -> String {
        match parse(&yaml(cfg).unwrap()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{cfg} was accepted"),
        }
    }

    #[test]
    fn settings_are_checked_as_the_collector_checks_them() {
        assert!(refused("path: ''\n").contains("path must be non-empty"));
        assert!(
            refused("path: a\nappend: true\ncompression: zstd\n")
                .contains("append and compression")
        );
        assert!(refused("path: a\nappend: true\nrotation:\n").contains("append and rotation"));
        assert!(refused("path: a\ncompression: gzip\n").contains("\"gzip\" is not supported"));
        let e = refused("path: a\nformat: text\n");
        assert!(e.contains("unknown variant `text`"), "{e}");
        assert!(refused("path: a\ngroup_by: {enabled: true}\n").contains("exactly one *"));
        assert!(
            refused("path: '*/a'\ngroup_by: {enabled: true}\n").contains("must not start with *")
        );
        assert!(
            refused("path: a\ndirectory_permissions: '0755'\n")
                .contains("requires create_directory")
        );
        assert!(
            refused("path: a\ncreate_directory: true\ndirectory_permissions: '9'\n")
                .contains("octal")
        );
        assert!(refused("path: a\nencoding: otlp_encoding\n").contains("encoding extensions"));
        assert!(refused("path: a\nsending_queue: {}\n").contains("sending_queue"));
        assert!(
            parse(&yaml("path: a\nrotation:\nformat: proto\ncompression: zstd\n").unwrap()).is_ok()
        );
    }

    #[test]
    fn grouped_paths_stay_below_the_prefix() {
        assert_eq!(
            grouped_path("/data/", "../etc/my_config", ".json"),
            PathBuf::from("/data/etc/my_config.json")
        );
        assert_eq!(
            grouped_path("/data/", "./a//b/../c", ".json"),
            PathBuf::from("/data/a/b/c.json")
        );
    }

    #[test]
    fn backup_names_put_the_time_before_the_extension() {
        let t: jiff::Timestamp = "2022-09-14T05:02:14.173Z".parse().unwrap();
        assert_eq!(
            backup_name(Path::new("/d/data.json"), t, false),
            PathBuf::from("/d/data-2022-09-14T05-02-14.173.json")
        );
        assert_eq!(
            backup_name(Path::new("/d/data"), t, false),
            PathBuf::from("/d/data-2022-09-14T05-02-14.173")
        );
    }

    #[tokio::test]
    async fn json_lines_are_written_at_flush_and_proto_is_length_prefixed() {
        let d = tempfile::tempdir().unwrap();
        let json = d.path().join("out.json");
        let e = exporter(&format!("path: {}\nflush_interval: 1h\n", json.display()));
        e.consume(testdata::spans("svc", 1, 2)).await.unwrap();
        e.consume(testdata::logs(3)).await.unwrap();
        assert_eq!(
            std::fs::read(&json).unwrap().len(),
            0,
            "buffered until flush"
        );
        e.shutdown(tokio::time::Instant::now()).await;
        let text = std::fs::read_to_string(&json).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("{\"resourceSpans\""), "{}", lines[0]);
        assert!(lines[1].starts_with("{\"resourceLogs\""), "{}", lines[1]);

        for (name, zstd) in [("out.pb", ""), ("out.pb.zst", "compression: zstd\n")] {
            let p = d.path().join(name);
            let e = exporter(&format!("path: {}\nformat: proto\n{zstd}", p.display()));
            let batch = testdata::spans("svc", 2, 3);
            let want = batch.encode_request();
            e.consume(batch).await.unwrap();
            e.shutdown(tokio::time::Instant::now()).await;
            let bytes = std::fs::read(&p).unwrap();
            let n = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(bytes.len(), 4 + n);
            let body = if zstd.is_empty() {
                bytes[4..].to_vec()
            } else {
                zstd::decode_all(&bytes[4..]).unwrap()
            };
            assert_eq!(body, want, "{name}");
        }
    }

    #[tokio::test]
    async fn rotation_renames_full_files_and_keeps_max_backups() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data.json");
        let e = exporter(&format!(
            "path: {}\nrotation: {{max_megabytes: 1, max_backups: 2}}\n",
            p.display()
        ));
        // Each batch is a line of ~0.4 MiB: five lines need three rotations.
        let mut line_len = 0;
        for _ in 0..5 {
            let b = testdata::logs(2000);
            line_len = crate::signal::json::from_batch(b.clone()).unwrap().len() + 1;
            e.consume(b).await.unwrap();
            // Backup names have millisecond times: keep them apart.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(line_len > 300_000 && line_len < 500_000, "{line_len}");
        e.shutdown(tokio::time::Instant::now()).await;
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "the file and two backups: {names:?}");
        assert_eq!(names[2], "data.json");
        assert!(names[0].starts_with("data-") && names[0].ends_with(".json"));
        for n in &names {
            let len = std::fs::metadata(d.path().join(n)).unwrap().len();
            assert!(len <= 1 << 20, "{n}: {len}");
        }
    }

    #[tokio::test]
    async fn group_by_writes_a_file_per_attribute_value_and_drops_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let e = exporter(&format!(
            "path: {}/*/spans.json\ngroup_by: {{enabled: true, max_open_files: 1}}\n",
            d.path().display()
        ));
        let mut rs = Vec::new();
        for seg in [Some("a"), Some("../b"), None, Some("a")] {
            let Batch::Traces(mut one) = testdata::spans("svc", 1, 2) else {
                unreachable!()
            };
            if let Some(seg) = seg {
                one[0]
                    .resource
                    .as_mut()
                    .unwrap()
                    .attributes
                    .push(testdata::kv("fileexporter.path_segment", seg));
            }
            rs.extend(one);
        }
        e.consume(Batch::Traces(rs)).await.unwrap();
        e.consume(testdata::spans("svc", 1, 1)).await.unwrap();
        e.shutdown(tokio::time::Instant::now()).await;
        let a = std::fs::read_to_string(d.path().join("a/spans.json")).unwrap();
        let b = std::fs::read_to_string(d.path().join("b/spans.json")).unwrap();
        assert_eq!(a.lines().count(), 1, "both `a` resources in one request");
        assert_eq!(a.matches("\"spanId\"").count(), 4);
        assert_eq!(b.matches("\"spanId\"").count(), 2);
    }
}
