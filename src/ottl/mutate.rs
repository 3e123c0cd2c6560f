//! Writable items for statements: each context's item with its resource, scope and the
//! statements' `cache`, readable through [`Ctx`] like the read-only contexts of conditions and
//! writable through [`CtxMut`]: the maps (attributes, body, cache) a path may index into, and
//! the typed fields (`name`, `status.code`, `start_time`, ...).

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use super::ast::{Call, Field, Key, Path, Value};
use super::eval::{
    PointRef, event_field, log_field, metric_field, point_field, scope_field, span_field,
};
use super::val::{Ctx, EvalError, Val};

/// Where a path's keys start: a map (attributes, cache) or a value (a log body).
pub enum Root<'a> {
    Map(&'a mut Vec<KeyValue>),
    Any(&'a mut Option<AnyValue>),
}

/// An item statements can write.
pub trait CtxMut: Ctx {
    /// The map or value a map-typed field is (`attributes`, `body`, `cache`, ...).
    fn root_mut(&mut self, f: Field, of_span: bool) -> Option<Root<'_>>;
    /// Writes a typed field (`name`, `status.code`, ...).
    fn set_field(&mut self, f: Field, of_span: bool, v: Val<'_>) -> Result<(), EvalError>;
    /// The metric context's list and position, for the functions that add metrics.
    fn metrics_mut(&mut self) -> Option<(&mut Vec<Metric>, usize)> {
        None
    }
}

/// The resource and scope around an item, and the statements' scratch map.
pub struct Env<'a> {
    pub resource: &'a mut Option<Resource>,
    /// `None` in the resource context.
    pub scope: Option<&'a mut Option<InstrumentationScope>>,
    pub cache: &'a mut Vec<KeyValue>,
}

fn read_only(f: Field) -> EvalError {
    EvalError(format!("{f:?} cannot be set"))
}

fn want_str(f: Field, v: Val<'_>) -> Result<String, EvalError> {
    match v {
        Val::Str(s) => Ok(s.into_owned()),
        other => Err(EvalError(format!(
            "{f:?} takes a string, got {}",
            other.type_name()
        ))),
    }
}

fn want_int(f: Field, v: &Val<'_>) -> Result<i64, EvalError> {
    match v {
        Val::Int(i) => Ok(*i),
        other => Err(EvalError(format!(
            "{f:?} takes an int, got {}",
            other.type_name()
        ))),
    }
}

fn want_u32(f: Field, v: &Val<'_>) -> Result<u32, EvalError> {
    u32::try_from(want_int(f, v)?).map_err(|_| EvalError(format!("{f:?}: out of range")))
}

/// Unix nanoseconds from an int (`*_unix_nano`) or a time (`start_time`).
fn want_nanos(f: Field, v: &Val<'_>) -> Result<u64, EvalError> {
    let n = match v {
        Val::Int(i) => *i,
        Val::Time(t) => *t,
        other => {
            return Err(EvalError(format!(
                "{f:?} takes an int or a time, got {}",
                other.type_name()
            )));
        }
    };
    u64::try_from(n).map_err(|_| EvalError(format!("{f:?}: negative time")))
}

fn want_id(f: Field, v: Val<'_>, len: usize, hex_text: bool) -> Result<Vec<u8>, EvalError> {
    let bytes = match (v, hex_text) {
        (Val::Bytes(b), false) => b.into_owned(),
        (Val::Str(s), true) => hex::decode(s.as_bytes())
            .map_err(|e| EvalError(format!("{f:?}: {s:?} is not hex: {e}")))?,
        (other, _) => {
            return Err(EvalError(format!(
                "{f:?} takes {}, got {}",
                if hex_text { "a hex string" } else { "bytes" },
                other.type_name()
            )));
        }
    };
    if bytes.len() != len && !bytes.is_empty() {
        return Err(EvalError(format!(
            "{f:?} takes {len} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl Env<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        match f {
            Field::ResourceAttributes => Val::Map(Cow::Borrowed(
                self.resource.as_ref().map_or(&[][..], |r| &r.attributes),
            )),
            Field::ResourceDroppedAttributesCount => Val::Int(
                self.resource
                    .as_ref()
                    .map_or(0, |r| r.dropped_attributes_count) as i64,
            ),
            Field::Cache => Val::Map(Cow::Borrowed(&self.cache[..])),
            Field::ScopeDroppedAttributesCount => Val::Int(
                self.scope
                    .as_ref()
                    .and_then(|s| s.as_ref())
                    .map_or(0, |s| s.dropped_attributes_count) as i64,
            ),
            _ => scope_field(self.scope.as_ref().and_then(|s| s.as_ref()), f),
        }
    }

    fn root_mut(&mut self, f: Field) -> Option<Root<'_>> {
        match f {
            Field::ResourceAttributes => Some(Root::Map(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
            )),
            Field::ScopeAttributes => self
                .scope
                .as_mut()
                .map(|s| Root::Map(&mut s.get_or_insert_with(Default::default).attributes)),
            Field::Cache => Some(Root::Map(self.cache)),
            _ => None,
        }
    }

    fn set_field(&mut self, f: Field, v: Val<'_>) -> Result<(), EvalError> {
        if f == Field::ResourceDroppedAttributesCount {
            self.resource
                .get_or_insert_with(Default::default)
                .dropped_attributes_count = want_u32(f, &v)?;
            return Ok(());
        }
        let Some(scope) = self.scope.as_mut() else {
            return Err(read_only(f));
        };
        let scope = scope.get_or_insert_with(Default::default);
        match f {
            Field::ScopeName => scope.name = want_str(f, v)?,
            Field::ScopeVersion => scope.version = want_str(f, v)?,
            Field::ScopeDroppedAttributesCount => scope.dropped_attributes_count = want_u32(f, &v)?,
            _ => return Err(read_only(f)),
        }
        Ok(())
    }
}

/// The resource context (and, with a scope, the scope context).
pub struct ResourceMut<'a> {
    pub env: Env<'a>,
}

impl Ctx for ResourceMut<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        self.env.field(f)
    }
}

