//! Metric aggregation shared by the transform processor's OTTL metric functions and the
//! `metricstransform` processor: points grouped by attributes and combined, label values
//! renamed, values scaled.

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    HistogramDataPoint, Metric, NumberDataPoint, metric::Data, number_data_point::Value as Num,
};

/// How the values of points that become one are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    Sum,
    Avg,
    Min,
    Max,
    Median,
    Count,
}

/// The Collector's names: `sum`, `avg` (`mean`), `min`, `max`, `median`, `count`.
pub fn agg_of(s: &str) -> Option<Agg> {
    Some(match s {
        "sum" => Agg::Sum,
        "avg" | "mean" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "median" => Agg::Median,
        "count" => Agg::Count,
        _ => return None,
    })
}

pub fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(Num::AsInt(i)) => i as f64,
        Some(Num::AsDouble(d)) => d,
        None => 0.0,
    }
}

fn combine(f: Agg, values: &mut [f64]) -> f64 {
    match f {
        Agg::Sum => values.iter().sum(),
        Agg::Avg => values.iter().sum::<f64>() / values.len().max(1) as f64,
        Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::Count => values.len() as f64,
        Agg::Median => {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            if n == 0 {
                0.0
            } else if n % 2 == 1 {
                values[n / 2]
            } else {
                (values[n / 2 - 1] + values[n / 2]) / 2.0
            }
        }
    }
}

pub fn rename_value(m: &mut Metric, attr: &str, values: &[String], new_value: &str) {
    let rename = |attrs: &mut Vec<KeyValue>| {
        for kv in attrs.iter_mut().filter(|kv| kv.key == attr) {
            if let Some(any_value::Value::StringValue(s)) =
                kv.value.as_mut().and_then(|v| v.value.as_mut())
                && values.contains(s)
            {
                *s = new_value.to_string();
            }
        }
    };
    match &mut m.data {
        Some(Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .for_each(|p| rename(&mut p.attributes)),
        Some(Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| rename(&mut p.attributes)),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| rename(&mut p.attributes)),
        _ => {}
    }
}

/// Points grouped by their attributes (only `keep`'s when given), each group's values
/// combined with `f` into one point; histograms merge bucket counts for `sum`.
pub fn aggregate(m: &mut Metric, f: Agg, keep: Option<&[String]>) -> Result<(), String> {
    let key_of = |attrs: &mut Vec<KeyValue>| {
        if let Some(k) = keep {
            attrs.retain(|kv| k.contains(&kv.key));
        }
        attrs.sort_by(|a, b| a.key.cmp(&b.key));
        format!("{attrs:?}")
    };
    fn numbers(
        points: Vec<NumberDataPoint>,
        f: Agg,
        key_of: &dyn Fn(&mut Vec<KeyValue>) -> String,
    ) -> Vec<NumberDataPoint> {
        let mut groups: Vec<(String, NumberDataPoint, Vec<f64>, bool)> = Vec::new();
        // Group lookup by key: a batch of many points stays linear.
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for mut p in points {
            let k = key_of(&mut p.attributes);
            let v = number(&p);
            let is_int = matches!(p.value, Some(Num::AsInt(_)));
            match index.get(&k).map(|i| &mut groups[*i]) {
                Some(g) => {
                    g.2.push(v);
                    g.3 &= is_int;
                    g.1.start_time_unix_nano = g.1.start_time_unix_nano.min(p.start_time_unix_nano);
                    g.1.time_unix_nano = g.1.time_unix_nano.max(p.time_unix_nano);
                }
                None => {
                    index.insert(k.clone(), groups.len());
                    groups.push((k, p, vec![v], is_int));
                }
            }
        }
        groups
            .into_iter()
            .map(|(_, mut p, mut vs, is_int)| {
                let v = combine(f, &mut vs);
                p.value = Some(if is_int && f != Agg::Avg && f != Agg::Median {
                    Num::AsInt(v as i64)
                } else {
                    Num::AsDouble(v)
                });
                p.exemplars.clear();
                p
            })
            .collect()
    }
    match &mut m.data {
        Some(Data::Gauge(g)) => {
            g.data_points = numbers(std::mem::take(&mut g.data_points), f, &key_of)
        }
        Some(Data::Sum(s)) => {
            s.data_points = numbers(std::mem::take(&mut s.data_points), f, &key_of)
        }
        Some(Data::Histogram(h)) => {
            if f != Agg::Sum {
                return Err("histograms aggregate only with sum".into());
            }
            let mut groups: Vec<(String, HistogramDataPoint)> = Vec::new();
            let mut index: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for mut p in std::mem::take(&mut h.data_points) {
                let k = key_of(&mut p.attributes);
                match index.get(&k).map(|i| &mut groups[*i]) {
                    Some((_, g)) if g.explicit_bounds == p.explicit_bounds => {
                        g.count += p.count;
                        g.sum = Some(g.sum.unwrap_or(0.0) + p.sum.unwrap_or(0.0));
                        for (a, b) in g.bucket_counts.iter_mut().zip(&p.bucket_counts) {
                            *a += b;
                        }
                        g.min = match (g.min, p.min) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        g.max = match (g.max, p.max) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    Some(_) => {
                        return Err("histograms with different bounds cannot be merged".into());
                    }
                    None => {
                        index.insert(k.clone(), groups.len());
                        groups.push((k, p));
                    }
                }
            }
            h.data_points = groups.into_iter().map(|(_, p)| p).collect();
        }
        _ => {}
    }
    Ok(())
}

pub fn scale(m: &mut Metric, factor: f64) {
    let scale_num = |p: &mut NumberDataPoint| {
        p.value = match p.value {
            Some(Num::AsInt(i)) => Some(Num::AsInt((i as f64 * factor) as i64)),
            Some(Num::AsDouble(d)) => Some(Num::AsDouble(d * factor)),
            None => None,
        };
        for ex in &mut p.exemplars {
            scale_exemplar(ex, factor);
        }
    };
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(scale_num),
        Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(scale_num),
        Some(Data::Histogram(h)) => {
            for p in &mut h.data_points {
                p.sum = p.sum.map(|s| s * factor);
                p.min = p.min.map(|s| s * factor);
                p.max = p.max.map(|s| s * factor);
                p.explicit_bounds.iter_mut().for_each(|b| *b *= factor);
                p.exemplars
                    .iter_mut()
                    .for_each(|ex| scale_exemplar(ex, factor));
            }
        }
        Some(Data::Summary(s)) => {
            for p in &mut s.data_points {
                p.sum *= factor;
                p.quantile_values.iter_mut().for_each(|q| q.value *= factor);
            }
        }
        _ => {}
    }
}

fn scale_exemplar(ex: &mut opentelemetry_proto::tonic::metrics::v1::Exemplar, factor: f64) {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value as E;
    ex.value = match ex.value {
        Some(E::AsInt(i)) => Some(E::AsInt((i as f64 * factor) as i64)),
        Some(E::AsDouble(d)) => Some(E::AsDouble(d * factor)),
        None => None,
    };
}
