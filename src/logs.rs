//! The collector's own logs, as `service.telemetry.logs` configures them in the Collector:
//! `level`, `encoding` (`console` or `json`, the JSON with zap's keys `level`, `ts`, `msg`),
//! `sampling` (per log statement and tick: the first `initial`, then every `thereafter`-th, and a
//! line saying how many were left out), `initial_fields` on every line, `output_paths`
//! (`stderr`, `stdout` or files). Every event is one line: control characters from clients are
//! escaped ([`crate::text::LogWriter`]).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogEncoding, LogSampling, TelemetryLogs};
use crate::text::LogWriter;

/// Where log lines go.
#[derive(Clone)]
enum Output {
    Stderr,
    Stdout,
    File(Arc<Mutex<std::fs::File>>),
}

/// Writes each event to every output once it is complete (one `write` per output, so lines
/// from several threads never interleave).
#[derive(Clone)]
pub struct Outputs(Arc<Vec<Output>>);

impl Outputs {
    /// `stderr`, `stdout`, or a file path (appended to, created if missing).
    pub fn open(paths: &[String]) -> Result<Outputs, String> {
        let mut out = Vec::new();
        for p in paths {
            out.push(match p.as_str() {
                "stderr" => Output::Stderr,
                "stdout" => Output::Stdout,
                path => {
                    let path = path.strip_prefix("file://").unwrap_or(path);
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("cannot open the log output {path}: {e}"))?;
                    Output::File(Arc::new(Mutex::new(f)))
                }
            });
        }
        if out.is_empty() {
            out.push(Output::Stderr);
        }
        Ok(Outputs(Arc::new(out)))
    }
}

pub struct EventBuffer {
    buf: Vec<u8>,
    outputs: Arc<Vec<Output>>,
}

impl Write for EventBuffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        for o in self.outputs.iter() {
            // A log line that cannot be written has nowhere to be reported.
            let _ = match o {
                Output::Stderr => io::stderr().write_all(&self.buf),
                Output::Stdout => io::stdout().write_all(&self.buf),
                Output::File(f) => f.lock().map_or(Ok(()), |mut f| f.write_all(&self.buf)),
            };
        }
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = LogWriter<EventBuffer>;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(EventBuffer {
            buf: Vec::with_capacity(256),
            outputs: self.0.clone(),
        })
    }
}

/// zap's sampling: per log statement and tick, the first `initial` events, then every
/// `thereafter`-th (none if 0).
pub struct Sampler {
    initial: u64,
    thereafter: u64,
    tick: Duration,
    seen: Mutex<HashMap<Identifier, (Instant, u64)>>,
    /// Left out since the last summary line.
    dropped: Arc<AtomicU64>,
}

impl Sampler {
    pub fn new(cfg: &LogSampling) -> Sampler {
        Sampler {
            initial: cfg.initial,
            thereafter: cfg.thereafter,
            tick: cfg.tick,
            seen: Mutex::default(),
            dropped: Arc::default(),
        }
    }

