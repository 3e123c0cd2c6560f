//! `otlpjsonfile` receiver: reads files of OTLP/JSON export requests, one per line (what the
//! `file` exporter writes with `format: json` and no compression, and what the Collector's
//! `file` exporter writes), and sends each request's spans, data points and log records down
//! the pipelines of its signal.
//!
//! Files are matched by `include` (minus `exclude`) at every `poll_interval` and known by device
//! and inode, so a file renamed by rotation keeps its offset and the new file at the old name is
//! read from its start. Files present at start are read from their end (`start_at: end`, the
//! default) or their start; files appearing later from their start. With `replay_file` every
//! poll reads each file again from its start.
//!
//! Delivery: a line's offset advances (and is checkpointed to `storage`) only when the pipeline
//! took its request; a refused request is read again at the next poll. A line that is not
//! OTLP/JSON, or longer than `max_log_size`, is skipped and counted
//! (`otelcol_receiver_malformed_items_total`, with a warning naming the file and byte offset).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Output;
use super::otlp::Refused;
use crate::component::{
    BoxFuture, BuildError, ConsumeError, Context, Factory, Lifecycle, ReceiverConfig,
    SignalConsumers, Stability,
};
use crate::config::{ComponentId, DeError, Node, from_node, key_err, units};
use crate::signal::Signal;
use crate::storage::Store;

const CHECKPOINT_KEY: &str = "otlpjsonfile.offsets";
/// Bytes read from a file per read call.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Files found at start are read from their end (default); files appearing later from 0.
    #[default]
    End,
    Beginning,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Globs of the files to read (required).
    pub include: Vec<String>,
    /// Globs of files not to read.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `end` (default) or `beginning`.
    #[serde(default)]
    pub start_at: StartAt,
    /// How often files are looked for and read. Default 200ms.
    #[serde(default = "poll_default", deserialize_with = "units::duration")]
    pub poll_interval: Duration,
    /// A storage extension keeping the offsets across restarts.
    #[serde(default)]
    pub storage: Option<String>,
    /// Read every file from its start at every poll. Default false.
    #[serde(default)]
    pub replay_file: bool,
    /// The longest line read, as a size (`16MiB`). Default 16 MiB (the Collector's stanza
    /// default of 1 MiB cuts the requests its own file exporter writes).
    #[serde(default = "max_line_default", deserialize_with = "bytes_size")]
    pub max_log_size: u64,
}

fn poll_default() -> Duration {
    Duration::from_millis(200)
}
fn max_line_default() -> u64 {
    16 << 20
}

fn bytes_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => units::parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

/// `otlpjsonfile`'s identity.
pub const FACTORY: Factory = Factory::receiver(
    "otlpjsonfile",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
);

struct Validated {
    cfg: Config,
    storage: Option<ComponentId>,
}

fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.include.is_empty() {
        return Err(key_err(node, &["include"], "at least one glob is required"));
    }
    for (key, globs) in [("include", &cfg.include), ("exclude", &cfg.exclude)] {
        for g in globs {
            glob::Pattern::new(g)
                .map_err(|e| key_err(node, &[key], format!("invalid glob {g:?}: {e}")))?;
        }
    }
    if cfg.poll_interval.is_zero() {
        return Err(key_err(
            node,
            &["poll_interval"],
            "must be larger than zero",
        ));
    }
    if cfg.max_log_size == 0 {
        return Err(key_err(node, &["max_log_size"], "must be larger than zero"));
    }
    let storage = cfg
        .storage
        .as_deref()
        .map(ComponentId::parse)
        .transpose()
        .map_err(|m| key_err(node, &["storage"], m))?;
    Ok(Box::new(Validated { cfg, storage }))
}

impl ReceiverConfig for Validated {
    fn endpoints(&self) -> Vec<String> {
        Vec::new()
    }

    fn storage(&self) -> Option<&ComponentId> {
        self.storage.as_ref()
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let outs: Vec<(Signal, Output)> = Signal::ALL
                .iter()
                .filter_map(|&s| {
                    let c = consumers[s.index()].clone()?;
                    Some((s, Output::new(&ctx, "file", c)))
                })
                .collect();
            if outs.is_empty() {
                return Err(BuildError::new(&ctx.id, "no pipeline uses it"));
            }
            let store = crate::receivers::open_store(&ctx, self.storage.as_ref())?;
            let known = store
                .as_ref()
                .and_then(|s| s.get(CHECKPOINT_KEY))
                .and_then(|raw| serde_json::from_slice::<Vec<Known>>(&raw).ok())
                .unwrap_or_default();
            let malformed = ctx
                .telemetry
                .receiver_malformed
                .get_or_create(&crate::telemetry::ReceiverLabels {
                    receiver: ctx.id.to_string(),
                    transport: "file".into(),
                })
                .clone();
            let stop = CancellationToken::new();
            let reader = Reader {
                files: known.into_iter().map(|k| ((k.dev, k.ino), k)).collect(),
                first_poll: store.is_none(),
                cfg: self.cfg,
                outs,
                store,
                malformed,
                id: ctx.id.to_string(),
                stop: stop.clone(),
            };
            let task = tokio::spawn(reader.run());
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

/// A file read so far, as checkpointed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Known {
    dev: u64,
    ino: u64,
    offset: u64,
    path: PathBuf,
}

struct Reader {
    cfg: Config,
    files: HashMap<(u64, u64), Known>,
    /// The first poll without a checkpoint applies `start_at` to the files it finds.
    first_poll: bool,
    outs: Vec<(Signal, Output)>,
    store: Option<Arc<Store>>,
    malformed: prometheus_client::metrics::counter::Counter,
    id: String,
    stop: CancellationToken,
}

impl Reader {
    async fn run(mut self) {
        loop {
            self.poll().await;
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        }
    }

