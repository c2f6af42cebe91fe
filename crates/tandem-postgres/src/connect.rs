//! Opening a SQL session to a PostgreSQL endpoint.
//!
//! Every session tandem opens is pinned to the same settings, because the text form of a
//! value depends on them and tandem compares text read back (`fetch_current`, `verify`)
//! with text decoded from pgoutput: `TimeZone=UTC` (timestamptz print in UTC),
//! `DateStyle=ISO` and `extra_float_digits=3` (floats print exactly; PG ≥ 12 does this by
//! default, older servers need the setting).
//!
//! TLS follows libpq's `sslmode` vocabulary ([`TlsMode`]): `prefer` and `require` encrypt
//! without checking the certificate, `verify-ca` checks the chain against `ca_file`,
//! `verify-full` also the host name. rustls (with the `ring` provider, already in the build
//! for the MySQL driver) does the handshake; the provider is passed explicitly so the
//! process-wide default never matters.
//!
//! Errors are split by what helps: a refused or dropped connection is transient (the server
//! may be restarting), a failed password or an unknown database is definite and says what
//! to change. The password is handed to the driver only; it never appears in a message.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tandem_core::config::{EndpointConfig, Secret, TlsMode};
use tandem_core::error::StageError;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Startup options every tandem session runs with (see the module docs).
pub const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3";

/// Connect to `ep` and spawn the connection's I/O task.
///
/// The returned handle ends when the connection closes; the client's calls then fail with a
/// transient error.
pub async fn connect(
    ep: &EndpointConfig,
    password: Option<&Secret>,
    application_name: &str,
) -> Result<(Client, JoinHandle<()>), StageError> {
    let mut config: Config = ep.url.parse().map_err(|e| {
        StageError::definite_from(
            "The PostgreSQL endpoint URL cannot be parsed",
            "write it like postgres://user@host:5432/dbname (without a password)",
            e,
        )
    })?;
    if let Some(pw) = password {
        config.password(pw.expose());
    }
    config.application_name(application_name);
    config.options(SESSION_OPTIONS);
    let user = config.get_user().unwrap_or("(none)").to_owned();
    let database = ep.database().unwrap_or_default();

    let result = match ep.tls.mode {
        TlsMode::Disable => {
            config.ssl_mode(SslMode::Disable);
            config
                .connect(NoTls)
                .await
                .map(|(client, conn)| (client, spawn_connection(conn)))
        }
        mode => {
            config.ssl_mode(if mode == TlsMode::Prefer {
                SslMode::Prefer
            } else {
                SslMode::Require
            });
            let tls = MakeRustlsConnect::new(tls_config(mode, ep.tls.ca_file.as_deref())?);
            config
                .connect(tls)
                .await
                .map(|(client, conn)| (client, spawn_connection(conn)))
        }
    };
    result.map_err(|e| classify_connect_error(e, &user, &database))
}

fn spawn_connection<F>(conn: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    })
}

/// Sort a failed connect into transient and definite, with advice for the DBA.
fn classify_connect_error(e: tokio_postgres::Error, user: &str, database: &str) -> StageError {
    if let Some(code) = e.code() {
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return StageError::definite_from(
                format!("PostgreSQL refused the login of role {user:?}"),
                "check the endpoint's password secret and that pg_hba.conf allows this role and host",
                e,
            );
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return StageError::definite_from(
                format!("Database {database:?} does not exist"),
                "create it or correct the database name at the end of the endpoint URL",
                e,
            );
        }
        if *code == SqlState::TOO_MANY_CONNECTIONS || code.code().starts_with("57") {
            return StageError::transient("PostgreSQL is not accepting connections right now", e);
        }
    }
    let text = e.to_string();
    if text.contains("password missing") {
        return StageError::definite_from(
            format!("PostgreSQL asks for a password for role {user:?} and none is configured"),
            "set the endpoint's password = { env = \"NAME\" } or { file = \"PATH\" }",
            e,
        );
    }
    if text.contains("TLS") || text.contains("certificate") {
        return StageError::definite_from(
            "The TLS handshake with PostgreSQL failed",
            "check tls.mode and tls.ca_file against the server's certificate, or set ssl = on on the server",
            e,
        );
    }
    StageError::transient(format!("Cannot connect to PostgreSQL as {user:?}"), e)
}

/// The rustls configuration for a TLS mode other than `disable`.
fn tls_config(
    mode: TlsMode,
    ca_file: Option<&std::path::Path>,
) -> Result<ClientConfig, StageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            StageError::definite_from("TLS cannot be set up", "report this as a bug", e)
        })?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => Arc::new(NoVerification(provider)),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = load_roots(ca_file)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| {
                    StageError::definite_from(
                        "The CA certificates cannot be used to verify the server",
                        "set tls.ca_file to the PEM file of the CA that signed the server's certificate",
                        e,
                    )
                })?;
            if mode == TlsMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn load_roots(ca_file: Option<&std::path::Path>) -> Result<RootCertStore, StageError> {
    let Some(path) = ca_file else {
        return Err(StageError::definite(
            "Certificate verification needs a CA",
            "set tls.ca_file to the PEM file of the CA that signed the server's certificate",
        ));
    };
    let advice = format!(
        "make {} a readable PEM file of CA certificates",
        path.display()
    );
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| StageError::definite_from("Cannot read the CA file", advice.clone(), e))?;
    for cert in certs {
        let cert = cert
            .map_err(|e| StageError::definite_from("Cannot read the CA file", advice.clone(), e))?;
        roots.add(cert).map_err(|e| {
            StageError::definite_from("A CA certificate is invalid", advice.clone(), e)
        })?;
    }
    if roots.is_empty() {
        return Err(StageError::definite(
            format!("{} holds no certificate", path.display()),
            advice,
        ));
    }
    Ok(roots)
}

/// `prefer`/`require`: encryption without authentication of the server, as libpq does.
/// Handshake signatures are still checked, so the session key belongs to the presented
/// certificate.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the configured CA; the name in it may differ from the
/// host connected to (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_need_a_ca() {
        let e = tls_config(TlsMode::VerifyFull, None).unwrap_err();
        assert!(e.to_string().contains("ca_file"), "{e}");
        let e = tls_config(
            TlsMode::VerifyCa,
            Some(std::path::Path::new("/nonexistent.pem")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
        assert!(tls_config(TlsMode::Require, None).is_ok());
    }
}
