//! OTTL conditions (the OpenTelemetry Transformation Language's boolean expressions), the subset
//! the `filter` processor needs: every path of the Collector's resource, scope, span, spanevent,
//! metric, datapoint and log contexts ([`PATHS`]; map keys and slice indexes after them, the
//! context's own name as an optional prefix), the enum constants
//! (`SPAN_KIND_*`, `STATUS_CODE_*`, `SEVERITY_NUMBER_*`, `METRIC_DATA_TYPE_*`,
//! `AGGREGATION_TEMPORALITY_*`), string, int, float, bool, bytes (`0x…`) and `nil` literals, the
//! comparisons `==` `!=` `<` `<=` `>` `>=`, `and` `or` `not`, parentheses, and the converters
//! `IsMatch`, `Len`, `Int`, `Double`, `String`.
//!
//! A condition is parsed once, at config load, into a tree whose paths are already resolved for
//! its context (an unknown path or constant is a parse error with its column); evaluation walks
//! the tree against one item ([`eval`]).

pub mod ast;
pub mod eval;

use std::fmt;

pub use ast::*;
pub use eval::{Ctx, Val};

impl Condition {
    /// Whether the condition reads only the resource and the scope, so that one evaluation
    /// holds for every item under them.
    pub fn reads_only_resource_and_scope(&self) -> bool {
        fn value(v: &Value) -> bool {
            match v {
                Value::Lit(_) => true,
                Value::Path(p) => matches!(
                    p.field,
                    Field::ResourceAttributes
                        | Field::ResourceDroppedAttributesCount
                        | Field::ScopeName
                        | Field::ScopeVersion
                        | Field::ScopeAttributes
                        | Field::ScopeDroppedAttributesCount
                        | Field::Cache
                ),
                Value::IsMatch(v, _)
                | Value::Len(v)
                | Value::Int(v)
                | Value::Double(v)
                | Value::String(v) => value(v),
            }
        }
        fn expr(e: &Expr) -> bool {
            match e {
                Expr::Or(t) | Expr::And(t) => t.iter().all(expr),
                Expr::Not(e) => expr(e),
                Expr::Cmp(_, a, b) => value(a) && value(b),
                Expr::Bool(v) => value(v),
            }
        }
        expr(&self.expr)
    }

