//! Receivers, and what they share: [`Output`], which hands a receiver's batches to its
//! pipelines and counts them.

use crate::component::{ConsumeError, Context, DynConsumer};
use crate::signal::Batch;
use crate::telemetry::{ReceiverLabels, SignalCounters};

pub mod otlp;

/// Hands decoded batches of one signal and transport to the pipelines, counting as it goes.
pub(crate) struct Output {
    consumer: DynConsumer,
    accepted: SignalCounters,
    refused: SignalCounters,
    failed: SignalCounters,
    /// The memory budget requests are admitted against before they are decoded.
    pub(crate) budget: std::sync::Arc<crate::admission::Budget>,
}

impl Output {
    pub(crate) fn new(ctx: &Context, transport: &str, consumer: DynConsumer) -> Self {
        let labels = ReceiverLabels {
            receiver: ctx.id.to_string(),
            transport: transport.into(),
        };
        Output {
            consumer,
            accepted: ctx.telemetry.receiver_accepted.handles(&labels),
            refused: ctx.telemetry.receiver_refused.handles(&labels),
            failed: ctx.telemetry.receiver_failed.handles(&labels),
            budget: ctx.memory.clone(),
        }
    }

    /// Counts items refused before they reached the pipeline (not admitted).
    pub(crate) fn refused(&self, signal: crate::signal::Signal, n: usize) {
        self.refused.add(signal, n);
    }

    pub(crate) async fn push(
        &self,
        batch: Batch,
        client: crate::client::ClientInfo,
    ) -> Result<(), ConsumeError> {
        let (signal, n) = (batch.signal(), batch.item_count());
        if n == 0 {
            return Ok(());
        }
        match crate::client::scope(client, self.consumer.consume(batch)).await {
            Ok(()) => {
                self.accepted.add(signal, n);
                Ok(())
            }
            // Backpressure is `refused` (the client retries); anything else `failed`.
            Err(e @ ConsumeError::Retryable { .. }) => {
                self.refused.add(signal, n);
                Err(e)
            }
            Err(e) => {
                self.failed.add(signal, n);
                Err(e)
            }
        }
    }
}

/// A receiver's routes behind its `auth` authenticator, when one is configured; refusals are
/// counted per receiver and transport.
pub(crate) fn protect(
    ctx: &crate::component::Context,
    transport: &str,
    auth: Option<&crate::net::auth::AuthConfig>,
    router: axum::Router,
) -> Result<axum::Router, crate::component::BuildError> {
    let Some(cfg) = auth else {
        return Ok(router);
    };
    let a = ctx
        .auth
        .server(cfg)
        .map_err(|e| crate::component::BuildError::new(&ctx.id, e))?;
    let refused = ctx
        .telemetry
        .receiver_unauthenticated
        .get_or_create(&crate::telemetry::ReceiverLabels {
            receiver: ctx.id.to_string(),
            transport: transport.into(),
        })
        .clone();
    Ok(crate::net::auth::protect(
        router,
        a,
        transport == "grpc",
        refused,
        ctx.id.to_string(),
    ))
}

/// The store a receiver keeps its checkpoint in (filelog's offsets, journald's cursor), from
/// its `storage` extension; none without one.
pub(crate) fn open_store(
    ctx: &Context,
    storage: Option<&crate::config::ComponentId>,
) -> Result<Option<std::sync::Arc<crate::storage::Store>>, crate::component::BuildError> {
    let Some(sid) = storage else {
        return Ok(None);
    };
    let err = |e: crate::storage::StorageError| crate::component::BuildError::new(&ctx.id, e);
    let ext = ctx.storage.get(sid).map_err(err)?;
    Ok(Some(ext.client("receiver", &ctx.id, "").map_err(err)?))
}

/// Binds `endpoint` and builds its TLS config, for a receiver's listener (`what` names it in
/// the error).
pub(crate) async fn listen(
    ctx: &Context,
    endpoint: &str,
    tls: Option<&crate::net::tls::ServerTlsConfig>,
    what: &str,
) -> Result<
    (
        tokio::net::TcpListener,
        Option<std::sync::Arc<rustls::ServerConfig>>,
    ),
    crate::component::BuildError,
> {
    let tls = tls
        .map(|t| t.build())
        .transpose()
        .map_err(|e| crate::component::BuildError::new(&ctx.id, e))?;
    let listener = crate::net::server::bind(endpoint).await.map_err(|e| {
        crate::component::BuildError::new(
            &ctx.id,
            format!("cannot listen on {endpoint} ({what}): {e}"),
        )
    })?;
    Ok((listener, tls))
}

/// What the receivers that read the Kubernetes API share: the server and a client for it, the
/// output, and the count of failed reads.
pub(crate) struct ApiSource {
    pub(crate) api: crate::kube::ApiConfig,
    pub(crate) client: reqwest::Client,
    pub(crate) out: Output,
    pub(crate) id: String,
    errors: crate::telemetry::SourceErrors,
}

impl ApiSource {
    /// Connects as `auth_type` (and `context`) says, for receiver `ctx.id`.
    pub(crate) fn new(
        ctx: &Context,
        consumer: DynConsumer,
        auth_type: crate::kube::AuthType,
        context: &Option<String>,
    ) -> Result<ApiSource, crate::component::BuildError> {
        let (api, client) = crate::kube::ApiSettings::inline(auth_type, context)
            .client()
            .map_err(|e| crate::component::BuildError::new(&ctx.id, e))?;
        Ok(ApiSource {
            api,
            client,
            out: Output::new(ctx, "", consumer),
            id: ctx.id.to_string(),
            errors: ctx.telemetry.receiver_source_errors.clone(),
        })
    }

    /// Counts one failed read of `source` (an API path).
    pub(crate) fn failed(&self, source: &str) {
        crate::telemetry::source_failed(&self.errors, &self.id, source);
    }

    /// Hands a batch on; a refusal downstream is logged (the next read brings the state again).
    pub(crate) async fn push(&self, batch: crate::signal::Batch) {
        if batch.item_count() == 0 {
            return;
        }
        if let Err(e) = self.out.push(batch, Default::default()).await {
            tracing::debug!(receiver = %self.id, error = %e, "refused downstream");
        }
    }
}

pub mod filelog;
pub mod fluentforward;
pub mod hostmetrics;
pub(crate) mod http_answer;
pub mod jaeger;
pub mod journald;
pub mod k8s_cluster;
pub mod k8s_events;
pub mod k8sobjects;
pub mod kubeletstats;
pub mod nop;
pub mod otlpjsonfile;
pub mod prometheus;
pub mod syslog;
pub mod zipkin;

#[cfg(test)]
mod fuzz_tests;
