//! Input from the network or from files never panics a parser: random strings built from the
//! characters each grammar cares about (plus multi-byte UTF-8) through every receiver parser.

use super::prometheus::parse as prom;
use super::syslog::parse as syslog;
use crate::stanza::entry::Entry;
use crate::stanza::expr::Expr;
use crate::stanza::stateful::{ContainerConfig, FileState, Stages};

/// A small deterministic generator (no dependency, reproducible failures).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn string(&mut self, alphabet: &[&str], max: usize) -> String {
        let n = (self.next() as usize) % max;
        (0..n)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
            .collect()
    }
}

const COMMON: &[&str] = &[
    " ", "\t", "\n", "\r", "\\", "\"", "'", "[", "]", "{", "}", "(", ")", "<", ">", "=", ",", ":",
    "-", "+", ".", "#", "0", "1", "9", "a", "Z", "é", "日", "\u{feff}", "\0",
];

#[test]
fn syslog_parsers_never_panic() {
    let tz = jiff::tz::TimeZone::get("UTC").unwrap();
    let mut g = Lcg(1);
    let extra = [
        "<13>",
        "<191>",
        "1 ",
        "- ",
        "2024-05-01T10:00:00Z ",
        "Oct  1 22:14:15 ",
        "[id k=\"v\"]",
        "@",
    ];
    let alphabet: Vec<&str> = COMMON.iter().chain(extra.iter()).copied().collect();
    for _ in 0..100_000 {
        let s = g.string(&alphabet, 40);
        let _ = syslog::rfc5424(&s);
        let _ = syslog::rfc3164(&s, &tz);
    }
}

#[test]
fn prometheus_parser_never_panics() {
    let mut g = Lcg(2);
    let extra = [
        "# TYPE ",
        "# HELP ",
        "# EOF",
        "counter",
        "histogram",
        "_total",
        "_bucket",
        "le=",
        "NaN",
        "+Inf",
        "m",
    ];
    let alphabet: Vec<&str> = COMMON.iter().chain(extra.iter()).copied().collect();
    for _ in 0..100_000 {
        let s = g.string(&alphabet, 60);
        let _ = prom::parse(&s, false);
        let _ = prom::parse(&s, true);
    }
}

#[test]
fn container_stage_and_expressions_never_panic() {
    let stages = Stages {
        container: Some(ContainerConfig {
            format: None,
            add_metadata_from_filepath: true,
            max_log_size: 64,
        }),
        recombine: None,
    };
    let mut g = Lcg(3);
    let extra = [
        "2024-05-01T10:00:00.1Z",
        "2024-05-01T10:00:00+02:00",
        " stdout ",
        " stderr ",
        " P ",
        " F ",
        "{\"log\":",
        "\"stream\":",
        "\"time\":",
    ];
    let alphabet: Vec<&str> = COMMON.iter().chain(extra.iter()).copied().collect();
    let mut st = FileState::default();
    let mut out = Vec::new();
    let now = std::time::Instant::now();
    for i in 0..100_000u64 {
        let s = g.string(&alphabet, 30);
        stages.feed(
            &mut st,
            &Entry::default(),
            "/var/log/pods/a_b_c/d/0.log",
            i,
            s,
            now,
            &mut out,
        );
    }
    let extra = [
        "body",
        "attributes",
        "matches",
        "and",
        "or",
        "not",
        "nil",
        "true",
        "!=",
    ];
    let alphabet: Vec<&str> = COMMON.iter().chain(extra.iter()).copied().collect();
    let e = Entry::new("x".into(), 0);
    for _ in 0..100_000 {
        let s = g.string(&alphabet, 20);
        if let Ok(x) = Expr::parse(&s) {
            let _ = x.eval(&e);
        }
    }
}
