//! The transform processor's metric functions (editors of the `metric` context): type
//! conversions (`convert_sum_to_gauge`, `convert_gauge_to_sum`, the summary ones,
//! `convert_exponential_hist_to_explicit_hist`), new metrics from old (`extract_sum_metric`,
//! `extract_count_metric`, `copy_metric`), `scale_metric` and the two aggregations.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, metric::Data,
    number_data_point::Value as Num,
};

use super::ast::{Compiled, Context, Literal, Value, opt, req};
use super::mutate::{Edit, EditorDef, editor};
use super::val::{EvalError, Val};
use crate::signal::aggregate::{Agg, agg_of, aggregate, rename_value, scale};

const METRIC: &[Context] = &[Context::Metric];

macro_rules! metric_editor {
    ($name:literal, [$($p:expr),*], $run:expr) => {
        EditorDef { contexts: METRIC, ..editor!($name, [$($p),*], $run) }
    };
    ($name:literal, [$($p:expr),*], $run:expr, $compile:expr) => {
        EditorDef { contexts: METRIC, ..editor!($name, [$($p),*], $run, $compile) }
    };
}

pub static EDITORS: &[EditorDef] = &[
    metric_editor!(
        "aggregate_on_attribute_value",
        [
            req("function"),
            req("attribute"),
            req("values"),
            req("newValue")
        ],
        |e| {
            let f = agg_fn(e, 0)?;
            let attr = e.str(1)?;
            let values = str_list(e, 2)?;
            let new_value = e.str(3)?;
            with_metric(e, |m| {
                rename_value(m, &attr, &values, &new_value);
                aggregate(m, f, None).map_err(EvalError)
            })
        },
        check_function
    ),
    metric_editor!(
        "aggregate_on_attributes",
        [req("function"), opt("attributes")],
        |e| {
            let f = agg_fn(e, 0)?;
            let keep = if e.has(1) {
                Some(str_list(e, 1)?)
            } else {
                None
            };
            with_metric(e, |m| {
                aggregate(m, f, Some(keep.as_deref().unwrap_or(&[]))).map_err(EvalError)
            })
        },
        check_function
    ),
    metric_editor!(
        "convert_exponential_hist_to_explicit_hist",
        [req("distribution"), req("explicitBounds")],
        |e| {
            let dist = e.str(0)?;
            let bounds: Vec<f64> = match e.arg(1)? {
                Val::List(l) => l
                    .iter()
                    .map(|v| match Val::from_any(Some(v)) {
                        Val::Float(f) => Ok(f),
                        Val::Int(i) => Ok(i as f64),
                        _ => Err(EvalError("explicitBounds must be numbers".into())),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return e.err("explicitBounds must be a list of numbers"),
            };
            if bounds.windows(2).any(|w| w[0] >= w[1]) {
                return e.err("explicitBounds must increase");
            }
            with_metric(e, |m| {
                let Some(Data::ExponentialHistogram(h)) = m.data.take() else {
                    return Ok(());
                };
                let points = h
                    .data_points
                    .into_iter()
                    .map(|p| exp_to_explicit(&p, &bounds, &dist))
                    .collect();
                m.data = Some(Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: h.aggregation_temporality,
                }));
                Ok(())
            })
        },
        |c| match c.lit_str(0) {
            Some("upper" | "midpoint" | "uniform" | "random") | None => Ok(()),
            Some(other) => Err((
                0,
                format!("distribution must be upper, midpoint, uniform or random, not {other:?}"),
            )),
        }
    ),
    metric_editor!(
        "convert_gauge_to_sum",
        [req("aggregation_temporality"), req("is_monotonic")],
        |e| {
            let t = temporality(e, 0)?;
            let mono = e.opt_bool(1)?.unwrap_or(false);
            with_metric(e, |m| {
                if let Some(Data::Gauge(g)) = m.data.take() {
                    m.data = Some(Data::Sum(Sum {
                        data_points: g.data_points,
                        aggregation_temporality: t,
                        is_monotonic: mono,
                    }));
                } else {
                    m.data = m.data.take();
                }
                Ok(())
            })
        },
        check_temporality
    ),
    metric_editor!("convert_sum_to_gauge", [], |e| {
        with_metric(e, |m| {
            match m.data.take() {
                Some(Data::Sum(s)) => {
                    m.data = Some(Data::Gauge(Gauge {
                        data_points: s.data_points,
                    }))
                }
                other => m.data = other,
            }
            Ok(())
        })
    }),
    metric_editor!(
        "convert_summary_count_val_to_sum",
        [
            req("aggregation_temporality"),
            req("is_monotonic"),
            opt("suffix")
        ],
        |e| summary_to_sum(e, true),
        check_temporality
    ),
    metric_editor!(
        "convert_summary_sum_val_to_sum",
        [
            req("aggregation_temporality"),
            req("is_monotonic"),
            opt("suffix")
        ],
        |e| summary_to_sum(e, false),
        check_temporality
    ),
    metric_editor!(
        "copy_metric",
        [opt("name"), opt("description"), opt("unit")],
        |e| {
            let name = e.opt_str(0)?;
            let desc = e.opt_str(1)?;
            let unit = e.opt_str(2)?;
            add_metric(e, |m| {
                let mut copy = m.clone();
                if let Some(n) = name {
                    copy.name = n;
                }
                if let Some(d) = desc {
                    copy.description = d;
                }
                if let Some(u) = unit {
                    copy.unit = u;
                }
                Some(copy)
            })
        }
    ),
    metric_editor!(
        "extract_count_metric",
        [req("is_monotonic"), opt("suffix")],
        |e| extract(e, true)
    ),
    metric_editor!(
        "extract_sum_metric",
        [req("is_monotonic"), opt("suffix")],
        |e| extract(e, false)
    ),
    metric_editor!("scale_metric", [req("factor"), opt("unit")], |e| {
        let factor = match e.arg(0)? {
            Val::Float(f) => f,
            Val::Int(i) => i as f64,
            other => {
                return e.err(format_args!(
                    "factor must be a number, got {}",
                    other.type_name()
                ));
            }
        };
        let unit = e.opt_str(1)?;
        with_metric(e, |m| {
            scale(m, factor);
            if let Some(u) = unit {
                m.unit = u;
            }
            Ok(())
        })
    }),
];

