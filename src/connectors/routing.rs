//! `routing` connector: sends each resource (or, with `context: span`, `metric`, `log`, each
//! item) to the pipelines of the first route in `table` whose condition holds, and what no
//! route takes to `default_pipelines` (dropped and counted when there are none), as the current
//! Collector routes (each item once: its `match_once` behaviour). A route gives its condition
//! as `condition: <OTTL condition>` or `statement: route() where <condition>`. Routes with
//! `context: request` read the client's metadata (`request["X-Tenant"]`, the receiver's
//! `include_metadata: true`) and send the whole batch; they are tried first.

use std::sync::Arc;

use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConnectorConfig, ConsumeError, ConsumeResult, Consumer, Context,
    Downstream, DynConsumer, Exporter, Factory, FanOut, Lifecycle, Stability,
};
use crate::config::{DeError, ErrorMode, Node, from_node, key_err};
use crate::ottl::eval::{LogCtx, MetricCtx, Outer, RequestCtx, ResourceCtx, SpanCtx};
use crate::ottl::{Condition, Context as OttlContext, Ctx};
use crate::signal::{Batch, Signal};

pub const FACTORY: Factory = Factory::connector(
    "routing",
    crate::signal::ALL_SIGNALS,
    &[
        (Signal::Traces, Signal::Traces),
        (Signal::Metrics, Signal::Metrics),
        (Signal::Logs, Signal::Logs),
    ],
    Stability::Alpha,
    parse,
);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub statement: Option<String>,
    /// `resource` (default), `span`, `metric` or `log`.
    #[serde(default)]
    pub context: Option<String>,
    pub pipelines: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub table: Vec<Route>,
    #[serde(default)]
    pub default_pipelines: Vec<String>,
    /// A condition that cannot be evaluated: `propagate` (default) refuses the batch, `ignore`
    /// and `silent` take it as false.
    #[serde(default)]
    pub error_mode: Option<ErrorMode>,
    /// Deprecated in the Collector, where each item now goes to its first matching route:
    /// `true` is accepted, `false` refused.
    #[serde(default)]
    pub match_once: Option<bool>,
}

/// Where a route's condition is evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    /// The request's metadata: the whole batch goes to the route.
    Request,
    Resource,
    Item,
}

struct CompiledRoute {
    level: Level,
    /// The condition, parsed once per signal's item context (a resource condition is parsed
    /// in the resource context for all three).
    conditions: [Option<Condition>; 3],
    text: String,
    pipelines: Vec<String>,
}

pub struct Plan {
    routes: Vec<CompiledRoute>,
    default_pipelines: Vec<String>,
    error_mode: ErrorMode,
}

fn signal_index(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        _ => 2,
    }
}

fn compile(cfg: &Config, node: &Node) -> Result<Plan, DeError> {
    if cfg.match_once == Some(false) {
        return Err(key_err(
            node,
            &["match_once"],
            "the Collector routes each item to its first matching route only; `false` is no longer supported",
        ));
    }
    if cfg.table.is_empty() {
        return Err(key_err(node, &["table"], "at least one route is needed"));
    }
    let mut routes = Vec::new();
    for (i, r) in cfg.table.iter().enumerate() {
        let at = |k: &str, m: String| key_err(node, &["table", &format!("[{i}]"), k], m);
        let text = match (&r.condition, &r.statement) {
            (Some(c), None) => c.clone(),
            (None, Some(s)) => {
                let t = s.trim();
                let rest = t
                    .strip_prefix("route()")
                    .map(str::trim_start)
                    .and_then(|r| r.strip_prefix("where"))
                    .ok_or_else(|| {
                        at(
                            "statement",
                            format!("{t:?}: only `route() where <condition>` routes"),
                        )
                    })?;
                rest.trim().to_owned()
            }
            (Some(_), Some(_)) => {
                return Err(at(
                    "condition",
                    "give `condition` or `statement`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(at(
                    "condition",
                    "a route needs a `condition` or a `statement`".into(),
                ));
            }
        };
        if r.pipelines.is_empty() {
            return Err(at(
                "pipelines",
                "a route needs at least one pipeline".into(),
            ));
        }
        let (level, contexts): (Level, [Option<OttlContext>; 3]) =
            match r.context.as_deref().unwrap_or("resource") {
                "resource" => (Level::Resource, [Some(OttlContext::Resource); 3]),
                "span" => (Level::Item, [Some(OttlContext::Span), None, None]),
                "metric" => (Level::Item, [None, Some(OttlContext::Metric), None]),
                "log" => (Level::Item, [None, None, Some(OttlContext::Log)]),
                "request" => (Level::Request, [Some(OttlContext::Request); 3]),
                other => {
                    return Err(at(
                        "context",
                        format!("{other:?}: expected request, resource, span, metric or log"),
                    ));
                }
            };
        let key = if r.statement.is_some() {
            "statement"
        } else {
            "condition"
        };
        let mut conditions: [Option<Condition>; 3] = [None, None, None];
        for (slot, ctx) in conditions.iter_mut().zip(contexts) {
            if let Some(ctx) = ctx {
                *slot = Some(Condition::parse(&text, ctx).map_err(|e| at(key, e.to_string()))?);
            }
        }
        routes.push(CompiledRoute {
            level,
            conditions,
            text,
            pipelines: r.pipelines.clone(),
        });
    }
    Ok(Plan {
        routes,
        default_pipelines: cfg.default_pipelines.clone(),
        error_mode: cfg.error_mode.unwrap_or(ErrorMode::Propagate),
    })
}

