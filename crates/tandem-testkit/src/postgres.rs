//! Throwaway PostgreSQL servers, configured for logical replication.
//!
//! Each instance is a private `postgres` postmaster on a free loopback port, with a data
//! directory copied from a cached `initdb` template (see `template`) and trust
//! authentication on loopback and its Unix socket, including replication connections. The
//! settings the kit owns are written to `tandem-kit.conf` in the data directory at every
//! start and pulled in by an `include_if_exists` at the end of `postgresql.conf`, so
//! `ALTER SYSTEM` (which writes `postgresql.auto.conf`, read later) still overrides them.
//!
//! `fsync` is off by default, for speed. That does not weaken the crash tests: they kill
//! *processes* (tandem's or the server's), and a killed process loses nothing the kernel
//! already has; only a machine crash would, and no test simulates one. `synchronous_commit`
//! stays on, so a commit still waits for its WAL write. Set [`PgOptions::fsync`] to measure
//! real durability costs.
//!
//! Shutdown modes: [`PgInstance::stop`] and [`PgInstance::restart`] use *fast* shutdown
//! (SIGINT: checkpoint, clean exit); dropping a throwaway instance uses *immediate*
//! shutdown (SIGQUIT), which skips the checkpoint but, unlike SIGKILL, still removes the
//! server's System V shared memory segment.
//!
//! Requires PostgreSQL 14 or later (`DROP DATABASE ... WITH (FORCE)`, and
//! `pg_terminate_backend` with a timeout in the cleanup of test databases).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::instance_dir::InstanceDir;
use crate::programs::{postgres_run_as, PgPrograms, RunAs};
use crate::server::{self, OrphanPolicy, ServerProcess};
use crate::sql_cli::SqlCli;
use crate::test_db::{unique_name, TestDb};
use crate::{template, KitError};

const SERVER: &str = "PostgreSQL";
/// How long a start may take before it is reported as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// How long an immediate shutdown (on drop) may take before the server is killed.
const DROP_GRACE: Duration = Duration::from_secs(10);
/// Arguments for the template's `initdb`: C locale for deterministic sorting.
const INITDB_ARGS: [&str; 6] = [
    "-U",
    "postgres",
    "--auth=trust",
    "--encoding=UTF8",
    "--no-locale",
    "--no-sync",
];
/// Trust on loopback and the Unix socket, for normal and replication connections.
const PG_HBA: &str = "\
# Written by tandem-kit: throwaway test servers listen on loopback only.
local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
";
const CONF_FILE: &str = "tandem-kit.conf";

/// How to start a [`PgInstance`]. `PgOptions::default()` is ready for logical replication.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `wal_level = logical` (default) or, if false, `replica`: for testing that tandem
    /// refuses a server that cannot decode.
    pub wal_level_logical: bool,
    /// `fsync` (default off; see the module docs for why that is safe for tests).
    pub fsync: bool,
    /// More `postgresql.conf` settings, written after the kit's own (so they win). Values
    /// are quoted by the kit: `("work_mem", "64MB")`.
    pub extra_conf: Vec<(String, String)>,
    /// A fixed port instead of a free one.
    pub port: Option<u16>,
    /// Keep the instance in this directory (created if missing, reused if it holds one,
    /// never removed) instead of a throwaway one. Must be reachable by the `postgres` OS
    /// user when the kit runs as root.
    pub data_dir: Option<PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            wal_level_logical: true,
            fsync: false,
            extra_conf: Vec::new(),
            port: None,
            data_dir: None,
        }
    }
}

/// A PostgreSQL server of the kit's own. Stopped (and its throwaway directory removed)
/// when dropped.
#[derive(Debug)]
pub struct PgInstance {
    programs: PgPrograms,
    run_as: Option<RunAs>,
    data_dir: PathBuf,
    log: PathBuf,
    port: u16,
    process: Option<ServerProcess>,
    // Last: the directory is removed only after the server has stopped.
    dir: InstanceDir,
}

