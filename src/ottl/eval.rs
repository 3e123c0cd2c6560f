//! Evaluation of a parsed condition against one item, with OTTL's comparison rules: `nil`
//! equals only `nil`; ints and floats compare as numbers; strings compare lexically; values of
//! different types are never equal (so `!=` is true) and never ordered.

use std::borrow::Cow;
use std::cmp::Ordering;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};

use super::{CmpOp, Condition, Expr, Field, Literal, Path, Value};

/// A value during evaluation, borrowed from the item where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Map(&'a [KeyValue]),
    List(&'a [AnyValue]),
}

impl<'a> Val<'a> {
    pub fn from_any(v: Option<&'a AnyValue>) -> Val<'a> {
        match v.and_then(|v| v.value.as_ref()) {
            None => Val::Nil,
            Some(any_value::Value::StringValue(s)) => Val::Str(Cow::Borrowed(s)),
            Some(any_value::Value::BoolValue(b)) => Val::Bool(*b),
            Some(any_value::Value::IntValue(i)) => Val::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Val::Float(*d),
            Some(any_value::Value::BytesValue(b)) => Val::Bytes(Cow::Borrowed(b)),
            Some(any_value::Value::ArrayValue(a)) => Val::List(&a.values),
            Some(any_value::Value::KvlistValue(kv)) => Val::Map(&kv.values),
            Some(any_value::Value::StringValueStrindex(i)) => Val::Int(*i as i64),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "double",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::Map(_) => "map",
            Val::List(_) => "slice",
        }
    }

    /// The string form `IsMatch` and `String` use: numbers and bools printed, bytes in hex,
    /// maps and slices as JSON.
    fn to_text(&self) -> Option<Cow<'a, str>> {
        Some(match self {
            Val::Nil => return None,
            Val::Str(s) => s.clone(),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Float(f) => Cow::Owned(f.to_string()),
            Val::Bytes(b) => Cow::Owned(hex::encode(b)),
            Val::Map(kvs) => Cow::Owned(
                serde_json::Value::Object(
                    kvs.iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value.as_ref().map_or(serde_json::Value::Null, json),
                            )
                        })
                        .collect(),
                )
                .to_string(),
            ),
            Val::List(vs) => {
                Cow::Owned(serde_json::Value::Array(vs.iter().map(json).collect()).to_string())
            }
        })
    }
}

fn json(v: &AnyValue) -> serde_json::Value {
    crate::signal::value::to_json(v)
}

/// An error while evaluating (a converter given a type it cannot take, a non-boolean used as a
/// condition). What happens then is the processor's `error_mode`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// The item a condition reads.
pub trait Ctx {
    fn field(&self, f: Field) -> Val<'_>;
}

impl Condition {
    pub fn eval(&self, ctx: &dyn Ctx) -> Result<bool, EvalError> {
        eval(&self.expr, ctx)
    }
}

pub fn eval(e: &Expr, ctx: &dyn Ctx) -> Result<bool, EvalError> {
    Ok(match e {
        Expr::Or(terms) => {
            for t in terms {
                if eval(t, ctx)? {
                    return Ok(true);
                }
            }
            false
        }
        Expr::And(terms) => {
            for t in terms {
                if !eval(t, ctx)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Not(e) => !eval(e, ctx)?,
        // The common shape `path <op> literal` compares without building the literal's value.
        Expr::Cmp(op, Value::Path(p), Value::Lit(l)) => compare_lit(*op, &path(p, ctx), l),
        Expr::Cmp(op, Value::Lit(l), Value::Path(p)) => compare_lit(op.flip(), &path(p, ctx), l),
        Expr::Cmp(op, a, b) => compare(*op, &value(a, ctx)?, &value(b, ctx)?),
        Expr::Bool(v) => match value(v, ctx)? {
            Val::Bool(b) => b,
            other => {
                return Err(EvalError(format!(
                    "a condition must be a boolean, got {}",
                    other.type_name()
                )));
            }
        },
    })
}

fn compare_lit(op: CmpOp, a: &Val<'_>, lit: &Literal) -> bool {
    let ord = match (a, lit) {
        (Val::Str(x), Literal::Str(y)) => Some(x.as_ref().cmp(y.as_str())),
        (Val::Int(x), Literal::Int(y)) => Some(x.cmp(y)),
        _ => return compare(op, a, &literal(lit)),
    };
    ordered(op, ord)
}

fn literal(l: &Literal) -> Val<'_> {
    match l {
        Literal::Nil => Val::Nil,
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Int(i) => Val::Int(*i),
        Literal::Float(f) => Val::Float(*f),
        Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
        Literal::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
    }
}

fn compare(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    let ord: Option<Ordering> = match (a, b) {
        (Val::Nil, Val::Nil) => Some(Ordering::Equal),
        (Val::Bool(x), Val::Bool(y)) => {
            return match op {
                CmpOp::Eq => x == y,
                CmpOp::Ne => x != y,
                _ => false,
            };
        }
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bytes(x), Val::Bytes(y)) => Some(x.cmp(y)),
        (Val::Map(x), Val::Map(y)) => (x == y).then_some(Ordering::Equal),
        (Val::List(x), Val::List(y)) => (x == y).then_some(Ordering::Equal),
        _ => None,
    };
    ordered(op, ord)
}

