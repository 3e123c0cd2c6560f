//! The XML reading `ParseXML` and `ParseSimplifiedXML` need: elements, attributes, text,
//! CDATA and the five named and numeric entities; declarations, processing instructions,
//! comments and DOCTYPE are skipped. Nesting is bounded ([`MAX_DEPTH`]) so a hostile document
//! cannot exhaust the stack.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
};

/// How deep elements may nest.
pub const MAX_DEPTH: usize = 1000;

#[derive(Debug, Default)]
struct El {
    tag: String,
    attrs: Vec<(String, String)>,
    /// Text pieces, each trimmed, in order.
    text: Vec<String>,
    children: Vec<El>,
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| format!("unterminated entity in {s:?}"))?;
        let ent = &after[..end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or(ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{ent};"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse(doc: &str) -> Result<El, String> {
    let mut stack: Vec<El> = Vec::new();
    let mut root: Option<El> = None;
    let mut rest = doc;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if !rest.trim().is_empty() {
                match stack.last_mut() {
                    Some(el) => el.text.push(unescape(rest.trim())?),
                    None => return Err("text outside the root element".into()),
                }
            }
            break;
        };
        let text = &rest[..lt];
        if !text.trim().is_empty() {
            match stack.last_mut() {
                Some(el) => el.text.push(unescape(text.trim())?),
                None => return Err("text outside the root element".into()),
            }
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or("unterminated comment")?;
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>").ok_or("unterminated CDATA")?;
            match stack.last_mut() {
                Some(el) => el.text.push(r[..end].to_string()),
                None => return Err("CDATA outside the root element".into()),
            }
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("<?") {
            let end = r.find("?>").ok_or("unterminated processing instruction")?;
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("<!") {
            let end = r.find('>').ok_or("unterminated declaration")?;
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>').ok_or("unterminated closing tag")?;
            let name = r[..end].trim();
            let el = stack
                .pop()
                .ok_or_else(|| format!("</{name}> closes nothing"))?;
            if el.tag != name {
                return Err(format!("</{name}> closes <{}>", el.tag));
            }
            rest = &r[end + 1..];
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None if root.is_none() => root = Some(el),
                None => return Err("more than one root element".into()),
            }
        } else {
            let (el, self_closing, after) = open_tag(&rest[1..])?;
            rest = after;
            if self_closing {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("more than one root element".into()),
                }
            } else {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nest deeper than {MAX_DEPTH} levels"));
                }
                if root.is_some() && stack.is_empty() {
                    return Err("more than one root element".into());
                }
                stack.push(el);
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{}> is not closed", open.tag));
    }
    root.ok_or_else(|| "no root element".into())
}

/// Reads `name attr="v" ...>` or `.../>`; returns the element, whether it closed itself and
/// what follows.
fn open_tag(s: &str) -> Result<(El, bool, &str), String> {
    let name_end = s
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .ok_or("unterminated tag")?;
    let mut el = El {
        tag: s[..name_end].to_string(),
        ..Default::default()
    };
    if el.tag.is_empty() {
        return Err("an element without a name".into());
    }
    let mut rest = &s[name_end..];
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("/>") {
            return Ok((el, true, r));
        }
        if let Some(r) = rest.strip_prefix('>') {
            return Ok((el, false, r));
        }
        let eq = rest.find('=').ok_or("an attribute without a value")?;
        let name = rest[..eq].trim().to_string();
        let r = rest[eq + 1..].trim_start();
        let q = r.chars().next().ok_or("unterminated attribute")?;
        if q != '"' && q != '\'' {
            return Err(format!("attribute {name} is not quoted"));
        }
        let end = r[1..].find(q).ok_or("unterminated attribute value")?;
        el.attrs.push((name, unescape(&r[1..1 + end])?));
        rest = &r[end + 2..];
    }
}

fn any(v: V) -> AnyValue {
    AnyValue { value: Some(v) }
}

fn kv(key: &str, v: V) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any(v)),
        ..Default::default()
    }
}

/// `ParseXML`: `tag`, `attributes`, `content` and `children` per element.
pub fn parse_full(doc: &str) -> Result<Vec<KeyValue>, String> {
    fn conv(el: El) -> Vec<KeyValue> {
        let mut out = vec![kv("tag", V::StringValue(el.tag))];
        if !el.attrs.is_empty() {
            out.push(kv(
                "attributes",
                V::KvlistValue(KeyValueList {
                    values: el
                        .attrs
                        .into_iter()
                        .map(|(k, v)| kv(&k, V::StringValue(v)))
                        .collect(),
                }),
            ));
        }
        if !el.text.is_empty() {
            out.push(kv("content", V::StringValue(el.text.join(" "))));
        }
        if !el.children.is_empty() {
            out.push(kv(
                "children",
                V::ArrayValue(ArrayValue {
                    values: el
                        .children
                        .into_iter()
                        .map(|c| any(V::KvlistValue(KeyValueList { values: conv(c) })))
                        .collect(),
                }),
            ));
        }
        out
    }
    Ok(conv(parse(doc)?))
}

/// `ParseSimplifiedXML`: `{tag: text}` or `{tag: {child: ...}}`, same-named siblings as a
/// slice; attributes and text beside elements ignored; empty elements dropped.
pub fn parse_simplified(doc: &str) -> Result<Vec<KeyValue>, String> {
    /// The value of an element, `None` when empty.
    fn value(el: El) -> Option<AnyValue> {
        if el.children.is_empty() {
            return (!el.text.is_empty()).then(|| any(V::StringValue(el.text.concat())));
        }
        Some(any(V::KvlistValue(KeyValueList {
            values: members(el.children),
        })))
    }
    fn members(children: Vec<El>) -> Vec<KeyValue> {
        // Group by tag in first-seen order; a tag seen twice is a slice even if one is empty.
        let mut groups: Vec<(String, Vec<Option<AnyValue>>)> = Vec::new();
        for c in children {
            let tag = c.tag.clone();
            let v = value(c);
            match groups.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, vs)) => vs.push(v),
                None => groups.push((tag, vec![v])),
            }
        }
        groups
            .into_iter()
            .filter_map(|(tag, mut vs)| {
                let value = if vs.len() == 1 {
                    vs.pop().flatten()?
                } else {
                    any(V::ArrayValue(ArrayValue {
                        values: vs.into_iter().flatten().collect(),
                    }))
                };
                Some(KeyValue {
                    key: tag,
                    value: Some(value),
                    ..Default::default()
                })
            })
            .collect()
    }
    Ok(members(vec![parse(doc)?]))
}
