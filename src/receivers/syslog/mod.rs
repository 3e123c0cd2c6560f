//! `syslog` receiver: RFC 5424 or RFC 3164 messages over TCP (octet counting or newline framing)
//! and UDP, as log records with the Collector's syslog attributes.
//!
//! The body is the message as received; the parsed fields go to attributes and the syslog
//! severity to the OTel severity. A message that does not parse is counted
//! (`otelcol_receiver_malformed_items`) and still sent, as a raw body without attributes.
//! Messages are sent in batches of what one read brought in; a TCP connection is not read
//! further while its batch waits for the pipeline (backpressure to the sender).

pub mod parse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::component::{
    BoxFuture, BuildError, ConsumeError, Context, Factory, Lifecycle, ReceiverConfig,
    SignalConsumers, Stability, now_nanos,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::signal::{Batch, Signal};
use crate::stanza::config::Operators;
use crate::stanza::encoding::Encoding;
use crate::stanza::entry::Value;
use crate::stanza::entry::{Entry, LogGroups};
use crate::telemetry::ReceiverLabels;

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Required, e.g. `0.0.0.0:54526`.
    pub listen_address: String,
    /// Longest newline-framed message. Default 1MiB.
    #[serde(deserialize_with = "units::bytes")]
    pub max_log_size: u64,
    /// Adds `net.*` attributes of the connection. Default false.
    pub add_attributes: bool,
    /// `utf-8` (default) or an ASCII-compatible WHATWG label (`latin1`, `shift_jis`, ...).
    pub encoding: String,
    /// Accepted for compatibility; TCP is always split into frames.
    pub one_log_per_packet: bool,
    /// TLS on the listener (RFC 5425): `cert_file`, `key_file`, `client_ca_file` (mTLS),
    /// `min_version`, `max_version`. Off when absent.
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<crate::net::tls::ServerTlsConfig>,
    /// Open connections at most; past it the longest silent one is closed for the new one.
    /// Default 4096.
    pub max_connections: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            tls: None,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
            listen_address: String::new(),
            max_log_size: 1 << 20,
            add_attributes: false,
            encoding: "utf-8".into(),
            one_log_per_packet: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    /// Required, e.g. `0.0.0.0:54526`.
    pub listen_address: String,
    pub add_attributes: bool,
    /// As for TCP.
    pub encoding: String,
    /// A datagram is one message (default false: split at newlines).
    pub one_log_per_packet: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            listen_address: String::new(),
            add_attributes: false,
            encoding: "utf-8".into(),
            one_log_per_packet: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `rfc5424` or `rfc3164`. Required.
    pub protocol: Protocol,
    /// IANA zone for RFC 3164 timestamps (they carry none). Default UTC.
    #[serde(default = "utc")]
    pub location: String,
    /// Frames on TCP are `LEN SP MSG` (RFC 6587 octet counting). Default false; a frame that
    /// starts with a digit is read as octet-counted either way, since a message starts with `<`.
    #[serde(default)]
    pub enable_octet_counting: bool,
    /// Largest octet-counted frame. Default 8192.
    #[serde(default = "max_octets")]
    pub max_octets: usize,
    /// `LF` (default) or `NUL`: what ends a newline-framed message.
    #[serde(default)]
    pub non_transparent_framing_trailer: Option<String>,
    /// Accept messages without `<PRI>`. Default false.
    #[serde(default)]
    pub allow_skip_pri_header: bool,
    pub tcp: Option<TcpConfig>,
    pub udp: Option<UdpConfig>,
    /// Stanza operators applied after the syslog parser (`add`, `move`, `router`, ...; not the
    /// per-file `container` and `recombine`).
    #[serde(default)]
    pub operators: Option<serde_json::Value>,
    #[serde(skip)]
    pub compiled: Compiled,
    /// Accepted for compatibility: a retryable refusal from the pipeline is always retried
    /// (backoff up to 5s) until accepted or shutdown, which holds back the TCP sender.
    #[serde(default)]
    pub retry_on_failure: Option<crate::stanza::config::RetryOnFailure>,
}

/// The compiled operators; equal whenever `operators` is, which is what comparisons check.
#[derive(Clone, Default)]
pub struct Compiled(pub Arc<Operators>);

impl PartialEq for Compiled {
    fn eq(&self, _: &Compiled) -> bool {
        true
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} operators", self.0.ops.len())
    }
}

fn utc() -> String {
    "UTC".into()
}
fn max_octets() -> usize {
    8192
}

