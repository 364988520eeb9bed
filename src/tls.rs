//! The listener's TLS: rustls with the certificate and key from the config,
//! HTTP/2 offered by ALPN beside HTTP/1.1. One crypto backend (ring) in the
//! whole graph, named explicitly so rustls never has to guess.

use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn acceptor(tls: &Tls) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("reading tls.cert {}", tls.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing tls.cert {}", tls.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert {}: no certificate in the file",
        tls.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("reading tls.key {}", tls.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert and tls.key do not make a valid pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
