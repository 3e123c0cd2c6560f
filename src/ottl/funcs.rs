//! OTTL converters: the Collector's pure functions (`Concat`, `ParseJSON`, `SHA256`, ...), each
//! a row of [`CONVERTERS`] with its parameters as the Collector names them (so named arguments
//! work), an optional load-time check that compiles literal arguments (regexes, networks) and
//! the function itself, which receives its arguments already evaluated.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::ast::{
    Call, CaptureType, CompileError, Compiled, Field, Literal, Param, Value, opt, req,
};
use super::val::{Ctx, EvalError, Val, float_text};

/// The most parameters any converter or editor takes.
pub const MAX_ARGS: usize = 6;

pub type Run = for<'a, 'b> fn(&mut Args<'a, 'b>) -> Result<Val<'a>, EvalError>;
pub type Compile = fn(&mut Call) -> Result<(), CompileError>;

pub struct Def {
    pub name: &'static str,
    pub params: &'static [Param],
    pub run: Run,
    pub compile: Option<Compile>,
}

/// A converter's evaluated arguments, by parameter position (`Nil` when left out).
pub struct Args<'a, 'b> {
    pub call: &'a Call,
    pub vals: &'b mut [Val<'a>],
    pub ctx: &'a dyn Ctx,
}

impl<'a> Args<'a, '_> {
    pub fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, EvalError> {
        Err(EvalError(format!("{}: {msg}", self.call.name)))
    }

    fn param(&self, i: usize) -> &'static str {
        CONVERTERS
            .get(self.call.id)
            .and_then(|d| d.params.get(i))
            .map_or("argument", |p| p.name)
    }

    pub fn take(&mut self, i: usize) -> Val<'a> {
        std::mem::take(&mut self.vals[i])
    }

    pub fn str(&mut self, i: usize) -> Result<Cow<'a, str>, EvalError> {
        match self.take(i) {
            Val::Str(s) => Ok(s),
            other => self.err(format_args!(
                "{} must be a string, got {}",
                self.param(i),
                other.type_name()
            )),
        }
    }

    pub fn opt_str(&mut self, i: usize) -> Result<Option<Cow<'a, str>>, EvalError> {
        match &self.vals[i] {
            Val::Nil => Ok(None),
            _ => self.str(i).map(Some),
        }
    }

    pub fn int(&mut self, i: usize) -> Result<i64, EvalError> {
        match self.take(i) {
            Val::Int(n) => Ok(n),
            other => self.err(format_args!(
                "{} must be an int, got {}",
                self.param(i),
                other.type_name()
            )),
        }
    }

    pub fn opt_int(&mut self, i: usize) -> Result<Option<i64>, EvalError> {
        match &self.vals[i] {
            Val::Nil => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn opt_bool(&mut self, i: usize) -> Result<Option<bool>, EvalError> {
        match self.take(i) {
            Val::Nil => Ok(None),
            Val::Bool(b) => Ok(Some(b)),
            other => self.err(format_args!(
                "{} must be a bool, got {}",
                self.param(i),
                other.type_name()
            )),
        }
    }

    pub fn time(&mut self, i: usize) -> Result<i64, EvalError> {
        match self.take(i) {
            Val::Time(t) => Ok(t),
            other => self.err(format_args!("expected a time, got {}", other.type_name())),
        }
    }

    pub fn duration(&mut self, i: usize) -> Result<i64, EvalError> {
        match self.take(i) {
            Val::Duration(d) => Ok(d),
            other => self.err(format_args!(
                "expected a duration, got {}",
                other.type_name()
            )),
        }
    }

    pub fn map(&mut self, i: usize) -> Result<Cow<'a, [KeyValue]>, EvalError> {
        match self.take(i) {
            Val::Map(m) => Ok(m),
            other => self.err(format_args!(
                "{} must be a map, got {}",
                self.param(i),
                other.type_name()
            )),
        }
    }

    pub fn list(&mut self, i: usize) -> Result<Cow<'a, [AnyValue]>, EvalError> {
        match self.take(i) {
            Val::List(l) => Ok(l),
            other => self.err(format_args!(
                "{} must be a slice, got {}",
                self.param(i),
                other.type_name()
            )),
        }
    }
}

/// `IsMatch`: the value as text (bytes in base64, as the Collector does) against the regex;
/// nil never matches.
#[inline]
pub fn is_match(re: &regex::Regex, v: &Val<'_>) -> bool {
    match v {
        Val::Str(s) => re.is_match(s),
        Val::Bytes(b) => re.is_match(&base64::engine::general_purpose::STANDARD.encode(b)),
        other => other.to_text().is_some_and(|s| re.is_match(&s)),
    }
}

/// The index of converter `name` in [`CONVERTERS`].
pub fn find(name: &str) -> Option<usize> {
    CONVERTERS.iter().position(|d| d.name == name)
}

/// Runs converter `id` on already-evaluated arguments.
#[inline]
pub fn run<'a>(
    call: &'a Call,
    vals: &mut [Val<'a>],
    ctx: &'a dyn Ctx,
) -> Result<Val<'a>, EvalError> {
    let mut args = Args { call, vals, ctx };
    (CONVERTERS[call.id].run)(&mut args)
}

struct NoCtx;
impl Ctx for NoCtx {
    fn field(&self, _f: Field) -> Val<'_> {
        Val::Nil
    }
}

