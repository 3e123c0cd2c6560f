//! The contracts between stages; this module imports no component.
//!
//! Data moves through one async interface, [`Consumer`]. Receivers hold a consumer per signal,
//! processors wrap the next consumer, exporters are consumers. Each component type declares a
//! [`Factory`] in its own module: its config name, aliases and deprecated names, signals,
//! stability, capabilities, and a `parse` function that turns its located config node into a
//! validated, ready-to-build config. [`crate::registry`] lists them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{ComponentId, DeError, Node};
use crate::signal::{Batch, Signal};
use crate::telemetry::Telemetry;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a stage did not take a batch. Travels back to the receiver, which answers the client.
///
/// Ownership rule: a stage that refuses retryably *before* taking the data gives the batch back
/// in `returned`, so a buffering caller (the batch processor) can redeliver it without having
/// kept a copy. A `Permanent` error means the data is gone and the stage that returned it has
/// counted it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsumeError {
    /// Try again later (queue full, memory limit, downstream unavailable). Receivers answer
    /// gRPC `UNAVAILABLE` / HTTP 503 with the retry hint, so the SDK retries.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
        /// The refused batch, when the refusing stage did not keep it.
        returned: Option<Box<Batch>>,
    },
    /// The data was dropped (and counted) or refused for good; retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

impl ConsumeError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
            returned: None,
        }
    }

    /// A retryable refusal that gives the batch back.
    pub fn refuse(reason: impl Into<String>, batch: Batch) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
            returned: Some(Box::new(batch)),
        }
    }
}

pub type ConsumeResult = Result<(), ConsumeError>;

pub trait Consumer: Send + Sync + 'static {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult>;

    /// True when `consume` returns only once the data is persisted (an exporter with a
    /// persistent queue, or a stage in front of one): a stage that buffers in front of it (the
    /// batch processor) then answers its callers only when what it buffered is persisted too.
    fn durable(&self) -> bool {
        false
    }
}

pub type DynConsumer = Arc<dyn Consumer>;

/// Stops a running component. Receivers stop accepting; processors flush; exporters drain their
/// queue until `deadline`.
pub trait Lifecycle: Send + Sync {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()>;
}

/// Background tasks that stop together: cancel the token, then wait for each task until the
/// deadline. The running form of every receiver and extension that is just tasks.
pub struct Tasks {
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Tasks {
    pub fn new(stop: CancellationToken, tasks: Vec<tokio::task::JoinHandle<()>>) -> Box<Self> {
        Box::new(Tasks {
            stop,
            tasks: std::sync::Mutex::new(tasks),
        })
    }
}

impl Lifecycle for Tasks {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            for t in tasks {
                let _ = tokio::time::timeout_at(deadline, t).await;
            }
        })
    }
}

/// The running form of a component with nothing to stop (an extension that only registered
/// itself, such as an authenticator).
pub struct Idle;

impl Lifecycle for Idle {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Now, as Unix nanoseconds (0 before 1970).
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub trait Processor: Consumer + Lifecycle {}
impl<T: Consumer + Lifecycle> Processor for T {}

pub trait Exporter: Consumer + Lifecycle {}
impl<T: Consumer + Lifecycle> Exporter for T {}

/// Hands a batch to several consumers: a copy to each but the last, which gets it by move.
pub struct FanOut {
    consumers: Vec<DynConsumer>,
}

impl FanOut {
    /// A single consumer is returned as is: no fan-out layer, no copy.
    pub fn build(mut consumers: Vec<DynConsumer>) -> DynConsumer {
        if consumers.len() == 1 {
            return consumers.pop().expect("one consumer");
        }
        Arc::new(FanOut { consumers })
    }
}

impl Consumer for FanOut {
    fn durable(&self) -> bool {
        self.consumers.iter().any(|c| c.durable())
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let Some((last, rest)) = self.consumers.split_last() else {
                return Ok(());
            };
            let mut futs: Vec<_> = rest.iter().map(|c| c.consume(batch.clone())).collect();
            futs.push(last.consume(batch));
            // Report the first error; a retryable one wins over a permanent one so that the
            // client retries (at-least-once: the branches that succeeded may see it again).
            let mut first: Option<ConsumeError> = None;
            for r in futures::future::join_all(futs).await {
                if let Err(e) = r {
                    match (&first, &e) {
                        (None, _)
                        | (Some(ConsumeError::Permanent(_)), ConsumeError::Retryable { .. }) => {
                            first = Some(e)
                        }
                        _ => {}
                    }
                }
            }
            first.map_or(Ok(()), Err)
        })
    }
}

