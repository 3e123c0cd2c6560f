//! TLS for every listener and every client, in the Collector's config shape (`configtls`).
//! One rustls crypto provider (aws-lc-rs) for the whole process.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path:?}: {err}")]
    File {
        what: &'static str,
        path: String,
        err: String,
    },
    #[error("{0}")]
    Config(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// `tls:` of a receiver protocol. TLS is on when this block is present.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain presented to clients.
    pub cert_file: Option<String>,
    /// The chain inline (instead of `cert_file`).
    pub cert_pem: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca_file: Option<String>,
    /// Accepted; the client CA bundle is read at start (and at a config reload).
    pub client_ca_file_reload: Option<bool>,
    /// A server's own CA bundle: accepted as the Collector does (it has no role for a server).
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub include_system_ca_certs_pool: Option<bool>,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    pub min_version: Option<String>,
    /// Highest TLS version accepted: "1.2" or "1.3" (default).
    pub max_version: Option<String>,
    /// TLS 1.2 suites allowed, by Go's names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); TLS 1.3
    /// suites are always on, as in Go. Default: all.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Key exchange groups in order: `X25519`, `P256`, `P384`, `X25519MLKEM768`.
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    /// Re-read `cert_file`/`key_file` this often, so a rotated certificate is served without a
    /// restart. Default: never.
    #[serde(default, deserialize_with = "crate::config::units::opt_duration")]
    pub reload_interval: Option<std::time::Duration>,
}

/// `tls:` of an exporter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// Plain text (no TLS) for `host:port` endpoints. Default false: TLS is the default.
    pub insecure: bool,
    /// Do not verify the server certificate chain or name. For tests only.
    pub insecure_skip_verify: bool,
    /// PEM CA bundle to verify the server with; default: the Mozilla root set.
    pub ca_file: Option<String>,
    /// The CA bundle inline (instead of `ca_file`).
    pub ca_pem: Option<String>,
    /// Trust the system's roots too when a CA is given. Default false.
    pub include_system_ca_certs_pool: bool,
    /// Client certificate for mTLS.
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// Name to verify the server certificate against, instead of the endpoint's host.
    pub server_name_override: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// As the server's: TLS 1.2 suites by Go's names.
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    /// Re-read the client `cert_file`/`key_file` this often: a connection set up after a
    /// rotation presents the new certificate. Default: read once.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub reload_interval: Option<std::time::Duration>,
}

/// The crypto provider narrowed to the configured TLS 1.2 suites and key exchange groups.
fn tuned_provider(suites: &[String], curves: &[String]) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    if !suites.is_empty() {
        let go_name =
            |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite()).replace("TLS13_", "TLS_");
        for want in suites {
            let w = want.trim_end_matches("_SHA256");
            if !p
                .cipher_suites
                .iter()
                .any(|s| go_name(s).trim_end_matches("_SHA256") == w)
            {
                let known: Vec<String> = p.cipher_suites.iter().map(go_name).collect();
                return Err(TlsError::Config(format!(
                    "cipher suite {want:?} is not available (available: {})",
                    known.join(", ")
                )));
            }
        }
        p.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || suites.iter().any(|w| {
                    go_name(s).trim_end_matches("_SHA256") == w.trim_end_matches("_SHA256")
                })
        });
    }
    if !curves.is_empty() {
        let mut groups = Vec::new();
        for c in curves {
            let name = match c.as_str() {
                "X25519" => "X25519",
                "P256" | "P-256" => "secp256r1",
                "P384" | "P-384" => "secp384r1",
                "P521" | "P-521" => "secp521r1",
                "X25519MLKEM768" => "X25519MLKEM768",
                other => {
                    return Err(TlsError::Config(format!(
                        "curve {other:?}: expected X25519, P256, P384, P521 or X25519MLKEM768"
                    )));
                }
            };
            let g = p
                .kx_groups
                .iter()
                .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(name))
                .ok_or_else(|| TlsError::Config(format!("curve {c:?} is not available here")))?;
            groups.push(*g);
        }
        p.kx_groups = groups;
    }
    Ok(Arc::new(p))
}

/// PEM from inline text or a file.
fn pem_source<'a>(inline: &'a Option<String>, file: &'a Option<String>) -> Option<(&'a str, bool)> {
    match (inline, file) {
        (Some(t), _) => Some((t.as_str(), true)),
        (None, Some(f)) => Some((f.as_str(), false)),
        _ => None,
    }
}

fn certs_from(
    what: &'static str,
    (src, inline): (&str, bool),
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if !inline {
        return read_certs(what, src);
    }
    let certs: Vec<_> = CertificateDer::pem_slice_iter(src.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Config(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Config(format!("{what}: no PEM certificate")));
    }
    Ok(certs)
}

fn key_from((src, inline): (&str, bool)) -> Result<PrivateKeyDer<'static>, TlsError> {
    if !inline {
        return read_key(src);
    }
    PrivateKeyDer::from_pem_slice(src.as_bytes())
        .map_err(|e| TlsError::Config(format!("key_pem: {e}")))
}

