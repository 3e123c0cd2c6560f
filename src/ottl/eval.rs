//! Evaluation of parsed conditions and values against one item, with OTTL's comparison rules:
//! `nil` equals only `nil`; ints and floats compare as numbers; strings compare lexically;
//! values of different types are never equal (so `!=` is true) and never ordered.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};

use super::ast::{CmpOp, Condition, Expr, Field, Key, Literal, MathOp, Path, Value};
use super::funcs;

pub use super::val::{Ctx, EvalError, Val, compare, equal, ordered};

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

#[inline]
fn compare_lit(op: CmpOp, a: &Val<'_>, lit: &Literal) -> bool {
    let ord = match (a, lit) {
        (Val::Str(x), Literal::Str(y)) => Some(x.as_ref().cmp(y.as_str())),
        (Val::Int(x), Literal::Int(y)) => Some(x.cmp(y)),
        _ => return compare(op, a, &literal(lit)),
    };
    ordered(op, ord)
}

#[inline]
pub fn literal(l: &Literal) -> Val<'_> {
    match l {
        Literal::Nil => Val::Nil,
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Int(i) => Val::Int(*i),
        Literal::Float(f) => Val::Float(*f),
        Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
        Literal::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
    }
}

/// Evaluates a value: a literal, a path, a converter call, a list or map literal, arithmetic.
pub fn value<'a>(v: &'a Value, ctx: &'a dyn Ctx) -> Result<Val<'a>, EvalError> {
    Ok(match v {
        Value::Lit(l) => literal(l),
        Value::Path(p) => path(p, ctx),
        // `IsMatch` is the converter conditions use most: evaluated without the argument array.
        Value::Call(call)
            if call.name == "IsMatch"
                && let (Some(Some(target)), super::ast::Compiled::Regex(re)) =
                    (call.args.first(), &call.compiled) =>
        {
            Val::Bool(funcs::is_match(re, &value(target, ctx)?))
        }
        Value::Call(call) => {
            let mut vals: [Val<'a>; funcs::MAX_ARGS] = Default::default();
            let n = call.args.len().min(funcs::MAX_ARGS);
            for (slot, arg) in vals[..n].iter_mut().zip(&call.args) {
                if let Some(arg) = arg {
                    *slot = value(arg, ctx)?;
                }
            }
            funcs::run(call, &mut vals[..n], ctx)?
        }
        Value::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(value(i, ctx)?.into_any()?.unwrap_or_default());
            }
            Val::List(Cow::Owned(out))
        }
        Value::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                out.push(KeyValue {
                    key: k.clone(),
                    value: value(v, ctx)?.into_any()?,
                    ..Default::default()
                });
            }
            Val::Map(Cow::Owned(out))
        }
        Value::Math(op, a, b) => math(*op, value(a, ctx)?, value(b, ctx)?)?,
        Value::Index(inner, keys) => {
            let mut v = value(inner, ctx)?;
            for k in keys {
                v = index(v, k);
            }
            v
        }
        Value::Func(id) => {
            return Err(EvalError(format!(
                "{} is a function, not a value",
                funcs::CONVERTERS[*id].name
            )));
        }
    })
}

