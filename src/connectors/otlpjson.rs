//! `otlpjson` connector: log records whose body is an OTLP/JSON export request (one line of what
//! the Collector's `file` exporter writes, or an app printing OTLP JSON to stdout that a node
//! agent tails) become the traces, metrics or logs they hold again. Each instance takes its own
//! signal's requests (`resourceSpans`, `resourceMetrics`, `resourceLogs`) and leaves the rest; a
//! body that names one but does not read as one is dropped and counted
//! (`reason="malformed"`).

use std::sync::Arc;

use prost::Message;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConnectorConfig, ConsumeResult, Consumer, Context, Downstream,
    DynConsumer, Exporter, Factory, FanOut, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::signal::{Batch, Signal};

pub const FACTORY: Factory = Factory::connector(
    "otlpjson",
    crate::signal::LOGS,
    &[
        (Signal::Logs, Signal::Traces),
        (Signal::Logs, Signal::Metrics),
        (Signal::Logs, Signal::Logs),
    ],
    Stability::Alpha,
    parse,
);

/// `otlpjson` has no options.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(node: &Node) -> Result<Box<dyn ConnectorConfig>, DeError> {
    let cfg: Config = if node.is_null() {
        Config::default()
    } else {
        from_node(node)?
    };
    Ok(Box::new(cfg))
}

/// A body past this is not transcoded (the decoded request would be larger still).
const MAX_BODY: usize = 16 << 20;

impl ConnectorConfig for Config {
    fn build(
        &self,
        ctx: Context,
        _from: Signal,
        to: Signal,
        next: Vec<Downstream>,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let malformed = super::shared::dropped(&ctx, Signal::Logs, "malformed");
        Ok(Arc::new(OtlpJson {
            to,
            next: FanOut::build(next.into_iter().map(|d| d.head).collect()),
            id: ctx.id.to_string(),
            malformed,
        }))
    }
}

struct OtlpJson {
    to: Signal,
    next: DynConsumer,
    id: String,
    malformed: prometheus_client::metrics::counter::Counter,
}

/// The key that marks a body as a request of `signal`.
fn marker(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "\"resourceSpans\"",
        Signal::Metrics => "\"resourceMetrics\"",
        _ => "\"resourceLogs\"",
    }
}

impl OtlpJson {
    /// What the bodies of `batch` hold of this instance's signal, and how many bodies that
    /// named it did not read.
    fn extract(&self, batch: &Batch) -> (Option<Batch>, u64) {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let Batch::Logs(rl) = batch else {
            return (None, 0);
        };
        let mut spans = Vec::new();
        let mut metrics = Vec::new();
        let mut logs = Vec::new();
        let mut bad = 0;
        let want = marker(self.to);
        for lr in rl
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            let Some(Value::StringValue(body)) = lr.body.as_ref().and_then(|b| b.value.as_ref())
            else {
                continue;
            };
            if !body.contains(want) {
                continue;
            }
            let pb = if body.len() > MAX_BODY {
                None
            } else {
                crate::signal::json::to_protobuf(self.to, body.as_bytes()).ok()
            };
            let ok = pb.as_deref().is_some_and(|pb| match self.to {
                Signal::Traces => ExportTraceServiceRequest::decode(pb)
                    .map(|r| spans.extend(r.resource_spans))
                    .is_ok(),
                Signal::Metrics => ExportMetricsServiceRequest::decode(pb)
                    .map(|r| metrics.extend(r.resource_metrics))
                    .is_ok(),
                _ => ExportLogsServiceRequest::decode(pb)
                    .map(|r| logs.extend(r.resource_logs))
                    .is_ok(),
            });
            if !ok {
                bad += 1;
            }
        }
        let out = match self.to {
            Signal::Traces => (!spans.is_empty()).then_some(Batch::Traces(spans)),
            Signal::Metrics => (!metrics.is_empty()).then_some(Batch::Metrics(metrics)),
            _ => (!logs.is_empty()).then_some(Batch::Logs(logs)),
        };
        (out, bad)
    }
}

impl Consumer for OtlpJson {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let batch = super::shared::decoded(batch, &self.id)?;
            let (out, bad) = self.extract(&batch);
            if bad > 0 {
                self.malformed.inc_by(bad);
                tracing::debug!(connector = %self.id, bad, "log bodies that are not OTLP JSON requests");
            }
            match out {
                // The records it makes are the input's, as it arrived: a refusal is passed back.
                Some(b) => self.next.consume(b).await,
                None => Ok(()),
            }
        })
    }
}

impl Lifecycle for OtlpJson {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn logs(bodies: &[&str]) -> Batch {
        Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(b.to_string())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn conn(to: Signal) -> OtlpJson {
        struct Nothing;
        impl Consumer for Nothing {
            fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
                Box::pin(async { Ok(()) })
            }
        }
        OtlpJson {
            to,
            next: Arc::new(Nothing),
            id: "otlpjson".into(),
            malformed: Default::default(),
        }
    }

    #[test]
    fn bodies_become_their_signal_and_the_rest_is_left() {
        let span = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /"}]}]}]}"#;
        let metric = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"3"}]}}]}]}]}"#;
        let batch = logs(&[span, metric, "plain text", r#"{"resourceSpans": [oops"#]);
        let (t, bad) = conn(Signal::Traces).extract(&batch);
        let Some(Batch::Traces(rs)) = t else {
            panic!("traces")
        };
        assert_eq!(rs[0].scope_spans[0].spans[0].name, "GET /");
        assert_eq!(
            hex::encode(&rs[0].scope_spans[0].spans[0].span_id),
            "eee19b7ec3c1b174"
        );
        assert_eq!(bad, 1, "the broken request");
        let (m, bad) = conn(Signal::Metrics).extract(&batch);
        assert!(
            matches!(m, Some(Batch::Metrics(ref v)) if v[0].scope_metrics[0].metrics[0].name == "m")
        );
        assert_eq!(bad, 0);
        let (l, _) = conn(Signal::Logs).extract(&batch);
        assert!(l.is_none(), "no resourceLogs body");
    }
}