    pub fn parse(text: &str, context: Context) -> Result<Condition, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            context,
            depth: 0,
        };
        let expr = p.expr()?;
        if let Some(t) = p.tokens.get(p.pos).filter(|t| t.tok != Tok::End) {
            return Err(ParseError {
                column: t.col,
                msg: format!("unexpected {} after a complete condition", t.tok),
            });
        }
        Ok(Condition {
            text: text.to_owned(),
            context,
            expr,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Op(CmpOp),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Int(i) => write!(f, "number {i}"),
            Tok::Float(x) => write!(f, "number {x}"),
            Tok::Bytes(_) => f.write_str("bytes literal"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Dot => f.write_str("`.`"),
            Tok::Op(op) => write!(f, "`{}`", op_text(*op)),
            Tok::End => f.write_str("the end of the condition"),
        }
    }
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    col: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |col: usize, msg: String| Err(ParseError { column: col, msg });
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => Some(Tok::Dot),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(Token { tok, col });
            i += 1;
            continue;
        }
        let op = match two.as_str() {
            "==" => Some((CmpOp::Eq, 2)),
            "!=" => Some((CmpOp::Ne, 2)),
            "<=" => Some((CmpOp::Le, 2)),
            ">=" => Some((CmpOp::Ge, 2)),
            _ => match c {
                '<' => Some((CmpOp::Lt, 1)),
                '>' => Some((CmpOp::Gt, 1)),
                _ => None,
            },
        };
        if let Some((op, n)) = op {
            out.push(Token {
                tok: Tok::Op(op),
                col,
            });
            i += n;
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return err(col, "unterminated string".into()),
                    Some('"') => break,
                    Some('\\') => {
                        let esc = match chars.get(i + 1).copied() {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('r') => '\r',
                            Some('"') => '"',
                            Some('\\') => '\\',
                            // OTTL keeps unknown escapes as written (regexes use `\.`, `\d`).
                            Some(other) => {
                                s.push('\\');
                                other
                            }
                            None => return err(col, "unterminated string".into()),
                        };
                        s.push(esc);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Token {
                tok: Tok::Str(s),
                col,
            });
            continue;
        }
        if c == '0' && matches!(chars.get(i + 1), Some('x') | Some('X')) {
            let start = i + 2;
            let mut j = start;
            while chars.get(j).is_some_and(char::is_ascii_hexdigit) {
                j += 1;
            }
            let hex: String = chars[start..j].iter().collect();
            let bytes = hex::decode(&hex).map_err(|_| ParseError {
                column: col,
                msg: format!("invalid bytes literal 0x{hex}: needs an even number of hex digits"),
            })?;
            out.push(Token {
                tok: Tok::Bytes(bytes),
                col,
            });
            i = j;
            continue;
        }
        let starts_number = c.is_ascii_digit()
            || ((c == '-' || c == '+' || c == '.')
                && chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == '.'));
        if starts_number {
            let mut j = i + 1;
            while chars
                .get(j)
                .is_some_and(|n| n.is_ascii_digit() || matches!(n, '.' | 'e' | 'E'))
                || (matches!(chars.get(j), Some('-') | Some('+'))
                    && matches!(chars.get(j - 1), Some('e') | Some('E')))
            {
                j += 1;
            }
            let s: String = chars[i..j].iter().collect();
            let tok = if s.contains(['.', 'e', 'E']) {
                s.parse::<f64>().map(Tok::Float).ok()
            } else {
                s.parse::<i64>().map(Tok::Int).ok()
            };
            match tok {
                Some(tok) => out.push(Token { tok, col }),
                None => return err(col, format!("invalid number {s}")),
            }
            i = j;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i + 1;
            while chars
                .get(j)
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
            {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[i..j].iter().collect()),
                col,
            });
            i = j;
            continue;
        }
        return err(col, format!("unexpected character {c:?}"));
    }
    out.push(Token {
        tok: Tok::End,
        col: chars.len() + 1,
    });
    Ok(out)
}

