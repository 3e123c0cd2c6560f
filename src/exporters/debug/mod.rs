//! `debug` exporter (alias `logging`, deprecated): writes what it receives to stderr.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use super::helper::{Helper, QueueConfig, RetryConfig, SendError, Sender, Settings, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node, from_node, units};
use crate::signal::Batch;

pub use crate::signal::text::{Verbosity, render};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `basic`, `normal` or `detailed`, in any case. Default `basic`.
    #[serde(default, deserialize_with = "units::opt_any_case")]
    pub verbosity: Option<Verbosity>,
    /// Batches printed in full each second before sampling starts. Default 2.
    #[serde(default = "two")]
    pub sampling_initial: u64,
    /// After that, print one batch in this many. Default 1 (all).
    #[serde(default = "one")]
    pub sampling_thereafter: u64,
    /// true (default): the text goes to the collector's log output (stderr), prefixed with the
    /// exporter's id; false: to stdout as it is, as the Collector writes it then.
    #[serde(default = "yes")]
    pub use_internal_logger: bool,
    /// Old `logging` exporter key: `debug` → detailed, `info` → normal, else basic.
    #[serde(default, alias = "logLevel")]
    pub loglevel: Option<String>,
    /// The queue is off by default for `debug`, as in the Collector.
    #[serde(default = "queue_off")]
    pub sending_queue: QueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// Per request; 0 = no timeout. Default 5s.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}
fn two() -> u64 {
    2
}
fn one() -> u64 {
    1
}
fn queue_off() -> QueueConfig {
    QueueConfig {
        enabled: false,
        ..Default::default()
    }
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Config {
    fn effective_verbosity(&self) -> Verbosity {
        if let Some(v) = self.verbosity {
            return v;
        }
        match self
            .loglevel
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("debug") => Verbosity::Detailed,
            Some("info") => Verbosity::Normal,
            _ => Verbosity::Basic,
        }
    }
}

/// `debug`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::exporter("debug", crate::signal::ALL_SIGNALS, Stability::Beta, parse)
        .deprecated(&["logging"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    // `sending_queue` written without `enabled` turns the queue on, as in the Collector.
    let mut cfg: Config = from_node(node)?;
    if let Some(q) = node.get("sending_queue")
        && q.get("enabled").is_none()
    {
        cfg.sending_queue.enabled = true;
    }
    if cfg.verbosity.is_some() && cfg.loglevel.is_some() {
        return Err(key_err(
            node,
            &["loglevel"],
            "set either verbosity or the deprecated loglevel, not both",
        ));
    }
    if let Some(l) = &cfg.loglevel
        && !matches!(
            l.to_ascii_lowercase().as_str(),
            "debug" | "info" | "warn" | "error"
        )
    {
        return Err(key_err(
            node,
            &["loglevel"],
            format!("unknown log level {l:?}: use debug, info, warn or error"),
        ));
    }
    if cfg.loglevel.is_some() {
        let key = if node.get("logLevel").is_some() {
            "logLevel"
        } else {
            "loglevel"
        };
        crate::config::warn_key(
            node,
            &[key],
            "deprecated: write `verbosity` instead (debug → detailed, info → normal, else basic)",
        );
    }
    let settings = Settings::new(
        cfg.timeout,
        cfg.retry_on_failure.clone(),
        cfg.sending_queue.clone(),
        node,
    )?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn storage(&self) -> Option<&crate::config::ComponentId> {
        self.settings.storage.as_ref()
    }

    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let sender = DebugSender {
            verbosity: cfg.effective_verbosity(),
            initial: cfg.sampling_initial,
            thereafter: cfg.sampling_thereafter.max(1),
            window: AtomicU64::new(0),
            count: AtomicU64::new(0),
            id: ctx.id.to_string(),
            internal_logger: cfg.use_internal_logger,
        };
        Helper::build(&ctx, settings, sender)
    }
}

pub struct DebugSender {
    verbosity: Verbosity,
    initial: u64,
    thereafter: u64,
    /// The second the counter below belongs to.
    window: AtomicU64,
    count: AtomicU64,
    id: String,
    internal_logger: bool,
}

