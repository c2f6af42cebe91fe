//! Connecting to MySQL/MariaDB with the session every tandem connection relies on.
//!
//! Invariant: no connection tandem uses can store a value other than the one it was given.
//! The session is therefore pinned before first use — and again whenever the driver resets
//! it — to:
//! - `time_zone = '+00:00'`: `TIMESTAMP` columns are read and written in UTC, so an instant
//!   means the same on both sides whatever the server's zone;
//! - `NAMES utf8mb4`: text crosses as UTF-8 in full (no `?` for an emoji);
//! - a strict `sql_mode` (`STRICT_ALL_TABLES`, `NO_ZERO_DATE`, `NO_ZERO_IN_DATE`, …): a value
//!   the column cannot hold is an error, not a warning and a silently truncated value, so the
//!   applier can dead-letter it (design invariant 5). `NO_AUTO_VALUE_ON_ZERO` keeps a
//!   replicated id of 0 as 0 instead of drawing a new auto-increment value.
//!
//! TLS follows libpq's `sslmode` words ([`TlsMode`]); `prefer` tries TLS and falls back to
//! plain only when the server offers no TLS at all. The password is handed to the driver
//! and nowhere else: it is not part of any message, log line or error.
//!
//! mysql_async builds its rustls configuration with the process-wide default crypto
//! provider, which rustls cannot choose on its own when the build enables both `ring` and
//! `aws-lc-rs` (as this workspace's dependency graph does): the first TLS connect panicked.
//! [`connect`] therefore installs `ring`, the provider the rest of tandem uses, unless the
//! process chose one already.

mod server_name;

use std::sync::Once;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts};
use tandem_core::config::{EndpointConfig, Secret, TlsMode};
use tandem_core::error::StageError;

/// The `sql_mode` of every tandem session.
pub const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,\
     ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO";

/// TCP keepalive, so a half-open connection is noticed without waiting for a query.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Prepared statements cached per connection. The sink pads statement shapes to powers of
/// two, so a handful per table and operation suffices.
const STMT_CACHE: usize = 256;

/// Open one connection for `ep` with tandem's session settings.
pub async fn connect(ep: &EndpointConfig, password: Option<&Secret>) -> Result<Conn, StageError> {
    if ep.tls.mode != TlsMode::Disable {
        ensure_crypto_provider();
    }
    let base = base_opts(ep)?;
    let builder = session(OptsBuilder::from_opts(base.clone()), password);
    let endpoint = redacted_target(ep);
    match ep.tls.mode {
        TlsMode::Disable => open(builder, &endpoint).await,
        TlsMode::Prefer => {
            let tls = builder.clone().ssl_opts(Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ));
            match Conn::new(tls).await {
                Ok(conn) => Ok(conn),
                Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) => {
                    tracing::debug!(endpoint = %endpoint, "server offers no tls; connecting in plain text");
                    open(builder, &endpoint).await
                }
                Err(e) => Err(classify(format!("Connecting to {endpoint}"), e)),
            }
        }
        TlsMode::Require => {
            let ssl = SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true);
            open(builder.ssl_opts(Some(ssl)), &endpoint).await
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let Some(ca) = ep.tls.ca_file.clone() else {
                return Err(StageError::definite(
                    format!("TLS mode for {endpoint} verifies the server but no CA is configured"),
                    "set tls.ca_file to the PEM file of the CA that signed the server's certificate",
                ));
            };
            let mut ssl = SslOpts::default()
                .with_root_certs(vec![ca.into()])
                .with_disable_built_in_roots(true);
            if ep.tls.mode == TlsMode::VerifyCa {
                // The certificate's own name, so only the chain decides (server_name.rs).
                let name =
                    server_name::certificate_name(base.ip_or_hostname(), base.tcp_port()).await?;
                ssl = ssl.with_danger_tls_hostname_override(Some(name));
            }
            open(builder.ssl_opts(Some(ssl)), &endpoint).await
        }
    }
}

/// Install `ring` as the process's rustls provider if none is installed (module docs).
fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

async fn open(builder: OptsBuilder, endpoint: &str) -> Result<Conn, StageError> {
    Conn::new(builder)
        .await
        .map_err(|e| classify(format!("Connecting to {endpoint}"), e))
}

/// The driver options from the endpoint URL (`mariadb://` is accepted as `mysql://`).
fn base_opts(ep: &EndpointConfig) -> Result<Opts, StageError> {
    let url = match ep.url.split_once("://") {
        Some(("mariadb", rest)) => format!("mysql://{rest}"),
        _ => ep.url.clone(),
    };
    Opts::from_url(&url).map_err(|e| {
        StageError::definite_from(
            format!("The endpoint URL {:?} is not a valid MySQL URL", ep.url),
            "write it like mysql://tandem@127.0.0.1:3306/retail",
            e,
        )
    })
}

