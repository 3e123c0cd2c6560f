//! Zipkin v2 spans to OTLP, the inverse of the `zipkin` exporter's mapping (the specification's
//! "OpenTelemetry to Zipkin") and of the Collector's older one, as the Collector's receiver
//! reads them:
//!
//! - the local endpoint's service name is the resource's `service.name`; tags with a resource
//!   attribute's name (`service.*`, `host.*`, `k8s.*`, `telemetry.sdk.*`, ...) go to the
//!   resource; spans are grouped by resource, then by scope;
//! - `otel.scope.name`/`otel.scope.version` (or the older `otel.library.*`) are the scope;
//! - kind from `kind`; without one, a `span.kind` tag (`internal`, ...) or UNSPECIFIED;
//! - status from `otel.status_code` (`OK`/`ERROR`) and `otel.status_description`, or an `error`
//!   tag: ERROR, its value the description unless it is `true`;
//! - `w3c.tracestate` is the trace state; `otel.dropped_*_count` the dropped counts;
//! - links from `otel.link.<i>` (`<trace id>-<span id>`, the exporter's) or `otlp.link.<i>`
//!   (`trace|span|state|{attributes}|dropped`, the Collector's);
//! - annotations are events: `{"name":{attributes}}` (the exporter's), `name|{attributes}|dropped`
//!   (the Collector's) or a plain name;
//! - the other tags are attributes, strings unless `parse_string_tags` finds an int, a double
//!   or a bool; the endpoints add `net.host.ip`/`net.host.port`, `peer.service`,
//!   `net.peer.ip`/`net.peer.port` where the tags do not already have them;
//! - start and end from `timestamp` and `duration` (microseconds); a span without a timestamp
//!   starts at 0 with `otel.zipkin.absentField.startTime: true`, as the Collector marks it.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status};

use super::model::{Endpoint, Kind, ZSpan};
use crate::signal::group::push_span;
use crate::signal::value::{from_json, string_kv};

/// Attribute name prefixes the semantic conventions give resources.
const RESOURCE_PREFIXES: &[&str] = &[
    "service.",
    "telemetry.sdk.",
    "telemetry.auto.",
    "telemetry.distro.",
    "host.",
    "os.",
    "process.",
    "container.",
    "k8s.",
    "cloud.",
    "deployment.",
    "faas.",
    "device.",
    "webengine.",
    "browser.",
    "aws.ecs.",
    "aws.eks.",
    "aws.log.",
    "gcp.cloud_run.",
    "gcp.gce.",
    "heroku.",
    "oci.",
];

fn is_resource_key(k: &str) -> bool {
    RESOURCE_PREFIXES.iter().any(|p| k.starts_with(p))
}

fn any_str(s: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)),
    })
}

/// A tag's value: text, or with `parse_string_tags` the int, double or bool it spells.
fn tag_value(v: String, parse: bool) -> AnyValue {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    if parse {
        if let Ok(i) = v.parse::<i64>() {
            return AnyValue {
                value: Some(V::IntValue(i)),
            };
        }
        if let Ok(d) = v.parse::<f64>()
            && d.is_finite()
            && v.bytes().any(|b| b.is_ascii_digit())
        {
            return AnyValue {
                value: Some(V::DoubleValue(d)),
            };
        }
        match v.as_str() {
            "true" | "TRUE" | "True" => {
                return AnyValue {
                    value: Some(V::BoolValue(true)),
                };
            }
            "false" | "FALSE" | "False" => {
                return AnyValue {
                    value: Some(V::BoolValue(false)),
                };
            }
            _ => {}
        }
    }
    AnyValue {
        value: Some(V::StringValue(v)),
    }
}

/// A JSON object's members as attributes (the exporter's and the Collector's encodings of event
/// and link attributes).
fn json_attrs(o: serde_json::Map<String, serde_json::Value>) -> Vec<KeyValue> {
    o.into_iter()
        .map(|(key, v)| KeyValue {
            key,
            value: Some(from_json(v)),
            ..Default::default()
        })
        .collect()
}

