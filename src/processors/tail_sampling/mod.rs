//! `tail_sampling` processor: holds the spans of each trace for `decision_wait` after its first
//! span arrives, then decides on the whole trace with the configured policies and passes on
//! every span of a sampled trace together (no orphan spans). A trace is sampled when any policy
//! samples it, unless an inverted policy (`invert_match`) vetoes it, as in the Collector.
//!
//! Policies: `always_sample`, `latency` (`threshold_ms`, `upper_threshold_ms`: first start to
//! last end), `status_code` (`status_codes`: `OK`, `ERROR`, `UNSET`), `probabilistic`
//! (`sampling_percentage`, `hash_salt`: FNV-1a 64 of salt and trace id), `string_attribute`
//! (`key`, `values`, `enabled_regex_matching`, `invert_match`; span or resource attributes),
//! `numeric_attribute` (`key`, `min_value`, `max_value`, `invert_match`), `boolean_attribute`
//! (`key`, `value`, `invert_match`), `span_count` (`min_spans`, `max_spans`), `rate_limiting`
//! (`spans_per_second`) and `and` (`and_sub_policy`: all must sample).
//!
//! Memory is bounded by `num_traces`: past it the oldest undecided trace is dropped and counted
//! (`otelcol_processor_dropped_items{reason="evicted"}`). Decisions are remembered for the last
//! `num_traces` traces, so spans arriving after the decision follow it. Spans of traces not
//! sampled are counted with `reason="sampled"`. At shutdown every held trace is decided at once
//! and passed on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use regex::Regex;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, BuildError, ConsumeError, ConsumeResult, Consumer, Context, DynConsumer, Lifecycle,
    Processor, ProcessorConfig, Stability,
};
use crate::config::key_err;
use crate::config::{DeError, Node, from_node, units};
use crate::signal::{Batch, Signal};
use crate::telemetry::{PolicyLabels, ProcessorDropLabels, ProcessorLabels};

mod config;
mod policy;
mod sampler;

pub use config::*;
use policy::*;
use sampler::*;

/// `tail_sampling`'s identity: its config name, other names, signals and stability.
pub const FACTORY: crate::component::Factory = crate::component::Factory::processor(
    "tail_sampling",
    crate::signal::TRACES,
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.policies.is_empty() {
        return Err(key_err(
            node,
            &["policies"],
            "at least one policy is required",
        ));
    }
    if cfg.decision_wait.is_zero() {
        return Err(key_err(
            node,
            &["decision_wait"],
            "must be greater than zero",
        ));
    }
    if cfg.num_traces == 0 {
        return Err(key_err(node, &["num_traces"], "must be at least 1"));
    }
    let list = node.get("policies");
    for (i, p) in cfg.policies.iter().enumerate() {
        // Validate now (located errors); each pipeline compiles its own (rate windows).
        let item = match list.map(|n| &n.value) {
            Some(crate::config::node::Value::Seq(items)) => items.get(i),
            _ => None,
        };
        compile(p, item.unwrap_or(node), &[]).map_err(|mut e| {
            e.path.insert(0, format!("[{i}]"));
            e.path.insert(0, "policies".into());
            e
        })?;
    }
    Ok(Box::new(Compiled {
        cfg,
        node: node.clone(),
    }))
}

struct Compiled {
    cfg: Config,
    node: Node,
}

