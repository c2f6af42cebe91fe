//! Throwaway PostgreSQL and MariaDB servers for tandem's tests, demo and benchmarks.
//!
//! tandem's tests run against real servers, never mocks of them (see `style.md`), and each
//! test must be free to break its server: restart it, fill its replication slots, turn its
//! binlog off. So the kit starts servers of its own on free loopback ports, configured the
//! way tandem needs (logical decoding on PostgreSQL, a full row-based binlog with GTIDs on
//! MariaDB), and leaves the machine's default instances alone.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_testkit::KitError> {
//! let pg = tandem_testkit::shared_pg().await;
//! let db = pg.create_database("orders").await?;
//! pg.psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)").await?;
//! // connect tandem's real driver to db.url() ...
//! # Ok(()) }
//! ```
//!
//! Three promises shape the design:
//! - **Fast enough to use per test.** nextest runs every test in a process of its own, so a
//!   "shared" instance is started once per test. Data directories are copied from a cached
//!   template instead of initialised each time, and readiness is polled every 20 ms: an
//!   instance of either is ready in about 0.3 s (the first start on a machine also builds
//!   the template, about 1 s more).
//! - **Nothing left behind.** A server never outlives the process that started it, and a
//!   throwaway data directory goes with it, even when a test panics or is killed; see
//!   `server` for the watchdog that guarantees it.
//! - **Small.** No database driver: setup SQL goes through `psql` and `mariadb`, so the kit
//!   costs a test binary little to build and never disagrees with the drivers under test.
//!
//! The `tandem-kit` binary (`tandem-kit up --dir DIR`) runs one instance of each with a
//! kept data directory, for the demo and the benchmarks.

mod error;
mod instance_dir;
mod mariadb;
mod postgres;
mod programs;
mod server;
mod sql_cli;
mod template;
mod test_db;
mod tls;

pub use error::KitError;
pub use mariadb::{MariaInstance, MariaOptions};
pub use postgres::{PgInstance, PgOptions};
pub use programs::{MARIADB_BINDIR_ENV, PG_BINDIR_ENV};
pub use template::TMPDIR_ENV;
pub use test_db::TestDb;
pub use tls::TestCerts;

use tokio::sync::OnceCell;

static SHARED_PG: OnceCell<PgInstance> = OnceCell::const_new();
static SHARED_MARIA: OnceCell<MariaInstance> = OnceCell::const_new();

/// The PostgreSQL instance shared by the tests of this process, started with
/// [`PgOptions::default`] on first use.
///
/// It is never dropped (statics are not); the watchdog stops it and removes its directory
/// when the process exits. Tests that restart or reconfigure a server start their own
/// with [`PgInstance::start`] instead.
///
/// # Panics
/// If the server cannot be started; the message carries the server's log tail.
pub async fn shared_pg() -> &'static PgInstance {
    SHARED_PG
        .get_or_init(|| async {
            match PgInstance::start(PgOptions::default()).await {
                Ok(instance) => instance,
                Err(e) => panic!("could not start the shared PostgreSQL instance: {e}"),
            }
        })
        .await
}

/// The MariaDB instance shared by the tests of this process, started with
/// [`MariaOptions::default`] on first use. See [`shared_pg`] for its lifetime.
///
/// # Panics
/// If the server cannot be started; the message carries the server's log tail.
pub async fn shared_maria() -> &'static MariaInstance {
    SHARED_MARIA
        .get_or_init(|| async {
            match MariaInstance::start(MariaOptions::default()).await {
                Ok(instance) => instance,
                Err(e) => panic!("could not start the shared MariaDB instance: {e}"),
            }
        })
        .await
}
