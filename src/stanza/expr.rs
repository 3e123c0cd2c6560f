//! The small part of stanza's expression language (expr-lang) that operator `if:` conditions
//! and `recombine`'s `is_first_entry`/`is_last_entry` use in practice: fields, string, number,
//! bool and nil literals, `==`, `!=`, `matches`, `contains`, `startsWith`, `endsWith`, `and`/`&&`,
//! `or`/`||`, `not`/`!`, `<`, `<=`, `>`, `>=`, `+` (numbers add, strings join), `env("NAME")`,
//! parentheses. Anything else is refused when the config is read. `add`'s and `router`'s
//! `EXPR(...)` values are [`Expr::value_of`].

use regex::Regex;

use super::entry::{Entry, Field, Value};

#[derive(Debug, Clone)]
pub enum Expr {
    Field(Field),
    Lit(Value),
    Not(Box<Expr>),
    /// Chains are flat lists, so a long `a and b and c ...` is not a deep tree.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    /// `x matches "re"` with the regex compiled once.
    Matches(Box<Expr>, Regex),
    /// `a + b + ...`.
    Add(Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBrack,
    RBrack,
    Dot,
    Comma,
    Op(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => (out.push(Tok::LParen), i += 1).1,
            ')' => (out.push(Tok::RParen), i += 1).1,
            '[' => (out.push(Tok::LBrack), i += 1).1,
            ']' => (out.push(Tok::RBrack), i += 1).1,
            '.' => (out.push(Tok::Dot), i += 1).1,
            ',' => (out.push(Tok::Comma), i += 1).1,
            '+' => (out.push(Tok::Op("+")), i += 1).1,
            '<' | '>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                out.push(Tok::Op(match (c, eq) {
                    ('<', false) => "<",
                    ('<', true) => "<=",
                    (_, false) => ">",
                    _ => ">=",
                }));
                i += 1 + eq as usize;
            }
            '"' | '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&ch) = b.get(i) else {
                        return Err("unterminated string".into());
                    };
                    if ch as char == c {
                        i += 1;
                        break;
                    }
                    if ch == b'\\' {
                        let Some(e) = s[i + 1..].chars().next() else {
                            return Err("unterminated string".into());
                        };
                        v.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 1 + e.len_utf8();
                        continue;
                    }
                    // Multi-byte UTF-8 passes through byte by byte via the str slice.
                    let len = s[i..].chars().next().map_or(1, char::len_utf8);
                    v.push_str(&s[i..i + len]);
                    i += len;
                }
                out.push(Tok::Str(v));
            }
            '=' | '!' | '&' | '|' => {
                let two = s.get(i..i + 2).unwrap_or("");
                let op = match two {
                    "==" => "==",
                    "!=" => "!=",
                    "&&" => "&&",
                    "||" => "||",
                    _ if c == '!' => "!",
                    _ => return Err(format!("unexpected `{c}`")),
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                let n = s[start..i]
                    .parse()
                    .map_err(|_| format!("bad number `{}`", &s[start..i]))?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_string()));
            }
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(out)
}