impl CtxMut for ResourceMut<'_> {
    fn root_mut(&mut self, f: Field, _of_span: bool) -> Option<Root<'_>> {
        self.env.root_mut(f)
    }

    fn set_field(&mut self, f: Field, _of_span: bool, v: Val<'_>) -> Result<(), EvalError> {
        self.env.set_field(f, v)
    }
}

fn set_span(s: &mut Span, f: Field, v: Val<'_>) -> Result<(), EvalError> {
    match f {
        Field::Name => s.name = want_str(f, v)?,
        Field::Kind => {
            let k = want_int(f, &v)?;
            if !(0..=5).contains(&k) {
                return Err(EvalError(format!("span kind {k} is not 0-5")));
            }
            s.kind = k as i32;
        }
        Field::StatusCode => {
            let c = want_int(f, &v)?;
            if !(0..=2).contains(&c) {
                return Err(EvalError(format!("status code {c} is not 0-2")));
            }
            s.status.get_or_insert_with(Status::default).code = c as i32;
        }
        Field::StatusMessage => {
            s.status.get_or_insert_with(Status::default).message = want_str(f, v)?
        }
        Field::TraceId => s.trace_id = want_id(f, v, 16, false)?,
        Field::SpanId => s.span_id = want_id(f, v, 8, false)?,
        Field::ParentSpanId => s.parent_span_id = want_id(f, v, 8, false)?,
        Field::TraceIdString => s.trace_id = want_id(f, v, 16, true)?,
        Field::SpanIdString => s.span_id = want_id(f, v, 8, true)?,
        Field::ParentSpanIdString => s.parent_span_id = want_id(f, v, 8, true)?,
        Field::TraceState => s.trace_state = want_str(f, v)?,
        Field::StartTime | Field::StartTimeTyped => s.start_time_unix_nano = want_nanos(f, &v)?,
        Field::EndTime | Field::EndTimeTyped => s.end_time_unix_nano = want_nanos(f, &v)?,
        Field::DroppedAttributesCount => s.dropped_attributes_count = want_u32(f, &v)?,
        Field::DroppedEventsCount => s.dropped_events_count = want_u32(f, &v)?,
        Field::DroppedLinksCount => s.dropped_links_count = want_u32(f, &v)?,
        Field::Flags => s.flags = want_u32(f, &v)?,
        _ => return Err(read_only(f)),
    }
    Ok(())
}

