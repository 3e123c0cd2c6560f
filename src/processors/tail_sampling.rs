//! `tail_sampling` processor: holds the spans of each trace for `decision_wait` after its first
//! span arrives, then decides on the whole trace with the configured policies and passes on
//! every span of a sampled trace together (no orphan spans). A trace is sampled when any policy
//! samples it, unless an inverted policy (`invert_match`) vetoes it, as in the Collector.
//!
//! Policies: `always_sample`, `latency` (`threshold_ms`, `upper_threshold_ms`: first start to
//! last end), `status_code` (`status_codes`: `OK`, `ERROR`, `UNSET`), `probabilistic`
//! (`sampling_percentage`, `hash_salt`: FNV-1a 64 of salt and trace id), `string_attribute`
//! (`key`, `values`, `enabled_regex_matching`, `invert_match`; span or resource attributes),
//! `numeric_attribute` (`key`, `min_value`, `max_value`, `invert_match`), `boolean_attribute`
//! (`key`, `value`, `invert_match`), `span_count` (`min_spans`, `max_spans`), `rate_limiting`
//! (`spans_per_second`) and `and` (`and_sub_policy`: all must sample).
//!
//! Memory is bounded by `num_traces`: past it the oldest undecided trace is dropped and counted
//! (`otelcol_processor_dropped_items{reason="evicted"}`). Decisions are remembered for the last
//! `num_traces` traces, so spans arriving after the decision follow it. Spans of traces not
//! sampled are counted with `reason="sampled"`. At shutdown every held trace is decided at once
//! and passed on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use regex::Regex;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, BuildError, ConsumeError, ConsumeResult, Consumer, Context, DynConsumer, Lifecycle,
    Parse, Processor, ProcessorConfig, Stability,
};
use crate::config::key_err;
use crate::config::{DeError, Node, from_node, units};
use crate::signal::{Batch, Signal};
use crate::telemetry::{PolicyLabels, ProcessorDropLabels, ProcessorLabels};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyCfg {
    pub threshold_ms: u64,
    /// 0: no upper bound.
    pub upper_threshold_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodeCfg {
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticCfg {
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttrCfg {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    /// Accepted for compatibility; regexes are compiled once here.
    pub cache_max_size: usize,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttrCfg {
    pub key: String,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttrCfg {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountCfg {
    pub min_spans: usize,
    /// 0: no maximum.
    pub max_spans: usize,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingCfg {
    pub spans_per_second: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AndCfg {
    pub and_sub_policy: Vec<PolicyCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyCfg {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub always_sample: Option<Empty>,
    #[serde(default)]
    pub latency: Option<LatencyCfg>,
    #[serde(default)]
    pub status_code: Option<StatusCodeCfg>,
    #[serde(default)]
    pub probabilistic: Option<ProbabilisticCfg>,
    #[serde(default)]
    pub string_attribute: Option<StringAttrCfg>,
    #[serde(default)]
    pub numeric_attribute: Option<NumericAttrCfg>,
    #[serde(default)]
    pub boolean_attribute: Option<BooleanAttrCfg>,
    #[serde(default)]
    pub span_count: Option<SpanCountCfg>,
    #[serde(default)]
    pub rate_limiting: Option<RateLimitingCfg>,
    #[serde(default)]
    pub and: Option<AndCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheCfg {
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Time from a trace's first span to its decision. Default 30s.
    #[serde(default = "thirty_s", deserialize_with = "units::duration")]
    pub decision_wait: Duration,
    /// Traces held at most. Default 50000.
    #[serde(default = "fifty_k")]
    pub num_traces: usize,
    /// Sizing hint for the trace table. Default 0.
    #[serde(default)]
    pub expected_new_traces_per_sec: usize,
    /// Decisions remembered for late spans (per outcome). Default `num_traces` each.
    #[serde(default)]
    pub decision_cache: Option<DecisionCacheCfg>,
    pub policies: Vec<PolicyCfg>,
}

fn thirty_s() -> Duration {
    Duration::from_secs(30)
}
fn fifty_k() -> usize {
    50_000
}

/// One policy's verdict, with the Collector's inverted outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
}

#[derive(Debug)]
enum Rule {
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
}

#[derive(Debug)]
struct Policy {
    name: String,
    rule: Rule,
}

fn compile(p: &PolicyCfg, node: &Node, path: &[String]) -> Result<Policy, DeError> {
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
    fn need<'a, T>(
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
        other => {
            return Err(err(
                "type",
                format!(
                    "unknown policy type {other:?}; supported: always_sample, latency, status_code, probabilistic, string_attribute, numeric_attribute, boolean_attribute, span_count, rate_limiting, and"
                ),
            ));
        }
    };
    Ok(Policy {
        name: p.name.clone(),
        rule,
    })
}

/// `tail_sampling`'s identity: its config name, other names, signals and stability.
pub const FACTORY: crate::component::Factory = crate::component::Factory::new(
    "tail_sampling",
    &[crate::signal::Signal::Traces],
    Stability::Alpha,
    Parse::Processor(parse),
);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.policies.is_empty() {
        return Err(key_err(
            node,
            &["policies"],
            "at least one policy is required",
        ));
    }
    if cfg.decision_wait.is_zero() {
        return Err(key_err(
            node,
            &["decision_wait"],
            "must be greater than zero",
        ));
    }
    if cfg.num_traces == 0 {
        return Err(key_err(node, &["num_traces"], "must be at least 1"));
    }
    let list = node.get("policies");
    for (i, p) in cfg.policies.iter().enumerate() {
        // Validate now (located errors); each pipeline compiles its own (rate windows).
        let item = match list.map(|n| &n.value) {
            Some(crate::config::node::Value::Seq(items)) => items.get(i),
            _ => None,
        };
        compile(p, item.unwrap_or(node), &[]).map_err(|mut e| {
            e.path.insert(0, format!("[{i}]"));
            e.path.insert(0, "policies".into());
            e
        })?;
    }
    Ok(Box::new(Factory {
        cfg,
        node: node.clone(),
    }))
}

struct Factory {
    cfg: Config,
    node: Node,
}

impl ProcessorConfig for Factory {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let items = match self.node.get("policies").map(|n| &n.value) {
            Some(crate::config::node::Value::Seq(items)) => items.clone(),
            _ => Vec::new(),
        };
        let policies = self
            .cfg
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| compile(p, items.get(i).unwrap_or(&self.node), &[]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BuildError::new(&ctx.id, e.msg))?;
        Ok(TailSampler::start(
            ctx,
            signal,
            next,
            self.cfg.clone(),
            policies,
        ))
    }
}

use crate::signal::split::{TraceId, split_by_trace};

struct Held {
    fragments: Vec<ResourceSpans>,
    spans: usize,
}

/// Remembered decisions, oldest forgotten first.
struct Decided {
    map: HashMap<TraceId, bool>,
    order: VecDeque<TraceId>,
    cap: usize,
}

impl Decided {
    fn insert(&mut self, id: TraceId, sampled: bool) {
        if self.map.insert(id, sampled).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

struct State {
    held: HashMap<TraceId, Held>,
    order: VecDeque<(Instant, TraceId)>,
    decided: Decided,
}

struct Inner {
    id: String,
    cfg: Config,
    policies: Vec<Policy>,
    next: DynConsumer,
    state: Mutex<State>,
    sampled_out: Counter,
    not_sampled: Counter,
    evicted: Counter,
    refused: Counter,
    on_memory: Gauge,
    decisions: Vec<[Counter; 2]>,
}

pub struct TailSampler {
    inner: Arc<Inner>,
    stop: CancellationToken,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TailSampler {
    fn start(
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
        cfg: Config,
        policies: Vec<Policy>,
    ) -> Arc<dyn Processor> {
        let t = &ctx.telemetry;
        let drop = |reason: &str| {
            t.processor_dropped
                .get_or_create(&ProcessorDropLabels {
                    processor: ctx.id.to_string(),
                    pipeline: ctx.pipeline.clone(),
                    otel_signal: signal.to_string(),
                    reason: reason.into(),
                })
                .clone()
        };
        let labels = ProcessorLabels {
            processor: ctx.id.to_string(),
            pipeline: ctx.pipeline.clone(),
            otel_signal: signal.to_string(),
        };
        let decisions = policies
            .iter()
            .map(|p| {
                ["true", "false"].map(|s| {
                    t.tail_sampling_decisions
                        .get_or_create(&PolicyLabels {
                            processor: ctx.id.to_string(),
                            policy: p.name.clone(),
                            sampled: s.into(),
                        })
                        .clone()
                })
            })
            .collect();
        let cap = cfg.num_traces;
        let decided_cap = cfg
            .decision_cache
            .as_ref()
            .map(|d| d.sampled_cache_size.max(d.non_sampled_cache_size))
            .filter(|c| *c > 0)
            .unwrap_or(cap);
        let inner = Arc::new(Inner {
            id: ctx.id.to_string(),
            policies,
            next,
            state: Mutex::new(State {
                // A hint only: past 64k the map grows as traces come (a huge
                // `expected_new_traces_per_sec` once allocated gigabytes at start).
                held: HashMap::with_capacity(cfg.expected_new_traces_per_sec.min(cap).min(1 << 16)),
                order: VecDeque::new(),
                decided: Decided {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    cap: decided_cap,
                },
            }),
            sampled_out: t.processor_outgoing.get_or_create(&labels).clone(),
            not_sampled: drop("sampled"),
            evicted: drop("evicted"),
            refused: drop("refused"),
            on_memory: t.tail_sampling_traces.get_or_create(&labels).clone(),
            decisions,
            cfg,
        });
        let stop = CancellationToken::new();
        let tick =
            (inner.cfg.decision_wait / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let (i2, s2) = (inner.clone(), stop.clone());
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = s2.cancelled() => return,
                    _ = every.tick() => i2.decide_due(Instant::now()).await,
                }
            }
        });
        Arc::new(TailSampler {
            inner,
            stop,
            ticker: Mutex::new(Some(ticker)),
        })
    }
}

fn spans(fragments: &[ResourceSpans]) -> impl Iterator<Item = (&[KeyValue], &Span)> {
    fragments.iter().flat_map(|r| {
        let res: &[KeyValue] = r.resource.as_ref().map_or(&[], |r| &r.attributes);
        r.scope_spans
            .iter()
            .flat_map(move |s| s.spans.iter().map(move |sp| (res, sp)))
    })
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    crate::signal::value::find_value(attrs, key)
}

fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn invertible(matched: bool, invert: bool) -> Decision {
    match (matched, invert) {
        (true, false) => Decision::Sampled,
        (false, false) => Decision::NotSampled,
        (true, true) => Decision::InvertNotSampled,
        (false, true) => Decision::InvertSampled,
    }
}

impl Policy {
    fn evaluate(&self, id: &TraceId, t: &Held) -> Decision {
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
            Rule::And(subs) => yes(subs.iter().all(|p| {
                matches!(
                    p.evaluate(id, t),
                    Decision::Sampled | Decision::InvertSampled
                )
            })),
        }
    }
}

impl Inner {
    /// Decides one trace: any policy sampling it keeps it, unless an inverted one vetoes it.
    fn decide(&self, id: &TraceId, t: &Held) -> bool {
        let mut sampled = false;
        let mut veto = false;
        for (p, counters) in self.policies.iter().zip(&self.decisions) {
            let d = p.evaluate(id, t);
            let yes = matches!(d, Decision::Sampled | Decision::InvertSampled);
            counters[usize::from(!yes)].inc();
            sampled |= yes;
            veto |= d == Decision::InvertNotSampled;
        }
        sampled && !veto
    }

    /// Decides every trace whose wait is over (all of them with `now` far enough ahead).
    async fn decide_due(&self, now: Instant) {
        let due: Vec<(TraceId, Held)> = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            while let Some((arrived, _)) = st.order.front() {
                if *arrived + self.cfg.decision_wait > now {
                    break;
                }
                let Some((_, id)) = st.order.pop_front() else {
                    break;
                };
                if let Some(t) = st.held.remove(&id) {
                    due.push((id, t));
                }
            }
            self.on_memory.set(st.held.len() as i64);
            due
        };
        if due.is_empty() {
            return;
        }
        let mut out: Vec<ResourceSpans> = Vec::new();
        let mut verdicts = Vec::with_capacity(due.len());
        for (id, t) in due {
            let keep = self.decide(&id, &t);
            verdicts.push((id, keep));
            if keep {
                out.extend(t.fragments);
            } else {
                self.not_sampled.inc_by(t.spans as u64);
            }
        }
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for (id, keep) in verdicts {
                st.decided.insert(id, keep);
            }
        }
        if !out.is_empty() {
            self.forward(Batch::Traces(out)).await;
        }
    }

    /// Passes sampled spans on; a retryable refusal is retried a few times, then counted.
    async fn forward(&self, batch: Batch) {
        let mut batch = batch;
        for attempt in 0..5u32 {
            let n = batch.item_count() as u64;
            match self.next.consume(batch).await {
                Ok(()) => {
                    self.sampled_out.inc_by(n);
                    return;
                }
                Err(ConsumeError::Retryable {
                    returned: Some(b),
                    reason,
                    ..
                }) => {
                    tracing::debug!(processor = %self.id, %reason, attempt, "sampled traces refused; retrying");
                    batch = *b;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    self.refused.inc_by(n);
                    tracing::warn!(processor = %self.id, error = %e, spans = n, "sampled traces dropped");
                    return;
                }
            }
        }
        let n = batch.item_count() as u64;
        self.refused.inc_by(n);
        tracing::warn!(processor = %self.id, spans = n, "sampled traces dropped after retries");
    }
}

impl Consumer for TailSampler {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let inner = &self.inner;
            let Batch::Traces(resources) = batch
                .into_decoded()
                .map_err(|e| ConsumeError::Permanent(format!("{}: {e}", inner.id)))?
            else {
                return Err(ConsumeError::Permanent(format!(
                    "{}: tail_sampling takes traces only",
                    inner.id
                )));
            };
            let mut frags = Vec::new();
            for rs in resources {
                split_by_trace(rs, &mut frags);
            }
            let now = Instant::now();
            let mut late = Vec::new();
            {
                let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
                for (id, frag) in frags {
                    let n: usize = frag.scope_spans.iter().map(|s| s.spans.len()).sum();
                    if let Some(&keep) = st.decided.map.get(&id) {
                        if keep {
                            late.push(frag);
                        } else {
                            inner.not_sampled.inc_by(n as u64);
                        }
                        continue;
                    }
                    if let Some(t) = st.held.get_mut(&id) {
                        t.fragments.push(frag);
                        t.spans += n;
                        continue;
                    }
                    st.held.insert(
                        id,
                        Held {
                            fragments: vec![frag],
                            spans: n,
                        },
                    );
                    st.order.push_back((now, id));
                    // Bounded: past `num_traces`, the oldest undecided trace is dropped.
                    while st.held.len() > inner.cfg.num_traces {
                        let Some((_, old)) = st.order.pop_front() else {
                            break;
                        };
                        if let Some(t) = st.held.remove(&old) {
                            inner.evicted.inc_by(t.spans as u64);
                            st.decided.insert(old, false);
                        }
                    }
                }
                inner.on_memory.set(st.held.len() as i64);
            }
            if !late.is_empty() {
                let b = Batch::Traces(late);
                let n = b.item_count() as u64;
                inner.next.consume(b).await?;
                inner.sampled_out.inc_by(n);
            }
            Ok(())
        })
    }
}