pub fn parse(node: &Node) -> Result<Box<dyn ConnectorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
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
        let consumer_of = |names: &[String]| -> Result<Option<DynConsumer>, BuildError> {
            let mut heads = Vec::new();
            for n in names {
                let d = next.iter().find(|d| d.pipeline == *n).ok_or_else(|| {
                    BuildError::new(
                        &ctx.id,
                        format!(
                            "route to `{n}`, which is not a {from} pipeline with this connector as a receiver"
                        ),
                    )
                })?;
                heads.push(d.head.clone());
            }
            Ok((!heads.is_empty()).then(|| FanOut::build(heads)))
        };
        let mut routes = Vec::new();
        for r in &self.routes {
            // A route of another signal's item context does not apply to this signal.
            let Some(cond) = r.conditions[signal_index(from)].clone() else {
                continue;
            };
            let to = consumer_of(&r.pipelines)?
                .ok_or_else(|| BuildError::new(&ctx.id, "a route without pipelines"))?;
            routes.push((r.level, cond, r.text.clone(), to));
        }
        let dropped = super::shared::dropped(&ctx, from, "no_route");
        Ok(Arc::new(Routing {
            routes,
            default: consumer_of(&self.default_pipelines)?,
            error_mode: self.error_mode,
            id: ctx.id.to_string(),
            dropped,
        }))
    }
}

/// The splitting of one signal's batch, the same for the three: a resource goes whole to the
/// first resource-level route that takes it; otherwise, with item-level routes, each item of it
/// goes (under a copy of its resource and scope) to its first item route or the default.
macro_rules! split_signal {
    ($name:ident, $res:ident, $scopes:ident, $scope_ty:ident, $items:ident, |$outer:ident, $item:ident| $ctx:expr) => {
        fn $name(&self, batch: Vec<$res>, err: &mut Option<String>) -> Split<$res> {
            let mut out = self.split();
            let item_routes = self.routes.iter().any(|r| r.0 == Level::Item);
            for r in batch {
                let res = r.resource.as_ref().map_or(&[][..], |x| &x.attributes[..]);
                let outer = Outer {
                    resource: res,
                    resource_dropped: 0,
                    scope: None,
                };
                if let Some(i) = self.first(Level::Resource, &ResourceCtx { outer: &outer }, err) {
                    out.per_route[i].push(r);
                    continue;
                }
                if !item_routes {
                    out.default.push(r);
                    continue;
                }
                let mut parts: Vec<Option<$res>> = vec![None; self.routes.len() + 1];
                for sc in &r.$scopes {
                    let $outer = Outer {
                        resource: res,
                        resource_dropped: 0,
                        scope: sc.scope.as_ref(),
                    };
                    for $item in &sc.$items {
                        let k = self
                            .first(Level::Item, &$ctx, err)
                            .unwrap_or(self.routes.len());
                        let part = parts[k].get_or_insert_with(|| $res {
                            resource: r.resource.clone(),
                            schema_url: r.schema_url.clone(),
                            $scopes: Vec::new(),
                        });
                        match part.$scopes.last_mut() {
                            Some(last)
                                if last.scope == sc.scope && last.schema_url == sc.schema_url =>
                            {
                                last.$items.push($item.clone())
                            }
                            _ => part.$scopes.push($scope_ty {
                                scope: sc.scope.clone(),
                                schema_url: sc.schema_url.clone(),
                                $items: vec![$item.clone()],
                            }),
                        }
                    }
                }
                for (k, p) in parts.into_iter().enumerate() {
                    match (p, k < self.routes.len()) {
                        (Some(p), true) => out.per_route[k].push(p),
                        (Some(p), false) => out.default.push(p),
                        (None, _) => {}
                    }
                }
            }
            out
        }
    };
}

struct Routing {
    routes: Vec<(Level, Condition, String, DynConsumer)>,
    default: Option<DynConsumer>,
    error_mode: ErrorMode,
    id: String,
    dropped: prometheus_client::metrics::counter::Counter,
}

