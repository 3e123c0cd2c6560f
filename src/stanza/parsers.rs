//! The text parsers and field transformers beyond regex and JSON: `key_value_parser`,
//! `csv_parser`, `uri_parser`, `trace_parser`, `scope_name_parser`, `flatten`, `retain`,
//! `unquote`, `assign_keys`, `regex_replace`, each as stanza documents it.

use regex::Regex;

use super::entry::{Entry, Field, Map, Value, map_remove};

/// `key_value_parser`: `k=v k2="v 2"` into a map.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub delimiter: String,
    /// None: pairs are separated by whitespace.
    pub pair_delimiter: Option<String>,
}

impl KeyValue {
    pub fn parse(&self, text: &str) -> Result<Map, String> {
        let pairs = match &self.pair_delimiter {
            Some(d) => split_quoted(text, |rest| rest.starts_with(d.as_str()).then_some(d.len())),
            None => split_quoted(text, |rest| {
                let c = rest.chars().next()?;
                c.is_whitespace().then_some(c.len_utf8())
            }),
        };
        let mut out = Map::new();
        for raw in pairs {
            if raw.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = raw.split_once(self.delimiter.as_str()) else {
                return Err(format!(
                    "key_value_parser: cannot split {raw:?} into a key and a value by {:?}",
                    self.delimiter
                ));
            };
            let key = unquote_pair(k.trim());
            if key.is_empty() {
                return Err(format!("key_value_parser: {raw:?} has an empty key"));
            }
            super::entry::map_set(
                &mut out,
                key,
                Value::Str(unquote_pair(v.trim()).to_string()),
            );
        }
        Ok(out)
    }
}

/// One pair of `"` or `'` quotes around a key or value is dropped.
fn unquote_pair(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// Splits at each separator `sep` finds (it returns the separator's length), except inside
/// `"..."` or `'...'`.
fn split_quoted(text: &str, sep: impl Fn(&str) -> Option<usize>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next().unwrap_or(' ');
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {
                if let Some(n) = sep(rest).filter(|n| *n > 0) {
                    out.push(&text[start..i]);
                    i += n;
                    start = i;
                    continue;
                }
            }
        }
        i += c.len_utf8();
    }
    out.push(&text[start..]);
    out
}

/// `csv_parser`: one delimited line into a map keyed by the header.
#[derive(Debug, Clone)]
pub struct Csv {
    /// Fixed header fields; None: read from `header_attribute` per entry.
    pub header: Option<Vec<String>>,
    pub header_attribute: Option<String>,
    pub header_delimiter: char,
    pub delimiter: char,
    pub lazy_quotes: bool,
    pub ignore_quotes: bool,
}

impl Csv {
    pub fn parse(&self, e: &Entry, text: &str) -> Result<Map, String> {
        let dynamic;
        let header: &[String] = match (&self.header, &self.header_attribute) {
            (Some(h), _) => h,
            (None, Some(attr)) => {
                let h = super::entry::map_get(&e.attributes, attr)
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("csv_parser: the header attribute `{attr}` is missing or not text")
                    })?;
                dynamic = h
                    .split(self.header_delimiter)
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                &dynamic
            }
            (None, None) => return Err("csv_parser: no header".into()),
        };
        let fields = if self.ignore_quotes {
            text.split(self.delimiter).map(str::to_string).collect()
        } else {
            csv_fields(text, self.delimiter, self.lazy_quotes)?
        };
        if fields.len() != header.len() {
            return Err(format!(
                "csv_parser: wrong number of fields: expected {}, found {}",
                header.len(),
                fields.len()
            ));
        }
        Ok(header
            .iter()
            .cloned()
            .zip(fields.into_iter().map(Value::Str))
            .collect())
    }
}

/// RFC 4180 fields: `"..."` quoted with `""` for a quote; `lazy` lets a quote appear in an
/// unquoted field and a stray quote in a quoted one, as Go's `LazyQuotes`.
fn csv_fields(line: &str, delim: char, lazy: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => match chars.peek() {
                        None => break,
                        Some(c) if *c == delim => break,
                        Some(_) if lazy => field.push('"'),
                        Some(c) => {
                            return Err(format!(
                                "csv_parser: extraneous {c:?} after a quoted field"
                            ));
                        }
                    },
                    Some(c) => field.push(c),
                    None if lazy => break,
                    None => return Err("csv_parser: a quoted field is not closed".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == delim {
                    break;
                }
                if c == '"' && !lazy {
                    return Err("csv_parser: a bare `\"` in a field".into());
                }
                field.push(c);
                chars.next();
            }
        }
        out.push(field);
        match chars.next() {
            Some(c) if c == delim => continue,
            _ => break,
        }
    }
    Ok(out)
}

