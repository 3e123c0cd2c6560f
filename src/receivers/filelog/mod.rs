//! `filelog` receiver (alias `file_log`): tails files matched by globs, splits them into entries,
//! runs the stanza operators, and sends log records.
//!
//! Files are known by a fingerprint (their first `fingerprint_size` bytes), not by name: a file
//! renamed by rotation keeps its reader (and an open handle is read to its end even when the new
//! name is no longer matched), and a copy made by copy-truncate rotation continues from the
//! offset the original had, while the truncated original becomes a new file read from 0.
//!
//! Delivery: a poll reads new data from every file, turns it into batches and pushes each batch
//! down the pipeline. Offsets (and the raw lines still buffered by the `container` and
//! `recombine` operators) advance, and are checkpointed to `storage`, only after the pipeline
//! accepted the batch; a refused batch is read again at the next poll. A restart, even after
//! kill -9, resumes at the checkpoint, so no line is lost. A line can only repeat if the process
//! dies in the moment between the pipeline's acceptance and the checkpoint write; and what the
//! pipeline accepted into an in-memory exporter queue is lost with the process, as in the
//! Collector, unless the exporter sends synchronously (`sending_queue.enabled: false`).

pub mod config;

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use self::config::{Config, StartAt};
use super::Output;
use crate::component::{
    BoxFuture, BuildError, ConsumeError, Context, Factory, Lifecycle, Parse, ReceiverConfig,
    SignalConsumers, Stability, now_nanos,
};
use crate::config::{ComponentId, DeError, Node, from_node};
use crate::signal::{Batch, Signal};
use crate::stanza::encoding::Encoding;
use crate::stanza::entry::{Entry, Map, Value, into_kvs};
use crate::stanza::operators::{Op, Outcome};
use crate::stanza::stateful::{FileState, RawLine, Stages};
use crate::storage::Store;

/// The storage key of the checkpoint.
const CHECKPOINT_KEY: &str = "file_input.known_files";
/// Entries per pushed batch.
const MAX_BATCH: usize = 2048;
/// Bytes read from one file per read call.
const READ_CHUNK: usize = 256 << 10;

/// `filelog`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::new(
    "filelog",
    &[crate::signal::Signal::Logs],
    Stability::Beta,
    Parse::Receiver(parse),
)
.aliases(&["file_log"]);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    config::validate(node, &cfg)?;
    let ops = config::operators(node.get("operators"))?;
    let storage = cfg
        .storage
        .as_deref()
        .map(ComponentId::parse)
        .transpose()
        .map_err(|m| crate::config::key_err(node, &["storage"], m))?;
    Ok(Box::new(Receiver {
        cfg,
        storage,
        ops: Arc::new(ops),
    }))
}

pub struct Receiver {
    cfg: Config,
    storage: Option<ComponentId>,
    ops: Arc<config::Operators>,
}

