//! Throwaway MariaDB servers, configured for row-based binlog replication.
//!
//! Each instance is a private `mariadbd` on a free loopback port, started with
//! `--no-defaults` so that no `my.cnf` on the machine can change what tests see, and with a
//! data directory copied from a cached `mariadb-install-db` template (see `template`).
//! `root` has an empty password over TCP from 127.0.0.1, as tandem's URL-based connections
//! need.
//!
//! The binlog is set up the way tandem requires of a production server (`ROW` format, `FULL`
//! row images and row metadata, uncompressed, GTIDs in strict mode), and `tandem check`'s
//! tests turn single settings off through [`MariaOptions::extra_args`].
//! `innodb_flush_log_at_trx_commit=1` keeps commits durable, as tandem's exactly-once tests
//! assume. The redo log is 64 MiB instead of the default 96 MiB only to make the template
//! copy cheaper.
//!
//! Shutdown modes: [`MariaInstance::stop`] and [`MariaInstance::restart`] use a normal
//! shutdown (SIGTERM); dropping a throwaway instance kills it (SIGKILL), since its data is
//! about to be deleted anyway.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::instance_dir::InstanceDir;
use crate::programs::{running_as_root, MariaPrograms};
use crate::server::{self, OrphanPolicy, ServerProcess};
use crate::sql_cli::SqlCli;
use crate::test_db::{unique_name, TestDb};
use crate::{template, KitError};

const SERVER: &str = "MariaDB";
/// How long a start may take before it is reported as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a normal shutdown may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// `mariadb-install-db` arguments for the template.
///
/// `--cross-bootstrap` leaves out the `root@<hostname>` account: the template is meant to
/// be copied, and with `--skip-name-resolve` that account would only log a warning.
const INSTALL_ARGS: [&str; 5] = [
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-name-resolve",
    "--cross-bootstrap",
    "--innodb-log-file-size=64M",
];
/// Server settings common to every instance (`--no-defaults` and paths come first).
const SERVER_ARGS: [&str; 18] = [
    "--bind-address=127.0.0.1",
    "--server-id=1",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--log-bin-compress=OFF",
    "--gtid-strict-mode=ON",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=64M",
    "--innodb-flush-log-at-trx-commit=1",
    // Dumping and reloading the buffer pool only slows throwaway servers down.
    "--innodb-buffer-pool-dump-at-shutdown=OFF",
    "--innodb-buffer-pool-load-at-startup=OFF",
    "--skip-name-resolve",
    "--max-connections=300",
    "--local-infile=ON",
    "--character-set-server=utf8mb4",
    "--default-time-zone=+00:00",
    "--log-warnings=1",
];

/// How to start a [`MariaInstance`]. `MariaOptions::default()` has a row-based binlog.
#[derive(Debug, Clone)]
pub struct MariaOptions {
    /// Write a binlog (default true) to `<instance dir>/binlog.*`.
    pub binlog: bool,
    /// More `mariadbd` arguments, after the kit's own (so they win), e.g.
    /// `"--binlog-row-image=MINIMAL"`.
    pub extra_args: Vec<String>,
    /// A fixed port instead of a free one.
    pub port: Option<u16>,
    /// Keep the instance in this directory (created if missing, reused if it holds one,
    /// never removed) instead of a throwaway one.
    pub data_dir: Option<PathBuf>,
}

impl Default for MariaOptions {
    fn default() -> Self {
        Self {
            binlog: true,
            extra_args: Vec::new(),
            port: None,
            data_dir: None,
        }
    }
}

/// A MariaDB server of the kit's own. Stopped (and its throwaway directory removed) when
/// dropped.
#[derive(Debug)]
pub struct MariaInstance {
    programs: MariaPrograms,
    opts: MariaOptions,
    data_dir: PathBuf,
    log: PathBuf,
    port: u16,
    process: Option<ServerProcess>,
    // Last: the directory is removed only after the server has stopped.
    dir: InstanceDir,
}