fn with_metric(
    e: &mut Edit<'_>,
    f: impl FnOnce(&mut Metric) -> Result<(), EvalError>,
) -> Result<(), EvalError> {
    let Some((metrics, i)) = e.ctx.metrics_mut() else {
        return Err(EvalError(format!(
            "{} runs in the metric context",
            e.call.name
        )));
    };
    match metrics.get_mut(i) {
        Some(m) => f(m),
        None => Ok(()),
    }
}

/// Appends the metric `f` makes from the current one to the scope's list.
fn add_metric(
    e: &mut Edit<'_>,
    f: impl FnOnce(&Metric) -> Option<Metric>,
) -> Result<(), EvalError> {
    let Some((metrics, i)) = e.ctx.metrics_mut() else {
        return Err(EvalError(format!(
            "{} runs in the metric context",
            e.call.name
        )));
    };
    if let Some(new) = metrics.get(i).and_then(f) {
        metrics.push(new);
    }
    Ok(())
}

fn str_list(e: &Edit<'_>, i: usize) -> Result<Vec<String>, EvalError> {
    match e.arg(i)? {
        Val::List(l) => l
            .iter()
            .map(|v| match Val::from_any(Some(v)) {
                Val::Str(s) => Ok(s.into_owned()),
                _ => Err(EvalError(format!("{}: expected strings", e.call.name))),
            })
            .collect(),
        Val::Nil => Ok(Vec::new()),
        other => e.err(format_args!("expected a list, got {}", other.type_name())),
    }
}

fn check_temporality(c: &mut super::ast::Call) -> Result<(), super::ast::CompileError> {
    match c.lit_str(0) {
        Some("cumulative" | "delta") | None => Ok(()),
        Some(other) => Err((
            0,
            format!("aggregation_temporality must be cumulative or delta, not {other:?}"),
        )),
    }
}

fn temporality(e: &Edit<'_>, i: usize) -> Result<i32, EvalError> {
    match e.str(i)?.as_str() {
        "cumulative" => Ok(2),
        "delta" => Ok(1),
        other => e.err(format_args!("unknown aggregation temporality {other:?}")),
    }
}

fn check_function(c: &mut super::ast::Call) -> Result<(), super::ast::CompileError> {
    match c.args.first() {
        Some(Some(Value::Lit(Literal::Str(f)))) if agg_of(f).is_none() => Err((
            0,
            format!("function must be sum, avg, min, max, median or count, not {f:?}"),
        )),
        _ => {
            c.compiled = Compiled::None;
            Ok(())
        }
    }
}

fn agg_fn(e: &Edit<'_>, i: usize) -> Result<Agg, EvalError> {
    let s = e.str(i)?;
    agg_of(&s).map_or_else(|| e.err(format_args!("unknown function {s:?}")), Ok)
}

/// A point's attributes, start, time, count and sum.
type PointSummary<'a> = (&'a Vec<KeyValue>, u64, u64, u64, Option<f64>);

