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
mod tailer;

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
use self::tailer::*;
use super::Output;
use crate::component::{
    BoxFuture, BuildError, ConsumeError, Context, Factory, Lifecycle, ReceiverConfig,
    SignalConsumers, Stability, now_nanos,
};
use crate::config::{ComponentId, DeError, Node, from_node};
use crate::signal::{Batch, Signal};
use crate::stanza::encoding::Encoding;
use crate::stanza::entry::{Entry, Map, Value, into_kvs};
use crate::stanza::stateful::{FileState, RawLine, Stages};
use crate::storage::Store;

/// The storage key of the checkpoint.
const CHECKPOINT_KEY: &str = "file_input.known_files";
/// Entries per pushed batch.
const MAX_BATCH: usize = 2048;
/// Bytes read from one file per read call.
const READ_CHUNK: usize = 256 << 10;

/// `filelog`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::receiver("filelog", crate::signal::LOGS, Stability::Beta, parse)
        .aliases(&["file_log"]);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    config::validate(node, &cfg)?;
    let ops = config::operators(node.get("operators"))?;
    let header = config::header(node, &cfg)?.map(Arc::new);
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
        header,
    }))
}

pub struct Receiver {
    cfg: Config,
    storage: Option<ComponentId>,
    ops: Arc<config::Operators>,
    header: Option<Arc<config::Header>>,
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
            let mut tailer = Tailer::new(&self.cfg, self.ops.clone(), store)
                .map_err(|m| BuildError::new(&ctx.id, m))?;
            tailer.header = self.header.clone();
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
