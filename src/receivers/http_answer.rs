//! How the legacy HTTP receivers (zipkin, jaeger's `thrift_http`) answer: plain-text errors,
//! 429 with `Retry-After` when memory is not available, and the pipeline's verdict as 202, 503
//! with `Retry-After` (retryable) or 400 (permanent).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::component::ConsumeError;

pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

/// 429: not now, memory is in use.
pub(crate) fn busy(msg: String) -> Response {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    r
}

/// The answer to a push into the pipeline.
pub(crate) fn pushed(result: Result<(), ConsumeError>) -> Response {
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(ConsumeError::Retryable {
            reason,
            retry_after,
            ..
        }) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, reason);
            let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(ConsumeError::Permanent(reason)) => text(StatusCode::BAD_REQUEST, reason),
    }
}
