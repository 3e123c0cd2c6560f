//! A test PKI (a CA, a server certificate for 127.0.0.1, a client certificate) and an HTTPS
//! server for the stand-ins of the Kubernetes API server and the kubelet.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

pub fn pki() -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "kubernetes");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(p, ca_key);
    let leaf = |names: &[&str], cn: &str| {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        (
            p.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (server_cert, server_key) = leaf(&["127.0.0.1"], "kubelet");
    let (client_cert, client_key) = leaf(&["apiserver-kubelet-client"], "kube-apiserver");
    Pki {
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// Serves `app` over HTTPS on 127.0.0.1:`port`; with `client_ca`, only to clients presenting a
/// certificate it signed (the kubelet's `--client-ca-file`).
pub fn serve_https(
    rt: &tokio::runtime::Runtime,
    port: u16,
    pki: &Pki,
    client_ca: bool,
    app: axum::Router,
) {
    let certs = vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder();
    let cfg = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
            .unwrap();
        let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        builder.with_client_cert_verifier(v)
    } else {
        builder.with_no_client_auth()
    }
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let (acc, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acc.accept(s).await else { return };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
}