/// Runs a converter named as an argument (`SHA256` in `replace_pattern`) on one string.
pub fn apply_ref(id: usize, input: &str) -> Result<String, EvalError> {
    let call = Call {
        name: CONVERTERS[id].name,
        id,
        args: Vec::new(),
        compiled: Compiled::None,
    };
    let mut vals: [Val<'_>; MAX_ARGS] = Default::default();
    vals[0] = Val::str(input);
    match run(&call, &mut vals, &NoCtx)? {
        Val::Str(s) => Ok(s.into_owned()),
        other => other
            .to_text()
            .map(Cow::into_owned)
            .ok_or_else(|| EvalError(format!("{} returned no string", call.name))),
    }
}

macro_rules! def {
    ($name:literal, [$($p:expr),*], $run:expr) => {
        Def { name: $name, params: &[$($p),*], run: $run, compile: None }
    };
    ($name:literal, [$($p:expr),*], $run:expr, $compile:expr) => {
        Def { name: $name, params: &[$($p),*], run: $run, compile: Some($compile) }
    };
}

/// Every converter ferrotel has, by the Collector's names. The README's function table is
/// checked against this list and [`UNSUPPORTED`].
pub static CONVERTERS: &[Def] = &[
    def!("Base64Decode", [req("value")], |a| {
        let s = a.str(0)?;
        decode_base64(a, &s, "base64")
    }),
    def!("Base64Encode", [req("value"), opt("variant")], |a| {
        let s = a.str(0)?;
        let variant = a.opt_str(1)?;
        let e = base64_engine(variant.as_deref().unwrap_or("base64"))
            .ok_or_else(|| EvalError(format!("Base64Encode: unknown variant {variant:?}")))?;
        Ok(Val::string(e.encode(s.as_bytes())))
    }),
    def!("Bool", [req("value")], |a| {
        Ok(match a.take(0) {
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Bool(i != 0),
            Val::Float(f) => Val::Bool(f != 0.0),
            Val::Str(s) => match s.as_ref() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Val::Bool(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Val::Bool(false),
                _ => Val::Nil,
            },
            _ => Val::Nil,
        })
    }),
    def!("Coalesce", [req("values")], |a| {
        let l = a.list(0)?;
        Ok(l.iter()
            .find(|v| v.value.is_some())
            .map_or(Val::Nil, |v| Val::from_any(Some(v)).into_owned()))
    }),
    def!(
        "CommunityID",
        [
            req("sourceIP"),
            req("sourcePort"),
            req("destinationIP"),
            req("destinationPort"),
            opt("protocol"),
            opt("seed")
        ],
        community_id
    ),
    def!("Concat", [req("values"), req("delimiter")], |a| {
        let delim = a.str(1)?;
        let l = a.list(0)?;
        let mut out = String::new();
        let mut first = true;
        for v in l.iter() {
            let v = Val::from_any(Some(v));
            if matches!(v, Val::Map(_) | Val::List(_)) {
                continue;
            }
            if !first {
                out.push_str(&delim);
            }
            first = false;
            if let Some(t) = v.to_text() {
                out.push_str(&t);
            }
        }
        Ok(Val::string(out))
    }),
    def!("ContainsValue", [req("target"), req("item")], |a| {
        let item = a.take(1);
        let l = a.list(0)?;
        Ok(Val::Bool(l.iter().any(|v| {
            super::val::equal(&Val::from_any(Some(v)), &item)
        })))
    }),
    def!(
        "ConvertCase",
        [req("target"), req("toCase")],
        |a| {
            let s = a.str(0)?;
            let to = a.str(1)?;
            Ok(Val::string(match to.as_ref() {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                "snake" => snake_case(&s),
                "camel" => camel_case(&s),
                other => return a.err(format_args!("unknown case {other:?}")),
            }))
        },
        |c| match c.lit_str(1) {
            Some("lower" | "upper" | "snake" | "camel") | None => Ok(()),
            Some(other) => Err((
                1,
                format!("toCase must be lower, upper, snake or camel, not {other:?}"),
            )),
        }
    ),
    def!("Day", [req("value")], |a| time_part(a, |z| z.day() as i64)),
    def!("Decode", [req("value"), req("encoding")], |a| {
        let enc = a.str(1)?;
        match a.take(0) {
            Val::Str(s) => decode_text(a, s.as_bytes(), &enc),
            Val::Bytes(b) => decode_text(a, &b, &enc),
            other => a.err(format_args!(
                "value must be a string or bytes, got {}",
                other.type_name()
            )),
        }
    }),
    def!("Double", [req("value")], |a| {
        Ok(match a.take(0) {
            Val::Int(i) => Val::Float(i as f64),
            Val::Float(f) => Val::Float(f),
            Val::Bool(b) => Val::Float(b as i64 as f64),
            Val::Str(s) => s.trim().parse::<f64>().map_or(Val::Nil, Val::Float),
            _ => Val::Nil,
        })
    }),
    def!("Duration", [req("duration")], |a| {
        let s = a.str(0)?;
        match parse_go_duration(&s) {
            Some(d) => Ok(Val::Duration(d)),
            None => a.err(format_args!("invalid duration {s:?}")),
        }
    }),
    def!(
        "ExtractGrokPatterns",
        [
            req("target"),
            req("pattern"),
            opt("namedCapturesOnly"),
            opt("patternDefinitions")
        ],
        extract_patterns,
        compile_grok
    ),
    def!(
        "ExtractPatterns",
        [req("target"), req("pattern")],
        extract_patterns,
        |c| {
            let re = literal_regex(c, 1)?;
            if re.capture_names().flatten().next().is_none() {
                return Err((1, "the pattern has no named capture group".into()));
            }
            let names = re
                .capture_names()
                .flatten()
                .map(|n| (n.to_string(), CaptureType::Str))
                .collect();
            c.compiled = Compiled::Typed(re, names);
            Ok(())
        }
    ),
    def!("FNV", [req("value")], |a| {
        let s = a.str(0)?;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.as_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(Val::Int(h as i64))
    }),
    def!(
        "Format",
        [req("formatString"), req("formatArguments")],
        |a| {
            let f = a.str(0)?;
            let l = a.list(1)?;
            Ok(Val::string(go_sprintf(&f, &l)))
        }
    ),
    def!("FormatTime", [req("time"), req("format")], |a| {
        let t = a.time(0)?;
        let f = a.str(1)?;
        let ts = timestamp(a, t)?;
        let fmt = crate::stanza::operators::strptime_to_jiff(&f);
        let z = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
        match jiff::fmt::strtime::format(&fmt, &z) {
            Ok(s) => Ok(Val::string(s)),
            Err(e) => a.err(e),
        }
    }),
    def!("HasPrefix", [req("value"), req("prefix")], |a| {
        let s = a.str(0)?;
        let p = a.str(1)?;
        Ok(Val::Bool(s.starts_with(p.as_ref())))
    }),
    def!("HasSuffix", [req("value"), req("suffix")], |a| {
        let s = a.str(0)?;
        let p = a.str(1)?;
        Ok(Val::Bool(s.ends_with(p.as_ref())))
    }),
    def!("Hex", [req("value")], |a| {
        Ok(match a.take(0) {
            Val::Float(f) => Val::string(hex::encode(f.to_bits().to_be_bytes())),
            Val::Int(i) => Val::string(hex::encode(i.to_be_bytes())),
            Val::Str(s) => Val::string(hex::encode(s.as_bytes())),
            Val::Bool(b) => Val::string(hex::encode([b as u8])),
            Val::Bytes(b) => Val::string(hex::encode(b)),
            _ => Val::Nil,
        })
    }),
    def!("Hour", [req("value")], |a| time_part(a, |z| z.hour()
        as i64)),
    def!("Hours", [req("value")], |a| {
        Ok(Val::Float(a.duration(0)? as f64 / 3.6e12))
    }),
    def!("Index", [req("target"), req("value")], |a| {
        let needle = a.take(1);
        Ok(Val::Int(match a.take(0) {
            Val::Str(s) => match needle {
                // A byte offset, as Go's strings.Index gives.
                Val::Str(n) => s.find(n.as_ref()).map_or(-1, |byte| byte as i64),
                other => {
                    return a.err(format_args!(
                        "value must be a string to search a string, got {}",
                        other.type_name()
                    ));
                }
            },
            Val::List(l) => l
                .iter()
                .position(|v| super::val::equal(&Val::from_any(Some(v)), &needle))
                .map_or(-1, |i| i as i64),
            other => {
                return a.err(format_args!(
                    "target must be a string or a slice, got {}",
                    other.type_name()
                ));
            }
        }))
    }),
    def!("Int", [req("value")], |a| {
        Ok(match a.take(0) {
            Val::Int(i) => Val::Int(i),
            Val::Float(f) if f.is_finite() => Val::Int(f.trunc() as i64),
            Val::Bool(b) => Val::Int(b as i64),
            Val::Str(s) => s.trim().parse::<i64>().map_or(Val::Nil, Val::Int),
            _ => Val::Nil,
        })
    }),
    def!("IsBool", [req("value")], |a| Ok(Val::Bool(matches!(
        a.vals[0],
        Val::Bool(_)
    )))),
    def!("IsDouble", [req("value")], |a| Ok(Val::Bool(matches!(
        a.vals[0],
        Val::Float(_)
    )))),
    def!("IsEmpty", [req("value")], |a| {
        Ok(Val::Bool(match &a.vals[0] {
            Val::Nil => true,
            Val::Bool(b) => !b,
            Val::Int(i) => *i == 0,
            Val::Float(f) => *f == 0.0,
            Val::Str(s) => s.is_empty(),
            Val::Bytes(b) => b.iter().all(|x| *x == 0),
            Val::Map(m) => m.is_empty(),
            Val::List(l) => l.is_empty(),
            Val::Time(t) | Val::Duration(t) => *t == 0,
            Val::Items(_, n) => *n == 0,
        }))
    }),
    def!(
        "IsInCIDR",
        [req("target"), req("networks")],
        |a| {
            let Compiled::Nets(nets) = &a.call.compiled else {
                return a.err("networks must be a list of literal CIDRs");
            };
            let s = a.str(0)?;
            let Ok(ip) = s.trim().parse::<std::net::IpAddr>() else {
                return Ok(Val::Bool(false));
            };
            Ok(Val::Bool(
                nets.iter().any(|(net, bits)| in_cidr(ip, *net, *bits)),
            ))
        },
        |c| {
            let list = c
                .lit_strs(1)
                .ok_or((1, "networks must be a list of literal strings".to_string()))?;
            let nets = list
                .iter()
                .map(|s| parse_cidr(s).ok_or((1, format!("invalid CIDR {s:?}"))))
                .collect::<Result<Vec<_>, _>>()?;
            c.compiled = Compiled::Nets(nets);
            Ok(())
        }
    ),
    def!("IsInt", [req("value")], |a| Ok(Val::Bool(matches!(
        a.vals[0],
        Val::Int(_)
    )))),
    def!("IsList", [req("value")], |a| Ok(Val::Bool(matches!(
        a.vals[0],
        Val::List(_)
    )))),
    def!("IsMap", [req("value")], |a| Ok(Val::Bool(matches!(
        a.vals[0],
        Val::Map(_)
    )))),
    def!(
        "IsMatch",
        [req("target"), req("pattern")],
        |a| {
            let Compiled::Regex(re) = &a.call.compiled else {
                return a.err("the pattern must be a literal string");
            };
            let v = a.take(0);
            Ok(Val::Bool(is_match(re, &v)))
        },
        |c| {
            let re = literal_regex(c, 1)?;
            c.compiled = Compiled::Regex(re);
            Ok(())
        }
    ),
    def!("IsRootSpan", [], |a| {
        Ok(Val::Bool(match a.ctx.field(Field::ParentSpanId) {
            Val::Bytes(b) => b.iter().all(|x| *x == 0),
            _ => false,
        }))
    }),
    def!("IsString", [req("value")], |a| Ok(Val::Bool(matches!(
        a.vals[0],
        Val::Str(_)
    )))),
    def!("IsValidLuhn", [req("value")], |a| {
        let digits: String = match a.take(0) {
            Val::Str(s) => s.into_owned(),
            Val::Int(i) if i >= 0 => i.to_string(),
            other => {
                return a.err(format_args!(
                    "value must be a string of digits or an int, got {}",
                    other.type_name()
                ));
            }
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return a.err("value must contain digits only");
        }
        let sum: u32 = digits
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = (b - b'0') as u32;
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum();
        Ok(Val::Bool(sum.is_multiple_of(10)))
    }),
    def!("Keys", [req("target")], |a| {
        let m = a.map(0)?;
        Ok(Val::List(Cow::Owned(
            m.iter().map(|kv| any_str(kv.key.clone())).collect(),
        )))
    }),
    def!("Len", [req("target")], |a| {
        Ok(Val::Int(match a.take(0) {
            // Bytes, as Go's len of a string.
            Val::Str(s) => s.len() as i64,
            Val::Bytes(b) => b.len() as i64,
            Val::Map(m) => m.len() as i64,
            Val::List(l) => l.len() as i64,
            Val::Items(_, n) => n as i64,
            other => return a.err(format_args!("unsupported type {}", other.type_name())),
        }))
    }),
    def!("Log", [req("value")], |a| {
        let x = match a.take(0) {
            Val::Float(f) => f,
            Val::Int(i) => i as f64,
            Val::Bool(b) => b as i64 as f64,
            Val::Str(s) => match s.trim().parse::<f64>() {
                Ok(f) => f,
                Err(_) => return a.err(format_args!("{s:?} is not a number")),
            },
            other => return a.err(format_args!("unsupported type {}", other.type_name())),
        };
        if x <= 0.0 {
            return a.err("the logarithm of a value <= 0 is undefined");
        }
        Ok(Val::Float(x.ln()))
    }),
    def!("MD5", [req("value")], |a| {
        use md5::Digest;
        let s = a.str(0)?;
        Ok(Val::string(hex::encode(md5::Md5::digest(s.as_bytes()))))
    }),
    def!("Microseconds", [req("value")], |a| Ok(Val::Int(
        a.duration(0)? / 1_000
    ))),
    def!("Milliseconds", [req("value")], |a| Ok(Val::Int(
        a.duration(0)? / 1_000_000
    ))),
    def!("Minute", [req("value")], |a| time_part(a, |z| z.minute()
        as i64)),
    def!("Minutes", [req("value")], |a| Ok(Val::Float(
        a.duration(0)? as f64 / 6e10
    ))),
    def!("Month", [req("value")], |a| time_part(a, |z| z.month()
        as i64)),
    def!("Murmur3Hash", [req("target")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(hex::encode(
            murmur3_32(s.as_bytes(), 0).to_le_bytes(),
        )))
    }),
    def!("Murmur3Hash128", [req("target")], |a| {
        let s = a.str(0)?;
        let (h1, h2) = murmur3_128(s.as_bytes(), 0);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&h1.to_le_bytes());
        b[8..].copy_from_slice(&h2.to_le_bytes());
        Ok(Val::string(hex::encode(b)))
    }),
    def!("Nanosecond", [req("value")], |a| time_part(
        a,
        |z| z.subsec_nanosecond() as i64
    )),
    def!("Nanoseconds", [req("value")], |a| Ok(Val::Int(
        a.duration(0)?
    ))),
    def!("Now", [], |_| {
        Ok(Val::Time(
            jiff::Timestamp::now()
                .as_nanosecond()
                .clamp(0, i64::MAX as i128) as i64,
        ))
    }),
    def!(
        "ParseCSV",
        [
            req("target"),
            req("headers"),
            opt("delimiter"),
            opt("headerDelimiter"),
            opt("mode")
        ],
        parse_csv
    ),
    def!("ParseInt", [req("target"), req("base")], |a| {
        let s = a.str(0)?;
        let base = a.int(1)?;
        match parse_go_int(&s, base) {
            Some(i) => Ok(Val::Int(i)),
            None => a.err(format_args!("cannot parse {s:?} in base {base}")),
        }
    }),
    def!("ParseJSON", [req("target")], |a| {
        let s = a.str(0)?;
        match serde_json::from_str::<serde_json::Value>(&s) {
            Ok(serde_json::Value::Object(o)) => Ok(Val::Map(Cow::Owned(
                o.into_iter()
                    .map(|(k, v)| KeyValue {
                        key: k,
                        value: Some(json_any(v)),
                        ..Default::default()
                    })
                    .collect(),
            ))),
            Ok(serde_json::Value::Array(items)) => Ok(Val::List(Cow::Owned(
                items.into_iter().map(json_any).collect(),
            ))),
            Ok(_) => a.err("the JSON is neither an object nor an array"),
            Err(e) => a.err(e),
        }
    }),
    def!(
        "ParseKeyValue",
        [req("target"), opt("delimiter"), opt("pair_delimiter")],
        parse_key_value
    ),
    def!(
        "ParseSeverity",
        [req("target"), req("severityMapping")],
        parse_severity
    ),
    def!("ParseSimplifiedXML", [req("target")], |a| {
        let s = a.str(0)?;
        match super::xml::parse_simplified(&s) {
            Ok(m) => Ok(Val::Map(Cow::Owned(m))),
            Err(e) => a.err(e),
        }
    }),
    def!("ParseXML", [req("target")], |a| {
        let s = a.str(0)?;
        match super::xml::parse_full(&s) {
            Ok(m) => Ok(Val::Map(Cow::Owned(m))),
            Err(e) => a.err(e),
        }
    }),
    def!("ProfileID", [req("value")], |a| id_of(a, 16)),
    def!("SHA1", [req("value")], |a| {
        use sha1::Digest;
        let s = a.str(0)?;
        Ok(Val::string(hex::encode(sha1::Sha1::digest(s.as_bytes()))))
    }),
    def!("SHA256", [req("value")], |a| {
        use sha2::Digest;
        let s = a.str(0)?;
        Ok(Val::string(hex::encode(sha2::Sha256::digest(s.as_bytes()))))
    }),
    def!("SHA512", [req("input")], |a| {
        use sha2::Digest;
        let s = a.str(0)?;
        Ok(Val::string(hex::encode(sha2::Sha512::digest(s.as_bytes()))))
    }),
    def!("Second", [req("value")], |a| time_part(a, |z| z.second()
        as i64)),
    def!("Seconds", [req("value")], |a| Ok(Val::Float(
        a.duration(0)? as f64 / 1e9
    ))),
    def!(
        "SliceToMap",
        [req("target"), opt("keyPath"), opt("valuePath")],
        slice_to_map
    ),
    def!("Sort", [req("target"), opt("order")], sort),
    def!("SpanID", [req("bytes")], |a| id_of(a, 8)),
    def!("Split", [req("target"), req("delimiter")], |a| {
        let s = a.str(0)?;
        let d = a.str(1)?;
        let parts: Vec<AnyValue> = if d.is_empty() {
            s.chars().map(|c| any_str(c.to_string())).collect()
        } else {
            s.split(d.as_ref())
                .map(|p| any_str(p.to_string()))
                .collect()
        };
        Ok(Val::List(Cow::Owned(parts)))
    }),
    def!("String", [req("value")], |a| Ok(
        match a.take(0).to_text() {
            Some(s) => Val::Str(s),
            None => Val::Nil,
        }
    )),
    def!(
        "Substring",
        [req("target"), req("start"), req("length"), opt("utf8_safe")],
        |a| {
            let s = a.str(0)?;
            let start = a.int(1)?;
            let len = a.int(2)?;
            let safe = a.opt_bool(3)?.unwrap_or(false);
            let end = start.checked_add(len).unwrap_or(i64::MAX);
            if start < 0 || len < 0 || end > s.len() as i64 {
                return a.err(format_args!(
                    "start {start} and length {len} are out of range of a {}-byte string",
                    s.len()
                ));
            }
            let (mut from, mut to) = (start as usize, end as usize);
            if safe {
                while from < s.len() && !s.is_char_boundary(from) {
                    from += 1;
                }
                while to > from && !s.is_char_boundary(to) {
                    to -= 1;
                }
            } else if !s.is_char_boundary(from) || !s.is_char_boundary(to) {
                // Go slices bytes; a cut character becomes U+FFFD here.
                return Ok(Val::string(
                    String::from_utf8_lossy(&s.as_bytes()[from..to]).into_owned(),
                ));
            }
            Ok(Val::string(s[from..to.max(from)].to_string()))
        }
    ),
    def!(
        "Time",
        [req("target"), req("format"), opt("location"), opt("locale")],
        parse_time
    ),
    def!("ToCamelCase", [req("target")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(camel_case(&s)))
    }),
    def!(
        "ToKeyValueString",
        [
            req("target"),
            opt("delimiter"),
            opt("pair_delimiter"),
            opt("sort_output")
        ],
        to_key_value_string
    ),
    def!("ToLowerCase", [req("target")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(s.to_lowercase()))
    }),
    def!("ToSnakeCase", [req("target")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(snake_case(&s)))
    }),
    def!("ToUpperCase", [req("target")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(s.to_uppercase()))
    }),
    def!("TraceID", [req("bytes")], |a| id_of(a, 16)),
    def!("Trim", [req("target"), opt("replacement")], |a| {
        let s = a.str(0)?;
        let cut = a.opt_str(1)?;
        let cut = cut.as_deref().unwrap_or(" ");
        Ok(Val::string(
            s.trim_matches(|c: char| cut.contains(c)).to_string(),
        ))
    }),
    def!("TrimPrefix", [req("value"), req("prefix")], |a| {
        let s = a.str(0)?;
        let p = a.str(1)?;
        Ok(Val::string(
            s.strip_prefix(p.as_ref()).unwrap_or(&s).to_string(),
        ))
    }),
    def!("TrimSuffix", [req("value"), req("suffix")], |a| {
        let s = a.str(0)?;
        let p = a.str(1)?;
        Ok(Val::string(
            s.strip_suffix(p.as_ref()).unwrap_or(&s).to_string(),
        ))
    }),
    def!("TruncateTime", [req("time"), req("duration")], |a| {
        let t = a.time(0)?;
        let d = a.duration(1)?;
        if d <= 0 {
            return Ok(Val::Time(t));
        }
        Ok(Val::Time(t - t.rem_euclid(d)))
    }),
    def!("URL", [req("url_string")], parse_url),
    def!("UUID", [], |_| {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(Val::string(uuid_text(&b)))
    }),
    def!("UUIDv7", [], |_| {
        let mut b: [u8; 16] = rand::random();
        let ms = jiff::Timestamp::now().as_millisecond().max(0) as u64;
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6] = (b[6] & 0x0f) | 0x70;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(Val::string(uuid_text(&b)))
    }),
    def!("Unix", [req("seconds"), opt("nanoseconds")], |a| {
        let s = a.int(0)?;
        let ns = a.opt_int(1)?.unwrap_or(0);
        Ok(Val::Time(
            s.saturating_mul(1_000_000_000).saturating_add(ns),
        ))
    }),
    def!("UnixMicro", [req("value")], |a| Ok(Val::Int(
        a.time(0)?.div_euclid(1_000)
    ))),
    def!("UnixMilli", [req("value")], |a| Ok(Val::Int(
        a.time(0)?.div_euclid(1_000_000)
    ))),
    def!("UnixNano", [req("value")], |a| Ok(Val::Int(a.time(0)?))),
    def!("UnixSeconds", [req("value")], |a| Ok(Val::Int(
        a.time(0)?.div_euclid(1_000_000_000)
    ))),
    def!("UserAgent", [req("value")], |a| {
        let s = a.str(0)?;
        Ok(Val::Map(Cow::Owned(super::useragent::parse(&s))))
    }),
    def!("Values", [req("target")], |a| {
        let m = a.map(0)?;
        Ok(Val::List(Cow::Owned(
            m.iter()
                .map(|kv| kv.value.clone().unwrap_or_default())
                .collect(),
        )))
    }),
    def!("Weekday", [req("value")], |a| time_part(a, |z| {
        z.weekday().to_sunday_zero_offset() as i64
    })),
    def!("XXH128", [req("value")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(s.as_bytes())
        )))
    }),
    def!("XXH3", [req("value")], |a| {
        let s = a.str(0)?;
        Ok(Val::string(format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(s.as_bytes())
        )))
    }),
    def!("Year", [req("value")], |a| time_part(a, |z| z.year()
        as i64)),
];