fn event(ts_us: u64, value: String) -> Event {
    let time_unix_nano = ts_us.saturating_mul(1000);
    // The exporter's `{"name":{attributes}}`.
    if value.starts_with('{')
        && let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&value)
        && o.len() == 1
        && let Some((name, serde_json::Value::Object(attrs))) = o.into_iter().next()
    {
        return Event {
            time_unix_nano,
            name,
            attributes: json_attrs(attrs),
            ..Default::default()
        };
    }
    // The Collector's `name|{attributes}|dropped`.
    let parts: Vec<&str> = value.split('|').collect();
    if parts.len() >= 3 {
        let json = parts[1..parts.len() - 1].join("|");
        if let (Ok(serde_json::Value::Object(attrs)), Ok(dropped)) = (
            serde_json::from_str(&json),
            parts[parts.len() - 1].parse::<u32>(),
        ) {
            return Event {
                time_unix_nano,
                name: parts[0].to_string(),
                attributes: json_attrs(attrs),
                dropped_attributes_count: dropped,
            };
        }
    }
    Event {
        time_unix_nano,
        name: value,
        ..Default::default()
    }
}

fn link_ours(v: &str) -> Option<Link> {
    let (t, s) = v.split_once('-')?;
    let (t, s) = (hex::decode(t).ok()?, hex::decode(s).ok()?);
    (t.len() == 16 && s.len() == 8).then(|| Link {
        trace_id: t,
        span_id: s,
        ..Default::default()
    })
}

fn link_collector(v: &str) -> Option<Link> {
    let parts: Vec<&str> = v.split('|').collect();
    if parts.len() < 5 {
        return None;
    }
    let (t, s) = (hex::decode(parts[0]).ok()?, hex::decode(parts[1]).ok()?);
    let json = parts[3..parts.len() - 1].join("|");
    let attrs = match serde_json::from_str(&json).ok()? {
        serde_json::Value::Object(o) => json_attrs(o),
        _ => return None,
    };
    (t.len() == 16 && s.len() == 8).then(|| Link {
        trace_id: t,
        span_id: s,
        trace_state: parts[2].to_string(),
        attributes: attrs,
        dropped_attributes_count: parts[parts.len() - 1].parse().unwrap_or(0),
        ..Default::default()
    })
}

fn take(tags: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let i = tags.iter().position(|(k, _)| k == key)?;
    Some(tags.remove(i).1)
}

fn insert_absent(attrs: &mut Vec<KeyValue>, key: &str, v: AnyValue) {
    if !attrs.iter().any(|kv| kv.key == key) {
        attrs.push(KeyValue {
            key: key.into(),
            value: Some(v),
            ..Default::default()
        });
    }
}

fn endpoint_attrs(attrs: &mut Vec<KeyValue>, e: &Endpoint, remote: bool) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let (ip_key, port_key) = if remote {
        ("net.peer.ip", "net.peer.port")
    } else {
        ("net.host.ip", "net.host.port")
    };
    if remote && !e.service_name.is_empty() {
        insert_absent(
            attrs,
            "peer.service",
            AnyValue {
                value: Some(V::StringValue(e.service_name.clone())),
            },
        );
    }
    let ip = e
        .ipv6
        .map(|a| a.to_string())
        .or(e.ipv4.map(|a| a.to_string()));
    if let Some(ip) = ip {
        insert_absent(
            attrs,
            ip_key,
            AnyValue {
                value: Some(V::StringValue(ip)),
            },
        );
    }
    if e.port > 0 {
        insert_absent(
            attrs,
            port_key,
            AnyValue {
                value: Some(V::IntValue(i64::from(e.port))),
            },
        );
    }
}

