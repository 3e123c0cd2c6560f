//! The loss ledger, checked from a collector's self-metrics: for every exporter and signal,
//! what it held at start (restored from its persistent queue) plus what it took from its
//! pipelines equals what it sent, what it gave up (counted by reason), and what it still holds.
//! Fault tests call [`assert_exporter_ledger`] once the traffic has settled.

use super::parse_metric;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Ledger {
    pub restored: f64,
    pub accepted: f64,
    pub sent: f64,
    pub failed: f64,
    pub held: f64,
}

/// `item`: `spans`, `metric_points` or `log_records`.
pub fn exporter_ledger(text: &str, exporter: &str, item: &str) -> Ledger {
    let data_type = match item {
        "spans" => "traces",
        "metric_points" => "metrics",
        "log_records" => "logs",
        other => panic!("unknown item {other}"),
    };
    let e = format!("{{exporter=\"{exporter}\"}}");
    Ledger {
        restored: parse_metric(
            text,
            &format!(
                "ferrotel_exporter_queue_restored_items_total{{exporter=\"{exporter}\",data_type=\"{data_type}\"}}"
            ),
        ),
        accepted: parse_metric(text, &format!("ferrotel_exporter_accepted_{item}_total{e}")),
        sent: parse_metric(text, &format!("otelcol_exporter_sent_{item}_total{e}")),
        failed: parse_metric(
            text,
            &format!("otelcol_exporter_send_failed_{item}_total{e}"),
        ),
        held: parse_metric(text, &format!("otelcol_exporter_queued_{item}{e}")),
    }
}

/// Asserts restored + accepted = sent + failed + held, and returns the figures.
pub fn assert_exporter_ledger(text: &str, exporter: &str, item: &str) -> Ledger {
    let l = exporter_ledger(text, exporter, item);
    assert_eq!(
        l.restored + l.accepted,
        l.sent + l.failed + l.held,
        "ledger of exporter {exporter} ({item}) does not balance: {l:?}\n{text}"
    );
    l
}