/// The Collector's converters ferrotel does not have, and why; the parser refuses them by name.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "All",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "Any",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "Filter",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "Find",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "MapEach",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "MapKeys",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "Reduce",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    (
        "When",
        "lambdas (alpha, behind a feature gate in the Collector)",
    ),
    ("ConvertAttributesToElementsXML", "XPath editing"),
    ("ConvertTextToElementsXML", "XPath editing"),
    ("GetXML", "XPath editing"),
    ("InsertXML", "XPath editing"),
    ("RemoveXML", "XPath editing"),
];

fn any_str(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

/// A JSON value as OTLP, as the Collector's `ParseJSON` maps it (numbers are doubles).
pub fn json_any(v: serde_json::Value) -> AnyValue {
    use any_value::Value as V;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    AnyValue {
        value: match v {
            serde_json::Value::Null => None,
            serde_json::Value::Bool(b) => Some(V::BoolValue(b)),
            serde_json::Value::Number(n) => Some(V::DoubleValue(n.as_f64().unwrap_or(0.0))),
            serde_json::Value::String(s) => Some(V::StringValue(s)),
            serde_json::Value::Array(items) => Some(V::ArrayValue(ArrayValue {
                values: items.into_iter().map(json_any).collect(),
            })),
            serde_json::Value::Object(o) => Some(V::KvlistValue(KeyValueList {
                values: o
                    .into_iter()
                    .map(|(k, v)| KeyValue {
                        key: k,
                        value: Some(json_any(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
        },
    }
}

fn literal_regex(c: &Call, i: usize) -> Result<regex::Regex, CompileError> {
    let p = c
        .lit_str(i)
        .ok_or((i, "the pattern must be a literal string".to_string()))?;
    regex::Regex::new(p).map_err(|e| (i, format!("invalid regular expression: {e}")))
}

fn base64_engine(variant: &str) -> Option<&'static base64::engine::GeneralPurpose> {
    use base64::engine::general_purpose as gp;
    Some(match variant {
        "base64" => &gp::STANDARD,
        "base64-raw" => &gp::STANDARD_NO_PAD,
        "base64-url" => &gp::URL_SAFE,
        "base64-raw-url" => &gp::URL_SAFE_NO_PAD,
        _ => return None,
    })
}

fn decode_base64<'a>(a: &Args<'_, '_>, s: &str, variant: &str) -> Result<Val<'a>, EvalError> {
    let e = base64_engine(variant).expect("a known variant");
    match e.decode(s.trim()) {
        Ok(b) => Ok(Val::string(String::from_utf8_lossy(&b).into_owned())),
        Err(err) => a.err(err),
    }
}

fn decode_text<'a>(a: &Args<'_, '_>, bytes: &[u8], encoding: &str) -> Result<Val<'a>, EvalError> {
    if base64_engine(encoding).is_some() {
        let s = String::from_utf8_lossy(bytes);
        return decode_base64(a, &s, encoding);
    }
    let Some(enc) = encoding_rs::Encoding::for_label(encoding.as_bytes()) else {
        return a.err(format_args!("unknown encoding {encoding:?}"));
    };
    let (text, _, _) = enc.decode(bytes);
    Ok(Val::string(text.into_owned()))
}

fn timestamp(a: &Args<'_, '_>, ns: i64) -> Result<jiff::Timestamp, EvalError> {
    jiff::Timestamp::from_nanosecond(ns as i128).or_else(|e| a.err(e))
}

fn time_part<'a>(
    a: &mut Args<'a, '_>,
    part: impl Fn(&jiff::ZonedDateTime) -> i64,
) -> Result<Val<'a>, EvalError> {
    let t = a.time(0)?;
    let z = timestamp(a, t)?.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    Ok(Val::Int(part(&z)))
}

fn parse_time<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let s = a.str(0)?;
    let f = a.str(1)?;
    let loc = a.opt_str(2)?;
    if let Some(locale) = a.opt_str(3)?
        && !locale.is_empty()
        && !locale.starts_with("en")
    {
        return a.err(format_args!(
            "locale {locale:?}: only English names are read"
        ));
    }
    let fmt = crate::stanza::operators::strptime_to_jiff(&f);
    let bdt = match jiff::fmt::strtime::parse(&fmt, s.trim()) {
        Ok(b) => b,
        Err(e) => return a.err(format_args!("{s:?} does not match {f:?}: {e}")),
    };
    if let Ok(ts) = bdt.to_timestamp() {
        return Ok(Val::Time(ts.as_nanosecond() as i64));
    }
    let tz = match loc.as_deref() {
        None | Some("") => jiff::tz::TimeZone::UTC,
        Some(name) => match jiff::tz::TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => return a.err(format_args!("location {name:?}: {e}")),
        },
    };
    let zoned = bdt
        .to_datetime()
        .and_then(|dt| dt.to_zoned_datetime(tz))
        .or_else(|e| a.err(format_args!("{s:?}: {e}")))?;
    Ok(Val::Time(zoned.timestamp().as_nanosecond() as i64))
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units, optionally signed.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 6e10,
            "h" => 3.6e12,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if neg { -ns } else { ns })
}

/// Go's `strconv.ParseInt(s, base, 64)`, base 0 reading the prefix (`0x`, `0o`, `0b`, `0`).
fn parse_go_int(s: &str, base: i64) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = match base {
        0 => {
            let lower = body.to_ascii_lowercase();
            let (r, d) = if let Some(d) = lower.strip_prefix("0x") {
                (16, d.to_string())
            } else if let Some(d) = lower.strip_prefix("0b") {
                (2, d.to_string())
            } else if let Some(d) = lower.strip_prefix("0o") {
                (8, d.to_string())
            } else if lower.len() > 1 && lower.starts_with('0') {
                (8, lower[1..].to_string())
            } else {
                (10, lower)
            };
            (r, d.replace('_', ""))
        }
        2..=36 => (base as u32, body.to_string()),
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

fn id_of<'a>(a: &mut Args<'a, '_>, len: usize) -> Result<Val<'a>, EvalError> {
    let bytes = match a.take(0) {
        Val::Bytes(b) => b.into_owned(),
        Val::Str(s) => match hex::decode(s.as_bytes()) {
            Ok(b) => b,
            Err(e) => return a.err(format_args!("{s:?} is not hex: {e}")),
        },
        other => {
            return a.err(format_args!(
                "expected bytes or a hex string, got {}",
                other.type_name()
            ));
        }
    };
    if bytes.len() != len {
        return a.err(format_args!("expected {len} bytes, got {}", bytes.len()));
    }
    Ok(Val::Bytes(Cow::Owned(bytes)))
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `myMetricName` / `MyMetric` → `my_metric_name`.
fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && chars[i - 1] != '_' && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if *c == ' ' || *c == '-' {
            out.push('_');
        } else {
            out.push(*c);
        }
    }
    out
}

/// `my_metric_name` → `MyMetricName`.
fn camel_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = true;
    for c in s.chars() {
        if c == '_' || c == ' ' || c == '-' {
            upper = true;
            continue;
        }
        if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

/// Community ID v1 (the Corelight spec): SHA-1 over seed, ordered endpoints, protocol and
/// ports, base64, prefixed `1:`.
fn community_id<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let sip = a.str(0)?;
    let sport = a.int(1)?;
    let dip = a.str(2)?;
    let dport = a.int(3)?;
    let proto = a.opt_str(4)?;
    let seed = a.opt_int(5)?.unwrap_or(0);
    let parse_ip = |s: &str| s.trim().parse::<std::net::IpAddr>().ok();
    let (Some(sip), Some(dip)) = (parse_ip(&sip), parse_ip(&dip)) else {
        return a.err("sourceIP and destinationIP must be IP addresses");
    };
    for p in [sport, dport, seed] {
        if !(0..=65535).contains(&p) {
            return a.err(format_args!("{p} is out of the range 0-65535"));
        }
    }
    let proto_num: u8 = match proto.as_deref().unwrap_or("TCP") {
        "ICMP" => 1,
        "TCP" => 6,
        "UDP" => 17,
        "RSVP" => 46,
        "ICMP6" => 58,
        "SCTP" => 132,
        other => return a.err(format_args!("unknown protocol {other:?}")),
    };
    let octets = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v) => v.octets().to_vec(),
        std::net::IpAddr::V6(v) => v.octets().to_vec(),
    };
    let (mut s, mut d) = ((octets(sip), sport as u16), (octets(dip), dport as u16));
    if (s.0.clone(), s.1) > (d.0.clone(), d.1) {
        std::mem::swap(&mut s, &mut d);
    }
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update((seed as u16).to_be_bytes());
    h.update(&s.0);
    h.update(&d.0);
    h.update([proto_num, 0]);
    h.update(s.1.to_be_bytes());
    h.update(d.1.to_be_bytes());
    Ok(Val::string(format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )))
}

fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= (*b as u32) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// MurmurHash3 x64 128-bit.
fn murmur3_128(data: &[u8], seed: u64) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let (mut h1, mut h2) = (seed, seed);
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let mut k1 = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
        let mut k2 = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = chunks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, b) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= (*b as u64) << (8 * i);
        } else {
            k2 |= (*b as u64) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    if !tail.is_empty() {
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// The widest field and longest precision `Format` writes.
const MAX_FORMAT_WIDTH: usize = 1024;

/// The subset of Go's `fmt.Sprintf` verbs telemetry formats use: `%s %v %d %f %e %g %x %X %o
/// %b %q %t %%`, with flags (`-+0 `), width and precision.
pub fn go_sprintf(format: &str, args: &[AnyValue]) -> String {
    let mut out = String::new();
    let mut it = format.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = it.peek() {
            if "-+0 #".contains(f) {
                flags.push(f);
                it.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse::<usize>().unwrap_or(0).min(MAX_FORMAT_WIDTH));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let v = Val::from_any(Some(arg));
        let body = match (verb, &v) {
            ('d', Val::Int(i)) => i.abs().to_string(),
            ('x', Val::Int(i)) => format!("{:x}", i.unsigned_abs()),
            ('X', Val::Int(i)) => format!("{:X}", i.unsigned_abs()),
            ('o', Val::Int(i)) => format!("{:o}", i.unsigned_abs()),
            ('b', Val::Int(i)) => format!("{:b}", i.unsigned_abs()),
            ('f' | 'F', Val::Float(f)) => format!("{:.*}", prec.unwrap_or(6), f.abs()),
            ('f' | 'F', Val::Int(i)) => {
                let _ = write!(out, "%!f(int64={i})");
                continue;
            }
            ('e', Val::Float(f)) => go_exp(f.abs(), prec.unwrap_or(6)),
            ('g' | 'v', Val::Float(f)) => float_text(f.abs()),
            ('t' | 'v', Val::Bool(b)) => b.to_string(),
            ('v', Val::Int(i)) => i.abs().to_string(),
            ('s' | 'v', _) => {
                let s = v.to_text().map(Cow::into_owned).unwrap_or_default();
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            ('q', Val::Str(s)) => format!("{s:?}"),
            ('x', Val::Str(s)) => hex::encode(s.as_bytes()),
            ('X', Val::Str(s)) => hex::encode_upper(s.as_bytes()),
            _ => {
                let _ = write!(
                    out,
                    "%!{verb}({}={})",
                    v.type_name(),
                    v.to_text().unwrap_or_default()
                );
                continue;
            }
        };
        let negative = match &v {
            Val::Int(i) => *i < 0 && verb != 's',
            Val::Float(f) => *f < 0.0 && verb != 's',
            _ => false,
        };
        let sign = if negative {
            "-"
        } else if flags.contains('+') && matches!(v, Val::Int(_) | Val::Float(_)) {
            "+"
        } else if flags.contains(' ') && matches!(v, Val::Int(_) | Val::Float(_)) {
            " "
        } else {
            ""
        };
        // Widths and precisions are capped: a format string must not ask for gigabytes.
        let width: usize = width.parse::<usize>().unwrap_or(0).min(MAX_FORMAT_WIDTH);
        let len = sign.len() + body.chars().count();
        let pad = width.saturating_sub(len);
        if flags.contains('-') {
            out.push_str(sign);
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if flags.contains('0') && matches!(v, Val::Int(_) | Val::Float(_)) {
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(&body);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(sign);
            out.push_str(&body);
        }
    }
    out
}

fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{f:.prec$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn extract_patterns<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let Compiled::Typed(re, names) = &a.call.compiled else {
        return a.err("the pattern must be a literal string");
    };
    let s = a.str(0)?;
    let mut out = Vec::new();
    if let Some(caps) = re.captures(&s) {
        for (name, ty) in names {
            let Some(m) = caps.name(name) else { continue };
            let text = m.as_str();
            let value = match ty {
                CaptureType::Str => any_value::Value::StringValue(text.to_string()),
                CaptureType::Int => match text.parse::<i64>() {
                    Ok(i) => any_value::Value::IntValue(i),
                    Err(_) => any_value::Value::StringValue(text.to_string()),
                },
                CaptureType::Float => match text.parse::<f64>() {
                    Ok(f) => any_value::Value::DoubleValue(f),
                    Err(_) => any_value::Value::StringValue(text.to_string()),
                },
                CaptureType::Bool => match text {
                    "true" => any_value::Value::BoolValue(true),
                    "false" => any_value::Value::BoolValue(false),
                    _ => any_value::Value::StringValue(text.to_string()),
                },
            };
            out.push(KeyValue {
                key: name.clone(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
        }
    }
    Ok(Val::Map(Cow::Owned(out)))
}

fn compile_grok(c: &mut Call) -> Result<(), CompileError> {
    let pattern = c
        .lit_str(1)
        .ok_or((1, "the pattern must be a literal string".to_string()))?
        .to_string();
    let named_only = match c.args.get(2) {
        Some(Some(Value::Lit(Literal::Bool(b)))) => *b,
        None | Some(None) => false,
        _ => return Err((2, "namedCapturesOnly must be a literal bool".into())),
    };
    let defs = if c.has(3) {
        c.lit_strs(3).ok_or((
            3,
            "patternDefinitions must be a list of literal strings".to_string(),
        ))?
    } else {
        Vec::new()
    };
    let (re_text, names) = super::grok::expand(&pattern, &defs, named_only).map_err(|e| (1, e))?;
    let re = regex::Regex::new(&re_text)
        .map_err(|e| (1, format!("invalid pattern after grok expansion: {e}")))?;
    if named_only && names.is_empty() {
        return Err((1, "the pattern has no named capture".into()));
    }
    c.compiled = Compiled::Typed(re, names);
    Ok(())
}

fn parse_csv<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let target = a.str(0)?;
    let headers = a.str(1)?;
    let delim = a
        .opt_str(2)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| ",".into());
    let hdelim = a
        .opt_str(3)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| delim.clone());
    let mode = a
        .opt_str(4)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| "strict".into());
    let (Some(d), Some(hd)) = (single_char(&delim), single_char(&hdelim)) else {
        return a.err("the delimiters must be one character");
    };
    let split = |s: &str, d: char| -> Result<Vec<String>, String> {
        match mode.as_str() {
            "ignoreQuotes" => Ok(s.split(d).map(str::to_string).collect()),
            "strict" => csv_fields(s, d, false),
            "lazyQuotes" => csv_fields(s, d, true),
            other => Err(format!("unknown mode {other:?}")),
        }
    };
    let names = split(&headers, hd).or_else(|e| a.err(e))?;
    let values = split(target.trim_matches(['\n', '\r']), d).or_else(|e| a.err(e))?;
    if names.len() != values.len() {
        return a.err(format_args!(
            "{} headers but {} fields",
            names.len(),
            values.len()
        ));
    }
    Ok(Val::Map(Cow::Owned(
        names
            .into_iter()
            .zip(values)
            .map(|(k, v)| KeyValue {
                key: k,
                value: Some(any_str(v)),
                ..Default::default()
            })
            .collect(),
    )))
}

fn single_char(s: &str) -> Option<char> {
    let mut it = s.chars();
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

/// One CSV row (RFC 4180 quoting); `lazy` lets a quote appear inside an unquoted field.
fn csv_fields(s: &str, d: char, lazy: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                    if let Some(&n) = chars.peek()
                        && n != d
                        && !lazy
                    {
                        return Err(format!("extraneous {n:?} after a closing quote"));
                    }
                }
            } else {
                field.push(c);
            }
            continue;
        }
        if c == d {
            out.push(std::mem::take(&mut field));
            at_start = true;
            continue;
        }
        if c == '"' && at_start {
            quoted = true;
            at_start = false;
            continue;
        }
        if c == '"' && !lazy {
            return Err("a bare quote in an unquoted field".into());
        }
        at_start = false;
        field.push(c);
    }
    if quoted {
        return Err("an unterminated quoted field".into());
    }
    out.push(field);
    Ok(out)
}