/// How deep parentheses and `not` may nest: parsing and evaluation recurse, so an unbounded
/// depth would let one condition overflow the stack.
pub const MAX_NESTING: usize = 100;

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x == w)
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "nesting deeper than {MAX_NESTING} levels at token {}",
                self.at
            ));
        }
        Ok(())
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.and()?];
        while self.is_word("or") || self.peek() == Some(&Tok::Op("||")) {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.not()?];
        while self.is_word("and") || self.peek() == Some(&Tok::Op("&&")) {
            self.at += 1;
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.is_word("not") || self.peek() == Some(&Tok::Op("!")) {
            self.at += 1;
            self.enter()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let l = self.add()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            Some(Tok::Ident(w)) if w == "matches" => {
                self.at += 1;
                let Some(Tok::Str(re)) = self.next() else {
                    return Err("`matches` needs a string literal regex".into());
                };
                let re = Regex::new(&re).map_err(|e| format!("bad regex `{re}`: {e}"))?;
                return Ok(Expr::Matches(Box::new(l), re));
            }
            Some(Tok::Ident(w)) if w == "contains" => CmpOp::Contains,
            Some(Tok::Ident(w)) if w == "startsWith" => CmpOp::StartsWith,
            Some(Tok::Ident(w)) if w == "endsWith" => CmpOp::EndsWith,
            _ => return Ok(l),
        };
        self.at += 1;
        let r = self.add()?;
        Ok(Expr::Cmp(Box::new(l), op, Box::new(r)))
    }
    fn add(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.primary()?];
        while self.peek() == Some(&Tok::Op("+")) {
            self.at += 1;
            terms.push(self.primary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Add(terms)
        })
    }
    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::LParen) => {
                self.enter()?;
                let e = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("expected `)`".into()),
                }
            }
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::Str(s))),
            Some(Tok::Num(n)) => Ok(Expr::Lit(if n.fract() == 0.0 && n.abs() < 9e15 {
                Value::Int(n as i64)
            } else {
                Value::Double(n)
            })),
            Some(Tok::Ident(w)) => match w.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "nil" => Ok(Expr::Lit(Value::Null)),
                // The environment does not change while the collector runs: read it once.
                "env" if self.peek() == Some(&Tok::LParen) => {
                    self.at += 1;
                    let (Some(Tok::Str(name)), Some(Tok::RParen)) = (self.next(), self.next())
                    else {
                        return Err("`env` takes one quoted variable name: env(\"NAME\")".into());
                    };
                    Ok(Expr::Lit(
                        std::env::var(&name).map(Value::Str).unwrap_or(Value::Null),
                    ))
                }
                _ if self.peek() == Some(&Tok::LParen) => Err(format!(
                    "unsupported function `{w}` (ferrotel's expressions have env())"
                )),
                _ => {
                    // A field: name, then `.name` or `["key"]` parts.
                    let mut text = w.clone();
                    loop {
                        match self.peek() {
                            Some(Tok::Dot) => {
                                self.at += 1;
                                let Some(Tok::Ident(n)) = self.next() else {
                                    return Err("expected a name after `.`".into());
                                };
                                text.push('.');
                                text.push_str(&n);
                            }
                            Some(Tok::LBrack) => {
                                self.at += 1;
                                let Some(Tok::Str(k)) = self.next() else {
                                    return Err("expected a quoted key after `[`".into());
                                };
                                if self.next() != Some(Tok::RBrack) {
                                    return Err("expected `]`".into());
                                }
                                text.push_str(&format!("[\"{k}\"]"));
                            }
                            _ => break,
                        }
                    }
                    Ok(Expr::Field(Field::parse(&text)?))
                }
            },
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of expression".into()),
        }
    }
}

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, String> {
        // A long expression is quoted by its start only.
        let quoted = crate::text::excerpt(s, 80);
        let mut p = Parser {
            toks: lex(s).map_err(|e| format!("expression `{quoted}`: {e}"))?,
            at: 0,
            depth: 0,
        };
        let e = p.or().map_err(|e| format!("expression `{quoted}`: {e}"))?;
        if p.at < p.toks.len() {
            return Err(format!(
                "expression `{quoted}`: unsupported syntax after token {} (ferrotel supports fields, literals, ==, !=, <, <=, >, >=, +, matches, contains, startsWith, endsWith, and, or, not, env())",
                p.at
            ));
        }
        Ok(e)
    }

    fn value<'a>(&'a self, e: &'a Entry) -> Option<std::borrow::Cow<'a, Value>> {
        use std::borrow::Cow;
        match self {
            Expr::Field(f) => f.get(e).map(Cow::Borrowed),
            Expr::Lit(v) => Some(Cow::Borrowed(v)),
            Expr::Add(terms) => add_values(terms, e).map(Cow::Owned),
            other => Some(Cow::Owned(Value::Bool(other.eval(e)))),
        }
    }

    /// The expression's value (an `EXPR(...)`): a missing field or a type clash is nil.
    pub fn value_of(&self, e: &Entry) -> Value {
        self.value(e).map(|v| v.into_owned()).unwrap_or(Value::Null)
    }

    pub fn eval(&self, e: &Entry) -> bool {
        match self {
            Expr::Not(x) => !x.eval(e),
            Expr::And(terms) => terms.iter().all(|t| t.eval(e)),
            Expr::Or(terms) => terms.iter().any(|t| t.eval(e)),
            Expr::Matches(x, re) => x
                .value(e)
                .and_then(|v| v.to_text())
                .is_some_and(|s| re.is_match(&s)),
            Expr::Cmp(a, op, b) => {
                let (a, b) = (a.value(e), b.value(e));
                let null = Value::Null;
                let a = a.as_deref().unwrap_or(&null);
                let b = b.as_deref().unwrap_or(&null);
                match op {
                    CmpOp::Eq => values_eq(a, b),
                    CmpOp::Ne => !values_eq(a, b),
                    CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
                        let ord = match (number(a), number(b)) {
                            (Some(x), Some(y)) => x.partial_cmp(&y),
                            _ => match (a, b) {
                                (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                                _ => None,
                            },
                        };
                        ord.is_some_and(|o| match op {
                            CmpOp::Lt => o.is_lt(),
                            CmpOp::Le => o.is_le(),
                            CmpOp::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        })
                    }
                    _ => {
                        let (Some(a), Some(b)) = (a.to_text(), b.to_text()) else {
                            return false;
                        };
                        match op {
                            CmpOp::Contains => a.contains(&b),
                            CmpOp::StartsWith => a.starts_with(&b),
                            _ => a.ends_with(&b),
                        }
                    }
                }
            }
            Expr::Field(f) => matches!(f.get(e), Some(Value::Bool(true))),
            Expr::Lit(v) => matches!(v, Value::Bool(true)),
            Expr::Add(_) => matches!(self.value(e).as_deref(), Some(Value::Bool(true))),
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}

/// `+` as expr-lang has it: integers stay integers, any double makes a double, strings join;
/// anything else (a missing field, a string plus a number) is nil.
fn add_values(terms: &[Expr], e: &Entry) -> Option<Value> {
    let mut acc = terms.first()?.value(e)?.into_owned();
    for t in &terms[1..] {
        let v = t.value(e)?;
        acc = match (acc, v.as_ref()) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.wrapping_add(*b)),
            (Value::Str(mut a), Value::Str(b)) => {
                a.push_str(b);
                Value::Str(a)
            }
            (a, b) => Value::Double(number(&a)? + number(b)?),
        };
    }
    Some(acc)
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Double(y)) | (Value::Double(y), Value::Int(x)) => *x as f64 == *y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry::new("  at com.example.Foo(Foo.java:1)".into(), 0);
        e.attributes
            .push(("log.iostream".into(), Value::Str("stderr".into())));
        e.attributes.push(("n".into(), Value::Int(3)));
        e
    }

    #[test]
    fn conditions_as_written_in_collector_configs() {
        let e = entry();
        for (src, want) in [
            (r#"body matches "^\\s""#, true),
            (r#"body matches "^[^\\s]""#, false),
            (r#"not (body matches "^\\s")"#, false),
            (r#"attributes["log.iostream"] == "stderr""#, true),
            (
                r#"attributes["log.iostream"] == "stdout" || attributes.n == 3"#,
                true,
            ),
            (r#"attributes.n != 3 and body contains "Foo""#, false),
            (r#"!(attributes.missing == nil)"#, false),
            (r#"body startsWith "  at""#, true),
        ] {
            assert_eq!(Expr::parse(src).unwrap().eval(&e), want, "{src}");
        }
    }

    #[test]
    fn values_comparisons_and_env() {
        let e = entry();
        for (src, want) in [
            ("attributes.n > 2", true),
            ("attributes.n >= 3.5", false),
            ("attributes.n <= 3", true),
            (r#"attributes["log.iostream"] < "t""#, true),
            ("attributes.missing < 3", false),
        ] {
            assert_eq!(Expr::parse(src).unwrap().eval(&e), want, "{src}");
        }
        let v = |src: &str| Expr::parse(src).unwrap().value_of(&e);
        assert_eq!(
            v(r#"attributes["log.iostream"] + "-" + "x""#),
            Value::Str("stderr-x".into())
        );
        assert_eq!(v("attributes.n + 4"), Value::Int(7));
        assert_eq!(v("attributes.n + 0.5"), Value::Double(3.5));
        assert_eq!(v(r#"attributes.n + "x""#), Value::Null);
        assert_eq!(
            v(r#"env("PATH")"#),
            Value::Str(std::env::var("PATH").unwrap())
        );
        assert_eq!(v(r#"env("FERROTEL_SURELY_UNSET_VAR")"#), Value::Null);
        assert!(Expr::parse("env(PATH)").is_err());
    }

    #[test]
    fn nesting_is_bounded_and_chains_are_flat() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = Expr::parse(&deep).unwrap_err();
        assert!(e.contains("nesting deeper than 100 levels"), "{e}");
        assert!(e.len() < 300, "the message quotes only the start: {e}");
        let e = Expr::parse(&format!("{}true", "not ".repeat(12_000))).unwrap_err();
        assert!(e.contains("nesting deeper than 100 levels"), "{e}");
        assert!(Expr::parse(&format!("{}true", "! ".repeat(100))).is_ok());
        // 50,000 `and`s: a flat list, evaluated without deep recursion.
        let chain = vec![r#"body == "x""#; 50_000].join(" and ");
        let e = Expr::parse(&chain).unwrap();
        assert!(!e.eval(&entry()));
        let chain = vec![r#"body != "x""#; 50_000].join(" && ");
        assert!(Expr::parse(&chain).unwrap().eval(&entry()));
    }

    #[test]
    fn unsupported_syntax_is_refused_at_parse() {
        assert!(Expr::parse("body matches").is_err());
        assert!(
            Expr::parse(r#"len(body) > 3"#)
                .unwrap_err()
                .contains("unsupported function `len`")
        );
        assert!(
            Expr::parse(r#"body matches "(""#)
                .unwrap_err()
                .contains("bad regex")
        );
    }
}
