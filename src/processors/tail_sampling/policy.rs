//! Policies compiled from their config, and how each decides on a trace.

use super::*;
use crate::signal::split::TraceId;

/// One policy's verdict, with the Collector's inverted outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Decision {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
    /// A `drop` policy matched: the trace is not sampled, whatever the others say.
    Dropped,
}

impl Decision {
    fn samples(self) -> bool {
        matches!(self, Decision::Sampled | Decision::InvertSampled)
    }
}

#[derive(Debug)]
pub(super) enum Rule {
    Always,
    Latency {
        min_ns: u64,
        max_ns: u64,
    },
    Status(Vec<i32>),
    Probabilistic {
        salt: String,
        threshold: u64,
    },
    Str {
        key: String,
        values: Vec<String>,
        regexes: Vec<Regex>,
        invert: bool,
    },
    Numeric {
        key: String,
        min: i64,
        max: i64,
        invert: bool,
    },
    Bool {
        key: String,
        value: bool,
        invert: bool,
    },
    SpanCount {
        min: usize,
        max: usize,
    },
    Rate {
        per_sec: u64,
        window: Mutex<(u64, u64)>,
    },
    And(Vec<Policy>),
    TraceState {
        key: String,
        values: Vec<String>,
    },
    /// Any span with the W3C `sampled` flag.
    TraceFlags,
    Ottl {
        span: Vec<crate::ottl::Condition>,
        spanevent: Vec<crate::ottl::Condition>,
        /// `propagate`: an error leaves the trace unsampled by this policy; otherwise the
        /// failing condition counts as false (`ignore` logs, `silent` does not).
        log_errors: bool,
    },
    Not(Box<Policy>),
    Drop(Vec<Policy>),
    Composite {
        max_total: u64,
        /// (sub-policy, its spans per second) in `policy_order`.
        subs: Vec<(Policy, u64)>,
        /// The second and what each sub-policy sampled in it.
        window: Mutex<(u64, Vec<u64>)>,
    },
}

#[derive(Debug)]
pub(super) struct Policy {
    pub(super) name: String,
    pub(super) rule: Rule,
}