/// Serves the certificate in `cert`/`key`, re-reading them every `every`; a rotation that does
/// not read (a half-written file) keeps the last good certificate.
#[derive(Debug)]
struct Reloading {
    cert: String,
    key: String,
    every: std::time::Duration,
    provider: Arc<CryptoProvider>,
    current: std::sync::RwLock<(std::time::Instant, Arc<rustls::sign::CertifiedKey>)>,
}

impl Reloading {
    fn load(
        cert: &str,
        key: &str,
        provider: &CryptoProvider,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        let ck = rustls::sign::CertifiedKey::from_der(
            read_certs("cert_file", cert)?,
            read_key(key)?,
            provider,
        )
        .map_err(|e| TlsError::Config(format!("cert_file and key_file do not match: {e}")))?;
        Ok(Arc::new(ck))
    }
}

impl Reloading {
    /// The current certificate, re-read when `every` has passed.
    fn current(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let (at, ck) = self.current.read().ok()?.clone();
        if at.elapsed() < self.every {
            return Some(ck);
        }
        let fresh = match Reloading::load(&self.cert, &self.key, &self.provider) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "TLS reload failed; serving the previous certificate");
                ck
            }
        };
        if let Ok(mut w) = self.current.write() {
            *w = (std::time::Instant::now(), fresh.clone());
        }
        Some(fresh)
    }
}

impl rustls::server::ResolvesServerCert for Reloading {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }
}

/// The exporters' side: the client certificate of each new connection.
impl rustls::client::ResolvesClientCert for Reloading {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let parse = |v: Option<&str>, default: u8| -> Result<u8, TlsError> {
        match v {
            None | Some("") => Ok(default),
            Some("1.2") => Ok(2),
            Some("1.3") => Ok(3),
            Some("1.0") | Some("1.1") => Err(TlsError::Config(format!(
                "TLS version {} is not supported (only 1.2 and 1.3)",
                v.unwrap_or_default()
            ))),
            Some(other) => Err(TlsError::Config(format!(
                "unknown TLS version {other:?}: use \"1.2\" or \"1.3\""
            ))),
        }
    };
    let (lo, hi) = (parse(min, 2)?, parse(max, 3)?);
    if lo > hi {
        return Err(TlsError::Config("min_version is above max_version".into()));
    }
    let mut out = Vec::new();
    if lo <= 2 {
        out.push(&rustls::version::TLS12);
    }
    if hi >= 3 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

fn read_certs(what: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |e: String| TlsError::File {
        what,
        path: path.to_owned(),
        err: e,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(Path::new(path)).map_err(|e| TlsError::File {
        what: "key_file",
        path: path.to_owned(),
        err: e.to_string(),
    })
}

fn roots(path: &str, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in read_certs(what, path)? {
        store.add(c).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            err: e.to_string(),
        })?;
    }
    Ok(store)
}