pub struct SpanMut<'a> {
    pub env: Env<'a>,
    pub span: &'a mut Span,
}

impl Ctx for SpanMut<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        span_field(self.span, f).unwrap_or_else(|| self.env.field(f))
    }
}

impl CtxMut for SpanMut<'_> {
    fn root_mut(&mut self, f: Field, _of_span: bool) -> Option<Root<'_>> {
        match f {
            Field::Attributes => Some(Root::Map(&mut self.span.attributes)),
            _ => self.env.root_mut(f),
        }
    }

    fn set_field(&mut self, f: Field, _of_span: bool, v: Val<'_>) -> Result<(), EvalError> {
        if span_field(self.span, f).is_some() {
            set_span(self.span, f, v)
        } else {
            self.env.set_field(f, v)
        }
    }
}

pub struct EventMut<'a> {
    pub env: Env<'a>,
    pub span: &'a mut Span,
    pub index: usize,
}

impl Ctx for EventMut<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        match self.span.events.get(self.index) {
            Some(e) => event_field(self.span, e, self.index, f),
            None => None,
        }
        .unwrap_or_else(|| self.env.field(f))
    }

    fn span_field(&self, f: Field) -> Val<'_> {
        span_field(self.span, f).unwrap_or_else(|| self.env.field(f))
    }
}

impl CtxMut for EventMut<'_> {
    fn root_mut(&mut self, f: Field, of_span: bool) -> Option<Root<'_>> {
        match (f, of_span) {
            (Field::Attributes, true) => Some(Root::Map(&mut self.span.attributes)),
            (Field::Attributes, false) => self
                .span
                .events
                .get_mut(self.index)
                .map(|e| Root::Map(&mut e.attributes)),
            _ => self.env.root_mut(f),
        }
    }

    fn set_field(&mut self, f: Field, of_span: bool, v: Val<'_>) -> Result<(), EvalError> {
        if of_span {
            return set_span(self.span, f, v);
        }
        let Some(e) = self.span.events.get_mut(self.index) else {
            return Err(EvalError("the span event is gone".into()));
        };
        match f {
            Field::EventName => e.name = want_str(f, v)?,
            Field::Time | Field::TimeTyped => e.time_unix_nano = want_nanos(f, &v)?,
            Field::DroppedAttributesCount => e.dropped_attributes_count = want_u32(f, &v)?,
            _ => return self.env.set_field(f, v),
        }
        Ok(())
    }
}

fn set_metric(m: &mut Metric, f: Field, v: Val<'_>) -> Result<(), EvalError> {
    match f {
        Field::MetricName => m.name = want_str(f, v)?,
        Field::MetricDescription => m.description = want_str(f, v)?,
        Field::MetricUnit => m.unit = want_str(f, v)?,
        Field::AggregationTemporality => {
            let t = want_int(f, &v)?;
            if !(0..=2).contains(&t) {
                return Err(EvalError(format!("aggregation temporality {t} is not 0-2")));
            }
            match &mut m.data {
                Some(Data::Sum(s)) => s.aggregation_temporality = t as i32,
                Some(Data::Histogram(h)) => h.aggregation_temporality = t as i32,
                Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality = t as i32,
                _ => {}
            }
        }
        Field::IsMonotonic => match (&mut m.data, v) {
            (Some(Data::Sum(s)), Val::Bool(b)) => s.is_monotonic = b,
            (Some(Data::Sum(_)), other) => {
                return Err(EvalError(format!(
                    "is_monotonic takes a bool, got {}",
                    other.type_name()
                )));
            }
            _ => {}
        },
        _ => return Err(read_only(f)),
    }
    Ok(())
}

pub struct MetricMut<'a> {
    pub env: Env<'a>,
    pub metrics: &'a mut Vec<Metric>,
    pub index: usize,
}

impl Ctx for MetricMut<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        self.metrics
            .get(self.index)
            .and_then(|m| metric_field(m, f))
            .unwrap_or_else(|| self.env.field(f))
    }
}