pub(super) fn compile(p: &PolicyCfg, node: &Node, path: &[String]) -> Result<Policy, DeError> {
    let err = |key: &str, msg: String| {
        let mut n = node;
        for k in path.iter().map(String::as_str).chain([key]) {
            if let Some(c) = n.get(k) {
                n = c;
            }
        }
        let mut full = path.to_vec();
        full.push(key.to_owned());
        DeError {
            pos: Some(n.pos),
            path: full,
            msg,
        }
    };
    pub(super) fn need<'a, T>(
        v: &'a Option<T>,
        kind: &str,
        err: &dyn Fn(&str, String) -> DeError,
    ) -> Result<&'a T, DeError> {
        v.as_ref().ok_or_else(|| {
            err(
                kind,
                format!("policy type {kind} needs its `{kind}:` settings"),
            )
        })
    }
    let rule = match p.kind.as_str() {
        "always_sample" => Rule::Always,
        "latency" => {
            let c = need(&p.latency, "latency", &err)?;
            if c.threshold_ms == 0 && c.upper_threshold_ms == 0 {
                return Err(err("latency", "set threshold_ms".into()));
            }
            Rule::Latency {
                min_ns: c.threshold_ms * 1_000_000,
                max_ns: c.upper_threshold_ms * 1_000_000,
            }
        }
        "status_code" => {
            let c = need(&p.status_code, "status_code", &err)?;
            let codes = c
                .status_codes
                .iter()
                .map(|s| match s.as_str() {
                    "UNSET" => Ok(0),
                    "OK" => Ok(1),
                    "ERROR" => Ok(2),
                    other => Err(err(
                        "status_code",
                        format!("unknown status code {other:?}: use OK, ERROR or UNSET"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if codes.is_empty() {
                return Err(err("status_code", "status_codes must not be empty".into()));
            }
            Rule::Status(codes)
        }
        "probabilistic" => {
            let c = need(&p.probabilistic, "probabilistic", &err)?;
            if !(0.0..=100.0).contains(&c.sampling_percentage) {
                return Err(err(
                    "probabilistic",
                    "sampling_percentage must be 0-100".into(),
                ));
            }
            Rule::Probabilistic {
                salt: c.hash_salt.clone(),
                threshold: (c.sampling_percentage / 100.0 * i64::MAX as f64) as u64,
            }
        }
        "string_attribute" => {
            let c = need(&p.string_attribute, "string_attribute", &err)?;
            let regexes = if c.enabled_regex_matching {
                c.values
                    .iter()
                    .map(|v| {
                        Regex::new(v).map_err(|e| {
                            err(
                                "string_attribute",
                                format!("invalid regular expression {v:?}: {e}"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            Rule::Str {
                key: c.key.clone(),
                values: c.values.clone(),
                regexes,
                invert: c.invert_match,
            }
        }
        "numeric_attribute" => {
            let c = need(&p.numeric_attribute, "numeric_attribute", &err)?;
            Rule::Numeric {
                key: c.key.clone(),
                min: c.min_value.unwrap_or(i64::MIN),
                max: c.max_value.unwrap_or(i64::MAX),
                invert: c.invert_match,
            }
        }
        "boolean_attribute" => {
            let c = need(&p.boolean_attribute, "boolean_attribute", &err)?;
            Rule::Bool {
                key: c.key.clone(),
                value: c.value,
                invert: c.invert_match,
            }
        }
        "span_count" => {
            let c = need(&p.span_count, "span_count", &err)?;
            Rule::SpanCount {
                min: c.min_spans,
                max: if c.max_spans == 0 {
                    usize::MAX
                } else {
                    c.max_spans
                },
            }
        }
        "rate_limiting" => {
            let c = need(&p.rate_limiting, "rate_limiting", &err)?;
            Rule::Rate {
                per_sec: c.spans_per_second,
                window: Mutex::new((0, 0)),
            }
        }
        "and" => {
            let c = need(&p.and, "and", &err)?;
            if c.and_sub_policy.is_empty() {
                return Err(err("and", "and_sub_policy must not be empty".into()));
            }
            let subs = c
                .and_sub_policy
                .iter()
                .enumerate()
                .map(|(i, sp)| {
                    let mut sub = path.to_vec();
                    sub.extend(["and".into(), "and_sub_policy".into(), format!("[{i}]")]);
                    compile(sp, node, &sub)
                })
                .collect::<Result<_, _>>()?;
            Rule::And(subs)
        }
        "trace_state" => {
            let c = need(&p.trace_state, "trace_state", &err)?;
            if c.key.is_empty() || c.values.is_empty() {
                return Err(err("trace_state", "set `key` and `values`".into()));
            }
            Rule::TraceState {
                key: c.key.clone(),
                values: c.values.clone(),
            }
        }
        "trace_flags" => Rule::TraceFlags,
        "ottl_condition" => {
            let c = need(&p.ottl_condition, "ottl_condition", &err)?;
            if c.span.is_empty() && c.spanevent.is_empty() {
                return Err(err(
                    "ottl_condition",
                    "set `span` or `spanevent` conditions".into(),
                ));
            }
            let log_errors = match c.error_mode.as_deref().unwrap_or("propagate") {
                "propagate" | "ignore" => true,
                "silent" => false,
                o => {
                    return Err(err(
                        "ottl_condition",
                        format!("error_mode `{o}`: expected propagate, ignore or silent"),
                    ));
                }
            };
            let parse = |list: &[String], ctx: crate::ottl::Context, key: &str| {
                list.iter()
                    .enumerate()
                    .map(|(i, text)| {
                        crate::ottl::Condition::parse(text, ctx)
                            .map_err(|e| err("ottl_condition", format!("{key}[{i}] `{text}`: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            Rule::Ottl {
                span: parse(&c.span, crate::ottl::Context::Span, "span")?,
                spanevent: parse(&c.spanevent, crate::ottl::Context::SpanEvent, "spanevent")?,
                log_errors,
            }
        }
        "not" => {
            let c = need(&p.not, "not", &err)?;
            let mut sub = path.to_vec();
            sub.extend(["not".into(), "not_sub_policy".into()]);
            Rule::Not(Box::new(compile(&c.not_sub_policy, node, &sub)?))
        }
        "drop" => {
            let c = need(&p.drop, "drop", &err)?;
            if c.drop_sub_policy.is_empty() {
                return Err(err("drop", "drop_sub_policy must not be empty".into()));
            }
            Rule::Drop(
                c.drop_sub_policy
                    .iter()
                    .enumerate()
                    .map(|(i, sp)| {
                        let mut sub = path.to_vec();
                        sub.extend(["drop".into(), "drop_sub_policy".into(), format!("[{i}]")]);
                        compile(sp, node, &sub)
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        "composite" => {
            let c = need(&p.composite, "composite", &err)?;
            if c.composite_sub_policy.is_empty() {
                return Err(err(
                    "composite",
                    "composite_sub_policy must not be empty".into(),
                ));
            }
            let total: u64 = c.rate_allocation.iter().map(|r| r.percent).sum();
            if total > 100 {
                return Err(err(
                    "composite",
                    format!("rate_allocation adds up to {total}%, more than 100%"),
                ));
            }
            let equal = c.max_total_spans_per_second / c.composite_sub_policy.len() as u64;
            let mut order: Vec<&str> = c.policy_order.iter().map(String::as_str).collect();
            for sp in &c.composite_sub_policy {
                if !order.contains(&sp.name.as_str()) {
                    order.push(&sp.name);
                }
            }
            let mut subs = Vec::new();
            for name in order {
                let Some(i) = c.composite_sub_policy.iter().position(|sp| sp.name == name) else {
                    return Err(err(
                        "composite",
                        format!(
                            "policy_order names `{name}`, which is not in composite_sub_policy"
                        ),
                    ));
                };
                let mut sub = path.to_vec();
                sub.extend([
                    "composite".into(),
                    "composite_sub_policy".into(),
                    format!("[{i}]"),
                ]);
                let policy = compile(&c.composite_sub_policy[i], node, &sub)?;
                let rate = c
                    .rate_allocation
                    .iter()
                    .find(|r| r.policy == name)
                    .map_or(equal, |r| c.max_total_spans_per_second * r.percent / 100);
                subs.push((policy, rate));
            }
            for r in &c.rate_allocation {
                if !c.composite_sub_policy.iter().any(|sp| sp.name == r.policy) {
                    return Err(err(
                        "composite",
                        format!(
                            "rate_allocation names `{}`, which is not in composite_sub_policy",
                            r.policy
                        ),
                    ));
                }
            }
            let n = subs.len();
            Rule::Composite {
                max_total: c.max_total_spans_per_second,
                subs,
                window: Mutex::new((0, vec![0; n])),
            }
        }
        other => {
            return Err(err(
                "type",
                format!(
                    "unknown policy type {other:?}; supported: always_sample, latency, status_code, probabilistic, string_attribute, numeric_attribute, boolean_attribute, span_count, rate_limiting, trace_state, trace_flags, ottl_condition, and, not, drop, composite"
                ),
            ));
        }
    };
    Ok(Policy {
        name: p.name.clone(),
        rule,
    })
}

pub(super) fn spans(fragments: &[ResourceSpans]) -> impl Iterator<Item = (&[KeyValue], &Span)> {
    fragments.iter().flat_map(|r| {
        let res: &[KeyValue] = r.resource.as_ref().map_or(&[], |r| &r.attributes);
        r.scope_spans
            .iter()
            .flat_map(move |s| s.spans.iter().map(move |sp| (res, sp)))
    })
}

pub(super) fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    crate::signal::value::find_value(attrs, key)
}

pub(super) fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

pub(super) fn invertible(matched: bool, invert: bool) -> Decision {
    match (matched, invert) {
        (true, false) => Decision::Sampled,
        (false, false) => Decision::NotSampled,
        (true, true) => Decision::InvertNotSampled,
        (false, true) => Decision::InvertSampled,
    }
}

impl Policy {
    pub(super) fn evaluate(&self, id: &TraceId, t: &Held) -> Decision {
        let yes = |b: bool| {
            if b {
                Decision::Sampled
            } else {
                Decision::NotSampled
            }
        };
        match &self.rule {
            Rule::Always => Decision::Sampled,
            Rule::Latency { min_ns, max_ns } => {
                let (mut first, mut last) = (u64::MAX, 0u64);
                for (_, s) in spans(&t.fragments) {
                    first = first.min(s.start_time_unix_nano);
                    last = last.max(s.end_time_unix_nano);
                }
                let d = last.saturating_sub(first);
                yes(d >= *min_ns && (*max_ns == 0 || d <= *max_ns))
            }
            Rule::Status(codes) => yes(spans(&t.fragments)
                .any(|(_, s)| codes.contains(&s.status.as_ref().map_or(0, |st| st.code)))),
            Rule::Probabilistic { salt, threshold } => {
                yes(fnv64(&[salt.as_bytes(), id]) & i64::MAX as u64 <= *threshold)
            }
            Rule::Str {
                key,
                values,
                regexes,
                invert,
            } => {
                let matches = |v: &any_value::Value| match v {
                    any_value::Value::StringValue(s) => {
                        if regexes.is_empty() {
                            values.iter().any(|x| x == s)
                        } else {
                            regexes.iter().any(|r| r.is_match(s))
                        }
                    }
                    _ => false,
                };
                let hit = spans(&t.fragments).any(|(res, s)| {
                    attr(&s.attributes, key).is_some_and(matches)
                        || attr(res, key).is_some_and(matches)
                });
                invertible(hit, *invert)
            }
            Rule::Numeric {
                key,
                min,
                max,
                invert,
            } => {
                let hit = spans(&t.fragments).any(|(res, s)| {
                    let v = attr(&s.attributes, key).or_else(|| attr(res, key));
                    match v {
                        Some(any_value::Value::IntValue(i)) => (*min..=*max).contains(i),
                        Some(any_value::Value::DoubleValue(d)) => {
                            *d >= *min as f64 && *d <= *max as f64
                        }
                        _ => false,
                    }
                });
                invertible(hit, *invert)
            }
            Rule::Bool { key, value, invert } => {
                let hit = spans(&t.fragments).any(|(res, s)| {
                    matches!(attr(&s.attributes, key).or_else(|| attr(res, key)),
                        Some(any_value::Value::BoolValue(b)) if b == value)
                });
                invertible(hit, *invert)
            }
            Rule::SpanCount { min, max } => yes((*min..=*max).contains(&t.spans)),
            Rule::Rate { per_sec, window } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
                if w.0 != now {
                    *w = (now, 0);
                }
                if w.1 + t.spans as u64 <= *per_sec {
                    w.1 += t.spans as u64;
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Rule::And(subs) => yes(subs.iter().all(|p| p.evaluate(id, t).samples())),
            Rule::TraceState { key, values } => yes(spans(&t.fragments).any(|(_, s)| {
                crate::ottl::eval::trace_state_get(&s.trace_state, key)
                    .is_some_and(|v| values.iter().any(|x| x == v))
            })),
            Rule::TraceFlags => yes(spans(&t.fragments).any(|(_, s)| s.flags & 1 == 1)),
            Rule::Ottl {
                span,
                spanevent,
                log_errors,
            } => yes(ottl_matches(t, span, spanevent, *log_errors)),
            Rule::Not(sub) => match sub.evaluate(id, t) {
                d if d.samples() => Decision::NotSampled,
                Decision::Dropped => Decision::Dropped,
                _ => Decision::Sampled,
            },
            Rule::Drop(subs) => {
                if subs.iter().all(|p| p.evaluate(id, t).samples()) {
                    Decision::Dropped
                } else {
                    Decision::NotSampled
                }
            }
            Rule::Composite {
                max_total,
                subs,
                window,
            } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
                if w.0 != now {
                    w.0 = now;
                    w.1.iter_mut().for_each(|c| *c = 0);
                }
                // The first sub-policy that samples decides, within its share of the rate.
                for (i, (p, rate)) in subs.iter().enumerate() {
                    if p.evaluate(id, t).samples() {
                        let after = w.1[i] + t.spans as u64;
                        if after <= *rate && after <= *max_total {
                            w.1[i] = after;
                            return Decision::Sampled;
                        }
                        return Decision::NotSampled;
                    }
                }
                Decision::NotSampled
            }
        }
    }
}

/// Whether any span (or span event) of the trace meets one of the conditions.
fn ottl_matches(
    t: &Held,
    span: &[crate::ottl::Condition],
    spanevent: &[crate::ottl::Condition],
    log_errors: bool,
) -> bool {
    use crate::ottl::eval::{EventCtx, Outer, SpanCtx};
    let check = |c: &crate::ottl::Condition, ctx: &dyn crate::ottl::Ctx| match c.eval(ctx) {
        Ok(b) => b,
        Err(e) => {
            if log_errors {
                tracing::debug!(condition = %c.text, error = %e, "tail_sampling: ottl_condition failed");
            }
            false
        }
    };
    t.fragments.iter().any(|r| {
        let resource: &[KeyValue] = r.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource_dropped = r
            .resource
            .as_ref()
            .map_or(0, |r| r.dropped_attributes_count);
        r.scope_spans.iter().any(|ss| {
            let outer = Outer {
                resource,
                resource_dropped,
                scope: ss.scope.as_ref(),
            };
            ss.spans.iter().any(|s| {
                let sc = SpanCtx {
                    outer: &outer,
                    span: s,
                };
                span.iter().any(|c| check(c, &sc))
                    || s.events.iter().enumerate().any(|(index, event)| {
                        let ec = EventCtx {
                            outer: &outer,
                            span: s,
                            event,
                            index,
                        };
                        spanevent.iter().any(|c| check(c, &ec))
                    })
            })
        })
    })
}
