//! `journald` receiver: the node's system logs (kubelet, the container runtime, sshd) through
//! `journalctl --output=json --follow`, as the Collector's (stanza's) journald input reads them.
//! Each entry's fields are the body (a map); `__REALTIME_TIMESTAMP` is the timestamp. The cursor
//! of the last entry the pipeline took is checkpointed to `storage` (like filelog's offsets), and
//! a restart resumes after it (`--after-cursor`); without a checkpoint, `start_at: end` (default)
//! reads only new entries and `beginning` the whole journal. A refused batch is retried (the
//! cursor does not move past it); journalctl exiting is restarted after `retry_on_failure`'s
//! backoff, from the last cursor.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, BuildError, ConsumeError, Context, Factory, Lifecycle, ReceiverConfig,
    SignalConsumers, Stability,
};
use crate::config::{ComponentId, DeError, Node, from_node, key_err};
use crate::receivers::Output;
use crate::signal::{Batch, Signal};
use crate::stanza::config::Operators;
use crate::stanza::entry::{Entry, LogGroups, Value};
use crate::storage::Store;

/// The storage key of the cursor (stanza's name for it).
const CURSOR_KEY: &str = "lastReadCursor";
/// Entries per batch at most; a batch also goes out when journalctl pauses.
const MAX_BATCH: usize = 1024;
/// A line longer than this is skipped (and counted as malformed).
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    End,
    Beginning,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A journal directory (`--directory`), e.g. `/var/log/journal` mounted from the node.
    pub directory: Option<String>,
    /// Journal files (`--file`); with neither, the system journal.
    pub files: Vec<String>,
    /// `end` (default: only what comes after the start) or `beginning`, without a checkpoint.
    pub start_at: StartAt,
    /// `--unit` for each.
    pub units: Vec<String>,
    /// `--identifier` for each (SYSLOG_IDENTIFIER).
    pub identifiers: Vec<String>,
    /// Field matches: each map's pairs must all match; maps are alternatives (journalctl's `+`).
    pub matches: Vec<std::collections::BTreeMap<String, String>>,
    /// `--priority`: this level and more severe. Default `info`.
    pub priority: String,
    /// `--grep` on MESSAGE.
    pub grep: Option<String>,
    /// `--dmesg`: kernel messages only.
    pub dmesg: bool,
    /// `--all`: fields journalctl would abbreviate or hide.
    pub all: bool,
    /// `--namespace`.
    pub namespace: Option<String>,
    /// A MESSAGE journalctl gives as bytes (not UTF-8) becomes text.
    pub convert_message_bytes: bool,
    /// A storage extension for the cursor.
    pub storage: Option<String>,
    /// The journalctl binary. Default `journalctl` (on `PATH`).
    pub journalctl_path: String,
    /// Passed as `--root` (the node's root mounted in the pod).
    pub root_path: Option<String>,
    pub retry_on_failure: crate::stanza::config::RetryOnFailure,
    /// Stanza operators after the entry is read (stateless ones).
    pub operators: Option<serde_json::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            directory: None,
            files: Vec::new(),
            start_at: StartAt::End,
            units: Vec::new(),
            identifiers: Vec::new(),
            matches: Vec::new(),
            priority: "info".into(),
            grep: None,
            dmesg: false,
            all: false,
            namespace: None,
            convert_message_bytes: false,
            storage: None,
            journalctl_path: "journalctl".into(),
            root_path: None,
            retry_on_failure: Default::default(),
            operators: None,
        }
    }
}

const PRIORITIES: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "0", "1", "2", "3", "4",
    "5", "6", "7",
];

