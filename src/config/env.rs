//! `${env:NAME}`, `${env:NAME:-default}`, the bare `${NAME}` form and `${file:path}`, expanded
//! in every string value of the tree, as the Collector's confmap does. `$$` is a literal `$`.

use super::node::{Node, Value};

/// Where references are looked up.
#[derive(Clone, Copy)]
pub struct Providers<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether `${file:path}` may read files: yes when a config is loaded to run or validate,
    /// no for text from elsewhere (the fuzzer, tests of env expansion alone).
    pub files: bool,
}

impl<'a> Providers<'a> {
    pub fn env_only(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Providers { env, files: false }
    }
}

/// Why a reference could not be expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvError {
    pub pos: super::node::Pos,
    pub msg: String,
}

/// Expands references in place. A value that is exactly one reference takes the type the
/// expanded text would have in YAML (`port: ${env:PORT}` is a number), as in the Collector.
///
/// A value that is exactly one `${file:...}` reference takes the file's YAML: a mapping or a
/// list stays one, reported at the reference; a scalar keeps the file's text as written (a PEM
/// certificate stays intact rather than folded as YAML would fold it).
pub fn expand(node: &mut Node, providers: Providers<'_>, errors: &mut Vec<EnvError>) {
    match &mut node.value {
        Value::Str(s) if s.contains('$') => match expand_str_with(s, providers) {
            Ok((text, Some(scheme))) => {
                node.value = if scheme == "file" {
                    file_value(text, node.pos)
                } else {
                    retype(text)
                };
            }
            Ok((text, None)) => node.value = Value::Str(text),
            Err(msg) => errors.push(EnvError { pos: node.pos, msg }),
        },
        Value::Seq(items) => items.iter_mut().for_each(|n| expand(n, providers, errors)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, n)| expand(n, providers, errors)),
        _ => {}
    }
}

fn file_value(text: String, at: super::node::Pos) -> Value {
    match super::node::parse(&text) {
        Ok(mut n) if matches!(n.value, Value::Map(_) | Value::Seq(_)) => {
            n.relocate(at);
            n.value
        }
        _ => {
            let trimmed = text.trim_end_matches(['\n', '\r']);
            match retype(trimmed.to_owned()) {
                Value::Str(_) => Value::Str(text),
                typed => typed,
            }
        }
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

/// Returns the expanded text and whether the input was one reference and nothing else; only
/// environment variables are looked up.
pub fn expand_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), String> {
    expand_str_with(s, Providers::env_only(lookup)).map(|(t, whole)| (t, whole.is_some()))
}

/// The expanded text, and the scheme of the reference when the input was one reference and
/// nothing else.
pub fn expand_str_with(
    s: &str,
    providers: Providers<'_>,
) -> Result<(String, Option<&'static str>), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut refs = 0;
    let mut literal = false;
    let mut last_scheme = "env";
    let mut raw_file = None;
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
            let (text, scheme) = resolve(&body[..end], providers)?;
            if scheme == "file" {
                // Inside a longer string a file's text is a scalar: its final newline dropped.
                out.push_str(text.trim_end_matches(['\n', '\r']));
                raw_file = Some(text);
            } else {
                out.push_str(&text);
            }
            last_scheme = scheme;
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
    match raw_file {
        Some(raw) if whole => Ok((raw, Some("file"))),
        _ => Ok((out, whole.then_some(last_scheme))),
    }
}

fn resolve(reference: &str, providers: Providers<'_>) -> Result<(String, &'static str), String> {
    let (scheme, rest) = match reference.split_once(':') {
        // `${env:NAME}`; a bare `${NAME:-x}` has no scheme but a `:-` default.
        Some((scheme, rest)) if !scheme.is_empty() && !rest.starts_with('-') => (scheme, rest),
        _ => ("env", reference),
    };
    match scheme {
        "env" => {}
        "file" if providers.files => {
            return super::sources::read_file(rest)
                .map(|t| (t, "file"))
                .map_err(|e| format!("`${{{reference}}}`: cannot read {rest:?}: {e}"));
        }
        "file" => {
            return Err(format!(
                "`${{{reference}}}`: the `file` config provider is not available here"
            ));
        }
        _ => {
            return Err(format!(
                "`${{{reference}}}`: the `{scheme}` config provider is not supported (only `env` and `file`)"
            ));
        }
    }
    let lookup = providers.env;
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
    Ok((
        match (lookup(name), default) {
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
        },
        "env",
    ))
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
                .contains("`file` config provider is not available here")
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
        expand(&mut n, Providers::env_only(&env), &mut errs);
        assert!(errs.is_empty());
        assert_eq!(n.get("port").unwrap().value, Value::Int(4317));
        assert_eq!(
            n.get("ep").unwrap().value,
            Value::Str("10.0.0.1:4317".into())
        );
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use crate::config::node::parse;

    #[test]
    fn file_references_insert_text_or_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        let pem_text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(&pem, pem_text).unwrap();
        let port = dir.path().join("port");
        std::fs::write(&port, "4317\n").unwrap();
        let map = dir.path().join("headers.yaml");
        std::fs::write(&map, "x-tenant: a\nx-team: b\n").unwrap();
        let text = format!(
            "ca_pem: ${{file:{}}}\nport: ${{file:{}}}\nheaders: ${{file:{}}}\nurl: http://h:${{file:{}}}/x\nmissing: ${{file:{}/nope}}\n",
            pem.display(),
            port.display(),
            map.display(),
            port.display(),
            dir.path().display()
        );
        let mut n = parse(&text).unwrap();
        let mut errs = vec![];
        let none = |_: &str| None;
        expand(
            &mut n,
            Providers {
                env: &none,
                files: true,
            },
            &mut errs,
        );
        assert_eq!(n.get("ca_pem").unwrap().value, Value::Str(pem_text.into()));
        assert_eq!(n.get("port").unwrap().value, Value::Int(4317));
        let headers = n.get("headers").unwrap();
        assert_eq!(headers.get("x-team").unwrap().value, Value::Str("b".into()));
        // Reported where the reference is written.
        assert_eq!(headers.get("x-team").unwrap().pos.line, 3);
        assert_eq!(
            n.get("url").unwrap().value,
            Value::Str("http://h:4317/x".into())
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].pos.line, 5);
        assert!(errs[0].msg.contains("No such file"), "{}", errs[0].msg);
    }
}
