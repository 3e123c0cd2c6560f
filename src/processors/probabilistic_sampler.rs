//! `probabilistic_sampler` processor (the Collector's `hash_seed` mode): keeps a span when the
//! FNV-1a 32-bit hash of `hash_seed` (4 bytes, little endian) followed by its trace id falls
//! in the lowest `sampling_percentage` of 16384 buckets. The decision depends only on the trace
//! id and the seed, so every agent with the same seed keeps or drops the same traces, and the
//! Collector's agents (same algorithm) agree with ours.
//!
//! Spans with a `sampling.priority` attribute are kept when it is above 0 and dropped when it
//! is 0. Log records are sampled by trace id (`attribute_source: traceID`, default) or by the
//! value of the record attribute `from_attribute` (`attribute_source: record`); a record with
//! neither is dropped with `fail_closed: true` (default) and kept otherwise;
//! `sampling_priority` names a record attribute whose number overrides the percentage. Dropped
//! items are counted in `otelcol_processor_dropped_items{reason="sampled"}`.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use serde::Deserialize;

use super::{InPlace, Transform, prune};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::key_err;
use crate::config::{DeError, Node, from_node};
use crate::signal::{Batch, Signal};

const NUM_BUCKETS: u32 = 0x4000;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub enum AttributeSource {
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    #[serde(rename = "record")]
    Record,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Percentage of traces (or records) kept, 0–100. Default 0.
    pub sampling_percentage: f64,
    /// Seed of the hash; agents that must agree use the same. Default 0.
    pub hash_seed: u32,
    /// Only `hash_seed` (the default here).
    pub mode: Option<String>,
    /// Drop items that carry nothing to hash. Default true.
    pub fail_closed: bool,
    /// Logs: `traceID` (default) or `record`.
    pub attribute_source: AttributeSource,
    /// Logs with `attribute_source: record`: the attribute hashed.
    pub from_attribute: Option<String>,
    /// Logs: an attribute whose number is this record's sampling percentage.
    pub sampling_priority: Option<String>,
    /// Only 4 (the hash-seed mode does not use it). Accepted for compatibility.
    pub sampling_precision: Option<u8>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: None,
            fail_closed: true,
            attribute_source: AttributeSource::TraceId,
            from_attribute: None,
            sampling_priority: None,
            sampling_precision: None,
        }
    }
}

/// `probabilistic_sampler`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "probabilistic_sampler",
    &[crate::signal::Signal::Traces, crate::signal::Signal::Logs],
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if !(0.0..=100.0).contains(&cfg.sampling_percentage) || cfg.sampling_percentage.is_nan() {
        return Err(key_err(
            node,
            &["sampling_percentage"],
            "must be between 0 and 100",
        ));
    }
    if let Some(m) = cfg.mode.as_deref().filter(|m| *m != "hash_seed") {
        return Err(key_err(
            node,
            &["mode"],
            format!("mode {m:?} is not supported yet; use hash_seed (the default here)"),
        ));
    }
    if cfg.attribute_source == AttributeSource::Record && cfg.from_attribute.is_none() {
        return Err(key_err(
            node,
            &["from_attribute"],
            "from_attribute is required with attribute_source: record",
        ));
    }
    Ok(Box::new(cfg))
}

impl ProcessorConfig for Config {
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
            Sampler {
                cfg: self.clone(),
                threshold: threshold(self.sampling_percentage),
            },
            "sampled",
        ))
    }
}

/// Buckets below this are kept.
fn threshold(percentage: f64) -> u32 {
    (percentage * (NUM_BUCKETS as f64 / 100.0)) as u32
}