/// `op` applied to an ordering; `None` (not comparable) is only `!=`.
fn ordered(op: CmpOp, ord: Option<Ordering>) -> bool {
    match (op, ord) {
        (CmpOp::Ne, None) => true,
        (_, None) => false,
        (CmpOp::Eq, Some(o)) => o == Ordering::Equal,
        (CmpOp::Ne, Some(o)) => o != Ordering::Equal,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
    }
}

fn value<'a>(v: &'a Value, ctx: &'a dyn Ctx) -> Result<Val<'a>, EvalError> {
    Ok(match v {
        Value::Lit(l) => literal(l),
        Value::Path(p) => path(p, ctx),
        Value::IsMatch(target, re) => Val::Bool(
            value(target, ctx)?
                .to_text()
                .is_some_and(|s| re.is_match(&s)),
        ),
        Value::Len(target) => match value(target, ctx)? {
            Val::Str(s) => Val::Int(s.chars().count() as i64),
            Val::Bytes(b) => Val::Int(b.len() as i64),
            Val::Map(m) => Val::Int(m.len() as i64),
            Val::List(l) => Val::Int(l.len() as i64),
            other => {
                return Err(EvalError(format!(
                    "Len: unsupported type {}",
                    other.type_name()
                )));
            }
        },
        Value::Int(target) => match value(target, ctx)? {
            Val::Int(i) => Val::Int(i),
            Val::Float(f) if f.is_finite() => Val::Int(f.trunc() as i64),
            Val::Bool(b) => Val::Int(b as i64),
            Val::Str(s) => s.trim().parse::<i64>().map_or(Val::Nil, Val::Int),
            _ => Val::Nil,
        },
        Value::Double(target) => match value(target, ctx)? {
            Val::Int(i) => Val::Float(i as f64),
            Val::Float(f) => Val::Float(f),
            Val::Bool(b) => Val::Float(b as i64 as f64),
            Val::Str(s) => s.trim().parse::<f64>().map_or(Val::Nil, Val::Float),
            _ => Val::Nil,
        },
        Value::String(target) => match value(target, ctx)?.to_text() {
            Some(s) => Val::Str(s),
            None => Val::Nil,
        },
    })
}

fn path<'a>(p: &Path, ctx: &'a dyn Ctx) -> Val<'a> {
    let mut v = ctx.field(p.field);
    for k in &p.keys {
        v = match v {
            Val::Map(kvs) => Val::from_any(crate::signal::value::find(kvs, k)),
            _ => return Val::Nil,
        };
    }
    v
}

fn scope_field<'a>(scope: Option<&'a InstrumentationScope>, f: Field) -> Val<'a> {
    match (scope, f) {
        (Some(s), Field::ScopeName) => Val::Str(Cow::Borrowed(&s.name)),
        (Some(s), Field::ScopeVersion) => Val::Str(Cow::Borrowed(&s.version)),
        (Some(s), Field::ScopeAttributes) => Val::Map(&s.attributes),
        (None, Field::ScopeName | Field::ScopeVersion) => Val::Str(Cow::Borrowed("")),
        (None, Field::ScopeAttributes) => Val::Map(&[]),
        _ => Val::Nil,
    }
}

