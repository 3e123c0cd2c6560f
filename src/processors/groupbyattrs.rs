//! `groupbyattrs` processor: moves the record attributes named in `keys` up to the resource,
//! regrouping spans, log records and data points under resources that carry them (the
//! original resource's attributes plus the moved ones). Records with none of the keys stay
//! under their resource. Resources and scopes that end up equal are merged, which is also
//! what it does with no `keys` (compaction).

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, ResourceMetrics, ScopeMetrics, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use serde::Deserialize;

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The record attributes moved to the resource. Empty: only merge equal resources.
    pub keys: Vec<String>,
}

#[derive(Clone)]
pub struct GroupByAttrs {
    keys: Vec<String>,
}

pub const FACTORY: Factory = Factory::processor(
    "groupbyattrs",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
)
.aliases(&["group_by_attrs"]);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let c: Config = from_node(node)?;
    Ok(Box::new(GroupByAttrs { keys: c.keys }))
}

impl ProcessorConfig for GroupByAttrs {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        Ok(InPlace::build(
            &ctx,
            signal,
            next,
            self.clone(),
            "groupbyattrs",
        ))
    }
}

impl GroupByAttrs {
    /// Takes the grouping keys out of a record's attributes, in `keys` order.
    fn extract(&self, attrs: &mut Vec<KeyValue>) -> Vec<KeyValue> {
        let mut out = Vec::new();
        for k in &self.keys {
            if let Some(i) = attrs.iter().position(|kv| kv.key == *k) {
                out.push(attrs.remove(i));
            }
        }
        out
    }
}

/// The resource a record moves to: `base` with `moved` set over it.
fn with_moved(base: &Option<Resource>, moved: Vec<KeyValue>) -> Option<Resource> {
    if moved.is_empty() {
        return base.clone();
    }
    let mut r = base.clone().unwrap_or_default();
    for kv in moved {
        match r.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(a) => *a = kv,
            None => r.attributes.push(kv),
        }
    }
    Some(r)
}

/// Identity of a resource or scope for merging: its encoding.
fn ident<M: Message>(m: &Option<M>) -> Vec<u8> {
    m.as_ref().map_or_else(Vec::new, Message::encode_to_vec)
}

/// One output resource: its identity, the resource, its schema URL and its scopes (each with
/// its identity).
type ResourceGroup<S> = (Vec<u8>, Option<Resource>, String, Vec<(Vec<u8>, S)>);

/// Output groups in first-seen order: (resource identity, schema) → scopes.
struct Groups<S> {
    resources: Vec<ResourceGroup<S>>,
    /// (resource identity, schema URL) → position in `resources`: linear in the records.
    index: std::collections::HashMap<(Vec<u8>, String), usize>,
    /// Where the current input scope's records with no key to move go: found once per scope,
    /// not encoded again for each record.
    unmoved: Option<(usize, usize)>,
}

impl<S> Groups<S> {
    fn new() -> Self {
        Groups {
            resources: Vec::new(),
            index: std::collections::HashMap::new(),
            unmoved: None,
        }
    }

    /// Starts an input scope.
    fn begin(&mut self) {
        self.unmoved = None;
    }

    /// The scope group a record of `base` goes to with the attributes `moved` out of it.
    fn place(
        &mut self,
        base: &Option<Resource>,
        moved: Vec<KeyValue>,
        schema: &str,
        scope: &Option<InstrumentationScope>,
        make: impl FnOnce() -> S,
    ) -> &mut S {
        let (ri, si) = if moved.is_empty() {
            match self.unmoved {
                Some(at) => at,
                None => {
                    let at = self.find(base.clone(), schema, scope, make);
                    self.unmoved = Some(at);
                    at
                }
            }
        } else {
            self.find(with_moved(base, moved), schema, scope, make)
        };
        &mut self.resources[ri].3[si].1
    }

    /// The position of the scope group for `(resource, scope)`, created by `make` when new.
    fn find(
        &mut self,
        resource: Option<Resource>,
        schema: &str,
        scope: &Option<InstrumentationScope>,
        make: impl FnOnce() -> S,
    ) -> (usize, usize) {
        let key = (ident(&resource), schema.to_string());
        let ri = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                let i = self.resources.len();
                self.resources
                    .push((key.0.clone(), resource, schema.to_string(), Vec::new()));
                self.index.insert(key, i);
                i
            }
        };
        let sid = ident(scope);
        let scopes = &mut self.resources[ri].3;
        let si = match scopes.iter().position(|(id, _)| *id == sid) {
            Some(i) => i,
            None => {
                scopes.push((sid, make()));
                scopes.len() - 1
            }
        };
        (ri, si)
    }
}

