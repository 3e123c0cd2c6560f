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
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca_file: Option<String>,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    pub min_version: Option<String>,
    /// Highest TLS version accepted: "1.2" or "1.3" (default).
    pub max_version: Option<String>,
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
    /// Client certificate for mTLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Name to verify the server certificate against, instead of the endpoint's host.
    pub server_name_override: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
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
        match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) => {}
            _ => return Err("a TLS listener needs both cert_file and key_file".into()),
        }
        // The files are read and parsed as the start will read them, so `validate` finds a
        // missing or broken certificate too.
        self.build().map(|_| ()).map_err(|e| e.to_string())
    }

    /// Reads the files and builds the rustls config (ALPN h2 and http/1.1).
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err(TlsError::Config(
                "a TLS listener needs both cert_file and key_file".into(),
            ));
        };
        let provider = provider();
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
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(read_certs("cert_file", cert)?, read_key(key)?)
            .map_err(|e| TlsError::Config(format!("cert_file and key_file do not match: {e}")))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ClientTlsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("client cert_file and key_file must be set together".into());
        }
        // The CA bundle and the client certificate are read and parsed as the start will (only
        // when there are files: building with the system roots costs a few hundred ms).
        if self.ca_file.is_none() && self.cert_file.is_none() {
            return versions(self.min_version.as_deref(), self.max_version.as_deref())
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        self.build(&[]).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Builds the rustls client config; `alpn` is e.g. `[b"h2"]` for gRPC.
    pub fn build(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider();
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
            let store = match &self.ca_file {
                Some(ca) => roots(ca, "ca_file")?,
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            builder.with_root_certificates(store)
        };
        let mut cfg = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(read_certs("cert_file", c)?, read_key(k)?)
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
