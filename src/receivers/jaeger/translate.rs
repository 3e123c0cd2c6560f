//! Jaeger spans to OTLP, the inverse of the `jaeger` exporter's mapping (the specification's
//! Jaeger mapping) as the Collector's receiver reads them: the process is the resource
//! (`service.name` and its tags); the parent is Thrift's `parentSpanId` or the first `CHILD_OF`
//! reference in the same trace, and the other references are links; tags are typed
//! attributes except `span.kind` (the kind), `otel.status_code`/`otel.status_description` or
//! `error` (the status), `w3c.tracestate`, `otel.scope.name`/`otel.scope.version` (or
//! `otel.library.*`: the scope) and `otel.dropped_*_count`; without a status tag the HTTP status
//! code gives the status, as the Collector derives it; logs are events, named by their `event`
//! field (or `message`, which the OpenTelemetry SDKs' Jaeger exporters wrote).

use opentelemetry_proto::tonic::common::v1::{
    InstrumentationScope, KeyValue, any_value::Value as V,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status};

use super::model::{JBatch, JProcess, JSpan, RefType};
use crate::signal::group::push_span;
use crate::signal::value::string_kv;

fn take(tags: &mut Vec<KeyValue>, key: &str) -> Option<V> {
    let i = tags.iter().position(|kv| kv.key == key)?;
    tags.remove(i).value.and_then(|v| v.value)
}

fn take_str(tags: &mut Vec<KeyValue>, key: &str) -> Option<String> {
    match take(tags, key)? {
        V::StringValue(s) => Some(s),
        V::BoolValue(b) => Some(b.to_string()),
        V::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn resource_of(p: &JProcess) -> Vec<KeyValue> {
    let mut attrs = Vec::with_capacity(p.tags.len() + 1);
    if !p.service_name.is_empty() {
        attrs.push(string_kv("service.name", &p.service_name));
    }
    for t in &p.tags {
        if !attrs.iter().any(|a: &KeyValue| a.key == t.key) {
            attrs.push(t.clone());
        }
    }
    attrs
}

fn convert(s: JSpan) -> (Option<Vec<KeyValue>>, InstrumentationScope, Span) {
    let mut tags = s.tags;
    let scope = InstrumentationScope {
        name: take_str(&mut tags, "otel.scope.name")
            .or_else(|| take_str(&mut tags, "otel.library.name"))
            .unwrap_or_default(),
        version: take_str(&mut tags, "otel.scope.version")
            .or_else(|| take_str(&mut tags, "otel.library.version"))
            .unwrap_or_default(),
        ..Default::default()
    };
    let kind = match take_str(&mut tags, "span.kind").as_deref() {
        Some("client") => SpanKind::Client,
        Some("server") => SpanKind::Server,
        Some("producer") => SpanKind::Producer,
        Some("consumer") => SpanKind::Consumer,
        Some("internal") => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    };
    let code = take_str(&mut tags, "otel.status_code");
    let description = take_str(&mut tags, "otel.status_description").unwrap_or_default();
    let error = take(&mut tags, "error");
    let is_error = matches!(&error, Some(V::BoolValue(true)))
        || matches!(&error, Some(V::StringValue(e)) if e == "true");
    let status = match code.as_deref() {
        Some("OK") => Some(Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        }),
        Some("ERROR") => Some(Status {
            code: StatusCode::Error as i32,
            message: description,
        }),
        _ if is_error => Some(Status {
            code: StatusCode::Error as i32,
            message: description,
        }),
        // No status tag: the HTTP status code says, as the semantic conventions have it (5xx
        // is an error; 4xx too for a client, not for a server).
        _ => match tags
            .iter()
            .find(|kv| kv.key == "http.status_code" || kv.key == "http.response.status_code")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                V::IntValue(c) => Some(*c),
                V::StringValue(c) => c.parse().ok(),
                _ => None,
            }) {
            Some(c)
                if c >= 500
                    || (c >= 400 && kind != SpanKind::Server)
                    || !(100..600).contains(&c) =>
            {
                Some(Status {
                    code: StatusCode::Error as i32,
                    message: String::new(),
                })
            }
            _ => None,
        },
    };
    let trace_state = take_str(&mut tags, "w3c.tracestate").unwrap_or_default();
    let mut dropped = |key: &str| match take(&mut tags, key) {
        Some(V::IntValue(n)) => u32::try_from(n).unwrap_or(0),
        Some(V::StringValue(n)) => n.parse().unwrap_or(0),
        _ => 0,
    };
    let dropped_attributes_count = dropped("otel.dropped_attributes_count");
    let dropped_events_count = dropped("otel.dropped_events_count");
    let dropped_links_count = dropped("otel.dropped_links_count");
    let mut parent = s.parent_span_id;
    let mut links = Vec::new();
    for (kind, trace, span) in s.references {
        if parent.is_none() && kind == RefType::ChildOf && trace == s.trace_id {
            parent = Some(span);
        } else if parent != Some(span) || trace != s.trace_id {
            links.push(Link {
                trace_id: trace.to_vec(),
                span_id: span.to_vec(),
                ..Default::default()
            });
        }
    }
    let events = s
        .logs
        .into_iter()
        .map(|(ts, mut fields)| Event {
            time_unix_nano: ts,
            // `event` (the specification's key); the OpenTelemetry SDKs' Jaeger exporters
            // (to their last release) and older Collectors wrote `message`.
            name: take_str(&mut fields, "event")
                .or_else(|| take_str(&mut fields, "message"))
                .unwrap_or_default(),
            attributes: fields,
            ..Default::default()
        })
        .collect();
    let span = Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state,
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.operation_name,
        kind: kind as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.start_unix_nano.saturating_add(s.duration_nano),
        attributes: tags,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status,
        ..Default::default()
    };
    (s.process.as_ref().map(resource_of), scope, span)
}

