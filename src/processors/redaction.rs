//! `redaction` processor: deletes the attributes not on an allow list and masks the values that
//! match blocked patterns, on resources, spans, span events, log records (and map bodies) and
//! data points. Fail-closed: with no `allowed_keys` and `allow_all_keys: false` every attribute
//! goes. `summary: info|debug` records what was done as `redaction.*` attributes on each record.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde::Deserialize;

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Keep every key (the values are still checked). Default false: only `allowed_keys`.
    pub allow_all_keys: bool,
    /// Keys kept; the others are deleted.
    pub allowed_keys: Vec<String>,
    /// Keys passed through untouched (neither deleted nor checked).
    pub ignored_keys: Vec<String>,
    /// Regexes of keys passed through untouched.
    pub ignored_key_patterns: Vec<String>,
    /// Regexes of values to mask: each match is replaced by `****` (or its hash).
    pub blocked_values: Vec<String>,
    /// Regexes of keys whose whole value is masked.
    pub blocked_key_patterns: Vec<String>,
    /// Regexes of values never masked.
    pub allowed_values: Vec<String>,
    /// `md5`, `sha1`, `sha3` (SHA3-256), `hmac-sha256` or `hmac-sha512` instead of `****`.
    pub hash_function: Option<String>,
    /// The HMAC key (at least 32 bytes for hmac-sha256, 64 for hmac-sha512).
    pub hmac_key: Option<String>,
    /// `silent` (default), `info` (counts) or `debug` (counts and key names).
    pub summary: Option<String>,
    /// Also check non-string values, as their text.
    pub redact_all_types: bool,
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Summary {
    Silent,
    Info,
    Debug,
}

#[derive(Clone)]
enum Hash {
    Mask,
    Md5,
    Sha1,
    Sha3,
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

#[derive(Clone)]
pub struct Redaction {
    allow_all: bool,
    allowed: Vec<String>,
    ignored: Vec<String>,
    ignored_patterns: Vec<regex::Regex>,
    blocked: Option<regex::Regex>,
    blocked_keys: Vec<regex::Regex>,
    allowed_values: Vec<regex::Regex>,
    hash: Hash,
    summary: Summary,
    all_types: bool,
}

pub const FACTORY: Factory = Factory::processor(
    "redaction",
    crate::signal::ALL_SIGNALS,
    Stability::Alpha,
    parse,
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    compile(node).map(|r| Box::new(r) as Box<dyn ProcessorConfig>)
}

fn regexes(node: &Node, key: &str, list: &[String]) -> Result<Vec<regex::Regex>, DeError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            regex::Regex::new(p).map_err(|e| {
                key_err(
                    node,
                    &[key, &format!("[{i}]")],
                    format!("invalid regexp {p:?}: {e}"),
                )
            })
        })
        .collect()
}

fn compile(node: &Node) -> Result<Redaction, DeError> {
    let c: Config = from_node(node)?;
    let blocked = if c.blocked_values.is_empty() {
        None
    } else {
        regexes(node, "blocked_values", &c.blocked_values)?;
        // One alternation: a value is scanned once for every pattern.
        let joined = c
            .blocked_values
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        Some(
            regex::Regex::new(&joined)
                .map_err(|e| key_err(node, &["blocked_values"], e.to_string()))?,
        )
    };
    let hash = match c.hash_function.as_deref() {
        None | Some("") => Hash::Mask,
        Some("md5") => Hash::Md5,
        Some("sha1") => Hash::Sha1,
        Some("sha3") => Hash::Sha3,
        Some(f @ ("hmac-sha256" | "hmac-sha512")) => {
            let (alg, min) = if f == "hmac-sha256" {
                (aws_lc_rs::hmac::HMAC_SHA256, 32)
            } else {
                (aws_lc_rs::hmac::HMAC_SHA512, 64)
            };
            let key = c.hmac_key.as_deref().unwrap_or_default();
            if key.len() < min {
                return Err(key_err(
                    node,
                    &["hmac_key"],
                    format!("{f} needs an `hmac_key` of at least {min} bytes"),
                ));
            }
            Hash::Hmac(Box::new(aws_lc_rs::hmac::Key::new(alg, key.as_bytes())))
        }
        Some(other) => {
            return Err(key_err(
                node,
                &["hash_function"],
                format!(
                    "unknown hash_function {other:?}: expected md5, sha1, sha3, hmac-sha256 or hmac-sha512"
                ),
            ));
        }
    };
    let summary = match c.summary.as_deref() {
        None | Some("" | "silent") => Summary::Silent,
        Some("info") => Summary::Info,
        Some("debug") => Summary::Debug,
        Some(other) => {
            return Err(key_err(
                node,
                &["summary"],
                format!("expected debug, info or silent, not {other:?}"),
            ));
        }
    };
    Ok(Redaction {
        allow_all: c.allow_all_keys,
        allowed: c.allowed_keys,
        ignored: c.ignored_keys,
        ignored_patterns: regexes(node, "ignored_key_patterns", &c.ignored_key_patterns)?,
        blocked,
        blocked_keys: regexes(node, "blocked_key_patterns", &c.blocked_key_patterns)?,
        allowed_values: regexes(node, "allowed_values", &c.allowed_values)?,
        hash,
        summary,
        all_types: c.redact_all_types,
    })
}

