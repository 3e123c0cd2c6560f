//! The tailer: finds files by their globs, knows them by fingerprint across renames and
//! copy-truncate, reads new data in chunks, splits it into entries, runs the operators, and
//! advances offsets (checkpointed) only once the pipeline took the batch.

use super::*;

/// One tracked file.
pub(super) struct Reader {
    pub(super) fp: Vec<u8>,
    /// Bytes consumed: the next read starts here.
    pub(super) offset: u64,
    /// Checkpointed (accepted downstream) offset and buffered raw lines.
    pub(super) committed: u64,
    pub(super) committed_pending: Vec<RawLine>,
    pub(super) file: Option<std::fs::File>,
    pub(super) path: String,
    pub(super) state: FileState,
    /// Attributes and resource every entry of this file starts with.
    pub(super) base: Entry,
    /// When an incomplete tail was first seen at this file length.
    pub(super) tail: Option<(u64, Instant)>,
    /// `header`: the file's header lines are behind us (its attributes are in `base`).
    pub(super) header_done: bool,
    /// What the header gave, kept for the checkpoint.
    pub(super) header_attrs: Vec<(String, String)>,
    /// Polls since the file was last matched: an unmatched reader is kept a few polls so that a
    /// file that reappears (a rotation copy being written) is recognised.
    pub(super) unseen: u32,
}

/// Polls an unmatched reader is remembered.
pub(super) const KEEP_UNSEEN: u32 = 3;

#[derive(Serialize, Deserialize)]
pub(super) struct Saved {
    /// Fingerprint, base64.
    pub(super) fp: String,
    pub(super) offset: u64,
    pub(super) path: String,
    #[serde(default)]
    pub(super) pending: Vec<RawLine>,
    /// The header's attributes once it was read (absent: not read yet, or no `header`).
    #[serde(default)]
    pub(super) header: Option<Vec<(String, String)>>,
}

pub(super) struct Tailer {
    /// Glob patterns as written (`glob::glob` walks them).
    pub(super) include: Vec<String>,
    pub(super) exclude: Vec<glob::Pattern>,
    pub(super) start_at_end: bool,
    pub(super) first_poll: bool,
    pub(super) fingerprint_size: usize,
    pub(super) max_log_size: usize,
    pub(super) force_flush: Duration,
    pub(super) encoding: Encoding,
    pub(super) multiline: Option<(Regex, bool)>,
    pub(super) omit_pattern: bool,
    pub(super) trim_leading: bool,
    pub(super) trim_trailing: bool,
    pub(super) include_name: bool,
    pub(super) include_path: bool,
    pub(super) include_name_resolved: bool,
    pub(super) include_path_resolved: bool,
    pub(super) attributes: Map,
    pub(super) resource: Map,
    pub(super) stages: Stages,
    pub(super) ops: Arc<config::Operators>,
    pub(super) header: Option<Arc<config::Header>>,
    pub(super) store: Option<Arc<Store>>,
    pub(super) known: Vec<Reader>,
    pub(super) retry_initial: Duration,
    pub(super) retry_max: Duration,
}

/// Entries ready to send, grouped by resource and scope name in arrival order.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) groups: Vec<(Arc<Map>, String, Vec<LogRecord>)>,
    pub(super) count: usize,
    /// Readers (by index into `known`) whose offsets advance when this batch is accepted.
    pub(super) touched: Vec<usize>,
}

impl Pending {
    /// Adds an entry under its file's resource (`file`), merged with what operators set on the
    /// entry's own resource, if anything.
    pub(super) fn add(&mut self, e: Entry, file: &Arc<Map>) {
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
        let scope = std::mem::take(&mut e.scope_name);
        if let Some((r, s, recs)) = self.groups.last_mut()
            && (Arc::ptr_eq(r, &resource) || **r == *resource)
            && (s.is_empty() && scope.is_empty() || *s == scope)
        {
            recs.push(e.into_record());
            return;
        }
        self.groups.push((resource, scope, vec![e.into_record()]));
    }

