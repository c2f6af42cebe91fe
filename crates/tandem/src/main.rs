//! `tandem`: the command line. A thin edge over the library crates: parse arguments, set
//! up logging, run a command, map its outcome to an exit code (`anyhow` lives only here).
//!
//! Exit codes: 0 success; 1 a check failed / a difference was found / the daemon stopped on
//! an error; 2 the configuration is unusable.

mod cli;
mod http;
mod logging;
mod runtime;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Keeps a PostgreSQL and a MySQL/MariaDB database in step, both ways"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and check both databases for every prerequisite and privilege.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the replication daemon in the foreground.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Show the running daemon's status.
    Status {
        /// Address of the daemon's HTTP endpoint.
        #[arg(long, default_value = tandem_core::config::DEFAULT_LISTEN)]
        addr: String,
        /// Or read the address from the config.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Refresh every second.
        #[arg(long)]
        watch: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Check { config } => cli::check::run(&config).await,
            Command::Run { config } => runtime::run(&config).await,
            Command::Status {
                addr,
                config,
                watch,
            } => cli::status::run(addr, config, watch).await,
        }
    });
    ExitCode::from(code)
}