/// `a <op> b`: ints stay ints, a double makes a double; times and durations combine as Go's
/// do (time - time = duration, time ± duration = time).
fn math<'a>(op: MathOp, a: Val<'a>, b: Val<'a>) -> Result<Val<'a>, EvalError> {
    let sym = match op {
        MathOp::Add => "+",
        MathOp::Sub => "-",
        MathOp::Mul => "*",
        MathOp::Div => "/",
    };
    let bad = |a: &Val<'_>, b: &Val<'_>| {
        Err(EvalError(format!(
            "cannot compute {} {sym} {}",
            a.type_name(),
            b.type_name()
        )))
    };
    Ok(match (&a, &b) {
        (Val::Int(x), Val::Int(y)) => Val::Int(match op {
            MathOp::Add => x.wrapping_add(*y),
            MathOp::Sub => x.wrapping_sub(*y),
            MathOp::Mul => x.wrapping_mul(*y),
            MathOp::Div => {
                if *y == 0 {
                    return Err(EvalError("division by zero".into()));
                }
                x.wrapping_div(*y)
            }
        }),
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
            let f = |v: &Val<'_>| match v {
                Val::Int(i) => *i as f64,
                Val::Float(f) => *f,
                _ => 0.0,
            };
            let (x, y) = (f(&a), f(&b));
            Val::Float(match op {
                MathOp::Add => x + y,
                MathOp::Sub => x - y,
                MathOp::Mul => x * y,
                MathOp::Div => {
                    if y == 0.0 {
                        return Err(EvalError("division by zero".into()));
                    }
                    x / y
                }
            })
        }
        (Val::Time(x), Val::Time(y)) if op == MathOp::Sub => Val::Duration(x - y),
        (Val::Time(x), Val::Duration(d)) if op == MathOp::Add => Val::Time(x + d),
        (Val::Time(x), Val::Duration(d)) if op == MathOp::Sub => Val::Time(x - d),
        (Val::Duration(x), Val::Duration(y)) if op == MathOp::Add => Val::Duration(x + y),
        (Val::Duration(x), Val::Duration(y)) if op == MathOp::Sub => Val::Duration(x - y),
        _ => return bad(&a, &b),
    })
}

/// One `[key]` or `[index]` step into a map or a slice; anything else is nil.
#[inline]
fn index<'a>(v: Val<'a>, k: &Key) -> Val<'a> {
    match (v, k) {
        (Val::Map(Cow::Borrowed(kvs)), Key::Str(k)) => {
            Val::from_any(crate::signal::value::find(kvs, k))
        }
        (Val::Map(Cow::Owned(kvs)), Key::Str(k)) => kvs
            .into_iter()
            .find(|kv| kv.key == *k)
            .map_or(Val::Nil, |kv| Val::from_any(kv.value.as_ref()).into_owned()),
        (Val::List(Cow::Borrowed(items)), Key::Index(i)) => {
            usize::try_from(*i).map_or(Val::Nil, |i| Val::from_any(items.get(i)))
        }
        (Val::List(Cow::Owned(items)), Key::Index(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| items.get(i))
            .map_or(Val::Nil, |v| Val::from_any(Some(v)).into_owned()),
        _ => Val::Nil,
    }
}

#[inline]
pub fn path<'a>(p: &Path, ctx: &'a dyn Ctx) -> Val<'a> {
    let mut v = if p.of_span {
        ctx.span_field(p.field)
    } else {
        ctx.field(p.field)
    };
    if p.field == Field::TraceState {
        return match (v, p.keys.first()) {
            (v, None) => v,
            (Val::Str(Cow::Borrowed(ts)), Some(Key::Str(k))) => {
                trace_state_get(ts, k).map_or(Val::Nil, |s| Val::Str(Cow::Borrowed(s)))
            }
            (Val::Str(Cow::Owned(ts)), Some(Key::Str(k))) => {
                trace_state_get(&ts, k).map_or(Val::Nil, |s| Val::Str(Cow::Owned(s.to_owned())))
            }
            _ => Val::Nil,
        };
    }
    for k in &p.keys {
        v = index(v, k);
    }
    v
}

/// The value of `key` in a W3C `tracestate` (`k1=v1,k2=v2`, optional whitespace).
pub fn trace_state_get<'a>(ts: &'a str, key: &str) -> Option<&'a str> {
    ts.split(',').find_map(|member| {
        let (k, v) = member.trim().split_once('=')?;
        (k == key).then_some(v)
    })
}