impl ProcessorConfig for Redaction {
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
            "redaction",
        ))
    }
}

/// What one attribute map went through.
#[derive(Default)]
struct Tally {
    redacted: Vec<String>,
    masked: Vec<String>,
    allowed: Vec<String>,
    ignored: usize,
}

const SUMMARY_KEYS: &[&str] = &[
    "redaction.redacted.keys",
    "redaction.redacted.count",
    "redaction.masked.keys",
    "redaction.masked.count",
    "redaction.allowed.keys",
    "redaction.allowed.count",
    "redaction.ignored.count",
];

impl Redaction {
    fn mask(&self, matched: &str) -> String {
        use aws_lc_rs::digest;
        match &self.hash {
            Hash::Mask => "****".into(),
            Hash::Md5 => {
                use md5::Digest;
                hex::encode(md5::Md5::digest(matched.as_bytes()))
            }
            Hash::Sha1 => {
                use sha1::Digest;
                hex::encode(sha1::Sha1::digest(matched.as_bytes()))
            }
            Hash::Sha3 => hex::encode(digest::digest(&digest::SHA3_256, matched.as_bytes())),
            Hash::Hmac(key) => hex::encode(aws_lc_rs::hmac::sign(key, matched.as_bytes())),
        }
    }

    fn is_ignored(&self, key: &str) -> bool {
        self.ignored.iter().any(|k| k == key)
            || self.ignored_patterns.iter().any(|re| re.is_match(key))
    }

