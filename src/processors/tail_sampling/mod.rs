//! `tail_sampling` processor: holds the spans of each trace for `decision_wait` after its first
//! span arrives, then decides on the whole trace with the configured policies and passes on
//! every span of a sampled trace together (no orphan spans). As in the Collector, a `drop`
//! match drops the trace; else an inverted policy (`invert_match`) that did not match vetoes
//! it; else any sampling policy keeps it; else an inverted match keeps it when no policy said
//! no. `sample_on_first_match` stops at the first sampling policy.
//!
//! Policies: `always_sample`, `latency` (`threshold_ms`, `upper_threshold_ms`: first start to
//! last end), `status_code` (`status_codes`: `OK`, `ERROR`, `UNSET`), `probabilistic`
//! (`sampling_percentage`, `hash_salt`: FNV-1a 64 of salt and trace id), `string_attribute`
//! (`key`, `values`, `enabled_regex_matching`, `invert_match`; span or resource attributes),
//! `numeric_attribute` (`key`, `min_value`, `max_value`, `invert_match`), `boolean_attribute`
//! (`key`, `value`, `invert_match`), `span_count` (`min_spans`, `max_spans`), `rate_limiting`
//! (`spans_per_second`), `trace_state` (`key`, `values`), `trace_flags` (a span with the W3C
//! sampled flag), `ottl_condition` (`span`, `spanevent` conditions, `error_mode`), `and`
//! (`and_sub_policy`: all must sample; nests), `not` (`not_sub_policy`), `drop`
//! (`drop_sub_policy`: all match → dropped) and `composite` (`max_total_spans_per_second`,
//! `policy_order`, `composite_sub_policy`, `rate_allocation`: the first sampling sub-policy
//! decides within its share of spans per second; an unlisted one gets an equal share).
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

    /// The newer policies, one assertion each on the exact decision.
    #[test]
    fn trace_state_flags_ottl_not_drop_and_composite() {
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        let id = [9u8; 16];
        let mut a = Span {
            trace_id: id.to_vec(),
            name: "GET /cart".into(),
            trace_state: "tracetest=true,other=1".into(),
            flags: 0x101,
            attributes: vec![kv(
                "http.route",
                any_value::Value::StringValue("/cart".into()),
            )],
            ..Default::default()
        };
        a.events.push(Event {
            name: "exception".into(),
            ..Default::default()
        });
        let b = Span {
            trace_id: id.to_vec(),
            name: "db".into(),
            ..Default::default()
        };
        let t = held(vec![a, b.clone()], vec![]);
        let d = |text: &str| policy(text).evaluate(&id, &t);
        // Corpus file 32's policy, written as a flow map whose name has spaces.
        assert_eq!(
            d(
                "{ name: sample traces from tracetest, type: trace_state, trace_state: { key: tracetest, values: [\"true\"] } }"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: x, type: trace_state, trace_state: {key: tracetest, values: [\"false\"]}}"),
            Decision::NotSampled
        );
        assert_eq!(d("{name: x, type: trace_flags}"), Decision::Sampled);
        assert_eq!(
            policy("{name: x, type: trace_flags}").evaluate(&id, &held(vec![b.clone()], vec![])),
            Decision::NotSampled
        );
        assert_eq!(
            d(
                "{name: x, type: ottl_condition, ottl_condition: {span: ['attributes[\"http.route\"] == \"/cart\"']}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: x, type: ottl_condition, ottl_condition: {spanevent: ['name == \"exception\" and span.name == \"GET /cart\"']}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: x, type: ottl_condition, ottl_condition: {error_mode: ignore, span: ['name == \"nope\"', 'Len(kind) > 0']}}"
            ),
            Decision::NotSampled,
            "an evaluation error is false"
        );
        assert_eq!(
            d("{name: x, type: not, not: {not_sub_policy: {name: y, type: trace_flags}}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d(
                "{name: x, type: not, not: {not_sub_policy: {name: y, type: span_count, span_count: {min_spans: 5}}}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: x, type: drop, drop: {drop_sub_policy: [{name: y, type: trace_flags}, {name: z, type: always_sample}]}}"
            ),
            Decision::Dropped
        );
        assert_eq!(
            d(
                "{name: x, type: drop, drop: {drop_sub_policy: [{name: y, type: trace_flags}, {name: z, type: span_count, span_count: {min_spans: 5}}]}}"
            ),
            Decision::NotSampled
        );
        // `and` nests.
        assert_eq!(
            d(
                "{name: x, type: and, and: {and_sub_policy: [{name: y, type: trace_flags}, {name: z, type: and, and: {and_sub_policy: [{name: w, type: always_sample}]}}]}}"
            ),
            Decision::Sampled
        );
        // Composite: the first sampling sub-policy decides within its share of the rate
        // (here 2 spans per second: 50% of 4); a trace of 2 spans fits once per second.
        let c = policy(
            "{name: c, type: composite, composite: {max_total_spans_per_second: 4, policy_order: [flags, all], composite_sub_policy: [{name: all, type: always_sample}, {name: flags, type: trace_flags}], rate_allocation: [{policy: flags, percent: 50}]}}",
        );
        assert_eq!(c.evaluate(&id, &t), Decision::Sampled);
        assert_eq!(
            c.evaluate(&id, &t),
            Decision::NotSampled,
            "over `flags`' share; `all` is not tried"
        );
        // Without the flag `flags` does not sample, so `all` (an equal share: 2) decides.
        let plain = held(vec![b.clone(), b], vec![]);
        assert_eq!(c.evaluate(&id, &plain), Decision::Sampled);
        assert!(
            cfg("policies:\n  - {name: c, type: composite, composite: {max_total_spans_per_second: 1, policy_order: [missing], composite_sub_policy: [{name: a, type: always_sample}]}}\n")
                .err()
                .unwrap()
                .msg
                .contains("policy_order names `missing`")
        );
        assert!(
            cfg("policies:\n  - {name: o, type: ottl_condition, ottl_condition: {span: ['nmae == 1']}}\n")
                .err()
                .unwrap()
                .msg
                .contains("did you mean `name`")
        );
    }

    /// The Collector's final decision: drop beats everything, an inverted non-match vetoes, a
    /// match samples, an inverted match samples only when no policy said no;
    /// `sample_on_first_match` stops at the first sampling policy.
    #[tokio::test]
    async fn final_decision_precedence_and_first_match() {
        let id = [3u8; 16];
        let t = held(
            vec![Span {
                trace_id: id.to_vec(),
                attributes: vec![kv("k", any_value::Value::StringValue("v".into()))],
                ..Default::default()
            }],
            vec![],
        );
        let decide = async |yaml_policies: &str| {
            let node = yaml(&format!("policies:\n{yaml_policies}")).unwrap();
            let cfg: Config = from_node(&node).unwrap();
            let policies = cfg
                .policies
                .iter()
                .map(|p| compile(p, &node, &[]).unwrap())
                .collect();
            let ctx = crate::component::Context::standalone("tail_sampling");
            let out = Arc::new(Capture(Mutex::new(Vec::new())));
            let ts = TailSampler::start(ctx.clone(), Signal::Traces, out.clone(), cfg, policies);
            ts.consume(Batch::Traces(t.fragments.clone()))
                .await
                .unwrap();
            // Shutdown decides every held trace at once.
            ts.shutdown(Instant::now() + Duration::from_secs(5)).await;
            let sampled = !out.0.lock().unwrap().is_empty();
            (sampled, ctx.telemetry.encode())
        };
        let always = "  - {name: always, type: always_sample}\n";
        let drop = "  - {name: drop, type: drop, drop: {drop_sub_policy: [{name: s, type: always_sample}]}}\n";
        let inverted_hit = "  - {name: inv, type: string_attribute, string_attribute: {key: k, values: [other], invert_match: true}}\n";
        let inverted_veto = "  - {name: veto, type: string_attribute, string_attribute: {key: k, values: [v], invert_match: true}}\n";
        let no = "  - {name: no, type: span_count, span_count: {min_spans: 9}}\n";
        assert!(!decide(&format!("{always}{drop}")).await.0, "drop wins");
        assert!(
            !decide(&format!("{always}{inverted_veto}")).await.0,
            "an inverted non-match vetoes"
        );
        assert!(decide(inverted_hit).await.0);
        assert!(
            !decide(&format!("{inverted_hit}{no}")).await.0,
            "an inverted match loses to a no"
        );
        assert!(decide(&format!("{inverted_hit}{no}{always}")).await.0);
        let (sampled, metrics) = decide(&format!(
            "{always}{no}  - {{name: later, type: always_sample}}\nsample_on_first_match: true\n"
        ))
        .await;
        assert!(sampled);
        assert!(
            metrics.contains("policy=\"no\",sampled=\"false\"} 0"),
            "policies after the first match are not evaluated: {metrics}"
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