impl CtxMut for MetricMut<'_> {
    fn root_mut(&mut self, f: Field, _of_span: bool) -> Option<Root<'_>> {
        self.env.root_mut(f)
    }

    fn set_field(&mut self, f: Field, _of_span: bool, v: Val<'_>) -> Result<(), EvalError> {
        match self.metrics.get_mut(self.index) {
            Some(m) if metric_field(m, f).is_some() => set_metric(m, f, v),
            _ => self.env.set_field(f, v),
        }
    }

    fn metrics_mut(&mut self) -> Option<(&mut Vec<Metric>, usize)> {
        Some((self.metrics, self.index))
    }
}

/// A data point by its position in its metric.
pub struct PointMut<'a> {
    pub env: Env<'a>,
    pub metric: &'a mut Metric,
    pub index: usize,
}

/// The point at `index` of a metric, read-only.
pub fn point_at(m: &Metric, index: usize) -> Option<PointRef<'_>> {
    Some(match m.data.as_ref()? {
        Data::Gauge(g) => PointRef::Number(g.data_points.get(index)?),
        Data::Sum(s) => PointRef::Number(s.data_points.get(index)?),
        Data::Histogram(h) => PointRef::Histogram(h.data_points.get(index)?),
        Data::ExponentialHistogram(h) => PointRef::ExpHistogram(h.data_points.get(index)?),
        Data::Summary(s) => PointRef::Summary(s.data_points.get(index)?),
    })
}

impl Ctx for PointMut<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        point_at(self.metric, self.index)
            .and_then(|p| point_field(self.metric, p, f))
            .unwrap_or_else(|| self.env.field(f))
    }
}

macro_rules! point_common {
    ($p:expr, $f:expr, $v:expr) => {
        match $f {
            Field::Attributes => return Err(read_only($f)),
            Field::Time | Field::TimeTyped => $p.time_unix_nano = want_nanos($f, &$v)?,
            Field::StartTimeUnixNano | Field::StartTimeTyped => {
                $p.start_time_unix_nano = want_nanos($f, &$v)?
            }
            Field::Flags => $p.flags = want_u32($f, &$v)?,
            _ => return Err(read_only($f)),
        }
    };
}

impl CtxMut for PointMut<'_> {
    fn root_mut(&mut self, f: Field, _of_span: bool) -> Option<Root<'_>> {
        if f != Field::Attributes {
            return self.env.root_mut(f);
        }
        let i = self.index;
        let attrs = match self.metric.data.as_mut()? {
            Data::Gauge(g) => &mut g.data_points.get_mut(i)?.attributes,
            Data::Sum(s) => &mut s.data_points.get_mut(i)?.attributes,
            Data::Histogram(h) => &mut h.data_points.get_mut(i)?.attributes,
            Data::ExponentialHistogram(h) => &mut h.data_points.get_mut(i)?.attributes,
            Data::Summary(s) => &mut s.data_points.get_mut(i)?.attributes,
        };
        Some(Root::Map(attrs))
    }

    fn set_field(&mut self, f: Field, _of_span: bool, v: Val<'_>) -> Result<(), EvalError> {
        if metric_field(self.metric, f).is_some() {
            return set_metric(self.metric, f, v);
        }
        if point_at(self.metric, self.index)
            .and_then(|p| point_field(self.metric, p, f))
            .is_none()
        {
            return self.env.set_field(f, v);
        }
        let i = self.index;
        let gone = || EvalError("the data point is gone".into());
        match self.metric.data.as_mut().ok_or_else(gone)? {
            Data::Gauge(g) => set_number(g.data_points.get_mut(i).ok_or_else(gone)?, f, v)?,
            Data::Sum(s) => set_number(s.data_points.get_mut(i).ok_or_else(gone)?, f, v)?,
            Data::Histogram(h) => {
                let p = h.data_points.get_mut(i).ok_or_else(gone)?;
                match f {
                    Field::Count => p.count = want_nanos(f, &v)?,
                    Field::Sum => p.sum = Some(want_float(f, &v)?),
                    _ => point_common!(p, f, v),
                }
            }
            Data::ExponentialHistogram(h) => {
                let p = h.data_points.get_mut(i).ok_or_else(gone)?;
                match f {
                    Field::Count => p.count = want_nanos(f, &v)?,
                    Field::Sum => p.sum = Some(want_float(f, &v)?),
                    Field::Scale => p.scale = want_int(f, &v)? as i32,
                    Field::ZeroCount => p.zero_count = want_nanos(f, &v)?,
                    _ => point_common!(p, f, v),
                }
            }
            Data::Summary(s) => {
                let p = s.data_points.get_mut(i).ok_or_else(gone)?;
                match f {
                    Field::Count => p.count = want_nanos(f, &v)?,
                    Field::Sum => p.sum = want_float(f, &v)?,
                    _ => point_common!(p, f, v),
                }
            }
        }
        Ok(())
    }
}

