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
    /// Compare every mapped table on both sides; with --repair, make them equal.
    /// Exit 0 equal, 1 differences, 2 errors.
    Verify {
        #[arg(short, long)]
        config: PathBuf,
        /// Only this mapping.
        #[arg(long)]
        mapping: Option<String>,
        /// Rewrite differing rows from the side the conflict strategy says wins.
        #[arg(long)]
        repair: bool,
        /// Owner for `delta` and `manual` columns when repairing.
        #[arg(long)]
        prefer: Option<String>,
        /// Wait between looks at a differing key (in-flight changes settle meanwhile).
        #[arg(long, default_value = cli::verify::DEFAULT_SETTLE)]
        settle: String,
        #[arg(long, value_enum, default_value = "text")]
        format: cli::verify::Format,
    },
    /// List, show and resolve the conflicts tandem recorded.
    Conflicts {
        #[command(subcommand)]
        cmd: cli::conflicts::Cmd,
    },
    /// List and retry the changes tandem could not apply.
    #[command(name = "dead-letters")]
    DeadLetters {
        #[command(subcommand)]
        cmd: cli::dead_letters::Cmd,
    },
    /// Drop tandem's slot, publication, origin and tables (asks first).
    Teardown {
        #[arg(short, long)]
        config: PathBuf,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    tandem_alloc::tune();
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
            Command::Verify {
                config,
                mapping,
                repair,
                prefer,
                settle,
                format,
            } => {
                let opts = cli::verify::Options {
                    mapping,
                    repair,
                    format,
                    prefer,
                    settle,
                };
                cli::verify::run(&config, opts).await
            }
            Command::Conflicts { cmd } => cli::conflicts::run(cmd).await,
            Command::DeadLetters { cmd } => cli::dead_letters::run(cmd).await,
            Command::Teardown { config, yes } => cli::teardown::run(&config, yes).await,
        }
    });
    ExitCode::from(code)
}
