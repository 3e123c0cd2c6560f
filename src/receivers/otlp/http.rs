//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}` with protobuf or JSON bodies, optionally gzip,
//! zstd or deflate compressed. Answers in the request's encoding.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use super::admit::{Admitted, Entry, Refused, entry_for};
use super::config::{CorsConfig, HttpConfig};
use crate::component::ConsumeError;
use crate::net::compression::{self, DecodeError};
use crate::signal::Signal;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Encoding {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone)]
struct SignalState {
    signal: Signal,
    entry: Arc<Entry>,
    limit: usize,
    max_decoded: u64,
    cors: Option<Arc<CorsConfig>>,
    include_metadata: bool,
    /// `compression_algorithms`, lower-cased; None: every encoding the decoder knows.
    algorithms: Option<Arc<Vec<String>>>,
}

pub(super) fn router(
    cfg: &HttpConfig,
    entries: [Option<Arc<Entry>>; crate::signal::Signal::COUNT],
) -> axum::Router {
    let cors = cfg.cors.clone().map(Arc::new);
    let mut r = axum::Router::new();
    // Profiles are the development protocol, at its fixed path.
    let profiles_path = "/v1development/profiles".to_string();
    for (signal, path) in [
        (Signal::Traces, &cfg.traces_url_path),
        (Signal::Metrics, &cfg.metrics_url_path),
        (Signal::Logs, &cfg.logs_url_path),
        (Signal::Profiles, &profiles_path),
    ] {
        let Some(entry) = entry_for(&entries, signal) else {
            continue;
        };
        let st = SignalState {
            signal,
            entry,
            limit: cfg.max_request_body_size,
            max_decoded: cfg.max_decoded_bytes(),
            cors: cors.clone(),
            include_metadata: cfg.include_metadata,
            algorithms: cfg.compression_algorithms.as_ref().map(|a| {
                Arc::new(
                    a.iter()
                        .map(|x| match x.as_str() {
                            // Go's `zlib` is HTTP's `deflate` (zlib-wrapped DEFLATE).
                            "zlib" => "deflate".to_string(),
                            other => other.to_ascii_lowercase(),
                        })
                        .collect(),
                )
            }),
        };
        r = r.route(
            path,
            post(handle)
                .options(preflight)
                .with_state(st)
                // Compressed bodies are limited too; the decompressed size is checked in `handle`.
                .layer(DefaultBodyLimit::max(cfg.max_request_body_size)),
        );
    }
    if !cfg.response_headers.is_empty() {
        let extra: Arc<Vec<(header::HeaderName, HeaderValue)>> = Arc::new(
            cfg.response_headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        header::HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
        );
        r = r.layer(tower::util::MapResponseLayer::new(
            move |mut resp: Response| {
                for (k, v) in extra.iter() {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
                resp
            },
        ));
    }
    r
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

fn error_response(status: StatusCode, enc: Encoding, msg: String) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST => 3,          // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE => 8,    // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
        StatusCode::TOO_MANY_REQUESTS => 8,
        _ => 2, // UNKNOWN
    };
    let st = RpcStatus { code, message: msg };
    match enc {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, PROTOBUF)],
            st.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, JSON)],
            serde_json::json!({"code": st.code, "message": st.message}).to_string(),
        )
            .into_response(),
    }
}

fn origin_allowed(cors: &CorsConfig, origin: &str) -> bool {
    cors.allowed_origins
        .iter()
        .any(|p| wildcard_match(p, origin))
}

/// `*` matches any run of characters (`https://*.example.com`, `http://*`).
fn wildcard_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn add_cors(resp: &mut Response, cors: &Option<Arc<CorsConfig>>, headers: &HeaderMap) {
    let (Some(cors), Some(origin)) = (cors, headers.get(header::ORIGIN)) else {
        return;
    };
    if origin.to_str().is_ok_and(|o| origin_allowed(cors, o)) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

async fn preflight(State(st): State<SignalState>, headers: HeaderMap) -> Response {
    let Some(cors) = &st.cors else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| origin_allowed(cors, o));
    if !origin_ok {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    add_cors(&mut resp, &st.cors, &headers);
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    let mut allowed = vec!["Content-Type".to_string(), "Content-Encoding".to_string()];
    allowed.extend(cors.allowed_headers.iter().cloned());
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if cors.max_age > 0 {
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(cors.max_age),
        );
    }
    resp
}

