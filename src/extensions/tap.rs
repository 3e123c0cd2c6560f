//! `tap` extension (ferrotel's own; no Collector has one): serves `ferrotel tap`, which prints a
//! sample of what flows through a running collector at a chosen point, in the `debug`
//! exporter's format. Off unless the config lists it in `service.extensions`; served only on a
//! Unix socket or a loopback address, as the data is shown as it is.
//!
//! Each connection sends one [`crate::tap::Request`] line and gets `ok tapping ...`, then the
//! text of each batch that passes the point until `limit` items were shown, then a line
//! `-- N items in M batches, K skipped` (batches the tap was too slow for; the pipeline never
//! waits for a tap). A client that closes early ends its tap. At most [`MAX_TAPS`] at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::tap::{Endpoint, Request, Taps};

/// Taps served at once; more are answered with an error.
const MAX_TAPS: usize = 8;
/// The longest request line.
const MAX_REQUEST: u64 = 4096;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `unix:///path` or a loopback `host:port`. Default `localhost:55690`.
    pub endpoint: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "localhost:55690".into(),
        }
    }
}

/// `tap`'s identity.
pub const FACTORY: Factory = Factory::extension("tap", Stability::Alpha, parse);

fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    Endpoint::parse(&cfg.endpoint).map_err(|m| key_err(node, &["endpoint"], m))?;
    Ok(Box::new(cfg))
}

impl ExtensionConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        match Endpoint::parse(&self.endpoint) {
            Ok(Endpoint::Tcp(a)) => vec![a],
            _ => Vec::new(),
        }
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let endpoint =
                Endpoint::parse(&self.endpoint).map_err(|e| BuildError::new(&ctx.id, e))?;
            ctx.taps.enable();
            let stop = ctx.shutdown.child_token();
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TAPS));
            let taps = ctx.taps.clone();
            let cannot = |e: std::io::Error| {
                BuildError::new(&ctx.id, format!("cannot listen on {}: {e}", self.endpoint))
            };
            let task = match endpoint {
                Endpoint::Tcp(addr) => {
                    let l = crate::net::server::bind(&addr).await.map_err(cannot)?;
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        loop {
                            let conn = tokio::select! {
                                _ = stop.cancelled() => break,
                                c = l.accept() => c,
                            };
                            if let Ok((s, _)) = conn {
                                spawn_tap(s, taps.clone(), slots.clone(), stop.clone());
                            }
                        }
                    })
                }
                Endpoint::Unix(path) => {
                    // A socket left by an earlier run is replaced.
                    let _ = std::fs::remove_file(&path);
                    let l = tokio::net::UnixListener::bind(&path).map_err(cannot)?;
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        loop {
                            let conn = tokio::select! {
                                _ = stop.cancelled() => break,
                                c = l.accept() => c,
                            };
                            if let Ok((s, _)) = conn {
                                spawn_tap(s, taps.clone(), slots.clone(), stop.clone());
                            }
                        }
                        let _ = std::fs::remove_file(&path);
                    })
                }
            };
            tracing::info!(extension = %ctx.id, endpoint = %self.endpoint, "tap listening");
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

fn spawn_tap<S>(
    s: S,
    taps: Arc<Taps>,
    slots: Arc<tokio::sync::Semaphore>,
    stop: tokio_util::sync::CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(s);
        let Ok(_slot) = slots.try_acquire_owned() else {
            let _ = w
                .write_all(format!("error: {MAX_TAPS} taps are running already\n").as_bytes())
                .await;
            return;
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = serve(r, &mut w, &taps) => {}
        }
        let _ = w.shutdown().await;
    });
}

async fn serve<R, W>(r: R, w: &mut W, taps: &Taps)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    let mut line = String::new();
    let mut r = BufReader::new(r.take(MAX_REQUEST));
    let read = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await;
    let req: Request = match read {
        Ok(Ok(_)) => match serde_json::from_str(line.trim()) {
            Ok(req) => req,
            Err(e) => {
                let _ = w
                    .write_all(format!("error: a bad request: {e}\n").as_bytes())
                    .await;
                return;
            }
        },
        _ => return,
    };
    let point = match crate::tap::resolve(taps, &req) {
        Ok(p) => p,
        Err(e) => {
            let _ = w.write_all(format!("error: {e}\n").as_bytes()).await;
            return;
        }
    };
    let Some(mut sub) = taps.subscribe(&req.pipeline, &point) else {
        let _ = w
            .write_all(b"error: the pipeline was rebuilt; try again\n")
            .await;
        return;
    };
    let at = if point.is_empty() { "input" } else { &point };
    let hello = format!(
        "ok tapping pipeline {} at {at}, up to {} items\n",
        crate::text::escape_control(&req.pipeline),
        req.limit
    );
    if w.write_all(hello.as_bytes()).await.is_err() {
        return;
    }
    let (mut items, mut batches) = (0u64, 0u64);
    // The reader's end tells when the client went away.
    let mut probe = [0u8; 1];
    while items < req.limit {
        let batch = tokio::select! {
            b = sub.rx.recv() => b,
            _ = r.get_mut().read(&mut probe) => None,
        };
        let Some(batch) = batch else { break };
        items += batch.item_count() as u64;
        batches += 1;
        let text = crate::signal::text::render(&batch, req.verbosity);
        if w.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
    let skipped = sub.skipped.load(Ordering::Relaxed);
    let _ = w
        .write_all(format!("-- {items} items in {batches} batches, {skipped} skipped\n").as_bytes())
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn only_loopback_and_unix_endpoints() {
        let c: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert_eq!(c.endpoint, "localhost:55690");
        for ok in [
            "localhost:1",
            "127.0.0.1:9",
            "[::1]:9",
            "unix:///run/ferrotel/tap.sock",
        ] {
            assert!(
                parse(&yaml(&format!("endpoint: '{ok}'\n")).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for bad in ["0.0.0.0:9", ":9", "10.0.0.1:9", "unix://", "example.com:9"] {
            let e = parse(&yaml(&format!("endpoint: '{bad}'\n")).unwrap())
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.path_string(), "endpoint", "{bad}");
        }
    }
}
