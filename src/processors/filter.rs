//! `filter` processor: drops spans, span events, metrics, data points and log records that match
//! an OTTL condition (any condition of the item's context matching drops it), or, in the legacy
//! form, that fail `include` or match `exclude` (`match_type: strict|regexp`). A span dropped
//! takes its events with it; a metric whose data points are all dropped is dropped; scopes and
//! resources left empty are removed. Dropped items are counted in
//! `otelcol_processor_dropped_items{reason="filtered"}`.
//!
//! `error_mode` (what an evaluation error does, e.g. `Len()` of a number): `propagate`
//! (default, as in the Collector: the whole batch is refused and counted), `ignore` (logged, the
//! item is kept), `silent` (kept, not logged).

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde::Deserialize;

use super::matcher::{Item, MatchConfig, Matcher};
use super::{InPlace, Transform, prune};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::ottl::eval::{
    EvalError, EventCtx, LogCtx, MetricCtx, Outer, PointCtx, PointRef, SpanCtx,
};
use crate::ottl::{Condition, Context as OttlContext};
use crate::signal::{Batch, Signal};

pub use crate::config::ErrorMode;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub metric: Vec<String>,
    pub datapoint: Vec<String>,
    /// Legacy form.
    pub include: Option<MatchConfig>,
    pub exclude: Option<MatchConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    pub log_record: Vec<String>,
    /// Legacy form.
    pub include: Option<MatchConfig>,
    pub exclude: Option<MatchConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LegacySpans {
    pub include: Option<MatchConfig>,
    pub exclude: Option<MatchConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub error_mode: ErrorMode,
    pub traces: TracesConfig,
    pub metrics: MetricsConfig,
    pub logs: LogsConfig,
    /// Legacy form for spans.
    pub spans: LegacySpans,
    /// The 0.146+ flat form: conditions whose context is inferred from their paths
    /// (`span.name`, `spanevent.name`, `resource.attributes[...]`).
    pub trace_conditions: Vec<String>,
    pub metric_conditions: Vec<String>,
    pub log_conditions: Vec<String>,
}

/// Legacy include/exclude, compiled.
#[derive(Clone, Default)]
struct Legacy {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl Legacy {
    fn new(
        include: &Option<MatchConfig>,
        exclude: &Option<MatchConfig>,
        signal: Signal,
        node: &Node,
        at: &str,
    ) -> Result<Legacy, DeError> {
        let compile = |c: &Option<MatchConfig>, key: &str| {
            c.as_ref()
                .map(|c| Matcher::new(c, signal, node, &[at, key]))
                .transpose()
        };
        Ok(Legacy {
            include: compile(include, "include")?,
            exclude: compile(exclude, "exclude")?,
        })
    }

    fn is_set(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    fn drops(&self, item: &Item<'_>) -> bool {
        self.include.as_ref().is_some_and(|m| !m.matches(item))
            || self.exclude.as_ref().is_some_and(|m| m.matches(item))
    }
}

/// A context's conditions, split: those reading only the resource and scope are evaluated once
/// per scope, the others once per item.
#[derive(Clone, Default)]
struct Conds {
    outer: Vec<Condition>,
    item: Vec<Condition>,
}

impl Conds {
    fn new(all: Vec<Condition>) -> Conds {
        let (outer, item) = all
            .into_iter()
            .partition(Condition::reads_only_resource_and_scope);
        Conds { outer, item }
    }

    fn is_empty(&self) -> bool {
        self.outer.is_empty() && self.item.is_empty()
    }
}

#[derive(Clone)]
struct Filter {
    id: String,
    error_mode: ErrorMode,
    span: Conds,
    spanevent: Conds,
    metric: Conds,
    datapoint: Conds,
    log_record: Conds,
    spans_legacy: Legacy,
    metrics_legacy: Legacy,
    logs_legacy: Legacy,
}

fn conditions(
    node: &Node,
    at: &[&str],
    list: &[String],
    ctx: OttlContext,
) -> Result<Vec<Condition>, DeError> {
    let mut list_node = node;
    for k in at {
        if let Some(n) = list_node.get(k) {
            list_node = n;
        }
    }
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            Condition::parse(text, ctx).map_err(|e| {
                let item = match &list_node.value {
                    crate::config::node::Value::Seq(items) => items.get(i),
                    _ => None,
                };
                let mut path: Vec<String> = at.iter().map(|s| s.to_string()).collect();
                path.push(format!("[{i}]"));
                DeError {
                    pos: Some(item.map_or(list_node.pos, |n| n.pos)),
                    path,
                    msg: format!(
                        "invalid OTTL condition {:?}: {e}",
                        crate::text::excerpt(text, 120)
                    ),
                }
            })
        })
        .collect()
}