    /// Whether an event of this call site, at `now`, is kept.
    fn keep(&self, id: Identifier, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        let e = seen.entry(id).or_insert((now, 0));
        if now.duration_since(e.0) >= self.tick {
            *e = (now, 0);
        }
        e.1 += 1;
        let n = e.1;
        let keep = n <= self.initial
            || (self.thereafter > 0 && (n - self.initial).is_multiple_of(self.thereafter));
        if !keep {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        keep
    }
}

/// A layer whose events pass through a [`Sampler`] first. A wrapper rather than a per-layer
/// filter: a per-layer filter makes every call site "sometimes" interesting, so every disabled
/// `trace!` of the HTTP/2 stack would be checked again on every frame; the wrapper leaves the
/// level filter's once-per-call-site decision alone.
pub struct Sampled<L> {
    inner: L,
    sampler: Sampler,
}

impl<S, L> tracing_subscriber::Layer<S> for Sampled<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(meta)
    }
    fn enabled(&self, meta: &tracing::Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(meta, ctx)
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        self.inner.on_new_span(attrs, id, ctx);
    }
    fn on_record(
        &self,
        span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        self.inner.on_record(span, values, ctx);
    }
    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        self.inner.on_follows_from(span, follows, ctx);
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self
            .sampler
            .keep(event.metadata().callsite(), Instant::now())
        {
            self.inner.on_event(event, ctx);
        }
    }
    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }
    fn on_exit(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }
    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }
    fn on_id_change(&self, old: &tracing::span::Id, new: &tracing::span::Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

/// Lines in the Collector's JSON shape: `{"level":"info","ts":1764606487.39,"msg":"...",...}`,
/// then the event's fields, then `initial_fields`.
pub struct JsonFormat {
    pub initial: Vec<(String, String)>,
}

struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn fmt::Debug) {
        let key = if f.name() == "message" {
            "msg"
        } else {
            f.name()
        };
        self.0
            .insert(key.to_owned(), serde_json::Value::String(format!("{v:?}")));
    }
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        let key = if f.name() == "message" {
            "msg"
        } else {
            f.name()
        };
        self.0.insert(key.to_owned(), v.into());
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().to_owned(), v.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut fields = JsonFields(serde_json::Map::new());
        fields.0.insert(
            "level".into(),
            event
                .metadata()
                .level()
                .as_str()
                .to_ascii_lowercase()
                .into(),
        );
        fields.0.insert("ts".into(), ts.into());
        fields.0.insert("msg".into(), "".into());
        event.record(&mut fields);
        for (k, v) in &self.initial {
            fields
                .0
                .entry(k.clone())
                .or_insert_with(|| v.clone().into());
        }
        // serde_json's map sorts its keys; the Collector's order starts level, ts, msg.
        let mut first = serde_json::Map::new();
        for k in ["level", "ts", "msg"] {
            if let Some(v) = fields.0.remove(k) {
                first.insert(k.into(), v);
            }
        }
        let head =
            serde_json::to_string(&serde_json::Value::Object(first)).map_err(|_| fmt::Error)?;
        let rest =
            serde_json::to_string(&serde_json::Value::Object(fields.0)).map_err(|_| fmt::Error)?;
        let head = head.strip_suffix('}').unwrap_or(&head);
        match rest.as_str() {
            "{}" => writeln!(w, "{head}}}"),
            _ => writeln!(w, "{head},{}", &rest[1..]),
        }
    }
}

/// The console shape (`2026-12-01T16:28:07.392550Z  WARN message key="value"`) with
/// `initial_fields` after the event's own.
pub struct ConsoleWithFields {
    pub initial: Vec<(String, String)>,
}

impl<S, N> FormatEvent<S, N> for ConsoleWithFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut w)?;
        write!(w, " {:>5} ", event.metadata().level().as_str())?;
        ctx.format_fields(w.by_ref(), event)?;
        for (k, v) in &self.initial {
            write!(w, " {k}={v:?}")?;
        }
        writeln!(w)
    }
}

/// Changes the level of a running logger (a reloaded config), unless the command line or
/// `RUST_LOG` fixed it.
pub type SetLevel = Box<dyn Fn(&str) + Send + Sync>;

/// The `EnvFilter` directive for a configured level: the Collector's names (any case), with
/// ferrotel's own lines at that level and its dependencies' (HTTP/2 frames, TLS) at `warn`
/// unless asked for by a full directive.
pub fn directive(level: &str) -> String {
    let l = match level.to_ascii_lowercase().as_str() {
        "dpanic" | "panic" | "fatal" => "error".to_string(),
        other => other.to_string(),
    };
    if l.contains('=') || l.contains(',') {
        return l;
    }
    match l.as_str() {
        "debug" | "trace" => format!("warn,ferrotel={l}"),
        _ => l,
    }
}