impl Lifecycle for TailSampler {
    fn shutdown(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let ticker = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = ticker {
                let _ = t.await;
            }
            // Decide what is still held now rather than lose it.
            let far = Instant::now() + self.inner.cfg.decision_wait + Duration::from_secs(1);
            if tokio::time::timeout_at(deadline, self.inner.decide_due(far))
                .await
                .is_err()
            {
                tracing::warn!(processor = %self.inner.id, "shutdown deadline passed while passing on sampled traces");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};

    fn cfg(text: &str) -> Result<Box<dyn ProcessorConfig>, DeError> {
        parse(&yaml(text).unwrap())
    }

    #[test]
    fn config_errors() {
        let e = cfg("policies:\n  - {name: a, type: latency}\n")
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "policies[0].latency");
        let e = cfg("policies:\n  - {name: a, type: bogus}\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("unknown policy type"), "{}", e.msg);
        let e = cfg(
            "policies:\n  - {name: a, type: status_code, status_code: {status_codes: [FAIL]}}\n",
        )
        .err()
        .unwrap();
        assert!(e.msg.contains("unknown status code"), "{}", e.msg);
        let e = cfg("decision_wait: 0s\npolicies:\n  - {name: a, type: always_sample}\n")
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "decision_wait");
        let e = cfg("policies:\n  - name: a\n    type: and\n    and:\n      and_sub_policy:\n        - {name: b, type: numeric_attribute}\n")
            .err()
            .unwrap();
        assert_eq!(
            e.path_string(),
            "policies[0].and.and_sub_policy[0].numeric_attribute"
        );
        assert!(cfg("policies: []\n").is_err());
        assert!(cfg("policies:\n  - {name: errors-policy, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n").is_ok());
    }