fn parse_key_value<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let s = a.str(0)?;
    let delim = a
        .opt_str(1)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| "=".into());
    let pair = a
        .opt_str(2)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| " ".into());
    if s.is_empty() {
        return a.err("cannot parse an empty string");
    }
    if delim == pair {
        return a.err("delimiter and pair_delimiter cannot be the same");
    }
    let mut out: Vec<KeyValue> = Vec::new();
    for p in split_quoted(&s, &pair) {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let Some((k, v)) = p.split_once(delim.as_str()) else {
            return a.err(format_args!("cannot split {p:?} into a key and a value"));
        };
        let key = unquote(k.trim()).to_string();
        let val = any_str(unquote(v.trim()).to_string());
        // A key seen again collects its values into a slice, as the Collector does.
        match out.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => {
                use any_value::Value as V;
                let old = kv.value.take().unwrap_or_default();
                let mut values = match old.value {
                    Some(V::ArrayValue(arr)) => arr.values,
                    _ => vec![old],
                };
                values.push(val);
                kv.value = Some(AnyValue {
                    value: Some(V::ArrayValue(
                        opentelemetry_proto::tonic::common::v1::ArrayValue { values },
                    )),
                });
            }
            None => out.push(KeyValue {
                key,
                value: Some(val),
                ..Default::default()
            }),
        }
    }
    Ok(Val::Map(Cow::Owned(out)))
}