/// FNV-1a, 32 bits, over the seed's little-endian bytes then `data`.
pub fn hash(data: &[u8], seed: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(data) {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The decision for one trace id (or record attribute value).
pub fn keep(data: &[u8], seed: u32, threshold: u32) -> bool {
    hash(data, seed) & (NUM_BUCKETS - 1) < threshold
}

struct Sampler {
    cfg: Config,
    threshold: u32,
}

fn number(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match crate::signal::value::find_value(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::DoubleValue(d) => Some(*d),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Transform for Sampler {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let seed = self.cfg.hash_seed;
        match batch {
            Batch::Traces(rs) => {
                for r in rs.iter_mut() {
                    for ss in &mut r.scope_spans {
                        ss.spans
                            .retain(|s| match number(&s.attributes, "sampling.priority") {
                                Some(p) => p > 0.0,
                                None => keep(&s.trace_id, seed, self.threshold),
                            });
                    }
                }
            }
            Batch::Logs(rl) => {
                for r in rl.iter_mut() {
                    for sl in &mut r.scope_logs {
                        sl.log_records.retain(|l| {
                            let threshold = match &self.cfg.sampling_priority {
                                Some(k) => number(&l.attributes, k)
                                    .map_or(self.threshold, |p| threshold(p.clamp(0.0, 100.0))),
                                None => self.threshold,
                            };
                            let text;
                            let data: Option<&[u8]> = match self.cfg.attribute_source {
                                AttributeSource::TraceId => {
                                    (!l.trace_id.is_empty()).then_some(&l.trace_id[..])
                                }
                                AttributeSource::Record => {
                                    let key = self.cfg.from_attribute.as_deref().unwrap_or("");
                                    match crate::signal::value::find_kv(&l.attributes, key) {
                                        Some(kv) => {
                                            text = crate::signal::value::option_text(&kv.value)
                                                .into_owned();
                                            Some(text.as_bytes())
                                        }
                                        None => None,
                                    }
                                }
                            };
                            match data {
                                Some(d) => keep(d, seed, threshold),
                                None => !self.cfg.fail_closed,
                            }
                        });
                    }
                }
            }
            // Metrics are not sampled (the Collector's processor takes traces and logs).
            Batch::Metrics(_) => return Ok(()),
            Batch::Encoded(_) => return Err("the batch was not decoded".into()),
        }
        prune(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // FNV-1a 32 of "" is the offset basis and of "a" is 0xe40c292c; with the seed's four
        // bytes first, a zero seed is the hash of "\0\0\0\0" + data.
        let plain = |d: &[u8]| {
            let mut h: u32 = 0x811c_9dc5;
            for b in d {
                h ^= *b as u32;
                h = h.wrapping_mul(0x0100_0193);
            }
            h
        };
        assert_eq!(plain(b""), 0x811c_9dc5);
        assert_eq!(plain(b"a"), 0xe40c_292c);
        assert_eq!(plain(b"foobar"), 0xbf9c_f968);
        assert_eq!(hash(b"a", 0), plain(b"\0\0\0\0a"));
        assert_eq!(hash(b"a", 0x0403_0201), plain(b"\x01\x02\x03\x04a"));
    }

    #[test]
    fn keeps_about_the_percentage_and_is_deterministic() {
        let t = threshold(25.0);
        assert_eq!(t, 4096);
        let kept = (0u64..20_000)
            .filter(|i| keep(&[i.to_be_bytes(), i.to_le_bytes()].concat(), 22, t))
            .count();
        assert!((4500..5500).contains(&kept), "{kept}");
        assert_eq!(threshold(100.0), NUM_BUCKETS);
        assert!((0u64..1000).all(|i| keep(&i.to_be_bytes(), 1, threshold(100.0))));
        assert!((0u64..1000).all(|i| !keep(&i.to_be_bytes(), 1, threshold(0.0))));
    }

    #[test]
    fn validation() {
        let e = parse(&yaml("sampling_percentage: 101\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "sampling_percentage");
        let e = parse(&yaml("sampling_percentage: 5\nmode: proportional\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("not supported"), "{}", e.msg);
        let e = parse(&yaml("attribute_source: record\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "from_attribute");
        assert!(parse(&yaml("hash_seed: 22\nsampling_percentage: 100\n").unwrap()).is_ok());
    }
}
