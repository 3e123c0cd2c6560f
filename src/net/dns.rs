//! A small DNS client for the record types the system resolver does not answer (SRV, MX, NS):
//! one question over UDP (TCP when the answer is truncated), to the servers of
//! `/etc/resolv.conf` with its `search` and `ndots`, as Prometheus's DNS discovery asks them.
//! `FERROTEL_DNS_SERVERS` (`host:port,...`) names other servers (a collector that must not use
//! the node's resolver, and the tests, which run their own server on a high port).
//!
//! Parsing never trusts the message: every read is bounds-checked, name pointers may only point
//! backwards and a name is at most 255 bytes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A record type this client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    A = 1,
    Ns = 2,
    Mx = 15,
    Aaaa = 28,
    Srv = 33,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(std::net::Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    /// The target is written rooted (`host.example.`), as DNS names are.
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Mx {
        preference: u16,
        exchange: String,
    },
    Ns(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DnsError {
    #[error("no such name")]
    NxDomain,
    #[error("server answered with rcode {0}")]
    Rcode(u8),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    #[error("no DNS server answered: {0}")]
    Unreachable(String),
}

/// Where to ask and how to expand relative names.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvConf {
    pub servers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
}

impl ResolvConf {
    /// `/etc/resolv.conf`, with `FERROTEL_DNS_SERVERS` replacing its servers.
    pub fn system() -> ResolvConf {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut rc = ResolvConf::parse(&text);
        if let Ok(list) = std::env::var("FERROTEL_DNS_SERVERS") {
            rc.servers = list
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
        }
        if rc.servers.is_empty() {
            rc.servers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
        }
        rc
    }

    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words
                        .next()
                        .and_then(|w| w.parse::<std::net::IpAddr>().ok())
                    {
                        rc.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("search") | Some("domain") => {
                    rc.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
                }
                Some("options") => {
                    for w in words {
                        if let Some(n) = w.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            rc.ndots = n;
                        }
                    }
                }
                _ => {}
            }
        }
        rc
    }

    /// The names to try for `name`, in resolv.conf's order: a rooted name as it is; a name with
    /// at least `ndots` dots first as it is, then with each search domain; a shorter one the
    /// other way round.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(rooted) = name.strip_suffix('.') {
            return vec![rooted.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

/// Asks for `name`'s records of type `kind`, trying each candidate name and each server;
/// the first name that exists answers.
pub async fn lookup(
    rc: &ResolvConf,
    name: &str,
    kind: RecordType,
) -> Result<Vec<Record>, DnsError> {
    let mut last = DnsError::NxDomain;
    for candidate in rc.candidates(name) {
        match ask_servers(rc, &candidate, kind).await {
            Ok(r) => return Ok(r),
            Err(DnsError::NxDomain) => last = DnsError::NxDomain,
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn ask_servers(
    rc: &ResolvConf,
    name: &str,
    kind: RecordType,
) -> Result<Vec<Record>, DnsError> {
    let mut errors = Vec::new();
    for server in &rc.servers {
        match ask(*server, name, kind).await {
            Ok(r) => return Ok(r),
            // An authoritative "no such name" ends the search for this name.
            Err(DnsError::NxDomain) => return Err(DnsError::NxDomain),
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    Err(DnsError::Unreachable(errors.join("; ")))
}

const TIMEOUT: Duration = Duration::from_secs(2);

async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Result<Vec<Record>, DnsError> {
    let id: u16 = rand::random();
    let query = encode_query(id, name, kind)?;
    let io = |e: std::io::Error| DnsError::Unreachable(e.to_string());
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().map_err(|_| DnsError::Malformed("bind"))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| DnsError::Malformed("bind"))?
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(&query).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    // One deadline for the answer, however many stray datagrams arrive first.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let n = loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| DnsError::Unreachable("timed out".into()))?
            .map_err(io)?;
        // Answers to another question (a stale or spoofed one) are ignored.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            break n;
        }
    };
    match decode_answer(&buf[..n], id, kind) {
        Err(Truncated) => ask_tcp(server, &query, id, kind).await,
        Ok(r) => r,
    }
}

async fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    kind: RecordType,
) -> Result<Vec<Record>, DnsError> {
    let io = |e: std::io::Error| DnsError::Unreachable(e.to_string());
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(server).await.map_err(io)?;
        let len = u16::try_from(query.len()).map_err(|_| DnsError::Malformed("query length"))?;
        s.write_all(&len.to_be_bytes()).await.map_err(io)?;
        s.write_all(query).await.map_err(io)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.map_err(io)?;
        Ok::<_, DnsError>(buf)
    };
    let buf = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| DnsError::Unreachable("timed out over TCP".into()))??;
    match decode_answer(&buf, id, kind) {
        Ok(r) => r,
        Err(Truncated) => Err(DnsError::Malformed("truncated over TCP")),
    }
}