/// How deep parentheses, `not` and function calls may nest. Parsing and evaluation recurse, so
/// an unbounded depth would let one condition overflow the stack; 100 is prost's recursion
/// limit, far beyond any condition written by hand.
pub const MAX_NESTING: usize = 100;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    context: Context,
    /// Current nesting of `(`, `not` and calls.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == kw)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Token, ParseError> {
        let t = self.next();
        if t.tok == want {
            Ok(t)
        } else {
            Err(ParseError {
                column: t.col,
                msg: format!("expected {what}, found {}", t.tok),
            })
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and()?];
        while self.is_keyword("or") {
            self.next();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.is_keyword("and") {
            self.next();
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    /// Enters one nesting level, refusing past [`MAX_NESTING`] with the column where it happens.
    fn enter(&mut self, column: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError {
                column,
                msg: format!("nesting deeper than {MAX_NESTING} levels"),
            });
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is_keyword("not") {
            let col = self.next().col;
            self.enter(col)?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek().tok == Tok::LParen {
            let col = self.next().col;
            self.enter(col)?;
            let e = self.expr()?;
            self.expect(Tok::RParen, "`)`")?;
            self.depth -= 1;
            return Ok(e);
        }
        let left = self.value()?;
        if let Tok::Op(op) = self.peek().tok {
            self.next();
            let right = self.value()?;
            return Ok(Expr::Cmp(op, left, right));
        }
        Ok(Expr::Bool(left))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        let t = self.next();
        let col = t.col;
        match t.tok {
            Tok::Str(s) => Ok(Value::Lit(Literal::Str(s))),
            Tok::Int(i) => Ok(Value::Lit(Literal::Int(i))),
            Tok::Float(f) => Ok(Value::Lit(Literal::Float(f))),
            Tok::Bytes(b) => Ok(Value::Lit(Literal::Bytes(b))),
            Tok::Ident(id) => match id.as_str() {
                "true" => Ok(Value::Lit(Literal::Bool(true))),
                "false" => Ok(Value::Lit(Literal::Bool(false))),
                "nil" => Ok(Value::Lit(Literal::Nil)),
                "and" | "or" | "not" => Err(ParseError {
                    column: col,
                    msg: format!("expected a value, found `{id}`"),
                }),
                _ if self.peek().tok == Tok::LParen => self.call(&id, col),
                _ if id.starts_with(|c: char| c.is_ascii_uppercase()) => enum_constant(&id)
                    .map(|v| Value::Lit(Literal::Int(v)))
                    .ok_or_else(|| ParseError {
                        column: col,
                        msg: format!("unknown constant `{id}`"),
                    }),
                _ => self.path(id, col).map(Value::Path),
            },
            other => Err(ParseError {
                column: col,
                msg: format!("expected a value, found {other}"),
            }),
        }
    }

    fn call(&mut self, name: &str, col: usize) -> Result<Value, ParseError> {
        self.expect(Tok::LParen, "`(`")?;
        self.enter(col)?;
        let mut args = Vec::new();
        let mut arg_cols = Vec::new();
        if self.peek().tok != Tok::RParen {
            loop {
                arg_cols.push(self.peek().col);
                args.push(self.value()?);
                if self.peek().tok == Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        self.depth -= 1;
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(ParseError {
                    column: col,
                    msg: format!("{name} takes {n} argument(s), got {}", args.len()),
                })
            }
        };
        let one = |args: &mut Vec<Value>| Box::new(args.remove(0));
        match name {
            "IsMatch" => {
                arity(2)?;
                let pattern = match args.pop() {
                    Some(Value::Lit(Literal::Str(p))) => p,
                    _ => {
                        return Err(ParseError {
                            column: arg_cols[1],
                            msg: "IsMatch's pattern must be a string literal".into(),
                        });
                    }
                };
                let re = regex::Regex::new(&pattern).map_err(|e| ParseError {
                    column: arg_cols[1],
                    msg: format!("invalid regular expression: {e}"),
                })?;
                Ok(Value::IsMatch(one(&mut args), re))
            }
            "Len" => arity(1).map(|_| Value::Len(one(&mut args))),
            "Int" => arity(1).map(|_| Value::Int(one(&mut args))),
            "Double" => arity(1).map(|_| Value::Double(one(&mut args))),
            "String" => arity(1).map(|_| Value::String(one(&mut args))),
            _ => Err(ParseError {
                column: col,
                msg: format!(
                    "unknown function `{name}` (supported: IsMatch, Len, Int, Double, String)"
                ),
            }),
        }
    }

    fn path(&mut self, first: String, col: usize) -> Result<Path, ParseError> {
        let mut parts = vec![first];
        while self.peek().tok == Tok::Dot {
            self.next();
            let t = self.next();
            match t.tok {
                Tok::Ident(s) => parts.push(s),
                other => {
                    return Err(ParseError {
                        column: t.col,
                        msg: format!("expected a name after `.`, found {other}"),
                    });
                }
            }
        }
        let mut keys = Vec::new();
        while self.peek().tok == Tok::LBracket {
            let open = self.next();
            let t = self.next();
            match t.tok {
                Tok::Str(s) => keys.push(Key::Str(s)),
                Tok::Int(i) => keys.push(Key::Index(i)),
                other => {
                    return Err(ParseError {
                        column: t.col,
                        msg: format!(
                            "expected a string key or an index inside `[ ]`, found {other}"
                        ),
                    });
                }
            }
            self.expect(Tok::RBracket, "`]`").map_err(|mut e| {
                e.column = e.column.max(open.col);
                e
            })?;
        }
        // A path may name its own context first (`span.name` in the span context), as the
        // Collector's context-inferred statements write them.
        let own = self.context.to_string();
        if parts.len() > 1 && parts[0] == own && !(self.context == Context::Metric) {
            parts.remove(0);
        }
        let mut of_span = false;
        if self.context == Context::SpanEvent && parts.len() > 1 && parts[0] == "span" {
            of_span = true;
            parts.remove(0);
        }
        let name = parts.join(".");
        let ctx = if of_span { Context::Span } else { self.context };
        let field = resolve(ctx, &name).ok_or_else(|| {
            let near = paths(ctx)
                .into_iter()
                .map(|p| (crate::text::edit_distance(p, &name), p))
                .min()
                .filter(|(d, _)| *d <= 2)
                .map(|(_, p)| format!("; did you mean `{p}`?"))
                .unwrap_or_default();
            ParseError {
                column: col,
                msg: format!("unknown path `{name}` in the {ctx} context{near}"),
            }
        })?;
        let is_map = matches!(
            field,
            Field::Attributes
                | Field::ResourceAttributes
                | Field::ScopeAttributes
                | Field::Body
                | Field::Cache
                | Field::TraceState
        );
        if !keys.is_empty() && !is_map {
            return Err(ParseError {
                column: col,
                msg: format!("`{name}` is not a map or a slice: it cannot be indexed"),
            });
        }
        if field == Field::TraceState
            && (keys.len() > 1 || matches!(keys.first(), Some(Key::Index(_))))
        {
            return Err(ParseError {
                column: col,
                msg: "`trace_state` takes one string key: trace_state[\"vendor\"]".into(),
            });
        }
        Ok(Path {
            field,
            keys,
            of_span,
        })
    }
}

/// Every path of each context, as the Collector's OTTL contexts name them (the map and slice
/// forms `attributes["k"]`, `body[0]`, `trace_state["k"]`, `cache["k"]` index these). The
/// README's path table is checked against this list by a test.
pub const PATHS: &[(Context, &[&str])] = &[
    (
        Context::Span,
        &[
            "trace_id",
            "trace_id.string",
            "span_id",
            "span_id.string",
            "parent_span_id",
            "parent_span_id.string",
            "trace_state",
            "name",
            "kind",
            "kind.string",
            "kind.deprecated_string",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "start_time",
            "end_time",
            "duration",
            "attributes",
            "dropped_attributes_count",
            "events",
            "dropped_events_count",
            "links",
            "dropped_links_count",
            "status.code",
            "status.message",
            "flags",
        ],
    ),
    (
        Context::SpanEvent,
        &[
            "name",
            "time_unix_nano",
            "time",
            "attributes",
            "dropped_attributes_count",
            "event_index",
            "span.<any span path>",
        ],
    ),
    (
        Context::Metric,
        &[
            "name",
            "description",
            "unit",
            "type",
            "aggregation_temporality",
            "is_monotonic",
            "data_points",
        ],
    ),
    (
        Context::DataPoint,
        &[
            "attributes",
            "start_time_unix_nano",
            "time_unix_nano",
            "start_time",
            "time",
            "value_double",
            "value_int",
            "exemplars",
            "flags",
            "count",
            "sum",
            "bucket_counts",
            "explicit_bounds",
            "scale",
            "zero_count",
            "positive.offset",
            "positive.bucket_counts",
            "negative.offset",
            "negative.bucket_counts",
            "quantile_values",
            "metric.<any metric path>",
        ],
    ),
    (
        Context::Log,
        &[
            "time_unix_nano",
            "observed_time_unix_nano",
            "time",
            "observed_time",
            "severity_number",
            "severity_text",
            "body",
            "body.string",
            "attributes",
            "dropped_attributes_count",
            "flags",
            "trace_id",
            "trace_id.string",
            "span_id",
            "span_id.string",
            "event_name",
        ],
    ),
    (
        Context::Resource,
        &["attributes", "dropped_attributes_count"],
    ),
];

/// Paths every context reads: the resource's, the scope's (both spellings) and `cache`.
pub const SHARED_PATHS: &[&str] = &[
    "resource.attributes",
    "resource.dropped_attributes_count",
    "scope.name",
    "scope.version",
    "scope.attributes",
    "scope.dropped_attributes_count",
    "instrumentation_scope.name",
    "instrumentation_scope.version",
    "instrumentation_scope.attributes",
    "instrumentation_scope.dropped_attributes_count",
    "cache",
];

fn paths(ctx: Context) -> Vec<&'static str> {
    PATHS
        .iter()
        .filter(|(c, _)| *c == ctx)
        .flat_map(|(_, p)| p.iter().copied())
        .chain(SHARED_PATHS.iter().copied())
        .collect()
}

