//! Running SQL through the servers' own command-line clients.
//!
//! The kit deliberately links no database driver: tests use tandem's real drivers, and the
//! kit must not pull a second, differently configured copy into every test binary. Setup
//! SQL and the best-effort cleanup in destructors go through `psql` and `mariadb` instead,
//! fed on stdin so a script may hold many statements.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

use crate::KitError;

/// A client invocation: program, arguments and environment, minus the SQL.
#[derive(Debug, Clone)]
pub(crate) struct SqlCli {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// Shown in errors instead of the full command line.
    label: String,
}

impl SqlCli {
    /// `psql` connected over TCP as `postgres`: unaligned, tuples only, stop on first error.
    pub(crate) fn psql(program: PathBuf, port: u16, db: &str) -> Self {
        let args = [
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ];
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args.extend([
            "-p".to_owned(),
            port.to_string(),
            "-d".to_owned(),
            db.to_owned(),
        ]);
        args.extend(["-f".to_owned(), "-".to_owned()]);
        Self {
            program,
            args,
            env: vec![("PGCONNECT_TIMEOUT", "10".to_owned())],
            label: format!("psql (port {port}, database {db})"),
        }
    }

    /// `mariadb` connected over TCP as `root`: batch mode, no column names. An empty `db`
    /// connects without a default database.
    pub(crate) fn mariadb(program: PathBuf, port: u16, db: &str) -> Self {
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            "--protocol=TCP".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-P".into(),
            port.to_string(),
            "-u".into(),
            "root".into(),
            "--connect-timeout=10".into(),
            "-N".into(),
            "-B".into(),
        ];
        if !db.is_empty() {
            args.extend(["-D".to_owned(), db.to_owned()]);
        }
        Self {
            program,
            args,
            env: Vec::new(),
            label: format!("mariadb (port {port}, database {db})"),
        }
    }

    /// Adds an argument (e.g. `--force` to go on past errors).
    pub(crate) fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Runs `sql` and returns what the client printed, without the final newline.
    pub(crate) async fn run(&self, sql: &str) -> Result<String, KitError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(KitError::io(format!("starting {}", self.label)))?;
        let mut stdin = child.stdin.take();
        // Feed stdin while collecting output, so a large script cannot deadlock on full pipes.
        let feed = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A client that exits early closes the pipe; its status tells why.
                let _ = stdin.write_all(sql.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
        };
        let (_, output) = tokio::join!(feed, child.wait_with_output());
        self.finish(output)
    }

    /// [`Self::run`] for destructors, which cannot await.
    pub(crate) fn run_blocking(&self, sql: &str) -> Result<String, KitError> {
        let mut child = std::process::Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(KitError::io(format!("starting {}", self.label)))?;
        let stdin = child.stdin.take();
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(sql.as_bytes());
                }
            });
            child.wait_with_output()
        });
        self.finish(output)
    }

    fn finish(&self, output: std::io::Result<std::process::Output>) -> Result<String, KitError> {
        let output = output.map_err(KitError::io(format!("running {}", self.label)))?;
        if output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            if text.ends_with('\n') {
                text.pop();
            }
            Ok(text)
        } else {
            Err(KitError::Command {
                command: self.label.clone(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}
