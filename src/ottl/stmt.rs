//! OTTL editors and statements: `set`, `delete_key`, `replace_pattern`, ... each a row of
//! [`EDITORS`] (with the transform processor's metric functions from [`super::metric_funcs`]),
//! and running a parsed [`Statement`] against a writable item.

use std::borrow::Cow;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::ast::{
    Call, CompileError, Compiled, Context, Literal, Statement, Value, func, opt, req, target,
};
use super::eval;
use super::funcs;
use super::metric_funcs;
use super::mutate::{CtxMut, Edit, EditorDef, Slot, editor, set_path, slot, with_map};
use super::val::{EvalError, Val};

/// The id of editor `name`: its index in [`EDITORS`], then in the metric functions' table.
pub fn find_editor(name: &str) -> Option<usize> {
    EDITORS
        .iter()
        .chain(metric_funcs::EDITORS)
        .position(|d| d.name == name)
}

/// The editor with an id [`find_editor`] gave.
pub fn editor_def(id: usize) -> &'static EditorDef {
    EDITORS
        .get(id)
        .unwrap_or_else(|| &metric_funcs::EDITORS[id - EDITORS.len()])
}

impl Statement {
    /// Runs the statement on one item: the editor when the `where` condition holds. Returns
    /// whether it ran.
    pub fn exec(&self, ctx: &mut dyn CtxMut) -> Result<bool, EvalError> {
        if let Some(c) = &self.condition
            && !eval::eval(c, &*ctx)?
        {
            return Ok(false);
        }
        let mut edit = Edit {
            call: &self.editor,
            ctx,
        };
        (editor_def(self.editor.id).run)(&mut edit)?;
        Ok(true)
    }
}

