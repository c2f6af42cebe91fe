//! The directory an instance lives in: throwaway, or kept for the demo and benchmarks.
//!
//! A throwaway directory is `/tmp/tandem-kit-<kind>-XXXXXX`, removed when the instance is
//! dropped (or, if the process dies first, by the server's watchdog). A kept directory is
//! whatever the caller named; it is created if missing, reused if it already holds an
//! instance, and never removed by the kit.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::template::kit_tmp_dir;
use crate::KitError;

#[derive(Debug)]
pub(crate) enum InstanceDir {
    Throwaway(TempDir),
    Kept(PathBuf),
}

impl InstanceDir {
    /// A kept directory at `kept`, or a fresh throwaway one.
    pub(crate) fn create(kind: &str, kept: Option<&Path>) -> Result<Self, KitError> {
        match kept {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .map_err(KitError::io(format!("creating {}", path.display())))?;
                let path = path
                    .canonicalize()
                    .map_err(KitError::io(format!("resolving {}", path.display())))?;
                Ok(Self::Kept(path))
            }
            None => {
                let base = kit_tmp_dir();
                let base = base.canonicalize().unwrap_or(base);
                tempfile::Builder::new()
                    .prefix(&format!("tandem-kit-{kind}-"))
                    .tempdir_in(&base)
                    .map(Self::Throwaway)
                    .map_err(KitError::io(format!(
                        "creating a directory in {}",
                        base.display()
                    )))
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::Throwaway(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }

    pub(crate) fn is_kept(&self) -> bool {
        matches!(self, Self::Kept(_))
    }

    /// What the watchdog removes if we die: only throwaway directories.
    pub(crate) fn remove_on_orphan(&self) -> Option<PathBuf> {
        match self {
            Self::Throwaway(dir) => Some(dir.path().to_path_buf()),
            Self::Kept(_) => None,
        }
    }
}
