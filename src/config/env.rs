//! `${env:NAME}`, `${env:NAME:-default}` and the bare `${NAME}` form, expanded in every string
//! value of the tree, as the Collector's confmap does. `$$` is a literal `$`.

use super::node::{Node, Value};

/// Why a reference could not be expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvError {
    pub pos: super::node::Pos,
    pub msg: String,
}

/// Expands references in place. A value that is exactly one reference takes the type the
/// expanded text would have in YAML (`port: ${env:PORT}` is a number), as in the Collector.
pub fn expand(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<EnvError>,
) {
    match &mut node.value {
        Value::Str(s) if s.contains('$') => match expand_str(s, lookup) {
            Ok((text, whole)) => {
                node.value = if whole {
                    retype(text)
                } else {
                    Value::Str(text)
                };
            }
            Err(msg) => errors.push(EnvError { pos: node.pos, msg }),
        },
        Value::Seq(items) => items.iter_mut().for_each(|n| expand(n, lookup, errors)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, n)| expand(n, lookup, errors)),
        _ => {}
    }
}

fn retype(text: String) -> Value {
    match text.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                Value::Int(i)
            } else if text.contains(['.', 'e', 'E'])
                && text.parse::<f64>().is_ok_and(|f| f.is_finite())
            {
                Value::Float(text.parse().unwrap_or_default())
            } else {
                Value::Str(text)
            }
        }
    }
}

/// Returns the expanded text and whether the input was one reference and nothing else.
pub fn expand_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut refs = 0;
    let mut literal = false;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            literal = true;
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {s:?}"))?;
            out.push_str(&resolve(&body[..end], lookup)?);
            refs += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            literal = true;
            rest = after;
        }
    }
    out.push_str(rest);
    let whole = refs == 1
        && !literal
        && s.starts_with("${")
        && s.ends_with('}')
        && s.matches("${").count() == 1;
    Ok((out, whole))
}

fn resolve(reference: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (scheme, rest) = match reference.split_once(':') {
        // `${env:NAME}`; a bare `${NAME:-x}` has no scheme but a `:-` default.
        Some((scheme, rest)) if !scheme.is_empty() && !rest.starts_with('-') => (scheme, rest),
        _ => ("env", reference),
    };
    if scheme != "env" {
        return Err(format!(
            "`${{{reference}}}`: the `{scheme}` config provider is not supported (only `env`)"
        ));
    }
    let (name, default) = match rest.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{reference}}}`: {name:?} is not a valid environment variable name"
        ));
    }
    Ok(match (lookup(name), default) {
        (Some(v), Some(d)) if v.is_empty() => d.to_owned(),
        (Some(v), _) => v,
        (None, Some(d)) => d.to_owned(),
        // The Collector expands an unset variable to the empty string (with a warning).
        (None, None) => {
            tracing::warn!(
                variable = name,
                "environment variable is not set; using the empty string"
            );
            String::new()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "HOST" => Some("10.0.0.1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms_of_reference() {
        assert_eq!(
            expand_str("${env:HOST}:${env:PORT}", &env).unwrap(),
            ("10.0.0.1:4317".into(), false)
        );
        assert_eq!(
            expand_str("${HOST}", &env).unwrap(),
            ("10.0.0.1".into(), true)
        );
        assert_eq!(
            expand_str("${env:NOPE:-localhost:4317}", &env).unwrap().0,
            "localhost:4317"
        );
        assert_eq!(expand_str("${env:EMPTY:-dflt}", &env).unwrap().0, "dflt");
        assert_eq!(expand_str("${NOPE}", &env).unwrap().0, "");
        assert_eq!(
            expand_str("Api-Token $${env:HOST}", &env).unwrap().0,
            "Api-Token ${env:HOST}"
        );
        assert!(
            expand_str("${file:/etc/x}", &env)
                .unwrap_err()
                .contains("`file` config provider")
        );
        assert!(
            expand_str("${env:HOST", &env)
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn a_whole_reference_is_retyped() {
        let mut n = parse("port: ${env:PORT}\nep: ${env:HOST}:${env:PORT}\n").unwrap();
        let mut errs = vec![];
        expand(&mut n, &env, &mut errs);
        assert!(errs.is_empty());
        assert_eq!(n.get("port").unwrap().value, Value::Int(4317));
        assert_eq!(
            n.get("ep").unwrap().value,
            Value::Str("10.0.0.1:4317".into())
        );
    }
}