/// `filter`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "filter",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    compile(node).map(|f| Box::new(f) as Box<dyn ProcessorConfig>)
}

fn compile(node: &Node) -> Result<Filter, DeError> {
    let cfg: Config = from_node(node)?;
    let mut span = conditions(
        node,
        &["traces", "span"],
        &cfg.traces.span,
        OttlContext::Span,
    )?;
    let mut spanevent = conditions(
        node,
        &["traces", "spanevent"],
        &cfg.traces.spanevent,
        OttlContext::SpanEvent,
    )?;
    let mut metric = conditions(
        node,
        &["metrics", "metric"],
        &cfg.metrics.metric,
        OttlContext::Metric,
    )?;
    let mut datapoint = conditions(
        node,
        &["metrics", "datapoint"],
        &cfg.metrics.datapoint,
        OttlContext::DataPoint,
    )?;
    let mut log_record = conditions(
        node,
        &["logs", "log_record"],
        &cfg.logs.log_record,
        OttlContext::Log,
    )?;
    // The flat form: each condition in the lowest context its paths name; one that names only
    // the resource or the scope drops every item under it.
    use OttlContext as C;
    for (key, list, hierarchy) in [
        (
            "trace_conditions",
            &cfg.trace_conditions,
            &[C::Resource, C::Scope, C::Span, C::SpanEvent][..],
        ),
        (
            "metric_conditions",
            &cfg.metric_conditions,
            &[C::Resource, C::Scope, C::Metric, C::DataPoint][..],
        ),
        (
            "log_conditions",
            &cfg.log_conditions,
            &[C::Resource, C::Scope, C::Log][..],
        ),
    ] {
        for (i, text) in list.iter().enumerate() {
            let inferred = crate::ottl::infer_context(&[text], hierarchy).ok_or_else(|| {
                crate::config::key_err(
                    node,
                    &[key, &format!("[{i}]")],
                    format!("{text:?}: cannot tell its context: prefix its paths (span.name, resource.attributes[\"k\"])"),
                )
            })?;
            let (ctx, into) = match inferred {
                C::SpanEvent => (C::SpanEvent, &mut spanevent),
                C::Metric => (C::Metric, &mut metric),
                C::DataPoint => (C::DataPoint, &mut datapoint),
                C::Log => (C::Log, &mut log_record),
                _ if key == "metric_conditions" => (C::Metric, &mut metric),
                _ if key == "log_conditions" => (C::Log, &mut log_record),
                _ => (C::Span, &mut span),
            };
            let mut parsed = conditions(node, &[key], std::slice::from_ref(text), ctx)
                .map_err(|e| crate::config::key_err(node, &[key, &format!("[{i}]")], e.msg))?;
            into.append(&mut parsed);
        }
    }
    let f = Filter {
        id: String::new(),
        error_mode: cfg.error_mode,
        span: Conds::new(span),
        spanevent: Conds::new(spanevent),
        metric: Conds::new(metric),
        datapoint: Conds::new(datapoint),
        log_record: Conds::new(log_record),
        spans_legacy: Legacy::new(
            &cfg.spans.include,
            &cfg.spans.exclude,
            Signal::Traces,
            node,
            "spans",
        )?,
        metrics_legacy: Legacy::new(
            &cfg.metrics.include,
            &cfg.metrics.exclude,
            Signal::Metrics,
            node,
            "metrics",
        )?,
        logs_legacy: Legacy::new(
            &cfg.logs.include,
            &cfg.logs.exclude,
            Signal::Logs,
            node,
            "logs",
        )?,
    };
    let mixed = [
        (
            "spans",
            f.spans_legacy.is_set() && !(f.span.is_empty() && f.spanevent.is_empty()),
        ),
        (
            "metrics",
            f.metrics_legacy.is_set() && !(f.metric.is_empty() && f.datapoint.is_empty()),
        ),
        ("logs", f.logs_legacy.is_set() && !f.log_record.is_empty()),
    ];
    if let Some((key, _)) = mixed.iter().find(|(_, m)| *m) {
        return Err(crate::config::key_err(
            node,
            &[key],
            "use either OTTL conditions or include/exclude for a signal, not both",
        ));
    }
    Ok(f)
}