async fn handle(
    State(st): State<SignalState>,
    peer: Option<axum::Extension<crate::net::server::PeerAddr>>,
    auth: Option<axum::Extension<crate::net::auth::AuthInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = crate::client::ClientInfo::from_headers(
        peer.map(|p| p.0.0.ip()),
        &headers,
        st.include_metadata,
    )
    .with_auth(auth.as_ref().map(|a| &a.0));
    let mut resp = handle_inner(&st, &headers, body, client).await;
    add_cors(&mut resp, &st.cors, &headers);
    resp
}

async fn handle_inner(
    st: &SignalState,
    headers: &HeaderMap,
    body: Bytes,
    client: crate::client::ClientInfo,
) -> Response {
    let enc = match media_type(headers).as_deref() {
        Some(PROTOBUF) | Some("application/protobuf") => Encoding::Protobuf,
        Some(JSON) => Encoding::Json,
        other => {
            let msg = match other {
                None => "missing Content-Type; use application/x-protobuf or application/json"
                    .to_string(),
                Some(t) => format!(
                    "unsupported media type {t:?}; use application/x-protobuf or application/json"
                ),
            };
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::CONTENT_TYPE, "text/plain")],
                msg,
            )
                .into_response();
        }
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("invalid").to_owned())
        .unwrap_or_default();
    // Inflating, transcoding and scanning a large body takes milliseconds of CPU: on the
    // blocking pool, so that the other requests on these workers are not held up behind it.
    let admitted = if super::admit::heavy(&content_encoding, &body) {
        let st2 = st.clone();
        match tokio::task::spawn_blocking(move || {
            let r = prepare(&st2, enc, &content_encoding, &body);
            drop(body);
            crate::admission::release_thread_memory();
            r
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(Box::new(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                enc,
                format!("decoding the request failed: {e}"),
            ))),
        }
    } else {
        prepare(st, enc, &content_encoding, &body)
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let Admitted {
        batch,
        rejected,
        why,
        _reservation,
    } = admitted;
    // The reservation lives until the pipeline has the batch.
    let pushed = st.entry.push(batch, client).await;
    drop(_reservation);
    match pushed {
        Ok(()) => success(st.signal, enc, rejected, why),
        Err(ConsumeError::Retryable {
            reason,
            retry_after,
            ..
        }) => {
            let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, enc, reason);
            let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(ConsumeError::Permanent(reason)) => {
            error_response(StatusCode::BAD_REQUEST, enc, reason)
        }
    }
}