/// Splits on `sep` outside double or single quotes.
fn split_quoted<'s>(s: &'s str, sep: &str) -> Vec<&'s str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().expect("in bounds");
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if s[i..].starts_with(sep) => {
                out.push(&s[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
            None => {}
        }
        i += c.len_utf8();
    }
    out.push(&s[start..]);
    out
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

fn to_key_value_string<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let m = a.map(0)?;
    let delim = a
        .opt_str(1)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| "=".into());
    let pair = a
        .opt_str(2)?
        .map(Cow::into_owned)
        .unwrap_or_else(|| " ".into());
    let sorted = a.opt_bool(3)?.unwrap_or(false);
    let mut kvs: Vec<&KeyValue> = m.iter().collect();
    if sorted {
        kvs.sort_by(|x, y| x.key.cmp(&y.key));
    }
    let quote = |s: &str| {
        if s.contains(delim.as_str()) || s.contains(pair.as_str()) {
            format!("\"{}\"", s.replace('"', "\\\""))
        } else {
            s.to_string()
        }
    };
    let parts: Vec<String> = kvs
        .iter()
        .map(|kv| {
            let v = Val::from_any(kv.value.as_ref())
                .to_text()
                .map(Cow::into_owned)
                .unwrap_or_default();
            format!("{}{delim}{}", quote(&kv.key), quote(&v))
        })
        .collect();
    Ok(Val::string(parts.join(&pair)))
}