impl ServerTlsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let cert = self.cert_file.is_some() || self.cert_pem.is_some();
        let key = self.key_file.is_some() || self.key_pem.is_some();
        if !(cert && key) {
            return Err("a TLS listener needs a certificate and a key (cert_file or cert_pem, key_file or key_pem)".into());
        }
        if self.reload_interval.is_some() && (self.cert_file.is_none() || self.key_file.is_none()) {
            return Err(
                "reload_interval re-reads cert_file and key_file: set them (not *_pem)".into(),
            );
        }
        // The files are read and parsed as the start will read them, so `validate` finds a
        // missing or broken certificate too.
        self.build().map(|_| ()).map_err(|e| e.to_string())
    }

    /// Reads the files and builds the rustls config (ALPN h2 and http/1.1).
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (Some(cert), Some(key)) = (
            pem_source(&self.cert_pem, &self.cert_file),
            pem_source(&self.key_pem, &self.key_file),
        ) else {
            return Err(TlsError::Config(
                "a TLS listener needs both cert_file and key_file".into(),
            ));
        };
        let provider = tuned_provider(&self.cipher_suites, &self.curve_preferences)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(
                self.min_version.as_deref(),
                self.max_version.as_deref(),
            )?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca_file {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, "client_ca_file")?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = match (self.reload_interval, &self.cert_file, &self.key_file) {
            (Some(every), Some(c), Some(k)) => {
                let first = Reloading::load(c, k, &provider)?;
                builder.with_cert_resolver(Arc::new(Reloading {
                    cert: c.clone(),
                    key: k.clone(),
                    every,
                    provider: provider.clone(),
                    current: std::sync::RwLock::new((std::time::Instant::now(), first)),
                }))
            }
            _ => builder
                .with_single_cert(certs_from("cert_file", cert)?, key_from(key)?)
                .map_err(|e| {
                    TlsError::Config(format!("cert_file and key_file do not match: {e}"))
                })?,
        };
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ClientTlsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let cert = self.cert_file.is_some() || self.cert_pem.is_some();
        let key = self.key_file.is_some() || self.key_pem.is_some();
        if cert != key {
            return Err("client cert_file and key_file must be set together".into());
        }
        // The CA bundle and the client certificate are read and parsed as the start will (only
        // when there are files: building with the system roots costs a few hundred ms).
        if self.ca_file.is_none()
            && self.ca_pem.is_none()
            && !cert
            && self.cipher_suites.is_empty()
            && self.curve_preferences.is_empty()
        {
            return versions(self.min_version.as_deref(), self.max_version.as_deref())
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        self.build(&[]).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Builds the rustls client config; `alpn` is e.g. `[b"h2"]` for gRPC.
    pub fn build(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
        let provider = tuned_provider(&self.cipher_suites, &self.curve_preferences)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(
                self.min_version.as_deref(),
                self.max_version.as_deref(),
            )?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(
                    provider.signature_verification_algorithms,
                )))
        } else {
            let mut store = match pem_source(&self.ca_pem, &self.ca_file) {
                Some(src) => {
                    let mut store = RootCertStore::empty();
                    for c in certs_from("ca_file", src)? {
                        store
                            .add(c)
                            .map_err(|e| TlsError::Config(format!("ca_file: {e}")))?;
                    }
                    store
                }
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            if self.include_system_ca_certs_pool
                && (self.ca_file.is_some() || self.ca_pem.is_some())
            {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            builder.with_root_certificates(store)
        };
        let reload = match (self.reload_interval, &self.cert_file, &self.key_file) {
            (Some(every), Some(c), Some(k)) => Some((every, c, k)),
            _ => None,
        };
        let mut cfg = match (
            pem_source(&self.cert_pem, &self.cert_file),
            pem_source(&self.key_pem, &self.key_file),
        ) {
            (Some(_), Some(_)) if reload.is_some() => {
                let (every, c, k) = reload.expect("checked");
                let first = Reloading::load(c, k, &provider)?;
                builder.with_client_cert_resolver(Arc::new(Reloading {
                    cert: c.clone(),
                    key: k.clone(),
                    every,
                    provider: provider.clone(),
                    current: std::sync::RwLock::new((std::time::Instant::now(), first)),
                }))
            }
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(certs_from("cert_file", c)?, key_from(k)?)
                .map_err(|e| {
                    TlsError::Config(format!("client cert_file and key_file do not match: {e}"))
                })?,
            _ => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }
}

/// Verifies handshake signatures but not the chain or the name (`insecure_skip_verify`).
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked() {
        assert_eq!(versions(Some("1.3"), None).unwrap().len(), 1);
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert!(versions(Some("1.1"), None).is_err());
        assert!(versions(Some("1.3"), Some("1.2")).is_err());
        assert!(
            ServerTlsConfig {
                cert_file: Some("c".into()),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn suites_curves_and_inline_pem_are_checked() {
        let e = tuned_provider(&["TLS_RSA_WITH_RC4_128_SHA".into()], &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("cipher suite \"TLS_RSA_WITH_RC4_128_SHA\" is not available"),
            "{e}"
        );
        let p = tuned_provider(
            &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
            &["X25519".into()],
        )
        .unwrap();
        assert_eq!(
            p.cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .count(),
            1
        );
        assert_eq!(p.kx_groups.len(), 1);
        assert!(tuned_provider(&[], &["brainpool".into()]).is_err());
        // Go spells ChaCha20 suites with or without the hash.
        assert!(tuned_provider(&["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into()], &[]).is_ok());
        let c = ClientTlsConfig {
            ca_pem: Some("not pem".into()),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let s = ServerTlsConfig {
            cert_pem: Some("x".into()),
            key_pem: Some("y".into()),
            reload_interval: Some(std::time::Duration::from_secs(1)),
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .contains("reload_interval re-reads cert_file")
        );
    }

    /// A client certificate rotated on disk is what the next connection presents, once
    /// `reload_interval` has passed; a half-written file keeps the previous one.
    #[test]
    fn client_certificates_are_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let write = |name: &str| {
            let k = rcgen::KeyPair::generate().unwrap();
            let c = rcgen::CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .self_signed(&k)
                .unwrap();
            std::fs::write(&cert, c.pem()).unwrap();
            std::fs::write(&key, k.serialize_pem()).unwrap();
            c.der().to_vec()
        };
        let first = write("one");
        let cfg = ClientTlsConfig {
            cert_file: Some(cert.to_string_lossy().into_owned()),
            key_file: Some(key.to_string_lossy().into_owned()),
            reload_interval: Some(std::time::Duration::from_millis(50)),
            ..Default::default()
        }
        .build(&[])
        .unwrap();
        let presented = || {
            cfg.client_auth_cert_resolver
                .resolve(&[], &[])
                .expect("a certificate")
                .cert[0]
                .to_vec()
        };
        assert_eq!(presented(), first);
        let second = write("two");
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert_eq!(presented(), second);
        std::fs::write(&cert, "-----BEGIN CERT").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert_eq!(presented(), second);
    }

    #[test]
    fn missing_files_are_named() {
        let c = ServerTlsConfig {
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: Some("/nonexistent/k.pem".into()),
            ..Default::default()
        };
        let e = c.build().unwrap_err().to_string();
        assert!(
            e.contains("cert_file") && e.contains("/nonexistent/c.pem"),
            "{e}"
        );
    }
}
