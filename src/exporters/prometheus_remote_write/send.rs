//! Snappy-compressed `WriteRequest`s POSTed one at a time per shard, with the remote-write
//! headers; retry classification of the answers.

use super::*;

pub struct PrwSender {
    pub(super) client: reqwest::Client,
    pub(super) translator: Translator,
    pub(super) dropped: prometheus_client::metrics::counter::Counter,
    pub(super) auth: Option<std::sync::Arc<dyn crate::net::auth::ClientAuthenticator>>,
}

pub struct Writes {
    pub(super) bodies: Vec<Bytes>,
    pub(super) done: AtomicUsize,
}

impl PrwSender {
    pub(super) fn translate(&self, batch: Batch, shards: usize) -> Result<Output, SendError> {
        let Batch::Metrics(resources) = batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?
        else {
            return Err(SendError::Permanent(
                "the prometheus_remote_write exporter takes metrics only".into(),
            ));
        };
        let out = self.translator.translate(&resources, shards);
        if out.dropped_delta_points > 0 {
            self.dropped.inc_by(out.dropped_delta_points as u64);
            tracing::debug!(
                points = out.dropped_delta_points,
                "delta points dropped (not representable)"
            );
        }
        Ok(out)
    }
}

pub(super) fn compress(bodies: Vec<Vec<u8>>) -> Result<Writes, SendError> {
    let mut enc = snap::raw::Encoder::new();
    let bodies = bodies
        .iter()
        .map(|b| enc.compress_vec(b).map(Bytes::from))
        .collect::<Result<_, _>>()
        .map_err(|e| SendError::Permanent(format!("snappy: {e}")))?;
    Ok(Writes {
        bodies,
        done: AtomicUsize::new(0),
    })
}

impl Sender for PrwSender {
    type Request = Writes;

    fn ordered(&self) -> bool {
        true
    }

    fn encode(&self, batch: Batch) -> Result<Writes, SendError> {
        let mut out = self.translate(batch, 1)?;
        compress(out.shards.pop().map(|s| s.bodies).unwrap_or_default())
    }

    fn encode_parts(&self, batch: Batch, shards: usize) -> Result<Vec<Part<Writes>>, SendError> {
        let out = self.translate(batch, shards)?;
        let mut parts = Vec::new();
        for (shard, s) in out.shards.into_iter().enumerate() {
            if !s.bodies.is_empty() {
                parts.push(Part {
                    shard,
                    items: s.points,
                    req: compress(s.bodies)?,
                });
            }
        }
        Ok(parts)
    }

    fn send<'a>(&'a self, req: &'a Writes) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let url = &self.translator.cfg.endpoint;
            while let Some(body) = req.bodies.get(req.done.load(Ordering::Acquire)) {
                let mut rb = self
                    .client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .header(http::header::CONTENT_ENCODING, "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone());
                rb = crate::exporters::helper::client::authorize(rb, self.auth.as_ref()).await?;
                let resp = rb.send().await.map_err(|e| {
                    SendError::retryable(format!("POST {url}: {}", crate::text::error_chain(&e)))
                })?;
                let status = resp.status();
                if !status.is_success() {
                    let headers = resp.headers().clone();
                    let text = resp.bytes().await.unwrap_or_default();
                    let detail = String::from_utf8_lossy(&text[..text.len().min(256)]).into_owned();
                    return Err(super::super::classify_http(
                        status,
                        &headers,
                        format!("POST {url}: HTTP {status}: {detail}"),
                    ));
                }
                req.done.fetch_add(1, Ordering::AcqRel);
            }
            Ok(())
        })
    }
}