    fn held(spans: Vec<Span>, res: Vec<KeyValue>) -> Held {
        let n = spans.len();
        Held {
            fragments: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: res,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            spans: n,
        }
    }

    fn policy(text: &str) -> Policy {
        let node = yaml(text).unwrap();
        let p: PolicyCfg = from_node(&node).unwrap();
        compile(&p, &node, &[]).unwrap()
    }

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn policies_decide() {
        let id = [7u8; 16];
        let span = |start: u64, end: u64, code: i32, attrs: Vec<KeyValue>| Span {
            trace_id: id.to_vec(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            status: Some(Status {
                code,
                ..Default::default()
            }),
            attributes: attrs,
            ..Default::default()
        };
        let t = held(
            vec![
                span(
                    1_000_000_000,
                    1_200_000_000,
                    0,
                    vec![kv("http.status", any_value::Value::IntValue(503))],
                ),
                span(
                    1_100_000_000,
                    1_700_000_000,
                    2,
                    vec![kv("route", any_value::Value::StringValue("/api/x".into()))],
                ),
            ],
            vec![kv(
                "service.name",
                any_value::Value::StringValue("cart".into()),
            )],
        );
        let d = |text: &str| policy(text).evaluate(&id, &t);
        assert_eq!(
            d("{name: l, type: latency, latency: {threshold_ms: 700}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: l, type: latency, latency: {threshold_ms: 701}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: l, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 600}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: s, type: status_code, status_code: {status_codes: [ERROR]}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: s, type: status_code, status_code: {status_codes: [OK]}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: service.name, values: [cart]}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: route, values: [\"/api/.*\"], enabled_regex_matching: true}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: route, values: [\"/health\"], invert_match: true}}"
            ),
            Decision::InvertSampled
        );
        assert_eq!(
            d(
                "{name: a, type: string_attribute, string_attribute: {key: route, values: [\"/api/x\"], invert_match: true}}"
            ),
            Decision::InvertNotSampled
        );
        assert_eq!(
            d(
                "{name: n, type: numeric_attribute, numeric_attribute: {key: http.status, min_value: 500, max_value: 599}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: n, type: numeric_attribute, numeric_attribute: {key: http.status, min_value: 400, max_value: 499}}"
            ),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: c, type: span_count, span_count: {min_spans: 2}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: c, type: span_count, span_count: {min_spans: 3}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 100}}"),
            Decision::Sampled
        );
        assert_eq!(
            d("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}"),
            Decision::NotSampled
        );
        assert_eq!(
            d(
                "{name: x, type: and, and: {and_sub_policy: [{name: a, type: status_code, status_code: {status_codes: [ERROR]}}, {name: b, type: latency, latency: {threshold_ms: 100}}]}}"
            ),
            Decision::Sampled
        );
        assert_eq!(
            d(
                "{name: x, type: and, and: {and_sub_policy: [{name: a, type: status_code, status_code: {status_codes: [ERROR]}}, {name: b, type: latency, latency: {threshold_ms: 5000}}]}}"
            ),
            Decision::NotSampled
        );
        let rate = policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 3}}");
        assert_eq!(rate.evaluate(&id, &t), Decision::Sampled);
        assert_eq!(
            rate.evaluate(&id, &t),
            Decision::NotSampled,
            "2 + 2 spans > 3 per second"
        );
    }

    struct Capture(Mutex<Vec<Batch>>);
    impl Consumer for Capture {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            self.0.lock().unwrap().push(batch);
            Box::pin(async { Ok(()) })
        }
    }

    fn one_span(trace: u8, span: u8) -> Batch {
        Batch::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![span; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test(start_paused = true)]
    async fn waits_decides_whole_traces_follows_late_spans_and_evicts() {
        let ctx = crate::component::Context::standalone("tail_sampling");
        let node = yaml(
            "decision_wait: 10s\nnum_traces: 3\npolicies:\n  - {name: odd, type: numeric_attribute, numeric_attribute: {key: n, min_value: 1, max_value: 1}}\n",
        )
        .unwrap();
        let cfg: Config = from_node(&node).unwrap();
        let policies = cfg
            .policies
            .iter()
            .map(|p| compile(p, &node, &[]).unwrap())
            .collect();
        let out = Arc::new(Capture(Mutex::new(Vec::new())));
        let ts = TailSampler::start(ctx.clone(), Signal::Traces, out.clone(), cfg, policies);
        // Trace 1 is sampled (one of its spans has n=1), trace 2 is not; each in two requests.
        let mut b = one_span(1, 1);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[0]
                .attributes
                .push(kv("n", any_value::Value::IntValue(1)));
        }
        ts.consume(b).await.unwrap();
        ts.consume(one_span(2, 1)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        ts.consume(one_span(1, 2)).await.unwrap();
        ts.consume(one_span(2, 2)).await.unwrap();
        assert!(
            out.0.lock().unwrap().is_empty(),
            "nothing before decision_wait"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        {
            let got = out.0.lock().unwrap();
            let spans: Vec<(u8, u8)> = got
                .iter()
                .flat_map(|b| match b {
                    Batch::Traces(rs) => rs.clone(),
                    _ => vec![],
                })
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .map(|s| (s.trace_id[0], s.span_id[0]))
                .collect();
            assert_eq!(spans, vec![(1, 1), (1, 2)], "the whole sampled trace, once");
        }
        // Late spans follow the decision.
        ts.consume(one_span(1, 3)).await.unwrap();
        ts.consume(one_span(2, 3)).await.unwrap();
        assert_eq!(out.0.lock().unwrap().len(), 2);
        // Bounded: a fourth held trace evicts the oldest.
        for t in 10..14 {
            ts.consume(one_span(t, 1)).await.unwrap();
        }
        let text = ctx.telemetry.encode();
        assert!(text.contains("reason=\"evicted\"} 1"), "{text}");
        assert!(text.contains("reason=\"sampled\"} 3"), "{text}");
        assert!(
            text.contains("otelcol_processor_tail_sampling_count_traces_sampled_total{processor=\"tail_sampling\",policy=\"odd\",sampled=\"true\"} 1"),
            "{text}"
        );
        // Shutdown decides what is held (traces 11-13, not sampled) at once.
        ts.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert!(ctx.telemetry.encode().contains("reason=\"sampled\"} 6"));
    }

    #[test]
    fn split_keeps_resources_and_scopes() {
        let mk = |t: u8, s: u8| Span {
            trace_id: vec![t; 16],
            span_id: vec![s; 8],
            ..Default::default()
        };
        let rs = ResourceSpans {
            scope_spans: vec![
                ScopeSpans {
                    spans: vec![mk(1, 1), mk(2, 2), mk(1, 3)],
                    ..Default::default()
                },
                ScopeSpans {
                    scope: Some(Default::default()),
                    spans: vec![mk(2, 4)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut out = Vec::new();
        split_by_trace(rs, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, [1u8; 16]);
        assert_eq!(out[0].1.scope_spans.len(), 1);
        assert_eq!(out[0].1.scope_spans[0].spans.len(), 2);
        assert_eq!(out[1].1.scope_spans.len(), 2, "trace 2 spans two scopes");
    }
}