/// `uri_parser`: an absolute URI, an absolute path, or a bare `?query`, into `scheme`,
/// `user`, `host`, `port`, `path` and `query` (each key → its list of values); parts that are
/// not set are left out.
pub fn parse_uri(text: &str) -> Result<Map, String> {
    let mut out = Map::new();
    if let Some(q) = text.strip_prefix('?') {
        query_into(q, &mut out);
        return Ok(out);
    }
    let (parsed, relative) = if text.starts_with('/') {
        let base = url::Url::parse("http://h").map_err(|e| e.to_string())?;
        (base.join(text), true)
    } else {
        (url::Url::parse(text), false)
    };
    let u = parsed.map_err(|e| format!("uri_parser: {text:?}: {e}"))?;
    let s = |v: &str| Value::Str(v.to_string());
    if !relative {
        out.push(("scheme".into(), s(u.scheme())));
        if !u.username().is_empty() {
            out.push(("user".into(), s(u.username())));
        }
        if let Some(h) = u.host_str().filter(|h| !h.is_empty()) {
            out.push((
                "host".into(),
                s(h.trim_start_matches('[').trim_end_matches(']')),
            ));
        }
        if let Some(p) = u.port() {
            out.push(("port".into(), s(&p.to_string())));
        }
    }
    let path = u.path();
    // A URL library adds `/` to an empty path of `http://h`; the text had none.
    let had_path = relative || text.split_once("://").is_none_or(|(_, r)| r.contains('/'));
    if !path.is_empty() && had_path {
        out.push(("path".into(), s(path)));
    }
    if let Some(q) = u.query() {
        query_into(q, &mut out);
    }
    Ok(out)
}

fn query_into(q: &str, out: &mut Map) {
    let mut query: Map = Vec::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        match query.iter_mut().find(|(key, _)| *key == k) {
            Some((_, Value::Array(vals))) => vals.push(Value::Str(v.into_owned())),
            _ => query.push((
                k.into_owned(),
                Value::Array(vec![Value::Str(v.into_owned())]),
            )),
        }
    }
    if !query.is_empty() {
        out.push(("query".into(), Value::Map(query)));
    }
}

/// `trace_parser`: hex trace id, span id and flags from fields into the record's own fields.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: Field,
    pub span_id: Field,
    pub trace_flags: Field,
}

impl Trace {
    pub fn apply(&self, e: &mut Entry) -> Result<(), String> {
        let mut errs = Vec::new();
        if let Some(v) = self.trace_id.get(e).and_then(Value::to_text) {
            match hex_id(&v, 16) {
                Ok(b) => e.trace_id = b,
                Err(m) => errs.push(format!("trace_id: {m}")),
            }
        }
        if let Some(v) = self.span_id.get(e).and_then(Value::to_text) {
            match hex_id(&v, 8) {
                Ok(b) => e.span_id = b,
                Err(m) => errs.push(format!("span_id: {m}")),
            }
        }
        if let Some(v) = self.trace_flags.get(e).and_then(Value::to_text) {
            match hex_id(&v, 1) {
                Ok(b) => e.trace_flags = b[0] as u32,
                Err(m) => errs.push(format!("trace_flags: {m}")),
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("trace_parser: {}", errs.join("; ")))
        }
    }
}

/// Hex of exactly `n` bytes (an id shorter than that is left-padded with zeros, as stanza
/// pads a 64-bit trace id).
fn hex_id(s: &str, n: usize) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if s.len() > 2 * n {
        return Err(format!("{s:?} is longer than {n} bytes"));
    }
    let padded = format!("{s:0>width$}", width = 2 * n);
    hex::decode(&padded).map_err(|e| format!("{s:?} is not hex: {e}"))
}