/// The filelog encodings whose newline is one byte (syslog frames are byte-delimited).
fn text_encoding(name: &str) -> Result<Encoding, String> {
    match crate::stanza::encoding::encoding(name)? {
        Encoding::Utf16 { .. } => Err(format!("encoding `{name}` is not supported for syslog")),
        e => Ok(e),
    }
}

/// The largest message or line a buffer is sized for: buffers of this size are allocated per
/// connection, so the bound is what the process can hold for many of them.
const MAX_MESSAGE: u64 = 64 << 20;

/// `syslog`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::receiver("syslog", crate::signal::LOGS, Stability::Alpha, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let mut cfg: Config = from_node(node)?;
    cfg.compiled = Compiled(Arc::new(Operators::stateless(node.get("operators"))?));
    if cfg.tcp.is_none() && cfg.udp.is_none() {
        return Err(key_err(
            node,
            &["tcp"],
            "one of `tcp` and `udp` is required",
        ));
    }
    if let Some(t) = &cfg.tcp {
        crate::net::server::validate_endpoint(&t.listen_address)
            .map_err(|m| key_err(node, &["tcp", "listen_address"], m))?;
        if let Some(tls) = &t.tls {
            tls.validate()
                .map_err(|m| key_err(node, &["tcp", "tls"], m))?;
        }
        text_encoding(&t.encoding).map_err(|m| key_err(node, &["tcp", "encoding"], m))?;
        if !(1..=1_000_000).contains(&t.max_connections) {
            return Err(key_err(
                node,
                &["tcp", "max_connections"],
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=MAX_MESSAGE).contains(&t.max_log_size) {
            return Err(key_err(
                node,
                &["tcp", "max_log_size"],
                format!("must be between 1 and {MAX_MESSAGE} bytes (64 MiB)"),
            ));
        }
    }
    if let Some(u) = &cfg.udp {
        crate::net::server::validate_endpoint(&u.listen_address)
            .map_err(|m| key_err(node, &["udp", "listen_address"], m))?;
        text_encoding(&u.encoding).map_err(|m| key_err(node, &["udp", "encoding"], m))?;
    }
    jiff::tz::TimeZone::get(&cfg.location).map_err(|e| {
        key_err(
            node,
            &["location"],
            format!("unknown location `{}`: {e}", cfg.location),
        )
    })?;
    match cfg.non_transparent_framing_trailer.as_deref() {
        None | Some("LF") | Some("NUL") => {}
        Some(o) => {
            return Err(key_err(
                node,
                &["non_transparent_framing_trailer"],
                format!("`{o}`: expected LF or NUL"),
            ));
        }
    }
    if !(1..=MAX_MESSAGE as usize).contains(&cfg.max_octets) {
        return Err(key_err(
            node,
            &["max_octets"],
            format!("must be between 1 and {MAX_MESSAGE} bytes (64 MiB)"),
        ));
    }
    Ok(Box::new(cfg))
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        // TCP and UDP may share a port number; only TCP ports can clash with other listeners.
        self.tcp.iter().map(|t| t.listen_address.clone()).collect()
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let Some(consumer) = consumers[Signal::Logs.index()].clone() else {
                return Err(BuildError::new(&ctx.id, "no logs pipeline uses it"));
            };
            let tz =
                jiff::tz::TimeZone::get(&self.location).map_err(|e| BuildError::new(&ctx.id, e))?;
            let stop = CancellationToken::new();
            let mut tasks = Vec::new();
            let parser = Arc::new(Parser {
                protocol: self.protocol,
                tz,
                allow_skip_pri: self.allow_skip_pri_header,
            });
            let malformed = |transport: &str| {
                ctx.telemetry
                    .receiver_malformed
                    .get_or_create(&ReceiverLabels {
                        receiver: ctx.id.to_string(),
                        transport: transport.into(),
                    })
                    .clone()
            };
            if let Some(t) = &self.tcp {
                let listener = crate::net::server::bind(&t.listen_address)
                    .await
                    .map_err(|e| {
                        BuildError::new(
                            &ctx.id,
                            format!("cannot listen on tcp {}: {e}", t.listen_address),
                        )
                    })?;
                let conn = Arc::new(Conn {
                    out: Output::new(&ctx, "tcp", consumer.clone()),
                    parser: parser.clone(),
                    encoding: text_encoding(&t.encoding)
                        .map_err(|m| BuildError::new(&ctx.id, m))?,
                    malformed: malformed("tcp"),
                    add_attributes: t.add_attributes,
                    ops: self.compiled.0.clone(),
                    stop: stop.clone(),
                });
                let framing = Framing {
                    octet_counting: self.enable_octet_counting,
                    max_octets: self.max_octets,
                    max_line: t.max_log_size as usize,
                    trailer: if self.non_transparent_framing_trailer.as_deref() == Some("NUL") {
                        0
                    } else {
                        b'\n'
                    },
                };
                let tls = match &t.tls {
                    Some(c) => Some(tokio_rustls::TlsAcceptor::from(
                        c.build().map_err(|e| BuildError::new(&ctx.id, e))?,
                    )),
                    None => None,
                };
                tracing::info!(address = %t.listen_address, tls = tls.is_some(), "syslog receiver listening on tcp");
                let slots = crate::net::server::ConnectionSlots::new(
                    t.max_connections,
                    ctx.telemetry.connection_metrics(&t.listen_address),
                );
                tasks.push(tokio::spawn(accept_loop(
                    listener, conn, framing, tls, slots,
                )));
            }
            if let Some(u) = &self.udp {
                let sock = tokio::net::UdpSocket::bind(&u.listen_address)
                    .await
                    .map_err(|e| {
                        BuildError::new(
                            &ctx.id,
                            format!("cannot listen on udp {}: {e}", u.listen_address),
                        )
                    })?;
                let conn = Arc::new(Conn {
                    out: Output::new(&ctx, "udp", consumer),
                    parser,
                    encoding: text_encoding(&u.encoding)
                        .map_err(|m| BuildError::new(&ctx.id, m))?,
                    malformed: malformed("udp"),
                    add_attributes: u.add_attributes,
                    ops: self.compiled.0.clone(),
                    stop: stop.clone(),
                });
                tracing::info!(address = %u.listen_address, "syslog receiver listening on udp");
                tasks.push(tokio::spawn(udp_loop(sock, conn, u.one_log_per_packet)));
            }
            Ok(crate::component::Tasks::new(stop, tasks) as Box<dyn Lifecycle>)
        })
    }
}