/// Inflates the body (its memory reserved as it grows: many concurrent bombs, each cut at the
/// limit, still cannot outrun memory_limiter) and admits it; or the answer to give.
fn prepare(
    st: &SignalState,
    enc: Encoding,
    content_encoding: &str,
    body: &[u8],
) -> Result<Admitted, Box<Response>> {
    if let Some(allowed) = &st.algorithms {
        let ce = content_encoding.trim().to_ascii_lowercase();
        if !ce.is_empty() && ce != "identity" && !allowed.contains(&ce) {
            return Err(Box::new(
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    [(header::CONTENT_TYPE, "text/plain")],
                    format!(
                        "Content-Encoding {ce:?} is not accepted here (compression_algorithms: {})",
                        allowed.join(", ")
                    ),
                )
                    .into_response(),
            ));
        }
    }
    let (raw, inflating) =
        match compression::decode_reserved(content_encoding, body, st.limit, &st.entry.budget) {
            Ok(b) => b,
            Err(e @ DecodeError::TooLarge(_)) => {
                return Err(Box::new(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    enc,
                    e.to_string(),
                )));
            }
            Err(DecodeError::Busy(crate::admission::Refusal::TooLarge { .. })) => {
                return Err(Box::new(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    enc,
                    "the decompressed body would not fit memory_limiter's spike allowance".into(),
                )));
            }
            Err(DecodeError::Busy(e)) => {
                let mut r = error_response(StatusCode::TOO_MANY_REQUESTS, enc, e.to_string());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
                return Err(Box::new(r));
            }
            Err(e @ DecodeError::Unsupported(_)) => {
                return Err(Box::new(
                    (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        [(header::CONTENT_TYPE, "text/plain")],
                        e.to_string(),
                    )
                        .into_response(),
                ));
            }
            Err(e) => {
                return Err(Box::new(error_response(
                    StatusCode::BAD_REQUEST,
                    enc,
                    e.to_string(),
                )));
            }
        };
    let admitted = admit(st, enc, raw);
    // Admission reserved the body again with its decoded size.
    drop(inflating);
    admitted.map_err(|r| {
        st.entry.refused(st.signal, r.items());
        Box::new(match r {
            Refused::Invalid(msg) => error_response(StatusCode::BAD_REQUEST, enc, msg),
            Refused::TooLarge { msg, .. } => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, enc, msg)
            }
            Refused::Busy { msg, .. } => {
                let mut r = error_response(StatusCode::TOO_MANY_REQUESTS, enc, msg);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
                r
            }
        })
    })
}

/// Admits the decompressed body: protobuf as it is, JSON transcoded to protobuf first.
fn admit(st: &SignalState, enc: Encoding, raw: Vec<u8>) -> Result<Admitted, Refused> {
    match enc {
        Encoding::Protobuf => super::admit::admit_protobuf(
            st.signal,
            axum::body::Bytes::from(raw),
            st.max_decoded,
            &st.entry.budget,
        ),
        Encoding::Json => {
            super::admit::admit_json(st.signal, raw, st.max_decoded, &st.entry.budget)
        }
    }
}

