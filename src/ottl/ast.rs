//! The parsed form of an OTTL condition: the contexts, resolved paths, literals and the
//! expression tree that [`super::eval`] walks.

use std::fmt;

/// Where a condition runs: which item its paths read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Span,
    SpanEvent,
    Metric,
    DataPoint,
    Log,
    /// A resource alone (the routing connector's default): its attributes.
    Resource,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
            Context::Log => "log",
            Context::Resource => "resource",
        })
    }
}

/// A parse error: what is wrong and where (1-based column in the condition).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub column: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.msg)
    }
}

/// A field of the item a path reads (resolved per context at parse time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Attributes,
    ResourceAttributes,
    ScopeName,
    ScopeVersion,
    ScopeAttributes,
    ScopeDroppedAttributesCount,
    ResourceDroppedAttributesCount,
    /// The statements' scratch map; a condition of the filter processor always sees it empty.
    Cache,
    Name,
    /// `kind.string` (`Server`) and `kind.deprecated_string` (`SPAN_KIND_SERVER`).
    KindString,
    KindDeprecatedString,
    Kind,
    StatusCode,
    StatusMessage,
    TraceId,
    SpanId,
    ParentSpanId,
    TraceIdString,
    SpanIdString,
    ParentSpanIdString,
    TraceState,
    StartTime,
    EndTime,
    /// The time-typed forms (`start_time`, `time`, ...), compared only with each other.
    StartTimeTyped,
    EndTimeTyped,
    TimeTyped,
    ObservedTimeTyped,
    /// `end - start` in nanoseconds.
    Duration,
    Time,
    ObservedTime,
    SeverityNumber,
    SeverityText,
    Body,
    Flags,
    DroppedAttributesCount,
    DroppedEventsCount,
    DroppedLinksCount,
    /// A span's events and links, a metric's data points, a point's exemplars, bucket counts,
    /// bounds and quantiles: lists `Len` can count.
    Events,
    Links,
    DataPoints,
    Exemplars,
    BucketCounts,
    ExplicitBounds,
    QuantileValues,
    Scale,
    ZeroCount,
    PositiveOffset,
    NegativeOffset,
    PositiveBucketCounts,
    NegativeBucketCounts,
    EventIndex,
    /// `body.string`: the body as text.
    BodyString,
    EventName,
    /// Of the enclosing span (span events).
    SpanName,
    MetricName,
    MetricDescription,
    MetricUnit,
    MetricType,
    AggregationTemporality,
    IsMonotonic,
    ValueInt,
    ValueDouble,
    StartTimeUnixNano,
    Count,
    Sum,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub field: Field,
    /// Map keys and slice indexes after the field: `attributes["a"][0]`.
    pub keys: Vec<Key>,
    /// A spanevent condition's `span.*` path: the enclosing span's field.
    pub of_span: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Str(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub enum Value {
    Lit(Literal),
    Path(Path),
    IsMatch(Box<Value>, regex::Regex),
    Len(Box<Value>),
    Int(Box<Value>),
    Double(Box<Value>),
    String(Box<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(CmpOp, Value, Value),
    /// A value used as a condition (`IsMatch(...)`, `true`, a boolean attribute).
    Bool(Value),
}

/// A parsed condition, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Condition {
    pub text: String,
    pub context: Context,
    pub expr: Expr,
}