/// `flatten`: the children of a body map move up one level, replacing the map.
pub fn flatten(e: &mut Entry, field: &Field) -> Result<(), String> {
    let Field::Body(path) = field else {
        return Err("flatten: only body fields can be flattened".into());
    };
    let Some((last, parent)) = path.split_last() else {
        return Err("flatten: name a field inside the body".into());
    };
    let Value::Map(body) = &mut e.body else {
        return Err("flatten: the body is not a map".into());
    };
    let mut m = body;
    for k in parent {
        match m.iter_mut().find(|(key, _)| key == k) {
            Some((_, Value::Map(inner))) => m = inner,
            _ => return Err(format!("flatten: `{k}` is not a map")),
        }
    }
    match map_remove(m, last) {
        Some(Value::Map(children)) => {
            for (k, v) in children {
                super::entry::map_set(m, &k, v);
            }
            Ok(())
        }
        Some(other) => {
            m.push((last.clone(), other));
            Err(format!("flatten: `{last}` is not a map"))
        }
        None => Err(format!("flatten: `{last}` is missing")),
    }
}

/// `retain`: within each of body, attributes and resource that a listed field names, only the
/// listed fields stay; the others are untouched.
pub fn retain(e: &mut Entry, fields: &[Field]) {
    let mut body = Vec::new();
    let mut attrs = Vec::new();
    let mut res = Vec::new();
    for f in fields {
        match f {
            Field::Body(p) => body.push(p.clone()),
            Field::Attributes(p) => attrs.push(p.clone()),
            Field::Resource(p) => res.push(p.clone()),
        }
    }
    // The named fields move to a fresh map, which replaces the old one.
    let keep = |m: &mut Map, paths: &[Vec<String>]| {
        if paths.is_empty() {
            return;
        }
        let mut kept = Map::new();
        for p in paths {
            if let Some(v) = super::entry::remove_in(m, p) {
                super::entry::set_in(&mut kept, p, v);
            }
        }
        *m = kept;
    };
    keep(&mut e.attributes, &attrs);
    keep(&mut e.resource, &res);
    if !body.is_empty() {
        if body.iter().any(Vec::is_empty) {
            return;
        }
        if let Value::Map(m) = &mut e.body {
            keep(m, &body);
        }
    }
}

/// `unquote`: a string wrapped in `"`, `'` or `` ` `` loses its quotes; `"..."` and `'...'`
/// also have their escapes read (Go's `strconv.Unquote`).
pub fn unquote(s: &str) -> Result<String, String> {
    let err = || format!("unquote: {s:?} is not a quoted string");
    let q = s.chars().next().ok_or_else(err)?;
    if s.len() < 2 || !matches!(q, '"' | '\'' | '`') || !s.ends_with(q) {
        return Err(err());
    }
    let inner = &s[1..s.len() - 1];
    if q == '`' {
        return if inner.contains('`') {
            Err(err())
        } else {
            Ok(inner.to_string())
        };
    }
    let mut out = String::with_capacity(inner.len());
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c == q {
            return Err(err());
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next().ok_or_else(err)?;
        let hex = |it: &mut std::str::Chars, n: usize| -> Result<char, String> {
            let h: String = it.by_ref().take(n).collect();
            u32::from_str_radix(&h, 16)
                .ok()
                .and_then(char::from_u32)
                .filter(|_| h.len() == n)
                .ok_or_else(err)
        };
        out.push(match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            '\\' => '\\',
            '\'' | '"' => e,
            'x' => hex(&mut it, 2)?,
            'u' => hex(&mut it, 4)?,
            'U' => hex(&mut it, 8)?,
            _ => return Err(err()),
        });
    }
    if q == '\'' && out.chars().count() != 1 {
        // Go reads a single-quoted text as one character.
        return Err(err());
    }
    Ok(out)
}

/// `assign_keys`: a list becomes a map with these keys, in order.
pub fn assign_keys(v: Value, keys: &[String]) -> Result<Value, (Value, String)> {
    match v {
        Value::Array(items) if items.len() == keys.len() => {
            Ok(Value::Map(keys.iter().cloned().zip(items).collect()))
        }
        Value::Array(items) => {
            let n = items.len();
            Err((
                Value::Array(items),
                format!("assign_keys: {} keys for a list of {n} values", keys.len()),
            ))
        }
        other => Err((other, "assign_keys: the field is not a list".into())),
    }
}

