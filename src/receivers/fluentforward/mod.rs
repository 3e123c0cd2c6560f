//! `fluentforward` receiver (alias `fluent_forward`): the Fluentd Forward protocol over TCP, or a
//! Unix socket (`endpoint: unix:///path`), so Fluent Bit and Fluentd agents already on the nodes
//! forward to ferrotel unchanged. All four modes (Message, Forward, PackedForward,
//! CompressedPackedForward); a message with a `chunk` option is acknowledged (`{"ack": chunk}`)
//! only once the pipeline has taken its records, so a client that waits for acks (Fluent Bit
//! `Require_ack_response`, fluentd `require_ack_response`) resends what was refused. A
//! connection is read no faster than the pipeline takes its records (TCP pushes back).
//!
//! A message that cannot be read closes its connection (the stream has lost its framing) and is
//! counted in `otelcol_receiver_malformed_items`. Not built: the `security` handshake (shared
//! key; the Collector has none either) and the UDP heartbeat.

mod events;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::receivers::Output;
use crate::signal::{Batch, Signal};

pub use events::{Event, EventError, ack, event};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `host:port` (TCP) or `unix:///path/to.sock`. Default `0.0.0.0:8006`.
    pub endpoint: String,
    /// Open connections at most (the longest idle is shed beyond). Default 4096.
    pub max_connections: usize,
    /// The largest message read, in bytes; a connection sending a larger one is closed. Default
    /// 64 MiB (Fluent Bit's chunks are a few MiB).
    pub max_message_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:8006".into(),
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
            max_message_size: 64 << 20,
        }
    }
}

/// `fluentforward`'s identity.
pub const FACTORY: Factory = Factory::receiver(
    "fluentforward",
    crate::signal::LOGS,
    Stability::Alpha,
    parse,
)
.aliases(&["fluent_forward"]);

fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    match cfg.endpoint.strip_prefix("unix://") {
        Some("") => {
            return Err(key_err(node, &["endpoint"], "unix:// needs a socket path"));
        }
        Some(_) => {}
        None => crate::net::server::validate_endpoint(&cfg.endpoint)
            .map_err(|m| key_err(node, &["endpoint"], m))?,
    }
    if cfg.max_connections == 0 || cfg.max_message_size == 0 {
        let key = if cfg.max_connections == 0 {
            "max_connections"
        } else {
            "max_message_size"
        };
        return Err(key_err(node, &[key], "must be positive"));
    }
    Ok(Box::new(cfg))
}

struct Conn {
    out: Output,
    malformed: prometheus_client::metrics::counter::Counter,
    max: usize,
    stop: tokio_util::sync::CancellationToken,
}

/// Reads messages from one connection until it closes; what a message holds is pushed before
/// the next is read, and acknowledged when it was taken.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    conn: &Conn,
    slot: &crate::net::server::Slot,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    // Where the message being received ends is found as its bytes come, each byte looked at
    // once (a message arriving in many reads costs linear, not quadratic, scanning).
    let mut scan = crate::msgpack::Scanner::default();
    loop {
        let n = tokio::select! {
            _ = conn.stop.cancelled() => return Ok(()),
            _ = slot.kill.cancelled() => return Ok(()),
            r = sock.read(&mut chunk) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        slot.touch();
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            let end = match scan.advance(&buf[used..]) {
                Ok(Some(len)) => used + len,
                Ok(None) => {
                    if buf.len() - used > conn.max {
                        conn.malformed.inc();
                        tracing::debug!(
                            limit = conn.max,
                            "fluentforward: message larger than max_message_size; closing the connection"
                        );
                        return Ok(());
                    }
                    break;
                }
                Err(e) => {
                    conn.malformed.inc();
                    tracing::debug!(error = %e, "fluentforward: not MessagePack; closing the connection");
                    return Ok(());
                }
            };
            scan = crate::msgpack::Scanner::default();
            let parsed = crate::msgpack::read(&buf[used..end])
                .map_err(|e| EventError(e.to_string()))
                .and_then(|(v, _)| event(v));
            used = end;
            match parsed {
                Ok(e) => {
                    let taken = push(conn, e.records).await;
                    if let (true, Some(c)) = (taken, e.chunk) {
                        sock.write_all(&ack(&c)).await?;
                    }
                }
                Err(e) => {
                    conn.malformed.inc();
                    tracing::debug!(error = %e, "fluentforward: malformed message; closing the connection");
                    return Ok(());
                }
            }
        }
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
    }
}