    fn matched(&self) -> Vec<PathBuf> {
        let exclude: Vec<glob::Pattern> = self
            .cfg
            .exclude
            .iter()
            .filter_map(|g| glob::Pattern::new(g).ok())
            .collect();
        let mut paths: Vec<PathBuf> = self
            .cfg
            .include
            .iter()
            .filter_map(|g| glob::glob(g).ok())
            .flatten()
            .filter_map(Result::ok)
            .filter(|p| !exclude.iter().any(|x| x.matches_path(p)))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    async fn poll(&mut self) {
        let first = std::mem::replace(&mut self.first_poll, false);
        let mut seen = HashMap::new();
        for path in self.matched() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let key = (meta.dev(), meta.ino());
            let mut known = self.files.remove(&key).unwrap_or_else(|| Known {
                dev: key.0,
                ino: key.1,
                offset: if first && self.cfg.start_at == StartAt::End {
                    meta.len()
                } else {
                    0
                },
                path: path.clone(),
            });
            known.path = path.clone();
            if self.cfg.replay_file || meta.len() < known.offset {
                // Replayed, or truncated: from the start.
                known.offset = 0;
            }
            if meta.len() > known.offset {
                self.read(&mut known).await;
            }
            seen.insert(key, known);
            if self.stop.is_cancelled() {
                break;
            }
        }
        // Files no longer matched are forgotten.
        self.files = seen;
        self.checkpoint();
    }

    /// Reads `known.path` from its offset to its last complete line, sending each request.
    async fn read(&mut self, known: &mut Known) {
        let mut file = match std::fs::File::open(&known.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(receiver = %self.id, path = %known.path.display(), error = %e, "otlpjsonfile: cannot open");
                return;
            }
        };
        if file.seek(SeekFrom::Start(known.offset)).is_err() {
            return;
        }
        let max = self.cfg.max_log_size as usize;
        let mut pending: Vec<u8> = Vec::new();
        // Inside a line longer than max_log_size: skip to its end.
        let mut skipping = false;
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(receiver = %self.id, path = %known.path.display(), error = %e, "otlpjsonfile: cannot read");
                    break;
                }
            };
            let mut rest = &chunk[..n];
            while !rest.is_empty() {
                let Some(nl) = memchr::memchr(b'\n', rest) else {
                    if !skipping {
                        pending.extend_from_slice(rest);
                        if pending.len() > max {
                            self.too_long(known);
                            pending.clear();
                            skipping = true;
                        }
                    }
                    break;
                };
                let line_len = pending.len() + nl + 1;
                if skipping {
                    skipping = false;
                    known.offset += line_len as u64;
                } else {
                    pending.extend_from_slice(&rest[..nl]);
                    if pending.len() > max {
                        self.too_long(known);
                    } else if !self.send(&pending, known).await {
                        // Refused: this line is read again at the next poll.
                        return;
                    }
                    known.offset += line_len as u64;
                }
                pending.clear();
                rest = &rest[nl + 1..];
            }
            if self.stop.is_cancelled() {
                return;
            }
        }
    }

    fn too_long(&self, known: &Known) {
        self.malformed.inc();
        tracing::warn!(receiver = %self.id, path = %known.path.display(), offset = known.offset, max_log_size = self.cfg.max_log_size, "otlpjsonfile: line longer than max_log_size skipped");
    }

    /// Sends one line's request to the pipeline of each signal it holds; false when a pipeline
    /// refused it for now (memory, backpressure).
    async fn send(&self, line: &[u8], known: &Known) -> bool {
        if line.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        let mut malformed = None;
        for (signal, out) in &self.outs {
            let admitted =
                match super::otlp::admit_json(*signal, line.to_vec(), u64::MAX, &out.budget) {
                    Ok(a) => a,
                    Err(Refused::Invalid(m)) | Err(Refused::TooLarge { msg: m, .. }) => {
                        malformed = Some(m);
                        continue;
                    }
                    Err(Refused::Busy { msg, .. }) => {
                        tracing::debug!(receiver = %self.id, "{msg}");
                        return false;
                    }
                };
            match out.push(admitted.batch, Default::default()).await {
                Ok(()) | Err(ConsumeError::Permanent(_)) => {}
                Err(ConsumeError::Retryable { .. }) => return false,
            }
        }
        if let Some(m) = malformed {
            self.malformed.inc();
            tracing::warn!(receiver = %self.id, path = %known.path.display(), offset = known.offset, "otlpjsonfile: line skipped: {m}");
        }
        true
    }

    fn checkpoint(&self) {
        let Some(store) = &self.store else { return };
        if self.cfg.replay_file {
            return;
        }
        let known: Vec<&Known> = self.files.values().collect();
        let Ok(raw) = serde_json::to_vec(&known) else {
            return;
        };
        if let Err(e) = store.set(CHECKPOINT_KEY, raw) {
            tracing::warn!(receiver = %self.id, error = %e, "otlpjsonfile: cannot save the offsets");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    fn refused(cfg: &str) -> String {
        match parse(&yaml(cfg).unwrap()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{cfg} was accepted"),
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(refused("include: []\n").contains("at least one glob"));
        assert!(refused("include: ['[']\n").contains("invalid glob"));
        assert!(refused("include: [a]\npoll_interval: 0s\n").contains("larger than zero"));
        assert!(refused("include: [a]\nmultiline: {}\n").contains("multiline"));
        assert!(
            parse(
                &yaml("include: [a]\nstart_at: beginning\nmax_log_size: 2MiB\nreplay_file: true\n")
                    .unwrap()
            )
            .is_ok()
        );
    }
}
