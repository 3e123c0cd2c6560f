//! `count` connector: counts spans, span events, metrics, data points or log records, per
//! resource and per the values of chosen attributes, and sends the counts on as metrics (delta
//! sums). Without options it writes the Collector's defaults for its input signal
//! (`trace.span.count` and `trace.span.event.count`, `metric.count` and
//! `metric.datapoint.count`, `log.record.count`); a section (`spans:`, `spanevents:`,
//! `metrics:`, `datapoints:`, `logs:`) replaces that signal's defaults with its own metrics,
//! each counting the items that match any of its OTTL `conditions` (all when none), grouped by
//! its `attributes` (the item's, else its scope's, else its resource's, else `default_value`;
//! an item with none of them is not counted).

use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConnectorConfig, ConsumeResult, Consumer, Context, Downstream,
    DynConsumer, Exporter, Factory, FanOut, Lifecycle, Stability,
};
use crate::config::{DeError, ErrorMode, Node, from_node, key_err};
use crate::ottl::eval::{EventCtx, LogCtx, MetricCtx, Outer, PointCtx, PointRef, SpanCtx};
use crate::ottl::{Condition, Context as OttlContext, Ctx};
use crate::signal::value::{find, string_kv, text};
use crate::signal::{Batch, Signal};

pub const FACTORY: Factory = Factory::connector(
    "count",
    crate::signal::ALL_SIGNALS,
    &[
        (Signal::Traces, Signal::Metrics),
        (Signal::Metrics, Signal::Metrics),
        (Signal::Logs, Signal::Metrics),
    ],
    Stability::Alpha,
    parse,
);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub key: String,
    #[serde(default)]
    pub default_value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricInfo {
    pub description: String,
    /// OTTL conditions of the section's context; an item counts when any holds.
    pub conditions: Vec<String>,
    pub attributes: Vec<AttributeConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub spans: BTreeMap<String, MetricInfo>,
    pub spanevents: BTreeMap<String, MetricInfo>,
    pub metrics: BTreeMap<String, MetricInfo>,
    pub datapoints: BTreeMap<String, MetricInfo>,
    pub logs: BTreeMap<String, MetricInfo>,
    /// What a condition that cannot be evaluated does: `propagate` (default) refuses the
    /// batch, `ignore` and `silent` treat it as false.
    pub error_mode: Option<ErrorMode>,
}

/// One configured count, its conditions compiled.
struct Counted {
    name: String,
    description: String,
    conditions: Vec<Condition>,
    attributes: Vec<(String, Option<String>)>,
}

/// What is counted per input: `(section, context, default name, default description)`.
const SECTIONS: [(&str, OttlContext, &str, &str); 5] = [
    (
        "spans",
        OttlContext::Span,
        "trace.span.count",
        "The number of spans observed.",
    ),
    (
        "spanevents",
        OttlContext::SpanEvent,
        "trace.span.event.count",
        "The number of span events observed.",
    ),
    (
        "metrics",
        OttlContext::Metric,
        "metric.count",
        "The number of metrics observed.",
    ),
    (
        "datapoints",
        OttlContext::DataPoint,
        "metric.datapoint.count",
        "The number of data points observed.",
    ),
    (
        "logs",
        OttlContext::Log,
        "log.record.count",
        "The number of log records observed.",
    ),
];