impl Transform for GroupByAttrs {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        match batch {
            Batch::Traces(rs) => {
                let mut g: Groups<ScopeSpans> = Groups::new();
                for r in std::mem::take(rs) {
                    for ss in r.scope_spans {
                        g.begin();
                        for mut span in ss.spans {
                            let moved = self.extract(&mut span.attributes);
                            g.place(&r.resource, moved, &r.schema_url, &ss.scope, || {
                                ScopeSpans {
                                    scope: ss.scope.clone(),
                                    schema_url: ss.schema_url.clone(),
                                    spans: Vec::new(),
                                }
                            })
                            .spans
                            .push(span);
                        }
                    }
                }
                *rs = g
                    .resources
                    .into_iter()
                    .map(|(_, resource, schema_url, scopes)| ResourceSpans {
                        resource,
                        schema_url,
                        scope_spans: scopes.into_iter().map(|(_, s)| s).collect(),
                    })
                    .collect();
            }
            Batch::Logs(rl) => {
                let mut g: Groups<ScopeLogs> = Groups::new();
                for r in std::mem::take(rl) {
                    for sl in r.scope_logs {
                        g.begin();
                        for mut log in sl.log_records {
                            let moved = self.extract(&mut log.attributes);
                            g.place(&r.resource, moved, &r.schema_url, &sl.scope, || ScopeLogs {
                                scope: sl.scope.clone(),
                                schema_url: sl.schema_url.clone(),
                                log_records: Vec::new(),
                            })
                            .log_records
                            .push(log);
                        }
                    }
                }
                *rl = g
                    .resources
                    .into_iter()
                    .map(|(_, resource, schema_url, scopes)| ResourceLogs {
                        resource,
                        schema_url,
                        scope_logs: scopes.into_iter().map(|(_, s)| s).collect(),
                    })
                    .collect();
            }
            Batch::Metrics(rm) => {
                let mut g: Groups<ScopeMetrics> = Groups::new();
                for r in std::mem::take(rm) {
                    let ResourceMetrics {
                        resource,
                        scope_metrics,
                        schema_url,
                    } = r;
                    for sm in scope_metrics {
                        let origin = Origin {
                            resource: &resource,
                            schema_url: &schema_url,
                            scope: sm.scope,
                            scope_schema_url: sm.schema_url,
                        };
                        g.begin();
                        for m in sm.metrics {
                            self.metric(&mut g, &origin, m);
                        }
                    }
                }
                *rm = g
                    .resources
                    .into_iter()
                    .map(|(_, resource, schema_url, scopes)| ResourceMetrics {
                        resource,
                        schema_url,
                        scope_metrics: scopes.into_iter().map(|(_, s)| s).collect(),
                    })
                    .collect();
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where a metric came from: its resource and scope.
struct Origin<'a> {
    resource: &'a Option<Resource>,
    schema_url: &'a str,
    scope: Option<InstrumentationScope>,
    scope_schema_url: String,
}

impl GroupByAttrs {
    /// A metric's points, each to the resource its moved attributes make; the metric (name,
    /// description, unit, type, temporality) is recreated there, once per resource and scope.
    fn metric(&self, g: &mut Groups<ScopeMetrics>, o: &Origin<'_>, mut m: Metric) {
        use opentelemetry_proto::tonic::metrics::v1::{
            ExponentialHistogram, Gauge, Histogram, Sum, Summary,
        };
        let Some(data) = m.data.take() else {
            return;
        };
        let shell = Metric { data: None, ..m };
        macro_rules! regroup {
            ($points:expr, $variant:ident, $empty:expr) => {
                for mut p in $points {
                    let moved = self.extract(&mut p.attributes);
                    let scope =
                        g.place(o.resource, moved, o.schema_url, &o.scope, || ScopeMetrics {
                            scope: o.scope.clone(),
                            schema_url: o.scope_schema_url.clone(),
                            metrics: Vec::new(),
                        });
                    // Same name and type under this scope: one metric.
                    let i = match scope.metrics.iter().position(|x| {
                        x.name == shell.name && matches!(x.data, Some(Data::$variant(_)))
                    }) {
                        Some(i) => i,
                        None => {
                            scope.metrics.push(Metric {
                                data: Some($empty),
                                ..shell.clone()
                            });
                            scope.metrics.len() - 1
                        }
                    };
                    if let Some(Data::$variant(x)) = &mut scope.metrics[i].data {
                        x.data_points.push(p);
                    }
                }
            };
        }
        match data {
            Data::Gauge(x) => regroup!(x.data_points, Gauge, Data::Gauge(Gauge::default())),
            Data::Sum(x) => {
                let empty = Sum {
                    data_points: Vec::new(),
                    ..x
                };
                regroup!(x.data_points, Sum, Data::Sum(empty.clone()))
            }
            Data::Histogram(x) => {
                let t = x.aggregation_temporality;
                regroup!(
                    x.data_points,
                    Histogram,
                    Data::Histogram(Histogram {
                        data_points: Vec::new(),
                        aggregation_temporality: t,
                    })
                )
            }
            Data::ExponentialHistogram(x) => {
                let t = x.aggregation_temporality;
                regroup!(
                    x.data_points,
                    ExponentialHistogram,
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: Vec::new(),
                        aggregation_temporality: t,
                    })
                )
            }
            Data::Summary(x) => regroup!(x.data_points, Summary, Data::Summary(Summary::default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::testdata::{kv, resource, service_of};
    use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, Sum};

    fn g(keys: &[&str]) -> GroupByAttrs {
        GroupByAttrs {
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn attr<'a>(r: &'a Option<Resource>, k: &str) -> Option<&'a str> {
        r.as_ref()
            .and_then(|r| crate::signal::value::find_str(&r.attributes, k))
    }

    #[test]
    fn spans_move_to_resources_of_their_keys() {
        let mut b = crate::signal::testdata::spans("svc", 2, 3);
        if let Batch::Traces(rs) = &mut b {
            for (i, s) in rs[0]
                .scope_spans
                .iter_mut()
                .flat_map(|ss| &mut ss.spans)
                .enumerate()
            {
                if i % 3 != 2 {
                    s.attributes
                        .push(kv("host.name", if i % 2 == 0 { "a" } else { "b" }));
                }
                s.attributes.push(kv("keep", "x"));
            }
        }
        g(&["host.name"]).apply(&mut b).unwrap();
        let Batch::Traces(rs) = &b else {
            unreachable!()
        };
        // Spans 0..6: hosts a, b, -, b, a, - → resources a, b and the original.
        let hosts: Vec<Option<&str>> = rs.iter().map(|r| attr(&r.resource, "host.name")).collect();
        assert_eq!(hosts, [Some("a"), Some("b"), None]);
        assert!(rs.iter().all(|r| service_of(&r.resource) == "svc"));
        let count = |r: &ResourceSpans| r.scope_spans.iter().map(|s| s.spans.len()).sum::<usize>();
        assert_eq!(rs.iter().map(count).collect::<Vec<_>>(), [2, 2, 2]);
        // Scopes stay apart within a resource; the key left the spans, the others stayed.
        assert_eq!(rs[0].scope_spans.len(), 2);
        for s in rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            assert!(s.attributes.iter().all(|kv| kv.key != "host.name"));
            assert!(s.attributes.iter().any(|kv| kv.key == "keep"));
        }
    }