/// `extract_sum_metric` / `extract_count_metric`: a sum metric `<name>_sum|_count` from a
/// histogram's, exponential histogram's or summary's points.
fn extract(e: &mut Edit<'_>, count: bool) -> Result<(), EvalError> {
    let mono = e.opt_bool(0)?.unwrap_or(false);
    let suffix = e
        .opt_str(1)?
        .unwrap_or_else(|| if count { "_count" } else { "_sum" }.to_string());
    add_metric(e, |m| {
        let (points, temporality): (Vec<PointSummary<'_>>, i32) = match &m.data {
            Some(Data::Histogram(h)) => (
                h.data_points
                    .iter()
                    .map(|p| {
                        (
                            &p.attributes,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                            p.count,
                            p.sum,
                        )
                    })
                    .collect(),
                h.aggregation_temporality,
            ),
            Some(Data::ExponentialHistogram(h)) => (
                h.data_points
                    .iter()
                    .map(|p| {
                        (
                            &p.attributes,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                            p.count,
                            p.sum,
                        )
                    })
                    .collect(),
                h.aggregation_temporality,
            ),
            Some(Data::Summary(s)) => (
                s.data_points
                    .iter()
                    .map(|p| {
                        (
                            &p.attributes,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                            p.count,
                            Some(p.sum),
                        )
                    })
                    .collect(),
                2,
            ),
            _ => return None,
        };
        let data_points = points
            .into_iter()
            .filter(|p| count || p.4.is_some())
            .map(|(attrs, start, time, c, s)| NumberDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(if count {
                    Num::AsInt(c as i64)
                } else {
                    Num::AsDouble(s.unwrap_or(0.0))
                }),
                ..Default::default()
            })
            .collect();
        Some(Metric {
            name: format!("{}{suffix}", m.name),
            description: m.description.clone(),
            unit: if count {
                "1".to_string()
            } else {
                m.unit.clone()
            },
            data: Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality: temporality,
                is_monotonic: mono,
            })),
            ..Default::default()
        })
    })
}

fn summary_to_sum(e: &mut Edit<'_>, count: bool) -> Result<(), EvalError> {
    let t = temporality(e, 0)?;
    let mono = e.opt_bool(1)?.unwrap_or(false);
    let suffix = e
        .opt_str(2)?
        .unwrap_or_else(|| if count { "_count" } else { "_sum" }.to_string());
    add_metric(e, |m| {
        let Some(Data::Summary(s)) = &m.data else {
            return None;
        };
        Some(Metric {
            name: format!("{}{suffix}", m.name),
            description: m.description.clone(),
            unit: m.unit.clone(),
            data: Some(Data::Sum(Sum {
                data_points: s
                    .data_points
                    .iter()
                    .map(|p| NumberDataPoint {
                        attributes: p.attributes.clone(),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        value: Some(if count {
                            Num::AsInt(p.count as i64)
                        } else {
                            Num::AsDouble(p.sum)
                        }),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: t,
                is_monotonic: mono,
            })),
            ..Default::default()
        })
    })
}

/// An exponential histogram point as an explicit one over `bounds`: each exponential bucket's
/// count goes to the explicit bucket holding its upper edge (`upper`), its midpoint
/// (`midpoint`), or is split over the explicit buckets it overlaps in proportion (`uniform`;
/// `random` is the same proportional split, deterministic here).
fn exp_to_explicit(
    p: &opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint,
    bounds: &[f64],
    dist: &str,
) -> HistogramDataPoint {
    let mut counts = vec![0u64; bounds.len() + 1];
    let bucket_of = |v: f64| bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mut place = |lo: f64, hi: f64, n: u64| {
        if n == 0 {
            return;
        }
        match dist {
            "upper" => counts[bucket_of(hi)] += n,
            "midpoint" => counts[bucket_of((lo + hi) / 2.0)] += n,
            _ => {
                // Proportional split by overlap; the remainder goes to the last share.
                let width = hi - lo;
                let (first, last) = (bucket_of(lo), bucket_of(hi));
                if first == last || width <= 0.0 {
                    counts[last] += n;
                    return;
                }
                let mut given = 0u64;
                for b in first..=last {
                    let b_lo = if b == 0 {
                        f64::NEG_INFINITY
                    } else {
                        bounds[b - 1]
                    };
                    let b_hi = bounds.get(b).copied().unwrap_or(f64::INFINITY);
                    let overlap = (hi.min(b_hi) - lo.max(b_lo)).max(0.0);
                    let share = if b == last {
                        n - given
                    } else {
                        ((n as f64) * overlap / width).floor() as u64
                    };
                    counts[b] += share;
                    given += share;
                }
            }
        }
    };
    if let Some(pos) = &p.positive {
        for (i, n) in pos.bucket_counts.iter().enumerate() {
            let idx = pos.offset as i64 + i as i64;
            place(base.powi(idx as i32), base.powi(idx as i32 + 1), *n);
        }
    }
    if let Some(neg) = &p.negative {
        for (i, n) in neg.bucket_counts.iter().enumerate() {
            let idx = neg.offset as i64 + i as i64;
            place(-base.powi(idx as i32 + 1), -base.powi(idx as i32), *n);
        }
    }
    counts[bucket_of(0.0)] += p.zero_count;
    HistogramDataPoint {
        attributes: p.attributes.clone(),
        start_time_unix_nano: p.start_time_unix_nano,
        time_unix_nano: p.time_unix_nano,
        count: p.count,
        sum: p.sum,
        bucket_counts: counts,
        explicit_bounds: bounds.to_vec(),
        flags: p.flags,
        min: p.min,
        max: p.max,
        ..Default::default()
    }
}
