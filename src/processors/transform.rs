//! `transform` processor: OTTL statements that edit telemetry in place. Per signal
//! (`trace_statements`, `metric_statements`, `log_statements`) a list of groups, each
//! `{context, conditions, statements, error_mode}`, or of plain statements whose context is
//! inferred from their paths (`set(span.attributes["x"], "y")` runs per span). Groups run in
//! order; within a group each item of the context (every resource, scope, span, span event,
//! metric, data point or log record) that matches any of the group's `conditions` runs the
//! statements in order, each when its own `where` holds.
//!
//! `error_mode` (processor-wide, or per group): `propagate` (default, as in the Collector: a
//! failing statement refuses the whole request, counted as dropped), `ignore` (logged, the
//! next statement runs), `silent` (not logged).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
use serde::Deserialize;

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::node::Value as NodeValue;
use crate::config::{DeError, ErrorMode, Node, from_node, key_err};
use crate::ottl::mutate::{
    CtxMut, Env, EventMut, LogMut, MetricMut, PointMut, ResourceMut, SpanMut,
};
use crate::ottl::{Condition, Context as OttlContext, Statement, infer_context};
use crate::signal::{Batch, Signal};

/// The keys of the processor; the statement lists are read from the node itself, so that an
/// error in one names its line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What a failing statement does: `propagate` (default), `ignore` or `silent`.
    pub error_mode: ErrorMode,
    pub trace_statements: serde::de::IgnoredAny,
    pub metric_statements: serde::de::IgnoredAny,
    pub log_statements: serde::de::IgnoredAny,
    /// Profiles are not supported: refused when non-empty.
    pub profile_statements: serde::de::IgnoredAny,
    /// Per-signal condition lists beside the statements: refused (put conditions in a group).
    pub trace_conditions: serde::de::IgnoredAny,
    pub metric_conditions: serde::de::IgnoredAny,
    pub log_conditions: serde::de::IgnoredAny,
}

/// One group as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct GroupConfig {
    /// `resource`, `scope`, `span`, `spanevent`, `metric`, `datapoint` or `log`; inferred from
    /// the paths when left out.
    context: Option<String>,
    /// Any of them true (or none given) runs the statements on the item. Both lists are
    /// typed here for the check and read from the node itself, for each item's line.
    #[allow(dead_code)]
    conditions: Option<Vec<String>>,
    #[allow(dead_code)]
    statements: Option<Vec<String>>,
    /// Overrides the processor's `error_mode` for this group.
    error_mode: Option<ErrorMode>,
}

/// A group, parsed.
#[derive(Debug, Clone)]
struct Group {
    context: OttlContext,
    conditions: Vec<Condition>,
    statements: Vec<Statement>,
    error_mode: ErrorMode,
}

#[derive(Clone)]
pub struct TransformProcessor {
    id: String,
    traces: Vec<Group>,
    metrics: Vec<Group>,
    logs: Vec<Group>,
    /// When an `ignore` error was last logged (Unix seconds): at most one line a second.
    last_log: Arc<AtomicU64>,
}

pub const FACTORY: Factory = Factory::processor(
    "transform",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
);

fn hierarchy(signal: Signal) -> &'static [OttlContext] {
    use OttlContext::*;
    match signal {
        Signal::Traces => &[Resource, Scope, Span, SpanEvent],
        Signal::Metrics => &[Resource, Scope, Metric, DataPoint],
        _ => &[Resource, Scope, Log],
    }
}

fn context_named(name: &str) -> Option<OttlContext> {
    use OttlContext::*;
    Some(match name {
        "resource" => Resource,
        "scope" | "instrumentation_scope" => Scope,
        "span" => Span,
        "spanevent" => SpanEvent,
        "metric" => Metric,
        "datapoint" => DataPoint,
        "log" => Log,
        _ => return None,
    })
}

/// The string items of a list node, each with its node (for its line); null is empty.
fn strings<'n>(
    node: &'n Node,
    at: &[&str],
    root: &Node,
) -> Result<Vec<(&'n str, &'n Node)>, DeError> {
    match &node.value {
        NodeValue::Null => Ok(Vec::new()),
        NodeValue::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| match n.as_str() {
                Some(s) => Ok((s, n)),
                None => {
                    let idx = format!("[{i}]");
                    let mut path = at.to_vec();
                    path.push(&idx);
                    Err(key_err(root, &path, "expected a string"))
                }
            })
            .collect(),
        _ => Err(key_err(root, at, "expected a list of strings")),
    }
}