fn id_string(b: &[u8]) -> Val<'static> {
    Val::Str(Cow::Owned(hex::encode(b)))
}

fn nanos(n: u64) -> Val<'static> {
    Val::Int(n as i64)
}

/// What every context shares: the resource's attributes and the scope.
pub struct Outer<'a> {
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl<'a> Outer<'a> {
    fn field(&self, f: Field) -> Val<'a> {
        match f {
            Field::ResourceAttributes => Val::Map(self.resource),
            _ => scope_field(self.scope, f),
        }
    }
}

/// A condition that reads only the resource and the scope ([`Condition::reads_only_resource_and_scope`])
/// is evaluated once against this.
impl Ctx for Outer<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        Outer::field(self, f)
    }
}

pub struct SpanCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub span: &'a Span,
}

impl Ctx for SpanCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        let s = self.span;
        match f {
            Field::Attributes => Val::Map(&s.attributes),
            Field::Name => Val::Str(Cow::Borrowed(&s.name)),
            Field::Kind => Val::Int(s.kind as i64),
            Field::StatusCode => Val::Int(s.status.as_ref().map_or(0, |st| st.code as i64)),
            Field::StatusMessage => Val::Str(Cow::Borrowed(
                s.status.as_ref().map_or("", |st| st.message.as_str()),
            )),
            Field::TraceId => Val::Bytes(Cow::Borrowed(&s.trace_id)),
            Field::SpanId => Val::Bytes(Cow::Borrowed(&s.span_id)),
            Field::ParentSpanId => Val::Bytes(Cow::Borrowed(&s.parent_span_id)),
            Field::TraceIdString => id_string(&s.trace_id),
            Field::SpanIdString => id_string(&s.span_id),
            Field::ParentSpanIdString => id_string(&s.parent_span_id),
            Field::TraceState => Val::Str(Cow::Borrowed(&s.trace_state)),
            Field::StartTime => nanos(s.start_time_unix_nano),
            Field::EndTime => nanos(s.end_time_unix_nano),
            Field::Duration => {
                Val::Int(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as i64)
            }
            Field::DroppedAttributesCount => Val::Int(s.dropped_attributes_count as i64),
            other => self.outer.field(other),
        }
    }
}

pub struct EventCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub span: &'a Span,
    pub event: &'a Event,
}

impl Ctx for EventCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        match f {
            Field::Attributes => Val::Map(&self.event.attributes),
            Field::EventName => Val::Str(Cow::Borrowed(&self.event.name)),
            Field::Time => nanos(self.event.time_unix_nano),
            Field::DroppedAttributesCount => Val::Int(self.event.dropped_attributes_count as i64),
            Field::SpanName => Val::Str(Cow::Borrowed(&self.span.name)),
            other => self.outer.field(other),
        }
    }
}

pub struct MetricCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub metric: &'a Metric,
}

/// `METRIC_DATA_TYPE_*` of a metric.
pub fn metric_type(m: &Metric) -> i64 {
    match &m.data {
        None => 0,
        Some(Data::Gauge(_)) => 1,
        Some(Data::Sum(_)) => 2,
        Some(Data::Histogram(_)) => 3,
        Some(Data::ExponentialHistogram(_)) => 4,
        Some(Data::Summary(_)) => 5,
    }
}

fn metric_field(m: &Metric, f: Field) -> Option<Val<'_>> {
    Some(match f {
        Field::MetricName => Val::Str(Cow::Borrowed(&m.name)),
        Field::MetricDescription => Val::Str(Cow::Borrowed(&m.description)),
        Field::MetricUnit => Val::Str(Cow::Borrowed(&m.unit)),
        Field::MetricType => Val::Int(metric_type(m)),
        Field::AggregationTemporality => Val::Int(match &m.data {
            Some(Data::Sum(s)) => s.aggregation_temporality as i64,
            Some(Data::Histogram(h)) => h.aggregation_temporality as i64,
            Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality as i64,
            _ => 0,
        }),
        Field::IsMonotonic => Val::Bool(matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic)),
        _ => return None,
    })
}