/// The compiled counts of every section, in [`SECTIONS`] order.
struct Plan {
    sections: [Vec<Counted>; 5],
    error_mode: ErrorMode,
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compile(cfg: &Config, node: &Node) -> Result<Plan, DeError> {
    let given = [
        &cfg.spans,
        &cfg.spanevents,
        &cfg.metrics,
        &cfg.datapoints,
        &cfg.logs,
    ];
    let mut sections: [Vec<Counted>; 5] = Default::default();
    for (i, (key, context, default_name, default_desc)) in SECTIONS.iter().enumerate() {
        if given[i].is_empty() {
            sections[i].push(Counted {
                name: (*default_name).into(),
                description: (*default_desc).into(),
                conditions: Vec::new(),
                attributes: Vec::new(),
            });
            continue;
        }
        for (name, info) in given[i] {
            let mut conditions = Vec::new();
            for (j, c) in info.conditions.iter().enumerate() {
                let parsed = Condition::parse(c, *context).map_err(|e| {
                    key_err(
                        node,
                        &[key, name, "conditions", &format!("[{j}]")],
                        format!("{e}"),
                    )
                })?;
                conditions.push(parsed);
            }
            for (j, a) in info.attributes.iter().enumerate() {
                if a.key.is_empty() {
                    return Err(key_err(
                        node,
                        &[key, name, "attributes", &format!("[{j}]"), "key"],
                        "must not be empty",
                    ));
                }
            }
            sections[i].push(Counted {
                name: name.clone(),
                description: info.description.clone(),
                conditions,
                attributes: info
                    .attributes
                    .iter()
                    .map(|a| (a.key.clone(), a.default_value.as_ref().map(scalar_text)))
                    .collect(),
            });
        }
    }
    Ok(Plan {
        sections,
        error_mode: cfg.error_mode.unwrap_or(ErrorMode::Propagate),
    })
}

pub fn parse(node: &Node) -> Result<Box<dyn ConnectorConfig>, DeError> {
    let cfg: Config = if node.is_null() {
        Config::default()
    } else {
        from_node(node)?
    };
    Ok(Box::new(Arc::new(compile(&cfg, node)?)))
}

impl ConnectorConfig for Arc<Plan> {
    fn build(
        &self,
        ctx: Context,
        from: Signal,
        _to: Signal,
        next: Vec<Downstream>,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let dropped = super::shared::dropped(&ctx, Signal::Metrics, "downstream_refused");
        Ok(Arc::new(Count {
            plan: Arc::clone(self),
            from,
            next: FanOut::build(next.into_iter().map(|d| d.head).collect()),
            id: ctx.id.to_string(),
            dropped,
        }))
    }
}

struct Count {
    plan: Arc<Plan>,
    from: Signal,
    next: DynConsumer,
    id: String,
    dropped: prometheus_client::metrics::counter::Counter,
}

/// Counts by attribute values, per configured metric of one section.
type Tally = Vec<BTreeMap<Vec<(String, String)>, i64>>;

impl Count {
    /// Adds one item to each count whose conditions it meets.
    fn tally(
        &self,
        section: usize,
        ctx: &dyn Ctx,
        attrs: [&[KeyValue]; 3],
        into: &mut Tally,
        err: &mut Option<String>,
    ) {
        for (k, c) in self.plan.sections[section].iter().enumerate() {
            let mut hit = c.conditions.is_empty();
            for cond in &c.conditions {
                match cond.eval(ctx) {
                    Ok(true) => {
                        hit = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        if self.plan.error_mode == ErrorMode::Propagate {
                            err.get_or_insert_with(|| {
                                format!("condition {:?}: {}", cond.text, e.0)
                            });
                        }
                    }
                }
            }
            if !hit {
                continue;
            }
            let mut key = Vec::with_capacity(c.attributes.len());
            for (name, default) in &c.attributes {
                let v = attrs
                    .iter()
                    .find_map(|a| find(a, name))
                    .map(|v| text(v).into_owned())
                    .or_else(|| default.clone());
                match v {
                    Some(v) => key.push((name.clone(), v)),
                    None => break,
                }
            }
            if key.len() < c.attributes.len() {
                continue;
            }
            *into[k].entry(key).or_default() += 1;
        }
    }