/// What every component gets when it is built.
#[derive(Clone)]
pub struct Context {
    pub id: ComponentId,
    pub telemetry: Arc<Telemetry>,
    /// Cancelled when the collector begins to shut down.
    pub shutdown: CancellationToken,
    pub health: Arc<crate::health::Health>,
    /// The storage extensions started so far (all of them, by the time receivers start).
    pub storage: Arc<crate::storage::Registry>,
    /// The authenticator extensions started so far (all of them before any receiver or
    /// exporter starts).
    pub auth: Arc<crate::net::auth::Registry>,
    /// The leader elections (`k8s_leader_elector` extensions) started so far (all of them
    /// before any receiver starts).
    pub leaders: Arc<crate::kube::lease::Registry>,
    /// The pipeline a processor instance is built for (`traces/name`), for its metrics' `pipeline`
    /// label; empty for the other kinds, which are shared by pipelines.
    pub pipeline: String,
    /// The process's memory budget: memory_limiter sets it, receivers reserve from it before
    /// decoding.
    pub memory: Arc<crate::admission::Budget>,
    /// For an exporter, the signals of the pipelines that list it (its queue metrics carry
    /// `data_type` for each); empty for the other kinds.
    pub signals: Vec<Signal>,
    /// For a processor: an exporter of its pipeline persists what it takes before it answers
    /// (see [`Consumer::durable`]), so a processor that buffers answers only once that is done.
    pub durable: bool,
    /// The live tap points (`ferrotel tap`), enabled by the `tap` extension.
    pub taps: Arc<crate::tap::Taps>,
}

impl Context {
    /// A context of its own (telemetry, health, budget), outside any running service: for tests,
    /// benches and tools.
    pub fn standalone(name: &str) -> Context {
        Context {
            id: ComponentId::parse(name).expect("valid id"),
            telemetry: Telemetry::new(&Default::default()),
            shutdown: CancellationToken::new(),
            health: Arc::new(crate::health::Health::default()),
            storage: Default::default(),
            auth: Default::default(),
            leaders: Default::default(),
            pipeline: String::new(),
            memory: crate::admission::Budget::new(),
            signals: crate::signal::ALL_SIGNALS.to_vec(),
            durable: false,
            taps: Default::default(),
        }
    }
}

/// A failure to build or start a component (bad certificate file, port in use, ...).
#[derive(Debug, thiserror::Error)]
#[error("{component}: {msg}")]
pub struct BuildError {
    pub component: String,
    pub msg: String,
}

impl BuildError {
    pub fn new(id: &ComponentId, msg: impl std::fmt::Display) -> Self {
        BuildError {
            component: id.to_string(),
            msg: msg.to_string(),
        }
    }
}

/// A receiver's consumers, one slot per signal (`None` where no pipeline of that signal lists it).
pub type SignalConsumers = [Option<DynConsumer>; crate::signal::Signal::COUNT];

pub trait ReceiverConfig: Send + Sync {
    /// `host:port` addresses it will listen on, for clash detection at validation.
    fn endpoints(&self) -> Vec<String>;
    /// The storage extension (`storage:`) it keeps state in, if any.
    fn storage(&self) -> Option<&ComponentId> {
        None
    }
    /// Binds its listeners and starts serving.
    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>>;
}

pub trait ProcessorConfig: Send + Sync {
    /// Called once per pipeline that lists the processor: each pipeline gets its own instance.
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError>;
}

pub trait ExporterConfig: Send + Sync {
    /// The storage extension (`sending_queue.storage`) that holds its persistent queue, if any.
    fn storage(&self) -> Option<&ComponentId> {
        None
    }
    /// True for an exporter that listens on an address (`prometheus`): on a reload the old
    /// instance lets go of it before the new one binds it.
    fn listens(&self) -> bool {
        false
    }
    /// Called once per exporter id: every pipeline that lists it shares the instance and queue.
    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError>;
}

/// A downstream pipeline of a connector: its id (`metrics/red`) and its first stage.
#[derive(Clone)]
pub struct Downstream {
    pub pipeline: String,
    pub head: DynConsumer,
}

pub trait ConnectorConfig: Send + Sync {
    /// Called once per pipeline that lists the connector as an exporter and per signal `to` of
    /// the pipelines that list it as a receiver (the Collector's one instance per signal
    /// pair); `next` are those pipelines, in config order.
    fn build(
        &self,
        ctx: Context,
        from: Signal,
        to: Signal,
        next: Vec<Downstream>,
    ) -> Result<Arc<dyn Exporter>, BuildError>;
}

pub trait ExtensionConfig: Send + Sync {
    fn endpoints(&self) -> Vec<String> {
        Vec::new()
    }
    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
    Connector,
}

impl Kind {
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
            Kind::Connector => "connectors",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stability {
    Development,
    Alpha,
    Beta,
    Stable,
    Deprecated,
}

#[derive(Clone, Copy)]
pub enum Parse {
    Receiver(fn(&Node) -> Result<Box<dyn ReceiverConfig>, DeError>),
    Processor(fn(&Node) -> Result<Box<dyn ProcessorConfig>, DeError>),
    Exporter(fn(&Node) -> Result<Box<dyn ExporterConfig>, DeError>),
    Extension(fn(&Node) -> Result<Box<dyn ExtensionConfig>, DeError>),
    Connector(fn(&Node) -> Result<Box<dyn ConnectorConfig>, DeError>),
}

/// A component type's identity, declared by its module as `FACTORY` (the Collector's
/// `NewFactory()` and `metadata.yaml`), listed in [`crate::registry`].
#[derive(Clone, Copy)]
pub struct Factory {
    pub kind: Kind,
    /// The config name (`type` in the Collector's metadata).
    pub name: &'static str,
    /// Other current names of the same component (the Collector's other spellings), accepted
    /// with a note.
    pub aliases: &'static [&'static str],
    /// Older names still accepted with a deprecation warning (`deprecated_type`).
    pub deprecated: &'static [&'static str],
    pub signals: &'static [Signal],
    pub stability: Stability,
    pub parse: Parse,
    /// An extension that `storage:` keys may name (it provides a storage client).
    pub provides_storage: bool,
    /// A connector's (exporter-side signal, receiver-side signal) pairs.
    pub pairs: &'static [(Signal, Signal)],
}

