//! What every HTTP backend stand-in of the exporter tests shares: a script of answers to give
//! before the stand-in checks requests (a status with an optional `Retry-After`, each once, in
//! order), a one-time delay (a slow backend), the count of calls, and the server itself. The
//! checks are each test's own: they are written from each backend's published schema.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

#[derive(Default)]
pub struct Script {
    steps: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    delay_ms: Mutex<u64>,
    calls: AtomicUsize,
}

impl Script {
    /// The next request not yet answered from the script gets `status` (and `Retry-After`).
    pub fn answer(&self, status: u16, retry_after: Option<&'static str>) {
        self.steps.lock().unwrap().push_back((status, retry_after));
    }

    /// The next request waits `ms` before it is answered.
    pub fn delay_next(&self, ms: u64) {
        *self.delay_ms.lock().unwrap() = ms;
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// For each request: counts it, waits a pending delay, and returns the next scripted answer
    /// if there is one (else the stand-in checks the request).
    pub async fn next(&self) -> Option<Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = std::mem::take(&mut *self.delay_ms.lock().unwrap());
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let (status, retry_after) = self.steps.lock().unwrap().pop_front()?;
        let mut r = response(status, "scripted");
        if let Some(ra) = retry_after {
            r.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        Some(r)
    }
}

/// A response with `status` and `body`.
pub fn response(status: u16, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// Serves `POST path` on `127.0.0.1:port` with `handler`, on `rt`.
pub fn serve_post<F, Fut>(rt: &tokio::runtime::Runtime, port: u16, path: &'static str, handler: F)
where
    F: Fn(HeaderMap, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    rt.spawn(async move {
        let app = axum::Router::new().route(
            path,
            axum::routing::post(move |headers: HeaderMap, body: Bytes| handler(headers, body)),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}
