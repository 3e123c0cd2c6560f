//! The policies as the Collector's config writes them.

use super::*;

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
#[serde(deny_unknown_fields, default)]
pub struct TraceStateCfg {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OttlCfg {
    /// `propagate` (default: an evaluation error does not sample), `ignore`, `silent`.
    pub error_mode: Option<String>,
    /// Span conditions; any true samples the trace.
    pub span: Vec<String>,
    /// Span-event conditions; any true samples the trace.
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotCfg {
    pub not_sub_policy: Box<PolicyCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DropCfg {
    pub drop_sub_policy: Vec<PolicyCfg>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocationCfg {
    pub policy: String,
    pub percent: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeCfg {
    pub max_total_spans_per_second: u64,
    /// The sub-policies' names in evaluation order.
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyCfg>,
    /// A sub-policy's share of `max_total_spans_per_second`, in percent; one not listed gets an
    /// equal share of the total.
    pub rate_allocation: Vec<RateAllocationCfg>,
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
    #[serde(default)]
    pub trace_state: Option<TraceStateCfg>,
    #[serde(default)]
    pub ottl_condition: Option<OttlCfg>,
    #[serde(default)]
    pub not: Option<NotCfg>,
    #[serde(default)]
    pub drop: Option<DropCfg>,
    #[serde(default)]
    pub composite: Option<CompositeCfg>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub trace_flags: Option<Empty>,
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
    /// Stop at the first policy that samples (later ones are not evaluated or counted).
    /// Default false.
    #[serde(default)]
    pub sample_on_first_match: bool,
    pub policies: Vec<PolicyCfg>,
}

fn thirty_s() -> Duration {
    Duration::from_secs(30)
}
fn fifty_k() -> usize {
    50_000
}