fn want_float(f: Field, v: &Val<'_>) -> Result<f64, EvalError> {
    match v {
        Val::Float(x) => Ok(*x),
        Val::Int(i) => Ok(*i as f64),
        other => Err(EvalError(format!(
            "{f:?} takes a double, got {}",
            other.type_name()
        ))),
    }
}

fn set_number(
    p: &mut opentelemetry_proto::tonic::metrics::v1::NumberDataPoint,
    f: Field,
    v: Val<'_>,
) -> Result<(), EvalError> {
    match f {
        Field::ValueInt => p.value = Some(number_data_point::Value::AsInt(want_int(f, &v)?)),
        Field::ValueDouble => {
            p.value = Some(number_data_point::Value::AsDouble(want_float(f, &v)?))
        }
        _ => point_common!(p, f, v),
    }
    Ok(())
}

pub struct LogMut<'a> {
    pub env: Env<'a>,
    pub log: &'a mut LogRecord,
}

impl Ctx for LogMut<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        log_field(self.log, f).unwrap_or_else(|| self.env.field(f))
    }
}

impl CtxMut for LogMut<'_> {
    fn root_mut(&mut self, f: Field, _of_span: bool) -> Option<Root<'_>> {
        match f {
            Field::Attributes => Some(Root::Map(&mut self.log.attributes)),
            Field::Body => Some(Root::Any(&mut self.log.body)),
            _ => self.env.root_mut(f),
        }
    }

    fn set_field(&mut self, f: Field, _of_span: bool, v: Val<'_>) -> Result<(), EvalError> {
        let l = &mut *self.log;
        match f {
            Field::Time | Field::TimeTyped => l.time_unix_nano = want_nanos(f, &v)?,
            Field::ObservedTime | Field::ObservedTimeTyped => {
                l.observed_time_unix_nano = want_nanos(f, &v)?
            }
            Field::SeverityNumber => {
                let n = want_int(f, &v)?;
                if !(0..=24).contains(&n) {
                    return Err(EvalError(format!("severity number {n} is not 0-24")));
                }
                l.severity_number = n as i32;
            }
            Field::SeverityText => l.severity_text = want_str(f, v)?,
            Field::EventName => l.event_name = want_str(f, v)?,
            Field::TraceId => l.trace_id = want_id(f, v, 16, false)?,
            Field::SpanId => l.span_id = want_id(f, v, 8, false)?,
            Field::TraceIdString => l.trace_id = want_id(f, v, 16, true)?,
            Field::SpanIdString => l.span_id = want_id(f, v, 8, true)?,
            Field::Flags => l.flags = want_u32(f, &v)?,
            Field::DroppedAttributesCount => l.dropped_attributes_count = want_u32(f, &v)?,
            _ => return self.env.set_field(f, v),
        }
        Ok(())
    }
}

/// Where a path with keys lands: a map to edit or a value to replace.
pub enum Slot<'a> {
    Map(&'a mut Vec<KeyValue>),
    Any(&'a mut AnyValue),
}

fn entry<'a>(m: &'a mut Vec<KeyValue>, k: &str, create: bool) -> Option<&'a mut AnyValue> {
    let i = match m.iter().position(|kv| kv.key == k) {
        Some(i) => i,
        None if create => {
            m.push(KeyValue {
                key: k.to_string(),
                value: Some(AnyValue::default()),
                ..Default::default()
            });
            m.len() - 1
        }
        None => return None,
    };
    Some(m[i].value.get_or_insert_with(Default::default))
}

