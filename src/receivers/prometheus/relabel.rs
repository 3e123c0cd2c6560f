//! Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`) with its actions:
//! replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep,
//! lowercase, uppercase.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    /// Default `;`.
    pub separator: String,
    /// Anchored at both ends. Default `(.*)`.
    pub regex: String,
    pub modulus: u64,
    pub target_label: String,
    /// Default `$1`.
    pub replacement: String,
    /// Default `replace`.
    pub action: String,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".into(),
            regex: "(.*)".into(),
            modulus: 0,
            target_label: String::new(),
            replacement: "$1".into(),
            action: "replace".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

#[derive(Debug, Clone)]
pub struct Rule {
    source: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target: String,
    replacement: String,
    action: Action,
}

impl Rule {
    pub fn new(c: &RelabelConfig) -> Result<Rule, String> {
        let action = match c.action.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            other => return Err(format!("unknown relabel action `{other}`")),
        };
        let regex = Regex::new(&format!("^(?s:{})$", c.regex))
            .map_err(|e| format!("bad regex `{}`: {e}", c.regex))?;
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::KeepEqual
                | Action::DropEqual
                | Action::Lowercase
                | Action::Uppercase
        );
        if needs_target && c.target_label.is_empty() {
            return Err(format!(
                "relabel action `{}` needs `target_label`",
                c.action
            ));
        }
        if action == Action::HashMod && c.modulus == 0 {
            return Err("relabel action `hashmod` needs a positive `modulus`".into());
        }
        Ok(Rule {
            source: c.source_labels.clone(),
            separator: c.separator.clone(),
            regex,
            modulus: c.modulus,
            target: c.target_label.clone(),
            // Prometheus writes `${1}`; the regex crate reads `$1` the same way.
            replacement: c.replacement.clone(),
            action,
        })
    }
}

/// Applies the rules; `None` if the label set is dropped.
pub fn apply(rules: &[Rule], mut labels: Labels) -> Option<Labels> {
    for r in rules {
        let value = r
            .source
            .iter()
            .map(|s| labels.get(s).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join(&r.separator);
        match r.action {
            Action::Replace => {
                if let Some(caps) = r.regex.captures(&value) {
                    let mut target = String::new();
                    caps.expand(&r.target, &mut target);
                    let mut v = String::new();
                    caps.expand(&r.replacement, &mut v);
                    if target.is_empty() {
                        continue;
                    }
                    if v.is_empty() {
                        labels.remove(&target);
                    } else {
                        labels.insert(target, v);
                    }
                }
            }
            Action::Keep => {
                if !r.regex.is_match(&value) {
                    return None;
                }
            }
            Action::Drop => {
                if r.regex.is_match(&value) {
                    return None;
                }
            }
            Action::KeepEqual => {
                if labels.get(&r.target).map_or("", String::as_str) != value {
                    return None;
                }
            }
            Action::DropEqual => {
                if labels.get(&r.target).map_or("", String::as_str) == value {
                    return None;
                }
            }
            Action::HashMod => {
                use md5_like::hash64;
                let m = hash64(value.as_bytes()) % r.modulus;
                labels.insert(r.target.clone(), m.to_string());
            }
            Action::LabelMap => {
                let add: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(k, v)| {
                        let caps = r.regex.captures(k)?;
                        let mut name = String::new();
                        caps.expand(&r.replacement, &mut name);
                        Some((name, v.clone()))
                    })
                    .collect();
                labels.extend(add);
            }
            Action::LabelDrop => labels.retain(|k, _| !r.regex.is_match(k)),
            Action::LabelKeep => labels.retain(|k, _| r.regex.is_match(k)),
            Action::Lowercase => {
                labels.insert(r.target.clone(), value.to_lowercase());
            }
            Action::Uppercase => {
                labels.insert(r.target.clone(), value.to_uppercase());
            }
        }
    }
    Some(labels)
}

/// `hashmod` in Prometheus takes the low 8 bytes of the value's MD5 (big endian); a
/// dependency-free MD5 keeps shard assignments identical to Prometheus's.
mod md5_like {
    pub fn hash64(data: &[u8]) -> u64 {
        let d = md5(data);
        u64::from_be_bytes(d[8..16].try_into().expect("8 bytes"))
    }

