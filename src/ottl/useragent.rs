//! `UserAgent`: the browser or client and the OS of a User-Agent string, named as uap-core
//! names them (`Chrome`, `Firefox`, `Edge`, `Mobile Safari`, `curl`, ...; `Other` when unknown).
//! This is a built-in subset of uap-core's rules covering the common browsers, HTTP libraries
//! and operating systems, not its full regex file.

use std::sync::LazyLock;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
use regex::Regex;

/// (regex, family); the first match wins. Versions are the first three numeric groups.
static AGENTS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"Edg(?:e|A|iOS)?/(\d+)\.(\d+)(?:\.(\d+))?", "Edge"),
        (r"(?:OPR|Opera)/(\d+)\.(\d+)(?:\.(\d+))?", "Opera"),
        (
            r"SamsungBrowser/(\d+)\.(\d+)(?:\.(\d+))?",
            "Samsung Internet",
        ),
        (
            r"(?:CriOS|Chrome)/(\d+)\.(\d+)(?:\.(\d+))?.*Mobile",
            "Chrome Mobile",
        ),
        (r"Chrome/(\d+)\.(\d+)(?:\.(\d+))?", "Chrome"),
        (
            r"(?:FxiOS|Firefox)/(\d+)\.(\d+)(?:\.(\d+))?.*Mobile",
            "Firefox Mobile",
        ),
        (r"Firefox/(\d+)\.(\d+)(?:\.(\d+))?", "Firefox"),
        (
            r"Version/(\d+)\.(\d+)(?:\.(\d+))?.*Mobile.*Safari/",
            "Mobile Safari",
        ),
        (r"Version/(\d+)\.(\d+)(?:\.(\d+))?.*Safari/", "Safari"),
        (r"MSIE (\d+)\.(\d+)", "IE"),
        (r"Trident/.*rv:(\d+)\.(\d+)", "IE"),
        (r"^curl/(\d+)\.(\d+)(?:\.(\d+))?", "curl"),
        (r"^Wget/(\d+)\.(\d+)(?:\.(\d+))?", "Wget"),
        (
            r"^python-requests/(\d+)\.(\d+)(?:\.(\d+))?",
            "Python Requests",
        ),
        (r"^okhttp/(\d+)\.(\d+)(?:\.(\d+))?", "okhttp"),
        (
            r"^PostmanRuntime/(\d+)\.(\d+)(?:\.(\d+))?",
            "PostmanRuntime",
        ),
        (r"^Go-http-client/(\d+)\.(\d+)", "Go-http-client"),
        (r"(?i)(Googlebot|bingbot|YandexBot)/(\d+)\.(\d+)", "bot"),
    ]
    .into_iter()
    .map(|(re, name)| (Regex::new(re).expect("a valid built-in regex"), name))
    .collect()
});

static OSES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"Windows NT (\d+\.\d+)", "Windows"),
        (r"(?:iPhone|CPU) OS (\d+)_(\d+)(?:_(\d+))?", "iOS"),
        (r"Mac OS X (\d+)[_.](\d+)(?:[_.](\d+))?", "Mac OS X"),
        (r"Android[ /](\d+)(?:\.(\d+))?(?:\.(\d+))?", "Android"),
        (r"CrOS", "Chrome OS"),
        (r"Ubuntu", "Ubuntu"),
        (r"Fedora", "Fedora"),
        (r"Linux", "Linux"),
    ]
    .into_iter()
    .map(|(re, name)| (Regex::new(re).expect("a valid built-in regex"), name))
    .collect()
});

fn version(caps: &regex::Captures<'_>, from: usize) -> String {
    (from..caps.len())
        .filter_map(|i| caps.get(i).map(|m| m.as_str()))
        .take(3)
        .collect::<Vec<_>>()
        .join(".")
}

/// Windows NT kernel versions by their marketing names, as uap-core reports them.
fn windows_version(nt: &str) -> &str {
    match nt {
        "10.0" => "10",
        "6.3" => "8.1",
        "6.2" => "8",
        "6.1" => "7",
        "6.0" => "Vista",
        "5.1" | "5.2" => "XP",
        other => other,
    }
}

fn kv(key: &str, v: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(V::StringValue(v)),
        }),
        ..Default::default()
    }
}

pub fn parse(ua: &str) -> Vec<KeyValue> {
    let (name, ver) = AGENTS
        .iter()
        .find_map(|(re, family)| {
            let caps = re.captures(ua)?;
            if *family == "bot" {
                let name = caps.get(1).map_or("", |m| m.as_str()).to_string();
                return Some((name, version(&caps, 2)));
            }
            Some((family.to_string(), version(&caps, 1)))
        })
        .unwrap_or_else(|| ("Other".to_string(), String::new()));
    let mut out = vec![kv("user_agent.name", name)];
    if !ver.is_empty() {
        out.push(kv("user_agent.version", ver));
    }
    out.push(kv("user_agent.original", ua.to_string()));
    let (os, os_ver) = OSES
        .iter()
        .find_map(|(re, family)| {
            let caps = re.captures(ua)?;
            let v = match *family {
                "Windows" => windows_version(caps.get(1).map_or("", |m| m.as_str())).to_string(),
                _ => version(&caps, 1),
            };
            Some((family.to_string(), v))
        })
        .unwrap_or_else(|| ("Other".to_string(), String::new()));
    out.push(kv("os.name", os));
    if !os_ver.is_empty() {
        out.push(kv("os.version", os_ver));
    }
    out
}
