//! TLS: the acceptor built from the configured PEM files (rustls, ring).
//! With TLS configured every connection must complete a TLS handshake
//! within [`HANDSHAKE`]; there is no plaintext port beside it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::Tls;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// The acceptor for `tls`, or an error naming the file that is wrong.
pub fn acceptor(tls: &Tls) -> io::Result<TlsAcceptor> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| invalid(format!("reading the TLS certificate {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{} holds no PEM certificate", tls.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| invalid(format!("reading the TLS private key {}: {e}", tls.key.display())))?;
    // ring rather than aws-lc-rs: it builds with the C compiler alone (no
    // cmake); rustls deprecates it only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("TLS: the certificate and key do not make a usable pair: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