#[inline]
pub fn scope_field<'a>(scope: Option<&'a InstrumentationScope>, f: Field) -> Val<'a> {
    match (scope, f) {
        (Some(s), Field::ScopeName) => Val::Str(Cow::Borrowed(&s.name)),
        (Some(s), Field::ScopeVersion) => Val::Str(Cow::Borrowed(&s.version)),
        (Some(s), Field::ScopeAttributes) => Val::Map(Cow::Borrowed(&s.attributes)),
        (None, Field::ScopeName | Field::ScopeVersion) => Val::Str(Cow::Borrowed("")),
        (None, Field::ScopeAttributes) => Val::Map(Cow::Borrowed(&[])),
        _ => Val::Nil,
    }
}

fn id_string(b: &[u8]) -> Val<'static> {
    Val::Str(Cow::Owned(hex::encode(b)))
}

fn nanos(n: u64) -> Val<'static> {
    Val::Int(n as i64)
}

fn time(n: u64) -> Val<'static> {
    Val::Time(n as i64)
}

/// What every context shares: the resource's attributes and the scope.
pub struct Outer<'a> {
    pub resource: &'a [KeyValue],
    pub resource_dropped: u32,
    pub scope: Option<&'a InstrumentationScope>,
}

impl<'a> Outer<'a> {
    fn field(&self, f: Field) -> Val<'a> {
        match f {
            Field::ResourceAttributes => Val::Map(Cow::Borrowed(self.resource)),
            Field::ResourceDroppedAttributesCount => Val::Int(self.resource_dropped as i64),
            // Conditions never write the statements' cache.
            Field::Cache => Val::Map(Cow::Borrowed(&[])),
            Field::ScopeDroppedAttributesCount => {
                Val::Int(self.scope.map_or(0, |s| s.dropped_attributes_count) as i64)
            }
            _ => scope_field(self.scope, f),
        }
    }
}

const KIND_NAMES: [(&str, &str); 6] = [
    ("Unspecified", "SPAN_KIND_UNSPECIFIED"),
    ("Internal", "SPAN_KIND_INTERNAL"),
    ("Server", "SPAN_KIND_SERVER"),
    ("Client", "SPAN_KIND_CLIENT"),
    ("Producer", "SPAN_KIND_PRODUCER"),
    ("Consumer", "SPAN_KIND_CONSUMER"),
];

#[inline]
pub fn span_field<'a>(s: &'a Span, f: Field) -> Option<Val<'a>> {
    Some(match f {
        Field::Attributes => Val::Map(Cow::Borrowed(&s.attributes)),
        Field::Name => Val::Str(Cow::Borrowed(&s.name)),
        Field::Kind => Val::Int(s.kind as i64),
        Field::KindString | Field::KindDeprecatedString => {
            let names = KIND_NAMES.get(s.kind as usize).copied().unwrap_or(("", ""));
            Val::Str(Cow::Borrowed(if f == Field::KindString {
                names.0
            } else {
                names.1
            }))
        }
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
        Field::StartTimeTyped => time(s.start_time_unix_nano),
        Field::EndTimeTyped => time(s.end_time_unix_nano),
        Field::Duration => {
            Val::Int(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as i64)
        }
        Field::DroppedAttributesCount => Val::Int(s.dropped_attributes_count as i64),
        Field::DroppedEventsCount => Val::Int(s.dropped_events_count as i64),
        Field::DroppedLinksCount => Val::Int(s.dropped_links_count as i64),
        Field::Events => Val::Items("events", s.events.len()),
        Field::Links => Val::Items("links", s.links.len()),
        Field::Flags => Val::Int(s.flags as i64),
        _ => return None,
    })
}

/// A condition that reads only the resource and the scope ([`Condition::reads_only_resource_and_scope`])
/// is evaluated once against this.
impl Ctx for Outer<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        Outer::field(self, f)
    }
}

/// A request's client: the `request` context reads its metadata (headers).
pub struct RequestCtx<'a> {
    pub client: Option<&'a crate::client::ClientInfo>,
}

impl Ctx for RequestCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        match (f, self.client) {
            (Field::Request, Some(c)) => Val::Map(Cow::Owned(
                c.metadata
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.to_ascii_lowercase(),
                        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                            value: Some(
                                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                    v.clone(),
                                ),
                            ),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            )),
            (Field::Request, None) => Val::Map(Cow::Borrowed(&[])),
            _ => Val::Nil,
        }
    }
}

