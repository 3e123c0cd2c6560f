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
pub mod funcs;
mod grok;
pub mod metric_funcs;
pub mod mutate;
pub mod stmt;
mod stmt_tests;
mod useragent;
pub mod val;
mod xml;

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
                Value::Call(c) => c.name != "IsRootSpan" && c.args.iter().flatten().all(value),
                Value::List(items) => items.iter().all(value),
                Value::Map(entries) => entries.iter().all(|(_, v)| value(v)),
                Value::Math(_, a, b) => value(a) && value(b),
                Value::Index(v, _) => value(v),
                Value::Func(_) => true,
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

impl Statement {
    /// Parses `editor(args) [where condition]` in a context: the editor and every converter
    /// must exist (an unknown one is refused with its column), every path must be one of the
    /// context's, and literal arguments are checked and compiled now.
    pub fn parse(text: &str, context: Context) -> Result<Statement, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            context,
            depth: 0,
        };
        let first = p.next();
        let (name, col) = match first.tok {
            Tok::Ident(name) if p.peek().tok == Tok::LParen => (name, first.col),
            other => {
                return Err(ParseError {
                    column: first.col,
                    msg: format!(
                        "a statement starts with an editor call such as set(...), found {other}"
                    ),
                });
            }
        };
        let Some(id) = stmt::find_editor(&name) else {
            let hint = if funcs::find(&name).is_some() {
                ": it is a converter; a statement starts with an editor (set, delete_key, ...)"
                    .to_string()
            } else {
                did_you_mean(
                    stmt::EDITORS
                        .iter()
                        .chain(metric_funcs::EDITORS)
                        .map(|d| d.name),
                    &name,
                )
            };
            return Err(ParseError {
                column: col,
                msg: format!("unknown editor `{name}`{hint}"),
            });
        };
        let def = stmt::editor_def(id);
        if !def.contexts.is_empty() && !def.contexts.contains(&context) {
            return Err(ParseError {
                column: col,
                msg: format!(
                    "{} runs in the {} context, not {context}",
                    def.name,
                    def.contexts
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            });
        }
        let editor = p.call(def.name, id, def.params, def.compile, col)?;
        let condition = if p.is_keyword("where") {
            p.next();
            Some(p.expr()?)
        } else {
            None
        };
        if let Some(t) = p.tokens.get(p.pos).filter(|t| t.tok != Tok::End) {
            return Err(ParseError {
                column: t.col,
                msg: format!("unexpected {} after a complete statement", t.tok),
            });
        }
        Ok(Statement {
            text: text.to_owned(),
            context,
            editor,
            condition,
        })
    }
}