/// Follows a path's keys to what it names, creating maps on the way when `create` (as `set`
/// does); `None` when something on the way is missing and not created.
pub fn slot<'a>(
    ctx: &'a mut dyn CtxMut,
    p: &Path,
    create: bool,
) -> Result<Option<Slot<'a>>, EvalError> {
    use opentelemetry_proto::tonic::common::v1::{KeyValueList, any_value::Value as V};
    let Some(root) = ctx.root_mut(p.field, p.of_span) else {
        return Ok(None);
    };
    let mut cur = match root {
        Root::Map(m) => Slot::Map(m),
        Root::Any(opt) => match opt {
            Some(v) => Slot::Any(v),
            None if create => Slot::Any(opt.insert(AnyValue::default())),
            None => return Ok(None),
        },
    };
    for k in &p.keys {
        cur = match (cur, k) {
            (Slot::Map(m), Key::Str(k)) => match entry(m, k, create) {
                Some(v) => Slot::Any(v),
                None => return Ok(None),
            },
            (Slot::Any(v), Key::Str(k)) => {
                if v.value.is_none() && create {
                    v.value = Some(V::KvlistValue(KeyValueList::default()));
                }
                match &mut v.value {
                    Some(V::KvlistValue(kv)) => match entry(&mut kv.values, k, create) {
                        Some(v) => Slot::Any(v),
                        None => return Ok(None),
                    },
                    _ if create => {
                        return Err(EvalError(format!("[{k:?}]: the value is not a map")));
                    }
                    _ => return Ok(None),
                }
            }
            (Slot::Any(v), Key::Index(i)) => match &mut v.value {
                Some(V::ArrayValue(a)) => {
                    let len = a.values.len();
                    match usize::try_from(*i).ok().and_then(|i| a.values.get_mut(i)) {
                        Some(x) => Slot::Any(x),
                        None => {
                            return Err(EvalError(format!(
                                "index {i} is out of range of a slice of {len}"
                            )));
                        }
                    }
                }
                _ if create => return Err(EvalError(format!("[{i}]: the value is not a slice"))),
                _ => return Ok(None),
            },
            (Slot::Map(_), Key::Index(i)) => {
                return Err(EvalError(format!("[{i}]: a map is indexed by string keys")));
            }
        };
    }
    Ok(Some(cur))
}

/// `set(path, value)`: nil does nothing (the Collector's default); a map replaces a map; a
/// value lands where the keys point, creating maps on the way.
pub fn set_path(ctx: &mut dyn CtxMut, p: &Path, v: Val<'_>) -> Result<(), EvalError> {
    if matches!(v, Val::Nil) {
        return Ok(());
    }
    if p.field == Field::TraceState && !p.keys.is_empty() {
        let Some(Key::Str(key)) = p.keys.first() else {
            return Err(EvalError("trace_state takes a string key".into()));
        };
        let value = match v {
            Val::Str(s) => s.into_owned(),
            other => {
                return Err(EvalError(format!(
                    "a trace_state value is a string, got {}",
                    other.type_name()
                )));
            }
        };
        let current = match ctx.field(Field::TraceState) {
            Val::Str(s) => s.into_owned(),
            _ => String::new(),
        };
        let mut members: Vec<String> = current
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty() && m.split_once('=').is_none_or(|(k, _)| k != key))
            .map(str::to_string)
            .collect();
        // W3C: a changed or added member goes first.
        members.insert(0, format!("{key}={value}"));
        return ctx.set_field(Field::TraceState, p.of_span, Val::string(members.join(",")));
    }
    if p.keys.is_empty() {
        match ctx.root_mut(p.field, p.of_span) {
            Some(Root::Map(m)) => {
                return match v {
                    Val::Map(new) => {
                        *m = new.into_owned();
                        Ok(())
                    }
                    other => Err(EvalError(format!(
                        "{:?} is a map; cannot set it to a {}",
                        p.field,
                        other.type_name()
                    ))),
                };
            }
            Some(Root::Any(body)) => {
                *body = v.into_any()?;
                return Ok(());
            }
            None => return ctx.set_field(p.field, p.of_span, v),
        }
    }
    let any = v.into_any()?;
    match slot(ctx, p, true)? {
        Some(Slot::Any(dst)) => {
            *dst = any.unwrap_or_default();
            Ok(())
        }
        _ => Err(EvalError(format!("cannot set {:?} here", p.field))),
    }
}