/// Hands records to the pipeline; true when it took them.
async fn push(conn: &Conn, records: Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>) -> bool {
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    if records.is_empty() {
        return true;
    }
    let batch = Batch::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    match conn.out.push(batch, Default::default()).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "fluentforward: refused downstream; not acknowledged");
            false
        }
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

async fn accept_loop(
    listener: Listener,
    conn: Arc<Conn>,
    slots: crate::net::server::ConnectionSlots,
) {
    loop {
        let accepted: std::io::Result<Box<dyn Stream>> = tokio::select! {
            _ = conn.stop.cancelled() => break,
            r = async {
                match &listener {
                    Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        Box::new(s) as Box<dyn Stream>
                    }),
                    Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Stream>),
                }
            } => r,
        };
        let sock = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "fluentforward: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.open() else {
            continue;
        };
        let conn = conn.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(sock, &conn, &slot).await {
                tracing::debug!(error = %e, "fluentforward: connection closed");
            }
        });
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        if self.endpoint.starts_with("unix://") {
            Vec::new()
        } else {
            vec![self.endpoint.clone()]
        }
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let Some(consumer) = consumers[Signal::Logs.index()].clone() else {
                return Err(BuildError::new(
                    &ctx.id,
                    "the fluentforward receiver has only logs; list it in a logs pipeline",
                ));
            };
            let (listener, transport) = match self.endpoint.strip_prefix("unix://") {
                Some(path) => {
                    let path = std::path::PathBuf::from(path);
                    // A socket file left by an earlier run would refuse the bind.
                    if std::fs::symlink_metadata(&path)
                        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    {
                        let _ = std::fs::remove_file(&path);
                    }
                    let l = tokio::net::UnixListener::bind(&path).map_err(|e| {
                        BuildError::new(&ctx.id, format!("cannot listen on {}: {e}", self.endpoint))
                    })?;
                    (Listener::Unix(l, path), "unix")
                }
                None => {
                    let l = crate::net::server::bind(&self.endpoint)
                        .await
                        .map_err(|e| {
                            BuildError::new(
                                &ctx.id,
                                format!("cannot listen on {}: {e}", self.endpoint),
                            )
                        })?;
                    (Listener::Tcp(l), "tcp")
                }
            };
            let stop = ctx.shutdown.child_token();
            let malformed = ctx
                .telemetry
                .receiver_malformed
                .get_or_create(&crate::telemetry::ReceiverLabels {
                    receiver: ctx.id.to_string(),
                    transport: transport.into(),
                })
                .clone();
            let conn = Arc::new(Conn {
                out: Output::new(&ctx, transport, consumer),
                malformed,
                max: self.max_message_size,
                stop: stop.clone(),
            });
            let slots = crate::net::server::ConnectionSlots::new(
                self.max_connections,
                ctx.telemetry.connection_metrics(&self.endpoint),
            );
            tracing::info!(receiver = %ctx.id, endpoint = %self.endpoint, "Fluent Forward listening");
            let task = tokio::spawn(accept_loop(listener, conn, slots));
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn config_defaults_and_errors_name_the_key() {
        let c: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert_eq!(c.endpoint, "0.0.0.0:8006");
        assert!(parse(&yaml("endpoint: unix:///tmp/x.sock\n").unwrap()).is_ok());
        for (cfg, key) in [
            ("endpoint: nope\n", "endpoint"),
            ("endpoint: 'unix://'\n", "endpoint"),
            ("max_message_size: 0\n", "max_message_size"),
        ] {
            assert_eq!(
                parse(&yaml(cfg).unwrap()).err().unwrap().path_string(),
                key,
                "{cfg}"
            );
        }
    }
}