/// One output per route and one for the default.
struct Split<T> {
    per_route: Vec<Vec<T>>,
    default: Vec<T>,
}

impl Routing {
    /// The first route whose condition (of `level`) holds for `ctx`; `None` for the default.
    fn first(&self, level: Level, ctx: &dyn Ctx, err: &mut Option<String>) -> Option<usize> {
        for (i, (l, c, text, _)) in self.routes.iter().enumerate() {
            if *l != level {
                continue;
            }
            match c.eval(ctx) {
                Ok(true) => return Some(i),
                Ok(false) => {}
                Err(e) => {
                    if self.error_mode == ErrorMode::Propagate {
                        err.get_or_insert_with(|| format!("route {text:?}: {}", e.0));
                    }
                }
            }
        }
        None
    }

    fn split<T: Clone>(&self) -> Split<T> {
        Split {
            per_route: vec![Vec::new(); self.routes.len()],
            default: Vec::new(),
        }
    }

    split_signal!(
        traces,
        ResourceSpans,
        scope_spans,
        ScopeSpans,
        spans,
        |outer, span| SpanCtx {
            outer: &outer,
            span
        }
    );
    split_signal!(
        metrics,
        ResourceMetrics,
        scope_metrics,
        ScopeMetrics,
        metrics,
        |outer, metric| MetricCtx {
            outer: &outer,
            metric
        }
    );
    split_signal!(
        logs,
        ResourceLogs,
        scope_logs,
        ScopeLogs,
        log_records,
        |outer, log| LogCtx { outer: &outer, log }
    );

