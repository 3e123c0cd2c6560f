//! Staleness markers, as Prometheus writes them: a series that a scrape no longer has (or whose
//! scrape failed), and every series of a target that disappeared, gets one more data point with
//! no recorded value (OTLP's `FLAG_NO_RECORDED_VALUE`, what the Collector's receiver turns
//! Prometheus's stale NaN into), so backends end the series at once instead of after lookback.

use std::collections::HashMap;

use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric::Data};

use crate::signal::Batch;
use crate::signal::value;

/// OTLP `DataPointFlags.FLAG_NO_RECORDED_VALUE_MASK`.
pub const NO_RECORDED_VALUE: u32 = 1;

/// The series of a target's last scrape, each as a one-point metric to mark stale.
#[derive(Default)]
pub struct Staleness {
    last: HashMap<Vec<u8>, Metric>,
    /// The resource and scope of the last scrape, for markers sent after the target is gone.
    frame: Option<ResourceMetrics>,
}

/// Each point of `m` as its own metric, keyed by series (name and attributes).
fn series(m: &Metric) -> Vec<(Vec<u8>, Metric)> {
    crate::signal::split::metric_points(m)
        .into_iter()
        .map(|p| {
            let mut k = p.name.as_bytes().to_vec();
            k.push(2);
            value::attrs_key(crate::signal::split::point_attributes(&p), &mut k);
            (k, p)
        })
        .collect()
}

/// `m` (one point) as a staleness marker at `now`: no value, the flag set.
fn marker(mut m: Metric, now: u64) -> Metric {
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| {
            p.value = None;
            p.exemplars.clear();
            p.time_unix_nano = now;
            p.flags = NO_RECORDED_VALUE;
        }),
        Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| {
            p.value = None;
            p.exemplars.clear();
            p.time_unix_nano = now;
            p.flags = NO_RECORDED_VALUE;
        }),
        Some(Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| {
            p.count = 0;
            p.sum = None;
            p.bucket_counts.clear();
            p.explicit_bounds.clear();
            p.min = None;
            p.max = None;
            p.exemplars.clear();
            p.time_unix_nano = now;
            p.flags = NO_RECORDED_VALUE;
        }),
        Some(Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| {
            p.count = 0;
            p.sum = 0.0;
            p.quantile_values.clear();
            p.time_unix_nano = now;
            p.flags = NO_RECORDED_VALUE;
        }),
        Some(Data::ExponentialHistogram(h)) => h.data_points.iter_mut().for_each(|p| {
            p.count = 0;
            p.sum = None;
            p.positive = None;
            p.negative = None;
            p.zero_count = 0;
            p.exemplars.clear();
            p.time_unix_nano = now;
            p.flags = NO_RECORDED_VALUE;
        }),
        None => {}
    }
    m
}

impl Staleness {
    /// Adds a marker to `batch` for every series of the last scrape it no longer has, and
    /// remembers its series for the next.
    pub fn observe(&mut self, batch: &mut Batch, now: u64) {
        let Batch::Metrics(rms) = batch else { return };
        let Some(rm) = rms.first_mut() else { return };
        let mut current: HashMap<Vec<u8>, Metric> = HashMap::new();
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                current.extend(series(m));
            }
        }
        let gone: Vec<Metric> = self
            .last
            .iter()
            .filter(|(k, _)| !current.contains_key(*k))
            .map(|(_, m)| marker(m.clone(), now))
            .collect();
        if let Some(sm) = rm.scope_metrics.first_mut() {
            sm.metrics.extend(gone);
        }
        let mut frame = rm.clone();
        frame
            .scope_metrics
            .iter_mut()
            .for_each(|s| s.metrics.clear());
        self.frame = Some(frame);
        self.last = current;
    }

    /// Markers for every series of the last scrape: the target is gone.
    pub fn all_stale(&mut self, now: u64) -> Option<Batch> {
        let mut frame = self.frame.take()?;
        let markers: Vec<Metric> = self.last.drain().map(|(_, m)| marker(m, now)).collect();
        if markers.is_empty() {
            return None;
        }
        frame.scope_metrics.truncate(1);
        frame.scope_metrics.first_mut()?.metrics = markers;
        Some(Batch::Metrics(vec![frame]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, NumberDataPoint, ScopeMetrics, number_data_point,
    };

    fn gauge(points: &[(&str, f64)]) -> Batch {
        Batch::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "temp".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: points
                            .iter()
                            .map(|(room, v)| NumberDataPoint {
                                attributes: vec![KeyValue {
                                    key: "room".into(),
                                    value: Some(AnyValue {
                                        value: Some(any_value::Value::StringValue((*room).into())),
                                    }),
                                    ..Default::default()
                                }],
                                value: Some(number_data_point::Value::AsDouble(*v)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn points(b: &Batch) -> Vec<(String, u32, bool)> {
        let Batch::Metrics(r) = b else { panic!() };
        let mut out: Vec<(String, u32, bool)> = r[0].scope_metrics[0]
            .metrics
            .iter()
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.clone(),
                _ => vec![],
            })
            .map(|p| {
                (
                    value::option_text(&p.attributes[0].value).into_owned(),
                    p.flags,
                    p.value.is_some(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_vanished_series_and_a_vanished_target_get_markers() {
        let mut s = Staleness::default();
        let mut b = gauge(&[("a", 1.0), ("b", 2.0)]);
        s.observe(&mut b, 10);
        assert_eq!(points(&b), [("a".into(), 0, true), ("b".into(), 0, true)]);
        let mut b = gauge(&[("a", 1.5)]);
        s.observe(&mut b, 20);
        assert_eq!(
            points(&b),
            [
                ("a".into(), 0, true),
                ("b".into(), NO_RECORDED_VALUE, false)
            ],
            "b is gone: one marker"
        );
        let mut b = gauge(&[("a", 1.6)]);
        s.observe(&mut b, 30);
        assert_eq!(points(&b), [("a".into(), 0, true)], "one marker only");
        let gone = s.all_stale(40).unwrap();
        assert_eq!(points(&gone), [("a".into(), NO_RECORDED_VALUE, false)]);
        assert!(s.all_stale(50).is_none());
    }
}
