//! `tandem teardown`: remove everything tandem created in both databases — the PostgreSQL
//! replication slot (whose retained WAL is the DBA's first fear once tandem is gone), the
//! publication, the replication origin, tandem's tables on both sides.
//!
//! Never implicit: the command lists exactly what exists and will be dropped, and goes on
//! only when the DBA types `teardown` at a terminal, or passes `--yes`. Without a terminal
//! and without `--yes` it refuses. While a process reads the slot (a running `tandem run`)
//! it refuses and names the PID: dropping the checkpoints under a running daemon would
//! make it copy everything again on its next start.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use tandem_core::config::{Config, EndpointKind};
use tandem_core::error::StageError;

use super::admin;

/// The word the DBA types to confirm.
pub const CONFIRMATION: &str = "teardown";

pub async fn run(path: &Path, yes: bool) -> u8 {
    let cfg = match admin::load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match teardown(&cfg, yes).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", e.report());
            1
        }
    }
}

async fn teardown(cfg: &Config, yes: bool) -> Result<u8, StageError> {
    let mut pg = None;
    if let Some((name, ep)) = cfg.endpoint(EndpointKind::Postgres) {
        let pw = admin::password(cfg, name)?;
        let (client, task) =
            tandem_postgres::connect::connect(ep, pw.as_ref(), "tandem teardown").await?;
        let plan = tandem_postgres::admin::TeardownPlan::read(&client, ep).await?;
        pg = Some((name.to_owned(), client, task, plan));
    }
    let mut my = None;
    if let Some((name, ep)) = cfg.endpoint(EndpointKind::Mysql) {
        let pw = admin::password(cfg, name)?;
        let mut conn = tandem_mysql::connect::connect(ep, pw.as_ref()).await?;
        let plan = tandem_mysql::admin::TeardownPlan::read(&mut conn).await?;
        my = Some((name.to_owned(), conn, plan));
    }
    if let Some((_, _, _, plan)) = &pg {
        plan.check_idle()?;
    }
    let mut lines = Vec::new();
    if let Some((name, _, _, plan)) = &pg {
        lines.extend(plan.describe().into_iter().map(|l| format!("{name}: {l}")));
    }
    if let Some((name, _, plan)) = &my {
        lines.extend(plan.describe().into_iter().map(|l| format!("{name}: {l}")));
    }
    if lines.is_empty() {
        println!("nothing to drop: tandem left nothing in either database");
        return Ok(0);
    }
    println!("tandem teardown will drop:");
    for l in &lines {
        println!("  {l}");
    }
    if !yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            eprintln!("Refusing to tear down without confirmation: stdin is not a terminal. Pass --yes to confirm.");
            return Ok(1);
        }
        print!("Type {CONFIRMATION:?} to drop them: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        if stdin.lock().read_line(&mut answer).is_err() || answer.trim() != CONFIRMATION {
            eprintln!("not confirmed; nothing was dropped");
            return Ok(1);
        }
    }
    if let Some((name, client, task, plan)) = &pg {
        plan.execute(client).await.map_err(|e| prefixed(name, e))?;
        task.abort();
    }
    if let Some((name, conn, plan)) = &mut my {
        plan.execute(conn).await.map_err(|e| prefixed(name, e))?;
    }
    println!("dropped {} object(s)", lines.len());
    Ok(0)
}

fn prefixed(endpoint: &str, e: StageError) -> StageError {
    match e {
        StageError::Definite {
            what,
            advice,
            source,
        } => StageError::Definite {
            what: format!("{endpoint}: {what}"),
            advice,
            source,
        },
        StageError::Transient { what, source } => StageError::Transient {
            what: format!("{endpoint}: {what}"),
            source,
        },
    }
}