/// The editors of the OTTL function list. The README's function table is checked against it.
pub static EDITORS: &[EditorDef] = &[
    editor!(
        "append",
        [target("target"), opt("value"), opt("values")],
        |e| {
            let current = eval::path(e.target(0), &*e.ctx).into_owned();
            let mut items: Vec<AnyValue> = match current {
                Val::Nil => Vec::new(),
                Val::List(l) => l.into_owned(),
                other => vec![other.into_any()?.unwrap_or_default()],
            };
            if let Some(v) = e.arg(1)?.into_any()? {
                items.push(v);
            }
            match e.arg(2)? {
                Val::Nil => {}
                Val::List(l) => items.extend(l.into_owned()),
                other => {
                    return e.err(format_args!(
                        "values must be a slice, got {}",
                        other.type_name()
                    ));
                }
            }
            set_path(e.ctx, target_of(e.call, 0), Val::List(Cow::Owned(items)))
        }
    ),
    editor!(
        "delete_index",
        [target("target"), req("startIndex"), opt("endIndex")],
        |e| {
            let start = e.int(1)?;
            let end = e.opt_int(2)?;
            let Val::List(l) = eval::path(e.target(0), &*e.ctx).into_owned() else {
                return e.err("the target is not a slice");
            };
            let len = l.len() as i64;
            let end = end.unwrap_or(start.saturating_add(1));
            if start < 0 || start > len || end < start || end > len {
                return e.err(format_args!(
                    "indexes {start}..{end} are out of range of a slice of {len}"
                ));
            }
            if start == end {
                return Ok(());
            }
            let mut items = l.into_owned();
            items.drain(start as usize..end as usize);
            set_path(e.ctx, target_of(e.call, 0), Val::List(Cow::Owned(items)))
        }
    ),
    editor!("delete_key", [target("target"), req("key")], |e| {
        let key = e.str(1)?;
        with_map(e.ctx, target_of(e.call, 0), |m| {
            if let Some(i) = m.iter().position(|kv| kv.key == key) {
                m.remove(i);
            }
        })?;
        Ok(())
    }),
    editor!(
        "delete_matching_keys",
        [target("target"), req("pattern")],
        |e| {
            let Compiled::Regex(re) = &e.call.compiled else {
                return e.err("the pattern must be a literal string");
            };
            with_map(e.ctx, target_of(e.call, 0), |m| {
                m.retain(|kv| !re.is_match(&kv.key))
            })?;
            Ok(())
        },
        regex_at_1
    ),
    editor!(
        "flatten",
        [
            target("target"),
            opt("prefix"),
            opt("depth"),
            opt("resolveConflicts")
        ],
        |e| {
            let prefix = e.opt_str(1)?;
            let depth = e.opt_int(2)?;
            if depth.is_some_and(|d| d < 0) {
                return e.err("depth must be non-negative");
            }
            let resolve = e.opt_bool(3)?.unwrap_or(false);
            with_map(e.ctx, target_of(e.call, 0), |m| {
                let src = std::mem::take(m);
                let mut out = Vec::with_capacity(src.len());
                flatten_into(
                    &mut out,
                    src,
                    prefix.as_deref().unwrap_or(""),
                    depth.map_or(usize::MAX, |d| d as usize),
                    resolve,
                );
                *m = out;
            })?;
            Ok(())
        }
    ),
    editor!(
        "keep_keys",
        [target("target"), req("keys")],
        |e| {
            let keys: Cow<'_, [String]> = match &e.call.compiled {
                Compiled::Strings(k) => Cow::Borrowed(k),
                _ => Cow::Owned(string_list(e, 1)?),
            };
            with_map(e.ctx, target_of(e.call, 0), |m| {
                m.retain(|kv| keys.contains(&kv.key))
            })?;
            Ok(())
        },
        strings_at_1
    ),
    editor!(
        "keep_matching_keys",
        [target("target"), req("pattern")],
        |e| {
            let Compiled::Regex(re) = &e.call.compiled else {
                return e.err("the pattern must be a literal string");
            };
            with_map(e.ctx, target_of(e.call, 0), |m| {
                m.retain(|kv| re.is_match(&kv.key))
            })?;
            Ok(())
        },
        regex_at_1
    ),
    editor!(
        "limit",
        [target("target"), req("limit"), opt("priority_keys")],
        |e| {
            let limit = e.int(1)?;
            if limit < 0 {
                return e.err("limit must be non-negative");
            }
            let priority: Vec<String> = match &e.call.compiled {
                Compiled::Strings(k) => k.clone(),
                _ if e.has(2) => string_list(e, 2)?,
                _ => Vec::new(),
            };
            let limit = limit as usize;
            with_map(e.ctx, target_of(e.call, 0), |m| {
                if m.len() <= limit {
                    return;
                }
                // Priority keys first, then the others in order, until the limit.
                let mut kept = 0;
                let mut keep = vec![false; m.len()];
                for (i, kv) in m.iter().enumerate() {
                    if kept < limit && priority.contains(&kv.key) {
                        keep[i] = true;
                        kept += 1;
                    }
                }
                for k in keep.iter_mut() {
                    if kept < limit && !*k {
                        *k = true;
                        kept += 1;
                    }
                }
                let mut it = keep.iter();
                m.retain(|_| *it.next().unwrap_or(&false));
            })?;
            Ok(())
        },
        |c| {
            if let Some(Some(Value::Lit(Literal::Int(n)))) = c.args.get(1) {
                if *n < 0 {
                    return Err((1, "limit must be non-negative".into()));
                }
                if let Some(keys) = c.lit_strs(2) {
                    if keys.len() as i64 >= *n && *n > 0 {
                        return Err((2, "there must be fewer priority keys than the limit".into()));
                    }
                    c.compiled = Compiled::Strings(keys);
                }
            }
            Ok(())
        }
    ),
    editor!(
        "merge_maps",
        [target("target"), req("source"), req("strategy")],
        |e| {
            let strategy = e.str(2)?;
            let source = match e.arg(1)? {
                Val::Map(m) => m.into_owned(),
                Val::Nil => return Ok(()),
                other => {
                    return e.err(format_args!(
                        "source must be a map, got {}",
                        other.type_name()
                    ));
                }
            };
            let (insert, update) = match strategy.as_str() {
                "insert" => (true, false),
                "update" => (false, true),
                "upsert" => (true, true),
                other => return e.err(format_args!("unknown strategy {other:?}")),
            };
            with_map(e.ctx, target_of(e.call, 0), |m| {
                for kv in source {
                    match m.iter_mut().find(|t| t.key == kv.key) {
                        Some(t) if update => t.value = kv.value,
                        Some(_) => {}
                        None if insert => m.push(kv),
                        None => {}
                    }
                }
            })?;
            Ok(())
        },
        |c| match c.lit_str(2) {
            Some("insert" | "update" | "upsert") | None => Ok(()),
            Some(other) => Err((
                2,
                format!("strategy must be insert, update or upsert, not {other:?}")
            )),
        }
    ),
    editor!(
        "replace_all_matches",
        [
            target("target"),
            req("pattern"),
            req("replacement"),
            func("function"),
            opt("replacementFormat")
        ],
        |e| {
            let Compiled::Regex(glob) = &e.call.compiled else {
                return e.err("the pattern must be a literal string");
            };
            let replacement = replacement_of(e, 2, 3, 4)?;
            with_map(e.ctx, target_of(e.call, 0), |m| {
                for kv in m.iter_mut() {
                    if let Some(any_value::Value::StringValue(s)) =
                        kv.value.as_mut().and_then(|v| v.value.as_mut())
                        && glob.is_match(s)
                    {
                        *s = replacement.clone();
                    }
                }
            })?;
            Ok(())
        },
        glob_at_1
    ),
    editor!(
        "replace_all_patterns",
        [
            target("target"),
            req("mode"),
            req("regex"),
            req("replacement"),
            func("function"),
            opt("replacementFormat")
        ],
        |e| {
            let Compiled::Regex(re) = &e.call.compiled else {
                return e.err("the regex must be a literal string");
            };
            let mode = e.str(1)?;
            let template = literal_or(e, 3)?;
            let (f, format) = (e.func(4), e.opt_str(5)?);
            let mut failure = None;
            with_map(e.ctx, target_of(e.call, 0), |m| {
                for kv in m.iter_mut() {
                    let text = match mode.as_str() {
                        "key" => &mut kv.key,
                        _ => match kv.value.as_mut().and_then(|v| v.value.as_mut()) {
                            Some(any_value::Value::StringValue(s)) => s,
                            _ => continue,
                        },
                    };
                    match replace_regex(re, text, &template, f, format.as_deref()) {
                        Ok(Some(new)) => *text = new,
                        Ok(None) => {}
                        Err(err) => failure = Some(err),
                    }
                }
            })?;
            failure.map_or(Ok(()), Err)
        },
        |c| {
            match c.lit_str(1) {
                Some("key" | "value") => {}
                _ => return Err((1, "mode must be \"key\" or \"value\"".into())),
            }
            let p = c
                .lit_str(2)
                .ok_or((2, "the regex must be a literal string".to_string()))?;
            let re = regex::Regex::new(p)
                .map_err(|e| (2, format!("invalid regular expression: {e}")))?;
            check_format(c, 5)?;
            c.compiled = Compiled::Regex(re);
            Ok(())
        }
    ),
    editor!(
        "replace_match",
        [
            target("target"),
            req("pattern"),
            req("replacement"),
            func("function"),
            opt("replacementFormat")
        ],
        |e| {
            let Compiled::Regex(glob) = &e.call.compiled else {
                return e.err("the pattern must be a literal string");
            };
            let Some(current) = e.target_str(0) else {
                return Ok(());
            };
            if !glob.is_match(&current) {
                return Ok(());
            }
            let replacement = replacement_of(e, 2, 3, 4)?;
            set_path(e.ctx, target_of(e.call, 0), Val::string(replacement))
        },
        glob_at_1
    ),
    editor!(
        "replace_pattern",
        [
            target("target"),
            req("regex"),
            req("replacement"),
            func("function"),
            opt("replacementFormat")
        ],
        |e| {
            let Compiled::Regex(re) = &e.call.compiled else {
                return e.err("the regex must be a literal string");
            };
            let template = literal_or(e, 2)?;
            let format = e.opt_str(4)?;
            let f = e.func(3);
            let target = target_of(e.call, 0);
            // A string inside a map (an attribute) is replaced where it lies.
            if !target.keys.is_empty() {
                if let Some(Slot::Any(v)) = slot(e.ctx, target, false)?
                    && let Some(any_value::Value::StringValue(s)) = &mut v.value
                {
                    if f.is_none() && replace_once_in_place(re, s, &template) {
                        return Ok(());
                    }
                    if let Some(new) = replace_regex(re, s, &template, f, format.as_deref())? {
                        *s = new;
                    }
                }
                return Ok(());
            }
            let Some(current) = e.target_str(0) else {
                return Ok(());
            };
            match replace_regex(re, &current, &template, f, format.as_deref())? {
                Some(new) => set_path(e.ctx, target, Val::string(new)),
                None => Ok(()),
            }
        },
        |c| {
            let re = literal_regex(c, 1)?;
            check_format(c, 4)?;
            c.compiled = Compiled::Regex(re);
            Ok(())
        }
    ),
    editor!("set", [target("target"), req("value")], |e| {
        let v = match e.call.args.get(1) {
            Some(Some(v)) => eval::value(v, &*e.ctx)?.into_owned(),
            _ => Val::Nil,
        };
        set_path(e.ctx, target_of(e.call, 0), v)
    }),
    EditorDef {
        name: "set_semconv_span_name",
        params: &[req("semconvVersion"), opt("originalSpanNameAttribute")],
        run: set_semconv_span_name,
        compile: None,
        contexts: &[Context::Span],
    },
    editor!("stringify_all", [target("target")], |e| {
        with_map(e.ctx, target_of(e.call, 0), |m| {
            for kv in m.iter_mut() {
                let v = kv.value.get_or_insert_with(Default::default);
                let text = match &v.value {
                    Some(any_value::Value::StringValue(_)) => continue,
                    None => String::new(),
                    Some(any_value::Value::BytesValue(b)) => {
                        base64::engine::general_purpose::STANDARD.encode(b)
                    }
                    Some(_) => Val::from_any(Some(v))
                        .to_text()
                        .map(Cow::into_owned)
                        .unwrap_or_default(),
                };
                v.value = Some(any_value::Value::StringValue(text));
            }
        })?;
        Ok(())
    }),
    editor!(
        "truncate_all",
        [
            target("target"),
            req("limit"),
            opt("utf8_safe"),
            opt("truncation_marker")
        ],
        |e| {
            let limit = e.int(1)?;
            if limit < 0 {
                return e.err("limit must be non-negative");
            }
            let safe = e.opt_bool(2)?.unwrap_or(true);
            let marker = e.opt_str(3)?.unwrap_or_default();
            let limit = limit as usize;
            if marker.len() > limit {
                return e.err("the truncation marker is longer than the limit");
            }
            with_map(e.ctx, target_of(e.call, 0), |m| {
                for kv in m.iter_mut() {
                    if let Some(any_value::Value::StringValue(s)) =
                        kv.value.as_mut().and_then(|v| v.value.as_mut())
                        && s.len() > limit
                    {
                        let mut cut = limit - marker.len();
                        if safe {
                            while !s.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            s.truncate(cut);
                        } else {
                            // Cut at the byte; an invalid tail becomes U+FFFD.
                            let bytes = s.as_bytes()[..cut].to_vec();
                            *s = String::from_utf8_lossy(&bytes).into_owned();
                        }
                        s.push_str(&marker);
                    }
                }
            })?;
            Ok(())
        }
    ),
];

