//! `metricstransform` processor: renames metrics and labels, adds and deletes labels and
//! label values, toggles int/double, scales values and aggregates points across labels or
//! label values, per metric selected by name (`include`, `match_type: strict|regexp`,
//! `experimental_match_labels`). `action: update` edits the metric in place, `insert` edits a
//! copy added beside it, `combine` merges the metrics a regexp matches into one named
//! `new_name` with the regexp's submatches as labels, `group` moves them into a resource of
//! their own with `group_resource_labels`. As in the Collector, it works within one batch.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point::Value as Num,
};
use serde::Deserialize;

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::signal::aggregate::{Agg, agg_of, aggregate, rename_value, scale};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub transforms: Vec<TransformConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// The metric name, or a regexp with `match_type: regexp`.
    pub include: Option<String>,
    /// The older name of `include`.
    pub metric_name: Option<String>,
    /// `strict` (default) or `regexp`.
    pub match_type: Option<String>,
    /// Label name → value regexp: only points matching all are transformed.
    pub experimental_match_labels: std::collections::BTreeMap<String, String>,
    /// `update`, `insert`, `combine` or `group`.
    pub action: String,
    /// The new metric name; required for `insert` and `combine`. With `regexp`, `$1` and
    /// `${name}` refer to the submatches.
    pub new_name: Option<String>,
    /// `combine`: how the points of the combined metrics that end up with equal labels merge.
    pub aggregation_type: Option<String>,
    /// `combine`: case of the submatch label values, `lower` or `upper`.
    pub submatch_case: Option<String>,
    /// `group`: the new resource's attributes.
    pub group_resource_labels: std::collections::BTreeMap<String, String>,
    pub operations: Vec<OperationConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationConfig {
    /// `add_label`, `update_label`, `delete_label_value`, `toggle_scalar_data_type`,
    /// `experimental_scale_value`, `aggregate_labels` or `aggregate_label_values`.
    pub action: String,
    pub label: Option<String>,
    pub new_label: Option<String>,
    pub label_value: Option<String>,
    pub new_value: Option<String>,
    pub value_actions: Vec<ValueAction>,
    pub experimental_scale: Option<f64>,
    pub label_set: Vec<String>,
    pub aggregation_type: Option<String>,
    pub aggregated_values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueAction {
    pub value: String,
    pub new_value: String,
}

#[derive(Debug, Clone)]
enum Matcher {
    Strict(String),
    Regexp(regex::Regex),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Update,
    Insert,
    Combine,
    Group,
}

#[derive(Debug, Clone)]
enum Op {
    AddLabel(String, String),
    UpdateLabel {
        label: String,
        new_label: Option<String>,
        values: Vec<(String, String)>,
    },
    DeleteLabelValue(String, String),
    ToggleScalar,
    Scale(f64),
    AggregateLabels(Vec<String>, Agg),
    AggregateLabelValues {
        label: String,
        values: Vec<String>,
        new_value: String,
        agg: Agg,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: Matcher,
    labels: Vec<(String, regex::Regex)>,
    action: Action,
    new_name: Option<String>,
    agg: Agg,
    upper: Option<bool>,
    group_labels: Vec<(String, String)>,
    ops: Vec<Op>,
}

#[derive(Clone)]
pub struct MetricsTransform {
    rules: Vec<Rule>,
}

pub const FACTORY: Factory = Factory::processor(
    "metricstransform",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
)
.aliases(&["metrics_transform"]);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    compile(node).map(|t| Box::new(t) as Box<dyn ProcessorConfig>)
}

fn agg_named(name: &str) -> Option<Agg> {
    match name {
        "mean" | "average" => Some(Agg::Avg),
        other => agg_of(other),
    }
}

fn compile(node: &Node) -> Result<MetricsTransform, DeError> {
    let cfg: Config = from_node(node)?;
    let mut rules = Vec::new();
    for (i, t) in cfg.transforms.iter().enumerate() {
        let idx = format!("[{i}]");
        let err = |key: &str, msg: String| key_err(node, &["transforms", &idx, key], msg);
        let name = t
            .include
            .clone()
            .or_else(|| t.metric_name.clone())
            .ok_or_else(|| err("include", "`include` (the metric name) is required".into()))?;
        let matcher = match t.match_type.as_deref().unwrap_or("strict") {
            "strict" => Matcher::Strict(name),
            "regexp" => Matcher::Regexp(
                regex::Regex::new(&format!("^(?:{name})$"))
                    .map_err(|e| err("include", format!("invalid regexp: {e}")))?,
            ),
            other => {
                return Err(err(
                    "match_type",
                    format!("expected strict or regexp, not {other:?}"),
                ));
            }
        };
        let action = match t.action.as_str() {
            "update" => Action::Update,
            "insert" => Action::Insert,
            "combine" => Action::Combine,
            "group" => Action::Group,
            other => {
                return Err(err(
                    "action",
                    format!("expected update, insert, combine or group, not {other:?}"),
                ));
            }
        };
        if matches!(action, Action::Insert | Action::Combine) && t.new_name.is_none() {
            return Err(err(
                "new_name",
                format!("`new_name` is required for `{}`", t.action),
            ));
        }
        if action == Action::Combine && !matches!(matcher, Matcher::Regexp(_)) {
            return Err(err(
                "match_type",
                "`combine` needs `match_type: regexp`".into(),
            ));
        }
        if action == Action::Group && t.group_resource_labels.is_empty() {
            return Err(err(
                "group_resource_labels",
                "`group` needs `group_resource_labels`".into(),
            ));
        }
        let agg = match &t.aggregation_type {
            None => Agg::Sum,
            Some(a) => agg_named(a).ok_or_else(|| {
                err(
                    "aggregation_type",
                    format!("unknown aggregation_type {a:?}"),
                )
            })?,
        };
        let upper = match t.submatch_case.as_deref() {
            None | Some("") => None,
            Some("lower") => Some(false),
            Some("upper") => Some(true),
            Some(other) => {
                return Err(err(
                    "submatch_case",
                    format!("expected lower or upper, not {other:?}"),
                ));
            }
        };
        let labels = t
            .experimental_match_labels
            .iter()
            .map(|(k, v)| {
                regex::Regex::new(&format!("^(?:{v})$"))
                    .map(|re| (k.clone(), re))
                    .map_err(|e| {
                        err(
                            "experimental_match_labels",
                            format!("{k}: invalid regexp: {e}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut ops = Vec::new();
        for (j, o) in t.operations.iter().enumerate() {
            let jdx = format!("[{j}]");
            let oerr = |key: &str, msg: String| {
                key_err(node, &["transforms", &idx, "operations", &jdx, key], msg)
            };
            let need = |v: &Option<String>, key: &str| {
                v.clone()
                    .ok_or_else(|| oerr(key, format!("`{key}` is required for `{}`", o.action)))
            };
            let op_agg = || match &o.aggregation_type {
                Some(a) => agg_named(a).ok_or_else(|| {
                    oerr(
                        "aggregation_type",
                        format!("unknown aggregation_type {a:?}"),
                    )
                }),
                None => Err(oerr(
                    "aggregation_type",
                    format!("`aggregation_type` is required for `{}`", o.action),
                )),
            };
            ops.push(match o.action.as_str() {
                "add_label" => Op::AddLabel(need(&o.new_label, "new_label")?, need(&o.new_value, "new_value")?),
                "update_label" => Op::UpdateLabel {
                    label: need(&o.label, "label")?,
                    new_label: o.new_label.clone(),
                    values: o.value_actions.iter().map(|v| (v.value.clone(), v.new_value.clone())).collect(),
                },
                "delete_label_value" => Op::DeleteLabelValue(need(&o.label, "label")?, need(&o.label_value, "label_value")?),
                "toggle_scalar_data_type" => Op::ToggleScalar,
                "experimental_scale_value" => Op::Scale(
                    o.experimental_scale
                        .ok_or_else(|| oerr("experimental_scale", "`experimental_scale` is required".into()))?,
                ),
                "aggregate_labels" => Op::AggregateLabels(o.label_set.clone(), op_agg()?),
                "aggregate_label_values" => Op::AggregateLabelValues {
                    label: need(&o.label, "label")?,
                    values: o.aggregated_values.clone(),
                    new_value: need(&o.new_value, "new_value")?,
                    agg: op_agg()?,
                },
                other => {
                    return Err(oerr(
                        "action",
                        format!("unknown operation {other:?}: expected add_label, update_label, delete_label_value, toggle_scalar_data_type, experimental_scale_value, aggregate_labels or aggregate_label_values"),
                    ));
                }
            });
        }
        rules.push(Rule {
            matcher,
            labels,
            action,
            new_name: t.new_name.clone(),
            agg,
            upper,
            group_labels: t
                .group_resource_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ops,
        });
    }
    Ok(MetricsTransform { rules })
}

impl ProcessorConfig for MetricsTransform {
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
            "metricstransform",
        ))
    }
}

fn string_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// Runs `f` on every point's attributes.
fn each_attrs(m: &mut Metric, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        None => {}
    }
}

/// Keeps the points whose attributes pass `keep`.
fn retain_points(m: &mut Metric, keep: impl Fn(&[KeyValue]) -> bool) {
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.retain(|p| keep(&p.attributes)),
        Some(Data::Sum(s)) => s.data_points.retain(|p| keep(&p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.retain(|p| keep(&p.attributes)),
        Some(Data::ExponentialHistogram(h)) => h.data_points.retain(|p| keep(&p.attributes)),
        Some(Data::Summary(s)) => s.data_points.retain(|p| keep(&p.attributes)),
        None => {}
    }
}

fn str_attr<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a str> {
    crate::signal::value::find_str(attrs, k)
}

impl Rule {
    fn point_matches(&self, attrs: &[KeyValue]) -> bool {
        self.labels
            .iter()
            .all(|(k, re)| str_attr(attrs, k).is_some_and(|v| re.is_match(v)))
    }

    fn name_matches(&self, name: &str) -> bool {
        match &self.matcher {
            Matcher::Strict(n) => n == name,
            Matcher::Regexp(re) => re.is_match(name),
        }
    }

    fn new_name(&self, old: &str) -> Option<String> {
        let n = self.new_name.as_ref()?;
        match &self.matcher {
            Matcher::Regexp(re) => re.captures(old).map(|c| {
                let mut out = String::new();
                c.expand(n, &mut out);
                out
            }),
            Matcher::Strict(_) => Some(n.clone()),
        }
    }

    fn apply_ops(&self, m: &mut Metric) -> Result<(), String> {
        for op in &self.ops {
            match op {
                Op::AddLabel(k, v) => each_attrs(m, |a| {
                    if !a.iter().any(|kv| kv.key == *k) {
                        a.push(string_kv(k, v));
                    }
                }),
                Op::UpdateLabel {
                    label,
                    new_label,
                    values,
                } => {
                    each_attrs(m, |a| {
                        // A rename onto a label that exists would collide: left as is.
                        let clash = new_label
                            .as_ref()
                            .is_some_and(|n| a.iter().any(|kv| kv.key == *n));
                        for kv in a.iter_mut().filter(|kv| kv.key == *label) {
                            if let Some(any_value::Value::StringValue(s)) =
                                kv.value.as_mut().and_then(|v| v.value.as_mut())
                                && let Some((_, to)) = values.iter().find(|(from, _)| from == s)
                            {
                                *s = to.clone();
                            }
                            if let Some(n) = new_label
                                && !clash
                            {
                                kv.key = n.clone();
                            }
                        }
                    });
                }
                Op::DeleteLabelValue(k, v) => {
                    retain_points(m, |a| str_attr(a, k) != Some(v.as_str()))
                }
                Op::ToggleScalar => {
                    let toggle =
                        |p: &mut opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
                            p.value = match p.value {
                                Some(Num::AsInt(i)) => Some(Num::AsDouble(i as f64)),
                                Some(Num::AsDouble(d)) => Some(Num::AsInt(d as i64)),
                                None => None,
                            }
                        };
                    match &mut m.data {
                        Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(toggle),
                        Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(toggle),
                        _ => {}
                    }
                }
                Op::Scale(f) => scale(m, *f),
                Op::AggregateLabels(keep, agg) => aggregate(m, *agg, Some(keep))?,
                Op::AggregateLabelValues {
                    label,
                    values,
                    new_value,
                    agg,
                } => {
                    rename_value(m, label, values, new_value);
                    aggregate(m, *agg, None)?;
                }
            }
        }
        Ok(())
    }
}

/// The metric split in two: the points passing `keep`, and the rest left in `m`.
fn take_points(m: &mut Metric, keep: impl Fn(&[KeyValue]) -> bool) -> Metric {
    let mut taken = m.clone();
    retain_points(&mut taken, &keep);
    retain_points(m, |a| !keep(a));
    taken
}

fn point_count(m: &Metric) -> usize {
    m.data.as_ref().map_or(0, crate::signal::data_point_count)
}

impl MetricsTransform {
    fn scope(
        &self,
        sm: &mut ScopeMetrics,
        grouped: &mut Vec<(Vec<(String, String)>, Metric)>,
    ) -> Result<(), String> {
        for rule in &self.rules {
            match rule.action {
                Action::Update | Action::Insert => {
                    let mut added = Vec::new();
                    for m in sm.metrics.iter_mut() {
                        if !rule.name_matches(&m.name) {
                            continue;
                        }
                        let new_name = rule.new_name(&m.name);
                        let mut target = if rule.action == Action::Insert || !rule.labels.is_empty()
                        {
                            if rule.labels.is_empty() {
                                m.clone()
                            } else if rule.action == Action::Insert {
                                let mut copy = m.clone();
                                retain_points(&mut copy, |a| rule.point_matches(a));
                                copy
                            } else {
                                take_points(m, |a| rule.point_matches(a))
                            }
                        } else {
                            rule.apply_ops(m)?;
                            if let Some(n) = new_name {
                                m.name = n;
                            }
                            continue;
                        };
                        if point_count(&target) == 0 {
                            continue;
                        }
                        rule.apply_ops(&mut target)?;
                        if let Some(n) = new_name {
                            target.name = n;
                        }
                        added.push(target);
                    }
                    sm.metrics
                        .retain(|m| m.data.is_none() || point_count(m) > 0);
                    sm.metrics.extend(added);
                }
                Action::Combine => {
                    let Matcher::Regexp(re) = &rule.matcher else {
                        continue;
                    };
                    let new_name = rule.new_name.clone().unwrap_or_default();
                    let mut combined: Option<Metric> = None;
                    let mut rest = Vec::with_capacity(sm.metrics.len());
                    for mut m in std::mem::take(&mut sm.metrics) {
                        let Some(caps) = re.captures(&m.name) else {
                            rest.push(m);
                            continue;
                        };
                        // The submatches become labels, named by group (or by position).
                        let mut labels = Vec::new();
                        for (i, name) in re.capture_names().enumerate().skip(1) {
                            let Some(v) = caps.get(i) else { continue };
                            let key = name.map_or_else(|| i.to_string(), str::to_string);
                            let v = match rule.upper {
                                Some(true) => v.as_str().to_uppercase(),
                                Some(false) => v.as_str().to_lowercase(),
                                None => v.as_str().to_string(),
                            };
                            labels.push(string_kv(&key, &v));
                        }
                        retain_points(&mut m, |a| rule.point_matches(a));
                        each_attrs(&mut m, |a| {
                            for l in &labels {
                                a.retain(|kv| kv.key != l.key);
                                a.push(l.clone());
                            }
                        });
                        match &mut combined {
                            None => {
                                m.name = new_name.clone();
                                combined = Some(m);
                            }
                            Some(c) => {
                                if std::mem::discriminant(&c.data)
                                    != std::mem::discriminant(&m.data)
                                {
                                    return Err(format!(
                                        "combine into {new_name}: metrics of different types"
                                    ));
                                }
                                merge_points(c, m);
                            }
                        }
                    }
                    sm.metrics = rest;
                    if let Some(mut c) = combined {
                        rule.apply_ops(&mut c)?;
                        aggregate(&mut c, rule.agg, None)?;
                        sm.metrics.push(c);
                    }
                }
                Action::Group => {
                    let mut rest = Vec::with_capacity(sm.metrics.len());
                    for m in std::mem::take(&mut sm.metrics) {
                        if rule.name_matches(&m.name) {
                            let mut m = m;
                            rule.apply_ops(&mut m)?;
                            if let Some(n) = rule.new_name(&m.name) {
                                m.name = n;
                            }
                            grouped.push((rule.group_labels.clone(), m));
                        } else {
                            rest.push(m);
                        }
                    }
                    sm.metrics = rest;
                }
            }
        }
        Ok(())
    }
}

fn merge_points(into: &mut Metric, from: Metric) {
    match (&mut into.data, from.data) {
        (Some(Data::Gauge(a)), Some(Data::Gauge(b))) => a.data_points.extend(b.data_points),
        (Some(Data::Sum(a)), Some(Data::Sum(b))) => a.data_points.extend(b.data_points),
        (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => a.data_points.extend(b.data_points),
        (Some(Data::ExponentialHistogram(a)), Some(Data::ExponentialHistogram(b))) => {
            a.data_points.extend(b.data_points)
        }
        (Some(Data::Summary(a)), Some(Data::Summary(b))) => a.data_points.extend(b.data_points),
        _ => {}
    }
}

impl Transform for MetricsTransform {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let Batch::Metrics(rm) = batch else {
            return Ok(());
        };
        let mut new_resources: Vec<ResourceMetrics> = Vec::new();
        for r in rm.iter_mut() {
            for sm in &mut r.scope_metrics {
                let mut grouped = Vec::new();
                self.scope(sm, &mut grouped)?;
                for (labels, m) in grouped {
                    // A resource of the group's labels over the original's.
                    let mut resource = r.resource.clone().unwrap_or_default();
                    for (k, v) in &labels {
                        resource.attributes.retain(|kv| kv.key != *k);
                        resource.attributes.push(string_kv(k, v));
                    }
                    let target = match new_resources
                        .iter_mut()
                        .find(|x| x.resource.as_ref() == Some(&resource))
                    {
                        Some(t) => t,
                        None => {
                            new_resources.push(ResourceMetrics {
                                resource: Some(resource),
                                schema_url: r.schema_url.clone(),
                                ..Default::default()
                            });
                            new_resources.last_mut().expect("just pushed")
                        }
                    };
                    match target
                        .scope_metrics
                        .iter_mut()
                        .find(|s| s.scope == sm.scope)
                    {
                        Some(s) => s.metrics.push(m),
                        None => target.scope_metrics.push(ScopeMetrics {
                            scope: sm.scope.clone(),
                            metrics: vec![m],
                            schema_url: sm.schema_url.clone(),
                        }),
                    }
                }
            }
        }
        rm.extend(new_resources);
        super::prune(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata::{kv, resource};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, Sum};

    fn mt(text: &str) -> Result<MetricsTransform, DeError> {
        compile(&yaml(text).unwrap())
    }

    fn point(v: i64, labels: &[(&str, &str)]) -> NumberDataPoint {
        NumberDataPoint {
            value: Some(Num::AsInt(v)),
            attributes: labels.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }
    }

    fn sum(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn run(cfg: &str, metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
        let t = mt(cfg).unwrap_or_else(|e| panic!("{cfg}: {e:?}"));
        let mut b = Batch::Metrics(vec![ResourceMetrics {
            resource: resource("host"),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }]);
        t.apply(&mut b).unwrap();
        let Batch::Metrics(rm) = b else {
            unreachable!()
        };
        rm
    }

    /// (name, [(labels, value)]) per metric of the first scope.
    /// A point as (sorted labels, value).
    type PointShape = (Vec<(String, String)>, f64);

    fn shape(rm: &[ResourceMetrics]) -> Vec<(String, Vec<PointShape>)> {
        rm[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| {
                let points = match &m.data {
                    Some(Data::Sum(s)) => &s.data_points,
                    Some(Data::Gauge(g)) => &g.data_points,
                    _ => panic!("numbers only here"),
                };
                let mut pts: Vec<_> = points
                    .iter()
                    .map(|p| {
                        let mut l: Vec<(String, String)> = p
                            .attributes
                            .iter()
                            .map(|a| {
                                (
                                    a.key.clone(),
                                    crate::signal::value::text(a.value.as_ref().unwrap())
                                        .into_owned(),
                                )
                            })
                            .collect();
                        l.sort();
                        (l, crate::signal::aggregate::number(p))
                    })
                    .collect();
                pts.sort_by(|a, b| a.0.cmp(&b.0));
                (m.name.clone(), pts)
            })
            .collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cpu() -> Metric {
        sum(
            "system.cpu.time",
            vec![
                point(10, &[("cpu", "0"), ("state", "user")]),
                point(20, &[("cpu", "1"), ("state", "user")]),
                point(5, &[("cpu", "0"), ("state", "idle")]),
                point(7, &[("cpu", "1"), ("state", "idle")]),
            ],
        )
    }

    #[test]
    fn aggregate_labels_as_the_newrelic_config_does() {
        let rm = run(
            "transforms:\n  - include: system.cpu.time\n    action: update\n    operations:\n      - {action: aggregate_labels, label_set: [state], aggregation_type: sum}\n",
            vec![cpu()],
        );
        assert_eq!(
            shape(&rm),
            vec![(
                "system.cpu.time".into(),
                vec![
                    (l(&[("state", "idle")]), 12.0),
                    (l(&[("state", "user")]), 30.0)
                ]
            )]
        );
        let rm = run(
            "transforms:\n  - include: system.cpu.time\n    action: update\n    operations:\n      - {action: aggregate_labels, label_set: [state], aggregation_type: mean}\n",
            vec![cpu()],
        );
        assert_eq!(shape(&rm)[0].1[1], (l(&[("state", "user")]), 15.0));
    }

    #[test]
    fn rename_insert_and_label_operations() {
        let rm = run(
            r#"
transforms:
  - include: system.cpu.time
    action: insert
    new_name: system.cpu.time.copy
    operations:
      - {action: update_label, label: cpu, new_label: core, value_actions: [{value: "0", new_value: zero}]}
      - {action: add_label, new_label: host, new_value: h1}
      - {action: delete_label_value, label: state, label_value: idle}
      - {action: experimental_scale_value, experimental_scale: 2}
  - include: ^system\.cpu\.(.*)$
    match_type: regexp
    action: update
    new_name: cpu.${1}
"#,
            vec![cpu()],
        );
        let s = shape(&rm);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].0, "cpu.time",
            "the original, renamed by the regexp rule"
        );
        assert_eq!(s[0].1.len(), 4);
        assert_eq!(
            s[1].0, "cpu.time.copy",
            "the copy matched the second rule too"
        );
        assert_eq!(
            s[1].1,
            vec![
                (l(&[("core", "1"), ("host", "h1"), ("state", "user")]), 40.0),
                (
                    l(&[("core", "zero"), ("host", "h1"), ("state", "user")]),
                    20.0
                ),
            ]
        );
    }

    #[test]
    fn aggregate_label_values_toggle_and_match_labels() {
        let rm = run(
            "transforms:\n  - include: system.cpu.time\n    action: update\n    operations:\n      - {action: aggregate_label_values, label: cpu, aggregated_values: ['0', '1'], new_value: all, aggregation_type: max}\n      - {action: toggle_scalar_data_type}\n",
            vec![cpu()],
        );
        let m = &rm[0].scope_metrics[0].metrics[0];
        let Some(Data::Sum(s)) = &m.data else {
            panic!()
        };
        assert_eq!(s.data_points.len(), 2);
        assert!(
            s.data_points
                .iter()
                .all(|p| matches!(p.value, Some(Num::AsDouble(_))))
        );
        assert_eq!(
            shape(&rm)[0].1,
            vec![
                (l(&[("cpu", "all"), ("state", "idle")]), 7.0),
                (l(&[("cpu", "all"), ("state", "user")]), 20.0)
            ]
        );
        // Only the points matching the labels are moved into the renamed metric.
        let rm = run(
            "transforms:\n  - include: system.cpu.time\n    action: update\n    new_name: cpu.user\n    experimental_match_labels: {state: user}\n",
            vec![cpu()],
        );
        let s = shape(&rm);
        assert_eq!(
            s.iter()
                .map(|m| (m.0.as_str(), m.1.len()))
                .collect::<Vec<_>>(),
            [("system.cpu.time", 2), ("cpu.user", 2)]
        );
    }

    #[test]
    fn combine_and_group() {
        let g = |name: &str, v: i64| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![point(v, &[])],
            })),
            ..Default::default()
        };
        let rm = run(
            "transforms:\n  - include: ^mem\\.(?P<state>.*)$\n    match_type: regexp\n    action: combine\n    new_name: mem.usage\n    submatch_case: upper\n",
            vec![g("mem.used", 3), g("mem.free", 4), g("other", 1)],
        );
        assert_eq!(
            shape(&rm),
            vec![
                ("other".into(), vec![(vec![], 1.0)]),
                (
                    "mem.usage".into(),
                    vec![
                        (l(&[("state", "FREE")]), 4.0),
                        (l(&[("state", "USED")]), 3.0)
                    ]
                ),
            ]
        );
        let rm = run(
            "transforms:\n  - include: other\n    action: group\n    group_resource_labels: {team: infra}\n",
            vec![g("mem.used", 3), g("other", 1)],
        );
        assert_eq!(rm.len(), 2);
        assert_eq!(rm[0].scope_metrics[0].metrics[0].name, "mem.used");
        let moved = &rm[1];
        assert_eq!(moved.scope_metrics[0].metrics[0].name, "other");
        let attrs = &moved.resource.as_ref().unwrap().attributes;
        assert_eq!(str_attr(attrs, "team"), Some("infra"));
        assert_eq!(str_attr(attrs, "service.name"), Some("host"));
    }

    #[test]
    fn located_errors() {
        let e = mt("transforms:\n  - include: a\n    action: rename\n")
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "transforms[0].action");
        assert!(
            e.msg.contains("update, insert, combine or group"),
            "{}",
            e.msg
        );
        let e = mt("transforms:\n  - include: a\n    action: insert\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("`new_name` is required"), "{}", e.msg);
        let e = mt("transforms:\n  - include: a\n    action: update\n    operations:\n      - {action: aggregate_labels, label_set: [x]}\n").err().unwrap();
        assert_eq!(
            e.path_string(),
            "transforms[0].operations[0].aggregation_type"
        );
        assert_eq!(e.pos.map(|p| p.line), Some(5));
        let e = mt("transforms:\n  - include: '('\n    match_type: regexp\n    action: update\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("invalid regexp"), "{}", e.msg);
        let e = mt("transforms:\n  - include: a\n    action: update\n    operation: []\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("operation"), "{}", e.msg);
    }
}