    fn metrics_of(&self, sections: &[usize], tallies: Vec<Tally>, now: u64) -> Vec<Metric> {
        let mut out = Vec::new();
        for (&s, tally) in sections.iter().zip(tallies) {
            for (c, counts) in self.plan.sections[s].iter().zip(tally) {
                if counts.is_empty() {
                    continue;
                }
                let data_points = counts
                    .into_iter()
                    .map(|(attrs, n)| NumberDataPoint {
                        attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
                        start_time_unix_nano: now,
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(n)),
                        ..Default::default()
                    })
                    .collect();
                out.push(Metric {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    unit: "1".into(),
                    data: Some(Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                });
            }
        }
        out
    }

    fn empty(&self, sections: &[usize]) -> Vec<Tally> {
        sections
            .iter()
            .map(|&s| vec![BTreeMap::new(); self.plan.sections[s].len()])
            .collect()
    }

    /// The counts of one batch, a resource of metrics per input resource that has any.
    fn count(&self, batch: &Batch) -> Result<Vec<ResourceMetrics>, String> {
        let now = crate::component::now_nanos();
        let mut err = None;
        let mut out = Vec::new();
        let mut emit = |resource: &Option<Resource>, metrics: Vec<Metric>| {
            if !metrics.is_empty() {
                out.push(ResourceMetrics {
                    resource: resource.clone(),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: "github.com/open-telemetry/opentelemetry-collector-contrib/connector/countconnector".into(),
                            ..Default::default()
                        }),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
        };
        let none: &[KeyValue] = &[];
        match batch {
            Batch::Traces(rs) => {
                let sections = [0, 1];
                for r in rs {
                    let res = r.resource.as_ref().map_or(none, |r| &r.attributes[..]);
                    let mut t = self.empty(&sections);
                    for ss in &r.scope_spans {
                        let outer = Outer {
                            resource: res,
                            resource_dropped: 0,
                            scope: ss.scope.as_ref(),
                        };
                        let scope_attrs = ss.scope.as_ref().map_or(none, |s| &s.attributes[..]);
                        for span in &ss.spans {
                            let c = SpanCtx {
                                outer: &outer,
                                span,
                            };
                            self.tally(
                                0,
                                &c,
                                [&span.attributes, scope_attrs, res],
                                &mut t[0],
                                &mut err,
                            );
                            for (index, event) in span.events.iter().enumerate() {
                                let c = EventCtx {
                                    outer: &outer,
                                    span,
                                    event,
                                    index,
                                };
                                self.tally(
                                    1,
                                    &c,
                                    [&event.attributes, scope_attrs, res],
                                    &mut t[1],
                                    &mut err,
                                );
                            }
                        }
                    }
                    emit(&r.resource, self.metrics_of(&sections, t, now));
                }
            }
            Batch::Metrics(rm) => {
                let sections = [2, 3];
                for r in rm {
                    let res = r.resource.as_ref().map_or(none, |r| &r.attributes[..]);
                    let mut t = self.empty(&sections);
                    for sm in &r.scope_metrics {
                        let outer = Outer {
                            resource: res,
                            resource_dropped: 0,
                            scope: sm.scope.as_ref(),
                        };
                        let scope_attrs = sm.scope.as_ref().map_or(none, |s| &s.attributes[..]);
                        for metric in &sm.metrics {
                            let c = MetricCtx {
                                outer: &outer,
                                metric,
                            };
                            self.tally(
                                2,
                                &c,
                                [&metric.metadata, scope_attrs, res],
                                &mut t[0],
                                &mut err,
                            );
                            let mut point = |p: PointRef<'_>, attrs: &[KeyValue]| {
                                let c = PointCtx {
                                    outer: &outer,
                                    metric,
                                    point: p,
                                };
                                self.tally(3, &c, [attrs, scope_attrs, res], &mut t[1], &mut err);
                            };
                            match &metric.data {
                                Some(Data::Gauge(g)) => g
                                    .data_points
                                    .iter()
                                    .for_each(|p| point(PointRef::Number(p), &p.attributes)),
                                Some(Data::Sum(s)) => s
                                    .data_points
                                    .iter()
                                    .for_each(|p| point(PointRef::Number(p), &p.attributes)),
                                Some(Data::Histogram(h)) => h
                                    .data_points
                                    .iter()
                                    .for_each(|p| point(PointRef::Histogram(p), &p.attributes)),
                                Some(Data::ExponentialHistogram(h)) => h
                                    .data_points
                                    .iter()
                                    .for_each(|p| point(PointRef::ExpHistogram(p), &p.attributes)),
                                Some(Data::Summary(s)) => s
                                    .data_points
                                    .iter()
                                    .for_each(|p| point(PointRef::Summary(p), &p.attributes)),
                                None => {}
                            }
                        }
                    }
                    emit(&r.resource, self.metrics_of(&sections, t, now));
                }
            }
            Batch::Logs(rl) => {
                let sections = [4];
                for r in rl {
                    let res = r.resource.as_ref().map_or(none, |r| &r.attributes[..]);
                    let mut t = self.empty(&sections);
                    for sl in &r.scope_logs {
                        let outer = Outer {
                            resource: res,
                            resource_dropped: 0,
                            scope: sl.scope.as_ref(),
                        };
                        let scope_attrs = sl.scope.as_ref().map_or(none, |s| &s.attributes[..]);
                        for log in &sl.log_records {
                            let c = LogCtx { outer: &outer, log };
                            self.tally(
                                4,
                                &c,
                                [&log.attributes, scope_attrs, res],
                                &mut t[0],
                                &mut err,
                            );
                        }
                    }
                    emit(&r.resource, self.metrics_of(&sections, t, now));
                }
            }
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

impl Consumer for Count {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let batch = super::shared::decoded(batch, &self.id)?;
            debug_assert_eq!(batch.signal(), self.from);
            let metrics = self.count(&batch).map_err(|e| {
                crate::component::ConsumeError::Permanent(format!("{}: {e}", self.id))
            })?;
            if metrics.is_empty() {
                return Ok(());
            }
            let points: usize = metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(Data::Sum(s)) => s.data_points.len(),
                    _ => 0,
                })
                .sum();
            // The counts are this connector's own data: a refusal downstream loses them (a
            // retry of the input would count it twice), counted here.
            if let Err(e) = self.next.consume(Batch::Metrics(metrics)).await {
                self.dropped.inc_by(points as u64);
                tracing::debug!(connector = %self.id, error = %e, "counts refused downstream");
            }
            Ok(())
        })
    }
}