pub struct Parser {
    protocol: Protocol,
    tz: jiff::tz::TimeZone,
    allow_skip_pri: bool,
}

impl Parser {
    pub fn new(protocol: Protocol, location: &str) -> Result<Parser, String> {
        Ok(Parser {
            protocol,
            tz: jiff::tz::TimeZone::get(location).map_err(|e| e.to_string())?,
            allow_skip_pri: false,
        })
    }

    /// One message as a log record, and whether it was malformed (then it is the raw body only).
    pub fn record(&self, msg: &str, observed: u64) -> (LogRecord, bool) {
        let (e, malformed) = self.entry(msg, observed);
        (e.into_record(), malformed)
    }

    /// One message as a stanza entry, for the operators after the parser.
    pub fn entry(&self, msg: &str, observed: u64) -> (Entry, bool) {
        let owned;
        let text = if self.allow_skip_pri && !msg.starts_with('<') {
            // Without a PRI header the message is read as user.notice, RFC 3164's default.
            owned = format!("<13>{msg}");
            owned.as_str()
        } else {
            msg
        };
        let parsed = match self.protocol {
            Protocol::Rfc5424 => parse::rfc5424(text),
            Protocol::Rfc3164 => parse::rfc3164(text, &self.tz),
        };
        let mut r = Entry::new(msg.to_string(), observed);
        match parsed {
            Ok(p) => {
                r.timestamp = p.timestamp;
                r.severity_number = p.severity_number;
                r.severity_text = p.severity_text.to_string();
                r.attributes = p.attributes;
                (r, false)
            }
            Err(e) => {
                tracing::debug!(error = %e, "syslog: malformed message kept raw");
                (r, true)
            }
        }
    }
}

struct Conn {
    out: Output,
    parser: Arc<Parser>,
    encoding: Encoding,
    malformed: Counter,
    add_attributes: bool,
    ops: Arc<Operators>,
    stop: CancellationToken,
}

impl Conn {
    /// Parses messages into `out`, through the configured operators if there are any.
    fn records(
        &self,
        msgs: &[&[u8]],
        peer: SocketAddr,
        local: Option<SocketAddr>,
        out: &mut LogGroups,
    ) {
        let observed = now_nanos();
        let mut done = Vec::new();
        for m in msgs {
            let text = self.encoding.decode_cow(m);
            let text = text.trim_end_matches(['\r', '\n', '\0']);
            if text.is_empty() {
                continue;
            }
            let (mut e, malformed) = self.parser.entry(text, observed);
            if malformed {
                self.malformed.inc();
            }
            if self.add_attributes {
                let a = &mut e.attributes;
                a.push(("net.peer.ip".into(), Value::Str(peer.ip().to_string())));
                a.push(("net.peer.port".into(), Value::Int(peer.port() as i64)));
                if let Some(l) = local {
                    a.push(("net.host.ip".into(), Value::Str(l.ip().to_string())));
                    a.push(("net.host.port".into(), Value::Int(l.port() as i64)));
                }
            }
            if self.ops.ops.is_empty() {
                out.push_record(e.into_record());
            } else {
                crate::stanza::operators::run(&self.ops.ops, e, &mut done);
                done.drain(..).for_each(|e| out.push(e));
            }
        }
    }