/// A call's path argument `i` (the parser made sure it is one).
pub fn target_of(call: &Call, i: usize) -> &super::ast::Path {
    match call.args.get(i) {
        Some(Some(Value::Path(p))) => p,
        _ => unreachable!("the parser checks that a target is a path"),
    }
}

/// The editors the Collector lists that ferrotel does not have.
pub const UNSUPPORTED: &[(&str, &str)] = &[];

fn literal_regex(c: &Call, i: usize) -> Result<regex::Regex, CompileError> {
    let p = c
        .lit_str(i)
        .ok_or((i, "the pattern must be a literal string".to_string()))?;
    regex::Regex::new(p).map_err(|e| (i, format!("invalid regular expression: {e}")))
}

fn regex_at_1(c: &mut Call) -> Result<(), CompileError> {
    c.compiled = Compiled::Regex(literal_regex(c, 1)?);
    Ok(())
}

fn strings_at_1(c: &mut Call) -> Result<(), CompileError> {
    if let Some(keys) = c.lit_strs(1) {
        c.compiled = Compiled::Strings(keys);
    }
    Ok(())
}

fn check_format(c: &Call, i: usize) -> Result<(), CompileError> {
    match c.lit_str(i) {
        Some(f) if f.matches("%s").count() != 1 => {
            Err((i, "the replacement format must hold exactly one %s".into()))
        }
        _ => Ok(()),
    }
}