/// A resource (and scope) alone: the `resource` context.
pub struct ResourceCtx<'a> {
    pub outer: &'a Outer<'a>,
}

impl Ctx for ResourceCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        self.outer.field(f)
    }
}

pub struct SpanCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub span: &'a Span,
}

impl Ctx for SpanCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        span_field(self.span, f).unwrap_or_else(|| self.outer.field(f))
    }
}

pub struct EventCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub span: &'a Span,
    pub event: &'a Event,
    /// The event's position in its span's list.
    pub index: usize,
}

/// A span event's own fields.
pub fn event_field<'a>(
    span: &'a Span,
    event: &'a Event,
    index: usize,
    f: Field,
) -> Option<Val<'a>> {
    Some(match f {
        Field::Attributes => Val::Map(Cow::Borrowed(&event.attributes)),
        Field::EventName => Val::Str(Cow::Borrowed(&event.name)),
        Field::Time => nanos(event.time_unix_nano),
        Field::TimeTyped => time(event.time_unix_nano),
        Field::DroppedAttributesCount => Val::Int(event.dropped_attributes_count as i64),
        Field::EventIndex => Val::Int(index as i64),
        Field::SpanName => Val::Str(Cow::Borrowed(&span.name)),
        _ => return None,
    })
}

impl Ctx for EventCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        event_field(self.span, self.event, self.index, f).unwrap_or_else(|| self.outer.field(f))
    }

    fn span_field(&self, f: Field) -> Val<'_> {
        span_field(self.span, f).unwrap_or_else(|| self.outer.field(f))
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

pub fn metric_field(m: &Metric, f: Field) -> Option<Val<'_>> {
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
        Field::DataPoints => Val::Items(
            "data points",
            m.data.as_ref().map_or(0, crate::signal::data_point_count),
        ),
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
        point_field(self.metric, self.point, f).unwrap_or_else(|| self.outer.field(f))
    }
}

/// A data point's fields and its metric's.
pub fn point_field<'a>(metric: &'a Metric, point: PointRef<'a>, f: Field) -> Option<Val<'a>> {
    if let Some(v) = metric_field(metric, f) {
        return Some(v);
    }
    {
        let (attrs, start, time, flags) = match point {
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
        let exemplars = match point {
            PointRef::Number(p) => p.exemplars.len(),
            PointRef::Histogram(p) => p.exemplars.len(),
            PointRef::ExpHistogram(p) => p.exemplars.len(),
            PointRef::Summary(_) => 0,
        };
        Some(match f {
            Field::Attributes => Val::Map(Cow::Borrowed(attrs)),
            Field::Time => nanos(time),
            Field::StartTimeUnixNano => nanos(start),
            Field::TimeTyped => self::time(time),
            Field::StartTimeTyped => self::time(start),
            Field::Exemplars => Val::Items("exemplars", exemplars),
            Field::BucketCounts => match point {
                PointRef::Histogram(p) => Val::Items("bucket counts", p.bucket_counts.len()),
                _ => Val::Nil,
            },
            Field::ExplicitBounds => match point {
                PointRef::Histogram(p) => Val::Items("bounds", p.explicit_bounds.len()),
                _ => Val::Nil,
            },
            Field::QuantileValues => match point {
                PointRef::Summary(p) => Val::Items("quantiles", p.quantile_values.len()),
                _ => Val::Nil,
            },
            Field::Scale
            | Field::ZeroCount
            | Field::PositiveOffset
            | Field::NegativeOffset
            | Field::PositiveBucketCounts
            | Field::NegativeBucketCounts => match point {
                PointRef::ExpHistogram(p) => match f {
                    Field::Scale => Val::Int(p.scale as i64),
                    Field::ZeroCount => Val::Int(p.zero_count as i64),
                    Field::PositiveOffset => {
                        Val::Int(p.positive.as_ref().map_or(0, |b| b.offset) as i64)
                    }
                    Field::NegativeOffset => {
                        Val::Int(p.negative.as_ref().map_or(0, |b| b.offset) as i64)
                    }
                    Field::PositiveBucketCounts => Val::Items(
                        "bucket counts",
                        p.positive.as_ref().map_or(0, |b| b.bucket_counts.len()),
                    ),
                    _ => Val::Items(
                        "bucket counts",
                        p.negative.as_ref().map_or(0, |b| b.bucket_counts.len()),
                    ),
                },
                _ => Val::Nil,
            },
            Field::Flags => Val::Int(flags as i64),
            Field::ValueInt => match point {
                PointRef::Number(NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(i)),
                    ..
                }) => Val::Int(*i),
                PointRef::Number(_) => Val::Int(0),
                _ => Val::Nil,
            },
            Field::ValueDouble => match point {
                PointRef::Number(NumberDataPoint {
                    value: Some(number_data_point::Value::AsDouble(d)),
                    ..
                }) => Val::Float(*d),
                PointRef::Number(_) => Val::Float(0.0),
                _ => Val::Nil,
            },
            Field::Count => match point {
                PointRef::Histogram(p) => Val::Int(p.count as i64),
                PointRef::ExpHistogram(p) => Val::Int(p.count as i64),
                PointRef::Summary(p) => Val::Int(p.count as i64),
                PointRef::Number(_) => Val::Nil,
            },
            Field::Sum => match point {
                PointRef::Histogram(p) => p.sum.map_or(Val::Nil, Val::Float),
                PointRef::ExpHistogram(p) => p.sum.map_or(Val::Nil, Val::Float),
                PointRef::Summary(p) => Val::Float(p.sum),
                PointRef::Number(_) => Val::Nil,
            },
            _ => return None,
        })
    }
}