impl Config {
    /// journalctl's arguments, resuming after `cursor` when there is one.
    pub fn args(&self, cursor: Option<&str>) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--utc".into(),
            "--output=json".into(),
            "--follow".into(),
            "--no-pager".into(),
        ];
        match (cursor, self.start_at) {
            (Some(c), _) => a.push(format!("--after-cursor={c}")),
            (None, StartAt::Beginning) => a.push("--no-tail".into()),
            // Only what comes from now on (journalctl would show the last 10 first).
            (None, StartAt::End) => a.push("--lines=0".into()),
        }
        for u in &self.units {
            a.push(format!("--unit={u}"));
        }
        for i in &self.identifiers {
            a.push(format!("--identifier={i}"));
        }
        a.push(format!("--priority={}", self.priority));
        if let Some(g) = &self.grep {
            a.push(format!("--grep={g}"));
        }
        if self.dmesg {
            a.push("--dmesg".into());
        }
        if self.all {
            a.push("--all".into());
        }
        if let Some(n) = &self.namespace {
            a.push(format!("--namespace={n}"));
        }
        if let Some(r) = &self.root_path {
            a.push(format!("--root={r}"));
        }
        if let Some(d) = &self.directory {
            a.push(format!("--directory={d}"));
        }
        for f in &self.files {
            a.push(format!("--file={f}"));
        }
        for (i, m) in self.matches.iter().enumerate() {
            if i > 0 {
                a.push("+".into());
            }
            for (k, v) in m {
                a.push(format!("{k}={v}"));
            }
        }
        a
    }
}

/// `journald`'s identity.
pub const FACTORY: Factory =
    Factory::receiver("journald", crate::signal::LOGS, Stability::Alpha, parse);

struct Receiver {
    cfg: Config,
    storage: Option<ComponentId>,
    ops: Arc<Operators>,
}

fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if !PRIORITIES.contains(&cfg.priority.as_str()) {
        return Err(key_err(
            node,
            &["priority"],
            format!(
                "{:?}: expected one of emerg, alert, crit, err, warning, notice, info, debug or 0-7",
                cfg.priority
            ),
        ));
    }
    if cfg.directory.is_some() && !cfg.files.is_empty() {
        return Err(key_err(
            node,
            &["files"],
            "`directory` and `files` exclude each other",
        ));
    }
    for (i, m) in cfg.matches.iter().enumerate() {
        for k in m.keys() {
            // journalctl's field names: upper case, digits and underscores.
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(key_err(
                    node,
                    &["matches", &format!("[{i}]"), k],
                    "a journal field name is upper case letters, digits and `_`",
                ));
            }
        }
    }
    let storage = cfg
        .storage
        .as_deref()
        .map(ComponentId::parse)
        .transpose()
        .map_err(|m| key_err(node, &["storage"], m))?;
    let ops = Operators::stateless(node.get("operators"))?;
    Ok(Box::new(Receiver {
        cfg,
        storage,
        ops: Arc::new(ops),
    }))
}

/// One JSON line of journalctl as an entry, and its cursor.
pub fn entry(
    line: &str,
    convert_message_bytes: bool,
    observed: u64,
) -> Option<(Entry, Option<String>)> {
    let serde_json::Value::Object(fields) = serde_json::from_str(line).ok()? else {
        return None;
    };
    let mut e = Entry {
        observed,
        ..Default::default()
    };
    let mut cursor = None;
    let mut body = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        match k.as_str() {
            "__CURSOR" => cursor = v.as_str().map(str::to_string),
            "__REALTIME_TIMESTAMP" => {
                e.timestamp = v
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map_or(0, |us| us.saturating_mul(1000));
            }
            "MESSAGE" if convert_message_bytes => {
                let text = match &v {
                    serde_json::Value::Array(bytes) => {
                        let raw: Vec<u8> = bytes
                            .iter()
                            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect();
                        Value::Str(String::from_utf8_lossy(&raw).into_owned())
                    }
                    _ => Value::from_json(v),
                };
                body.push((k, text));
            }
            _ => body.push((k, Value::from_json(v))),
        }
    }
    e.body = Value::Map(body);
    Some((e, cursor))
}

struct Run {
    cfg: Config,
    retry: crate::stanza::config::RetryOnFailure,
    ops: Arc<Operators>,
    out: Output,
    store: Option<Arc<Store>>,
    malformed: prometheus_client::metrics::counter::Counter,
    stop: CancellationToken,
    id: String,
}

