//! Where the server and client programs live, and which OS user runs them.
//!
//! Debian installs PostgreSQL per major version under `/usr/lib/postgresql/<N>/bin`, which
//! is not on `PATH`; the kit takes the highest version found there. MariaDB's server lives
//! in `/usr/sbin`. Each search can be overridden by an environment variable naming the
//! directory, for machines laid out differently.
//!
//! PostgreSQL refuses to run as root. When the kit itself runs as root (as CI does) it runs
//! `initdb` and `postgres` as the `postgres` OS user; otherwise as the current user.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::KitError;

/// Overrides the directory holding `initdb`, `postgres` and `psql`.
pub const PG_BINDIR_ENV: &str = "TANDEM_PG_BINDIR";
/// Overrides the directory holding `mariadbd`, `mariadb-install-db` and `mariadb`.
pub const MARIADB_BINDIR_ENV: &str = "TANDEM_MARIADB_BINDIR";

/// The PostgreSQL programs the kit runs.
#[derive(Debug, Clone)]
pub(crate) struct PgPrograms {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub psql: PathBuf,
}

impl PgPrograms {
    pub(crate) fn locate() -> Result<Self, KitError> {
        let mut dirs = env_dir(PG_BINDIR_ENV);
        dirs.extend(debian_pg_bindirs());
        dirs.extend(path_dirs());
        let find = |program| find_in(&dirs, program, PG_BINDIR_ENV);
        Ok(Self {
            initdb: find("initdb")?,
            postgres: find("postgres")?,
            psql: find("psql")?,
        })
    }
}

/// The MariaDB programs the kit runs.
#[derive(Debug, Clone)]
pub(crate) struct MariaPrograms {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    pub client: PathBuf,
}

impl MariaPrograms {
    pub(crate) fn locate() -> Result<Self, KitError> {
        let mut dirs = env_dir(MARIADB_BINDIR_ENV);
        dirs.extend(
            ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from),
        );
        dirs.extend(path_dirs());
        let find = |program| find_in(&dirs, program, MARIADB_BINDIR_ENV);
        Ok(Self {
            mariadbd: find("mariadbd")?,
            install_db: find("mariadb-install-db")?,
            client: find("mariadb")?,
        })
    }
}

/// The uid and gid a server is started as, when the kit runs as root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Applies the identity to a command that is about to be spawned.
    pub(crate) fn apply(run_as: Option<RunAs>, cmd: &mut Command) {
        use std::os::unix::process::CommandExt as _;
        if let Some(id) = run_as {
            cmd.uid(id.uid).gid(id.gid);
        }
    }

    /// Makes `path` belong to the identity (no-op when running as ourselves).
    pub(crate) fn chown(run_as: Option<RunAs>, path: &Path) -> Result<(), KitError> {
        match run_as {
            Some(id) => std::os::unix::fs::chown(path, Some(id.uid), Some(id.gid))
                .map_err(KitError::io(format!("chown {}", path.display()))),
            None => Ok(()),
        }
    }
}

/// Whether the kit runs with root privileges.
pub(crate) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The identity PostgreSQL must run as: `postgres` when we are root, else ourselves.
pub(crate) fn postgres_run_as() -> Result<Option<RunAs>, KitError> {
    const USER: &str = "postgres";
    if !running_as_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name(USER) {
        Ok(Some(user)) => Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        Ok(None) => Err(KitError::NoServerUser { user: USER }),
        Err(errno) => Err(KitError::Io {
            context: format!("looking up the OS user {USER}"),
            source: errno.into(),
        }),
    }
}

fn env_dir(var: &str) -> Vec<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .into_iter()
        .collect()
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// `/usr/lib/postgresql/<N>/bin`, highest major version first.
fn debian_pg_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn find_in(
    dirs: &[PathBuf],
    program: &'static str,
    env: &'static str,
) -> Result<PathBuf, KitError> {
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(KitError::ProgramNotFound { program, env })
}