impl ProcessorConfig for Compiled {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let items = match self.node.get("policies").map(|n| &n.value) {
            Some(crate::config::node::Value::Seq(items)) => items.clone(),
            _ => Vec::new(),
        };
        let policies = self
            .cfg
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| compile(p, items.get(i).unwrap_or(&self.node), &[]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BuildError::new(&ctx.id, e.msg))?;
        Ok(TailSampler::start(
            ctx,
            signal,
            next,
            self.cfg.clone(),
            policies,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::split::split_by_trace;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};

    fn cfg(text: &str) -> Result<Box<dyn ProcessorConfig>, DeError> {
        parse(&yaml(text).unwrap())
    }

    #[test]
    fn config_errors() {
        let e = cfg("policies:\n  - {name: a, type: latency}\n")
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "policies[0].latency");
        let e = cfg("policies:\n  - {name: a, type: bogus}\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("unknown policy type"), "{}", e.msg);
        let e = cfg(
            "policies:\n  - {name: a, type: status_code, status_code: {status_codes: [FAIL]}}\n",
        )
        .err()
        .unwrap();
        assert!(e.msg.contains("unknown status code"), "{}", e.msg);
        let e = cfg("decision_wait: 0s\npolicies:\n  - {name: a, type: always_sample}\n")
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "decision_wait");
        let e = cfg("policies:\n  - name: a\n    type: and\n    and:\n      and_sub_policy:\n        - {name: b, type: numeric_attribute}\n")
            .err()
            .unwrap();
        assert_eq!(
            e.path_string(),
            "policies[0].and.and_sub_policy[0].numeric_attribute"
        );
        assert!(cfg("policies: []\n").is_err());
        assert!(cfg("policies:\n  - {name: errors-policy, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n").is_ok());
    }

    fn held(spans: Vec<Span>, res: Vec<KeyValue>) -> Held {
        let n = spans.len();
        Held {
            fragments: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: res,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            spans: n,
        }
    }

