//! RFC 5424 and RFC 3164 (BSD) syslog message parsing into the attributes the Collector's syslog
//! receiver produces: `priority`, `facility`, `hostname`, `appname`, `proc_id`, `msg_id`,
//! `structured_data`, `version`, `message`, with the timestamp and the OTel severity.

use crate::stanza::entry::{Map, Value};

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub attributes: Map,
    /// Unix nanoseconds; 0 when the message has none.
    pub timestamp: u64,
    pub severity_number: i32,
    pub severity_text: &'static str,
}

/// Syslog severity (0..=7) → OTel severity number and text, as stanza maps them.
pub fn severity(sev: u8) -> (i32, &'static str) {
    match sev {
        0 => (22, "emerg"),
        1 => (21, "alert"),
        2 => (18, "crit"),
        3 => (17, "err"),
        4 => (13, "warning"),
        5 => (10, "notice"),
        6 => (9, "info"),
        _ => (5, "debug"),
    }
}

fn pri(s: &str) -> Result<(u8, &str), String> {
    let rest = s.strip_prefix('<').ok_or("no <PRI> header")?;
    let end = rest
        .find('>')
        .filter(|e| (1..=3).contains(e))
        .ok_or("bad <PRI> header")?;
    let p: u8 = rest[..end]
        .parse()
        .ok()
        .filter(|p| *p <= 191)
        .ok_or("PRI out of range 0-191")?;
    Ok((p, &rest[end + 1..]))
}

fn common(p: u8) -> Parsed {
    let (severity_number, severity_text) = severity(p & 7);
    Parsed {
        attributes: vec![
            ("priority".into(), Value::Int(p as i64)),
            ("facility".into(), Value::Int((p >> 3) as i64)),
        ],
        severity_number,
        severity_text,
        timestamp: 0,
    }
}

fn field(s: &str) -> Result<(&str, &str), String> {
    let end = s.find(' ').ok_or("message ends early")?;
    Ok((&s[..end], &s[end + 1..]))
}

fn push_str(m: &mut Map, k: &str, v: &str) {
    if v != "-" && !v.is_empty() {
        m.push((k.into(), Value::Str(v.into())));
    }
}

/// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`.
pub fn rfc5424(line: &str) -> Result<Parsed, String> {
    let (p, rest) = pri(line)?;
    let mut out = common(p);
    let (version, rest) = field(rest)?;
    let v: i64 = version.parse().map_err(|_| "bad VERSION")?;
    if v != 1 {
        return Err(format!("unsupported syslog version {v}"));
    }
    out.attributes.push(("version".into(), Value::Int(v)));
    let (ts, rest) = field(rest)?;
    if ts != "-" {
        out.timestamp = match crate::stanza::stateful::fast_rfc3339(ts) {
            Some(t) => t,
            None => {
                let t: jiff::Timestamp = ts
                    .parse()
                    .map_err(|e| format!("bad TIMESTAMP `{ts}`: {e}"))?;
                t.as_nanosecond().max(0) as u64
            }
        };
    }
    let (host, rest) = field(rest)?;
    let (app, rest) = field(rest)?;
    let (procid, rest) = field(rest)?;
    // `... MSGID -` with nothing after the SD is fine; `... MSGID` alone is not.
    let (msgid, rest) = field(rest)?;
    push_str(&mut out.attributes, "hostname", host);
    push_str(&mut out.attributes, "appname", app);
    push_str(&mut out.attributes, "proc_id", procid);
    push_str(&mut out.attributes, "msg_id", msgid);
    let (sd, msg) = structured_data(rest)?;
    if !sd.is_empty() {
        out.attributes
            .push(("structured_data".into(), Value::Map(sd)));
    }
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    if !msg.is_empty() {
        out.attributes
            .push(("message".into(), Value::Str(msg.into())));
    }
    Ok(out)
}

