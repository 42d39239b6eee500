//! TLS: a client that trusts the server's certificate talks RESP over TLS;
//! a plaintext client gets nowhere and harms nothing; bad PEM files are
//! refused at start with the file named. redis-cli --tls talks to it too.

use std::io::Write;
use std::sync::Arc;

use redru_server::{Config, Running, Tls};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::util::{Server, TestResult};

/// A self-signed certificate for localhost, written as PEM files in `dir`.
fn certificate(dir: &std::path::Path) -> Result<(Tls, CertificateDer<'static>), Box<dyn std::error::Error>> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let tls = Tls { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&tls.cert, cert.pem())?;
    std::fs::write(&tls.key, key_pair.serialize_pem())?;
    Ok((tls, cert.der().clone()))
}

#[test]
fn resp_over_tls_with_a_trusted_certificate() -> TestResult {
    let certs = tempfile::tempdir()?;
    let (tls, der) = certificate(certs.path())?;
    let server = Server::start_with(Config { tls: Some(tls), ..Config::default() })?;
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reply = runtime.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der)?;
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut stream = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
        stream.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nsec\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").await?;
        let mut reply = [0u8; 64];
        let mut got = 0;
        while !reply[..got].ends_with(b"sec\r\n") {
            let n = stream.read(&mut reply[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<_, Box<dyn std::error::Error>>(String::from_utf8_lossy(&reply[..got]).into_owned())
    })?;
    assert_eq!(reply, "+OK\r\n$3\r\nsec\r\n");
    assert_eq!(server.db.get_value("k"), Some(redru::json!("sec")));
    Ok(())
}

#[test]
fn plaintext_clients_get_nowhere_on_a_tls_port() -> TestResult {
    let certs = tempfile::tempdir()?;
    let (tls, _) = certificate(certs.path())?;
    let server = Server::start_with(Config { tls: Some(tls), ..Config::default() })?;
    let mut plain = server.client()?;
    plain.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")?;
    assert!(plain.read().is_err(), "a plaintext request was answered in RESP");
    assert!(server.db.is_empty(), "a plaintext request was run");
    Ok(())
}

#[test]
fn bad_pem_files_are_refused_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(redru::Options::new().durability(redru::Durability::Buffered).open(dir.path().join("db"))?);
    let cert = dir.path().join("cert.pem");
    let mut f = std::fs::File::create(&cert)?;
    f.write_all(b"not a certificate")?;
    let tls = Tls { cert: cert.clone(), key: dir.path().join("missing.pem") };
    let refused = Running::start(db, Config { port: 0, tls: Some(tls), ..Config::default() });
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("cert.pem"), "{message}");
    Ok(())
}

#[test]
fn redis_cli_speaks_tls_to_it() -> TestResult {
    if std::process::Command::new("redis-cli").arg("--version").output().is_err() {
        if std::env::var_os("REDRU_SKIP_REDIS_TOOLS").is_some() {
            eprintln!("redis-cli missing: skipped (REDRU_SKIP_REDIS_TOOLS)");
            return Ok(());
        }
        return Err("redis-cli is missing: install Debian's redis-tools (.ci/run does)".into());
    }
    let certs = tempfile::tempdir()?;
    let (tls, _) = certificate(certs.path())?;
    let server = Server::start_with(Config { tls: Some(tls.clone()), ..Config::default() })?;
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&tls.cert)
        .args(["--sni", "localhost", "-h", "127.0.0.1", "-p", &server.addr().port().to_string(), "ping"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG", "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