    fn policy(text: &str) -> Policy {
        let node = yaml(text).unwrap();
        let p: PolicyCfg = from_node(&node).unwrap();
        compile(&p, &node, &[]).unwrap()
    }

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn policies_decide() {
        let id = [7u8; 16];
        let span = |start: u64, end: u64, code: i32, attrs: Vec<KeyValue>| Span {
            trace_id: id.to_vec(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            status: Some(Status {
                code,
                ..Default::default()
            }),
            attributes: attrs,
            ..Default::default()
        };
        let t = held(
            vec![
                span(
                    1_000_000_000,
                    1_200_000_000,
                    0,
                    vec![kv("http.status", any_value::Value::IntValue(503))],
                ),
                span(
                    1_100_000_000,
                    1_700_000_000,
                    2,
                    vec![kv("route", any_value::Value::StringValue("/api/x".into()))],
                ),
            ],
            vec![kv(
                "service.name",
                any_value::Value::StringValue("cart".into()),
            )],
        );
        let d = |text: &str| policy(text).evaluate(&id, &t);
        assert_eq!(
            d("{name: l, type: latency, latency: {threshold_ms: 700}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: l, type: latency, latency: {threshold_ms: 701}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: l, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 600}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: s, type: status_code, status_code: {status_codes: [ERROR]}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: s, type: status_code, status_code: {status_codes: [OK]}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: service.name, values: [cart]}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: route, values: [\"/api/.*\"], enabled_regex_matching: true}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: route, values: [\"/health\"], invert_match: true}}"
            ),
            Decision::InvertSampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: route, values: [\"/api/x\"], invert_match: true}}"
            ),
            Decision::InvertNotSampled
        );
        assert_eq!(
            d(
                "{name: n, type: numeric_attribute, numeric_attribute: {key: http.status, min_value: 500, max_value: 599}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: n, type: numeric_attribute, numeric_attribute: {key: http.status, min_value: 400, max_value: 499}}"
            ),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: c, type: span_count, span_count: {min_spans: 2}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: c, type: span_count, span_count: {min_spans: 3}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 100}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d(
                "{name: x, type: and, and: {and_sub_policy: [{name: a, type: status_code, status_code: {status_codes: [ERROR]}}, {name: b, type: latency, latency: {threshold_ms: 100}}]}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: x, type: and, and: {and_sub_policy: [{name: a, type: status_code, status_code: {status_codes: [ERROR]}}, {name: b, type: latency, latency: {threshold_ms: 5000}}]}}"
            ),
            Decision::NotSampled
        );
        let rate = policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 3}}");
        assert_eq!(rate.evaluate(&id, &t), Decision::Sampled);
        assert_eq!(
            rate.evaluate(&id, &t),
            Decision::NotSampled,
            "2 + 2 spans > 3 per second"
        );
    }

    struct Capture(Mutex<Vec<Batch>>);
    impl Consumer for Capture {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            self.0.lock().unwrap().push(batch);
            Box::pin(async { Ok(()) })
        }
    }

    fn one_span(trace: u8, span: u8) -> Batch {
        Batch::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![span; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test(start_paused = true)]
    async fn waits_decides_whole_traces_follows_late_spans_and_evicts() {
        let ctx = crate::component::Context::standalone("tail_sampling");
        let node = yaml(
            "decision_wait: 10s\nnum_traces: 3\npolicies:\n  - {name: odd, type: numeric_attribute, numeric_attribute: {key: n, min_value: 1, max_value: 1}}\n",
        )
        .unwrap();
        let cfg: Config = from_node(&node).unwrap();
        let policies = cfg
            .policies
            .iter()
            .map(|p| compile(p, &node, &[]).unwrap())
            .collect();
        let out = Arc::new(Capture(Mutex::new(Vec::new())));
        let ts = TailSampler::start(ctx.clone(), Signal::Traces, out.clone(), cfg, policies);
        // Trace 1 is sampled (one of its spans has n=1), trace 2 is not; each in two requests.
        let mut b = one_span(1, 1);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[0]
                .attributes
                .push(kv("n", any_value::Value::IntValue(1)));
        }
        ts.consume(b).await.unwrap();
        ts.consume(one_span(2, 1)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        ts.consume(one_span(1, 2)).await.unwrap();
        ts.consume(one_span(2, 2)).await.unwrap();
        assert!(
            out.0.lock().unwrap().is_empty(),
            "nothing before decision_wait"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        {
            let got = out.0.lock().unwrap();
            let spans: Vec<(u8, u8)> = got
                .iter()
                .flat_map(|b| match b {
                    Batch::Traces(rs) => rs.clone(),
                    _ => vec![],
                })
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .map(|s| (s.trace_id[0], s.span_id[0]))
                .collect();
            assert_eq!(spans, vec![(1, 1), (1, 2)], "the whole sampled trace, once");
        }
        // Late spans follow the decision.
        ts.consume(one_span(1, 3)).await.unwrap();
        ts.consume(one_span(2, 3)).await.unwrap();
        assert_eq!(out.0.lock().unwrap().len(), 2);
        // Bounded: a fourth held trace evicts the oldest.
        for t in 10..14 {
            ts.consume(one_span(t, 1)).await.unwrap();
        }
        let text = ctx.telemetry.encode();
        assert!(text.contains("reason=\"evicted\"} 1"), "{text}");
        assert!(text.contains("reason=\"sampled\"} 3"), "{text}");
        assert!(
            text.contains("otelcol_processor_tail_sampling_count_traces_sampled_total{processor=\"tail_sampling\",policy=\"odd\",sampled=\"true\"} 1"),
            "{text}"
        );
        // Shutdown decides what is held (traces 11-13, not sampled) at once.
        ts.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert!(ctx.telemetry.encode().contains("reason=\"sampled\"} 6"));
    }

    #[test]
    fn split_keeps_resources_and_scopes() {
        let mk = |t: u8, s: u8| Span {
            trace_id: vec![t; 16],
            span_id: vec![s; 8],
            ..Default::default()
        };
        let rs = ResourceSpans {
            scope_spans: vec![
                ScopeSpans {
                    spans: vec![mk(1, 1), mk(2, 2), mk(1, 3)],
                    ..Default::default()
                },
                ScopeSpans {
                    scope: Some(Default::default()),
                    spans: vec![mk(2, 4)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut out = Vec::new();
        split_by_trace(rs, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, [1u8; 16]);
        assert_eq!(out[0].1.scope_spans.len(), 1);
        assert_eq!(out[0].1.scope_spans[0].spans.len(), 2);
        assert_eq!(out[1].1.scope_spans.len(), 2, "trace 2 spans two scopes");
    }
}