/// `; did you mean `x`?` for the closest of `candidates` within two edits of `name`, else "".
fn did_you_mean<'a>(candidates: impl Iterator<Item = &'a str>, name: &str) -> String {
    candidates
        .map(|c| (crate::text::edit_distance(c, name), c))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The context a statement's paths name (`span.name` → span), the lowest of the signal's
/// hierarchy when several are named, as the Collector infers it for the flat form of the
/// transform processor's statements; `None` when no path names a context.
pub fn infer_context(texts: &[&str], hierarchy: &[Context]) -> Option<Context> {
    let mut best: Option<usize> = None;
    for text in texts {
        let Ok(tokens) = lex(text) else { continue };
        for (i, t) in tokens.iter().enumerate() {
            let Tok::Ident(id) = &t.tok else { continue };
            // A path's first name: followed by `.`, not preceded by one.
            let starts_path = tokens.get(i + 1).is_some_and(|n| n.tok == Tok::Dot)
                && (i == 0 || tokens[i - 1].tok != Tok::Dot);
            if !starts_path {
                continue;
            }
            let ctx = match id.as_str() {
                "resource" => Context::Resource,
                "scope" | "instrumentation_scope" => Context::Scope,
                "span" => Context::Span,
                "spanevent" => Context::SpanEvent,
                "metric" => Context::Metric,
                "datapoint" => Context::DataPoint,
                "log" => Context::Log,
                _ => continue,
            };
            if let Some(rank) = hierarchy.iter().position(|c| *c == ctx) {
                best = Some(best.map_or(rank, |b: usize| b.max(rank)));
            }
        }
    }
    best.map(|r| hierarchy[r])
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
    LBrace,
    RBrace,
    Colon,
    /// `=` of a named argument.
    Assign,
    Math(MathOp),
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
            Tok::LBrace => f.write_str("`{`"),
            Tok::RBrace => f.write_str("`}`"),
            Tok::Colon => f.write_str("`:`"),
            Tok::Assign => f.write_str("`=`"),
            Tok::Math(op) => f.write_str(match op {
                MathOp::Add => "`+`",
                MathOp::Sub => "`-`",
                MathOp::Mul => "`*`",
                MathOp::Div => "`/`",
            }),
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
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            ':' => Some(Tok::Colon),
            '*' => Some(Tok::Math(MathOp::Mul)),
            '/' => Some(Tok::Math(MathOp::Div)),
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
        if c == '=' {
            out.push(Token {
                tok: Tok::Assign,
                col,
            });
            i += 1;
            continue;
        }
        // After a value, `+` and `-` are arithmetic; elsewhere a sign of a number.
        let after_value = out.last().is_some_and(|t: &Token| {
            matches!(
                t.tok,
                Tok::Ident(_)
                    | Tok::Str(_)
                    | Tok::Int(_)
                    | Tok::Float(_)
                    | Tok::Bytes(_)
                    | Tok::RParen
                    | Tok::RBracket
                    | Tok::RBrace
            )
        });
        if (c == '+' || c == '-')
            && (after_value
                || !chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == '.'))
        {
            out.push(Token {
                tok: Tok::Math(if c == '+' { MathOp::Add } else { MathOp::Sub }),
                col,
            });
            i += 1;
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
            // `(` opens a boolean group or an arithmetic one: read a group first; when a
            // comparison or an operator follows its `)`, read it again as arithmetic.
            let (pos, depth) = (self.pos, self.depth);
            let col = self.next().col;
            self.enter(col)?;
            let group = self
                .expr()
                .and_then(|e| self.expect(Tok::RParen, "`)`").map(|_| e));
            self.depth = depth;
            match group {
                Ok(e) if !matches!(self.peek().tok, Tok::Op(_) | Tok::Math(_)) => return Ok(e),
                Ok(_) => self.pos = pos,
                Err(err) => {
                    self.pos = pos;
                    if let Ok(e) = self.comparison() {
                        return Ok(e);
                    }
                    return Err(err);
                }
            }
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.math()?;
        if let Tok::Op(op) = self.peek().tok {
            self.next();
            let right = self.math()?;
            return Ok(Expr::Cmp(op, left, right));
        }
        Ok(Expr::Bool(left))
    }

    /// `term (("+" | "-") term)*`.
    fn math(&mut self) -> Result<Value, ParseError> {
        self.binary(&[MathOp::Add, MathOp::Sub], Parser::term)
    }

    /// `factor (("*" | "/") factor)*`.
    fn term(&mut self) -> Result<Value, ParseError> {
        self.binary(&[MathOp::Mul, MathOp::Div], Parser::factor)
    }

    /// One precedence level of arithmetic, left-associative. Each operator counts as a
    /// nesting level, as evaluation recurses through the left-deep tree.
    fn binary(
        &mut self,
        ops: &[MathOp],
        operand: fn(&mut Parser) -> Result<Value, ParseError>,
    ) -> Result<Value, ParseError> {
        let depth = self.depth;
        let mut left = operand(self)?;
        while let Tok::Math(op) = self.peek().tok
            && ops.contains(&op)
        {
            let col = self.next().col;
            self.enter(col)?;
            let right = operand(self)?;
            left = Value::Math(op, Box::new(left), Box::new(right));
        }
        self.depth = depth;
        Ok(left)
    }

    fn factor(&mut self) -> Result<Value, ParseError> {
        match self.peek().tok {
            Tok::LParen => {
                let col = self.next().col;
                self.enter(col)?;
                let v = self.math()?;
                self.expect(Tok::RParen, "`)`")?;
                self.depth -= 1;
                Ok(v)
            }
            Tok::Math(MathOp::Sub) => {
                let col = self.next().col;
                self.enter(col)?;
                let v = self.factor()?;
                self.depth -= 1;
                Ok(Value::Math(
                    MathOp::Sub,
                    Box::new(Value::Lit(Literal::Int(0))),
                    Box::new(v),
                ))
            }
            _ => self.value(),
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        let t = self.next();
        let col = t.col;
        match t.tok {
            Tok::Str(s) => Ok(Value::Lit(Literal::Str(s))),
            Tok::Int(i) => Ok(Value::Lit(Literal::Int(i))),
            Tok::Float(f) => Ok(Value::Lit(Literal::Float(f))),
            Tok::Bytes(b) => Ok(Value::Lit(Literal::Bytes(b))),
            Tok::LBracket => {
                self.enter(col)?;
                let mut items = Vec::new();
                if self.peek().tok != Tok::RBracket {
                    loop {
                        items.push(self.math()?);
                        if self.peek().tok == Tok::Comma {
                            self.next();
                            continue;
                        }
                        break;
                    }
                }
                self.expect(Tok::RBracket, "`,` or `]`")?;
                self.depth -= 1;
                Ok(Value::List(items))
            }
            Tok::LBrace => {
                self.enter(col)?;
                let mut entries = Vec::new();
                if self.peek().tok != Tok::RBrace {
                    loop {
                        let k = self.next();
                        let Tok::Str(key) = k.tok else {
                            return Err(ParseError {
                                column: k.col,
                                msg: format!("a map key must be a string, found {}", k.tok),
                            });
                        };
                        self.expect(Tok::Colon, "`:`")?;
                        entries.push((key, self.math()?));
                        if self.peek().tok == Tok::Comma {
                            self.next();
                            continue;
                        }
                        break;
                    }
                }
                self.expect(Tok::RBrace, "`,` or `}`")?;
                self.depth -= 1;
                Ok(Value::Map(entries))
            }
            Tok::Ident(id) => match id.as_str() {
                "true" => Ok(Value::Lit(Literal::Bool(true))),
                "false" => Ok(Value::Lit(Literal::Bool(false))),
                "nil" => Ok(Value::Lit(Literal::Nil)),
                "and" | "or" | "not" | "where" => Err(ParseError {
                    column: col,
                    msg: format!("expected a value, found `{id}`"),
                }),
                _ if self.peek().tok == Tok::LParen => {
                    let call = self.converter(&id, col)?;
                    let keys = self.keys()?;
                    Ok(if keys.is_empty() {
                        call
                    } else {
                        Value::Index(Box::new(call), keys)
                    })
                }
                _ if id.starts_with(|c: char| c.is_ascii_uppercase()) => {
                    if let Some(v) = enum_constant(&id) {
                        Ok(Value::Lit(Literal::Int(v)))
                    } else if let Some(f) = funcs::find(&id) {
                        Ok(Value::Func(f))
                    } else {
                        Err(ParseError {
                            column: col,
                            msg: format!("unknown constant `{id}`"),
                        })
                    }
                }
                _ => self.path(id, col).map(Value::Path),
            },
            other => Err(ParseError {
                column: col,
                msg: format!("expected a value, found {other}"),
            }),
        }
    }

    /// `[key]` and `[index]` steps after a path or a converter call.
    fn keys(&mut self) -> Result<Vec<Key>, ParseError> {
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
        Ok(keys)
    }

    fn converter(&mut self, name: &str, col: usize) -> Result<Value, ParseError> {
        let Some(id) = funcs::find(name) else {
            let why = funcs::UNSUPPORTED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, why)| format!(": not supported by ferrotel ({why})"))
                .or_else(|| {
                    stmt::find_editor(name)
                        .map(|_| ": it is an editor; a value needs a converter".to_string())
                })
                .unwrap_or_else(|| did_you_mean(funcs::CONVERTERS.iter().map(|d| d.name), name));
            return Err(ParseError {
                column: col,
                msg: format!("unknown function `{name}`{why}"),
            });
        };
        let def = &funcs::CONVERTERS[id];
        let call = self.call(def.name, id, def.params, def.compile, col)?;
        Ok(Value::Call(Box::new(call)))
    }

    /// A call's arguments, positional then named (`depth = 2`), each checked against its
    /// parameter; then the function's load-time check.
    fn call(
        &mut self,
        name: &'static str,
        id: usize,
        params: &'static [Param],
        compile: Option<funcs::Compile>,
        col: usize,
    ) -> Result<Call, ParseError> {
        self.expect(Tok::LParen, "`(`")?;
        self.enter(col)?;
        let mut args: Vec<Option<Value>> = vec![None; params.len()];
        let mut cols = vec![col; params.len()];
        let mut given = 0;
        let mut named = false;
        if self.peek().tok != Tok::RParen {
            loop {
                let arg_col = self.peek().col;
                let is_named = matches!(
                    (
                        &self.peek().tok,
                        self.tokens.get(self.pos + 1).map(|t| &t.tok)
                    ),
                    (Tok::Ident(_), Some(Tok::Assign))
                );
                let idx = if is_named {
                    let Tok::Ident(pname) = self.next().tok else {
                        unreachable!("checked above")
                    };
                    self.next();
                    named = true;
                    params
                        .iter()
                        .position(|p| p.name == pname)
                        .ok_or_else(|| ParseError {
                            column: arg_col,
                            msg: format!("{name} has no parameter `{pname}`"),
                        })?
                } else {
                    if named {
                        return Err(ParseError {
                            column: arg_col,
                            msg: "a positional argument cannot follow a named one".into(),
                        });
                    }
                    if given >= params.len() {
                        return Err(ParseError {
                            column: arg_col,
                            msg: format!("{name} takes at most {} argument(s)", params.len()),
                        });
                    }
                    given += 1;
                    given - 1
                };
                if args[idx].is_some() {
                    return Err(ParseError {
                        column: arg_col,
                        msg: format!("`{}` is given twice", params[idx].name),
                    });
                }
                let v = self.math()?;
                match (params[idx].kind, &v) {
                    (Kind::Path, Value::Path(_))
                    | (Kind::Func, Value::Func(_))
                    | (Kind::Any, _) => {}
                    (Kind::Path, _) => {
                        return Err(ParseError {
                            column: arg_col,
                            msg: format!(
                                "{name}'s `{}` must be a path (what it writes)",
                                params[idx].name
                            ),
                        });
                    }
                    (Kind::Func, _) => {
                        return Err(ParseError {
                            column: arg_col,
                            msg: format!(
                                "{name}'s `{}` must name a converter, such as SHA256",
                                params[idx].name
                            ),
                        });
                    }
                }
                args[idx] = Some(v);
                cols[idx] = arg_col;
                if self.peek().tok == Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        self.depth -= 1;
        if let Some(missing) = params
            .iter()
            .zip(&args)
            .find(|(p, a)| !p.optional && a.is_none())
        {
            let required = params.iter().filter(|p| !p.optional).count();
            return Err(ParseError {
                column: col,
                msg: if named {
                    format!("{name} needs `{}`", missing.0.name)
                } else {
                    format!(
                        "{name} takes {required} argument(s), got {}",
                        args.iter().flatten().count()
                    )
                },
            });
        }
        let mut call = Call {
            name,
            id,
            args,
            compiled: Compiled::None,
        };
        if let Some(check) = compile {
            check(&mut call).map_err(|(i, msg)| ParseError {
                column: cols.get(i).copied().unwrap_or(col),
                msg: format!("{name}: {msg}"),
            })?;
        }
        Ok(call)
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
        let keys = self.keys()?;
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
            let near = did_you_mean(paths(ctx).into_iter(), &name);
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
                | Field::Request
        );
        if !keys.is_empty() && !is_map {
            return Err(ParseError {
                column: col,
                msg: format!("`{name}` is not a map or a slice: it cannot be indexed"),
            });
        }
        if field == Field::Request {
            // Header names are case-insensitive: compared lower-cased.
            return match keys.as_slice() {
                [Key::Str(k)] => Ok(Path {
                    field,
                    keys: vec![Key::Str(k.to_ascii_lowercase())],
                    of_span,
                }),
                _ => Err(ParseError {
                    column: col,
                    msg: "`request` takes one string key: request[\"X-Tenant\"]".into(),
                }),
            };
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
    (
        Context::Scope,
        &["name", "version", "attributes", "dropped_attributes_count"],
    ),
    (Context::Request, &["request[\"<header>\"]"]),
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
    if ctx == Context::Request {
        return (name == "request").then_some(Request);
    }
    if ctx == Context::Scope {
        // `scope.` is stripped as the context's own prefix before this.
        match name {
            "name" => return Some(ScopeName),
            "version" => return Some(ScopeVersion),
            "attributes" => return Some(ScopeAttributes),
            "dropped_attributes_count" => return Some(ScopeDroppedAttributesCount),
            _ => {}
        }
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
        Context::Resource | Context::Scope | Context::Request => None,
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
        let Expr::Bool(Value::Call(call)) = c.expr else {
            panic!()
        };
        let Compiled::Regex(re) = call.compiled else {
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

    /// The README's function table lists every editor and converter ferrotel has as supported,
    /// the Collector's others as not, and nothing else; and the Collector's current converter
    /// list (its `ottlfuncs` README) is all there.
    #[test]
    fn readme_function_table_matches() {
        use super::{funcs, metric_funcs, stmt};
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let table = readme
            .split("<!-- ottl-functions:")
            .nth(1)
            .expect("the README's OTTL function table");
        let mut rows: Vec<(String, bool)> = Vec::new();
        for line in table.lines().skip(3) {
            if !line.starts_with("| `") {
                break;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            rows.push((cells[1].trim_matches('`').to_string(), cells[3] == "yes"));
        }
        let mut want: Vec<(String, bool)> = stmt::EDITORS
            .iter()
            .chain(metric_funcs::EDITORS)
            .map(|d| (d.name.to_string(), true))
            .chain(funcs::CONVERTERS.iter().map(|d| (d.name.to_string(), true)))
            .chain(
                funcs::UNSUPPORTED
                    .iter()
                    .map(|(n, _)| (n.to_string(), false)),
            )
            .collect();
        want.sort();
        let mut got = rows.clone();
        got.sort();
        assert_eq!(got, want, "README function table");
        const COLLECTOR: &str = "All Any Base64Decode Base64Encode Bool Decode Coalesce CommunityID Concat \
            ContainsValue ConvertCase ConvertAttributesToElementsXML ConvertTextToElementsXML Day Double \
            Duration ExtractPatterns ExtractGrokPatterns Filter Find FNV Format FormatTime GetXML HasPrefix \
            HasSuffix Hex Hour Hours Index InsertXML Int IsBool IsDouble IsEmpty IsInCIDR IsInt IsRootSpan \
            IsMap IsMatch IsList IsString Keys Len Log IsValidLuhn MapEach MapKeys MD5 Microseconds \
            Milliseconds Minute Minutes Month Murmur3Hash Murmur3Hash128 Nanosecond Nanoseconds Now \
            ParseCSV ParseInt ParseJSON ParseKeyValue ParseSeverity ParseSimplifiedXML ParseXML ProfileID \
            Reduce RemoveXML Second Seconds SHA1 SHA256 SHA512 SliceToMap Sort SpanID Split String \
            Substring Time ToCamelCase ToKeyValueString ToLowerCase ToSnakeCase ToUpperCase TraceID Trim \
            TrimPrefix TrimSuffix TruncateTime Unix UnixMicro UnixMilli UnixNano UnixSeconds URL UserAgent \
            UUID UUIDv7 Values Weekday When XXH3 XXH128 Year append delete_index delete_key \
            delete_matching_keys keep_matching_keys flatten keep_keys limit merge_maps replace_all_matches \
            replace_all_patterns replace_match replace_pattern set stringify_all truncate_all";
        for name in COLLECTOR.split_whitespace() {
            assert!(
                rows.iter().any(|(n, _)| n == name),
                "{name} is missing from the README table"
            );
        }
    }
}
