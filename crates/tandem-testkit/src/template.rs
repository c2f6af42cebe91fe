//! Cached, pre-initialised data directories.
//!
//! `initdb` and `mariadb-install-db` take about half a second each and most of a core; a
//! test suite that runs every test in its own process (nextest) would pay that for every
//! test. So each is run once per machine into `/tmp/tandem-kit-template-<kind>-<hash>`, and
//! every instance starts from a `cp -a` copy of it, which takes a few tens of milliseconds.
//!
//! The hash covers the program's path and `--version` output, the exact initialisation
//! arguments and [`TEMPLATE_REVISION`], so an upgraded server or a changed recipe gets a
//! fresh template instead of a stale one. Concurrent test processes serialise on an
//! exclusive `flock` of a lock file beside the template; the template is built under a
//! temporary name, completed with a marker file and renamed into place, so a reader never
//! sees a half-built one, and a build that died is simply redone.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use crate::KitError;

/// Bump when the recipe changes in a way the hashed inputs do not show.
const TEMPLATE_REVISION: &str = "1";
/// Written last into a complete template.
const COMPLETE_MARKER: &str = "tandem-kit-template-complete";
/// Overrides the directory for templates and throwaway instances (default `/tmp`). It must
/// be reachable by the `postgres` OS user when the kit runs as root.
pub const TMPDIR_ENV: &str = "TANDEM_KIT_TMPDIR";

/// The directory under which templates and throwaway instances live.
pub(crate) fn kit_tmp_dir() -> PathBuf {
    std::env::var_os(TMPDIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Returns the template for `kind`, building it with `build` (into an empty, not yet
/// existing directory) if no complete one exists. Blocking.
pub(crate) fn ensure(
    kind: &str,
    program: &Path,
    init_args: &[String],
    build: impl FnOnce(&Path) -> Result<(), KitError>,
) -> Result<PathBuf, KitError> {
    let version = program_version(program)?;
    let mut inputs = vec![
        TEMPLATE_REVISION.to_owned(),
        program.display().to_string(),
        version,
    ];
    inputs.extend(init_args.iter().cloned());
    let name = format!("tandem-kit-template-{kind}-{:016x}", fnv1a(&inputs));
    let base = kit_tmp_dir();
    let template = base.join(&name);
    if template.join(COMPLETE_MARKER).exists() {
        return Ok(template);
    }

    let lock_path = base.join(format!("{name}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(KitError::io(format!("opening {}", lock_path.display())))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| {
        KitError::io(format!("locking {}", lock_path.display()))(errno.into())
    })?;
    if template.join(COMPLETE_MARKER).exists() {
        return Ok(template); // another process built it while we waited
    }

    let building = base.join(format!("{name}.building"));
    for stale in [&building, &template] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .map_err(KitError::io(format!("removing {}", stale.display())))?;
        }
    }
    if let Err(e) = build(&building) {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    std::fs::write(building.join(COMPLETE_MARKER), b"")
        .map_err(KitError::io("marking the template complete"))?;
    std::fs::rename(&building, &template).map_err(KitError::io(format!(
        "renaming the template into {}",
        template.display()
    )))?;
    Ok(template)
}

/// Copies a template into `dest` (which must not exist), keeping owners and modes.
pub(crate) fn copy(template: &Path, dest: &Path) -> Result<(), KitError> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(template).arg(dest);
    run(cmd, "cp -a <template> <data dir>")?;
    let _ = std::fs::remove_file(dest.join(COMPLETE_MARKER));
    Ok(())
}

/// Runs a helper program to completion, turning a failure into [`KitError::Command`].
pub(crate) fn run(mut cmd: Command, what: &str) -> Result<String, KitError> {
    let output = cmd
        .output()
        .map_err(KitError::io(format!("running {what}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        Err(KitError::Command {
            command: what.to_owned(),
            status: output.status.to_string(),
            stderr,
        })
    }
}

fn program_version(program: &Path) -> Result<String, KitError> {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    run(cmd, &format!("{} --version", program.display()))
}

/// 64-bit FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
fn fnv1a(parts: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