/// The resource and scope a span belongs to, and the span itself.
fn convert(z: ZSpan, parse_tags: bool) -> (Vec<KeyValue>, InstrumentationScope, Span) {
    let mut tags = z.tags;
    let mut resource = Vec::new();
    if let Some(svc) = z.local.as_ref().map(|l| &l.service_name)
        && !svc.is_empty()
    {
        resource.push(string_kv("service.name", svc));
    }
    let mut i = 0;
    while i < tags.len() {
        if is_resource_key(&tags[i].0) {
            let (k, v) = tags.remove(i);
            if !resource.iter().any(|kv: &KeyValue| kv.key == k) {
                resource.push(KeyValue {
                    key: k,
                    value: any_str(v),
                    ..Default::default()
                });
            }
        } else {
            i += 1;
        }
    }
    resource.sort_by(|a, b| a.key.cmp(&b.key));
    let scope = InstrumentationScope {
        name: take(&mut tags, "otel.scope.name")
            .or_else(|| take(&mut tags, "otel.library.name"))
            .unwrap_or_default(),
        version: take(&mut tags, "otel.scope.version")
            .or_else(|| take(&mut tags, "otel.library.version"))
            .unwrap_or_default(),
        ..Default::default()
    };
    let kind = match z.kind {
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
        None => match take(&mut tags, "span.kind").as_deref() {
            Some("internal") => SpanKind::Internal,
            Some("client") => SpanKind::Client,
            Some("server") => SpanKind::Server,
            Some("producer") => SpanKind::Producer,
            Some("consumer") => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        },
    };
    let mut status = None;
    let code = take(&mut tags, "otel.status_code");
    let description = take(&mut tags, "otel.status_description");
    let error = take(&mut tags, "error");
    match code.as_deref() {
        Some("OK") | Some("STATUS_CODE_OK") => {
            status = Some(Status {
                code: StatusCode::Ok as i32,
                message: String::new(),
            })
        }
        Some("ERROR") | Some("STATUS_CODE_ERROR") => {
            let message = description
                .or(error.filter(|e| e != "true" && e != "false"))
                .unwrap_or_default();
            status = Some(Status {
                code: StatusCode::Error as i32,
                message,
            })
        }
        _ => {
            if let Some(e) = error.filter(|e| e != "false") {
                status = Some(Status {
                    code: StatusCode::Error as i32,
                    message: if e == "true" { String::new() } else { e },
                });
            }
        }
    }
    let trace_state = take(&mut tags, "w3c.tracestate").unwrap_or_default();
    let dropped = |tags: &mut Vec<(String, String)>, key: &str| {
        take(tags, key)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let dropped_attributes_count = dropped(&mut tags, "otel.dropped_attributes_count");
    let dropped_events_count = dropped(&mut tags, "otel.dropped_events_count");
    let dropped_links_count = dropped(&mut tags, "otel.dropped_links_count");
    let mut links = Vec::new();
    for i in 0.. {
        let (ours, theirs) = (format!("otel.link.{i}"), format!("otlp.link.{i}"));
        let link = match (take(&mut tags, &ours), take(&mut tags, &theirs)) {
            (Some(v), _) => link_ours(&v),
            (None, Some(v)) => link_collector(&v),
            (None, None) => break,
        };
        links.extend(link);
    }
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(tags.len() + 3);
    for (k, v) in tags {
        attributes.push(KeyValue {
            key: k,
            value: Some(tag_value(v, parse_tags)),
            ..Default::default()
        });
    }
    if let Some(l) = &z.local {
        endpoint_attrs(&mut attributes, l, false);
    }
    if let Some(r) = &z.remote {
        endpoint_attrs(&mut attributes, r, true);
    }
    let (start, end) = match z.timestamp {
        Some(ts) => {
            let s = ts.saturating_mul(1000);
            (
                s,
                s.saturating_add(z.duration.unwrap_or(0).saturating_mul(1000)),
            )
        }
        None => {
            attributes.push(KeyValue {
                key: "otel.zipkin.absentField.startTime".into(),
                value: Some(AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(true),
                    ),
                }),
                ..Default::default()
            });
            (0, z.duration.unwrap_or(0).saturating_mul(1000))
        }
    };
    let span = Span {
        trace_id: z.trace_id.to_vec(),
        span_id: z.id.to_vec(),
        trace_state,
        parent_span_id: z
            .parent_id
            .filter(|p| *p != z.id)
            .map(|p| p.to_vec())
            .unwrap_or_default(),
        name: z.name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        dropped_attributes_count,
        events: z
            .annotations
            .into_iter()
            .map(|(ts, v)| event(ts, v))
            .collect(),
        dropped_events_count,
        links,
        dropped_links_count,
        status,
        ..Default::default()
    };
    (resource, scope, span)
}