/// The paths each context can read.
fn resolve(ctx: Context, name: &str) -> Option<Field> {
    use Field::*;
    if ctx == Context::Resource {
        // `resource.` is stripped as the context's own prefix before this.
        return match name {
            "attributes" => Some(ResourceAttributes),
            "dropped_attributes_count" => Some(ResourceDroppedAttributesCount),
            "cache" => Some(Cache),
            _ => None,
        };
    }
    let scope = name
        .strip_prefix("instrumentation_scope.")
        .or_else(|| name.strip_prefix("scope."));
    let common = match (name, scope) {
        ("attributes", _) => Some(Attributes),
        ("resource.attributes", _) => Some(ResourceAttributes),
        ("resource.dropped_attributes_count", _) => Some(ResourceDroppedAttributesCount),
        ("cache", _) => Some(Cache),
        (_, Some("name")) => Some(ScopeName),
        (_, Some("version")) => Some(ScopeVersion),
        (_, Some("attributes")) => Some(ScopeAttributes),
        (_, Some("dropped_attributes_count")) => Some(ScopeDroppedAttributesCount),
        _ => None,
    };
    if common.is_some() {
        return match (ctx, name) {
            (Context::Metric, "attributes") => None,
            _ => common,
        };
    }
    let metric = |n: &str| match n {
        "name" => Some(MetricName),
        "description" => Some(MetricDescription),
        "unit" => Some(MetricUnit),
        "type" => Some(MetricType),
        "aggregation_temporality" => Some(AggregationTemporality),
        "is_monotonic" => Some(IsMonotonic),
        "data_points" => Some(DataPoints),
        _ => None,
    };
    match ctx {
        Context::Span => match name {
            "name" => Some(Name),
            "kind" => Some(Kind),
            "kind.string" => Some(KindString),
            "kind.deprecated_string" => Some(KindDeprecatedString),
            "status.code" => Some(StatusCode),
            "status.message" => Some(StatusMessage),
            "trace_id" => Some(TraceId),
            "span_id" => Some(SpanId),
            "parent_span_id" => Some(ParentSpanId),
            "trace_id.string" => Some(TraceIdString),
            "span_id.string" => Some(SpanIdString),
            "parent_span_id.string" => Some(ParentSpanIdString),
            "trace_state" => Some(TraceState),
            "start_time_unix_nano" => Some(StartTime),
            "end_time_unix_nano" => Some(EndTime),
            "start_time" => Some(StartTimeTyped),
            "end_time" => Some(EndTimeTyped),
            "duration" => Some(Duration),
            "dropped_attributes_count" => Some(DroppedAttributesCount),
            "events" => Some(Events),
            "dropped_events_count" => Some(DroppedEventsCount),
            "links" => Some(Links),
            "dropped_links_count" => Some(DroppedLinksCount),
            "flags" => Some(Flags),
            _ => None,
        },
        Context::SpanEvent => match name {
            "name" => Some(EventName),
            "time_unix_nano" => Some(Time),
            "time" => Some(TimeTyped),
            "dropped_attributes_count" => Some(DroppedAttributesCount),
            "event_index" => Some(EventIndex),
            _ => None,
        },
        Context::Metric => match name {
            "metric.name" => Some(MetricName),
            n => metric(n.strip_prefix("metric.").unwrap_or(n)),
        },
        Context::DataPoint => match name {
            "value_int" => Some(ValueInt),
            "value_double" => Some(ValueDouble),
            "time_unix_nano" => Some(Time),
            "start_time_unix_nano" => Some(StartTimeUnixNano),
            "time" => Some(TimeTyped),
            "start_time" => Some(StartTimeTyped),
            "count" => Some(Count),
            "sum" => Some(Sum),
            "flags" => Some(Flags),
            "exemplars" => Some(Exemplars),
            "bucket_counts" => Some(BucketCounts),
            "explicit_bounds" => Some(ExplicitBounds),
            "scale" => Some(Scale),
            "zero_count" => Some(ZeroCount),
            "positive.offset" => Some(PositiveOffset),
            "positive.bucket_counts" => Some(PositiveBucketCounts),
            "negative.offset" => Some(NegativeOffset),
            "negative.bucket_counts" => Some(NegativeBucketCounts),
            "quantile_values" => Some(QuantileValues),
            n => n.strip_prefix("metric.").and_then(metric),
        },
        Context::Resource => None,
        Context::Log => match name {
            "body" => Some(Body),
            "body.string" => Some(BodyString),
            "severity_number" => Some(SeverityNumber),
            "severity_text" => Some(SeverityText),
            "time_unix_nano" => Some(Time),
            "observed_time_unix_nano" => Some(ObservedTime),
            "time" => Some(TimeTyped),
            "observed_time" => Some(ObservedTimeTyped),
            "trace_id" => Some(TraceId),
            "span_id" => Some(SpanId),
            "trace_id.string" => Some(TraceIdString),
            "span_id.string" => Some(SpanIdString),
            "flags" => Some(Flags),
            "dropped_attributes_count" => Some(DroppedAttributesCount),
            "event_name" => Some(EventName),
            _ => None,
        },
    }
}