impl ProcessorConfig for Filter {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let mut f = self.clone();
        f.id = ctx.id.to_string();
        Ok(InPlace::build(&ctx, signal, next, f, "filtered"))
    }
}

impl Filter {
    /// Whether any condition matches; an evaluation error follows `error_mode`.
    fn any(
        &self,
        conds: &[Condition],
        ctx: &dyn crate::ottl::Ctx,
        err: &mut Option<String>,
    ) -> bool {
        for c in conds {
            match c.eval(ctx) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(EvalError(msg)) => match self.error_mode {
                    ErrorMode::Propagate => {
                        err.get_or_insert_with(|| format!("condition {:?}: {msg}", c.text));
                    }
                    ErrorMode::Ignore => {
                        tracing::warn!(processor = %self.id, condition = %c.text, error = %msg, "condition failed; item kept")
                    }
                    ErrorMode::Silent => {}
                },
            }
        }
        false
    }
}

impl Transform for Filter {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let mut err: Option<String> = None;
        match batch {
            Batch::Traces(rs) => {
                if self.span.is_empty() && self.spanevent.is_empty() && !self.spans_legacy.is_set()
                {
                    return Ok(());
                }
                for r in rs.iter_mut() {
                    let resource = r.resource.as_ref().map_or(&[][..], |r| &r.attributes);
                    let resource_dropped = r
                        .resource
                        .as_ref()
                        .map_or(0, |r| r.dropped_attributes_count);
                    for ss in &mut r.scope_spans {
                        let outer = Outer {
                            resource,
                            resource_dropped,
                            scope: ss.scope.as_ref(),
                        };
                        if self.any(&self.span.outer, &outer, &mut err) {
                            ss.spans.clear();
                            continue;
                        }
                        let events_gone = self.any(&self.spanevent.outer, &outer, &mut err);
                        ss.spans.retain_mut(|span| {
                            let drop_span = if self.spans_legacy.is_set() {
                                self.spans_legacy.drops(&Item {
                                    resource,
                                    scope: outer.scope,
                                    span: Some(span),
                                    log: None,
                                    metric_name: None,
                                    attributes: &span.attributes,
                                })
                            } else {
                                self.any(
                                    &self.span.item,
                                    &SpanCtx {
                                        outer: &outer,
                                        span,
                                    },
                                    &mut err,
                                )
                            };
                            if drop_span {
                                return false;
                            }
                            if events_gone {
                                span.events.clear();
                            } else if !self.spanevent.item.is_empty() {
                                let mut events = std::mem::take(&mut span.events);
                                let mut index = 0;
                                events.retain(|event| {
                                    index += 1;
                                    !self.any(
                                        &self.spanevent.item,
                                        &EventCtx {
                                            outer: &outer,
                                            span,
                                            event,
                                            index: index - 1,
                                        },
                                        &mut err,
                                    )
                                });
                                span.events = events;
                            }
                            true
                        });
                    }
                }
            }
            Batch::Metrics(rm) => {
                if self.metric.is_empty()
                    && self.datapoint.is_empty()
                    && !self.metrics_legacy.is_set()
                {
                    return Ok(());
                }
                for r in rm.iter_mut() {
                    let resource = r.resource.as_ref().map_or(&[][..], |r| &r.attributes);
                    let resource_dropped = r
                        .resource
                        .as_ref()
                        .map_or(0, |r| r.dropped_attributes_count);
                    for sm in &mut r.scope_metrics {
                        let outer = Outer {
                            resource,
                            resource_dropped,
                            scope: sm.scope.as_ref(),
                        };
                        if self.any(&self.metric.outer, &outer, &mut err)
                            || self.any(&self.datapoint.outer, &outer, &mut err)
                        {
                            sm.metrics.clear();
                            continue;
                        }
                        sm.metrics.retain_mut(|metric| {
                            let drop_metric = if self.metrics_legacy.is_set() {
                                self.metrics_legacy.drops(&Item {
                                    resource,
                                    scope: outer.scope,
                                    span: None,
                                    log: None,
                                    metric_name: Some(&metric.name),
                                    attributes: &[],
                                })
                            } else {
                                self.any(
                                    &self.metric.item,
                                    &MetricCtx {
                                        outer: &outer,
                                        metric,
                                    },
                                    &mut err,
                                )
                            };
                            if drop_metric {
                                return false;
                            }
                            if self.datapoint.item.is_empty() {
                                return true;
                            }
                            let Some(mut data) = metric.data.take() else {
                                return true;
                            };
                            {
                                let m = &*metric;
                                let mut keep = |point: PointRef<'_>| {
                                    !self.any(
                                        &self.datapoint.item,
                                        &PointCtx {
                                            outer: &outer,
                                            metric: m,
                                            point,
                                        },
                                        &mut err,
                                    )
                                };
                                match &mut data {
                                    Data::Gauge(g) => {
                                        g.data_points.retain(|p| keep(PointRef::Number(p)))
                                    }
                                    Data::Sum(s) => {
                                        s.data_points.retain(|p| keep(PointRef::Number(p)))
                                    }
                                    Data::Histogram(h) => {
                                        h.data_points.retain(|p| keep(PointRef::Histogram(p)))
                                    }
                                    Data::ExponentialHistogram(h) => {
                                        h.data_points.retain(|p| keep(PointRef::ExpHistogram(p)))
                                    }
                                    Data::Summary(s) => {
                                        s.data_points.retain(|p| keep(PointRef::Summary(p)))
                                    }
                                }
                            }
                            let left = crate::signal::data_point_count(&data);
                            metric.data = Some(data);
                            left > 0
                        });
                    }
                }
            }
            Batch::Logs(rl) => {
                if self.log_record.is_empty() && !self.logs_legacy.is_set() {
                    return Ok(());
                }
                for r in rl.iter_mut() {
                    let resource = r.resource.as_ref().map_or(&[][..], |r| &r.attributes);
                    let resource_dropped = r
                        .resource
                        .as_ref()
                        .map_or(0, |r| r.dropped_attributes_count);
                    for sl in &mut r.scope_logs {
                        let outer = Outer {
                            resource,
                            resource_dropped,
                            scope: sl.scope.as_ref(),
                        };
                        if self.any(&self.log_record.outer, &outer, &mut err) {
                            sl.log_records.clear();
                            continue;
                        }
                        sl.log_records.retain(|log| {
                            if self.logs_legacy.is_set() {
                                !self.logs_legacy.drops(&Item {
                                    resource,
                                    scope: outer.scope,
                                    span: None,
                                    log: Some(log),
                                    metric_name: None,
                                    attributes: &log.attributes,
                                })
                            } else {
                                !self.any(
                                    &self.log_record.item,
                                    &LogCtx { outer: &outer, log },
                                    &mut err,
                                )
                            }
                        });
                    }
                }
            }
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        if let Some(e) = err {
            return Err(e);
        }
        prune(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata;

    fn filter(text: &str) -> Result<Filter, DeError> {
        compile(&yaml(text).unwrap())
    }

    #[test]
    fn located_errors() {
        let e = filter("traces:\n  span:\n    - 'name == \"a\"'\n    - 'attributes[\"x\"] =='\n")
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "traces.span[1]");
        assert_eq!(e.pos.unwrap().line, 4);
        assert!(e.msg.contains("column 19"), "{}", e.msg);
        let e = filter("error_mode: loud\n").err().unwrap();
        assert_eq!(e.path_string(), "error_mode");
        let e = filter("logs:\n  log_record: ['body == \"x\"']\n  include: {match_type: strict, bodies: [x]}\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("not both"), "{}", e.msg);
        let e = filter("traces:\n  spam: []\n").err().unwrap();
        assert_eq!(e.path_string(), "traces.spam");
    }

    #[test]
    fn spans_dropped_and_empty_resources_pruned() {
        let f = filter(
            "traces:\n  span:\n    - 'name == \"s1\"'\n    - 'resource.attributes[\"service.name\"] == \"drop-me\"'\n",
        )
        .unwrap();
        let mut b = testdata::spans("keep", 2, 3);
        b.append(testdata::spans("drop-me", 1, 2)).unwrap();
        let mut b = b.into_decoded().unwrap();
        f.apply(&mut b).unwrap();
        assert_eq!(b.item_count(), 5);
        let Batch::Traces(rs) = &b else { panic!() };
        assert_eq!(rs.len(), 1, "the emptied resource is pruned");
        assert!(rs[0].scope_spans[0].spans.iter().all(|s| s.name != "s1"));
    }

    /// The flat `*_conditions` keys put each condition in the context its paths name.
    #[test]
    fn flat_conditions_with_inferred_contexts() {
        let f = filter(
            "trace_conditions:\n  - 'span.name == \"s2\"'\n  - 'spanevent.name == \"debug\"'\nlog_conditions:\n  - 'log.severity_text == \"1\"'\nmetric_conditions:\n  - 'datapoint.value_int < 2'\n",
        )
        .unwrap();
        assert_eq!((f.span.item.len(), f.spanevent.item.len()), (1, 1));
        let mut b = testdata::spans("svc", 1, 3);
        f.apply(&mut b).unwrap();
        assert_eq!(b.item_count(), 2);
        let mut l = testdata::logs(3);
        f.apply(&mut l).unwrap();
        assert_eq!(l.item_count(), 2);
        let mut m = testdata::gauge(5);
        f.apply(&mut m).unwrap();
        assert_eq!(m.item_count(), 3);
        // Only the resource named: every span under a matching resource goes.
        let f =
            filter("trace_conditions:\n  - 'resource.attributes[\"service.name\"] == \"svc\"'\n")
                .unwrap();
        let mut b = testdata::spans("svc", 2, 2);
        f.apply(&mut b).unwrap();
        assert_eq!(b.item_count(), 0);
        let e = filter("trace_conditions:\n  - 'span.name == \"a\"'\n  - 'name == \"b\"'\n")
            .err()
            .unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.map(|p| p.line)),
            ("trace_conditions[1]", Some(3))
        );
        assert!(e.msg.contains("cannot tell its context"), "{}", e.msg);
        let e = filter("log_conditions:\n  - 'log.nmae == \"b\"'\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("unknown path"), "{}", e.msg);
    }