fn located(
    node: &Node,
    path: Vec<String>,
    what: &str,
    text: &str,
    e: crate::ottl::ParseError,
) -> DeError {
    DeError {
        pos: Some(node.pos),
        path,
        msg: format!(
            "invalid OTTL {what} {:?}: {e}",
            crate::text::excerpt(text, 120)
        ),
    }
}

fn groups(
    root: &Node,
    key: &str,
    signal: Signal,
    default_mode: ErrorMode,
) -> Result<Vec<Group>, DeError> {
    let Some(list) = root.get(key) else {
        return Ok(Vec::new());
    };
    let items = match &list.value {
        NodeValue::Null => return Ok(Vec::new()),
        NodeValue::Seq(items) => items,
        _ => {
            return Err(key_err(
                root,
                &[key],
                "expected a list of statements or groups",
            ));
        }
    };
    let contexts = hierarchy(signal);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let idx = format!("[{i}]");
        let path = |rest: &[&str]| {
            let mut p = vec![key.to_string(), idx.clone()];
            p.extend(rest.iter().map(|s| s.to_string()));
            p
        };
        if let Some(text) = item.as_str() {
            // The flat form: one statement, its context from its paths.
            let ctx = infer_context(&[text], contexts).ok_or_else(|| {
                located(
                    item,
                    path(&[]),
                    "statement",
                    text,
                    crate::ottl::ParseError {
                        column: 1,
                        msg: format!(
                            "cannot tell its context: prefix its paths with one of {} (span.name, resource.attributes[\"k\"])",
                            contexts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                    },
                )
            })?;
            let st = Statement::parse(text, ctx)
                .map_err(|e| located(item, path(&[]), "statement", text, e))?;
            out.push(Group {
                context: ctx,
                conditions: Vec::new(),
                statements: vec![st],
                error_mode: default_mode,
            });
            continue;
        }
        let cfg: GroupConfig = from_node(item).map_err(|mut e| {
            let mut p = path(&[]);
            p.append(&mut e.path);
            e.path = p;
            e
        })?;
        let stmt_nodes = match item.get("statements") {
            Some(n) => strings(n, &[key, &idx, "statements"], root)?,
            None => Vec::new(),
        };
        let cond_nodes = match item.get("conditions") {
            Some(n) => strings(n, &[key, &idx, "conditions"], root)?,
            None => Vec::new(),
        };
        let ctx = match &cfg.context {
            Some(name) => context_named(name)
                .filter(|c| contexts.contains(c))
                .ok_or_else(|| {
                    key_err(
                        root,
                        &[key, &idx, "context"],
                        format!(
                            "unknown context {name:?} for {key}: expected one of {}",
                            contexts
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?,
            None => {
                let texts: Vec<&str> = stmt_nodes
                    .iter()
                    .chain(&cond_nodes)
                    .map(|(t, _)| *t)
                    .collect();
                infer_context(&texts, contexts).ok_or_else(|| {
                    key_err(
                        root,
                        &[key, &idx],
                        "no `context` and none can be inferred: set `context` or prefix the paths (span.name)",
                    )
                })?
            }
        };
        let conditions = cond_nodes
            .iter()
            .enumerate()
            .map(|(j, (text, n))| {
                Condition::parse(text, ctx).map_err(|e| {
                    located(
                        n,
                        path(&["conditions", &format!("[{j}]")]),
                        "condition",
                        text,
                        e,
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let statements = stmt_nodes
            .iter()
            .enumerate()
            .map(|(j, (text, n))| {
                Statement::parse(text, ctx).map_err(|e| {
                    located(
                        n,
                        path(&["statements", &format!("[{j}]")]),
                        "statement",
                        text,
                        e,
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Group {
            context: ctx,
            conditions,
            statements,
            error_mode: cfg.error_mode.unwrap_or(default_mode),
        });
    }
    Ok(out)
}

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    compile(node).map(|t| Box::new(t) as Box<dyn ProcessorConfig>)
}

fn compile(node: &Node) -> Result<TransformProcessor, DeError> {
    let cfg: Config = from_node(node)?;
    let mode = cfg.error_mode;
    for key in [
        "profile_statements",
        "trace_conditions",
        "metric_conditions",
        "log_conditions",
    ] {
        if let Some(n) = node.get(key)
            && !n.is_null()
            && !matches!(&n.value, NodeValue::Seq(s) if s.is_empty())
        {
            return Err(key_err(
                node,
                &[key],
                if key == "profile_statements" {
                    "profiles are not supported by ferrotel's transform processor"
                } else {
                    "not supported: put the conditions in a group's `conditions`"
                },
            ));
        }
    }
    Ok(TransformProcessor {
        id: String::new(),
        traces: groups(node, "trace_statements", Signal::Traces, mode)?,
        metrics: groups(node, "metric_statements", Signal::Metrics, mode)?,
        logs: groups(node, "log_statements", Signal::Logs, mode)?,
        last_log: Arc::new(AtomicU64::new(0)),
    })
}

impl ProcessorConfig for TransformProcessor {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let mut t = self.clone();
        t.id = ctx.id.to_string();
        Ok(InPlace::build(&ctx, signal, next, t, "transform_failed"))
    }
}

impl TransformProcessor {
    /// Runs a group on one item. `Err` only under `propagate`.
    fn run(&self, g: &Group, item: &mut dyn CtxMut) -> Result<(), String> {
        if !g.conditions.is_empty() {
            let mut any = false;
            for c in &g.conditions {
                match c.eval(&*item) {
                    Ok(true) => {
                        any = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => self.failed(g.error_mode, &c.text, &e.0)?,
                }
            }
            if !any {
                return Ok(());
            }
        }
        for st in &g.statements {
            if let Err(e) = st.exec(item) {
                self.failed(g.error_mode, &st.text, &e.0)?;
            }
        }
        Ok(())
    }

    fn failed(&self, mode: ErrorMode, text: &str, msg: &str) -> Result<(), String> {
        match mode {
            ErrorMode::Propagate => Err(format!("{}: {text:?}: {msg}", self.id)),
            ErrorMode::Ignore => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if self.last_log.swap(now, Ordering::Relaxed) != now {
                    tracing::warn!(processor = %self.id, statement = %text, error = %msg, "OTTL statement failed; the next one runs");
                }
                Ok(())
            }
            ErrorMode::Silent => Ok(()),
        }
    }
}

/// A scope of any signal: its scope and its items, borrowed apart.
trait Scoped {
    type Items;
    fn split(&mut self) -> (&mut Option<InstrumentationScope>, &mut Self::Items);
}

impl Scoped for ScopeSpans {
    type Items = Vec<Span>;
    fn split(&mut self) -> (&mut Option<InstrumentationScope>, &mut Vec<Span>) {
        (&mut self.scope, &mut self.spans)
    }
}

impl Scoped for ScopeMetrics {
    type Items = Vec<Metric>;
    fn split(&mut self) -> (&mut Option<InstrumentationScope>, &mut Vec<Metric>) {
        (&mut self.scope, &mut self.metrics)
    }
}

impl Scoped for ScopeLogs {
    type Items = Vec<LogRecord>;
    fn split(&mut self) -> (&mut Option<InstrumentationScope>, &mut Vec<LogRecord>) {
        (&mut self.scope, &mut self.log_records)
    }
}

/// Each item's environment: its resource and scope, and the cache cleared for it.
fn env<'a>(
    resource: &'a mut Option<Resource>,
    scope: Option<&'a mut Option<InstrumentationScope>>,
    cache: &'a mut Vec<KeyValue>,
) -> Env<'a> {
    cache.clear();
    Env {
        resource,
        scope,
        cache,
    }
}

impl TransformProcessor {
    /// Runs a group on one resource: the resource and scope contexts here, the item contexts
    /// through `items`, once per scope.
    fn on_resource<S: Scoped>(
        &self,
        g: &Group,
        resource: &mut Option<Resource>,
        scopes: &mut [S],
        cache: &mut Vec<KeyValue>,
        mut items: impl FnMut(
            &mut Option<Resource>,
            &mut Option<InstrumentationScope>,
            &mut S::Items,
            &mut Vec<KeyValue>,
        ) -> Result<(), String>,
    ) -> Result<(), String> {
        if g.context == OttlContext::Resource {
            return self.run(
                g,
                &mut ResourceMut {
                    env: env(resource, None, cache),
                },
            );
        }
        for s in scopes {
            let (scope, list) = s.split();
            if g.context == OttlContext::Scope {
                self.run(
                    g,
                    &mut ResourceMut {
                        env: env(resource, Some(scope), cache),
                    },
                )?;
            } else {
                items(resource, scope, list, cache)?;
            }
        }
        Ok(())
    }
}

impl Transform for TransformProcessor {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let mut cache: Vec<KeyValue> = Vec::new();
        match batch {
            Batch::Traces(rs) => {
                for g in &self.traces {
                    for r in rs.iter_mut() {
                        self.on_resource(
                            g,
                            &mut r.resource,
                            &mut r.scope_spans,
                            &mut cache,
                            |res, scope, spans, cache| {
                                for span in spans.iter_mut() {
                                    if g.context == OttlContext::Span {
                                        let env = env(res, Some(scope), cache);
                                        self.run(g, &mut SpanMut { env, span })?;
                                        continue;
                                    }
                                    for index in 0..span.events.len() {
                                        let env = env(res, Some(scope), cache);
                                        self.run(g, &mut EventMut { env, span, index })?;
                                    }
                                }
                                Ok(())
                            },
                        )?;
                    }
                }
            }
            Batch::Metrics(rm) => {
                for g in &self.metrics {
                    for r in rm.iter_mut() {
                        self.on_resource(
                            g,
                            &mut r.resource,
                            &mut r.scope_metrics,
                            &mut cache,
                            |res, scope, metrics, cache| {
                                if g.context == OttlContext::Metric {
                                    // Metrics the statements add are not run again.
                                    for index in 0..metrics.len() {
                                        let env = env(res, Some(scope), cache);
                                        self.run(
                                            g,
                                            &mut MetricMut {
                                                env,
                                                metrics,
                                                index,
                                            },
                                        )?;
                                    }
                                    return Ok(());
                                }
                                for metric in metrics.iter_mut() {
                                    let n = metric
                                        .data
                                        .as_ref()
                                        .map_or(0, crate::signal::data_point_count);
                                    for index in 0..n {
                                        let env = env(res, Some(scope), cache);
                                        self.run(g, &mut PointMut { env, metric, index })?;
                                    }
                                }
                                Ok(())
                            },
                        )?;
                    }
                }
            }
            Batch::Logs(rl) => {
                for g in &self.logs {
                    for r in rl.iter_mut() {
                        self.on_resource(
                            g,
                            &mut r.resource,
                            &mut r.scope_logs,
                            &mut cache,
                            |res, scope, logs, cache| {
                                for log in logs.iter_mut() {
                                    let env = env(res, Some(scope), cache);
                                    self.run(g, &mut LogMut { env, log })?;
                                }
                                Ok(())
                            },
                        )?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point::Value as Num,
    };

    fn transform(text: &str) -> Result<TransformProcessor, DeError> {
        compile(&yaml(text).unwrap())
    }

    fn attr<'a>(kvs: &'a [KeyValue], k: &str) -> Option<&'a V> {
        crate::signal::value::find_value(kvs, k)
    }

    fn s(v: &str) -> Option<V> {
        Some(V::StringValue(v.into()))
    }

    #[test]
    fn both_forms_and_group_conditions() {
        let t = transform(
            r#"
trace_statements:
  - set(span.attributes["flat"], "yes")
  - set(resource.attributes["env"], "prod")
  - context: span
    conditions: ['name == "s2"', 'name == "s3"']
    statements:
      - set(attributes["picked"], true)
      - set(name, Concat([name, "x"], "-")) where attributes["picked"] == true
  - statements: ['set(scope.version, "9")']
"#,
        )
        .unwrap();
        assert_eq!(
            t.traces.iter().map(|g| g.context).collect::<Vec<_>>(),
            [
                OttlContext::Span,
                OttlContext::Resource,
                OttlContext::Span,
                OttlContext::Scope
            ]
        );
        let mut b = testdata::spans("svc", 2, 2);
        t.apply(&mut b).unwrap();
        let Batch::Traces(rs) = &b else {
            unreachable!()
        };
        assert_eq!(
            attr(&rs[0].resource.as_ref().unwrap().attributes, "env"),
            s("prod").as_ref()
        );
        let spans: Vec<_> = rs[0].scope_spans.iter().flat_map(|ss| &ss.spans).collect();
        assert!(
            spans
                .iter()
                .all(|sp| attr(&sp.attributes, "flat") == s("yes").as_ref())
        );
        let names: Vec<&str> = spans.iter().map(|sp| sp.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2-x", "s3-x", "s4"]);
        assert!(
            rs[0]
                .scope_spans
                .iter()
                .all(|ss| ss.scope.as_ref().unwrap().version == "9")
        );
    }

    #[test]
    fn error_modes() {
        let bad = r#"set(attributes["n"], Len(severity_number))"#;
        let t = transform(&format!("log_statements:\n  - context: log\n    statements: ['{bad}', 'set(attributes[\"after\"], 1)']\n")).unwrap();
        let mut b = testdata::logs(2);
        let e = t.apply(&mut b).unwrap_err();
        assert!(e.contains("Len: unsupported type int"), "{e}");
        for mode in ["ignore", "silent"] {
            let t = transform(&format!(
                "error_mode: {mode}\nlog_statements:\n  - context: log\n    statements: ['{bad}', 'set(attributes[\"after\"], 1)']\n"
            ))
            .unwrap();
            let mut b = testdata::logs(2);
            t.apply(&mut b).unwrap();
            let Batch::Logs(rl) = &b else { unreachable!() };
            assert!(
                rl[0].scope_logs[0]
                    .log_records
                    .iter()
                    .all(|l| attr(&l.attributes, "after") == Some(&V::IntValue(1))),
                "{mode}: the next statement ran"
            );
        }
        // A group's own error_mode wins over the processor's.
        let t = transform(&format!(
            "error_mode: propagate\nlog_statements:\n  - context: log\n    error_mode: ignore\n    statements: ['{bad}']\n"
        ))
        .unwrap();
        t.apply(&mut testdata::logs(1)).unwrap();
    }

    #[test]
    fn located_errors() {
        let e = transform("trace_statements:\n  - context: span\n    statements:\n      - set(name, \"a\")\n      - sett(name, \"b\")\n").err().unwrap();
        assert_eq!(e.path_string(), "trace_statements[0].statements[1]");
        assert_eq!(e.pos.map(|p| p.line), Some(5));
        assert!(e.msg.contains("unknown editor `sett`"), "{}", e.msg);
        let e = transform("trace_statements:\n  - context: spn\n    statements: []\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("unknown context \"spn\""), "{}", e.msg);
        assert_eq!(e.pos.map(|p| p.line), Some(2));
        let e = transform("log_statements:\n  - context: log\n    statement: []\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("statement"), "{}", e.msg);
        let e = transform("log_statements:\n  - set(attributes[\"a\"], 1)\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("cannot tell its context"), "{}", e.msg);
        let e = transform("metric_statements:\n  - context: span\n    statements: []\n")
            .err()
            .unwrap();
        assert!(
            e.msg
                .contains("expected one of resource, scope, metric, datapoint"),
            "{}",
            e.msg
        );
        let e = transform("profile_statements:\n  - set(profile.attributes[\"a\"], 1)\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("profiles are not supported"), "{}", e.msg);
        // An empty statements list (a YAML anchor on nothing) is fine.
        transform("log_statements:\n  - context: resource\n    statements:\n").unwrap();
    }

    fn number(v: i64) -> NumberDataPoint {
        NumberDataPoint {
            value: Some(Num::AsInt(v)),
            ..Default::default()
        }
    }

    fn with_attrs(mut p: NumberDataPoint, kvs: &[(&str, &str)]) -> NumberDataPoint {
        p.attributes = kvs.iter().map(|(k, v)| testdata::kv(k, v)).collect();
        p
    }

    fn metrics(ms: Vec<Metric>) -> Batch {
        Batch::Metrics(vec![ResourceMetrics {
            resource: testdata::resource("m"),
            scope_metrics: vec![ScopeMetrics {
                metrics: ms,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn out(b: &Batch) -> &[Metric] {
        let Batch::Metrics(rm) = b else {
            unreachable!()
        };
        &rm[0].scope_metrics[0].metrics
    }

    fn run_metric(stmts: &str, ms: Vec<Metric>) -> Batch {
        let t = transform(&format!(
            "metric_statements:\n  - context: metric\n    statements:\n{}",
            stmts
                .lines()
                .map(|l| format!("      - '{l}'\n"))
                .collect::<String>()
        ))
        .unwrap_or_else(|e| panic!("{stmts}: {e:?}"));
        let mut b = metrics(ms);
        t.apply(&mut b).unwrap_or_else(|e| panic!("{stmts}: {e}"));
        b
    }

    fn sum_metric(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            unit: "By".into(),
            data: Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn histogram() -> Metric {
        Metric {
            name: "latency".into(),
            unit: "ms".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 4,
                    sum: Some(10.0),
                    bucket_counts: vec![1, 2, 1],
                    explicit_bounds: vec![1.0, 5.0],
                    attributes: vec![testdata::kv("route", "/a")],
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn metric_type_conversions() {
        let b = run_metric(
            "convert_sum_to_gauge() where name == \"a\"",
            vec![
                sum_metric("a", vec![number(3)]),
                sum_metric("b", vec![number(4)]),
            ],
        );
        assert!(
            matches!(&out(&b)[0].data, Some(Data::Gauge(g)) if g.data_points[0].value == Some(Num::AsInt(3)))
        );
        assert!(matches!(&out(&b)[1].data, Some(Data::Sum(_))));
        let g = Metric {
            name: "g".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![number(5)],
            })),
            ..Default::default()
        };
        let b = run_metric("convert_gauge_to_sum(\"delta\", true)", vec![g]);
        assert!(
            matches!(&out(&b)[0].data, Some(Data::Sum(s)) if s.aggregation_temporality == 1 && s.is_monotonic && s.data_points.len() == 1)
        );
        let e = transform("metric_statements:\n  - context: metric\n    statements: ['convert_gauge_to_sum(\"sometimes\", true)']\n").err().unwrap();
        assert!(e.msg.contains("cumulative or delta"), "{}", e.msg);
    }

    #[test]
    fn metrics_from_metrics() {
        let b = run_metric(
            "extract_sum_metric(true)\nextract_count_metric(false, \"_n\")\ncopy_metric(name=\"latency.copy\", unit=\"s\") where name == \"latency\"",
            vec![histogram()],
        );
        let names: Vec<&str> = out(&b).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["latency", "latency_sum", "latency_n", "latency.copy"]
        );
        let Some(Data::Sum(sum)) = &out(&b)[1].data else {
            panic!()
        };
        assert_eq!((sum.is_monotonic, sum.aggregation_temporality), (true, 1));
        assert_eq!(sum.data_points[0].value, Some(Num::AsDouble(10.0)));
        assert_eq!(
            sum.data_points[0].attributes,
            vec![testdata::kv("route", "/a")]
        );
        let Some(Data::Sum(count)) = &out(&b)[2].data else {
            panic!()
        };
        assert_eq!(
            (count.is_monotonic, count.data_points[0].value),
            (false, Some(Num::AsInt(4)))
        );
        assert_eq!(out(&b)[3].unit, "s");
        assert!(matches!(out(&b)[3].data, Some(Data::Histogram(_))));

        let summary = Metric {
            name: "rpc".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 7,
                    sum: 3.5,
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let b = run_metric(
            "convert_summary_count_val_to_sum(\"delta\", true)\nconvert_summary_sum_val_to_sum(\"cumulative\", false, \"_total\")",
            vec![summary],
        );
        let names: Vec<&str> = out(&b).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["rpc", "rpc_count", "rpc_total"]);
        assert!(
            matches!(&out(&b)[1].data, Some(Data::Sum(s)) if s.data_points[0].value == Some(Num::AsInt(7)) && s.aggregation_temporality == 1)
        );
        assert!(
            matches!(&out(&b)[2].data, Some(Data::Sum(s)) if s.data_points[0].value == Some(Num::AsDouble(3.5)) && !s.is_monotonic)
        );
    }

    #[test]
    fn scale_and_aggregate() {
        let b = run_metric(
            "scale_metric(1000.0, \"ms\")",
            vec![sum_metric("t", vec![number(2)]), histogram()],
        );
        assert_eq!(out(&b)[0].unit, "ms");
        assert!(
            matches!(&out(&b)[0].data, Some(Data::Sum(s)) if s.data_points[0].value == Some(Num::AsInt(2000)))
        );
        let Some(Data::Histogram(h)) = &out(&b)[1].data else {
            panic!()
        };
        assert_eq!(
            (
                h.data_points[0].sum,
                h.data_points[0].explicit_bounds.clone()
            ),
            (Some(10000.0), vec![1000.0, 5000.0])
        );

        let points = vec![
            with_attrs(number(1), &[("host", "a"), ("cpu", "0")]),
            with_attrs(number(2), &[("host", "a"), ("cpu", "1")]),
            with_attrs(number(5), &[("host", "b"), ("cpu", "0")]),
        ];
        let b = run_metric(
            "aggregate_on_attributes(\"sum\", [\"host\"])",
            vec![sum_metric("c", points.clone())],
        );
        let Some(Data::Sum(s)) = &out(&b)[0].data else {
            panic!()
        };
        let got: Vec<(Vec<KeyValue>, Option<Num>)> = s
            .data_points
            .iter()
            .map(|p| (p.attributes.clone(), p.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![testdata::kv("host", "a")], Some(Num::AsInt(3))),
                (vec![testdata::kv("host", "b")], Some(Num::AsInt(5)))
            ]
        );
        let b = run_metric(
            "aggregate_on_attributes(\"max\")",
            vec![sum_metric("c", points.clone())],
        );
        let Some(Data::Sum(s)) = &out(&b)[0].data else {
            panic!()
        };
        assert_eq!(
            (
                s.data_points.len(),
                s.data_points[0].value,
                s.data_points[0].attributes.len()
            ),
            (1, Some(Num::AsInt(5)), 0)
        );
        let b = run_metric(
            "aggregate_on_attributes(\"avg\", [\"cpu\"])",
            vec![sum_metric("c", points.clone())],
        );
        let Some(Data::Sum(s)) = &out(&b)[0].data else {
            panic!()
        };
        assert_eq!(s.data_points[0].value, Some(Num::AsDouble(3.0)));
        let b = run_metric(
            "aggregate_on_attribute_value(\"sum\", \"cpu\", [\"0\", \"1\"], \"all\")",
            vec![sum_metric("c", points)],
        );
        let Some(Data::Sum(s)) = &out(&b)[0].data else {
            panic!()
        };
        assert_eq!(
            s.data_points.len(),
            2,
            "host a's two cpus merged, host b kept"
        );
        assert_eq!(s.data_points[0].value, Some(Num::AsInt(3)));
        assert_eq!(
            attr(&s.data_points[0].attributes, "cpu"),
            Some(&V::StringValue("all".into()))
        );
        let e = transform("metric_statements:\n  - context: metric\n    statements: ['aggregate_on_attributes(\"mode\")']\n").err().unwrap();
        assert!(e.msg.contains("function must be sum, avg"), "{}", e.msg);
    }

    #[test]
    fn exponential_to_explicit() {
        // Scale 0: bucket i holds (2^i, 2^(i+1)]; offset 0 → (1,2], (2,4], (4,8].
        let m = Metric {
            name: "e".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    scale: 0,
                    count: 8,
                    sum: Some(30.0),
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![2, 1, 4],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        let b = run_metric(
            "convert_exponential_hist_to_explicit_hist(\"upper\", [2.0, 4.0, 6.0])",
            vec![m.clone()],
        );
        let Some(Data::Histogram(h)) = &out(&b)[0].data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(
            (p.count, p.sum, p.bucket_counts.clone()),
            (8, Some(30.0), vec![3, 1, 0, 4])
        );
        let b = run_metric(
            "convert_exponential_hist_to_explicit_hist(\"midpoint\", [2.0, 4.0, 6.0])",
            vec![m.clone()],
        );
        let Some(Data::Histogram(h)) = &out(&b)[0].data else {
            panic!()
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![3, 1, 4, 0]);
        let b = run_metric(
            "convert_exponential_hist_to_explicit_hist(\"uniform\", [2.0, 4.0, 6.0])",
            vec![m],
        );
        let Some(Data::Histogram(h)) = &out(&b)[0].data else {
            panic!()
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![3, 1, 2, 2]);
        assert_eq!(h.data_points[0].bucket_counts.iter().sum::<u64>(), 8);
    }

    #[test]
    fn datapoint_scope_and_spanevent_contexts() {
        let t = transform(
            "metric_statements:\n  - context: datapoint\n    statements: ['set(attributes[\"double\"], value_int * 2) where metric.name == \"g\"', 'set(value_int, value_int + 100)']\n",
        )
        .unwrap();
        let mut b = testdata::gauge(3);
        t.apply(&mut b).unwrap();
        let Some(Data::Gauge(g)) = &out(&b)[0].data else {
            panic!()
        };
        let got: Vec<_> = g
            .data_points
            .iter()
            .map(|p| (p.value, attr(&p.attributes, "double").cloned()))
            .collect();
        assert_eq!(got[2], (Some(Num::AsInt(102)), Some(V::IntValue(4))));

        let t = transform("trace_statements:\n  - context: spanevent\n    statements: ['set(attributes[\"span\"], span.name)', 'set(name, \"renamed\") where event_index == 1']\n").unwrap();
        let mut b = testdata::spans("svc", 1, 1);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[0].events = vec![Default::default(), Default::default()];
        }
        t.apply(&mut b).unwrap();
        let Batch::Traces(rs) = &b else {
            unreachable!()
        };
        let events = &rs[0].scope_spans[0].spans[0].events;
        assert_eq!(events[1].name, "renamed");
        assert_eq!(events[0].name, "");
        assert_eq!(
            attr(&events[0].attributes, "span"),
            Some(&V::StringValue("s1".into()))
        );
    }

    /// Every transform section of the corpus configs parses, and does what it says on a
    /// matching item.
    #[test]
    fn corpus_transform_sections() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/collector-configs");
        let Ok(entries) = std::fs::read_dir(dir) else {
            panic!("the corpus at {dir}");
        };
        let mut seen = 0;
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let Ok(root) = yaml(&text) else { continue };
            let Some(procs) = root.get("processors").and_then(|p| p.entries()) else {
                continue;
            };
            for (k, node) in procs {
                if k.name == "transform" || k.name.starts_with("transform/") {
                    compile(node)
                        .unwrap_or_else(|err| panic!("{:?} {}: {err:?}", e.path(), k.name));
                    seen += 1;
                }
            }
        }
        assert!(seen >= 6, "found {seen} transform sections");
        // 45's workload statements on a resource.
        let t = transform(
            "trace_statements:\n  - context: resource\n    statements:\n      - set(attributes[\"k8s.workload.kind\"], \"deployment\") where IsString(attributes[\"k8s.deployment.name\"])\n      - set(attributes[\"k8s.workload.name\"], attributes[\"k8s.deployment.name\"]) where IsString(attributes[\"k8s.deployment.name\"])\n      - delete_key(attributes, \"k8s.deployment.name\")\n      - merge_maps(attributes, ParseJSON(attributes[\"metadata.dynatrace.com\"]), \"upsert\") where IsMatch(attributes[\"metadata.dynatrace.com\"], \"^\\\\{\")\n      - delete_key(attributes, \"metadata.dynatrace.com\")\n",
        )
        .unwrap();
        let mut b = testdata::spans("svc", 1, 1);
        if let Batch::Traces(rs) = &mut b {
            let r = rs[0].resource.as_mut().unwrap();
            r.attributes
                .push(testdata::kv("k8s.deployment.name", "web"));
            r.attributes.push(testdata::kv(
                "metadata.dynatrace.com",
                "{\"dt.security_context\":\"team-a\"}",
            ));
        }
        t.apply(&mut b).unwrap();
        let Batch::Traces(rs) = &b else {
            unreachable!()
        };
        let a = &rs[0].resource.as_ref().unwrap().attributes;
        assert_eq!(
            attr(a, "k8s.workload.kind"),
            Some(&V::StringValue("deployment".into()))
        );
        assert_eq!(
            attr(a, "k8s.workload.name"),
            Some(&V::StringValue("web".into()))
        );
        assert_eq!(
            attr(a, "dt.security_context"),
            Some(&V::StringValue("team-a".into()))
        );
        assert!(
            attr(a, "k8s.deployment.name").is_none() && attr(a, "metadata.dynatrace.com").is_none()
        );
    }
}
