//! Text from telemetry, made safe to print: whatever a client sends (attribute keys, span names,
//! log bodies, error messages of a peer) may hold newlines or terminal escapes, and printed raw
//! it could forge a log line of ferrotel's or drive the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

/// Escapes control characters (C0, DEL, C1) as `\n`, `\r`, `\t` or `\u{..}`; other text is
/// returned as is, without a copy.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn is_control(c: char) -> bool {
    c.is_control()
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_control(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// The start of `s`, at most `max` characters, with `…` when cut: for quoting user input in
/// messages (a 20,000-character condition is named by its start, not repeated whole).
pub fn excerpt(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// The writer of ferrotel's own log: every event arrives as one formatted line (tracing's fmt
/// layer writes each event with one `write_all`); control characters inside it are escaped, so
/// a value holding `\n2026-… ERROR forged` stays on its own line. Tabs are kept.
pub struct LogWriter<W>(pub W);

impl<W: io::Write> io::Write for LogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !needs_escape(body) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let text = String::from_utf8_lossy(body);
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if c == '\t' {
                out.push(c);
            } else {
                push_escaped(&mut out, c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        self.0.write_all(end)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether UTF-8 `body` holds a control character other than a tab: a C0 byte, DEL, or a C1
/// character (`C2 80`..`C2 9F`).
fn needs_escape(body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| {
        (b < 0x20 && b != b'\t')
            || b == 0x7f
            || (b == 0xc2 && body.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

/// An error with every cause after it, `: `-separated (`connecting: tcp connect error:
/// Connection refused (os error 111)`), so a log line says why, not just "transport error".
/// A cause whose text its parent already ends with is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// `2026-12-01T16:28:07.392Z`: a wall-clock time in RFC 3339, UTC, milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // The civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A `MakeWriter` for tracing-subscriber: stderr through [`LogWriter`].
pub fn stderr_log_writer() -> LogWriter<io::Stderr> {
    LogWriter(io::stderr())
}

/// Levenshtein distance in characters, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn excerpts_cut_long_text_on_a_character_boundary() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
    }

    #[test]
    fn error_chains_name_every_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "transport error",
            Some(Box::new(E(
                "tcp connect error: Connection refused",
                Some(Box::new(E("Connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: tcp connect error: Connection refused"
        );
    }

    #[test]
    fn times_in_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_606_487_392);
        assert_eq!(rfc3339(t), "2025-12-01T16:28:07.392Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape_control("plain text é"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\n2026-12-01 ERROR forged\r\u{1b}[31m\u{7f}\u{85}"),
            "a\\n2026-12-01 ERROR forged\\r\\u{1b}[31m\\u{7f}\\u{85}"
        );
        assert_eq!(escape_control("tab\there"), "tab\\there");
    }

    #[test]
    fn the_log_writer_keeps_one_event_on_one_line() {
        let mut w = LogWriter(Vec::new());
        w.write_all(b"2026-12-01T00:00:00Z  WARN error=\"x\"\n")
            .unwrap();
        w.write_all("  INFO key=a\n2026-12-01 ERROR forged\u{1b}[2J\tend\n".as_bytes())
            .unwrap();
        let text = String::from_utf8(w.0).unwrap();
        assert_eq!(
            text,
            "2026-12-01T00:00:00Z  WARN error=\"x\"\n  INFO key=a\\n2026-12-01 ERROR forged\\u{1b}[2J\tend\n"
        );
        assert_eq!(text.lines().count(), 2);
    }
}
