pub mod debug;
pub mod file;
pub mod helper;
pub mod jaeger;
pub mod load_balancing;
pub mod loki;
pub mod nop;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod prometheus;
pub mod prometheus_remote_write;
pub mod zipkin;

pub(crate) use crate::config::key_err;

/// Retry rules of an HTTP backend: 429 and 5xx are retryable (with `Retry-After`), any other
/// non-2xx is permanent.
pub(crate) fn classify_http(
    status: reqwest::StatusCode,
    headers: &http::HeaderMap,
    msg: String,
) -> helper::SendError {
    let retry_after = crate::net::client::retry_after(headers);
    if status.as_u16() == 429 || status.is_server_error() {
        helper::SendError::Retryable { msg, retry_after }
    } else {
        helper::SendError::Permanent(msg)
    }
}