/// The OTLP enum constants OTTL names.
fn enum_constant(id: &str) -> Option<i64> {
    Some(match id {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        _ => severity_number(id.strip_prefix("SEVERITY_NUMBER_")?)? as i64,
    })
}

/// The OTLP severity number of a level name: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`,
/// optionally followed by 2–4 (`INFO3` = 11); case-insensitive.
pub fn severity_number(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let (base, n) = match upper.char_indices().find(|(_, c)| c.is_ascii_digit()) {
        Some((i, _)) => (&upper[..i], upper[i..].parse::<i32>().ok()?),
        None => (upper.as_str(), 1),
    };
    if !(1..=4).contains(&n) {
        return None;
    }
    let first = match base {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => return None,
    };
    Some(first + n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_bounded_with_a_located_error() {
        // 10,000 parentheses, 12,000 `not`s and 5,000 nested calls once overflowed the stack.
        let deep_parens = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        let deep_not = format!("{}true", "not ".repeat(12_000));
        let deep_calls = format!("{}name{} > 1", "Len(".repeat(5_000), ")".repeat(5_000));
        for (text, col) in [(&deep_parens, 101), (&deep_not, 401), (&deep_calls, 401)] {
            let e = Condition::parse(text, Context::Span).unwrap_err();
            assert_eq!(e.msg, "nesting deeper than 100 levels");
            assert_eq!(e.column, col, "{}", &text[..20]);
        }
        // 100 levels are fine and evaluate.
        let ok = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        assert!(Condition::parse(&ok, Context::Span).is_ok());
        let ok = format!("{}true", "not ".repeat(100));
        assert!(Condition::parse(&ok, Context::Span).is_ok());
        // Long flat chains are not nesting.
        let flat = vec!["name == \"x\""; 20_000].join(" or ");
        assert!(Condition::parse(&flat, Context::Span).is_ok());
    }

    fn parse(s: &str, c: Context) -> Result<Condition, ParseError> {
        Condition::parse(s, c)
    }

    fn err(s: &str, c: Context) -> ParseError {
        parse(s, c).expect_err(s)
    }

    #[test]
    fn parses_every_operator_and_precedence() {
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            let c = parse(&format!("attributes[\"a\"] {op} 1"), Context::Span).unwrap();
            assert!(matches!(c.expr, Expr::Cmp(..)), "{op}");
        }
        // `and` binds tighter than `or`; `not` tighter than both.
        let c = parse(
            "name == \"a\" or name == \"b\" and not kind == 2",
            Context::Span,
        )
        .unwrap();
        match c.expr {
            Expr::Or(terms) => {
                assert_eq!(terms.len(), 2);
                match &terms[1] {
                    Expr::And(a) => assert!(matches!(a[1], Expr::Not(_))),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        let c = parse(
            "(name == \"a\" or name == \"b\") and kind == 2",
            Context::Span,
        )
        .unwrap();
        assert!(matches!(c.expr, Expr::And(_)));
    }

    #[test]
    fn literals_and_constants() {
        let c = parse(
            "attributes[\"x\"] == -1.5e3 or attributes[\"y\"] == nil or trace_id == 0x0a0B",
            Context::Span,
        )
        .unwrap();
        let Expr::Or(t) = c.expr else { panic!() };
        assert!(matches!(&t[0], Expr::Cmp(_, _, Value::Lit(Literal::Float(f))) if *f == -1500.0));
        assert!(matches!(&t[1], Expr::Cmp(_, _, Value::Lit(Literal::Nil))));
        assert!(
            matches!(&t[2], Expr::Cmp(_, _, Value::Lit(Literal::Bytes(b))) if b == &vec![10, 11])
        );
        assert_eq!(enum_constant("SEVERITY_NUMBER_WARN"), Some(13));
        assert_eq!(enum_constant("SEVERITY_NUMBER_INFO3"), Some(11));
        assert_eq!(enum_constant("SEVERITY_NUMBER_INFO5"), None);
        assert_eq!(enum_constant("SPAN_KIND_CLIENT"), Some(3));
        assert_eq!(enum_constant("METRIC_DATA_TYPE_SUMMARY"), Some(5));
        let c = parse(r#"IsMatch(body, "a\.b\"c")"#, Context::Log).unwrap();
        let Expr::Bool(Value::IsMatch(_, re)) = c.expr else {
            panic!()
        };
        assert_eq!(re.as_str(), r#"a\.b"c"#);
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = err("attributes[\"a\"] == ", Context::Span);
        assert_eq!(e.column, 20, "{e}");
        assert!(e.msg.contains("expected a value"), "{e}");
        let e = err("nmae == \"x\"", Context::Span);
        assert_eq!(
            (e.column, e.msg.as_str()),
            (
                1,
                "unknown path `nmae` in the span context; did you mean `name`?"
            )
        );
        let e = err("kind == SPAN_KIND_SERVR", Context::Span);
        assert_eq!(e.column, 9);
        let e = err("IsMatch(name, \"(\")", Context::Span);
        assert_eq!(e.column, 15);
        assert!(e.msg.contains("regular expression"), "{e}");
        let e = err("Foo(name)", Context::Span);
        assert!(e.msg.contains("unknown function `Foo`"), "{e}");
        let e = err("name == \"a\" name", Context::Span);
        assert_eq!(e.column, 13);
        let e = err("(name == \"a\"", Context::Span);
        assert_eq!(e.column, 13);
        let e = err("name == \"abc", Context::Span);
        assert_eq!((e.column, e.msg.as_str()), (9, "unterminated string"));
        let e = err("severity_number < 3", Context::Span);
        assert!(e.msg.contains("span context"), "{e}");
        let e = err("name[\"x\"] == 1", Context::Span);
        assert!(e.msg.contains("not a map"), "{e}");
        let e = err("IsMatch(name)", Context::Span);
        assert!(e.msg.contains("takes 2"), "{e}");
        let e = err("name == 1 ~ 2", Context::Span);
        assert_eq!(e.column, 11);
    }

    /// Conditions from the filter processor's documentation, each in its context.
    #[test]
    fn collector_documentation_examples() {
        for (ctx, cond) in [
            (
                Context::Span,
                r#"attributes["container.name"] == "app_container_1""#,
            ),
            (
                Context::Span,
                r#"resource.attributes["host.name"] == "localhost""#,
            ),
            (
                Context::Span,
                r#"IsMatch(resource.attributes["k8s.pod.name"], "my-pod-name.*")"#,
            ),
            (Context::Span, r#"attributes["http.request.method"] == nil"#),
            (Context::Span, "not IsMatch(name, \"http_.*\")"),
            (
                Context::Span,
                "resource.attributes[\"service.name\"] != \"app1\" and\nresource.attributes[\"service.name\"] != \"app2\" and\nresource.attributes[\"service.name\"] != \"app3\"\n",
            ),
            (Context::SpanEvent, r#"attributes["grpc"] == true"#),
            (Context::SpanEvent, r#"IsMatch(name, ".*grpc.*")"#),
            (
                Context::Metric,
                r#"name == "my.metric" and resource.attributes["my_label"] == "abc123""#,
            ),
            (Context::Metric, "type == METRIC_DATA_TYPE_HISTOGRAM"),
            (Context::Metric, "type == METRIC_DATA_TYPE_NONE"),
            (
                Context::DataPoint,
                "metric.type == METRIC_DATA_TYPE_SUMMARY",
            ),
            (
                Context::DataPoint,
                r#"resource.attributes["service.name"] == "my_service_name""#,
            ),
            (
                Context::DataPoint,
                r#"metric.name == "k8s.pod.phase" and value_int == 4"#,
            ),
            (Context::Log, r#"IsMatch(body, ".*password.*")"#),
            (Context::Log, "severity_number < SEVERITY_NUMBER_WARN"),
            (
                Context::Log,
                r#"resource.attributes["service.name"] == "noisy""#,
            ),
        ] {
            parse(cond, ctx).unwrap_or_else(|e| panic!("{ctx}: {cond}: {e}"));
        }
    }

    #[test]
    fn paths_per_context() {
        for (ctx, ok) in [
            (
                Context::Span,
                &[
                    "name",
                    "kind",
                    "status.code",
                    "trace_id",
                    "span_id",
                    "duration",
                    "resource.attributes[\"a\"]",
                    "instrumentation_scope.name",
                    "trace_id.string",
                ][..],
            ),
            (
                Context::SpanEvent,
                &["name", "attributes[\"a\"]", "span.name"][..],
            ),
            (
                Context::Metric,
                &["name", "type", "unit", "metric.name", "description"][..],
            ),
            (
                Context::DataPoint,
                &[
                    "metric.name",
                    "metric.type",
                    "metric.unit",
                    "value_int",
                    "value_double",
                    "attributes[\"a\"]",
                ][..],
            ),
            (
                Context::Log,
                &[
                    "body",
                    "severity_number",
                    "severity_text",
                    "trace_id",
                    "attributes[\"a\"][\"b\"]",
                ][..],
            ),
        ] {
            for p in ok {
                parse(&format!("{p} == nil"), ctx).unwrap_or_else(|e| panic!("{ctx} {p}: {e}"));
            }
        }
        assert!(parse("attributes[\"a\"] == 1", Context::Metric).is_err());
        assert!(parse("value_int == 1", Context::Metric).is_err());
    }
}

#[cfg(test)]
mod readme {
    /// The README's OTTL path table lists exactly [`super::PATHS`].
    #[test]
    fn readme_path_table_matches() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let table = readme
            .split("<!-- ottl-paths:")
            .nth(1)
            .expect("the README's OTTL path table");
        for (ctx, paths) in super::PATHS {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| {ctx} |")))
                .unwrap_or_else(|| panic!("no README row for {ctx}"));
            let listed: Vec<&str> = row.split('`').skip(1).step_by(2).collect();
            assert_eq!(&listed, paths, "README row for {ctx}");
        }
    }
}