/// `regex_replace`'s named expressions.
pub fn named_regex(name: &str) -> Option<&'static str> {
    match name {
        // ECMA-48 CSI sequences (colours, cursor movement) as terminals write them.
        "ansi_control_sequences" => Some(r"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"),
        _ => None,
    }
}

/// `regex_replace` on a string field.
pub fn regex_replace(e: &mut Entry, field: &Field, re: &Regex, with: &str) -> Result<(), String> {
    let Some(v) = field.get(e) else {
        return Err("regex_replace: the field is missing".into());
    };
    let Value::Str(s) = v else {
        return Err("regex_replace: the field is not a string".into());
    };
    if let std::borrow::Cow::Owned(r) = re.replace_all(s, with) {
        field.set(e, Value::Str(r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn key_value_pairs_quotes_and_delimiters() {
        let kv = KeyValue {
            delimiter: "=".into(),
            pair_delimiter: None,
        };
        assert_eq!(
            kv.parse(r#"name=stanza  msg="a b=c" 'k q'='v'"#).unwrap(),
            vec![
                ("name".into(), s("stanza")),
                ("msg".into(), s("a b=c")),
                ("k q".into(), s("v")),
            ]
        );
        assert!(kv.parse("a=1 broken").unwrap_err().contains("\"broken\""));
        let kv = KeyValue {
            delimiter: ":".into(),
            pair_delimiter: Some("!".into()),
        };
        assert_eq!(
            kv.parse("a:1!b: two ").unwrap(),
            vec![("a".into(), s("1")), ("b".into(), s("two"))]
        );
    }

    #[test]
    fn csv_fields_quotes_and_counts() {
        let c = Csv {
            header: Some(vec!["id".into(), "sev".into(), "msg".into()]),
            header_attribute: None,
            header_delimiter: ',',
            delimiter: ',',
            lazy_quotes: false,
            ignore_quotes: false,
        };
        let e = Entry::default();
        assert_eq!(
            c.parse(&e, r#"1,INFO,"hello, ""world""""#).unwrap(),
            vec![
                ("id".into(), s("1")),
                ("sev".into(), s("INFO")),
                ("msg".into(), s(r#"hello, "world""#)),
            ]
        );
        assert!(
            c.parse(&e, "1,2")
                .unwrap_err()
                .contains("wrong number of fields: expected 3, found 2")
        );
        assert!(c.parse(&e, r#"1,a"b,c"#).is_err());
        let lazy = Csv {
            lazy_quotes: true,
            ..c.clone()
        };
        assert_eq!(lazy.parse(&e, r#"1,a"b,c"#).unwrap()[1].1, s(r#"a"b"#));
        let dynamic = Csv {
            header: None,
            header_attribute: Some("hdr".into()),
            header_delimiter: '|',
            delimiter: '\t',
            ..c
        };
        let mut e = Entry::default();
        e.attributes.push(("hdr".into(), s("a|b")));
        assert_eq!(
            dynamic.parse(&e, "x\ty").unwrap(),
            vec![("a".into(), s("x")), ("b".into(), s("y"))]
        );
    }

    #[test]
    fn uris_absolute_relative_and_query_only() {
        let q = |pairs: &[(&str, &[&str])]| {
            Value::Map(
                pairs
                    .iter()
                    .map(|(k, vs)| {
                        (
                            k.to_string(),
                            Value::Array(vs.iter().map(|v| s(v)).collect()),
                        )
                    })
                    .collect(),
            )
        };
        assert_eq!(
            parse_uri("https://dev:pass@google.com:8443/app?user_id=2&token=001&token=002")
                .unwrap(),
            vec![
                ("scheme".into(), s("https")),
                ("user".into(), s("dev")),
                ("host".into(), s("google.com")),
                ("port".into(), s("8443")),
                ("path".into(), s("/app")),
                (
                    "query".into(),
                    q(&[("user_id", &["2"]), ("token", &["001", "002"])])
                ),
            ]
        );
        assert_eq!(
            parse_uri("/app/x?a=b%20c").unwrap(),
            vec![
                ("path".into(), s("/app/x")),
                ("query".into(), q(&[("a", &["b c"])]))
            ]
        );
        assert_eq!(
            parse_uri("?a=1").unwrap(),
            vec![("query".into(), q(&[("a", &["1"])]))]
        );
        assert_eq!(
            parse_uri("http://h").unwrap(),
            vec![("scheme".into(), s("http")), ("host".into(), s("h"))]
        );
        assert!(parse_uri("not a uri").is_err());
    }

    #[test]
    fn trace_ids_are_hex_of_their_length() {
        let t = Trace {
            trace_id: Field::parse("attributes.trace_id").unwrap(),
            span_id: Field::parse("attributes.span_id").unwrap(),
            trace_flags: Field::parse("attributes.trace_flags").unwrap(),
        };
        let mut e = Entry {
            attributes: vec![
                ("trace_id".into(), s("480140f3d770a5ae32f0a22b6a812cff")),
                ("span_id".into(), s("92c3792d54ba94f3")),
                ("trace_flags".into(), s("01")),
            ],
            ..Default::default()
        };
        t.apply(&mut e).unwrap();
        assert_eq!(hex::encode(&e.trace_id), "480140f3d770a5ae32f0a22b6a812cff");
        assert_eq!(hex::encode(&e.span_id), "92c3792d54ba94f3");
        assert_eq!(e.trace_flags, 1);
        // A 64-bit trace id is padded to 128 bits.
        e.attributes[0].1 = s("32f0a22b6a812cff");
        t.apply(&mut e).unwrap();
        assert_eq!(hex::encode(&e.trace_id), "000000000000000032f0a22b6a812cff");
        e.attributes[1].1 = s("zz");
        assert!(t.apply(&mut e).unwrap_err().contains("span_id"));
    }

    #[test]
    fn flatten_retain_unquote_assign_keys_regex_replace() {
        let mut e = Entry {
            body: Value::Map(vec![
                ("key1".into(), s("v1")),
                (
                    "wrapper".into(),
                    Value::Map(vec![("key2".into(), s("v2")), ("key3".into(), s("v3"))]),
                ),
            ]),
            ..Default::default()
        };
        flatten(&mut e, &Field::parse("body.wrapper").unwrap()).unwrap();
        assert_eq!(
            e.body,
            Value::Map(vec![
                ("key1".into(), s("v1")),
                ("key2".into(), s("v2")),
                ("key3".into(), s("v3")),
            ])
        );
        assert!(flatten(&mut e, &Field::parse("body.key1").unwrap()).is_err());
        assert!(flatten(&mut e, &Field::parse("attributes.x").unwrap()).is_err());

        e.attributes = vec![("a".into(), s("1")), ("b".into(), s("2"))];
        e.resource = vec![("r".into(), s("3"))];
        retain(
            &mut e,
            &[
                Field::parse("body.key2").unwrap(),
                Field::parse("attributes.b").unwrap(),
            ],
        );
        assert_eq!(e.body, Value::Map(vec![("key2".into(), s("v2"))]));
        assert_eq!(e.attributes, vec![("b".into(), s("2"))]);
        assert_eq!(
            e.resource,
            vec![("r".into(), s("3"))],
            "resource not named: kept"
        );

        assert_eq!(unquote(r#""a\tb\"c""#).unwrap(), "a\tb\"c");
        assert_eq!(unquote("`raw \\n`").unwrap(), "raw \\n");
        assert_eq!(unquote("'x'").unwrap(), "x");
        assert!(unquote("'xy'").is_err());
        assert!(unquote("plain").is_err());

        let keys = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            assign_keys(Value::Array(vec![s("1"), Value::Int(2)]), &keys).unwrap(),
            Value::Map(vec![("a".into(), s("1")), ("b".into(), Value::Int(2))])
        );
        assert!(assign_keys(Value::Array(vec![s("1")]), &keys).is_err());

        let re = Regex::new(named_regex("ansi_control_sequences").unwrap()).unwrap();
        let mut e = Entry::new("\x1b[31mred\x1b[0m and \x1b[1;32mgreen\x1b[0m".into(), 0);
        regex_replace(&mut e, &Field::Body(vec![]), &re, "").unwrap();
        assert_eq!(e.body, s("red and green"));
    }
}