impl DebugSender {
    /// Sampling as the Collector's logger does it: the first `initial` per second, then one in
    /// `thereafter`.
    fn sampled(&self) -> bool {
        self.sampled_at(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    fn sampled_at(&self, now: u64) -> bool {
        if self.window.swap(now, Ordering::Relaxed) != now {
            self.count.store(0, Ordering::Relaxed);
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        n < self.initial || (n - self.initial).is_multiple_of(self.thereafter)
    }
}

impl Sender for DebugSender {
    type Request = Batch;

    fn encode(&self, batch: Batch) -> Result<Batch, SendError> {
        batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))
    }

    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SendError>> {
        if self.sampled() {
            let text = render(batch, self.verbosity);
            // One write per batch, so batches from several workers never interleave.
            if self.internal_logger {
                let _ = std::io::stderr()
                    .lock()
                    .write_all(format!("{} {text}", self.id).as_bytes());
            } else {
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
        }
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata;

    #[test]
    fn legacy_logging_keys() {
        let c: Config = from_node(
            &yaml("loglevel: debug\nsampling_initial: 5\nsampling_thereafter: 200\n").unwrap(),
        )
        .unwrap();
        assert_eq!(c.effective_verbosity(), Verbosity::Detailed);
        let c: Config = from_node(&yaml("logLevel: debug\n").unwrap()).unwrap();
        assert_eq!(c.effective_verbosity(), Verbosity::Detailed);
        assert!(parse(&yaml("verbosity: loud\n").unwrap()).is_err());
        assert!(parse(&yaml("loglevel: verbose\n").unwrap()).is_err());
    }

    #[test]
    fn renders_each_verbosity() {
        let b = testdata::spans("svc", 1, 2);
        assert_eq!(render(&b, Verbosity::Basic).lines().count(), 1);
        let normal = render(&b, Verbosity::Normal);
        assert!(
            normal.contains("s1 00000000000000010000000000000001 0000000000000001"),
            "{normal}"
        );
        assert!(render(&b, Verbosity::Detailed).contains("service.name"));
    }

    #[test]
    fn data_cannot_forge_lines() {
        let forged = "x\n2026-12-01T00:00:00Z ERROR forged\u{1b}[2J";
        let mut b = testdata::spans("svc", 1, 1);
        if let Batch::Traces(rs) = &mut b {
            let sp = &mut rs[0].scope_spans[0].spans[0];
            sp.name = forged.into();
            sp.attributes.push(testdata::kv(forged, forged));
        }
        let mut l = testdata::logs(1);
        if let Batch::Logs(rl) = &mut l {
            let r = &mut rl[0].scope_logs[0].log_records[0];
            r.severity_text = forged.into();
            r.attributes.push(testdata::kv(forged, forged));
        }
        let mut m = testdata::gauge(1);
        if let Batch::Metrics(rm) = &mut m {
            rm[0].scope_metrics[0].metrics[0].name = forged.into();
        }
        for batch in [b, l, m] {
            for v in [Verbosity::Normal, Verbosity::Detailed] {
                let text = render(&batch, v);
                assert!(!text.contains('\u{1b}'), "{text}");
                assert!(
                    text.lines().all(|line| !line.starts_with("2026-12-01")),
                    "{v:?}: {text}"
                );
                assert!(text.contains("\\n2026-12-01"), "{v:?}: {text}");
            }
        }
    }

    #[test]
    fn sampling_prints_the_first_then_every_nth() {
        let s = DebugSender {
            verbosity: Verbosity::Basic,
            initial: 2,
            thereafter: 3,
            window: AtomicU64::new(0),
            count: AtomicU64::new(0),
            id: "debug".into(),
            internal_logger: true,
        };
        let picks: Vec<bool> = (0..8).map(|_| s.sampled_at(100)).collect();
        assert_eq!(
            picks,
            vec![true, true, true, false, false, true, false, false]
        );
        // A new second starts over.
        assert!(s.sampled_at(101) && s.sampled_at(101) && s.sampled_at(101) && !s.sampled_at(101));
    }
}
