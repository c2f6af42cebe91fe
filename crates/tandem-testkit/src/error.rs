//! The one error type of the kit.
//!
//! A failed start is the error a developer sees most, and a bare "timed out" is useless
//! there, so [`KitError::Startup`] always carries the tail of the server's own log: the
//! reason (a port taken, a bad setting, a permission on the data directory) is in it.

use std::path::PathBuf;

/// Everything that can go wrong while starting, using or stopping a throwaway server.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// A server or client program is not installed where the kit looks for it.
    #[error(
        "Could not find the program `{program}`; install it (`make setup`) or point {env} \
         at the directory that holds it"
    )]
    ProgramNotFound {
        /// The program that was looked for, e.g. `initdb`.
        program: &'static str,
        /// The environment variable that overrides the search.
        env: &'static str,
    },

    /// PostgreSQL refuses to run as root, and the OS user to run it as is missing.
    #[error(
        "The OS user `{user}` does not exist; PostgreSQL refuses to run as root, so the kit \
         runs it as `{user}` (install the postgresql package, which creates it)"
    )]
    NoServerUser {
        /// The user that was looked up.
        user: &'static str,
    },

    /// A file-system or process operation failed.
    #[error("{context}")]
    Io {
        /// What the kit was doing, e.g. "copying the template data directory".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A server did not come up; the log tail says why.
    #[error("{server} did not start: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    Startup {
        /// "PostgreSQL" or "MariaDB".
        server: &'static str,
        /// What the kit observed (exit status, timeout).
        reason: String,
        /// The server's log file.
        log: PathBuf,
        /// The last lines the server wrote since this start.
        log_tail: String,
    },

    /// A server did not stop within its grace period and was killed.
    #[error("{server} did not shut down within {grace_secs} s and was killed")]
    Shutdown {
        /// "PostgreSQL" or "MariaDB".
        server: &'static str,
        /// The grace period that was exceeded.
        grace_secs: u64,
    },

    /// A helper command (`initdb`, `psql`, `mariadb`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The program and what it was asked to do.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },

    /// The instance was already stopped.
    #[error("The {server} instance is not running")]
    NotRunning {
        /// "PostgreSQL" or "MariaDB".
        server: &'static str,
    },
}

impl KitError {
    /// Wraps an I/O error with what the kit was doing when it happened.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> KitError {
        let context = context.into();
        move |source| KitError::Io { context, source }
    }
}