    fn md5(input: &[u8]) -> [u8; 16] {
        const S: [u32; 64] = [
            7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20,
            5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
            6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
        ];
        let k: Vec<u32> = (0..64)
            .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
            .collect();
        let (mut a0, mut b0, mut c0, mut d0) =
            (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
        let mut msg = input.to_vec();
        let bit_len = (input.len() as u64).wrapping_mul(8);
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bit_len.to_le_bytes());
        for chunk in msg.chunks(64) {
            let m: Vec<u32> = chunk
                .chunks(4)
                .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
                .collect();
            let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
            for i in 0..64 {
                let (f, g) = match i / 16 {
                    0 => ((b & c) | (!b & d), i),
                    1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                    2 => (b ^ c ^ d, (3 * i + 5) % 16),
                    _ => (c ^ (b | !d), (7 * i) % 16),
                };
                let f2 = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
                a = d;
                d = c;
                c = b;
                b = b.wrapping_add(f2.rotate_left(S[i]));
            }
            a0 = a0.wrapping_add(a);
            b0 = b0.wrapping_add(b);
            c0 = c0.wrapping_add(c);
            d0 = d0.wrapping_add(d);
        }
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&a0.to_le_bytes());
        out[4..8].copy_from_slice(&b0.to_le_bytes());
        out[8..12].copy_from_slice(&c0.to_le_bytes());
        out[12..].copy_from_slice(&d0.to_le_bytes());
        out
    }

    #[test]
    fn md5_known_answers() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex(md5(b"The quick brown fox jumps over the lazy dog")),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &[RelabelConfig]) -> Vec<Rule> {
        yaml.iter().map(|c| Rule::new(c).unwrap()).collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_usual_pod_annotation_rules() {
        let r = rules(&[
            RelabelConfig {
                source_labels: vec!["__meta_kubernetes_pod_annotation_prometheus_io_scrape".into()],
                regex: "true".into(),
                action: "keep".into(),
                ..Default::default()
            },
            RelabelConfig {
                source_labels: vec!["__meta_kubernetes_pod_annotation_prometheus_io_path".into()],
                regex: "(.+)".into(),
                target_label: "__metrics_path__".into(),
                ..Default::default()
            },
            RelabelConfig {
                source_labels: vec![
                    "__address__".into(),
                    "__meta_kubernetes_pod_annotation_prometheus_io_port".into(),
                ],
                regex: r"([^:]+)(?::\d+)?;(\d+)".into(),
                replacement: "$1:$2".into(),
                target_label: "__address__".into(),
                ..Default::default()
            },
            RelabelConfig {
                regex: "__meta_kubernetes_pod_label_(.+)".into(),
                action: "labelmap".into(),
                ..Default::default()
            },
        ]);
        let out = apply(
            &r,
            l(&[
                ("__address__", "10.0.0.5:8080"),
                (
                    "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                    "true",
                ),
                (
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                    "9100",
                ),
                ("__meta_kubernetes_pod_annotation_prometheus_io_path", "/m"),
                ("__meta_kubernetes_pod_label_app", "shop"),
            ]),
        )
        .unwrap();
        assert_eq!(out["__address__"], "10.0.0.5:9100");
        assert_eq!(out["__metrics_path__"], "/m");
        assert_eq!(out["app"], "shop");
        assert!(apply(&r, l(&[("__address__", "x")])).is_none());
    }

    #[test]
    fn drop_labeldrop_hashmod() {
        let r = rules(&[
            RelabelConfig {
                source_labels: vec!["__name__".into()],
                regex: "go_.*".into(),
                action: "drop".into(),
                ..Default::default()
            },
            RelabelConfig {
                regex: "tmp_.*".into(),
                action: "labeldrop".into(),
                ..Default::default()
            },
            RelabelConfig {
                source_labels: vec!["instance".into()],
                modulus: 4,
                target_label: "shard".into(),
                action: "hashmod".into(),
                ..Default::default()
            },
        ]);
        assert!(apply(&r, l(&[("__name__", "go_goroutines")])).is_none());
        let out = apply(
            &r,
            l(&[("__name__", "up"), ("tmp_x", "1"), ("instance", "a:1")]),
        )
        .unwrap();
        assert!(!out.contains_key("tmp_x"));
        assert!(out["shard"].parse::<u64>().unwrap() < 4);
        assert!(
            Rule::new(&RelabelConfig {
                action: "explode".into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