impl Run {
    fn cursor(&self) -> Option<String> {
        let raw = self.store.as_ref()?.get(CURSOR_KEY)?;
        String::from_utf8(raw).ok()
    }

    /// Sends a batch, retrying a refusal until it is taken or the receiver stops; true when
    /// taken.
    async fn send(&self, groups: LogGroups) -> bool {
        if groups.count == 0 {
            return true;
        }
        let mut batch = Batch::Logs(groups.into_resource_logs());
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.out.push(batch, Default::default()).await {
                Ok(()) => return true,
                Err(ConsumeError::Retryable {
                    returned: Some(b), ..
                }) if !self.stop.is_cancelled() => {
                    batch = *b;
                    tokio::select! {
                        _ = self.stop.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.id, error = %e, "journald: batch refused; it is read again after a restart");
                    return false;
                }
            }
        }
    }

    /// One journalctl run, until it exits or the receiver stops. Err: it could not start.
    async fn follow(&self) -> Result<(), String> {
        let cursor = self.cursor();
        let mut child = tokio::process::Command::new(&self.cfg.journalctl_path)
            .args(self.cfg.args(cursor.as_deref()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.cfg.journalctl_path))?;
        let stdout = child.stdout.take().ok_or("journalctl has no stdout")?;
        let mut lines = tokio::io::BufReader::with_capacity(64 << 10, stdout);
        let mut line = String::new();
        let mut groups = LogGroups::default();
        let mut last_cursor: Option<String> = None;
        let mut done = Vec::new();
        loop {
            line.clear();
            // Flush what is pending when journalctl pauses (it blocks on --follow).
            let read = if groups.count == 0 {
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    r = read_bounded(&mut lines, &mut line) => Some(r),
                }
            } else {
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    r = read_bounded(&mut lines, &mut line) => Some(r),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => None,
                }
            };
            match read {
                Some(Ok(0)) => break,
                Some(Ok(_)) => {
                    let observed = crate::component::now_nanos();
                    match entry(line.trim_end(), self.cfg.convert_message_bytes, observed) {
                        Some((e, c)) => {
                            if c.is_some() {
                                last_cursor = c;
                            }
                            if self.ops.ops.is_empty() {
                                groups.push(e);
                            } else {
                                crate::stanza::operators::run(&self.ops.ops, e, &mut done);
                                done.drain(..).for_each(|e| groups.push(e));
                            }
                        }
                        None => {
                            self.malformed.inc();
                        }
                    }
                    if groups.count < MAX_BATCH {
                        continue;
                    }
                }
                Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.malformed.inc();
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(receiver = %self.id, error = %e, "journald: reading journalctl failed");
                    break;
                }
                None => {}
            }
            let taken = self.send(std::mem::take(&mut groups)).await;
            if !taken {
                break;
            }
            self.checkpoint(last_cursor.as_deref());
        }
        if groups.count > 0 && self.send(groups).await {
            self.checkpoint(last_cursor.as_deref());
        }
        let _ = child.start_kill();
        if let Ok(out) = child.wait_with_output().await
            && !out.status.success()
            && !self.stop.is_cancelled()
        {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "journalctl exited with {}: {}",
                out.status,
                err.trim()
            ));
        }
        Ok(())
    }

    fn checkpoint(&self, cursor: Option<&str>) {
        if let (Some(store), Some(c)) = (&self.store, cursor)
            && let Err(e) = store.set(CURSOR_KEY, c.as_bytes().to_vec())
        {
            tracing::warn!(receiver = %self.id, error = %e, "journald: cannot save the cursor");
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer one is consumed and reported as
/// `InvalidData`.
async fn read_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut String,
) -> std::io::Result<usize> {
    let mut raw = Vec::new();
    let mut total = 0;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            break;
        }
        let (take, end) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if raw.len() < MAX_LINE {
            raw.extend_from_slice(&buf[..take.min(MAX_LINE - raw.len())]);
        }
        total += take;
        r.consume(take);
        if end {
            break;
        }
    }
    if total > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "journal line too long",
        ));
    }
    *line = String::from_utf8(raw)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(total)
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
            let store = crate::receivers::open_store(&ctx, self.storage.as_ref())?;
            let stop = CancellationToken::new();
            let malformed = ctx
                .telemetry
                .receiver_malformed
                .get_or_create(&crate::telemetry::ReceiverLabels {
                    receiver: ctx.id.to_string(),
                    transport: "journalctl".into(),
                })
                .clone();
            let run = Run {
                out: Output::new(&ctx, "journalctl", consumer),
                retry: self.cfg.retry_on_failure.clone(),
                cfg: self.cfg,
                ops: self.ops,
                store,
                malformed,
                stop: stop.clone(),
                id: ctx.id.to_string(),
            };
            tracing::info!(receiver = %ctx.id, "journald: following journalctl");
            let task = tokio::spawn(async move {
                let mut backoff = run.retry.initial_interval;
                loop {
                    match run.follow().await {
                        Ok(()) => backoff = run.retry.initial_interval,
                        Err(e) => tracing::warn!(receiver = %run.id, error = %e, "journald"),
                    }
                    tokio::select! {
                        _ = run.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(run.retry.max_interval);
                }
            });
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn args_as_journalctl_takes_them() {
        let cfg: Config = from_node(
            &yaml(
                "directory: /var/log/journal\nunits: [kubelet, containerd]\npriority: warning\nmatches: [{_SYSTEMD_UNIT: ssh.service, _UID: '0'}, {_COMM: cron}]\nstart_at: beginning\n",
            )
            .unwrap(),
        )
        .unwrap();
        let a = cfg.args(None);
        for want in [
            "--output=json",
            "--follow",
            "--no-tail",
            "--unit=kubelet",
            "--unit=containerd",
            "--priority=warning",
            "--directory=/var/log/journal",
        ] {
            assert!(a.contains(&want.to_string()), "{want} in {a:?}");
        }
        let tail: Vec<&str> = a.iter().rev().take(4).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            ["_SYSTEMD_UNIT=ssh.service", "_UID=0", "+", "_COMM=cron"]
        );
        let a = cfg.args(Some("s=abc;i=2"));
        assert!(
            a.contains(&"--after-cursor=s=abc;i=2".to_string())
                && !a.contains(&"--no-tail".to_string())
        );
        let end: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert!(end.args(None).contains(&"--lines=0".to_string()));
    }

    #[test]
    fn errors_name_the_key() {
        for (cfg, path) in [
            ("priority: loud\n", "priority"),
            ("directory: /x\nfiles: [/y]\n", "files"),
            ("matches: [{unit: x}]\n", "matches[0].unit"),
            ("start_at: middle\n", "start_at"),
        ] {
            let e = parse(&yaml(cfg).unwrap()).err().unwrap();
            assert_eq!(e.path_string(), path, "{cfg}: {e}");
        }
    }

    #[test]
    fn a_json_line_is_an_entry_with_its_cursor_and_time() {
        let line = r#"{"MESSAGE":[104,105,255],"PRIORITY":"6","__CURSOR":"s=1;i=7","__REALTIME_TIMESTAMP":"1700000000123456","_PID":"42"}"#;
        let (e, c) = entry(line, true, 5).unwrap();
        assert_eq!(c.as_deref(), Some("s=1;i=7"));
        assert_eq!((e.timestamp, e.observed), (1_700_000_000_123_456_000, 5));
        let Value::Map(m) = &e.body else { panic!() };
        assert_eq!(
            crate::stanza::entry::map_get(m, "MESSAGE"),
            Some(&Value::Str("hi\u{fffd}".into()))
        );
        assert!(crate::stanza::entry::map_get(m, "__CURSOR").is_none());
        let (e, _) = entry(line, false, 5).unwrap();
        let Value::Map(m) = &e.body else { panic!() };
        assert!(matches!(
            crate::stanza::entry::map_get(m, "MESSAGE"),
            Some(Value::Array(_))
        ));
        assert!(entry("not json", false, 0).is_none());
    }
}
