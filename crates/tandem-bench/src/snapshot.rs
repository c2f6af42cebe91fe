//! Benchmark 4: the initial copy of a large table by tandem's first start, against the
//! plain tools on the same rows in the same run:
//! - the cross-database pipe a DBA would write (`COPY … TO STDOUT | LOAD DATA LOCAL`, or
//!   `mariadb -B -e SELECT | COPY … FROM STDIN`),
//! - `COPY … TO | COPY … FROM` within PostgreSQL,
//! - `mariadb-dump | mariadb` within MariaDB.
//!
//! tandem is timed from its spawn until the table's highest key is on the target: the copy
//! is applied as one source transaction, so that row appears with all the others.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::db::{Conn, Side};
use crate::env::{mariadb_cmd, psql_cmd, shell, Mapping, Servers, Tandem};
use crate::pair::{direction, Pair};
use crate::workload::{self, COLUMNS};

const TIMEOUT: Duration = Duration::from_secs(1800);

pub async fn snapshot(servers: &Servers, source: Side, rows: u64) -> Result<Vec<String>> {
    let target = source.other();
    let dir = direction(source);
    eprintln!("== snapshot {dir}: {rows} rows");
    let pg = format!(
        "{}{}",
        workload::pg_ddl("items"),
        workload::pg_ddl("copy_items")
    );
    let my = format!(
        "{}{}",
        workload::maria_ddl("items"),
        workload::maria_ddl("copy_items")
    );
    let pair = Pair::create(
        servers,
        "snap",
        &pg,
        &my,
        &[Mapping {
            name: "items",
            direction: dir,
            inventory_table: "public.items",
            retail_table: "items",
            columns: &COLUMNS,
        }],
    )
    .await?;
    let mut src = Conn::open(servers, source, pair.db(source)).await?;
    let mut dst = Conn::open(servers, target, pair.db(target)).await?;
    let n = i64::try_from(rows).unwrap_or(1);
    // Filled in chunks: one huge INSERT … SELECT would need a redo log larger than the kit's.
    let mut a = 1;
    while a <= n {
        let b = (a + 199_999).min(n);
        src.apply_ops("items", &[workload::Op::Insert(a, b)])
            .await?;
        a = b + 1;
    }
    let psql = |db: &str| psql_cmd(servers, db);
    let maria = |tool: &str, db: &str| mariadb_cmd(servers, tool, db);

    let mut tandem = Tandem::start(&pair.config, &pair.listen)?;
    let since = tandem.started;
    let mut peak_rss = 0f64;
    let elapsed = loop {
        if dst.has("items", n).await? {
            break since.elapsed();
        }
        tandem.check_alive()?;
        peak_rss = peak_rss.max(tandem.usage().peak_rss_mib);
        if since.elapsed() > TIMEOUT {
            bail!("the snapshot did not arrive within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let usage = tandem.stop()?;
    let (want, got) = (
        src.fingerprint("items").await?,
        dst.fingerprint("items").await?,
    );
    if want != got {
        bail!("snapshot differs: target {got:?}, source {want:?}");
    }
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let tandem_rate = rate(elapsed);
    eprintln!(
        "   tandem: {:.1} s = {tandem_rate:.0} rows/s",
        elapsed.as_secs_f64()
    );

    let (inv, ret) = (&pair.inv.name, &pair.ret.name);
    let cross = match source {
        Side::Pg => shell(&format!(
            "{} -c \"COPY (SELECT id, sku, name, qty, price, to_char(updated_at AT TIME ZONE 'UTC', \
             'YYYY-MM-DD HH24:MI:SS.US') FROM items) TO STDOUT\" | {} --local-infile=1 -e \
             \"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE copy_items\"",
            psql(inv),
            maria("mariadb", ret)
        ))?,
        Side::Maria => shell(&format!(
            "{} --quick -N -B -e \"SELECT id, sku, name, qty, price, updated_at FROM items\" | \
             {} -c \"COPY copy_items FROM STDIN\"",
            maria("mariadb", ret),
            psql(inv)
        ))?,
    };
    let copied = dst.fingerprint("copy_items").await?;
    if copied != want {
        bail!("the cross-database pipe copied {copied:?}, expected {want:?}");
    }
    let cross_rate = rate(cross);
    eprintln!(
        "   cross pipe: {:.1} s = {cross_rate:.0} rows/s",
        cross.as_secs_f64()
    );

    // Same-engine references on the same rows (whichever side holds them as `items`).
    // On the PostgreSQL target copy_items is full already: empty it first.
    if target == Side::Pg {
        dst.exec("TRUNCATE copy_items").await?;
    }
    let pg_copy = shell(&format!(
        "{} -c \"COPY items TO STDOUT\" | {} -c \"COPY copy_items FROM STDIN\"",
        psql(inv),
        psql(inv)
    ))?;
    let pg_rate = rate(pg_copy);
    eprintln!(
        "   COPY TO | COPY FROM: {:.1} s = {pg_rate:.0} rows/s",
        pg_copy.as_secs_f64()
    );
    let dump_db = servers.maria.create_database("snapdump").await?;
    let dump = shell(&format!(
        "{} items | {}",
        maria("mariadb-dump", ret),
        maria("mariadb", &dump_db.name)
    ))?;
    let dump_rate = rate(dump);
    eprintln!(
        "   mariadb-dump | mariadb: {:.1} s = {dump_rate:.0} rows/s",
        dump.as_secs_f64()
    );
    drop(dump_db);
    Ok(vec![format!(
        "| {dir} | {rows} rows | tandem {tandem_rate:.0}/s ({:.1} s) | cross pipe {cross_rate:.0}/s | **{:.0}%** | COPY→COPY {pg_rate:.0}/s | **{:.0}%** | dump→load {dump_rate:.0}/s | **{:.0}%** | {:.0} MiB | {:.1} CPU-s |",
        elapsed.as_secs_f64(),
        100.0 * tandem_rate / cross_rate,
        100.0 * tandem_rate / pg_rate,
        100.0 * tandem_rate / dump_rate,
        usage.peak_rss_mib.max(peak_rss),
        usage.cpu_secs
    )])
}