    #[test]
    fn no_keys_merges_equal_resources() {
        let mut logs = crate::signal::testdata::logs(2);
        let Batch::Logs(rl) = &mut logs else {
            unreachable!()
        };
        let copy = rl[0].clone();
        rl.push(copy);
        g(&[]).apply(&mut logs).unwrap();
        let Batch::Logs(rl) = &logs else {
            unreachable!()
        };
        assert_eq!(rl.len(), 1);
        assert_eq!(rl[0].scope_logs.len(), 1);
        assert_eq!(rl[0].scope_logs[0].log_records.len(), 4);
    }

    #[test]
    fn data_points_regroup_with_their_metric() {
        let point = |v: i64, host: &str| NumberDataPoint {
            value: Some(
                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v),
            ),
            attributes: vec![kv("host.name", host), kv("cpu", "0")],
            ..Default::default()
        };
        let mut b = Batch::Metrics(vec![ResourceMetrics {
            resource: resource("m"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "cpu.time".into(),
                    unit: "s".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![point(1, "a"), point(2, "b"), point(3, "a")],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        g(&["host.name"]).apply(&mut b).unwrap();
        let Batch::Metrics(rm) = &b else {
            unreachable!()
        };
        assert_eq!(rm.len(), 2);
        for (r, want) in rm.iter().zip([("a", 2), ("b", 1)]) {
            assert_eq!(attr(&r.resource, "host.name"), Some(want.0));
            let m = &r.scope_metrics[0].metrics[0];
            assert_eq!((m.name.as_str(), m.unit.as_str()), ("cpu.time", "s"));
            let Some(Data::Sum(s)) = &m.data else {
                panic!()
            };
            assert!(s.is_monotonic && s.aggregation_temporality == 2);
            assert_eq!(s.data_points.len(), want.1);
            assert!(s.data_points.iter().all(|p| p.attributes.len() == 1));
        }
    }
}