impl Ctx for MetricCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        metric_field(self.metric, f).unwrap_or_else(|| self.outer.field(f))
    }
}

/// One data point of any kind.
#[derive(Clone, Copy)]
pub enum PointRef<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
    ExpHistogram(&'a ExponentialHistogramDataPoint),
    Summary(&'a SummaryDataPoint),
}

pub struct PointCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub metric: &'a Metric,
    pub point: PointRef<'a>,
}

impl Ctx for PointCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        if let Some(v) = metric_field(self.metric, f) {
            return v;
        }
        let (attrs, start, time, flags) = match self.point {
            PointRef::Number(p) => (
                &p.attributes,
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.flags,
            ),
            PointRef::Histogram(p) => (
                &p.attributes,
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.flags,
            ),
            PointRef::ExpHistogram(p) => (
                &p.attributes,
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.flags,
            ),
            PointRef::Summary(p) => (
                &p.attributes,
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.flags,
            ),
        };
        match f {
            Field::Attributes => Val::Map(attrs),
            Field::Time => nanos(time),
            Field::StartTimeUnixNano => nanos(start),
            Field::Flags => Val::Int(flags as i64),
            Field::ValueInt => match self.point {
                PointRef::Number(NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(i)),
                    ..
                }) => Val::Int(*i),
                PointRef::Number(_) => Val::Int(0),
                _ => Val::Nil,
            },
            Field::ValueDouble => match self.point {
                PointRef::Number(NumberDataPoint {
                    value: Some(number_data_point::Value::AsDouble(d)),
                    ..
                }) => Val::Float(*d),
                PointRef::Number(_) => Val::Float(0.0),
                _ => Val::Nil,
            },
            Field::Count => match self.point {
                PointRef::Histogram(p) => Val::Int(p.count as i64),
                PointRef::ExpHistogram(p) => Val::Int(p.count as i64),
                PointRef::Summary(p) => Val::Int(p.count as i64),
                PointRef::Number(_) => Val::Nil,
            },
            Field::Sum => match self.point {
                PointRef::Histogram(p) => p.sum.map_or(Val::Nil, Val::Float),
                PointRef::ExpHistogram(p) => p.sum.map_or(Val::Nil, Val::Float),
                PointRef::Summary(p) => Val::Float(p.sum),
                PointRef::Number(_) => Val::Nil,
            },
            other => self.outer.field(other),
        }
    }
}

pub struct LogCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub log: &'a LogRecord,
}

