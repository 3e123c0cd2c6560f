pub mod debug;
pub mod helper;
pub mod jaeger;
pub mod load_balancing;
pub mod loki;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod prometheus_remote_write;
pub mod zipkin;

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) use crate::config::key_err;

/// Retry rules of an HTTP backend: 429 and 5xx are retryable (with `Retry-After`), any other
/// non-2xx is permanent.
pub(crate) fn classify_http(
    status: reqwest::StatusCode,
    headers: &http::HeaderMap,
    msg: String,
) -> helper::SendError {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status.as_u16() == 429 || status.is_server_error() {
        helper::SendError::Retryable { msg, retry_after }
    } else {
        helper::SendError::Permanent(msg)
    }
}

/// The HTTP client of an HTTP exporter: our rustls config (HTTP/2 or 1.1 by ALPN), the configured
/// headers on every request, ferrotel's user agent.
pub(crate) fn http_client(
    tls: &crate::tls::ClientTlsConfig,
    headers: &BTreeMap<String, String>,
) -> Result<reqwest::Client, String> {
    let tls = tls
        .build(&[b"h2", b"http/1.1"])
        .map_err(|e| e.to_string())?;
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        // Validated at parse time (`validate_headers`).
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .default_headers(map)
        .user_agent(concat!("ferrotel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Checks an exporter endpoint URL: `http://` or `https://` with a host.
pub(crate) fn check_http_url(u: &str) -> Result<(), String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("invalid URL {u:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(format!(
            "invalid URL {u:?}: needs http:// or https:// and a host"
        )),
    }
}
