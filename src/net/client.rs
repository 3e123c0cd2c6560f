//! Clients: the endpoint forms the Collector takes, gRPC channels and HTTP clients with our TLS,
//! headers as gRPC metadata, and the server's `Retry-After` hint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use super::tls::ClientTlsConfig;

/// Where to connect and whether to use TLS, from an endpoint as the Collector takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub fn parse_endpoint(endpoint: &str, insecure: bool) -> Result<Target, String> {
    let (rest, tls) = if let Some(r) = endpoint.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        (r, false)
    } else if endpoint.contains("://") {
        return Err(format!(
            "endpoint {endpoint:?}: only http:// and https:// URLs, or host:port"
        ));
    } else {
        (endpoint, !insecure)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} needs a port, e.g. gateway:4317"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("endpoint {endpoint:?} has an invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// A lazily connecting gRPC channel to `endpoint` (as the Collector takes it), with TLS done by
/// our rustls config. Shared by the gRPC exporters.
/// gRPC connection options (`configgrpc`'s `keepalive` and `authority`).
#[derive(Debug, Clone, Default)]
pub struct GrpcOptions {
    /// Ping after this much silence (default 30s), wait this long for the answer, and whether
    /// to ping without open streams (default true).
    pub keepalive_time: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub permit_without_stream: Option<bool>,
    /// The `:authority` sent instead of the endpoint's.
    pub authority: Option<String>,
}

pub fn grpc_channel(endpoint: &str, tls: &ClientTlsConfig) -> Result<Channel, String> {
    grpc_channel_with(endpoint, tls, &GrpcOptions::default())
}

pub fn grpc_channel_with(
    endpoint: &str,
    tls: &ClientTlsConfig,
    opts: &GrpcOptions,
) -> Result<Channel, String> {
    let target = parse_endpoint(endpoint, tls.insecure)?;
    // The URI only names the peer; TLS (when on) is done by our connector, so the scheme
    // stays http.
    let uri = if target.host.contains(':') {
        format!("http://[{}]:{}", target.host, target.port)
    } else {
        format!("http://{}:{}", target.host, target.port)
    };
    let mut ep = Endpoint::from_shared(uri)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(opts.keepalive_time.unwrap_or(Duration::from_secs(30)))
        .keep_alive_while_idle(opts.permit_without_stream.unwrap_or(true));
    if let Some(t) = opts.keepalive_timeout {
        ep = ep.keep_alive_timeout(t);
    }
    if let Some(a) = &opts.authority {
        let origin: http::Uri = format!("http://{a}")
            .parse()
            .map_err(|e| format!("authority {a:?}: {e}"))?;
        ep = ep.origin(origin);
    }
    if !target.tls {
        return Ok(ep.connect_lazy());
    }
    let config = Arc::new(tls.build(&[b"h2"]).map_err(|e| e.to_string())?);
    let name = tls
        .server_name_override
        .clone()
        .unwrap_or_else(|| target.host.clone());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
    let (host, port) = (target.host.clone(), target.port);
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let (config, server_name, host) = (config.clone(), server_name.clone(), host.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Ok(ep.connect_with_connector_lazy(connector))
}

/// gRPC metadata from a `headers` config map.
pub fn grpc_metadata(headers: &BTreeMap<String, String>) -> Result<http::HeaderMap, String> {
    let mut out = http::HeaderMap::new();
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let val = http::HeaderValue::from_str(v)
            .map_err(|_| format!("invalid header value for {k:?}"))?;
        out.insert(name, val);
    }
    Ok(out)
}

/// The HTTP client of an HTTP exporter: our rustls config (HTTP/2 or 1.1 by ALPN), the configured
/// headers on every request, ferrotel's user agent.
/// Connection options of an HTTP client (`confighttp`'s keys).
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub proxy_url: Option<String>,
    pub max_idle_per_host: Option<usize>,
    pub idle_timeout: Option<Duration>,
    pub h2_ping_interval: Option<Duration>,
    pub h2_ping_timeout: Option<Duration>,
}

pub fn http_client(
    tls: &crate::net::tls::ClientTlsConfig,
    headers: &BTreeMap<String, String>,
) -> Result<reqwest::Client, String> {
    http_client_with(tls, headers, &HttpOptions::default())
}

pub fn http_client_with(
    tls: &crate::net::tls::ClientTlsConfig,
    headers: &BTreeMap<String, String>,
    opts: &HttpOptions,
) -> Result<reqwest::Client, String> {
    let tls = tls
        .build(&[b"h2", b"http/1.1"])
        .map_err(|e| e.to_string())?;
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        // Validated at parse time (`ClientSettings::validate`).
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .default_headers(map)
        .user_agent(concat!("ferrotel/", env!("CARGO_PKG_VERSION")));
    if let Some(p) = &opts.proxy_url {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?);
    }
    if let Some(n) = opts.max_idle_per_host {
        b = b.pool_max_idle_per_host(n);
    }
    if let Some(t) = opts.idle_timeout {
        b = b.pool_idle_timeout(t);
    }
    if let Some(t) = opts.h2_ping_interval {
        b = b
            .http2_keep_alive_interval(t)
            .http2_keep_alive_while_idle(true);
    }
    if let Some(t) = opts.h2_ping_timeout {
        b = b.http2_keep_alive_timeout(t);
    }
    b.build().map_err(|e| e.to_string())
}

/// Checks an exporter endpoint URL: `http://` or `https://` with a host.
pub fn check_http_url(u: &str) -> Result<(), String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("invalid URL {u:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(format!(
            "invalid URL {u:?}: needs http:// or https:// and a host"
        )),
    }
}

/// `Retry-After` in seconds (the form OTLP/HTTP servers send); an HTTP date is not taken.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_the_collector_takes_them() {
        assert_eq!(
            parse_endpoint("gateway:4317", false).unwrap(),
            Target {
                host: "gateway".into(),
                port: 4317,
                tls: true
            }
        );
        assert!(!parse_endpoint("gateway:4317", true).unwrap().tls);
        assert!(!parse_endpoint("http://gw:4317", false).unwrap().tls);
        assert!(parse_endpoint("https://gw:4317/", true).unwrap().tls);
        assert_eq!(parse_endpoint("[::1]:4317", true).unwrap().host, "::1");
        assert!(
            parse_endpoint("YOUR_JAEGER_URL", false)
                .unwrap_err()
                .contains("needs a port")
        );
        assert!(parse_endpoint("grpc://x:1", false).is_err());
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(" 7 "),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