    /// Sends, retrying a retryable refusal (with the batch handed back) until shutdown.
    async fn send(&self, records: LogGroups, peer: SocketAddr) {
        if records.count == 0 {
            return;
        }
        let mut batch = Batch::Logs(records.into_resource_logs());
        let client = crate::client::ClientInfo {
            addr: Some(peer.ip()),
            metadata: Vec::new(),
            auth: Vec::new(),
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.out.push(batch, client.clone()).await {
                Ok(()) => return,
                Err(ConsumeError::Retryable {
                    returned: Some(b), ..
                }) if !self.stop.is_cancelled() => {
                    batch = *b;
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    // Counted as refused by `Output`; nothing to resend.
                    tracing::warn!(error = %e, "syslog: the pipeline refused messages");
                    return;
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Framing {
    octet_counting: bool,
    max_octets: usize,
    max_line: usize,
    trailer: u8,
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    conn: Arc<Conn>,
    framing: Framing,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slots: crate::net::server::ConnectionSlots,
) {
    loop {
        let (sock, peer) = tokio::select! {
            _ = conn.stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "syslog: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // At the cap, the longest silent connection is closed for this one.
        let Some(slot) = slots.open() else {
            tracing::debug!(%peer, "syslog: connection refused at max_connections");
            continue;
        };
        let conn = conn.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let local = sock.local_addr().ok();
            let r = match tls {
                None => tcp_conn(sock, peer, local, &conn, framing, &slot).await,
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
                    {
                        Ok(Ok(s)) => tcp_conn(s, peer, local, &conn, framing, &slot).await,
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, %peer, "syslog: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "syslog: TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "syslog: connection closed");
            }
        });
    }
}

/// Splits `buf` into complete frames; returns them and how many bytes they used.
fn frames(buf: &[u8], f: Framing, malformed: &Counter) -> (Vec<std::ops::Range<usize>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        // Stray separators between frames (a newline after an octet-counted frame).
        if matches!(buf[at], b'\n' | b'\r' | b'\0' | b' ') {
            at += 1;
            continue;
        }
        let rest = &buf[at..];
        if rest[0].is_ascii_digit() || (f.octet_counting && rest[0] != b'<') {
            // Octet counting: `LEN SP MSG`.
            let Some(sp) = rest.iter().take(12).position(|b| *b == b' ') else {
                if rest.len() >= 12 || rest.iter().any(|b| !b.is_ascii_digit()) {
                    // Not a length: drop to the next trailer.
                    malformed.inc();
                    match memchr::memchr(f.trailer, rest) {
                        Some(e) => at += e + 1,
                        None => at = buf.len(),
                    }
                    continue;
                }
                break;
            };
            let len: Option<usize> = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok());
            let Some(len) = len.filter(|l| *l <= f.max_octets.max(1)) else {
                malformed.inc();
                match memchr::memchr(f.trailer, rest) {
                    Some(e) => at += e + 1,
                    None => at = buf.len(),
                }
                continue;
            };
            if rest.len() < sp + 1 + len {
                break;
            }
            out.push(at + sp + 1..at + sp + 1 + len);
            at += sp + 1 + len;
        } else {
            match memchr::memchr(f.trailer, rest) {
                Some(e) => {
                    out.push(at..at + e);
                    at += e + 1;
                }
                None if rest.len() > f.max_line => {
                    // Too long: keep the first max_line bytes as one message.
                    malformed.inc();
                    out.push(at..at + f.max_line);
                    at += f.max_line;
                }
                None => break,
            }
        }
    }
    (out, at)
}

async fn tcp_conn<S: tokio::io::AsyncRead + Unpin>(
    mut sock: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    conn: &Conn,
    f: Framing,
    slot: &crate::net::server::Slot,
) -> std::io::Result<()> {
    // Grown as data comes: an idle connection holds no buffer to speak of.
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8 << 10];
    loop {
        let n = tokio::select! {
            _ = conn.stop.cancelled() => return Ok(()),
            _ = slot.kill.cancelled() => {
                tracing::debug!(%peer, "syslog: the longest silent connection closed for a new one");
                return Ok(());
            }
            r = sock.read(&mut chunk) => match r {
                Ok(n) => n,
                // A TLS peer that closed without close_notify: what it sent still counts.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            },
        };
        if n == 0 {
            // The peer closed: a last unterminated newline-framed message still counts.
            if !buf.is_empty() {
                let mut recs = LogGroups::default();
                conn.records(&[&buf[..]], peer, local, &mut recs);
                conn.send(recs, peer).await;
            }
            return Ok(());
        }
        slot.touch();
        buf.extend_from_slice(&chunk[..n]);
        let (ranges, used) = frames(&buf, f, &conn.malformed);
        if !ranges.is_empty() {
            let msgs: Vec<&[u8]> = ranges.iter().map(|r| &buf[r.clone()]).collect();
            let mut recs = LogGroups::default();
            conn.records(&msgs, peer, local, &mut recs);
            conn.send(recs, peer).await;
        }
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > 64 << 10 {
            // After a long message: give the buffer back rather than keep it while idle.
            buf = Vec::new();
        }
    }
}

async fn udp_loop(sock: tokio::net::UdpSocket, conn: Arc<Conn>, one_per_packet: bool) {
    let local = sock.local_addr().ok();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            _ = conn.stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog: udp receive failed");
                    continue;
                }
            },
        };
        // Whatever else is already queued goes into the same batch.
        let mut recs = LogGroups::default();
        let take = |data: &[u8], peer: SocketAddr, recs: &mut LogGroups| {
            let msgs: Vec<&[u8]> = if one_per_packet {
                vec![data]
            } else {
                data.split(|b| *b == b'\n').collect()
            };
            conn.records(&msgs, peer, local, recs);
        };
        take(&buf[..n], peer, &mut recs);
        while recs.count < 1024 {
            match sock.try_recv_from(&mut buf) {
                Ok((n, p)) => take(&buf[..n], p, &mut recs),
                Err(_) => break,
            }
        }
        // The batch's client address is the first sender's.
        conn.send(recs, peer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_and_config_errors() {
        let bad = |yaml: &str| {
            let n = crate::config::node::parse(yaml).unwrap();
            parse(&n)
                .err()
                .map(|e| format!("{} {}", e.path_string(), e.msg))
        };
        assert!(
            bad("protocol: rfc5424\ntcp: {listen_address: \"127.0.0.1:1\", encoding: latin1}\n")
                .is_none()
        );
        let e =
            bad("protocol: rfc5424\nudp: {listen_address: \"127.0.0.1:1\", encoding: utf-16le}\n")
                .unwrap();
        assert!(
            e.contains("udp.encoding") && e.contains("not supported"),
            "{e}"
        );
        let e = bad("protocol: rfc5424\n").unwrap();
        assert!(e.contains("one of `tcp` and `udp`"), "{e}");
        let e = bad("protocol: rfc5425\ntcp: {listen_address: \"127.0.0.1:1\"}\n").unwrap();
        assert!(e.contains("protocol"), "{e}");
        let e = bad(
            "protocol: rfc3164\nlocation: Mars/Olympus\nudp: {listen_address: \"127.0.0.1:1\"}\n",
        )
        .unwrap();
        assert!(e.contains("location"), "{e}");
        // Latin-1 bytes become text.
        let latin1 = crate::stanza::encoding::encoding("latin1").unwrap();
        assert_eq!(latin1.decode_cow(b"caf\xe9"), "café");
    }

    #[test]
    fn tcp_framing_octet_counting_and_newlines() {
        let f = Framing {
            octet_counting: false,
            max_octets: 8192,
            max_line: 64,
            trailer: b'\n',
        };
        let c = Counter::default();
        let buf = b"11 <13>1 - a b\n12 <13>1 - x y\n<13>plain line\n<13>incompl";
        let (r, used) = frames(buf, f, &c);
        let got: Vec<&[u8]> = r.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(
            got,
            [&b"<13>1 - a b"[..], b"<13>1 - x y\n", b"<13>plain line"]
        );
        assert_eq!(&buf[used..], b"<13>incompl");
        assert_eq!(c.get(), 0);
        // A partial octet-counted frame waits.
        let (r, used) = frames(b"20 <13>1 short", f, &c);
        assert!(r.is_empty());
        assert_eq!(used, 0);
        // A bad length is skipped to the next newline and counted.
        let buf = b"99999999 x\n<13>ok\n";
        let (r, _) = frames(buf, f, &c);
        assert_eq!(&buf[r[0].clone()], b"<13>ok");
        assert_eq!(c.get(), 1);
    }
}