    pub(super) fn take_batch(&mut self) -> Batch {
        let groups = std::mem::take(&mut self.groups);
        self.count = 0;
        Batch::Logs(
            groups
                .into_iter()
                .map(|(r, scope, records)| ResourceLogs {
                    resource: Some(Resource {
                        attributes: into_kvs(Arc::unwrap_or_clone(r)),
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: scope,
                            ..Default::default()
                        }),
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
    pub(super) fn new(
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
            header: None,
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
    pub(super) fn restore(&mut self) -> Result<(), String> {
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
                header_done: s.header.is_some() || s.offset > 0,
                header_attrs: s.header.clone().unwrap_or_default(),
            };
            for (k, v) in &r.header_attrs {
                crate::stanza::entry::map_set(
                    &mut r.base.attributes,
                    k,
                    crate::stanza::entry::Value::Str(v.clone()),
                );
            }
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

    pub(super) fn base_entry(&self, path: &str) -> Entry {
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

    pub(super) fn matched_paths(&self) -> Vec<String> {
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
    pub(super) async fn poll(&mut self, out: &Output, stop: &CancellationToken) -> bool {
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
                        header_done: offset > 0,
                        header_attrs: Vec::new(),
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
    pub(super) async fn read_file(
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
            if let Some(h) = self.header.clone()
                && !self.known[i].header_done
            {
                let taken = self.read_header(i, &h, &lines);
                lines.drain(..taken);
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
            self.operate(produced, observed, &file_res, pending);
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
            self.operate(produced, observed, &file_res, pending);
        }
        true
    }

    /// The resource of file `i`'s entries: the configured `resource` plus what the container
    /// operator took from the path. Built once per read, shared by its entries.
    pub(super) fn file_resource(&self, i: usize) -> Arc<Map> {
        let mut m = self.resource.clone();
        if let Some(pm) = self.stages.resource(&self.known[i].state) {
            for (k, v) in pm {
                crate::stanza::entry::map_set(&mut m, k, v.clone());
            }
        }
        Arc::new(m)
    }

    /// Entries through the operators into `pending`; without operators each goes straight in
    /// (no intermediate list: an entry is a few hundred bytes to move).
    fn operate(
        &self,
        produced: Vec<Entry>,
        observed: u64,
        file_res: &Arc<Map>,
        pending: &mut Pending,
    ) {
        if self.ops.ops.is_empty() {
            for mut e in produced {
                e.observed = observed;
                pending.add(e, file_res);
            }
            return;
        }
        let mut done = Vec::with_capacity(produced.len());
        for mut e in produced {
            e.observed = observed;
            crate::stanza::operators::run(&self.ops.ops, e, &mut done);
        }
        for e in done {
            pending.add(e, file_res);
        }
    }

    /// Groups physical lines into entries (multiline rules, whitespace trimming, encoding).
    /// Reads the header lines at the front of `lines` into file `i`'s attributes; how many
    /// lines were header. The header ends at the first line that does not match.
    fn read_header(&mut self, i: usize, h: &config::Header, lines: &[(u64, &[u8])]) -> usize {
        let mut taken = 0;
        for (_, l) in lines {
            let text = self.encoding.decode(l);
            let text = text.trim_end_matches('\r');
            if !h.pattern.is_match(text) {
                self.known[i].header_done = true;
                break;
            }
            let mut out = Vec::new();
            crate::stanza::operators::run(&h.ops.ops, Entry::new(text.to_string(), 0), &mut out);
            let r = &mut self.known[i];
            for e in out {
                for (k, v) in e.attributes {
                    if let Some(t) = v.to_text() {
                        r.header_attrs.retain(|(x, _)| *x != k);
                        r.header_attrs.push((k.clone(), t));
                    }
                    crate::stanza::entry::map_set(&mut r.base.attributes, &k, v);
                }
            }
            taken += 1;
        }
        taken
    }

    pub(super) fn split_entries(&self, lines: &[(u64, &[u8])], flush: bool) -> Split {
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

    pub(super) fn finish(&self, t: String, re: &Regex) -> String {
        let t = if self.omit_pattern {
            re.replace(&t, "").into_owned()
        } else {
            t
        };
        self.trim(t)
    }

    pub(super) fn trim(&self, t: String) -> String {
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
    pub(super) async fn flush(&mut self, pending: &mut Pending, out: &Output) -> bool {
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
    pub(super) fn rollback(&mut self) {
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

    pub(super) fn checkpoint(&self) {
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
                header: r.header_done.then(|| r.header_attrs.clone()),
            })
            .collect();
        let bytes = serde_json::to_vec(&saved).unwrap_or_default();
        if let Err(e) = store.set(CHECKPOINT_KEY, bytes) {
            tracing::error!(error = %e, "filelog: cannot write the checkpoint");
        }
    }
}

#[derive(Default)]
pub(super) struct Split {
    pub(super) entries: Vec<(u64, String)>,
    /// Where the entry still waiting for more lines starts (multiline only): it is read again.
    pub(super) pending_start: Option<u64>,
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        memchr::memchr(needle[0], hay)
    } else {
        memchr::memmem::find(hay, needle)
    }
}

/// Reads as much of `buf` as the file has from `offset`; returns the bytes read.
pub(super) fn read_full_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> usize {
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