fn glob_at_1(c: &mut Call) -> Result<(), CompileError> {
    let p = c
        .lit_str(1)
        .ok_or((1, "the pattern must be a literal string".to_string()))?;
    let re = glob_regex(p).map_err(|e| (1, e))?;
    check_format(c, 4)?;
    c.compiled = Compiled::Regex(re);
    Ok(())
}

/// Go's `filepath.Match` pattern as an anchored regex: `*` and `?` stop at `/`, `[...]`
/// classes (`^` negates), `\` escapes.
pub fn glob_regex(p: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => match chars.next() {
                Some(n) => re.push_str(&regex::escape(&n.to_string())),
                None => return Err("the pattern ends with `\\`".into()),
            },
            '[' => {
                re.push('[');
                let mut closed = false;
                let mut first = true;
                for n in chars.by_ref() {
                    match n {
                        ']' if !first => {
                            closed = true;
                            break;
                        }
                        '^' if first => re.push('^'),
                        '\\' | '[' | '&' | '~' => {
                            re.push('\\');
                            re.push(n);
                        }
                        _ => re.push(n),
                    }
                    first = false;
                }
                if !closed {
                    return Err("an unterminated `[` in the pattern".into());
                }
                re.push(']');
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("invalid pattern: {e}"))
}

/// The replacement string: argument `r`, through the converter at `f` and the format at
/// `fmt` when given.
fn replacement_of(e: &Edit<'_>, r: usize, f: usize, fmt: usize) -> Result<String, EvalError> {
    let mut out = e.str(r)?;
    if let Some(id) = e.func(f) {
        out = funcs::apply_ref(id, &out)?;
        if let Some(format) = e.opt_str(fmt)? {
            out = format.replacen("%s", &out, 1);
        }
    }
    Ok(out)
}