/// A query with recursion desired.
pub fn encode_query(id: u16, name: &str, kind: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00]); // RD
    q.extend([0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::Malformed(
                "a label of the name is empty or too long",
            ));
        }
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    if q.len() > 12 + 255 {
        return Err(DnsError::Malformed("the name is too long"));
    }
    q.extend((kind as u16).to_be_bytes());
    q.extend([0, 1]); // IN
    Ok(q)
}

/// The answer was cut short (TC): ask again over TCP.
#[derive(Debug, PartialEq)]
pub struct Truncated;

/// The records of type `kind` in an answer (others, such as the CNAMEs that lead to them,
/// are skipped).
pub fn decode_answer(
    msg: &[u8],
    id: u16,
    kind: RecordType,
) -> Result<Result<Vec<Record>, DnsError>, Truncated> {
    let mut r = Reader { msg, pos: 0 };
    let header = (|| {
        let got_id = r.u16()?;
        let flags = r.u16()?;
        let qd = r.u16()?;
        let an = r.u16()?;
        r.u16()?;
        r.u16()?;
        Some((got_id, flags, qd, an))
    })();
    let Some((got_id, flags, qd, an)) = header else {
        return Ok(Err(DnsError::Malformed("short header")));
    };
    if got_id != id || flags & 0x8000 == 0 {
        return Ok(Err(DnsError::Malformed("not the answer to this query")));
    }
    if flags & 0x0200 != 0 {
        return Err(Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        3 => return Ok(Err(DnsError::NxDomain)),
        rc => return Ok(Err(DnsError::Rcode(rc))),
    }
    Ok((|| {
        for _ in 0..qd {
            r.name().ok_or(DnsError::Malformed("question name"))?;
            r.take(4).ok_or(DnsError::Malformed("question"))?;
        }
        let mut out = Vec::new();
        for _ in 0..an {
            r.name().ok_or(DnsError::Malformed("answer name"))?;
            // Type, class, TTL, data length.
            let (Some(ty), Some(_), Some(_), Some(_), Some(len)) =
                (r.u16(), r.u16(), r.u16(), r.u16(), r.u16())
            else {
                return Err(DnsError::Malformed("answer header"));
            };
            let start = r.pos;
            let end = start + usize::from(len);
            if end > msg.len() {
                return Err(DnsError::Malformed("record data past the end"));
            }
            if ty == kind as u16 {
                out.push(record(&mut r, kind, end).ok_or(DnsError::Malformed("record data"))?);
            }
            r.pos = end;
        }
        Ok(out)
    })())
}

fn record(r: &mut Reader, kind: RecordType, end: usize) -> Option<Record> {
    Some(match kind {
        RecordType::A => {
            let b = r.take(4)?;
            Record::A(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        RecordType::Aaaa => {
            let b: [u8; 16] = r.take(16)?.try_into().ok()?;
            Record::Aaaa(std::net::Ipv6Addr::from(b))
        }
        RecordType::Srv => Record::Srv {
            priority: r.u16()?,
            weight: r.u16()?,
            port: r.u16()?,
            target: r.name()?,
        },
        RecordType::Mx => Record::Mx {
            preference: r.u16()?,
            exchange: r.name()?,
        },
        RecordType::Ns => Record::Ns(r.name()?),
    })
    .filter(|_| r.pos <= end)
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let b = self.msg.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A name, following compression pointers (backwards only), rooted: `a.example.`.
    fn name(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut pos = self.pos;
        let mut jumped = false;
        let mut len = 0usize;
        loop {
            let b = *self.msg.get(pos)?;
            match b & 0xc0 {
                0xc0 => {
                    let target =
                        usize::from(u16::from_be_bytes([b & 0x3f, *self.msg.get(pos + 1)?]));
                    if target >= pos {
                        return None;
                    }
                    if !jumped {
                        self.pos = pos + 2;
                        jumped = true;
                    }
                    pos = target;
                }
                0x00 if b == 0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    if out.is_empty() {
                        out.push('.');
                    }
                    return Some(out);
                }
                0x00 => {
                    let n = usize::from(b);
                    let label = self.msg.get(pos + 1..pos + 1 + n)?;
                    len += n + 1;
                    if len > 255 {
                        return None;
                    }
                    out.push_str(&String::from_utf8_lossy(label));
                    out.push('.');
                    pos += 1 + n;
                }
                _ => return None,
            }
        }
    }
}

/// This host's name (`gethostname`).
pub fn hostname() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer and its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Err(format!("gethostname: {}", std::io::Error::last_os_error()));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with the given answer records (name as a pointer to the question).
    fn answer(query: &[u8], flags: u16, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2..4].copy_from_slice(&flags.to_be_bytes());
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (ty, data) in records {
            m.extend([0xc0, 12]);
            m.extend(ty.to_be_bytes());
            m.extend([0, 1, 0, 0, 0, 30]);
            m.extend((data.len() as u16).to_be_bytes());
            m.extend(data);
        }
        m
    }

    #[test]
    fn srv_answers_with_compressed_targets_and_a_skipped_cname() {
        let q = encode_query(7, "_metrics._tcp.example.test", RecordType::Srv).unwrap();
        // Target "node1" + pointer to "example.test" in the question (offset 12 + 9 + 5).
        let mut srv = vec![0, 10, 0, 5, 0x23, 0x82];
        srv.extend([5]);
        srv.extend(b"node1");
        srv.extend([0xc0, 12 + 9 + 5]);
        let cname = vec![1, b'x', 0];
        let m = answer(&q, 0x8180, &[(5, cname), (33, srv)]);
        assert_eq!(
            decode_answer(&m, 7, RecordType::Srv),
            Ok(Ok(vec![Record::Srv {
                priority: 10,
                weight: 5,
                port: 9090,
                target: "node1.example.test.".into()
            }]))
        );
    }

    #[test]
    fn errors_truncation_and_hostile_messages() {
        let q = encode_query(9, "a.test", RecordType::Srv).unwrap();
        assert_eq!(
            decode_answer(&answer(&q, 0x8183, &[]), 9, RecordType::Srv),
            Ok(Err(DnsError::NxDomain))
        );
        assert_eq!(
            decode_answer(&answer(&q, 0x8182, &[]), 9, RecordType::Srv),
            Ok(Err(DnsError::Rcode(2)))
        );
        assert_eq!(
            decode_answer(&answer(&q, 0x8380, &[]), 9, RecordType::Srv),
            Err(Truncated)
        );
        // Another query's id, a pointer loop, data past the end, garbage: errors, not panics.
        assert!(matches!(
            decode_answer(&answer(&q, 0x8180, &[]), 8, RecordType::Srv),
            Ok(Err(_))
        ));
        let mut looped = answer(&q, 0x8180, &[(33, vec![0, 0, 0, 0, 0, 1, 0xc0, 0])]);
        let at = looped.len() - 2;
        looped[at + 1] = at as u8;
        assert!(matches!(
            decode_answer(&looped, 9, RecordType::Srv),
            Ok(Err(_))
        ));
        let mut long = answer(&q, 0x8180, &[(33, vec![0; 8])]);
        long.truncate(long.len() - 3);
        assert!(matches!(
            decode_answer(&long, 9, RecordType::Srv),
            Ok(Err(_))
        ));
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode_answer(&junk, 9, RecordType::Srv);
        }
        assert!(encode_query(1, "a..b", RecordType::A).is_err());
    }

    #[test]
    fn resolv_conf_search_order() {
        let rc = ResolvConf::parse(
            "nameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n",
        );
        assert_eq!(rc.servers, vec!["10.96.0.10:53".parse().unwrap()]);
        assert_eq!(rc.ndots, 5);
        assert_eq!(
            rc.candidates("_http._tcp.web"),
            [
                "_http._tcp.web.ns.svc.cluster.local",
                "_http._tcp.web.svc.cluster.local",
                "_http._tcp.web"
            ]
        );
        assert_eq!(rc.candidates("web.example.com."), ["web.example.com"]);
        let rc = ResolvConf::parse("search corp\n");
        assert_eq!(rc.candidates("a.b"), ["a.b", "a.b.corp"]);
    }
}
