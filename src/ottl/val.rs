//! OTTL's runtime values: what a path, a literal or a converter yields while a condition or a
//! statement runs, borrowed from the item where possible; the item trait paths read through;
//! the evaluation error.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};

use std::cmp::Ordering;

use super::ast::{CmpOp, Field};

/// A value during evaluation, borrowed from the item where possible.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Val<'a> {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Map(Cow<'a, [KeyValue]>),
    List(Cow<'a, [AnyValue]>),
    /// A time-typed path or converter result (`start_time`, `Now()`), Unix nanoseconds;
    /// compared only with times.
    Time(i64),
    /// A `Duration(...)`, nanoseconds; compared only with durations.
    Duration(i64),
    /// A list of telemetry items (events, links, data points, bounds, ...): `Len` counts it;
    /// it equals nothing.
    Items(&'static str, usize),
}

impl<'a> Val<'a> {
    #[inline]
    pub fn from_any(v: Option<&'a AnyValue>) -> Val<'a> {
        match v.and_then(|v| v.value.as_ref()) {
            None => Val::Nil,
            Some(any_value::Value::StringValue(s)) => Val::Str(Cow::Borrowed(s)),
            Some(any_value::Value::BoolValue(b)) => Val::Bool(*b),
            Some(any_value::Value::IntValue(i)) => Val::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Val::Float(*d),
            Some(any_value::Value::BytesValue(b)) => Val::Bytes(Cow::Borrowed(b)),
            Some(any_value::Value::ArrayValue(a)) => Val::List(Cow::Borrowed(&a.values)),
            Some(any_value::Value::KvlistValue(kv)) => Val::Map(Cow::Borrowed(&kv.values)),
            Some(any_value::Value::StringValueStrindex(i)) => Val::Int(*i as i64),
        }
    }

    pub fn str(s: &'a str) -> Val<'a> {
        Val::Str(Cow::Borrowed(s))
    }

    pub fn string(s: String) -> Val<'static> {
        Val::Str(Cow::Owned(s))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "double",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::Map(_) => "map",
            Val::List(_) => "slice",
            Val::Time(_) => "time",
            Val::Duration(_) => "duration",
            Val::Items(kind, _) => kind,
        }
    }

    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Nil => Val::Nil,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => Val::Float(f),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Bytes(b) => Val::Bytes(Cow::Owned(b.into_owned())),
            Val::Map(m) => Val::Map(Cow::Owned(m.into_owned())),
            Val::List(l) => Val::List(Cow::Owned(l.into_owned())),
            Val::Time(t) => Val::Time(t),
            Val::Duration(d) => Val::Duration(d),
            Val::Items(k, n) => Val::Items(k, n),
        }
    }

    /// The value as an attribute value; `None` for nil. Times, durations and item lists have
    /// no attribute form.
    pub fn into_any(self) -> Result<Option<AnyValue>, EvalError> {
        use any_value::Value as V;
        let v = match self {
            Val::Nil => return Ok(None),
            Val::Bool(b) => V::BoolValue(b),
            Val::Int(i) => V::IntValue(i),
            Val::Float(f) => V::DoubleValue(f),
            Val::Str(s) => V::StringValue(s.into_owned()),
            Val::Bytes(b) => V::BytesValue(b.into_owned()),
            Val::Map(m) => V::KvlistValue(KeyValueList {
                values: m.into_owned(),
            }),
            Val::List(l) => V::ArrayValue(ArrayValue {
                values: l.into_owned(),
            }),
            other => {
                return Err(EvalError(format!(
                    "a {} cannot be stored in an attribute or body",
                    other.type_name()
                )));
            }
        };
        Ok(Some(AnyValue { value: Some(v) }))
    }

    /// The string form `String` and `Concat` use: numbers and bools printed, bytes in hex,
    /// maps and slices as JSON.
    pub fn to_text(&self) -> Option<Cow<'a, str>> {
        Some(match self {
            Val::Nil => return None,
            Val::Str(s) => s.clone(),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Float(f) => Cow::Owned(float_text(*f)),
            Val::Bytes(b) => Cow::Owned(hex::encode(b)),
            Val::Map(kvs) => Cow::Owned(map_json(kvs).to_string()),
            Val::List(vs) => {
                Cow::Owned(serde_json::Value::Array(vs.iter().map(json).collect()).to_string())
            }
            Val::Time(ns) => Cow::Owned(
                jiff::Timestamp::from_nanosecond(*ns as i128)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ),
            Val::Duration(ns) => Cow::Owned(duration_text(*ns)),
            Val::Items(..) => return None,
        })
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)` for ordinary magnitudes, exponent form beyond:
/// the shortest text that reads back as the same number.
pub fn float_text(f: f64) -> String {
    if f.is_finite() && (f == 0.0 || (1e-4..1e21).contains(&f.abs())) {
        format!("{f}")
    } else if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        let s = format!("{f:e}");
        // Rust writes `1e21`, Go `1e+21`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `350ms`, `0s`.
pub fn duration_text(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (div, unit) = if u < 1_000 {
            (1, "ns")
        } else if u < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        out.push_str(&trim_fraction(u, div));
        out.push_str(unit);
        return out;
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s_ns = u % 60_000_000_000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&trim_fraction(s_ns, 1_000_000_000));
    out.push('s');
    out
}

fn trim_fraction(v: u64, div: u64) -> String {
    let whole = v / div;
    let frac = v % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

pub fn json(v: &AnyValue) -> serde_json::Value {
    crate::signal::value::to_json(v)
}

pub fn map_json(kvs: &[KeyValue]) -> serde_json::Value {
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
}

/// An error while evaluating (a converter given a type it cannot take, a non-boolean used as a
/// condition). What happens then is the processor's `error_mode`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// The item a condition or a statement reads.
pub trait Ctx {
    fn field(&self, f: Field) -> Val<'_>;
    /// A spanevent's `span.*` paths: the enclosing span's field.
    fn span_field(&self, _f: Field) -> Val<'_> {
        Val::Nil
    }
}

/// OTTL's comparison of two values: `nil` equals only `nil`; ints and floats compare as
/// numbers; values of different types are never equal and never ordered.
#[inline]
pub fn compare(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
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
        (Val::Time(x), Val::Time(y)) => Some(x.cmp(y)),
        (Val::Duration(x), Val::Duration(y)) => Some(x.cmp(y)),
        (Val::Map(x), Val::Map(y)) => (x == y).then_some(Ordering::Equal),
        (Val::List(x), Val::List(y)) => (x == y).then_some(Ordering::Equal),
        _ => None,
    };
    ordered(op, ord)
}

/// `op` applied to an ordering; `None` (not comparable) is only `!=`.
#[inline]
pub fn ordered(op: CmpOp, ord: Option<Ordering>) -> bool {
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

/// OTTL equality (`==`), for converters that search (`ContainsValue`, `Index`).
#[inline]
pub fn equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    compare(CmpOp::Eq, a, b)
}