/// The common case of `replace_pattern` on an attribute: a template without `$` references and
/// one match (an anchored pattern, say). The match is spliced into the string where it lies:
/// no new string, and the old one's capacity reused. True when it is done (nothing matched
/// counts); false when the general path must run (several matches, or `$` in the template).
fn replace_once_in_place(re: &regex::Regex, s: &mut String, template: &str) -> bool {
    if template.contains('$') {
        return false;
    }
    let mut matches = re.find_iter(s);
    let Some(m) = matches.next() else {
        return true;
    };
    let range = m.range();
    if matches.next().is_some() {
        return false;
    }
    s.replace_range(range, template);
    true
}

/// Every match of `re` in `text` replaced by `template` (`$1`, `${name}`), each through the
/// converter `f` and the `format` when given; `None` when nothing matched.
fn replace_regex(
    re: &regex::Regex,
    text: &str,
    template: &str,
    f: Option<usize>,
    format: Option<&str>,
) -> Result<Option<String>, EvalError> {
    let Some(id) = f else {
        // `replace_all` borrows when nothing matched: one scan either way.
        return Ok(match re.replace_all(text, template) {
            Cow::Borrowed(_) => None,
            Cow::Owned(s) => Some(s),
        });
    };
    if !re.is_match(text) {
        return Ok(None);
    }
    let mut failure = None;
    let out = re.replace_all(text, |caps: &regex::Captures<'_>| {
        let mut expanded = String::new();
        caps.expand(template, &mut expanded);
        match funcs::apply_ref(id, &expanded) {
            Ok(h) => match format {
                Some(fmt) => fmt.replacen("%s", &h, 1),
                None => h,
            },
            Err(err) => {
                failure = Some(err);
                String::new()
            }
        }
    });
    match failure {
        Some(err) => Err(err),
        None => Ok(Some(out.into_owned())),
    }
}

/// A string argument, borrowed from the statement when it is a literal (no copy per item).
fn literal_or<'c>(e: &Edit<'c>, i: usize) -> Result<Cow<'c, str>, EvalError> {
    match e.call.lit_str(i) {
        Some(t) => Ok(Cow::Borrowed(t)),
        None => e.str(i).map(Cow::Owned),
    }
}

fn string_list(e: &Edit<'_>, i: usize) -> Result<Vec<String>, EvalError> {
    match e.arg(i)? {
        Val::List(l) => l
            .iter()
            .map(|v| match Val::from_any(Some(v)) {
                Val::Str(s) => Ok(s.into_owned()),
                other => e.err(format_args!("expected strings, got {}", other.type_name())),
            })
            .collect(),
        Val::Nil => Ok(Vec::new()),
        other => e.err(format_args!("expected a list, got {}", other.type_name())),
    }
}

/// `flatten`: nested maps' members moved to the root as `a.b.c`, slices' items as `a.0`,
/// down to `depth` levels; with `resolve`, a key already present gets a `.N` suffix.
fn flatten_into(
    out: &mut Vec<KeyValue>,
    src: Vec<KeyValue>,
    prefix: &str,
    depth: usize,
    resolve: bool,
) {
    for kv in src {
        let key = if prefix.is_empty() {
            kv.key
        } else {
            format!("{prefix}.{}", kv.key)
        };
        let value = kv.value.unwrap_or_default();
        flatten_value(out, key, value, depth, resolve);
    }
}

