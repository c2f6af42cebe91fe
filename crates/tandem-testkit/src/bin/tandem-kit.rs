//! `tandem-kit up --dir DIR`: one PostgreSQL and one MariaDB server for the demo and the
//! benchmarks, with data kept under `DIR/pg` and `DIR/mariadb` across runs.
//!
//! It prints the connection settings as shell `export` lines and writes the same lines to
//! `DIR/env` (atomically, so a script polling for the file never reads half of it), then
//! stays in the foreground until SIGINT or SIGTERM, stops both servers cleanly and removes
//! `DIR/env` again. If it is killed outright, the servers' watchdogs stop them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem_testkit::{KitError, MariaInstance, MariaOptions, PgInstance, PgOptions};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(
    name = "tandem-kit",
    about = "Local PostgreSQL and MariaDB servers for tandem"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start both servers and keep them running until interrupted.
    Up {
        /// Directory for the servers' data, sockets, logs and the `env` file; kept.
        #[arg(long)]
        dir: PathBuf,
        /// PostgreSQL port (default: a free one).
        #[arg(long)]
        pg_port: Option<u16>,
        /// MariaDB port (default: a free one).
        #[arg(long)]
        maria_port: Option<u16>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Cli {
        command: Cmd::Up {
            dir,
            pg_port,
            maria_port,
        },
    } = Cli::parse();
    match up(&dir, pg_port, maria_port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-kit: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(dir: &Path, pg_port: Option<u16>, maria_port: Option<u16>) -> Result<(), KitError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let env_path = dir.join("env");
    let _ = std::fs::remove_file(&env_path);
    // Listen before starting anything, so an early Ctrl-C still stops what was started.
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(io_err("installing SIGINT handler"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM handler"))?;

    let pg_opts = PgOptions {
        port: pg_port,
        data_dir: Some(dir.join("pg")),
        ..PgOptions::default()
    };
    let maria_opts = MariaOptions {
        port: maria_port,
        data_dir: Some(dir.join("mariadb")),
        ..MariaOptions::default()
    };
    let (pg, maria) = tokio::join!(PgInstance::start(pg_opts), MariaInstance::start(maria_opts));
    // On a failure the other instance (if any) is dropped here, which stops it.
    let (pg, maria) = (pg?, maria?);

    let exports = [
        ("TANDEM_PG_URL", pg.url("postgres")),
        ("TANDEM_PG_PORT", pg.port().to_string()),
        (
            "TANDEM_PG_SOCKET_DIR",
            pg.socket_dir().display().to_string(),
        ),
        ("TANDEM_MARIA_URL", maria.url("")),
        ("TANDEM_MARIA_PORT", maria.port().to_string()),
        (
            "TANDEM_MARIA_SOCKET",
            maria.socket_path().display().to_string(),
        ),
    ];
    let text: String = exports
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    print!("{text}");
    let tmp = dir.join("env.tmp");
    std::fs::write(&tmp, &text).map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &env_path).map_err(io_err(format!("writing {}", env_path.display())))?;
    eprintln!(
        "tandem-kit: servers are up; Ctrl-C stops them (logs in {})",
        dir.display()
    );

    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    eprintln!("tandem-kit: stopping");
    let _ = std::fs::remove_file(&env_path);
    let (pg_stopped, maria_stopped) = tokio::join!(pg.stop(), maria.stop());
    pg_stopped?;
    maria_stopped
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> KitError {
    let context = context.into();
    move |source| KitError::Io { context, source }
}
