//! Results of `tandem check`: one line per prerequisite, with the fix when it fails.
//!
//! Each endpoint crate checks its own database (server settings, privileges, per-table
//! requirements) and reports in this shape, so the binary can print both sides alike and
//! exit non-zero when any check failed.

use serde::Serialize;

/// One prerequisite and whether the database meets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// What was checked, e.g. `wal_level` or `table public.items: replica identity`.
    pub name: String,
    pub ok: bool,
    /// What was found (`wal_level is replica`), also when it passed.
    pub detail: String,
    /// What the DBA should run or change, when it failed.
    pub fix: Option<String>,
}

impl CheckResult {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        CheckResult {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}