/// `-` or `[id k="v" ...][id2 ...]`, then an optional ` MSG`.
fn structured_data(s: &str) -> Result<(Map, &str), String> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((Vec::new(), rest.strip_prefix(' ').unwrap_or(rest)));
    }
    let mut out: Map = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        i += 1;
        let id_end = s[i..]
            .find([' ', ']'])
            .ok_or("unterminated STRUCTURED-DATA")?
            + i;
        let id = s[i..id_end].to_string();
        if id.is_empty() {
            return Err("empty SD-ID".into());
        }
        i = id_end;
        let mut params: Map = Vec::new();
        loop {
            match b.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => {
                    i += 1;
                    let eq = s[i..].find('=').ok_or("SD-PARAM without `=`")? + i;
                    let name = s[i..eq].to_string();
                    i = eq + 1;
                    if b.get(i) != Some(&b'"') {
                        return Err("SD-PARAM value must be quoted".into());
                    }
                    i += 1;
                    let mut v = String::new();
                    loop {
                        match b.get(i) {
                            None => return Err("unterminated SD-PARAM value".into()),
                            Some(b'\\') if matches!(b.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                                v.push(b[i + 1] as char);
                                i += 2;
                            }
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(_) => {
                                let ch = s[i..].chars().next().expect("in bounds");
                                v.push(ch);
                                i += ch.len_utf8();
                            }
                        }
                    }
                    params.push((name, Value::Str(v)));
                }
                _ => return Err("malformed STRUCTURED-DATA".into()),
            }
        }
        out.push((id, Value::Map(params)));
    }
    if out.is_empty() {
        return Err("STRUCTURED-DATA must be `-` or `[...]`".into());
    }
    let rest = &s[i..];
    Ok((out, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`; the timestamp is read in `tz` in the current
/// year (the previous one for a date more than a day ahead, around New Year).
pub fn rfc3164(line: &str, tz: &jiff::tz::TimeZone) -> Result<Parsed, String> {
    let (p, rest) = pri(line)?;
    let mut out = common(p);
    if rest.len() < 16 || rest.as_bytes()[15] != b' ' {
        return Err("no RFC 3164 timestamp (`Mmm dd hh:mm:ss`)".into());
    }
    let ts = &rest[..15];
    let rest = &rest[16..];
    let normalized = ts.replacen("  ", " 0", 1);
    let parse_ts = || {
        jiff::fmt::strtime::parse("%b %d %H:%M:%S", &normalized)
            .map_err(|e| format!("bad timestamp `{ts}`: {e}"))
    };
    parse_ts()?;
    let now = jiff::ZonedDateTime::now().with_time_zone(tz.clone());
    let mut stamp = None;
    for year in [now.year(), now.year() - 1] {
        let mut b = parse_ts()?;
        b.set_year(Some(year)).map_err(|e| e.to_string())?;
        let dt = b
            .to_datetime()
            .map_err(|e| format!("bad timestamp `{ts}`: {e}"))?;
        let z = dt
            .to_zoned_datetime(tz.clone())
            .map_err(|e| format!("bad timestamp `{ts}`: {e}"))?;
        if z.timestamp() <= now.timestamp() + jiff::SignedDuration::from_hours(24) {
            stamp = Some(z.timestamp());
            break;
        }
    }
    out.timestamp = stamp.map_or(0, |t| t.as_nanosecond().max(0) as u64);
    let (host, rest) = field(rest).unwrap_or((rest, ""));
    push_str(&mut out.attributes, "hostname", host);
    // TAG: alphanumerics up to `[`, `:` or a space.
    let tag_end = rest.find(['[', ':', ' ']).unwrap_or(rest.len());
    let (tag, mut rest) = rest.split_at(tag_end);
    push_str(&mut out.attributes, "appname", tag);
    if let Some(r) = rest.strip_prefix('[') {
        let end = r.find(']').ok_or("unterminated [PID]")?;
        push_str(&mut out.attributes, "proc_id", &r[..end]);
        rest = &r[end + 1..];
    }
    let msg = rest.strip_prefix(':').unwrap_or(rest);
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    if !msg.is_empty() {
        out.attributes
            .push(("message".into(), Value::Str(msg.into())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::entry::map_get;

    fn get<'a>(p: &'a Parsed, k: &str) -> Option<&'a Value> {
        map_get(&p.attributes, k)
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let p = rfc5424(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high \"x\" \]"] An application event"#,
        )
        .unwrap();
        assert_eq!(p.timestamp, 1_065_910_455_003_000_000);
        assert_eq!((p.severity_number, p.severity_text), (10, "notice"));
        assert_eq!(get(&p, "facility"), Some(&Value::Int(20)));
        assert_eq!(get(&p, "priority"), Some(&Value::Int(165)));
        assert_eq!(
            get(&p, "hostname"),
            Some(&Value::Str("mymachine.example.com".into()))
        );
        assert_eq!(get(&p, "appname"), Some(&Value::Str("evntslog".into())));
        assert_eq!(get(&p, "proc_id"), Some(&Value::Str("1234".into())));
        assert_eq!(get(&p, "msg_id"), Some(&Value::Str("ID47".into())));
        assert_eq!(
            get(&p, "message"),
            Some(&Value::Str("An application event".into()))
        );
        let Some(Value::Map(sd)) = get(&p, "structured_data") else {
            panic!("{p:?}")
        };
        assert_eq!(sd.len(), 2);
        let Value::Map(params) = &sd[1].1 else {
            panic!()
        };
        assert_eq!(
            params[0],
            ("class".into(), Value::Str(r#"high "x" ]"#.into()))
        );
    }

    #[test]
    fn rfc5424_nil_values_and_errors() {
        let p = rfc5424("<13>1 - - - - - -").unwrap();
        assert_eq!(p.timestamp, 0);
        assert_eq!(p.attributes.len(), 3); // priority, facility, version
        for bad in [
            "no pri",
            "<999>1 - - - - - -",
            "<13>2 - - - - - -",
            "<13>1 notatime h a p m -",
            "<13>1 - h a p m [unterminated",
            "<13>1 - h a",
        ] {
            assert!(rfc5424(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3164_in_a_location() {
        let tz = jiff::tz::TimeZone::get("UTC").unwrap();
        let p = rfc3164(
            "<34>Oct  1 22:14:15 mymachine su[42]: 'su root' failed",
            &tz,
        )
        .unwrap();
        assert_eq!((p.severity_number, p.severity_text), (18, "crit"));
        assert_eq!(get(&p, "facility"), Some(&Value::Int(4)));
        assert_eq!(get(&p, "hostname"), Some(&Value::Str("mymachine".into())));
        assert_eq!(get(&p, "appname"), Some(&Value::Str("su".into())));
        assert_eq!(get(&p, "proc_id"), Some(&Value::Str("42".into())));
        assert_eq!(
            get(&p, "message"),
            Some(&Value::Str("'su root' failed".into()))
        );
        let z = jiff::Timestamp::from_nanosecond(p.timestamp as i128)
            .unwrap()
            .to_zoned_datetime(tz.clone());
        assert_eq!((z.month(), z.day(), z.hour(), z.second()), (10, 1, 22, 15));
        let ny = jiff::tz::TimeZone::get("America/New_York").unwrap();
        let q = rfc3164("<34>Oct  1 22:14:15 mymachine su: x", &ny).unwrap();
        assert_eq!(q.timestamp - p.timestamp, 4 * 3600 * 1_000_000_000);
        assert!(rfc3164("<34>yesterday-ish host app: x", &tz).is_err());
    }
}