impl PgInstance {
    /// Starts a server and waits until it answers queries (at most 60 s).
    pub async fn start(opts: PgOptions) -> Result<PgInstance, KitError> {
        let programs = PgPrograms::locate()?;
        let run_as = postgres_run_as()?;
        let template = {
            let programs = programs.clone();
            let args: Vec<String> = INITDB_ARGS.iter().map(|a| (*a).to_owned()).collect();
            tokio::task::spawn_blocking(move || {
                template::ensure("pg", &programs.initdb, &args, |dir| {
                    build_template(dir, &programs, run_as)
                })
            })
            .await
            .map_err(|e| {
                KitError::io("building the PostgreSQL template")(std::io::Error::other(e))
            })??
        };

        let dir = InstanceDir::create("pg", opts.data_dir.as_deref())?;
        RunAs::chown(run_as, dir.path())?;
        let data_dir = dir.path().join("data");
        if !data_dir.exists() {
            template::copy(&template, &data_dir)?;
        } else if !data_dir.join("PG_VERSION").exists() {
            return Err(KitError::io(format!("reusing {}", data_dir.display()))(
                std::io::Error::other("it exists but is not a PostgreSQL data directory"),
            ));
        }
        write_conf(&data_dir, dir.path(), &opts, run_as)?;

        let mut instance = PgInstance {
            programs,
            run_as,
            log: dir.path().join("postgres.log"),
            data_dir,
            port: 0,
            process: None,
            dir,
        };
        instance
            .launch(opts.port, if opts.port.is_some() { 1 } else { 5 })
            .await?;
        Ok(instance)
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`; no password (trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the Unix socket (`.s.PGSQL.PORT`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Runs `sql` (any number of statements) in database `db` with `psql` and returns its
    /// output: one line per row, columns separated by `|`. Stops at the first error.
    pub async fn psql(&self, db: &str, sql: &str) -> Result<String, KitError> {
        self.cli(db)?.run(sql).await
    }

    /// Creates a database named after `prefix` plus a unique suffix; it is dropped when the
    /// returned handle is (best effort).
    pub async fn create_database(&self, prefix: &str) -> Result<TestDb, KitError> {
        let name = unique_name(prefix);
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .await?;
        let drop_sql = format!(
            "DO $$ DECLARE s record; BEGIN \
               FOR s IN SELECT slot_name, active_pid FROM pg_replication_slots \
                        WHERE database = '{name}' LOOP \
                 IF s.active_pid IS NOT NULL THEN \
                   PERFORM pg_terminate_backend(s.active_pid, 5000); \
                 END IF; \
                 PERFORM pg_drop_replication_slot(s.slot_name); \
               END LOOP; \
             END $$;\n\
             DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE);\n"
        );
        Ok(TestDb::new(
            name.clone(),
            self.url(&name),
            self.cli("postgres")?,
            drop_sql,
        ))
    }

    /// Stops the server with a fast shutdown and removes a throwaway directory.
    pub async fn stop(mut self) -> Result<(), KitError> {
        let process = self
            .process
            .take()
            .ok_or(KitError::NotRunning { server: SERVER })?;
        process.stop(Signal::SIGINT, STOP_GRACE).await
    }

    /// Stops the server with a fast shutdown (if it runs) and starts it again on the same
    /// data directory and port, like an operator restarting it under a running client.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        if let Some(process) = self.process.take() {
            process.stop(Signal::SIGINT, STOP_GRACE).await?;
        }
        self.launch(Some(self.port), 20).await
    }

    /// Spawns the postmaster and waits for it; retries as [`server::launch`] says.
    async fn launch(&mut self, fixed_port: Option<u16>, attempts: u32) -> Result<(), KitError> {
        let psql = self.programs.psql.clone();
        let expected = self.data_dir.display().to_string();
        // The port may belong to someone else's server: check it is ours.
        let probe = |port| {
            let cli = SqlCli::psql(psql.clone(), port, "postgres");
            let expected = expected.clone();
            move || {
                let (cli, expected) = (cli.clone(), expected.clone());
                async move { matches!(cli.run("SHOW data_directory").await, Ok(d) if d == expected) }
            }
        };
        let (port, process) = server::launch(
            fixed_port,
            attempts,
            READY_TIMEOUT,
            (Signal::SIGQUIT, DROP_GRACE),
            |port| {
                ServerProcess::spawn(SERVER, self.command(port), &self.log, &self.orphan_policy())
            },
            probe,
        )
        .await?;
        self.port = port;
        self.process = Some(process);
        Ok(())
    }

    fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new(&self.programs.postgres);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(port.to_string())
            .current_dir(&self.data_dir);
        RunAs::apply(self.run_as, &mut cmd);
        cmd
    }

    fn orphan_policy(&self) -> OrphanPolicy {
        let signal = if self.dir.is_kept() {
            Signal::SIGINT
        } else {
            Signal::SIGQUIT
        };
        OrphanPolicy {
            signal,
            remove_dir: self.dir.remove_on_orphan(),
        }
    }

    fn cli(&self, db: &str) -> Result<SqlCli, KitError> {
        if self.process.is_none() {
            return Err(KitError::NotRunning { server: SERVER });
        }
        Ok(SqlCli::psql(self.programs.psql.clone(), self.port, db))
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if self.dir.is_kept() {
                process.shutdown_blocking(Signal::SIGINT, STOP_GRACE);
            } else {
                process.shutdown_blocking(Signal::SIGQUIT, DROP_GRACE);
            }
        }
    }
}

/// `initdb` into `dir` (as the server's OS user), then the kit's `pg_hba.conf` and the
/// include of `tandem-kit.conf`.
fn build_template(
    dir: &Path,
    programs: &PgPrograms,
    run_as: Option<RunAs>,
) -> Result<(), KitError> {
    std::fs::create_dir(dir).map_err(KitError::io(format!("creating {}", dir.display())))?;
    RunAs::chown(run_as, dir)?;
    let mut cmd = Command::new(&programs.initdb);
    cmd.args(INITDB_ARGS).arg("-D").arg(dir).current_dir(dir);
    RunAs::apply(run_as, &mut cmd);
    template::run(cmd, "initdb")?;
    // Both files exist (created by initdb, owned by the server's user); rewriting them
    // keeps that owner.
    std::fs::write(dir.join("pg_hba.conf"), PG_HBA).map_err(KitError::io("writing pg_hba.conf"))?;
    let conf = dir.join("postgresql.conf");
    let mut text =
        std::fs::read_to_string(&conf).map_err(KitError::io("reading postgresql.conf"))?;
    text.push_str(&format!(
        "\n# tandem-kit's settings, rewritten at every start\ninclude_if_exists '{CONF_FILE}'\n"
    ));
    std::fs::write(&conf, text).map_err(KitError::io("writing postgresql.conf"))
}

/// Writes `tandem-kit.conf`: the settings tandem's tests rely on, then `extra_conf`.
fn write_conf(
    data_dir: &Path,
    socket_dir: &Path,
    opts: &PgOptions,
    run_as: Option<RunAs>,
) -> Result<(), KitError> {
    let wal_level = if opts.wal_level_logical {
        "logical"
    } else {
        "replica"
    };
    let socket_dir = socket_dir.display().to_string();
    let mut settings: Vec<(&str, &str)> = vec![
        ("listen_addresses", "127.0.0.1"),
        ("unix_socket_directories", &socket_dir),
        ("max_connections", "200"),
        ("shared_buffers", "128MB"),
        ("wal_level", wal_level),
        ("max_replication_slots", "20"),
        ("max_wal_senders", "20"),
        // Low, so a test sees a dead replication client quickly.
        ("wal_sender_timeout", "10s"),
        ("track_commit_timestamp", "on"),
        ("fsync", if opts.fsync { "on" } else { "off" }),
        ("timezone", "UTC"),
        ("log_timezone", "UTC"),
    ];
    settings.extend(
        opts.extra_conf
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let mut text =
        String::from("# Written by tandem-kit at every start; use PgOptions to change it.\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
    }
    let path = data_dir.join(CONF_FILE);
    std::fs::write(&path, text).map_err(KitError::io(format!("writing {}", path.display())))?;
    RunAs::chown(run_as, &path)
}