impl Ctx for LogCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        let l = self.log;
        match f {
            Field::Attributes => Val::Map(&l.attributes),
            Field::Body => Val::from_any(l.body.as_ref()),
            Field::SeverityNumber => Val::Int(l.severity_number as i64),
            Field::SeverityText => Val::Str(Cow::Borrowed(&l.severity_text)),
            Field::Time => nanos(l.time_unix_nano),
            Field::ObservedTime => nanos(l.observed_time_unix_nano),
            Field::TraceId => Val::Bytes(Cow::Borrowed(&l.trace_id)),
            Field::SpanId => Val::Bytes(Cow::Borrowed(&l.span_id)),
            Field::TraceIdString => id_string(&l.trace_id),
            Field::SpanIdString => id_string(&l.span_id),
            Field::Flags => Val::Int(l.flags as i64),
            Field::DroppedAttributesCount => Val::Int(l.dropped_attributes_count as i64),
            Field::EventName => Val::Str(Cow::Borrowed(&l.event_name)),
            other => self.outer.field(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ottl::Context;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn span() -> Span {
        Span {
            name: "GET /health".into(),
            kind: 2,
            trace_id: vec![0xab; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 5_000_000,
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            attributes: vec![
                kv(
                    "http.route",
                    any_value::Value::StringValue("/health".into()),
                ),
                kv("http.status_code", any_value::Value::IntValue(503)),
                kv("ratio", any_value::Value::DoubleValue(0.25)),
                kv("grpc", any_value::Value::BoolValue(true)),
                kv(
                    "nested",
                    any_value::Value::KvlistValue(
                        opentelemetry_proto::tonic::common::v1::KeyValueList {
                            values: vec![kv("inner", any_value::Value::StringValue("x".into()))],
                        },
                    ),
                ),
                kv(
                    "list",
                    any_value::Value::ArrayValue(
                        opentelemetry_proto::tonic::common::v1::ArrayValue {
                            values: vec![AnyValue {
                                value: Some(any_value::Value::IntValue(1)),
                            }],
                        },
                    ),
                ),
            ],
            ..Default::default()
        }
    }

    fn check(cond: &str) -> Result<bool, EvalError> {
        let s = span();
        let res = vec![kv(
            "service.name",
            any_value::Value::StringValue("checkout".into()),
        )];
        let scope = InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            ..Default::default()
        };
        let outer = Outer {
            resource: &res,
            scope: Some(&scope),
        };
        let c = Condition::parse(cond, Context::Span).unwrap_or_else(|e| panic!("{cond}: {e}"));
        c.eval(&SpanCtx {
            outer: &outer,
            span: &s,
        })
    }

    fn yes(c: &str) {
        assert_eq!(check(c), Ok(true), "{c}");
    }
    fn no(c: &str) {
        assert_eq!(check(c), Ok(false), "{c}");
    }

    #[test]
    fn comparisons_follow_ottl_rules() {
        yes(r#"name == "GET /health""#);
        no(r#"name != "GET /health""#);
        yes(r#"attributes["http.status_code"] >= 500"#);
        yes(r#"attributes["http.status_code"] > 502.5"#);
        yes(r#"attributes["http.status_code"] < 503.5"#);
        no(r#"attributes["http.status_code"] <= 502"#);
        yes(r#"attributes["ratio"] == 0.25"#);
        yes(r#"name < "H" and name > "A""#);
        // Different types: never equal, never ordered.
        no(r#"attributes["http.status_code"] == "503""#);
        yes(r#"attributes["http.status_code"] != "503""#);
        no(r#"attributes["http.status_code"] < "x""#);
        // nil equals only nil.
        yes(r#"attributes["missing"] == nil"#);
        no(r#"attributes["http.route"] == nil"#);
        yes(r#"attributes["http.route"] != nil"#);
        // Bools: equality only.
        yes(r#"attributes["grpc"] == true"#);
        no(r#"attributes["grpc"] > false"#);
        yes(r#"attributes["nested"]["inner"] == "x""#);
        yes(r#"attributes["nested"]["missing"] == nil"#);
    }

    #[test]
    fn paths_constants_and_logic() {
        yes("kind == SPAN_KIND_SERVER");
        yes("status.code == STATUS_CODE_ERROR");
        yes(r#"status.message == "boom""#);
        yes("trace_id == 0xabababababababababababababababab");
        yes(r#"span_id.string == "0102030405060708""#);
        yes("duration > 4000000");
        yes(r#"resource.attributes["service.name"] == "checkout""#);
        yes(r#"instrumentation_scope.name == "lib" and instrumentation_scope.version == "1.0""#);
        yes(r#"not name == "x""#);
        yes(r#"name == "x" or (kind == 2 and not status.code == 0)"#);
        no(r#"name == "x" or kind == 3"#);
        yes("true");
        no("false or false");
    }

    #[test]
    fn converters() {
        yes(r#"IsMatch(attributes["http.route"], ".*health.*")"#);
        no(r#"IsMatch(attributes["missing"], ".*")"#);
        yes(r#"IsMatch(attributes["http.status_code"], "^5\\d\\d$")"#);
        yes(r#"Len(name) == 11"#);
        yes(r#"Len(attributes) == 6"#);
        yes(r#"Len(attributes["list"]) == 1"#);
        yes(r#"Int("42") == 42 and Int(attributes["ratio"]) == 0 and Int("x") == nil"#);
        yes(r#"Double(attributes["http.status_code"]) == 503.0"#);
        yes(r#"String(attributes["http.status_code"]) == "503""#);
        yes(r#"String(attributes["nested"]) == "{\"inner\":\"x\"}""#);
        assert!(check("Len(kind) == 1").is_err());
        assert!(check(r#"attributes["http.route"]"#).is_err());
    }
}
