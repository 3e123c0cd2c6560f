//! Building the metrics a scraping receiver produces (hostmetrics, kubeletstats, k8s_cluster):
//! the Collector's per-metric `metrics: {<name>: {enabled: bool}}` switches over a table of
//! defaults, and cumulative sums and gauges written with the scrape's timestamps.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric::Data, number_data_point,
};
use serde::Deserialize;

/// `{enabled: bool}`, as the Collector's `metrics:` and `resource_attributes:` entries are.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Toggle {
    pub enabled: bool,
}

/// Whether `name` is on: its switch if one is set, else its default in `defaults`.
pub fn enabled(toggles: &BTreeMap<String, Toggle>, defaults: &[(&str, bool)], name: &str) -> bool {
    toggles
        .get(name)
        .map(|t| t.enabled)
        .unwrap_or_else(|| defaults.iter().any(|(n, d)| *n == name && *d))
}

/// The first switch in `toggles` that names nothing in `defaults`, if any.
pub fn unknown<'a>(
    toggles: &'a BTreeMap<String, Toggle>,
    defaults: &[(&str, bool)],
) -> Option<&'a str> {
    toggles
        .keys()
        .find(|k| !defaults.iter().any(|(n, _)| n == k))
        .map(String::as_str)
}

/// A data point's value.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    Int(i64),
    Double(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Num {
    fn from(v: i64) -> Self {
        Num::Int(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::Double(v)
    }
}

/// Writes the enabled metrics of one scrape: `now` on every point, `start` on cumulative ones.
pub struct MetricBuilder<'a> {
    pub toggles: &'a BTreeMap<String, Toggle>,
    pub defaults: &'a [(&'a str, bool)],
    pub now: u64,
    pub start: u64,
    pub out: Vec<Metric>,
}

fn attrs(a: &[(&str, &str)]) -> Vec<KeyValue> {
    a.iter()
        .map(|(k, v)| crate::signal::value::string_kv(k, v))
        .collect()
}

impl MetricBuilder<'_> {
    pub fn on(&self, name: &str) -> bool {
        enabled(self.toggles, self.defaults, name)
    }

    fn points(&self, points: Vec<(Vec<(&str, &str)>, Num)>, start: u64) -> Vec<NumberDataPoint> {
        points
            .into_iter()
            .map(|(a, v)| NumberDataPoint {
                attributes: attrs(&a),
                start_time_unix_nano: start,
                time_unix_nano: self.now,
                value: Some(match v {
                    Num::Int(i) => number_data_point::Value::AsInt(i),
                    Num::Double(d) => number_data_point::Value::AsDouble(d),
                }),
                ..Default::default()
            })
            .collect()
    }

    /// A cumulative sum (`monotonic` for counters, not for usage figures).
    pub fn sum(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        monotonic: bool,
        points: Vec<(Vec<(&str, &str)>, Num)>,
    ) {
        if !self.on(name) || points.is_empty() {
            return;
        }
        let data_points = self.points(points, self.start);
        self.out.push(Metric {
            name: name.into(),
            unit: unit.into(),
            description: description.into(),
            data: Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        });
    }

    pub fn gauge(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        points: Vec<(Vec<(&str, &str)>, Num)>,
    ) {
        if !self.on(name) || points.is_empty() {
            return;
        }
        let data_points = self.points(points, 0);
        self.out.push(Metric {
            name: name.into(),
            unit: unit.into(),
            description: description.into(),
            data: Some(Data::Gauge(Gauge { data_points })),
            ..Default::default()
        });
    }

    /// One unattributed gauge point, when there is a value.
    pub fn gauge1(&mut self, name: &str, unit: &str, description: &str, v: Option<Num>) {
        if let Some(v) = v {
            self.gauge(name, unit, description, vec![(vec![], v)]);
        }
    }

    /// One unattributed cumulative point, when there is a value.
    pub fn sum1(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        monotonic: bool,
        v: Option<Num>,
    ) {
        if let Some(v) = v {
            self.sum(name, unit, description, monotonic, vec![(vec![], v)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_override_defaults_and_disabled_metrics_are_not_written() {
        let defaults = [("a", true), ("b", false), ("c", true)];
        let mut toggles = BTreeMap::new();
        toggles.insert("b".to_string(), Toggle { enabled: true });
        toggles.insert("c".to_string(), Toggle { enabled: false });
        let mut b = MetricBuilder {
            toggles: &toggles,
            defaults: &defaults,
            now: 20,
            start: 10,
            out: Vec::new(),
        };
        b.sum1("a", "s", "", true, Some(Num::Double(1.5)));
        b.gauge1("b", "By", "", Some(Num::Int(7)));
        b.gauge1("c", "By", "", Some(Num::Int(7)));
        b.gauge1("a", "By", "", None);
        let names: Vec<_> = b.out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let Some(Data::Sum(s)) = &b.out[0].data else {
            panic!("a is a sum")
        };
        assert_eq!(s.data_points[0].start_time_unix_nano, 10);
        assert_eq!(s.data_points[0].time_unix_nano, 20);
        let Some(Data::Gauge(g)) = &b.out[1].data else {
            panic!("b is a gauge")
        };
        assert_eq!(g.data_points[0].start_time_unix_nano, 0);
        assert_eq!(unknown(&toggles, &defaults), None);
        toggles.insert("zz".into(), Toggle { enabled: true });
        assert_eq!(unknown(&toggles, &defaults), Some("zz"));
    }
}
