//! Durations written as the Collector writes them (`200ms`, `5s`, `1m30s`) and sizes.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// Parses a Go `time.ParseDuration` string: a sequence of decimal numbers with units `ns`,
/// `us`/`µs`, `ms`, `s`, `m`, `h`. A bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected a number, e.g. 5s or 200ms"
            ));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: bad number {:?}", &rest[..num_end]))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"
                ));
            }
            u => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {u:?} (ns, us, ms, s, m, h)"
                ));
            }
        };
        total += n * nanos_per;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("invalid duration {s:?}: too large"));
    }
    Ok(Duration::from_nanos(total as u64))
}

struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a duration such as 200ms, 5s or 1m")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::custom(format!(
                "invalid duration {v}: missing unit, write e.g. {v}s or {v}ms"
            )))
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// `#[serde(deserialize_with = "crate::config::units::duration")]`
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// For `Option<Duration>` fields.
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<DurationWrap>::deserialize(d).map(|o| o.map(|w| w.0))
}

/// A byte size as the Collector's stanza reads it: a number of bytes, or a string with a unit
/// (`"1MiB"`, `"16kb"`, `"2 MB"`; decimal `kb/mb/gb`, binary `kib/mib/gib`, case-insensitive).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim().to_ascii_lowercase());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a byte size (expected e.g. 1048576 or \"1MiB\")"))?;
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1048576.0,
        "gib" | "gi" => 1073741824.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown byte unit `{unit}` (b, kb, mb, gb, kib, mib, gib)"
            ));
        }
    };
    Ok((n * mult) as u64)
}

/// Serde adapter for [`parse_bytes`]: an integer or a string.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

struct DurationWrap(Duration);
impl<'de> Deserialize<'de> for DurationWrap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration(d).map(DurationWrap)
    }
}

/// An enum value read in any case, where the Collector lower-cases before matching
/// (`verbosity: Detailed`, `level: Normal`): the text is lower-cased, then read as `T`.
pub fn any_case<'de, D: Deserializer<'de>, T: de::DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    T::deserialize(de::value::StrDeserializer::<de::value::Error>::new(
        &s.to_ascii_lowercase(),
    ))
    .map_err(de::Error::custom)
}

/// [`any_case`] for `Option<T>` keys (use with `#[serde(default)]`).
pub fn opt_any_case<'de, D: Deserializer<'de>, T: de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    any_case(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("16kb").unwrap(), 16_000);
        assert_eq!(parse_bytes("2 KiB").unwrap(), 2048);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(
            parse_bytes("1 parsec")
                .unwrap_err()
                .contains("unknown byte unit")
        );
        assert!(parse_bytes("lots").unwrap_err().contains("not a byte size"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("5 sec")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(
            parse_duration("s")
                .unwrap_err()
                .contains("expected a number")
        );
    }
}