impl MariaInstance {
    /// Starts a server and waits until `root` can query it over TCP (at most 60 s).
    pub async fn start(opts: MariaOptions) -> Result<MariaInstance, KitError> {
        let programs = MariaPrograms::locate()?;
        let template = {
            let programs = programs.clone();
            let args: Vec<String> = INSTALL_ARGS.iter().map(|a| (*a).to_owned()).collect();
            tokio::task::spawn_blocking(move || {
                template::ensure("mariadb", &programs.mariadbd, &args, |dir| {
                    build_template(dir, &programs)
                })
            })
            .await
            .map_err(|e| {
                KitError::io("building the MariaDB template")(std::io::Error::other(e))
            })??
        };

        let dir = InstanceDir::create("maria", opts.data_dir.as_deref())?;
        let data_dir = dir.path().join("data");
        if !data_dir.exists() {
            template::copy(&template, &data_dir)?;
        } else if !data_dir.join("mysql").is_dir() {
            return Err(KitError::io(format!("reusing {}", data_dir.display()))(
                std::io::Error::other("it exists but is not a MariaDB data directory"),
            ));
        }

        let port = opts.port;
        let mut instance = MariaInstance {
            programs,
            opts,
            log: dir.path().join("mariadb.log"),
            data_dir,
            port: 0,
            process: None,
            dir,
        };
        instance
            .launch(port, if port.is_some() { 1 } else { 5 })
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

    /// `mysql://root@127.0.0.1:PORT/db`; no password.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// The data directory (`--datadir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's Unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Runs `sql` (any number of `;`-terminated statements) with the `mariadb` client in
    /// database `db` (none if empty) and returns its output: one line per row, columns
    /// separated by tabs. Stops at the first error.
    pub async fn sql(&self, db: &str, sql: &str) -> Result<String, KitError> {
        self.cli(db)?.run(sql).await
    }

    /// Creates a database named after `prefix` plus a unique suffix; it is dropped when the
    /// returned handle is (best effort).
    pub async fn create_database(&self, prefix: &str) -> Result<TestDb, KitError> {
        let name = unique_name(prefix);
        self.sql("", &format!("CREATE DATABASE `{name}`;")).await?;
        // Sessions left connected to the database would hold metadata locks on its tables
        // and make the DROP wait: kill them first, and bound the wait anyway.
        let drop_sql = format!(
            "SET SESSION lock_wait_timeout = 10;\n\
             DELIMITER //\n\
             BEGIN NOT ATOMIC\n\
               DECLARE done INT DEFAULT 0;\n\
               DECLARE victim BIGINT;\n\
               DECLARE sessions CURSOR FOR SELECT id FROM information_schema.processlist\n\
                 WHERE db = '{name}' AND id <> CONNECTION_ID();\n\
               DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;\n\
               DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;\n\
               OPEN sessions;\n\
               next_session: LOOP\n\
                 FETCH sessions INTO victim;\n\
                 IF done THEN LEAVE next_session; END IF;\n\
                 KILL CONNECTION victim;\n\
               END LOOP;\n\
               CLOSE sessions;\n\
             END//\n\
             DELIMITER ;\n\
             DROP DATABASE IF EXISTS `{name}`;\n"
        );
        let cli = self.cli("")?.arg("--force");
        Ok(TestDb::new(name.clone(), self.url(&name), cli, drop_sql))
    }

    /// Stops the server with a normal shutdown and removes a throwaway directory.
    pub async fn stop(mut self) -> Result<(), KitError> {
        let process = self
            .process
            .take()
            .ok_or(KitError::NotRunning { server: SERVER })?;
        process.stop(Signal::SIGTERM, STOP_GRACE).await
    }

    /// Stops the server with a normal shutdown (if it runs) and starts it again on the same
    /// data directory and port, like an operator restarting it under a running client.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        if let Some(process) = self.process.take() {
            process.stop(Signal::SIGTERM, STOP_GRACE).await?;
        }
        self.launch(Some(self.port), 20).await
    }

    /// Spawns `mariadbd` and waits for it; retries as [`server::launch`] says.
    async fn launch(&mut self, fixed_port: Option<u16>, attempts: u32) -> Result<(), KitError> {
        let client = self.programs.client.clone();
        let expected = self.data_dir.display().to_string();
        // The port may belong to someone else's server: check it is ours.
        let probe = |port| {
            let cli = SqlCli::mariadb(client.clone(), port, "");
            let expected = expected.clone();
            move || {
                let (cli, expected) = (cli.clone(), expected.clone());
                async move {
                    matches!(cli.run("SELECT @@datadir;").await,
                             Ok(d) if d.trim_end_matches('/') == expected)
                }
            }
        };
        let (port, process) = server::launch(
            fixed_port,
            attempts,
            READY_TIMEOUT,
            (Signal::SIGKILL, STOP_GRACE),
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
        let dir = self.dir.path();
        let mut cmd = Command::new(&self.programs.mariadbd);
        // --no-defaults must be the first argument.
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir.display()))
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg(format!("--port={port}"))
            // Its own temporary directory: a shared /tmp is cleaned by other processes
            // (test harnesses, the kit's own watchdogs), and MariaDB fails a query whose
            // temporary table file vanished ("Error on delete of '/tmp/#sql-temptable…'").
            .arg(format!("--tmpdir={}", dir.display()))
            .args(SERVER_ARGS)
            .current_dir(dir);
        if self.opts.binlog {
            cmd.arg(format!("--log-bin={}", dir.join("binlog").display()));
        }
        if running_as_root() {
            cmd.arg("--user=root");
        }
        cmd.args(&self.opts.extra_args);
        cmd
    }

    fn orphan_policy(&self) -> OrphanPolicy {
        let signal = if self.dir.is_kept() {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
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
        Ok(SqlCli::mariadb(self.programs.client.clone(), self.port, db))
    }
}

impl Drop for MariaInstance {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if self.dir.is_kept() {
                process.shutdown_blocking(Signal::SIGTERM, STOP_GRACE);
            } else {
                process.shutdown_blocking(Signal::SIGKILL, STOP_GRACE);
            }
        }
    }
}

fn build_template(dir: &Path, programs: &MariaPrograms) -> Result<(), KitError> {
    let mut cmd = Command::new(&programs.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.display()))
        .args(INSTALL_ARGS);
    if running_as_root() {
        cmd.arg("--user=root");
    }
    template::run(cmd, "mariadb-install-db").map(drop)
}