    /// The masked text of a value, or `None` when nothing in it is blocked.
    fn masked(&self, key: &str, text: &str) -> Option<String> {
        if self.allowed_values.iter().any(|re| re.is_match(text)) {
            return None;
        }
        if self.blocked_keys.iter().any(|re| re.is_match(key)) {
            return Some(self.mask(text));
        }
        let re = self.blocked.as_ref()?;
        if !re.is_match(text) {
            return None;
        }
        Some(
            re.replace_all(text, |c: &regex::Captures<'_>| self.mask(&c[0]))
                .into_owned(),
        )
    }

    fn attrs(&self, attrs: &mut Vec<KeyValue>, t: &mut Tally) {
        attrs.retain_mut(|kv| {
            if SUMMARY_KEYS.contains(&kv.key.as_str()) {
                return true;
            }
            if self.is_ignored(&kv.key) {
                t.ignored += 1;
                return true;
            }
            if !self.allow_all && !self.allowed.contains(&kv.key) {
                t.redacted.push(kv.key.clone());
                return false;
            }
            let v = kv.value.get_or_insert_with(Default::default);
            let text = match &v.value {
                Some(any_value::Value::StringValue(s)) => {
                    Some(std::borrow::Cow::Borrowed(s.as_str()))
                }
                Some(_) if self.all_types => Some(crate::signal::value::text(v)),
                _ => None,
            };
            if let Some(new) = text.and_then(|s| self.masked(&kv.key, &s)) {
                v.value = Some(any_value::Value::StringValue(new));
                t.masked.push(kv.key.clone());
            } else {
                t.allowed.push(kv.key.clone());
            }
            true
        });
    }

    /// Redacts a record's attributes and writes its summary onto them.
    fn record(&self, attrs: &mut Vec<KeyValue>, extra: Tally) {
        let mut t = extra;
        self.attrs(attrs, &mut t);
        self.summarize(attrs, t, "redaction");
    }

    fn summarize(&self, attrs: &mut Vec<KeyValue>, t: Tally, prefix: &str) {
        if self.summary == Summary::Silent {
            return;
        }
        let mut put = |key: String, v: any_value::Value| {
            attrs.retain(|kv| kv.key != key);
            attrs.push(KeyValue {
                key,
                value: Some(AnyValue { value: Some(v) }),
                ..Default::default()
            });
        };
        for (name, mut keys) in [
            ("redacted", t.redacted),
            ("masked", t.masked),
            ("allowed", t.allowed),
        ] {
            if keys.is_empty() {
                continue;
            }
            if self.summary == Summary::Debug {
                keys.sort();
                put(
                    format!("{prefix}.{name}.keys"),
                    any_value::Value::StringValue(keys.join(",")),
                );
            }
            put(
                format!("{prefix}.{name}.count"),
                any_value::Value::IntValue(keys.len() as i64),
            );
        }
        if t.ignored > 0 {
            put(
                format!("{prefix}.ignored.count"),
                any_value::Value::IntValue(t.ignored as i64),
            );
        }
    }
}

impl Transform for Redaction {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        match batch {
            Batch::Traces(rs) => {
                for r in rs.iter_mut() {
                    if let Some(res) = r.resource.as_mut() {
                        self.attrs(&mut res.attributes, &mut Tally::default());
                    }
                    for span in r.scope_spans.iter_mut().flat_map(|s| &mut s.spans) {
                        for ev in &mut span.events {
                            self.attrs(&mut ev.attributes, &mut Tally::default());
                        }
                        self.record(&mut span.attributes, Tally::default());
                    }
                }
            }
            Batch::Logs(rl) => {
                for r in rl.iter_mut() {
                    if let Some(res) = r.resource.as_mut() {
                        self.attrs(&mut res.attributes, &mut Tally::default());
                    }
                    for log in r.scope_logs.iter_mut().flat_map(|s| &mut s.log_records) {
                        self.record(&mut log.attributes, Tally::default());
                        // A map body gets the same treatment, summarized under `redaction.body`.
                        if let Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(kv)),
                        }) = log.body.as_mut()
                        {
                            let mut t = Tally::default();
                            self.attrs(&mut kv.values, &mut t);
                            self.summarize(&mut log.attributes, t, "redaction.body");
                        }
                    }
                }
            }
            Batch::Metrics(rm) => {
                for r in rm.iter_mut() {
                    if let Some(res) = r.resource.as_mut() {
                        self.attrs(&mut res.attributes, &mut Tally::default());
                    }
                    for m in r.scope_metrics.iter_mut().flat_map(|s| &mut s.metrics) {
                        match &mut m.data {
                            Some(Data::Gauge(g)) => g
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.record(&mut p.attributes, Tally::default())),
                            Some(Data::Sum(s)) => s
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.record(&mut p.attributes, Tally::default())),
                            Some(Data::Histogram(h)) => h
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.record(&mut p.attributes, Tally::default())),
                            Some(Data::ExponentialHistogram(h)) => h
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.record(&mut p.attributes, Tally::default())),
                            Some(Data::Summary(s)) => s
                                .data_points
                                .iter_mut()
                                .for_each(|p| self.record(&mut p.attributes, Tally::default())),
                            None => {}
                        }
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

    fn redaction(text: &str) -> Result<Redaction, DeError> {
        compile(&yaml(text).unwrap())
    }

    fn span_attrs(r: &Redaction, attrs: Vec<KeyValue>) -> Vec<(String, String)> {
        let mut b = testdata::spans("svc", 1, 1);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[0].attributes = attrs;
        }
        r.apply(&mut b).unwrap();
        let Batch::Traces(rs) = &b else {
            unreachable!()
        };
        let mut out: Vec<(String, String)> = rs[0].scope_spans[0].spans[0]
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    crate::signal::value::text(kv.value.as_ref().unwrap()).into_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn allow_list_mask_and_summary() {
        let r = redaction(
            "allowed_keys: [description, group, id, name, card]\nignored_keys: [safe_attribute]\nblocked_values: ['4[0-9]{12}(?:[0-9]{3})?', '(5[1-5][0-9]{14})']\nsummary: debug\n",
        )
        .unwrap();
        let got = span_attrs(
            &r,
            vec![
                testdata::kv("name", "placeholder"),
                testdata::kv("card", "card 4111111111111111 and 5555555555554444"),
                testdata::kv("safe_attribute", "4111111111111112"),
                testdata::kv("credit_card", "4111111111111111"),
                testdata::kv("password", "x"),
            ],
        );
        assert_eq!(
            got,
            vec![
                p("card", "card **** and ****"),
                p("name", "placeholder"),
                p("redaction.allowed.count", "1"),
                p("redaction.allowed.keys", "name"),
                p("redaction.ignored.count", "1"),
                p("redaction.masked.count", "1"),
                p("redaction.masked.keys", "card"),
                p("redaction.redacted.count", "2"),
                p("redaction.redacted.keys", "credit_card,password"),
                p("safe_attribute", "4111111111111112"),
            ]
        );
        // Fail-closed: nothing allowed, everything goes; `info` gives counts only.
        let r = redaction("summary: info\n").unwrap();
        assert_eq!(
            span_attrs(&r, vec![testdata::kv("a", "b")]),
            vec![p("redaction.redacted.count", "1")]
        );
    }

    #[test]
    fn hashes_key_patterns_allowed_values_and_all_types() {
        let r = redaction("allow_all_keys: true\nblocked_values: ['\\d{4}']\nhash_function: sha1\nblocked_key_patterns: ['.*token.*']\nallowed_values: ['.+@example\\.com']\nredact_all_types: true\n").unwrap();
        let sha1 = |s: &str| {
            use sha1::Digest;
            hex::encode(sha1::Sha1::digest(s.as_bytes()))
        };
        let mut attrs = vec![
            testdata::kv("pin", "pin 1234"),
            testdata::kv("api_token", "abc"),
            testdata::kv("email", "1234@example.com"),
        ];
        attrs.push(KeyValue {
            key: "n".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(98765)),
            }),
            ..Default::default()
        });
        let got = span_attrs(&r, attrs);
        assert_eq!(
            got,
            vec![
                p("api_token", &sha1("abc")),
                p("email", "1234@example.com"),
                p("n", &format!("{}5", sha1("9876"))),
                p("pin", &format!("pin {}", sha1("1234"))),
            ]
        );
        let r = redaction("allow_all_keys: true\nblocked_values: ['x']\nhash_function: hmac-sha256\nhmac_key: '0123456789abcdef0123456789abcdef'\n").unwrap();
        let got = span_attrs(&r, vec![testdata::kv("k", "x")]);
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            b"0123456789abcdef0123456789abcdef",
        );
        assert_eq!(
            got,
            vec![p("k", &hex::encode(aws_lc_rs::hmac::sign(&key, b"x")))]
        );
    }

    #[test]
    fn logs_bodies_and_points() {
        let r = redaction("allowed_keys: [keep]\nsummary: info\n").unwrap();
        let mut b = testdata::logs(1);
        if let Batch::Logs(rl) = &mut b {
            let l = &mut rl[0].scope_logs[0].log_records[0];
            l.attributes = vec![testdata::kv("keep", "1"), testdata::kv("drop", "2")];
            l.body = Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(
                    opentelemetry_proto::tonic::common::v1::KeyValueList {
                        values: vec![testdata::kv("secret", "s"), testdata::kv("keep", "k")],
                    },
                )),
            });
        }
        r.apply(&mut b).unwrap();
        let Batch::Logs(rl) = &b else { unreachable!() };
        let l = &rl[0].scope_logs[0].log_records[0];
        let keys: Vec<&str> = l.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "keep",
                "redaction.redacted.count",
                "redaction.allowed.count",
                "redaction.body.redacted.count",
                "redaction.body.allowed.count"
            ]
        );
        let Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(body)),
        }) = &l.body
        else {
            panic!()
        };
        assert_eq!(
            body.values
                .iter()
                .map(|kv| kv.key.as_str())
                .collect::<Vec<_>>(),
            ["keep"]
        );
        assert!(
            rl[0].resource.as_ref().unwrap().attributes.is_empty(),
            "resource attributes are redacted too"
        );
        let mut m = testdata::gauge(1);
        if let Batch::Metrics(rm) = &mut m
            && let Some(Data::Gauge(g)) = &mut rm[0].scope_metrics[0].metrics[0].data
        {
            g.data_points[0].attributes = vec![testdata::kv("keep", "1"), testdata::kv("x", "2")];
        }
        r.apply(&mut m).unwrap();
        let Batch::Metrics(rm) = &m else {
            unreachable!()
        };
        let Some(Data::Gauge(g)) = &rm[0].scope_metrics[0].metrics[0].data else {
            panic!()
        };
        assert_eq!(g.data_points[0].attributes[0].key, "keep");
        assert_eq!(g.data_points[0].attributes.len(), 3);
    }

    #[test]
    fn located_errors() {
        let e = redaction("blocked_values: ['ok', '(']\n").err().unwrap();
        assert_eq!(e.path_string(), "blocked_values[1]");
        let e = redaction("hash_function: sha256\n").err().unwrap();
        assert!(e.msg.contains("expected md5, sha1, sha3"), "{}", e.msg);
        let e = redaction("hash_function: hmac-sha512\nhmac_key: short\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("at least 64 bytes"), "{}", e.msg);
        let e = redaction("summary: loud\n").err().unwrap();
        assert_eq!(e.path_string(), "summary");
    }
}