/// Runs `f` on the map a path names; nothing when the path names nothing.
pub fn with_map<R>(
    ctx: &mut dyn CtxMut,
    p: &Path,
    f: impl FnOnce(&mut Vec<KeyValue>) -> R,
) -> Result<Option<R>, EvalError> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match slot(ctx, p, false)? {
        None => Ok(None),
        Some(Slot::Map(m)) => Ok(Some(f(m))),
        Some(Slot::Any(v)) => match &mut v.value {
            Some(V::KvlistValue(kv)) => Ok(Some(f(&mut kv.values))),
            None => Ok(None),
            Some(_) => Err(EvalError("the target is not a map".into())),
        },
    }
}

/// An editor's view of its call: arguments evaluated against the item, owned, so the item can
/// be written next.
pub struct Edit<'c> {
    pub call: &'c Call,
    pub ctx: &'c mut dyn CtxMut,
}

impl Edit<'_> {
    pub fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, EvalError> {
        Err(EvalError(format!("{}: {msg}", self.call.name)))
    }

    /// Argument `i`, evaluated (`Nil` when left out).
    pub fn arg(&self, i: usize) -> Result<Val<'static>, EvalError> {
        match self.call.args.get(i) {
            Some(Some(v)) => Ok(super::eval::value(v, &*self.ctx)?.into_owned()),
            _ => Ok(Val::Nil),
        }
    }

    pub fn has(&self, i: usize) -> bool {
        self.call.has(i)
    }

    pub fn str(&self, i: usize) -> Result<String, EvalError> {
        match self.arg(i)? {
            Val::Str(s) => Ok(s.into_owned()),
            other => self.err(format_args!(
                "argument {} must be a string, got {}",
                i + 1,
                other.type_name()
            )),
        }
    }

    pub fn opt_str(&self, i: usize) -> Result<Option<String>, EvalError> {
        if self.has(i) {
            self.str(i).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, EvalError> {
        match self.arg(i)? {
            Val::Int(n) => Ok(n),
            other => self.err(format_args!(
                "argument {} must be an int, got {}",
                i + 1,
                other.type_name()
            )),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, EvalError> {
        if self.has(i) {
            self.int(i).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_bool(&self, i: usize) -> Result<Option<bool>, EvalError> {
        match self.arg(i)? {
            Val::Nil => Ok(None),
            Val::Bool(b) => Ok(Some(b)),
            other => self.err(format_args!(
                "argument {} must be a bool, got {}",
                i + 1,
                other.type_name()
            )),
        }
    }

    /// The path argument `i` (the parser made sure it is one).
    pub fn target(&self, i: usize) -> &Path {
        match self.call.args.get(i) {
            Some(Some(Value::Path(p))) => p,
            _ => unreachable!("the parser checks that a target is a path"),
        }
    }

    /// The string a path holds, if it holds one.
    pub fn target_str(&self, i: usize) -> Option<String> {
        match super::eval::path(self.target(i), &*self.ctx) {
            Val::Str(s) => Some(s.into_owned()),
            _ => None,
        }
    }

    /// The converter argument `i` names (`SHA256`), if given.
    pub fn func(&self, i: usize) -> Option<usize> {
        match self.call.args.get(i) {
            Some(Some(Value::Func(id))) => Some(*id),
            _ => None,
        }
    }
}

pub type Run = fn(&mut Edit<'_>) -> Result<(), EvalError>;

pub struct EditorDef {
    pub name: &'static str,
    pub params: &'static [super::ast::Param],
    pub run: Run,
    pub compile: Option<super::funcs::Compile>,
    /// The contexts it runs in; empty: every context.
    pub contexts: &'static [super::ast::Context],
}

macro_rules! editor {
    ($name:literal, [$($p:expr),*], $run:expr) => {
        $crate::ottl::mutate::EditorDef { name: $name, params: &[$($p),*], run: $run, compile: None, contexts: &[] }
    };
    ($name:literal, [$($p:expr),*], $run:expr, $compile:expr) => {
        $crate::ottl::mutate::EditorDef { name: $name, params: &[$($p),*], run: $run, compile: Some($compile), contexts: &[] }
    };
}
pub(crate) use editor;
