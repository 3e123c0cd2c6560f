//! The Collector's `include`/`exclude` match properties (its `filterconfig.MatchProperties`),
//! shared by the `attributes` processor and the legacy form of `filter`: an item matches when
//! every criterion given matches (any listed name; every listed attribute), by exact value
//! (`match_type: strict`) or regular expression (`regexp`, anchored at both ends as RE2's
//! full match is in the Collector).

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use regex::Regex;
use serde::Deserialize;

use crate::config::key_err;
use crate::config::{DeError, Node};
use crate::signal::Signal;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

/// A scalar attribute value in a config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttrMatch {
    /// `Key` too, as older Collector docs write it.
    #[serde(alias = "Key")]
    pub key: String,
    /// Absent: the key only has to exist.
    #[serde(default, alias = "Value")]
    pub value: Option<Scalar>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LibraryMatch {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeverityNumberMatch {
    /// Lowest severity that matches: a number or a name (`INFO`, `warn`, `ERROR2`, ...).
    pub min: Scalar,
    /// Whether records without a severity number match. Default false.
    #[serde(default)]
    pub match_undefined: bool,
}

/// Accepted for compatibility; the regex cache is not needed here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegexpConfig {
    #[serde(default)]
    pub cacheenabled: bool,
    #[serde(default)]
    pub cachemaxnumentries: usize,
}

/// `include:` / `exclude:`. Both the `attributes` processor's names and the legacy `filter`
/// processor's names are accepted (`log_bodies` or `bodies`, `resources` or
/// `resource_attributes`, `attributes` or `record_attributes`, ...).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    pub match_type: Option<MatchType>,
    #[serde(default)]
    pub regexp: Option<RegexpConfig>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub span_names: Vec<String>,
    #[serde(default)]
    pub span_kinds: Vec<String>,
    #[serde(default)]
    pub metric_names: Vec<String>,
    #[serde(default, alias = "bodies")]
    pub log_bodies: Vec<String>,
    #[serde(default, alias = "severity_texts")]
    pub log_severity_texts: Vec<String>,
    #[serde(default, alias = "severity_number")]
    pub log_severity_number: Option<SeverityNumberMatch>,
    #[serde(default, alias = "record_attributes")]
    pub attributes: Vec<AttrMatch>,
    #[serde(default, alias = "resource_attributes")]
    pub resources: Vec<AttrMatch>,
    #[serde(default)]
    pub libraries: Vec<LibraryMatch>,
}

/// One string criterion: exact or regex.
#[derive(Debug, Clone)]
enum StrMatch {
    Exact(String),
    Re(Regex),
}

impl StrMatch {
    fn is_match(&self, s: &str) -> bool {
        match self {
            StrMatch::Exact(e) => e == s,
            StrMatch::Re(r) => r.is_match(s),
        }
    }
}

#[derive(Debug, Clone)]
struct AttrRule {
    key: String,
    value: Option<ValueRule>,
}

#[derive(Debug, Clone)]
enum ValueRule {
    Exact(Scalar),
    Re(Regex),
}

/// A compiled `include` or `exclude`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    services: Vec<StrMatch>,
    span_names: Vec<StrMatch>,
    span_kinds: Vec<i32>,
    metric_names: Vec<StrMatch>,
    bodies: Vec<StrMatch>,
    severity_texts: Vec<StrMatch>,
    severity_min: Option<(i32, bool)>,
    attributes: Vec<AttrRule>,
    resources: Vec<AttrRule>,
    libraries: Vec<(StrMatch, Option<StrMatch>)>,
}

/// The item a matcher looks at.
pub struct Item<'a> {
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
    pub span: Option<&'a Span>,
    pub log: Option<&'a LogRecord>,
    pub metric_name: Option<&'a str>,
    /// The item's own attributes (span, record or data point).
    pub attributes: &'a [KeyValue],
}