fn flatten_value(
    out: &mut Vec<KeyValue>,
    key: String,
    value: AnyValue,
    depth: usize,
    resolve: bool,
) {
    use any_value::Value as V;
    match value.value {
        Some(V::KvlistValue(kv)) if depth > 0 => {
            flatten_into(out, kv.values, &key, depth - 1, resolve)
        }
        Some(V::ArrayValue(a)) if depth > 0 && !resolve => {
            for (i, item) in a.values.into_iter().enumerate() {
                flatten_value(out, format!("{key}.{i}"), item, depth - 1, resolve);
            }
        }
        Some(V::ArrayValue(a)) if depth > 0 => {
            // With conflict resolution each item is one more value for the same key.
            for item in a.values {
                flatten_value(out, key.clone(), item, depth - 1, resolve);
            }
        }
        v => {
            let mut key = key;
            if resolve && out.iter().any(|x| x.key == key) {
                let mut n = 0;
                while out.iter().any(|x| x.key == format!("{key}.{n}")) {
                    n += 1;
                }
                key = format!("{key}.{n}");
            } else if let Some(i) = out.iter().position(|x| x.key == key) {
                // Without resolution the later value wins, as a map put does.
                out.remove(i);
            }
            out.push(KeyValue {
                key,
                value: Some(AnyValue { value: v }),
                ..Default::default()
            });
        }
    }
}

/// `set_semconv_span_name(version, original_attribute?)`: the span's name rebuilt from its
/// semantic-convention attributes (HTTP `{method} {route}`, RPC `{service}/{method}`, database
/// and messaging operations), the old name kept in the attribute when given.
fn set_semconv_span_name(e: &mut Edit<'_>) -> Result<(), EvalError> {
    use super::ast::Field;
    let _version = e.str(0)?;
    let original_key = e.opt_str(1)?;
    let attr = |k: &str| -> Option<String> {
        match eval::path(
            &super::ast::Path {
                field: Field::Attributes,
                keys: vec![super::ast::Key::Str(k.to_string())],
                of_span: false,
            },
            &*e.ctx,
        ) {
            Val::Str(s) if !s.is_empty() => Some(s.into_owned()),
            Val::Int(i) => Some(i.to_string()),
            _ => None,
        }
    };
    let kind = match e.ctx.field(Field::Kind) {
        Val::Int(k) => k,
        _ => 0,
    };
    let method = attr("http.request.method").or_else(|| attr("http.method"));
    let name = if let Some(m) = method {
        const KNOWN: &[&str] = &[
            "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
        ];
        let m = if KNOWN.contains(&m.as_str()) {
            m
        } else {
            "HTTP".to_string()
        };
        let target = if kind == 2 {
            attr("http.route")
        } else {
            attr("url.template").or_else(|| attr("http.route"))
        };
        Some(match target {
            Some(t) => format!("{m} {t}"),
            None => m,
        })
    } else if let (Some(s), Some(m)) = (attr("rpc.service"), attr("rpc.method")) {
        Some(format!("{s}/{m}"))
    } else if let Some(summary) = attr("db.query.summary") {
        Some(summary)
    } else if let Some(op) = attr("db.operation.name").or_else(|| attr("db.operation")) {
        Some(
            match attr("db.collection.name").or_else(|| attr("db.sql.table")) {
                Some(c) => format!("{op} {c}"),
                None => op,
            },
        )
    } else {
        attr("messaging.operation.name")
            .or_else(|| attr("messaging.operation"))
            .map(|op| match attr("messaging.destination.name") {
                Some(d) => format!("{op} {d}"),
                None => op,
            })
    };
    let Some(name) = name else { return Ok(()) };
    let current = match e.ctx.field(Field::Name) {
        Val::Str(s) => s.into_owned(),
        _ => String::new(),
    };
    if current == name {
        return Ok(());
    }
    if let Some(k) = original_key {
        set_path(
            e.ctx,
            &super::ast::Path {
                field: Field::Attributes,
                keys: vec![super::ast::Key::Str(k)],
                of_span: false,
            },
            Val::string(current),
        )?;
    }
    e.ctx.set_field(Field::Name, false, Val::string(name))
}
