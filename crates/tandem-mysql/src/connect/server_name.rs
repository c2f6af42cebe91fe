//! `verify-ca` on MySQL/MariaDB: which name to check the server's certificate against.
//!
//! `verify-ca` means "the certificate chains to the configured CA, whatever host name it
//! carries". mysql_async (0.37.1) implements its `skip_domain_validation` by matching the
//! text `NotValidForName` in rustls' error, which rustls 0.23 no longer prints, so the host
//! name is always checked and a CA-signed certificate for another name is refused. What
//! mysql_async does offer is a host name *override*. So for `verify-ca` tandem first reads
//! the name the server's certificate carries — a TLS handshake of its own after MySQL's
//! `SSLRequest`, stopped as soon as the certificate arrived — and then connects with that
//! name as the override. The real connection still verifies the chain against the CA and
//! the name against the certificate, so nothing is trusted that `verify-ca` would not
//! trust: the probe only chooses the name.
//!
//! Protocol: the server speaks first with its greeting packet; a client wanting TLS answers
//! with a 32-byte `SSLRequest` (capability flags with `CLIENT_SSL`, maximum packet size,
//! character set, 23 zero bytes) as packet 1 and starts the TLS handshake
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html>).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tandem_core::error::StageError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// The whole probe: connect, greeting, `SSLRequest`, handshake up to the certificate.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// `CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION`.
const SSL_REQUEST_CAPABILITIES: u32 = 0x0001 | 0x0200 | 0x0800 | 0x8000;
/// `CLIENT_SSL` in the server's capability flags.
const CLIENT_SSL: u16 = 0x0800;
/// utf8mb4_general_ci.
const CHARSET: u8 = 45;

/// The first subject alternative name (DNS name or IP address) of the certificate the
/// server at `host:port` presents.
pub async fn certificate_name(host: &str, port: u16) -> Result<String, StageError> {
    let what = format!("Reading the TLS certificate of {host}:{port} (for verify-ca)");
    match tokio::time::timeout(PROBE_TIMEOUT, probe(host, port)).await {
        Ok(Ok(der)) => name_in(&der).ok_or_else(|| {
            StageError::definite(
                format!("{what}: the certificate names no DNS name or IP address"),
                "give the server a certificate with a subjectAltName, or use tls.mode = \"require\"",
            )
        }),
        Ok(Err(ProbeError::NoTls)) => Err(StageError::definite(
            format!("{what}: the server does not offer TLS"),
            "configure ssl_cert/ssl_key on the server, or set tls.mode = \"disable\"",
        )),
        Ok(Err(ProbeError::Io(e))) => Err(StageError::transient(what, e)),
        Err(_) => Err(StageError::transient(
            what,
            std::io::Error::new(std::io::ErrorKind::TimedOut, "no certificate within 10 s"),
        )),
    }
}

#[derive(Debug)]
enum ProbeError {
    NoTls,
    Io(std::io::Error),
}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> Self {
        ProbeError::Io(e)
    }
}

async fn probe(host: &str, port: u16) -> Result<Vec<u8>, ProbeError> {
    let mut tcp = TcpStream::connect((host, port)).await?;
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut greeting = vec![0u8; len];
    tcp.read_exact(&mut greeting).await?;
    if !offers_tls(&greeting) {
        return Err(ProbeError::NoTls);
    }

    let mut request = Vec::with_capacity(36);
    request.extend_from_slice(&[32, 0, 0, 1]);
    request.extend_from_slice(&SSL_REQUEST_CAPABILITIES.to_le_bytes());
    request.extend_from_slice(&(16u32 << 20).to_le_bytes());
    request.push(CHARSET);
    request.extend_from_slice(&[0u8; 23]);
    tcp.write_all(&request).await?;

    let seen = Arc::new(Mutex::new(None));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Io(std::io::Error::other(e)))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture {
            seen: seen.clone(),
            provider,
        }))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| ProbeError::Io(std::io::Error::other(e)))?;
    // The verifier ends the handshake once it holds the certificate: an error is expected.
    let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let der = seen.lock().ok().and_then(|mut s| s.take());
    der.ok_or_else(|| {
        ProbeError::Io(std::io::Error::other(
            "the TLS handshake ended before the server sent a certificate",
        ))
    })
}

/// Whether a protocol-10 greeting has `CLIENT_SSL` in its lower capability flags (after
/// the version string, the thread id and the 8-byte scramble with its filler).
fn offers_tls(greeting: &[u8]) -> bool {
    let Some((&10, rest)) = greeting.split_first() else {
        return false;
    };
    let Some(nul) = rest.iter().position(|&b| b == 0) else {
        return false;
    };
    let flags_at = 1 + nul + 1 + 4 + 8 + 1;
    match greeting.get(flags_at..flags_at + 2) {
        Some(f) => u16::from_le_bytes([f[0], f[1]]) & CLIENT_SSL != 0,
        None => false,
    }
}

/// The first DNS name or IP address among the certificate's subject alternative names.
fn name_in(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let extensions = cert.tbs_certificate.extensions?;
    let san = extensions
        .iter()
        .find(|e| e.extn_id == SubjectAltName::OID)?;
    let names = SubjectAltName::from_der(san.extn_value.as_bytes()).ok()?;
    names.0.iter().find_map(|n| match n {
        GeneralName::DnsName(dns) => Some(dns.to_string()),
        GeneralName::IpAddress(ip) => match ip.as_bytes() {
            [a, b, c, d] => Some(std::net::Ipv4Addr::new(*a, *b, *c, *d).to_string()),
            bytes => <[u8; 16]>::try_from(bytes)
                .ok()
                .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        },
        _ => None,
    })
}

/// Keeps the server's certificate and stops the handshake.
#[derive(Debug)]
struct Capture {
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.to_vec());
        }
        Err(rustls::Error::General(
            "certificate read; probe done".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_flags_are_found_after_the_version_string() {
        let mut g = vec![10u8];
        g.extend_from_slice(b"10.11.19-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0]); // thread id
        g.extend_from_slice(&[0u8; 8]); // scramble part 1
        g.push(0); // filler
        g.extend_from_slice(&(0x0800u16 | 0x0200).to_le_bytes());
        assert!(offers_tls(&g));
        let n = g.len();
        g[n - 2..].copy_from_slice(&0x0200u16.to_le_bytes());
        assert!(!offers_tls(&g));
        assert!(!offers_tls(&g[..n - 1]));
        assert!(!offers_tls(&[]));
        assert!(!offers_tls(&[9, b'x', 0]));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(name_in(&[]), None);
        assert_eq!(name_in(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
    }
}