impl Matcher {
    /// Compiles `cfg`, found at `node` (whose key path is `at`), for `signal`.
    pub fn new(
        cfg: &MatchConfig,
        signal: Signal,
        node: &Node,
        at: &[&str],
    ) -> Result<Matcher, DeError> {
        let err = |key: &str, msg: String| {
            let mut path = at.to_vec();
            path.push(key);
            key_err(node, &path, msg)
        };
        let Some(match_type) = cfg.match_type else {
            return Err(err(
                "match_type",
                "match_type is required: strict or regexp".into(),
            ));
        };
        let strs = |key: &str, list: &[String]| -> Result<Vec<StrMatch>, DeError> {
            list.iter()
                .map(|s| match match_type {
                    MatchType::Strict => Ok(StrMatch::Exact(s.clone())),
                    MatchType::Regexp => anchored(s)
                        .map(StrMatch::Re)
                        .map_err(|e| err(key, format!("invalid regular expression {s:?}: {e}"))),
                })
                .collect()
        };
        let attrs = |key: &str, list: &[AttrMatch]| -> Result<Vec<AttrRule>, DeError> {
            list.iter()
                .map(|a| {
                    let value = match (&a.value, match_type) {
                        (None, _) => None,
                        (Some(v), MatchType::Strict) => Some(ValueRule::Exact(v.clone())),
                        (Some(v), MatchType::Regexp) => {
                            let Scalar::Str(s) = v else {
                                return Err(err(
                                    key,
                                    format!(
                                        "attribute {:?}: with match_type regexp the value must be a string",
                                        a.key
                                    ),
                                ));
                            };
                            Some(ValueRule::Re(anchored(s).map_err(|e| {
                                err(key, format!("invalid regular expression {s:?}: {e}"))
                            })?))
                        }
                    };
                    Ok(AttrRule {
                        key: a.key.clone(),
                        value,
                    })
                })
                .collect()
        };
        let not_for = |key: &str, given: bool| -> Result<(), DeError> {
            if given {
                Err(err(key, format!("{key} does not apply to {signal}")))
            } else {
                Ok(())
            }
        };
        match signal {
            Signal::Traces => {
                not_for("metric_names", !cfg.metric_names.is_empty())?;
                not_for("log_bodies", !cfg.log_bodies.is_empty())?;
                not_for("log_severity_texts", !cfg.log_severity_texts.is_empty())?;
                not_for("log_severity_number", cfg.log_severity_number.is_some())?;
            }
            Signal::Logs => {
                not_for("metric_names", !cfg.metric_names.is_empty())?;
                not_for("span_names", !cfg.span_names.is_empty())?;
                not_for("span_kinds", !cfg.span_kinds.is_empty())?;
            }
            // No processor takes profiles (their factories do not name the signal).
            Signal::Profiles => {}
            Signal::Metrics => {
                not_for("span_names", !cfg.span_names.is_empty())?;
                not_for("span_kinds", !cfg.span_kinds.is_empty())?;
                not_for("log_bodies", !cfg.log_bodies.is_empty())?;
                not_for("log_severity_texts", !cfg.log_severity_texts.is_empty())?;
                not_for("log_severity_number", cfg.log_severity_number.is_some())?;
            }
        }
        let span_kinds = cfg
            .span_kinds
            .iter()
            .map(|k| {
                span_kind(k).ok_or_else(|| {
                    err(
                        "span_kinds",
                        format!(
                            "unknown span kind {k:?}: use SPAN_KIND_SERVER, SPAN_KIND_CLIENT, ..."
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let severity_min = match &cfg.log_severity_number {
            None => None,
            Some(s) => Some((
                severity(&s.min).ok_or_else(|| {
                    err(
                        "log_severity_number",
                        format!("unknown severity {:?}: a number 1-24 or a name such as INFO, WARN, ERROR2", s.min),
                    )
                })?,
                s.match_undefined,
            )),
        };
        let libraries = cfg
            .libraries
            .iter()
            .map(|l| {
                let name = strs("libraries", std::slice::from_ref(&l.name))?.remove(0);
                let version = match &l.version {
                    Some(v) => Some(strs("libraries", std::slice::from_ref(v))?.remove(0)),
                    None => None,
                };
                Ok((name, version))
            })
            .collect::<Result<_, DeError>>()?;
        let m = Matcher {
            services: strs("services", &cfg.services)?,
            span_names: strs("span_names", &cfg.span_names)?,
            span_kinds,
            metric_names: strs("metric_names", &cfg.metric_names)?,
            bodies: strs("log_bodies", &cfg.log_bodies)?,
            severity_texts: strs("log_severity_texts", &cfg.log_severity_texts)?,
            severity_min,
            attributes: attrs("attributes", &cfg.attributes)?,
            resources: attrs("resources", &cfg.resources)?,
            libraries,
        };
        if m.is_empty() {
            return Err(key_err(
                node,
                at,
                "at least one property to match on is required (services, span_names, attributes, resources, metric_names, ...)",
            ));
        }
        Ok(m)
    }

    fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.span_names.is_empty()
            && self.span_kinds.is_empty()
            && self.metric_names.is_empty()
            && self.bodies.is_empty()
            && self.severity_texts.is_empty()
            && self.severity_min.is_none()
            && self.attributes.is_empty()
            && self.resources.is_empty()
            && self.libraries.is_empty()
    }

    pub fn matches(&self, it: &Item<'_>) -> bool {
        let any =
            |rules: &[StrMatch], s: &str| rules.is_empty() || rules.iter().any(|r| r.is_match(s));
        if !self.services.is_empty() {
            let svc = find(it.resource, "service.name").map(text);
            if !svc.is_some_and(|s| any(&self.services, &s)) {
                return false;
            }
        }
        if !self.span_names.is_empty() && !it.span.is_some_and(|s| any(&self.span_names, &s.name)) {
            return false;
        }
        if !self.span_kinds.is_empty()
            && !it.span.is_some_and(|s| self.span_kinds.contains(&s.kind))
        {
            return false;
        }
        if !self.metric_names.is_empty()
            && !it.metric_name.is_some_and(|n| any(&self.metric_names, n))
        {
            return false;
        }
        if !self.bodies.is_empty()
            && !it
                .log
                .and_then(|l| l.body.as_ref())
                .is_some_and(|b| any(&self.bodies, &text(b)))
        {
            return false;
        }
        if !self.severity_texts.is_empty()
            && !it
                .log
                .is_some_and(|l| any(&self.severity_texts, &l.severity_text))
        {
            return false;
        }
        if let Some((min, undefined)) = self.severity_min {
            let ok = it.log.is_some_and(|l| {
                if l.severity_number == 0 {
                    undefined
                } else {
                    l.severity_number >= min
                }
            });
            if !ok {
                return false;
            }
        }
        if !self.libraries.is_empty() {
            let ok = it.scope.is_some_and(|s| {
                self.libraries.iter().any(|(name, version)| {
                    name.is_match(&s.name)
                        && version.as_ref().is_none_or(|v| v.is_match(&s.version))
                })
            });
            if !ok {
                return false;
            }
        }
        attrs_match(&self.attributes, it.attributes) && attrs_match(&self.resources, it.resource)
    }
}

fn attrs_match(rules: &[AttrRule], attrs: &[KeyValue]) -> bool {
    rules.iter().all(|r| {
        let Some(v) = find(attrs, &r.key) else {
            return false;
        };
        match &r.value {
            None => true,
            Some(ValueRule::Re(re)) => re.is_match(&text(v)),
            Some(ValueRule::Exact(want)) => scalar_eq(want, v),
        }
    })
}

fn scalar_eq(want: &Scalar, v: &AnyValue) -> bool {
    match (want, v.value.as_ref()) {
        (Scalar::Str(w), Some(any_value::Value::StringValue(s))) => w == s,
        (Scalar::Int(w), Some(any_value::Value::IntValue(i))) => w == i,
        (Scalar::Float(w), Some(any_value::Value::DoubleValue(d))) => w == d,
        (Scalar::Int(w), Some(any_value::Value::DoubleValue(d))) => *w as f64 == *d,
        (Scalar::Bool(w), Some(any_value::Value::BoolValue(b))) => w == b,
        _ => false,
    }
}

pub use crate::signal::value::{find, text};

/// A regex that must match the whole string.
fn anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

fn span_kind(k: &str) -> Option<i32> {
    Some(match k {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        _ => return None,
    })
}

/// A severity number from a number or a name (`INFO`, `Info3`, `WARN`).
pub fn severity(s: &Scalar) -> Option<i32> {
    match s {
        Scalar::Int(i) if (1..=24).contains(i) => Some(*i as i32),
        Scalar::Str(name) => crate::ottl::severity_number(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_node, node::parse as yaml};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn matcher(text: &str, signal: Signal) -> Result<Matcher, DeError> {
        let node = yaml(text).unwrap();
        let cfg: MatchConfig = from_node(&node)?;
        Matcher::new(&cfg, signal, &node, &[])
    }

    #[test]
    fn strict_and_regexp_spans() {
        let res = vec![kv("service.name", "checkout"), kv("env", "prod")];
        let span = Span {
            name: "GET /health".into(),
            kind: 2,
            attributes: vec![kv("http.route", "/health")],
            ..Default::default()
        };
        let item = Item {
            resource: &res,
            scope: None,
            span: Some(&span),
            log: None,
            metric_name: None,
            attributes: &span.attributes,
        };
        let m = |t: &str| matcher(t, Signal::Traces).unwrap().matches(&item);
        assert!(m("match_type: strict\nservices: [checkout, other]\n"));
        assert!(!m("match_type: strict\nservices: [check]\n"));
        assert!(m("match_type: regexp\nservices: [\"check.*\"]\n"));
        // Regexps match the whole string.
        assert!(!m("match_type: regexp\nservices: [check]\n"));
        assert!(m(
            "match_type: strict\nspan_names: [GET /health]\nspan_kinds: [SPAN_KIND_SERVER]\n"
        ));
        assert!(!m("match_type: strict\nspan_kinds: [SPAN_KIND_CLIENT]\n"));
        assert!(m(
            "match_type: strict\nattributes: [{key: http.route, value: /health}]\nresources: [{key: env}]\n"
        ));
        assert!(!m(
            "match_type: strict\nattributes: [{key: http.route, value: /health}, {key: missing}]\n"
        ));
        assert!(m(
            "match_type: regexp\nattributes: [{key: http.route, value: \"/h.*\"}]\n"
        ));
    }

    #[test]
    fn logs_and_metrics() {
        let rec = LogRecord {
            severity_number: 13,
            severity_text: "WARN".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("disk full".into())),
            }),
            ..Default::default()
        };
        let item = Item {
            resource: &[],
            scope: None,
            span: None,
            log: Some(&rec),
            metric_name: None,
            attributes: &[],
        };
        let m = |t: &str| matcher(t, Signal::Logs).unwrap().matches(&item);
        assert!(m("match_type: strict\nseverity_number: {min: INFO}\n"));
        assert!(!m(
            "match_type: strict\nlog_severity_number: {min: ERROR}\n"
        ));
        assert!(m(
            "match_type: regexp\nbodies: [\"disk.*\"]\nseverity_texts: [WARN]\n"
        ));
        let item = Item {
            resource: &[],
            scope: None,
            span: None,
            log: None,
            metric_name: Some("http.server.duration"),
            attributes: &[],
        };
        let m = |t: &str| matcher(t, Signal::Metrics).unwrap().matches(&item);
        assert!(m("match_type: regexp\nmetric_names: [\"http\\\\..*\"]\n"));
        assert!(!m("match_type: strict\nmetric_names: [http]\n"));
    }

    #[test]
    fn config_errors_are_located() {
        let e = matcher("services: [a]\n", Signal::Traces).unwrap_err();
        assert!(e.msg.contains("match_type is required"), "{e:?}");
        let e = matcher("match_type: regexp\nspan_names: [\"(\"]\n", Signal::Traces).unwrap_err();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("span_names", 2)
        );
        let e = matcher("match_type: strict\nspan_names: [a]\n", Signal::Logs).unwrap_err();
        assert!(e.msg.contains("does not apply to logs"), "{e:?}");
        let e = matcher("match_type: strict\nspan_kinds: [SERVER]\n", Signal::Traces).unwrap_err();
        assert!(e.msg.contains("unknown span kind"), "{e:?}");
        let e = matcher("match_type: strict\n", Signal::Traces).unwrap_err();
        assert!(e.msg.contains("at least one property"), "{e:?}");
        assert_eq!(severity(&Scalar::Str("warn2".into())), Some(14));
        assert_eq!(severity(&Scalar::Int(25)), None);
    }
}
