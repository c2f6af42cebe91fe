//! Certificates for servers with TLS: a throwaway certificate authority and a server
//! certificate it signed, so tests can check tandem's `verify-ca` and `verify-full` modes
//! against real PostgreSQL and MariaDB handshakes.
//!
//! The files live in a temporary directory removed on drop. PostgreSQL refuses a key file
//! that others can read or that belongs to another user, so when the kit runs as root the
//! directory and files are handed to the `postgres` OS user (root, which runs MariaDB, reads
//! them regardless) and the key is mode 0600.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_testkit::KitError> {
//! use tandem_testkit::{PgInstance, PgOptions, TestCerts};
//! let certs = TestCerts::generate(&["127.0.0.1", "localhost"])?;
//! let pg = PgInstance::start(PgOptions { extra_conf: certs.pg_conf(), ..Default::default() }).await?;
//! // connect with tls = { mode = "verify-full", ca_file = certs.ca_file() } ...
//! # Ok(()) }
//! ```

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

use crate::error::KitError;
use crate::programs::{postgres_run_as, RunAs};

/// A certificate authority and one server certificate signed by it, as PEM files.
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
}

impl TestCerts {
    /// A new CA and a server certificate for `names` (DNS names or IP addresses, which
    /// become the subject alternative names a `verify-full` client checks).
    pub fn generate(names: &[&str]) -> Result<TestCerts, KitError> {
        let fail = |what: &str| {
            let what = what.to_owned();
            move |e: rcgen::Error| KitError::io(what.clone())(std::io::Error::other(e))
        };
        let dir = tempfile::Builder::new()
            .prefix("tandem-kit-tls-")
            .tempdir()
            .map_err(KitError::io("creating the certificate directory"))?;

        let ca_key = KeyPair::generate().map_err(fail("generating the CA key"))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .map_err(fail("preparing the CA certificate"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tandem-kit test CA");
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(fail("signing the CA certificate"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(fail("generating the server key"))?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut server_params =
            CertificateParams::new(names).map_err(fail("preparing the server certificate"))?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "tandem-kit server");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(fail("signing the server certificate"))?;

        let certs = TestCerts { dir };
        write(&certs.ca_file(), ca_cert.pem().as_bytes(), 0o644)?;
        write(&certs.cert_file(), server_cert.pem().as_bytes(), 0o644)?;
        write(
            &certs.key_file(),
            server_key.serialize_pem().as_bytes(),
            0o600,
        )?;

        let run_as = postgres_run_as()?;
        for path in [
            certs.dir.path().to_path_buf(),
            certs.ca_file(),
            certs.cert_file(),
            certs.key_file(),
        ] {
            RunAs::chown(run_as, &path)?;
        }
        std::fs::set_permissions(certs.dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(KitError::io(
                "opening the certificate directory to the server",
            ))?;
        Ok(certs)
    }

    /// The CA certificate (PEM): what a client's `ca_file` points at.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM, PKCS#8).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// `postgresql.conf` settings that turn TLS on with these files (for
    /// [`crate::PgOptions::extra_conf`]).
    pub fn pg_conf(&self) -> Vec<(String, String)> {
        vec![
            ("ssl".into(), "on".into()),
            (
                "ssl_cert_file".into(),
                self.cert_file().display().to_string(),
            ),
            ("ssl_key_file".into(), self.key_file().display().to_string()),
        ]
    }

    /// `mariadbd` arguments that turn TLS on with these files (for
    /// [`crate::MariaOptions::extra_args`]).
    pub fn maria_args(&self) -> Vec<String> {
        vec![
            format!("--ssl-cert={}", self.cert_file().display()),
            format!("--ssl-key={}", self.key_file().display()),
            format!("--ssl-ca={}", self.ca_file().display()),
        ]
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KitError> {
    std::fs::write(path, bytes).map_err(KitError::io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(KitError::io(format!("chmod {}", path.display())))
}