fn slice_to_map<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let key_path = a.take(1);
    let value_path = a.take(2);
    let l = a.list(0)?;
    let path_of = |v: &Val<'_>| -> Result<Option<Vec<String>>, EvalError> {
        match v {
            Val::Nil => Ok(None),
            Val::List(items) => items
                .iter()
                .map(|i| match Val::from_any(Some(i)) {
                    Val::Str(s) => Ok(s.into_owned()),
                    _ => Err(EvalError("SliceToMap: paths are lists of strings".into())),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            other => Err(EvalError(format!(
                "SliceToMap: a path must be a list of strings, got {}",
                other.type_name()
            ))),
        }
    };
    let kp = path_of(&key_path)?;
    let vp = path_of(&value_path)?;
    let dig = |item: &AnyValue, path: &[String]| -> Option<AnyValue> {
        let mut cur = item.clone();
        for k in path {
            match cur.value {
                Some(any_value::Value::KvlistValue(kv)) => {
                    cur = kv.values.into_iter().find(|x| &x.key == k)?.value?;
                }
                _ => return None,
            }
        }
        Some(cur)
    };
    let mut out = Vec::with_capacity(l.len());
    for (i, item) in l.iter().enumerate() {
        if !matches!(item.value, Some(any_value::Value::KvlistValue(_))) {
            return Err(EvalError("SliceToMap: the slice must hold maps".into()));
        }
        let key = match &kp {
            None => i.to_string(),
            Some(p) => match dig(item, p).and_then(|v| v.value) {
                Some(any_value::Value::StringValue(s)) => s,
                _ => {
                    return Err(EvalError(format!(
                        "SliceToMap: item {i} has no string at the key path"
                    )));
                }
            },
        };
        let value = match &vp {
            None => item.clone(),
            Some(p) => match dig(item, p) {
                Some(v) => v,
                None => {
                    return Err(EvalError(format!(
                        "SliceToMap: item {i} has nothing at the value path"
                    )));
                }
            },
        };
        out.push(KeyValue {
            key,
            value: Some(value),
            ..Default::default()
        });
    }
    Ok(Val::Map(Cow::Owned(out)))
}