/// Installs the log output. `cli_level` (`--log-level`) and `RUST_LOG` win over the config's
/// level.
pub fn init(
    cli_level: Option<&str>,
    cfg: &TelemetryLogs,
    resource: &std::collections::BTreeMap<String, Option<String>>,
) -> Result<SetLevel, String> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let env = std::env::var("RUST_LOG").ok().filter(|e| !e.is_empty());
    let fixed = cli_level.is_some() || env.is_some();
    let filter = match (cli_level, env, cfg.level.as_deref()) {
        (Some(l), _, _) => EnvFilter::new(directive(l)),
        (None, Some(env), _) => EnvFilter::new(env),
        (None, None, Some(l)) => EnvFilter::new(directive(l)),
        _ => EnvFilter::new("info"),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let outputs = Outputs::open(&cfg.output_paths)?;
    let ansi = cfg.output_paths.iter().all(|p| p == "stderr")
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let initial: Vec<(String, String)> = cfg
        .initial_fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let sampler = cfg.sampling.enabled.then(|| Sampler::new(&cfg.sampling));
    let dropped = sampler.as_ref().map(|s| s.dropped.clone());
    let base = tracing_subscriber::fmt::layer()
        .with_writer(outputs)
        .with_ansi(ansi && cfg.encoding == LogEncoding::Console && initial.is_empty())
        .with_target(false);
    let layer: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> =
        match (cfg.encoding, initial.is_empty(), sampler) {
            (LogEncoding::Json, _, Some(sampler)) => Box::new(Sampled {
                inner: base.event_format(JsonFormat { initial }),
                sampler,
            }),
            (LogEncoding::Json, _, None) => Box::new(base.event_format(JsonFormat { initial })),
            (LogEncoding::Console, false, Some(sampler)) => Box::new(Sampled {
                inner: base.event_format(ConsoleWithFields { initial }),
                sampler,
            }),
            (LogEncoding::Console, false, None) => {
                Box::new(base.event_format(ConsoleWithFields { initial }))
            }
            (LogEncoding::Console, true, Some(sampler)) => Box::new(Sampled {
                inner: base,
                sampler,
            }),
            (LogEncoding::Console, true, None) => Box::new(base),
        };
    let exports = crate::selfexport::exports_of(&cfg.processors, resource)
        .into_iter()
        .map(crate::selfexport::start_logs)
        .collect::<Result<Vec<_>, _>>()?;
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        // An empty Vec of layers would disable every event (its interest is "never"): None
        // is the layer that is not there.
        .with((!exports.is_empty()).then_some(exports))
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    if let Some(dropped) = dropped {
        let tick = cfg.sampling.tick;
        // A line per tick saying how many were left out, so sampling is never silent.
        std::thread::Builder::new()
            .name("log-sampling".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    let n = dropped.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        tracing::warn!(
                            dropped = n,
                            "log sampling left out {n} repeated messages in the last {tick:?}"
                        );
                    }
                }
            })
            .map_err(|e| format!("cannot start the log sampling thread: {e}"))?;
    }
    Ok(Box::new(move |level: &str| {
        if fixed {
            return;
        }
        if let Err(e) = handle.reload(EnvFilter::new(directive(level))) {
            tracing::warn!("cannot change the log level: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_the_first_then_every_nth_per_tick() {
        let s = Sampler::new(&LogSampling {
            enabled: true,
            tick: Duration::from_secs(10),
            initial: 3,
            thereafter: 5,
        });
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unimplemented!("not called")
            }
        }
        static CS: Cs = Cs;
        let id = Identifier(&CS);
        let t0 = Instant::now();
        let kept: Vec<bool> = (0..13).map(|_| s.keep(id.clone(), t0)).collect();
        // 1, 2, 3 kept; then the 5th and 10th after them (8th, 13th overall).
        let want = [
            true, true, true, false, false, false, false, true, false, false, false, false, true,
        ];
        assert_eq!(kept, want);
        assert_eq!(s.dropped.load(Ordering::Relaxed), 8);
        // A new tick starts over.
        assert!(s.keep(id.clone(), t0 + Duration::from_secs(11)));
    }

    #[test]
    fn levels_keep_dependencies_quiet() {
        assert_eq!(directive("DEBUG"), "warn,ferrotel=debug");
        assert_eq!(directive("info"), "info");
        assert_eq!(directive("fatal"), "error");
        assert_eq!(directive("h2=trace,info"), "h2=trace,info");
    }
}
