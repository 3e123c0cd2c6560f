//! Kubernetes resource quantities (`100m`, `1.5`, `512Mi`, `2Gi`, `1e3`), as the API's
//! `resource.Quantity` serializes them, read into numbers (cores, bytes, counts).

/// The value of a quantity string, or `None` when it is not one.
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "+" || num == "-" {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    // Fractions divide (3800m is 3.8, where 3800 * 1e-3 is not).
    match suffix {
        "n" => return Some(n / 1e9),
        "u" => return Some(n / 1e6),
        "m" => return Some(n / 1e3),
        _ => {}
    }
    let scale = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn every_suffix_kind() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("3800m"), Some(3.8));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("1.5"), Some(1.5));
        assert_eq!(parse("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("3k"), Some(3000.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("250000n"), Some(0.00025));
        assert_eq!(parse("8010172Ki"), Some(8010172.0 * 1024.0));
        assert_eq!(parse(""), None);
        assert_eq!(parse("Mi"), None);
        assert_eq!(parse("5Xi"), None);
    }
}