/// A batch as OTLP: one resource for the batch's process (and one for each span that brings a
/// process of its own), spans grouped by scope.
pub fn to_otlp(batch: JBatch) -> Vec<ResourceSpans> {
    let default = resource_of(&batch.process);
    let mut out: Vec<ResourceSpans> = Vec::new();
    for s in batch.spans {
        let (own, scope, span) = convert(s);
        let resource = own.unwrap_or_else(|| default.clone());
        push_span(&mut out, resource, scope, span);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::value::{find, find_str};
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn tag(k: &str, v: V) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn tags_become_kind_status_scope_and_references_parent_and_links() {
        let span = JSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            references: vec![
                (RefType::FollowsFrom, [9; 16], [8; 8]),
                (RefType::ChildOf, [1; 16], [3; 8]),
            ],
            operation_name: "GET /x".into(),
            start_unix_nano: 100,
            duration_nano: 50,
            tags: vec![
                tag("span.kind", V::StringValue("client".into())),
                tag("otel.status_code", V::StringValue("ERROR".into())),
                tag("otel.status_description", V::StringValue("boom".into())),
                tag("error", V::BoolValue(true)),
                tag("otel.scope.name", V::StringValue("lib".into())),
                tag("w3c.tracestate", V::StringValue("k=v".into())),
                tag("otel.dropped_links_count", V::IntValue(4)),
                tag("http.status_code", V::IntValue(503)),
            ],
            logs: vec![(
                120,
                vec![
                    tag("event", V::StringValue("retry".into())),
                    tag("n", V::IntValue(1)),
                ],
            )],
            ..Default::default()
        };
        let rs = to_otlp(JBatch {
            process: JProcess {
                service_name: "shop".into(),
                tags: vec![tag("host.name", V::StringValue("node".into()))],
            },
            spans: vec![span],
        });
        let r = rs[0].resource.as_ref().unwrap();
        assert_eq!(find_str(&r.attributes, "service.name"), Some("shop"));
        assert_eq!(find_str(&r.attributes, "host.name"), Some("node"));
        let ss = &rs[0].scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "lib");
        let s = &ss.spans[0];
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(
            s.status.as_ref().map(|st| (st.code, st.message.as_str())),
            Some((2, "boom"))
        );
        assert_eq!(s.parent_span_id, vec![3; 8]);
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.links[0].span_id, vec![8; 8]);
        assert_eq!((s.trace_state.as_str(), s.dropped_links_count), ("k=v", 4));
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (100, 150));
        assert_eq!(s.attributes.len(), 1);
        assert!(find(&s.attributes, "http.status_code").is_some());
        assert_eq!(s.events[0].name, "retry");
        assert_eq!(s.events[0].attributes.len(), 1);
    }

    #[test]
    fn without_a_status_tag_the_http_code_decides() {
        let span = |kind: &str, code: i64| JSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            tags: vec![
                tag("span.kind", V::StringValue(kind.into())),
                tag("http.status_code", V::IntValue(code)),
            ],
            logs: vec![(1, vec![tag("message", V::StringValue("old-style".into()))])],
            ..Default::default()
        };
        let status = |kind: &str, code: i64| {
            let rs = to_otlp(JBatch {
                spans: vec![span(kind, code)],
                ..Default::default()
            });
            let s = &rs[0].scope_spans[0].spans[0];
            assert_eq!(s.events[0].name, "old-style");
            s.status.as_ref().map(|st| st.code)
        };
        assert_eq!(status("server", 503), Some(StatusCode::Error as i32));
        assert_eq!(status("server", 404), None);
        assert_eq!(status("client", 404), Some(StatusCode::Error as i32));
        assert_eq!(status("client", 200), None);
    }
}