fn success(signal: Signal, enc: Encoding, rejected: i64, why: String) -> Response {
    match enc {
        Encoding::Protobuf => {
            let body = match signal {
                Signal::Traces => ExportTraceServiceResponse {
                    partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: why,
                    }),
                }
                .encode_to_vec(),
                Signal::Metrics => ExportMetricsServiceResponse {
                    partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                        rejected_data_points: rejected,
                        error_message: why,
                    }),
                }
                .encode_to_vec(),
                Signal::Logs => ExportLogsServiceResponse {
                    partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: why,
                    }),
                }
                .encode_to_vec(),
                Signal::Profiles => {
                    use opentelemetry_proto::tonic::collector::profiles::v1development as p;
                    p::ExportProfilesServiceResponse {
                        partial_success: (rejected > 0).then_some(
                            p::ExportProfilesPartialSuccess {
                                rejected_profiles: rejected,
                                error_message: why,
                            },
                        ),
                    }
                    .encode_to_vec()
                }
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
        }
        Encoding::Json => {
            // proto3 JSON: int64 as a decimal string, lowerCamelCase names.
            let body = if rejected > 0 {
                let field = match signal {
                    Signal::Traces => "rejectedSpans",
                    Signal::Metrics => "rejectedDataPoints",
                    Signal::Logs => "rejectedLogRecords",
                    Signal::Profiles => "rejectedProfiles",
                };
                serde_json::json!({"partialSuccess": {field: rejected.to_string(), "errorMessage": why}}).to_string()
            } else {
                "{}".to_string()
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], body).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("http://*", "http://localhost:3000"));
        assert!(wildcard_match(
            "https://*.example.com",
            "https://app.example.com"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "https://example.org"
        ));
        assert!(wildcard_match("https://exact.io", "https://exact.io"));
        assert!(!wildcard_match("http://*", "https://x"));
    }

    fn decode(signal: Signal, enc: Encoding, raw: Vec<u8>) -> Result<crate::signal::Batch, String> {
        let budget = crate::admission::Budget::new();
        let admitted = match enc {
            Encoding::Protobuf => {
                super::super::admit::admit_protobuf(signal, raw.into(), u64::MAX, &budget)
            }
            Encoding::Json => super::super::admit::admit_json(signal, raw, u64::MAX, &budget),
        };
        match admitted {
            Ok(a) => a.batch.into_decoded().map_err(|e| e.to_string()),
            Err(Refused::Invalid(m)) => Err(m),
            Err(other) => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn json_with_hex_ids_and_string_ints() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"op","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
            "attributes":[{"key":"n","value":{"intValue":"42"}}]}]}]}]}"#;
        let b = decode(Signal::Traces, Encoding::Json, body.to_vec()).unwrap();
        let crate::signal::Batch::Traces(rs) = b else {
            unreachable!()
        };
        let sp = &rs[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&sp.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(sp.kind, 2);
        assert_eq!(sp.start_time_unix_nano, 1544712660000000000);
        assert_eq!(sp.end_time_unix_nano, 1544712661000000000);
    }

    #[test]
    fn json_with_a_short_trace_id_is_refused() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8e","spanId":"eee19b7ec3c1b174","name":"x"}]}]}]}"#;
        let e = decode(Signal::Traces, Encoding::Json, body.to_vec()).unwrap_err();
        assert!(e.contains("traceId must be 16 bytes"), "{e}");
        let e = decode(
            Signal::Logs,
            Encoding::Json,
            b"{\"resourceLogs\": [".to_vec(),
        )
        .unwrap_err();
        assert!(e.contains("invalid OTLP/JSON logs"), "{e}");
        assert!(
            decode(
                Signal::Metrics,
                Encoding::Protobuf,
                b"\xff\xff\xff".to_vec()
            )
            .unwrap_err()
            .contains("invalid OTLP/protobuf metrics")
        );
        assert!(
            decode(Signal::Traces, Encoding::Protobuf, Vec::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn amplified_requests_are_refused_before_decoding() {
        // 200,000 empty spans: 400 KB on the wire, ~48 MB decoded.
        let mut scope = Vec::new();
        for _ in 0..200_000 {
            scope.extend_from_slice(&[0x12, 0x00]);
        }
        let mut rs = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut rs);
        rs.extend_from_slice(&scope);
        let mut req = vec![0x0a];
        prost::encoding::encode_varint(rs.len() as u64, &mut req);
        req.extend_from_slice(&rs);
        let budget = crate::admission::Budget::new();
        let limit = 16 * req.len() as u64;
        match super::super::admit::admit_protobuf(
            Signal::Traces,
            req.clone().into(),
            limit,
            &budget,
        ) {
            Err(Refused::TooLarge { msg, items }) => {
                assert_eq!(items, 200_000);
                assert!(
                    msg.contains("200000 spans") && msg.contains("max_decoded_size"),
                    "{msg}"
                );
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("admitted"),
        }
        // The same as JSON (`{}` per span): stopped while transcoding, once past the limit.
        let spans = vec!["{}"; 200_000].join(",");
        let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
        let limit = 16 * json.len() as u64;
        match super::super::admit::admit_json(Signal::Traces, json.into_bytes(), limit, &budget) {
            Err(Refused::TooLarge { msg, .. }) => {
                assert!(msg.contains("max_decoded_size"), "{msg}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("admitted"),
        }
        // Under a memory_limiter: a request larger than its spike allowance is refused for
        // good, one that does not fit now is refused for a while.
        let limited = crate::admission::Budget::new();
        limited.limit(u64::MAX / 2, 1 << 20);
        assert!(matches!(
            super::super::admit::admit_protobuf(Signal::Traces, req.into(), u64::MAX, &limited),
            Err(Refused::TooLarge { .. })
        ));
    }
}