/// Spans grouped by resource, then scope, in the order they first appear.
pub fn to_otlp(spans: Vec<ZSpan>, parse_string_tags: bool) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    for z in spans {
        let (resource, scope, span) = convert(z, parse_string_tags);
        push_span(&mut out, resource, scope, span);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::value::{find, find_str};

    fn span(tags: &[(&str, &str)]) -> ZSpan {
        ZSpan {
            trace_id: [1; 16],
            id: [2; 8],
            name: "op".into(),
            timestamp: Some(1_000_000),
            duration: Some(250),
            local: Some(Endpoint {
                service_name: "svc".into(),
                ..Default::default()
            }),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn tags_become_resource_scope_status_and_attributes() {
        let rs = to_otlp(
            vec![span(&[
                ("host.name", "node-1"),
                ("otel.scope.name", "lib"),
                ("otel.scope.version", "1.2"),
                ("otel.status_code", "ERROR"),
                ("error", "boom"),
                ("http.status_code", "500"),
                ("w3c.tracestate", "a=b"),
                ("otel.dropped_events_count", "3"),
            ])],
            true,
        );
        let r = rs[0].resource.as_ref().unwrap();
        assert_eq!(find_str(&r.attributes, "service.name"), Some("svc"));
        assert_eq!(find_str(&r.attributes, "host.name"), Some("node-1"));
        let ss = &rs[0].scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("lib", "1.2")
        );
        let s = &ss.spans[0];
        let st = s.status.as_ref().unwrap();
        assert_eq!(
            (st.code, st.message.as_str()),
            (StatusCode::Error as i32, "boom")
        );
        assert_eq!((s.trace_state.as_str(), s.dropped_events_count), ("a=b", 3));
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000_000_000, 1_000_250_000)
        );
        // parse_string_tags: "500" is an int.
        assert_eq!(
            find(&s.attributes, "http.status_code").and_then(|v| v.value.clone()),
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(500))
        );
        assert_eq!(s.attributes.len(), 1, "{:?}", s.attributes);
    }

    #[test]
    fn events_and_links_in_both_encodings() {
        let mut z = span(&[
            (
                "otel.link.0",
                &format!("{}-{}", "ab".repeat(16), "cd".repeat(8)),
            ),
            (
                "otlp.link.1",
                &format!("{}|{}|k=v|{{\"x\":1}}|2", "ef".repeat(16), "01".repeat(8)),
            ),
            ("span.kind", "internal"),
        ]);
        z.annotations = vec![
            (5, r#"{"retry":{"attempt":2,"ok":true}}"#.into()),
            (6, r#"cache|{"hit":false}|1"#.into()),
            (7, "plain".into()),
        ];
        let rs = to_otlp(vec![z], false);
        let s = &rs[0].scope_spans[0].spans[0];
        assert_eq!(s.kind, SpanKind::Internal as i32);
        assert_eq!(s.links.len(), 2);
        assert_eq!(hex::encode(&s.links[0].trace_id), "ab".repeat(16));
        assert_eq!(
            (
                s.links[1].trace_state.as_str(),
                s.links[1].dropped_attributes_count
            ),
            ("k=v", 2)
        );
        assert_eq!(s.links[1].attributes.len(), 1);
        let names: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["retry", "cache", "plain"]);
        assert_eq!(s.events[0].attributes.len(), 2);
        assert_eq!(
            (
                s.events[1].dropped_attributes_count,
                s.events[1].time_unix_nano
            ),
            (1, 6000)
        );
    }

    #[test]
    fn no_timestamp_is_marked_and_services_make_resources() {
        let mut a = span(&[]);
        a.timestamp = None;
        let mut b = span(&[]);
        b.local = Some(Endpoint {
            service_name: "other".into(),
            ipv4: Some(std::net::Ipv4Addr::new(10, 1, 2, 3)),
            port: 99,
            ..Default::default()
        });
        let rs = to_otlp(vec![a, span(&[]), b], false);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].scope_spans[0].spans.len(), 2);
        let first = &rs[0].scope_spans[0].spans[0];
        assert!(find(&first.attributes, "otel.zipkin.absentField.startTime").is_some());
        assert_eq!(first.start_time_unix_nano, 0);
        let other = &rs[1].scope_spans[0].spans[0];
        assert_eq!(find_str(&other.attributes, "net.host.ip"), Some("10.1.2.3"));
    }
}