impl Factory {
    /// A component type with no other names and no capabilities; the signals of `parse`'s kind.
    pub const fn new(
        name: &'static str,
        signals: &'static [Signal],
        stability: Stability,
        parse: Parse,
    ) -> Factory {
        let kind = match parse {
            Parse::Receiver(_) => Kind::Receiver,
            Parse::Processor(_) => Kind::Processor,
            Parse::Exporter(_) => Kind::Exporter,
            Parse::Extension(_) => Kind::Extension,
            Parse::Connector(_) => Kind::Connector,
        };
        Factory {
            kind,
            name,
            aliases: &[],
            deprecated: &[],
            signals,
            stability,
            parse,
            provides_storage: false,
            pairs: &[],
        }
    }

    pub const fn receiver(
        name: &'static str,
        signals: &'static [Signal],
        stability: Stability,
        parse: fn(&Node) -> Result<Box<dyn ReceiverConfig>, DeError>,
    ) -> Factory {
        Factory::new(name, signals, stability, Parse::Receiver(parse))
    }

    pub const fn processor(
        name: &'static str,
        signals: &'static [Signal],
        stability: Stability,
        parse: fn(&Node) -> Result<Box<dyn ProcessorConfig>, DeError>,
    ) -> Factory {
        Factory::new(name, signals, stability, Parse::Processor(parse))
    }

    pub const fn exporter(
        name: &'static str,
        signals: &'static [Signal],
        stability: Stability,
        parse: fn(&Node) -> Result<Box<dyn ExporterConfig>, DeError>,
    ) -> Factory {
        Factory::new(name, signals, stability, Parse::Exporter(parse))
    }

    /// Extensions take no signals.
    pub const fn extension(
        name: &'static str,
        stability: Stability,
        parse: fn(&Node) -> Result<Box<dyn ExtensionConfig>, DeError>,
    ) -> Factory {
        Factory::new(name, &[], stability, Parse::Extension(parse))
    }

    /// A connector joins pipelines: `pairs` are the (from, to) signals it converts; its
    /// `signals` are those it takes in.
    pub const fn connector(
        name: &'static str,
        takes: &'static [Signal],
        pairs: &'static [(Signal, Signal)],
        stability: Stability,
        parse: fn(&Node) -> Result<Box<dyn ConnectorConfig>, DeError>,
    ) -> Factory {
        let mut f = Factory::new(name, takes, stability, Parse::Connector(parse));
        f.pairs = pairs;
        f
    }

    pub const fn aliases(mut self, names: &'static [&'static str]) -> Factory {
        self.aliases = names;
        self
    }

    pub const fn deprecated(mut self, names: &'static [&'static str]) -> Factory {
        self.deprecated = names;
        self
    }

    pub const fn provides_storage(mut self) -> Factory {
        self.provides_storage = true;
        self
    }

    /// The name, the aliases and the deprecated names.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name)
            .chain(self.aliases.iter().copied())
            .chain(self.deprecated.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::testdata;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Sink(Mutex<Vec<Batch>>);
    impl Consumer for Sink {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            self.0.lock().unwrap().push(batch);
            Box::pin(async { Ok(()) })
        }
    }
    struct Refuse(ConsumeError);
    impl Consumer for Refuse {
        fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
            let e = self.0.clone();
            Box::pin(async move { Err(e) })
        }
    }

    #[tokio::test]
    async fn fan_out_gives_each_consumer_the_batch_and_prefers_retryable_errors() {
        let (a, b) = (Arc::new(Sink::default()), Arc::new(Sink::default()));
        let f = FanOut::build(vec![a.clone(), b.clone()]);
        f.consume(testdata::spans("x", 1, 2)).await.unwrap();
        assert_eq!(a.0.lock().unwrap()[0], testdata::spans("x", 1, 2));
        assert_eq!(b.0.lock().unwrap()[0], testdata::spans("x", 1, 2));

        let f = FanOut::build(vec![
            Arc::new(Refuse(ConsumeError::Permanent("bad".into()))),
            Arc::new(Refuse(ConsumeError::retryable("full"))),
            a.clone(),
        ]);
        assert_eq!(
            f.consume(testdata::logs(1)).await,
            Err(ConsumeError::retryable("full"))
        );
        assert_eq!(a.0.lock().unwrap().len(), 2);
    }
}
