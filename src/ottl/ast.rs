//! The parsed form of OTTL conditions and statements: the contexts, resolved paths, literals,
//! converter and editor calls and the expression tree that [`super::eval`] walks.

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
    /// An instrumentation scope (and its resource).
    Scope,
    /// A request's client metadata (the routing connector's `context: request`).
    Request,
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
            Context::Scope => "scope",
            Context::Request => "request",
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
    /// The request's metadata (headers), keyed by lower-cased name.
    Request,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
pub enum Value {
    Lit(Literal),
    Path(Path),
    /// A converter call (`Concat([...], "-")`).
    Call(Box<Call>),
    /// A list literal `[a, b]`.
    List(Vec<Value>),
    /// A map literal `{"k": v}`.
    Map(Vec<(String, Value)>),
    Math(MathOp, Box<Value>, Box<Value>),
    /// A converter's result, indexed: `Split(s, ",")[0]`, `ParseJSON(body)["k"]`.
    Index(Box<Value>, Vec<Key>),
    /// A converter named as an argument, not called (`SHA256` in `replace_pattern`): its index
    /// in the converter table.
    Func(usize),
}

/// A converter or editor call: which function (its index in the converter or editor table)
/// and its arguments by parameter position (`None`: an optional one left out).
#[derive(Debug, Clone)]
pub struct Call {
    pub name: &'static str,
    pub id: usize,
    pub args: Vec<Option<Value>>,
    /// What the function prepared at load from its literal arguments.
    pub compiled: Compiled,
}

/// Prepared at load: a regex compiled, a glob, a list of networks, ...
#[derive(Debug, Clone, Default)]
pub enum Compiled {
    #[default]
    None,
    Regex(regex::Regex),
    /// A regex and, per named group, the type its capture is converted to (grok's `:int`).
    Typed(regex::Regex, Vec<(String, CaptureType)>),
    Nets(Vec<(std::net::IpAddr, u8)>),
    Strings(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureType {
    Str,
    Int,
    Float,
    Bool,
}

/// A statement: one editor call, run when its `where` condition holds.
#[derive(Debug, Clone)]
pub struct Statement {
    pub text: String,
    pub context: Context,
    pub editor: Call,
    pub condition: Option<Expr>,
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

/// How a function parameter takes its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any value, evaluated when the function runs.
    Any,
    /// A path the editor writes (`set`'s target).
    Path,
    /// A converter named without calling it (`SHA256`).
    Func,
}

/// One parameter of an editor or converter, as the Collector's function list names it.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub optional: bool,
    pub kind: Kind,
}

pub const fn req(name: &'static str) -> Param {
    Param {
        name,
        optional: false,
        kind: Kind::Any,
    }
}

pub const fn opt(name: &'static str) -> Param {
    Param {
        name,
        optional: true,
        kind: Kind::Any,
    }
}

pub const fn target(name: &'static str) -> Param {
    Param {
        name,
        optional: false,
        kind: Kind::Path,
    }
}

pub const fn func(name: &'static str) -> Param {
    Param {
        name,
        optional: true,
        kind: Kind::Func,
    }
}

impl Call {
    /// Argument `i` when it is a literal string.
    pub fn lit_str(&self, i: usize) -> Option<&str> {
        match self.args.get(i) {
            Some(Some(Value::Lit(Literal::Str(s)))) => Some(s),
            _ => None,
        }
    }

    /// Argument `i` when it is a list of literal strings.
    pub fn lit_strs(&self, i: usize) -> Option<Vec<String>> {
        match self.args.get(i) {
            Some(Some(Value::List(items))) => items
                .iter()
                .map(|v| match v {
                    Value::Lit(Literal::Str(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn has(&self, i: usize) -> bool {
        matches!(self.args.get(i), Some(Some(_)))
    }
}

/// What a function's load-time check returns: the argument position at fault and why.
pub type CompileError = (usize, String);