pub struct LogCtx<'a> {
    pub outer: &'a Outer<'a>,
    pub log: &'a LogRecord,
}

impl Ctx for LogCtx<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        log_field(self.log, f).unwrap_or_else(|| self.outer.field(f))
    }
}

/// A log record's fields.
pub fn log_field(l: &LogRecord, f: Field) -> Option<Val<'_>> {
    {
        Some(match f {
            Field::Attributes => Val::Map(Cow::Borrowed(&l.attributes)),
            Field::Body => Val::from_any(l.body.as_ref()),
            Field::BodyString => match Val::from_any(l.body.as_ref()) {
                Val::Nil => Val::Str(Cow::Borrowed("")),
                v => v.to_text().map_or(Val::Nil, Val::Str),
            },
            Field::TimeTyped => time(l.time_unix_nano),
            Field::ObservedTimeTyped => time(l.observed_time_unix_nano),
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
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ottl::Context;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
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
            resource_dropped: 0,
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

    /// One test per path group, each with the exact value it reads.
    #[test]
    fn span_paths_trace_state_kinds_times_counts_and_indexes() {
        let mut s = span();
        s.trace_state = "tracetest=true, congo=t61rcWkgMzE".into();
        s.dropped_events_count = 2;
        s.dropped_links_count = 3;
        s.flags = 0x100;
        s.events = vec![Event::default(); 2];
        let res = vec![kv(
            "service.name",
            any_value::Value::StringValue("checkout".into()),
        )];
        let scope = InstrumentationScope {
            name: "lib".into(),
            dropped_attributes_count: 4,
            ..Default::default()
        };
        let outer = Outer {
            resource: &res,
            resource_dropped: 5,
            scope: Some(&scope),
        };
        let ctx = SpanCtx {
            outer: &outer,
            span: &s,
        };
        let t = |c: &str| {
            Condition::parse(c, Context::Span)
                .unwrap_or_else(|e| panic!("{c}: {e}"))
                .eval(&ctx)
        };
        for c in [
            // Corpus file 31's condition.
            r#"trace_state["tracetest"] == "true""#,
            r#"trace_state["congo"] == "t61rcWkgMzE""#,
            r#"trace_state["missing"] == nil"#,
            r#"trace_state == "tracetest=true, congo=t61rcWkgMzE""#,
            r#"kind.string == "Server" and kind.deprecated_string == "SPAN_KIND_SERVER""#,
            "dropped_events_count == 2 and dropped_links_count == 3 and flags == 256",
            "Len(events) == 2 and Len(links) == 0",
            "start_time < end_time and start_time != start_time_unix_nano",
            "resource.dropped_attributes_count == 5",
            r#"scope.name == "lib" and scope.dropped_attributes_count == 4"#,
            r#"cache["x"] == nil and Len(cache) == 0"#,
            r#"span.name == "GET /health""#,
            r#"attributes["list"][0] == 1 and attributes["list"][1] == nil"#,
            r#"attributes["nested"][0] == nil and attributes["list"]["k"] == nil"#,
            r#"String(start_time) == "1970-01-01T00:00:00.000001Z""#,
        ] {
            assert_eq!(t(c), Ok(true), "{c}");
        }
        assert!(Condition::parse("trace_state[0] == 1", Context::Span).is_err());
        assert!(Condition::parse("events == 2", Context::Span).is_ok());
        assert_eq!(t("events == 2"), Ok(false), "lists of items equal nothing");
    }

    #[test]
    fn spanevent_datapoint_and_log_paths() {
        let s = span();
        let ev = Event {
            name: "exception".into(),
            time_unix_nano: 7,
            ..Default::default()
        };
        let outer = Outer {
            resource: &[],
            resource_dropped: 0,
            scope: None,
        };
        let ctx = EventCtx {
            outer: &outer,
            span: &s,
            event: &ev,
            index: 3,
        };
        for c in [
            r#"name == "exception" and event_index == 3 and time_unix_nano == 7"#,
            r#"span.name == "GET /health" and span.kind == SPAN_KIND_SERVER"#,
            r#"span.attributes["http.status_code"] == 503"#,
            r#"spanevent.name == "exception""#,
        ] {
            let cond =
                Condition::parse(c, Context::SpanEvent).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(cond.eval(&ctx), Ok(true), "{c}");
        }

        use opentelemetry_proto::tonic::metrics::v1::{
            ExponentialHistogram, exponential_histogram_data_point::Buckets,
        };
        let p = ExponentialHistogramDataPoint {
            scale: 3,
            zero_count: 4,
            positive: Some(Buckets {
                offset: -2,
                bucket_counts: vec![1, 2, 3],
            }),
            time_unix_nano: 10,
            ..Default::default()
        };
        let m = Metric {
            name: "latency".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![p.clone()],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        let ctx = PointCtx {
            outer: &outer,
            metric: &m,
            point: PointRef::ExpHistogram(&p),
        };
        for c in [
            "scale == 3 and zero_count == 4 and positive.offset == -2",
            "Len(positive.bucket_counts) == 3 and Len(negative.bucket_counts) == 0",
            r#"metric.name == "latency" and Len(metric.data_points) == 1"#,
            "datapoint.time_unix_nano == 10 and Len(exemplars) == 0",
        ] {
            let cond =
                Condition::parse(c, Context::DataPoint).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(cond.eval(&ctx), Ok(true), "{c}");
        }

        let log = LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::StringValue("first".into())),
                        }],
                    },
                )),
            }),
            event_name: "login".into(),
            time_unix_nano: 5,
            observed_time_unix_nano: 6,
            ..Default::default()
        };
        let ctx = LogCtx {
            outer: &outer,
            log: &log,
        };
        for c in [
            r#"body[0] == "first" and body[1] == nil"#,
            r#"body.string == "[\"first\"]""#,
            r#"event_name == "login" and log.event_name == "login""#,
            "time < observed_time and time_unix_nano == 5",
        ] {
            let cond = Condition::parse(c, Context::Log).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(cond.eval(&ctx), Ok(true), "{c}");
        }
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