fn sort<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let order = a.opt_str(1)?;
    let desc = match order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return a.err(format_args!("order must be asc or desc, not {o:?}")),
    };
    let l = a.list(0)?;
    let mut items: Vec<AnyValue> = l.into_owned();
    use any_value::Value as V;
    let all = |f: fn(&Option<V>) -> bool| items.iter().all(|i| f(&i.value));
    if all(|v| matches!(v, Some(V::IntValue(_)))) {
        items.sort_by_key(|i| match i.value {
            Some(V::IntValue(x)) => x,
            _ => 0,
        });
    } else if all(|v| matches!(v, Some(V::IntValue(_) | V::DoubleValue(_)))) {
        let num = |i: &AnyValue| match i.value {
            Some(V::IntValue(x)) => x as f64,
            Some(V::DoubleValue(x)) => x,
            _ => 0.0,
        };
        items.sort_by(|x, y| num(x).total_cmp(&num(y)));
    } else if all(|v| {
        matches!(
            v,
            Some(V::IntValue(_) | V::DoubleValue(_) | V::StringValue(_) | V::BoolValue(_))
        )
    }) {
        let text = |i: &AnyValue| {
            Val::from_any(Some(i))
                .to_text()
                .map(Cow::into_owned)
                .unwrap_or_default()
        };
        items.sort_by_key(text);
    } else {
        return a.err("can only sort ints, doubles, strings and bools");
    }
    if desc {
        items.reverse();
    }
    Ok(Val::List(Cow::Owned(items)))
}

fn parse_url<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    let s = a.str(0)?;
    let u = match url::Url::parse(&s) {
        Ok(u) => u,
        Err(e) => return a.err(format_args!("{s:?}: {e}")),
    };
    let mut out = Vec::new();
    let mut put = |k: &str, v: any_value::Value| {
        out.push(KeyValue {
            key: k.to_string(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        })
    };
    use any_value::Value as V;
    put("url.original", V::StringValue(s.to_string()));
    put("url.scheme", V::StringValue(u.scheme().to_string()));
    put(
        "url.domain",
        V::StringValue(u.host_str().unwrap_or("").to_string()),
    );
    // `http://host` has the path "" in Go's url package, `/` in the WHATWG parser.
    let path = if s
        .trim_end_matches('/')
        .ends_with(u.host_str().unwrap_or("\0"))
        && !s.ends_with('/')
    {
        String::new()
    } else {
        u.path().to_string()
    };
    if let Some(ext) = path
        .rsplit('/')
        .next()
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty())
    {
        put("url.extension", V::StringValue(ext.to_string()));
    }
    put("url.path", V::StringValue(path));
    if let Some(f) = u.fragment().filter(|f| !f.is_empty()) {
        put("url.fragment", V::StringValue(f.to_string()));
    }
    if let Some(q) = u.query().filter(|q| !q.is_empty()) {
        put("url.query", V::StringValue(q.to_string()));
    }
    // The WHATWG parser drops a port equal to the scheme's default; Go keeps what was written.
    if let Some(p) = u.port().or_else(|| explicit_port(&s)) {
        put("url.port", V::IntValue(p as i64));
    }
    if !u.username().is_empty() {
        put("url.username", V::StringValue(u.username().to_string()));
        let info = match u.password() {
            Some(p) => {
                put("url.password", V::StringValue(p.to_string()));
                format!("{}:{p}", u.username())
            }
            None => u.username().to_string(),
        };
        put("url.user_info", V::StringValue(info));
    }
    Ok(Val::Map(Cow::Owned(out)))
}

/// The port written in a URL's authority, if any (`http://h:80/` → 80).
fn explicit_port(s: &str) -> Option<u16> {
    let rest = s.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':')?;
    if host.starts_with('[') && !host.ends_with(']') {
        return None;
    }
    port.parse().ok()
}

/// `ParseSeverity(target, {"level": [{"equals": [...]}, {"range": {"min": a, "max": b}}
/// | {"range": "2xx"}], ...})`: the first level with a criterion the target meets.
fn parse_severity<'a>(a: &mut Args<'a, '_>) -> Result<Val<'a>, EvalError> {
    use any_value::Value as V;
    let mapping = a.map(1)?;
    let target = a.take(0);
    let number = match &target {
        Val::Int(i) => Some(*i),
        Val::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let text = match &target {
        Val::Str(s) => Some(s.as_ref()),
        _ => None,
    };
    if number.is_none() && text.is_none() {
        return a.err(format_args!(
            "the target must be a string or an int, got {}",
            target.type_name()
        ));
    }
    let field = |kvs: &[KeyValue], k: &str| -> Option<V> {
        kvs.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone()?.value)
    };
    let as_int = |v: Option<V>| match v {
        Some(V::IntValue(i)) => Some(i),
        Some(V::DoubleValue(d)) => Some(d as i64),
        _ => None,
    };
    for level in mapping.iter() {
        let Some(V::ArrayValue(criteria)) = level.value.clone().and_then(|v| v.value) else {
            return a.err(format_args!(
                "level {:?} must map to a list of criteria",
                level.key
            ));
        };
        for c in &criteria.values {
            let Some(V::KvlistValue(c)) = &c.value else {
                return a.err("each criterion is a map with `equals` or `range`");
            };
            if let (Some(V::ArrayValue(eq)), Some(t)) = (field(&c.values, "equals"), text)
                && eq
                    .values
                    .iter()
                    .any(|v| matches!(&v.value, Some(V::StringValue(s)) if s == t))
            {
                return Ok(Val::string(level.key.clone()));
            }
            let (lo, hi) = match field(&c.values, "range") {
                Some(V::KvlistValue(r)) => (
                    as_int(field(&r.values, "min")).unwrap_or(i64::MIN),
                    as_int(field(&r.values, "max")).unwrap_or(i64::MAX),
                ),
                Some(V::StringValue(p)) => match p.as_str() {
                    "2xx" => (200, 299),
                    "3xx" => (300, 399),
                    "4xx" => (400, 499),
                    "5xx" => (500, 599),
                    other => return a.err(format_args!("unknown range placeholder {other:?}")),
                },
                _ => continue,
            };
            if number.is_some_and(|n| (lo..=hi).contains(&n)) {
                return Ok(Val::string(level.key.clone()));
            }
        }
    }
    a.err("no severity level matches the target")
}