impl ReceiverConfig for Receiver {
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
            let Some(consumer) = consumers[Signal::Logs.index()].clone() else {
                return Err(BuildError::new(&ctx.id, "no logs pipeline uses it"));
            };
            let store = match &self.storage {
                Some(sid) => {
                    let ext = ctx
                        .storage
                        .get(sid)
                        .map_err(|e| BuildError::new(&ctx.id, e))?;
                    Some(
                        ext.client("receiver", &ctx.id, "")
                            .map_err(|e| BuildError::new(&ctx.id, e))?,
                    )
                }
                None => None,
            };
            let tailer = Tailer::new(&self.cfg, self.ops.clone(), store)
                .map_err(|m| BuildError::new(&ctx.id, m))?;
            let out = Output::new(&ctx, "", consumer);
            let stop = CancellationToken::new();
            let task = tokio::spawn(run(tailer, out, self.cfg.poll_interval, stop.clone()));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

async fn run(mut t: Tailer, out: Output, every: Duration, stop: CancellationToken) {
    let mut backoff = t.retry_initial;
    loop {
        let ok = t.poll(&out, &stop).await;
        let wait = if ok {
            backoff = t.retry_initial;
            every
        } else {
            let w = backoff.max(every);
            backoff = (backoff * 2).min(t.retry_max);
            w
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One tracked file.
struct Reader {
    fp: Vec<u8>,
    /// Bytes consumed: the next read starts here.
    offset: u64,
    /// Checkpointed (accepted downstream) offset and buffered raw lines.
    committed: u64,
    committed_pending: Vec<RawLine>,
    file: Option<std::fs::File>,
    path: String,
    state: FileState,
    /// Attributes and resource every entry of this file starts with.
    base: Entry,
    /// When an incomplete tail was first seen at this file length.
    tail: Option<(u64, Instant)>,
    /// Polls since the file was last matched: an unmatched reader is kept a few polls so that a
    /// file that reappears (a rotation copy being written) is recognised.
    unseen: u32,
}

/// Polls an unmatched reader is remembered.
const KEEP_UNSEEN: u32 = 3;

#[derive(Serialize, Deserialize)]
struct Saved {
    /// Fingerprint, base64.
    fp: String,
    offset: u64,
    path: String,
    #[serde(default)]
    pending: Vec<RawLine>,
}

struct Tailer {
    /// Glob patterns as written (`glob::glob` walks them).
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    start_at_end: bool,
    first_poll: bool,
    fingerprint_size: usize,
    max_log_size: usize,
    force_flush: Duration,
    encoding: Encoding,
    multiline: Option<(Regex, bool)>,
    omit_pattern: bool,
    trim_leading: bool,
    trim_trailing: bool,
    include_name: bool,
    include_path: bool,
    include_name_resolved: bool,
    include_path_resolved: bool,
    attributes: Map,
    resource: Map,
    stages: Stages,
    ops: Arc<config::Operators>,
    store: Option<Arc<Store>>,
    known: Vec<Reader>,
    retry_initial: Duration,
    retry_max: Duration,
}

/// Entries ready to send, grouped by resource in arrival order.
#[derive(Default)]
struct Pending {
    groups: Vec<(Arc<Map>, Vec<LogRecord>)>,
    count: usize,
    /// Readers (by index into `known`) whose offsets advance when this batch is accepted.
    touched: Vec<usize>,
}

impl Pending {
    /// Adds an entry under its file's resource (`file`), merged with what operators set on the
    /// entry's own resource, if anything.
    fn add(&mut self, e: Entry, file: &Arc<Map>) {
        let mut e = e;
        let resource = if e.resource.is_empty() {
            file.clone()
        } else {
            let mut m = (**file).clone();
            for (k, v) in std::mem::take(&mut e.resource) {
                crate::stanza::entry::map_set(&mut m, &k, v);
            }
            Arc::new(m)
        };
        self.count += 1;
        if let Some((r, recs)) = self.groups.last_mut()
            && (Arc::ptr_eq(r, &resource) || **r == *resource)
        {
            recs.push(e.into_record());
            return;
        }
        self.groups.push((resource, vec![e.into_record()]));
    }

    fn take_batch(&mut self) -> Batch {
        let groups = std::mem::take(&mut self.groups);
        self.count = 0;
        Batch::Logs(
            groups
                .into_iter()
                .map(|(r, records)| ResourceLogs {
                    resource: Some(Resource {
                        attributes: into_kvs(Arc::unwrap_or_clone(r)),
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope::default()),
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        )
    }
}

impl Tailer {
    fn new(
        cfg: &Config,
        ops: Arc<config::Operators>,
        store: Option<Arc<Store>>,
    ) -> Result<Tailer, String> {
        let pats = |v: &[String]| -> Result<Vec<glob::Pattern>, String> {
            v.iter()
                .map(|p| glob::Pattern::new(p).map_err(|e| format!("bad glob `{p}`: {e}")))
                .collect()
        };
        let (multiline, omit) = match &cfg.multiline {
            Some(m) => match (&m.line_start_pattern, &m.line_end_pattern) {
                (Some(p), _) => (
                    Some((Regex::new(p).map_err(|e| e.to_string())?, true)),
                    m.omit_pattern,
                ),
                (None, Some(p)) => (
                    Some((Regex::new(p).map_err(|e| e.to_string())?, false)),
                    m.omit_pattern,
                ),
                _ => (None, false),
            },
            None => (None, false),
        };
        let to_map = |m: &std::collections::BTreeMap<String, String>| -> Map {
            m.iter()
                .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                .collect()
        };
        let mut t = Tailer {
            include: cfg.include.clone(),
            exclude: pats(&cfg.exclude)?,
            start_at_end: cfg.start_at == StartAt::End,
            first_poll: true,
            fingerprint_size: cfg.fingerprint_size as usize,
            max_log_size: cfg.max_log_size as usize,
            force_flush: cfg.force_flush_period,
            encoding: crate::stanza::encoding::encoding(&cfg.encoding)?,
            multiline,
            omit_pattern: omit,
            // Container lines are not trimmed: a CRI partial's trailing space belongs to the
            // log line being reassembled, and the container parser takes the fields exactly.
            trim_leading: !cfg.preserve_leading_whitespaces && ops.container.is_none(),
            trim_trailing: !cfg.preserve_trailing_whitespaces && ops.container.is_none(),
            include_name: cfg.include_file_name,
            include_path: cfg.include_file_path,
            include_name_resolved: cfg.include_file_name_resolved,
            include_path_resolved: cfg.include_file_path_resolved,
            attributes: to_map(&cfg.attributes),
            resource: to_map(&cfg.resource),
            stages: Stages {
                // A reassembled container entry is capped like any entry, so a runaway stream
                // of partial lines cannot grow without bound.
                container: ops.container.clone().map(|mut c| {
                    if c.max_log_size == 0 {
                        c.max_log_size = cfg.max_log_size as usize;
                    }
                    c
                }),
                recombine: ops.recombine.clone(),
            },
            ops,
            store,
            known: Vec::new(),
            retry_initial: if cfg.retry_on_failure.enabled {
                cfg.retry_on_failure.initial_interval
            } else {
                Duration::ZERO
            },
            retry_max: if cfg.retry_on_failure.enabled {
                cfg.retry_on_failure.max_interval
            } else {
                Duration::ZERO
            },
        };
        t.restore()?;
        Ok(t)
    }

    /// Loads the checkpoint: readers without handles, matched by fingerprint at the first poll.
    fn restore(&mut self) -> Result<(), String> {
        use base64::Engine;
        let Some(store) = &self.store else {
            return Ok(());
        };
        let Some(bytes) = store.get(CHECKPOINT_KEY) else {
            return Ok(());
        };
        let saved: Vec<Saved> = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "checkpoint in {} is unreadable: {e}",
                store.path().display()
            )
        })?;
        let now = Instant::now();
        for s in saved {
            let fp = base64::engine::general_purpose::STANDARD
                .decode(&s.fp)
                .map_err(|e| format!("checkpoint fingerprint: {e}"))?;
            let mut r = Reader {
                fp,
                offset: s.offset,
                committed: s.offset,
                committed_pending: s.pending.clone(),
                file: None,
                path: s.path.clone(),
                state: FileState::default(),
                base: self.base_entry(&s.path),
                tail: None,
                unseen: 0,
            };
            // Rebuild the stateful stages' buffers from the raw lines they held.
            let mut sink = Vec::new();
            for (o, l) in s.pending {
                self.stages
                    .feed(&mut r.state, &r.base, &r.path, o, l, now, &mut sink);
            }
            self.known.push(r);
        }
        tracing::info!(
            files = self.known.len(),
            "filelog: resumed from the checkpoint"
        );
        Ok(())
    }

    fn base_entry(&self, path: &str) -> Entry {
        let mut e = Entry {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        let p = std::path::Path::new(path);
        if self.include_name {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            crate::stanza::entry::map_set(&mut e.attributes, "log.file.name", Value::Str(name));
        }
        if self.include_path {
            crate::stanza::entry::map_set(
                &mut e.attributes,
                "log.file.path",
                Value::Str(path.into()),
            );
        }
        if (self.include_name_resolved || self.include_path_resolved)
            && let Ok(real) = std::fs::canonicalize(p)
        {
            if self.include_name_resolved {
                let name = real
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crate::stanza::entry::map_set(
                    &mut e.attributes,
                    "log.file.name_resolved",
                    Value::Str(name),
                );
            }
            if self.include_path_resolved {
                crate::stanza::entry::map_set(
                    &mut e.attributes,
                    "log.file.path_resolved",
                    Value::Str(real.to_string_lossy().into_owned()),
                );
            }
        }
        e
    }

    fn matched_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for src in &self.include {
            let Ok(paths) = glob::glob(src) else {
                continue;
            };
            for p in paths.flatten() {
                if !p.is_file() {
                    continue;
                }
                let ps = p.to_string_lossy().into_owned();
                // `*` stops at `/` (and `**` crosses it), as in the Collector's doublestar globs.
                let opts = glob::MatchOptions {
                    require_literal_separator: true,
                    ..Default::default()
                };
                if !self.exclude.iter().any(|x| x.matches_with(&ps, opts)) {
                    out.push(ps);
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Finds files and reads what is new in each; false if the pipeline refused a batch.
    async fn poll(&mut self, out: &Output, stop: &CancellationToken) -> bool {
        let now = Instant::now();
        let mut prev = std::mem::take(&mut self.known);
        let mut current: Vec<Reader> = Vec::new();
        let mut new_files = false;
        for path in self.matched_paths() {
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let mut fp = vec![0u8; self.fingerprint_size];
            let n = read_full_at(&file, &mut fp, 0);
            fp.truncate(n);
            if fp.is_empty() {
                // Nothing to identify it by yet.
                continue;
            }
            if current.iter().any(|r| r.fp == fp) {
                // The same file under two names (a link, or both halves of a rename race).
                continue;
            }
            let len = file.metadata().map_or(0, |m| m.len());
            let found = prev.iter().position(|k| fp.starts_with(&k.fp));
            if found.is_some_and(|i| prev[i].offset > len) {
                // Our file's start but shorter than what we read of it: a copy still being
                // written (copy-truncate rotation). Look again at the next poll.
                continue;
            }
            let r = match found {
                Some(i) => {
                    let mut r = prev.swap_remove(i);
                    r.fp = fp;
                    r.unseen = 0;
                    r.file = Some(file);
                    if r.path != path {
                        // Kubernetes metadata stays what the first name gave (in `state`).
                        r.base = self.base_entry(&path);
                        r.path = path;
                    }
                    r
                }
                None => {
                    new_files = true;
                    let offset = if self.first_poll && self.start_at_end {
                        len
                    } else {
                        0
                    };
                    Reader {
                        fp,
                        offset,
                        committed: offset,
                        committed_pending: Vec::new(),
                        file: Some(file),
                        base: self.base_entry(&path),
                        path,
                        state: FileState::default(),
                        tail: None,
                        unseen: 0,
                    }
                }
            };
            current.push(r);
        }
        self.first_poll = false;
        // Files no longer matched (renamed away by rotation): read the rest through the handle
        // still open; remember them a few polls, then forget them.
        let lost: Vec<Reader> = prev
            .into_iter()
            .filter_map(|mut r| {
                r.unseen += 1;
                (r.unseen <= KEEP_UNSEEN).then_some(r)
            })
            .collect();
        let lost_from = current.len();
        current.extend(lost);
        self.known = current;

        let mut pending = Pending::default();
        let mut ok = true;
        for i in 0..self.known.len() {
            if stop.is_cancelled() {
                break;
            }
            let drain = i >= lost_from;
            if !self.read_file(i, now, drain, &mut pending, out).await {
                ok = false;
                break;
            }
        }
        if ok && (pending.count > 0 || !pending.touched.is_empty()) {
            ok = self.flush(&mut pending, out).await;
        } else if ok && new_files {
            // Record where new files start (their end, with `start_at: end`) right away.
            self.checkpoint();
        }
        if !ok {
            self.rollback();
        }
        // Drained lost readers let go of their handles (once what they read was delivered).
        if ok {
            for r in &mut self.known[lost_from..] {
                r.file = None;
            }
        }
        ok
    }

    /// Reads file `i` from its offset to the end, feeding entries into `pending` and flushing
    /// full batches.
    async fn read_file(
        &mut self,
        i: usize,
        now: Instant,
        drain: bool,
        pending: &mut Pending,
        out: &Output,
    ) -> bool {
        let nl = self.encoding.newline();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let r = &mut self.known[i];
            let Some(file) = &r.file else {
                return true;
            };
            let len = file.metadata().map_or(0, |m| m.len());
            if r.offset > len {
                // Truncated under the same fingerprint cannot happen; a shorter file than
                // our offset means it is not ours any more.
                return true;
            }
            // A chunk always holds a longest entry, so a long line is cut, never stuck.
            buf.resize(READ_CHUNK.max(self.max_log_size + nl.len()), 0);
            let n = read_full_at(file, &mut buf, r.offset);
            buf.truncate(n);
            if n == 0 {
                break;
            }
            let at_eof = r.offset + n as u64 >= len;
            let (offset0, tail0) = (r.offset, r.tail);
            // Physical lines with their start offsets.
            let mut lines: Vec<(u64, &[u8])> = Vec::new();
            let mut start = 0usize;
            let mut consumed = 0usize;
            let mut s = 0usize;
            while let Some(p) = find(&buf[s..], nl) {
                let mut end = s + p;
                if nl.len() == 2 && !(end - start).is_multiple_of(2) {
                    // A UTF-16 newline must be aligned.
                    s = end + 1;
                    continue;
                }
                let next = end + nl.len();
                if nl.len() == 1 && end > start && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                lines.push((offset0 + start as u64, &buf[start..end]));
                start = next;
                consumed = next;
                s = next;
            }
            // A line longer than max_log_size with no newline in sight: cut it.
            let tail_len = buf.len() - consumed;
            let mut cut_tail = false;
            if tail_len >= self.max_log_size {
                lines.push((
                    offset0 + consumed as u64,
                    &buf[consumed..consumed + self.max_log_size],
                ));
                consumed += self.max_log_size;
                cut_tail = true;
            }
            // An incomplete last line, or a multiline entry waiting for its end, is sent after
            // `force_flush_period` without growth.
            let expired = at_eof
                && matches!(tail0, Some((l, since))
                    if l == len && now.duration_since(since) >= self.force_flush);
            let flush = (expired || drain) && at_eof;
            if flush && consumed < buf.len() && !cut_tail {
                lines.push((offset0 + consumed as u64, &buf[consumed..]));
                consumed = buf.len();
            }
            let base_offset = offset0;
            let mut split = self.split_entries(&lines, flush);
            if !at_eof && split.pending_start == Some(base_offset) {
                // One multiline entry fills the whole chunk: send it as it is.
                split = self.split_entries(&lines, true);
            }
            let waiting =
                !flush && at_eof && (consumed < buf.len() || split.pending_start.is_some());
            let r = &mut self.known[i];
            if !waiting {
                r.tail = None;
            } else if r.tail.is_none_or(|(l, _)| l != len) {
                r.tail = Some((len, now));
            }
            // An entry still waiting for lines is read again next time.
            let consumed_now = match split.pending_start {
                Some(p) => (p - base_offset) as usize,
                None => consumed,
            };
            let r = &mut self.known[i];
            let observed = now_nanos();
            let mut produced = Vec::new();
            for (off, text) in split.entries {
                self.stages.feed(
                    &mut r.state,
                    &r.base,
                    &r.path,
                    off,
                    text,
                    now,
                    &mut produced,
                );
            }
            if at_eof {
                self.stages
                    .flush_stale(&mut r.state, &r.base, now, drain, &mut produced);
            }
            r.offset += consumed_now as u64;
            if !pending.touched.contains(&i) {
                pending.touched.push(i);
            }
            let file_res = self.file_resource(i);
            for mut e in produced {
                e.observed = observed;
                if apply_ops(&self.ops.ops, &mut e) {
                    pending.add(e, &file_res);
                }
            }
            if pending.count >= MAX_BATCH && !self.flush(pending, out).await {
                return false;
            }
            if consumed_now == 0 || at_eof {
                break;
            }
        }
        // Stale buffered pieces of a quiet file.
        let r = &mut self.known[i];
        if self.stages.has_pending(&r.state) {
            let mut produced = Vec::new();
            self.stages
                .flush_stale(&mut r.state, &r.base, now, drain, &mut produced);
            if !produced.is_empty() && !pending.touched.contains(&i) {
                pending.touched.push(i);
            }
            let observed = now_nanos();
            let file_res = self.file_resource(i);
            for mut e in produced {
                e.observed = observed;
                if apply_ops(&self.ops.ops, &mut e) {
                    pending.add(e, &file_res);
                }
            }
        }
        true
    }

    /// The resource of file `i`'s entries: the configured `resource` plus what the container
    /// operator took from the path. Built once per read, shared by its entries.
    fn file_resource(&self, i: usize) -> Arc<Map> {
        let mut m = self.resource.clone();
        if let Some(pm) = self.stages.resource(&self.known[i].state) {
            for (k, v) in pm {
                crate::stanza::entry::map_set(&mut m, k, v.clone());
            }
        }
        Arc::new(m)
    }

    /// Groups physical lines into entries (multiline rules, whitespace trimming, encoding).
    fn split_entries(&self, lines: &[(u64, &[u8])], flush: bool) -> Split {
        let mut out = Split::default();
        let decode = |b: &[u8]| {
            let mut t = self.encoding.decode(b);
            // CRLF in encodings whose `\r` is more than one byte (UTF-16).
            if t.ends_with('\r') {
                t.pop();
            }
            t
        };
        let Some((re, is_start)) = &self.multiline else {
            for (off, l) in lines {
                let text = decode(l);
                out.entries.push((*off, self.trim(text)));
            }
            return out;
        };
        let mut cur: Option<(u64, String)> = None;
        for (off, l) in lines {
            let text = decode(l);
            if *is_start {
                if re.is_match(&text) {
                    if let Some((o, t)) = cur.take() {
                        out.entries.push((o, self.finish(t, re)));
                    }
                    cur = Some((*off, text));
                } else {
                    match &mut cur {
                        Some((_, t)) => {
                            t.push('\n');
                            t.push_str(&text);
                        }
                        // Text before the first start line is an entry of its own.
                        None => out.entries.push((*off, self.trim(text))),
                    }
                }
            } else {
                let m = re.is_match(&text);
                match &mut cur {
                    Some((_, t)) => {
                        t.push('\n');
                        t.push_str(&text);
                    }
                    None => cur = Some((*off, text)),
                }
                if m {
                    let (o, t) = cur.take().expect("set above");
                    out.entries.push((o, self.finish(t, re)));
                }
            }
        }
        match cur {
            Some((o, t)) if flush => out.entries.push((o, self.finish(t, re))),
            Some((o, _)) => out.pending_start = Some(o),
            None => {}
        }
        out
    }

    fn finish(&self, t: String, re: &Regex) -> String {
        let t = if self.omit_pattern {
            re.replace(&t, "").into_owned()
        } else {
            t
        };
        self.trim(t)
    }

    fn trim(&self, t: String) -> String {
        match (self.trim_leading, self.trim_trailing) {
            (false, false) => t,
            (true, true)
                if !t.starts_with(char::is_whitespace) && !t.ends_with(char::is_whitespace) =>
            {
                t
            }
            (l, tr) => {
                let mut s: &str = &t;
                if l {
                    s = s.trim_start();
                }
                if tr {
                    s = s.trim_end();
                }
                s.to_string()
            }
        }
    }

    /// Pushes the pending batch; on acceptance commits the touched readers and checkpoints.
    async fn flush(&mut self, pending: &mut Pending, out: &Output) -> bool {
        if pending.count > 0 {
            let batch = pending.take_batch();
            match out.push(batch, Default::default()).await {
                Ok(()) => {}
                Err(ConsumeError::Permanent(e)) => {
                    // Dropped and counted downstream; re-reading would not help.
                    tracing::warn!(error = %e, "filelog: the pipeline refused entries for good");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "filelog: the pipeline refused a batch; it is read again");
                    return false;
                }
            }
        }
        for &i in &pending.touched {
            let r = &mut self.known[i];
            r.committed = r.offset;
            r.committed_pending = self.stages.pending(&r.state);
        }
        pending.touched.clear();
        self.checkpoint();
        true
    }

    /// After a refused batch: back to the last accepted state.
    fn rollback(&mut self) {
        let now = Instant::now();
        for r in &mut self.known {
            if r.offset == r.committed && self.stages.pending(&r.state) == r.committed_pending {
                continue;
            }
            r.offset = r.committed;
            r.state = FileState::default();
            r.tail = None;
            let mut sink = Vec::new();
            for (o, l) in r.committed_pending.clone() {
                self.stages
                    .feed(&mut r.state, &r.base, &r.path, o, l, now, &mut sink);
            }
        }
    }

    fn checkpoint(&self) {
        use base64::Engine;
        let Some(store) = &self.store else {
            return;
        };
        let saved: Vec<Saved> = self
            .known
            .iter()
            .map(|r| Saved {
                fp: base64::engine::general_purpose::STANDARD.encode(&r.fp),
                offset: r.committed,
                path: r.path.clone(),
                pending: r.committed_pending.clone(),
            })
            .collect();
        let bytes = serde_json::to_vec(&saved).unwrap_or_default();
        if let Err(e) = store.set(CHECKPOINT_KEY, bytes) {
            tracing::error!(error = %e, "filelog: cannot write the checkpoint");
        }
    }
}

#[derive(Default)]
struct Split {
    entries: Vec<(u64, String)>,
    /// Where the entry still waiting for more lines starts (multiline only): it is read again.
    pending_start: Option<u64>,
}

/// Runs the stateless operators; false if one dropped the entry.
fn apply_ops(ops: &[Op], e: &mut Entry) -> bool {
    for op in ops {
        if let Outcome::Drop = op.apply(e) {
            return false;
        }
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        memchr::memchr(needle[0], hay)
    } else {
        memchr::memmem::find(hay, needle)
    }
}

/// Reads as much of `buf` as the file has from `offset`; returns the bytes read.
fn read_full_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{ConsumeResult, Consumer};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl Consumer for Collect {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            if let Batch::Logs(rl) = batch {
                let mut v = self.0.lock().unwrap();
                for r in rl
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                {
                    if let Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) = r.body.as_ref().and_then(|b| b.value.clone())
                    {
                        v.push(s);
                    }
                }
            }
            Box::pin(async { Ok(()) })
        }
    }

    fn tailer(yaml: &str) -> Tailer {
        let node = crate::config::node::parse(yaml).unwrap();
        let cfg: Config = from_node(&node).unwrap();
        config::validate(&node, &cfg).unwrap();
        let ops = config::operators(node.get("operators")).unwrap();
        Tailer::new(&cfg, Arc::new(ops), None).unwrap()
    }

    async fn poll(t: &mut Tailer, sink: &Arc<Collect>) -> Vec<String> {
        let out = Output::new(
            &crate::component::Context::standalone("filelog"),
            "",
            sink.clone(),
        );
        assert!(t.poll(&out, &CancellationToken::new()).await);
        std::mem::take(&mut *sink.0.lock().unwrap())
    }

    #[tokio::test]
    async fn long_lines_are_cut_at_max_log_size() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.log");
        let long = "z".repeat(700_000);
        std::fs::write(&f, format!("short\n{long}\nafter\n")).unwrap();
        let mut t = tailer(&format!(
            "include: [\"{}/*.log\"]\nstart_at: beginning\nmax_log_size: 300000\n",
            d.path().display()
        ));
        let sink = Arc::new(Collect::default());
        let got = poll(&mut t, &sink).await;
        let lens: Vec<usize> = got.iter().map(String::len).collect();
        assert_eq!(lens, [5, 300_000, 300_000, 100_000, 5]);
    }

    #[tokio::test]
    async fn utf16_and_line_end_multiline() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("w.log");
        let text = "first\r\nsecond ;\nthird\n";
        let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        std::fs::write(&f, bytes).unwrap();
        let mut t = tailer(&format!(
            "include: [\"{}/*.log\"]\nstart_at: beginning\nencoding: utf-16le\nmultiline: {{line_end_pattern: ';$'}}\n",
            d.path().display()
        ));
        let sink = Arc::new(Collect::default());
        // "third" waits for its end until the flush period passes.
        assert_eq!(poll(&mut t, &sink).await, ["first\nsecond ;"]);
        assert!(
            poll(&mut t, &sink).await.is_empty(),
            "not before force_flush_period"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(poll(&mut t, &sink).await, ["third"]);
    }

    #[tokio::test]
    async fn copy_truncate_continues_in_the_copy_and_restarts_the_original() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("app.log");
        std::fs::write(&f, "one\ntwo\n").unwrap();
        let mut t = tailer(&format!(
            "include: [\"{}/app.log*\"]\nstart_at: beginning\n",
            d.path().display()
        ));
        let sink = Arc::new(Collect::default());
        assert_eq!(poll(&mut t, &sink).await, ["one", "two"]);
        // Written, then rotated before the next poll.
        let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        std::io::Write::write_all(&mut h, b"three\n").unwrap();
        std::fs::copy(&f, d.path().join("app.log.1")).unwrap();
        h.set_len(0).unwrap();
        std::fs::write(&f, "four\n").unwrap();
        let mut got = poll(&mut t, &sink).await;
        got.sort();
        assert_eq!(got, ["four", "three"]);
        assert!(poll(&mut t, &sink).await.is_empty());
    }
}