    #[test]
    fn error_modes() {
        let mut b = testdata::logs(3).into_decoded().unwrap();
        let f = filter("logs:\n  log_record: ['Len(severity_number) > 1']\n").unwrap();
        let e = f.apply(&mut b.clone()).unwrap_err();
        assert!(e.contains("Len: unsupported type int"), "{e}");
        let f = filter("error_mode: ignore\nlogs:\n  log_record: ['Len(severity_number) > 1', 'severity_text == \"1\"']\n").unwrap();
        f.apply(&mut b).unwrap();
        assert_eq!(
            b.item_count(),
            2,
            "errors keep the item; the second condition still drops"
        );
    }

    #[test]
    fn data_points_and_metrics() {
        let f = filter("metrics:\n  datapoint: ['value_int < 3']\n").unwrap();
        let mut b = testdata::gauge(5);
        f.apply(&mut b).unwrap();
        assert_eq!(b.item_count(), 2);
        let f = filter("metrics:\n  datapoint: ['metric.name == \"g\"']\n").unwrap();
        f.apply(&mut b).unwrap();
        assert!(
            b.is_empty(),
            "a metric without points is dropped, then its scope and resource"
        );
        let f =
            filter("metrics:\n  metric: ['type == METRIC_DATA_TYPE_GAUGE and name == \"g\"']\n")
                .unwrap();
        let mut b = testdata::gauge(5);
        f.apply(&mut b).unwrap();
        assert!(b.is_empty());
        let f =
            filter("metrics:\n  exclude: {match_type: regexp, metric_names: [\"g.*\"]}\n").unwrap();
        let mut b = testdata::gauge(5);
        f.apply(&mut b).unwrap();
        assert!(b.is_empty());
        let f = filter("metrics:\n  include: {match_type: strict, metric_names: [g]}\n").unwrap();
        let mut b = testdata::gauge(5);
        f.apply(&mut b).unwrap();
        assert_eq!(b.item_count(), 5);
    }
}
