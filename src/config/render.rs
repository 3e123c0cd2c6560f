//! A resolved config tree written back out, for `print-config`: YAML (block style, keys in the
//! order written) or JSON, with secrets redacted unless asked otherwise.

use std::fmt::Write as _;

use super::node::{Node, Value};

/// What replaces a secret, as the Collector prints an opaque value.
pub const REDACTED: &str = "[REDACTED]";

/// Keys whose scalar values are secrets (compared without case, `-` and `_`), and `headers`,
/// whose every value is (the Collector's `configopaque` fields).
fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    matches!(
        k.as_str(),
        "password"
            | "passwd"
            | "secret"
            | "clientsecret"
            | "token"
            | "bearertoken"
            | "accesstoken"
            | "authtoken"
            | "apikey"
            | "authorization"
            | "keypem"
            | "privatekey"
            | "credentials"
            | "sharedkey"
    )
}

/// A copy of `node` with every secret value replaced by [`REDACTED`].
pub fn redacted(node: &Node) -> Node {
    let mut n = node.clone();
    redact(&mut n, false);
    n
}

fn redact(node: &mut Node, secret: bool) {
    match &mut node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                // `headers` values, and `htpasswd.inline` (user:password lines), are secrets.
                if k.name == "htpasswd"
                    && let Value::Map(hs) = &mut v.value
                {
                    for (hk, hv) in hs {
                        redact(hv, secret || hk.name == "inline");
                    }
                    continue;
                }
                let headers = k.name == "headers" && matches!(v.value, Value::Map(_));
                if headers {
                    if let Value::Map(hs) = &mut v.value {
                        for (_, hv) in hs {
                            redact(hv, true);
                        }
                    }
                } else {
                    redact(v, secret || is_secret_key(&k.name));
                }
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|n| redact(n, secret)),
        Value::Null => {}
        Value::Str(s) if s.is_empty() => {}
        _ if secret => node.value = Value::Str(REDACTED.into()),
        _ => {}
    }
}

/// JSON text, keys in the order written.
pub fn json_text(node: &Node) -> String {
    let mut out = String::new();
    json(&mut out, node);
    out
}

fn json(out: &mut String, node: &Node) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::Float(f) => out.push_str(&quote(&f.to_string())),
        Value::Str(s) => out.push_str(&quote(s)),
        Value::Seq(items) => {
            out.push('[');
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(out, n);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(&k.name));
                out.push(':');
                json(out, v);
            }
            out.push('}');
        }
    }
}

/// A double-quoted string, valid in JSON and in YAML alike.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// YAML text in block style.
pub fn yaml_text(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(entries) if !entries.is_empty() => map(&mut out, entries, 0),
        _ => {
            out.push_str(&inline(node));
            out.push('\n');
        }
    }
    out
}

/// A scalar or an empty collection on one line.
fn inline(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        // `{:?}` keeps a `.0`, so a float reads back as a float.
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => scalar_text(s),
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
    }
}

fn is_block(node: &Node) -> bool {
    match &node.value {
        Value::Seq(items) => !items.is_empty(),
        Value::Map(entries) => !entries.is_empty(),
        _ => false,
    }
}

fn map(out: &mut String, entries: &[(super::node::Key, Node)], indent: usize) {
    for (k, v) in entries {
        out.extend(std::iter::repeat_n(' ', indent));
        out.push_str(&scalar_text(&k.name));
        out.push(':');
        if is_block(v) {
            out.push('\n');
            block(out, v, indent + 2);
        } else if v.is_null() {
            out.push('\n');
        } else {
            out.push(' ');
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn block(out: &mut String, node: &Node, indent: usize) {
    match &node.value {
        Value::Map(entries) => map(out, entries, indent),
        Value::Seq(items) => {
            for item in items {
                out.extend(std::iter::repeat_n(' ', indent));
                out.push('-');
                if is_block(item) {
                    // The item's first line goes after `- `, the rest at its indent.
                    let mut inner = String::new();
                    block(&mut inner, item, indent + 2);
                    out.push(' ');
                    out.push_str(&inner[indent + 2..]);
                } else {
                    out.push(' ');
                    out.push_str(&inline(item));
                    out.push('\n');
                }
            }
        }
        _ => {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(&inline(node));
            out.push('\n');
        }
    }
}

/// Plain when it reads back as the same string, double-quoted otherwise.
fn scalar_text(s: &str) -> String {
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '@' | '+' | '='));
    let starts_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.'));
    let lower = s.to_ascii_lowercase();
    let reads_as_other = matches!(
        lower.as_str(),
        "true" | "false" | "null" | "~" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) || s.parse::<f64>().is_ok()
        || lower.starts_with("0x")
        || lower.starts_with("0o")
        || lower.starts_with(".inf")
        || lower.starts_with(".nan")
        || lower.starts_with("-.inf");
    if plain_chars && starts_ok && !reads_as_other {
        s.to_owned()
    } else {
        quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse;

    const SAMPLE: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\nexporters:\n  otlp_http:\n    endpoint: https://x\n    headers:\n      X-Tenant: team-a\n    auth_token: s3cret\n    retry: [1, 2.0, 'yes', '', true, {a: 1, b: [x]}]\n  debug: {}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";

    #[test]
    fn yaml_reads_back_as_the_same_tree() {
        let n = parse(SAMPLE).unwrap();
        let text = yaml_text(&n);
        let back = parse(&text).unwrap();
        assert_eq!(json_text(&back), json_text(&n), "{text}");
        assert!(text.contains("endpoint: \"0.0.0.0:4317\""), "{text}");
        assert!(text.contains("- \"yes\"\n"), "{text}");
        assert!(
            text.contains("      - a: 1\n        b:\n          - x\n"),
            "{text}"
        );
    }

    #[test]
    fn secrets_and_header_values_are_redacted() {
        let n = redacted(&parse(SAMPLE).unwrap());
        let text = yaml_text(&n);
        assert!(text.contains("X-Tenant: \"[REDACTED]\""), "{text}");
        assert!(text.contains("auth_token: \"[REDACTED]\""), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("team-a"));
        assert!(text.contains("endpoint: \"https://x\""), "{text}");
    }
}