impl Lifecycle for Count {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata::kv;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};

    struct Nothing;
    impl Consumer for Nothing {
        fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
            Box::pin(async { Ok(()) })
        }
    }

    fn plan(y: &str) -> Arc<Plan> {
        let node = yaml(y).unwrap();
        let cfg: Config = if node.is_null() {
            Config::default()
        } else {
            from_node(&node).unwrap()
        };
        Arc::new(compile(&cfg, &node).unwrap())
    }

    fn count(p: Arc<Plan>, from: Signal) -> Count {
        Count {
            plan: p,
            from,
            next: Arc::new(Nothing),
            id: "count".into(),
            dropped: Default::default(),
        }
    }

    fn points(rm: &[ResourceMetrics], name: &str) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for r in rm {
            for m in r
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == name)
            {
                let Some(Data::Sum(s)) = &m.data else {
                    panic!()
                };
                assert!(s.is_monotonic);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Delta as i32
                );
                for p in &s.data_points {
                    let key = p
                        .attributes
                        .iter()
                        .map(|a| {
                            format!("{}={}", a.key, crate::signal::value::option_text(&a.value))
                        })
                        .collect::<Vec<_>>()
                        .join(",");
                    let Some(number_data_point::Value::AsInt(n)) = p.value else {
                        panic!()
                    };
                    out.push((key, n));
                }
            }
        }
        out.sort();
        out
    }

    fn traces() -> Batch {
        let span = |name: &str, env: Option<&str>, events: usize| Span {
            name: name.into(),
            attributes: env.map(|e| vec![kv("env", e)]).unwrap_or_default(),
            events: (0..events)
                .map(|i| Event {
                    name: format!("e{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Batch::Traces(vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "a")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span("GET /", Some("prod"), 2),
                        span("GET /x", Some("dev"), 0),
                        span("q", None, 1),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "b"), kv("env", "stage")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span("z", None, 0)],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ])
    }

    #[test]
    fn defaults_count_every_span_and_event_per_resource() {
        let c = count(plan("null"), Signal::Traces);
        let rm = c.count(&traces()).unwrap();
        assert_eq!(rm.len(), 2, "one per input resource");
        assert_eq!(points(&rm[..1], "trace.span.count"), [(String::new(), 3)]);
        assert_eq!(
            points(&rm[..1], "trace.span.event.count"),
            [(String::new(), 3)]
        );
        assert_eq!(points(&rm[1..], "trace.span.count"), [(String::new(), 1)]);
        // No events in b: no event metric there.
        assert!(points(&rm[1..], "trace.span.event.count").is_empty());
        assert_eq!(
            crate::signal::value::find_str(
                &rm[1].resource.as_ref().unwrap().attributes,
                "service.name"
            ),
            Some("b")
        );
    }

    #[test]
    fn conditions_and_attributes_with_defaults_and_the_resource_fallback() {
        let c = count(
            plan(
                "spans:\n  span.by_env:\n    description: by env\n    attributes: [{key: env, default_value: none}]\n  span.get:\n    conditions: ['IsMatch(name, \"^GET\")', 'name == \"z\"']\n    attributes: [{key: env}]\n",
            ),
            Signal::Traces,
        );
        let rm = c.count(&traces()).unwrap();
        assert_eq!(
            points(&rm[..1], "span.by_env"),
            [
                ("env=dev".into(), 1),
                ("env=none".into(), 1),
                ("env=prod".into(), 1)
            ]
        );
        // b's span has no env of its own: the resource's.
        assert_eq!(points(&rm[1..], "span.by_env"), [("env=stage".into(), 1)]);
        assert_eq!(
            points(&rm[..1], "span.get"),
            [("env=dev".into(), 1), ("env=prod".into(), 1)]
        );
        assert_eq!(points(&rm[1..], "span.get"), [("env=stage".into(), 1)]);
        // The spans section replaces the span defaults, and the events keep theirs.
        assert!(points(&rm, "trace.span.count").is_empty());
        assert_eq!(
            points(&rm[..1], "trace.span.event.count"),
            [(String::new(), 3)]
        );
    }

    #[test]
    fn logs_metrics_and_datapoints() {
        let logs = Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        severity_number: 17,
                        ..Default::default()
                    },
                    LogRecord {
                        severity_number: 9,
                        ..Default::default()
                    },
                    LogRecord {
                        severity_number: 18,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let c = count(
            plan(
                "logs:\n  errors:\n    conditions: ['severity_number >= SEVERITY_NUMBER_ERROR']\n",
            ),
            Signal::Logs,
        );
        assert_eq!(
            points(&c.count(&logs).unwrap(), "errors"),
            [(String::new(), 2)]
        );
        // One gauge of five points.
        let m = crate::signal::testdata::gauge(5);
        let c = count(
            plan("datapoints:\n  big:\n    conditions: ['value_int >= 3']\n"),
            Signal::Metrics,
        );
        let rm = c.count(&m).unwrap();
        assert_eq!(points(&rm, "metric.count"), [(String::new(), 1)]);
        assert_eq!(points(&rm, "big"), [(String::new(), 2)]);
    }

    #[test]
    fn a_bad_condition_names_its_key() {
        let node = yaml("spans:\n  x:\n    conditions: ['nope(']\n").unwrap();
        let cfg: Config = from_node(&node).unwrap();
        let e = compile(&cfg, &node).err().unwrap();
        assert_eq!(e.path_string(), "spans.x.conditions[0]");
    }
}