    /// Hands each part to its route; the first refusal (a retryable one first) is the answer.
    async fn deliver(&self, parts: Vec<(Option<usize>, Batch)>) -> ConsumeResult {
        let mut first: Option<ConsumeError> = None;
        for (route, batch) in parts {
            if batch.item_count() == 0 {
                continue;
            }
            let to = match route {
                Some(i) => Some(&self.routes[i].3),
                None => self.default.as_ref(),
            };
            let Some(to) = to else {
                self.dropped.inc_by(batch.item_count() as u64);
                continue;
            };
            if let Err(e) = to.consume(batch).await {
                let retryable = matches!(e, ConsumeError::Retryable { .. });
                // The parts delivered are not handed back: only the refused part's batch is.
                if first.is_none()
                    || (retryable && matches!(first, Some(ConsumeError::Permanent(_))))
                {
                    first = Some(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn parts<T>(s: Split<T>, wrap: fn(Vec<T>) -> Batch) -> Vec<(Option<usize>, Batch)> {
    let mut out: Vec<(Option<usize>, Batch)> = s
        .per_route
        .into_iter()
        .enumerate()
        .map(|(i, v)| (Some(i), wrap(v)))
        .collect();
    out.push((None, wrap(s.default)));
    out
}

impl Consumer for Routing {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let batch = super::shared::decoded(batch, &self.id)?;
            let mut err = None;
            // Request routes first: the client's metadata sends the whole batch.
            if self.routes.iter().any(|r| r.0 == Level::Request) {
                let hit = crate::client::with(|client| {
                    self.first(Level::Request, &RequestCtx { client }, &mut err)
                });
                if let Some(e) = err {
                    return Err(ConsumeError::Permanent(format!("{}: {e}", self.id)));
                }
                if let Some(i) = hit {
                    return self.deliver(vec![(Some(i), batch)]).await;
                }
            }
            let split = match batch {
                Batch::Traces(rs) => parts(self.traces(rs, &mut err), Batch::Traces),
                Batch::Metrics(rm) => parts(self.metrics(rm, &mut err), Batch::Metrics),
                Batch::Logs(rl) => parts(self.logs(rl, &mut err), Batch::Logs),
                Batch::Encoded(_) => Vec::new(),
            };
            if let Some(e) = err {
                return Err(ConsumeError::Permanent(format!("{}: {e}", self.id)));
            }
            self.deliver(split).await
        })
    }
}

impl Lifecycle for Routing {
    fn shutdown(&self, _deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    fn err(y: &str) -> (String, String) {
        let e = parse(&yaml(y).unwrap()).err().unwrap();
        (e.path_string(), e.msg)
    }

    #[test]
    fn config_errors_name_the_route() {
        assert!(parse(&yaml("table:\n- statement: route() where attributes[\"tenant\"] == \"a\"\n  pipelines: [traces/a]\n- condition: resource.attributes[\"tenant\"] == \"b\"\n  pipelines: [traces/b]\n- condition: name == \"x\"\n  context: span\n  pipelines: [traces/b]\ndefault_pipelines: [traces/d]\n").unwrap()).is_ok());
        assert_eq!(
            err("table:\n- statement: set(x, 1)\n  pipelines: [t]\n").0,
            "table[0].statement"
        );
        assert_eq!(
            err("table:\n- condition: nope ==\n  pipelines: [t]\n").0,
            "table[0].condition"
        );
        assert_eq!(
            err("table:\n- condition: request[\"a\"][\"b\"] == \"x\"\n  context: request\n  pipelines: [t]\n").0,
            "table[0].condition"
        );
        assert_eq!(
            err("table:\n- condition: 'true'\n  context: session\n  pipelines: [t]\n").0,
            "table[0].context"
        );
        assert_eq!(
            err("table:\n- condition: 'true'\n  pipelines: []\n").0,
            "table[0].pipelines"
        );
        assert_eq!(err("table: []\n").0, "table");
        assert_eq!(
            err("match_once: false\ntable:\n- condition: 'true'\n  pipelines: [t]\n").0,
            "match_once"
        );
        // The resource context reads the resource only.
        assert!(
            err("table:\n- condition: name == \"x\"\n  pipelines: [t]\n")
                .1
                .contains("name")
        );
    }

    /// `context: request` routes the whole batch by the client's metadata, before the
    /// resource routes; without a match the other routes split it as usual.
    #[tokio::test]
    async fn request_routes_send_the_whole_batch() {
        use std::sync::Mutex;
        struct Count(Mutex<usize>);
        impl Consumer for Count {
            fn consume(&self, b: Batch) -> BoxFuture<'_, ConsumeResult> {
                *self.0.lock().unwrap() += b.item_count();
                Box::pin(async { Ok(()) })
            }
        }
        let (acme, other) = (
            Arc::new(Count(Mutex::new(0))),
            Arc::new(Count(Mutex::new(0))),
        );
        let r = Routing {
            routes: vec![(
                Level::Request,
                Condition::parse(r#"request["X-Tenant"] == "acme""#, OttlContext::Request).unwrap(),
                "acme".into(),
                acme.clone(),
            )],
            default: Some(other.clone()),
            error_mode: ErrorMode::Propagate,
            id: "routing".into(),
            dropped: Default::default(),
        };
        let client = |tenant: &str| crate::client::ClientInfo {
            metadata: vec![("x-tenant".into(), tenant.into())],
            ..Default::default()
        };
        crate::client::scope(
            client("acme"),
            r.consume(crate::signal::testdata::spans("s", 1, 3)),
        )
        .await
        .unwrap();
        crate::client::scope(
            client("beta"),
            r.consume(crate::signal::testdata::spans("s", 1, 2)),
        )
        .await
        .unwrap();
        // No client at all (after a batch processor): the default.
        r.consume(crate::signal::testdata::spans("s", 1, 1))
            .await
            .unwrap();
        assert_eq!((*acme.0.lock().unwrap(), *other.0.lock().unwrap()), (3, 3));
    }

    #[test]
    fn resource_routes_first_then_each_span_to_its_own_route() {
        use crate::signal::testdata::kv;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::Span;
        struct Nothing;
        impl Consumer for Nothing {
            fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
                Box::pin(async { Ok(()) })
            }
        }
        let cond = |t: &str, c| Condition::parse(t, c).unwrap();
        let r = Routing {
            routes: vec![
                (
                    Level::Resource,
                    cond(r#"attributes["tenant"] == "a""#, OttlContext::Resource),
                    "a".into(),
                    Arc::new(Nothing),
                ),
                (
                    Level::Item,
                    cond(r#"name == "slow""#, OttlContext::Span),
                    "slow".into(),
                    Arc::new(Nothing),
                ),
            ],
            default: None,
            error_mode: ErrorMode::Propagate,
            id: "routing".into(),
            dropped: Default::default(),
        };
        let rs = |tenant: &str, names: &[&str]| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("tenant", tenant)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|n| Span {
                        name: n.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut err = None;
        let out = r.traces(
            vec![rs("a", &["slow", "x"]), rs("b", &["slow", "x", "y"])],
            &mut err,
        );
        assert!(err.is_none());
        let names = |v: &[ResourceSpans]| -> Vec<String> {
            v.iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone())
                .collect()
        };
        // Tenant a whole, by its resource; b's spans one by one.
        assert_eq!(names(&out.per_route[0]), ["slow", "x"]);
        assert_eq!(names(&out.per_route[1]), ["slow"]);
        assert_eq!(names(&out.default), ["x", "y"]);
        assert_eq!(
            crate::signal::value::find_str(
                &out.default[0].resource.as_ref().unwrap().attributes,
                "tenant"
            ),
            Some("b")
        );
    }
}