fn session(builder: OptsBuilder, password: Option<&Secret>) -> OptsBuilder {
    builder
        .pass(password.map(|p| p.expose().to_owned()))
        .setup(vec![
            "SET time_zone = '+00:00'".to_owned(),
            "SET NAMES utf8mb4".to_owned(),
            format!("SET SESSION sql_mode = '{SQL_MODE}'"),
        ])
        .tcp_keepalive(Some(KEEPALIVE))
        .stmt_cache_size(STMT_CACHE)
}

/// `user@host:port/db` for messages: never the password (the URL cannot hold one; config
/// validation refuses it).
fn redacted_target(ep: &EndpointConfig) -> String {
    ep.url
        .split_once("://")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| ep.url.clone())
}

/// Whether `conn` talks to MariaDB (its version string says so).
pub async fn is_mariadb(conn: &mut Conn) -> Result<bool, StageError> {
    let v: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| classify("Reading the server version", e))?;
    Ok(v.is_some_and(|v| v.contains("MariaDB")))
}

/// Server error codes after which a retry can succeed.
const TRANSIENT_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1205, // lock wait timeout
    1213, // deadlock
    1317, // query interrupted
    1927, // connection killed (MariaDB)
    2006, // server has gone away
    2013, // lost connection during query
    3024, // max_execution_time exceeded (MySQL)
];

/// Whether a server error code is worth a retry.
pub fn is_transient_code(code: u16) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// Turn a driver error into a [`StageError`]: transient when retrying may help (lost
/// connection, deadlock, lock wait timeout), definite otherwise, with advice for the DBA.
/// `what` says what tandem was doing.
pub fn classify(what: impl Into<String>, err: mysql_async::Error) -> StageError {
    let what = what.into();
    match &err {
        mysql_async::Error::Server(s) if is_transient_code(s.code) => {
            StageError::transient(what, err)
        }
        mysql_async::Error::Server(s) => {
            let advice = server_advice(s.code);
            StageError::definite_from(what, advice, err)
        }
        mysql_async::Error::Io(IoError::Tls(_)) => StageError::definite_from(
            what,
            "the TLS handshake failed: check tls.mode and tls.ca_file against the server's certificate",
            err,
        ),
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            StageError::definite_from(
                what,
                "the server does not offer TLS: enable it on the server (ssl_cert, ssl_key) or set tls.mode = \"prefer\"",
                err,
            )
        }
        mysql_async::Error::Url(_) => StageError::definite_from(
            what,
            "write the URL like mysql://tandem@127.0.0.1:3306/retail",
            err,
        ),
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) | mysql_async::Error::Other(_) => {
            StageError::transient(what, err)
        }
    }
}

/// What the DBA should do about a definite server error.
pub fn server_advice(code: u16) -> String {
    match code {
        1045 => "check the user in the endpoint URL and the password secret".into(),
        1044 | 1142 | 1143 | 1227 => {
            "grant the missing privilege to tandem's user; `tandem check` lists what is needed".into()
        }
        1049 => "create the database or correct the endpoint URL".into(),
        1146 | 1054 => "the table or column is missing: run `tandem check` and fix the mapping or the schema".into(),
        1264 | 1690 => "the value is out of range for the column: widen the column or fix the source row".into(),
        1406 => "the value is longer than the column allows: widen the column or fix the source row".into(),
        1366 | 1292 | 1265 | 1367 => {
            "the value is not valid for the column's type: fix the source row or the column type".into()
        }
        1048 => "the column is NOT NULL but the row has no value for it: allow NULL or fix the source row".into(),
        1452 => "the referenced row does not exist on the target: replicate the parent table first or drop the foreign key".into(),
        1451 => "other rows still reference this row: replicate the child table too or drop the foreign key".into(),
        1062 => "another row already has this unique value: resolve the duplicate on the target".into(),
        3819 | 4025 => "the row violates a CHECK constraint on the target: fix the row or the constraint".into(),
        1153 | 1301 => "raise max_allowed_packet on the server; the row is larger than it allows".into(),
        _ => "see the server's message; `tandem check` verifies the setup".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::ServerError;
    use tandem_core::ErrorClass;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(ServerError {
            code,
            message: "Out of range value for column 'qty' at row 1".into(),
            state: "22003".into(),
        })
    }

    #[test]
    fn deadlocks_and_lock_timeouts_are_retried() {
        assert_eq!(classify("x", server(1213)).class(), ErrorClass::Transient);
        assert_eq!(classify("x", server(1205)).class(), ErrorClass::Transient);
    }

    #[test]
    fn data_errors_are_definite_with_advice() {
        for code in [1264, 1406, 1366, 1452, 1062] {
            let e = classify("writing", server(code));
            assert_eq!(e.class(), ErrorClass::Definite, "code {code}");
            assert!(e.report().contains("'qty'"), "{}", e.report());
        }
    }

    #[test]
    fn lost_connections_are_transient() {
        let io = mysql_async::Error::Io(IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(classify("x", io).class(), ErrorClass::Transient);
    }
}
