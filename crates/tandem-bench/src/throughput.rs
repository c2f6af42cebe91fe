//! Benchmark 1 (throughput per direction) and 5 (a single huge transaction); benchmark 2
//! (both directions at once) is in `both.rs` and reuses the helpers here.
//!
//! tandem is started once (slot, checkpoint, empty initial copy) and stopped; the workload
//! is written on the source while it is down; tandem is started again and timed from the
//! spawn until the plan's last transaction (the sentinel row) is visible on the target.
//! Transactions apply in commit order, so the sentinel means everything before it is in.
//! In the same run the raw limits go into the same target server: the same changes by a
//! plain client (per-key merged batches of 1,000 changes, a multi-row upsert plus a
//! `DELETE … IN` per transaction), and the bulk path (`COPY` / `LOAD DATA LOCAL`) of as
//! many fresh rows.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::db::{Conn, Side};
use crate::env::{mariadb_cmd, psql_cmd, shell, Mapping, ServerCpu, Servers, Tandem, Usage};
use crate::pair::{direction, Pair};
use crate::workload::{self, Op, Plan, COLUMNS, SENTINEL};

const TIMEOUT: Duration = Duration::from_secs(1800);

async fn pair_for(servers: &Servers, source: Side, prefix: &str) -> Result<Pair> {
    let target = source.other();
    let ddl = |side: Side| {
        let mut s = side.ddl("items");
        if side == target {
            s.push_str(&side.ddl("raw_items"));
            s.push_str(&side.ddl("bulk_items"));
        }
        s
    };
    Pair::create(
        servers,
        prefix,
        &ddl(Side::Pg),
        &ddl(Side::Maria),
        &[Mapping {
            name: "items",
            direction: direction(source),
            inventory_table: "public.items",
            retail_table: "items",
            columns: &COLUMNS,
        }],
    )
    .await
}

/// Starts tandem on a fresh pair until its `directions` stream, and stops it: the slots
/// and checkpoints exist, so the next start resumes. Returns the time to `streaming`.
pub async fn first_start(pair: &Pair, directions: usize) -> Result<Duration> {
    let mut t = Tandem::start(&pair.config, &pair.listen)?;
    t.wait_streaming(directions, Duration::from_secs(120))
        .await?;
    let startup = t.started.elapsed();
    t.stop()?;
    Ok(startup)
}

/// Writes the plan on the source; returns the time taken.
pub async fn write_plan(conn: &mut Conn, plan: &Plan) -> Result<Duration> {
    let started = Instant::now();
    for ops in &plan.txns {
        conn.apply_ops("items", ops).await?;
    }
    Ok(started.elapsed())
}

/// Starts tandem and waits for the sentinel on the target. Fails unless the daemon
/// streamed the plan's transactions itself: a daemon that copied the table afresh (its
/// first start stopped before the empty initial copy was recorded) would reach the
/// sentinel much sooner and measure a copy of the final rows, not the changes.
async fn catch_up(pair: &Pair, target: &mut Conn, plan: &Plan) -> Result<(Duration, Usage)> {
    let mut t = Tandem::start(&pair.config, &pair.listen)?;
    let since = t.started;
    let mut peak_rss = 0f64;
    let elapsed = loop {
        if target.has("items", SENTINEL).await? {
            break since.elapsed();
        }
        t.check_alive()?;
        peak_rss = peak_rss.max(t.usage().peak_rss_mib);
        if since.elapsed() > TIMEOUT {
            bail!("timed out after {TIMEOUT:?} waiting for the sentinel row on the target");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let applied = t.applied_at_least(plan.txns.len()).await;
    eprintln!("   tandem applied: {applied}");
    if applied.txns < plan.txns.len() as f64 || applied.copied_rows > 0.0 {
        bail!(
            "the timed tandem did not stream the {} source transactions (it applied: {applied})",
            plan.txns.len()
        );
    }
    let last = t.stop()?;
    Ok((
        elapsed,
        Usage {
            peak_rss_mib: last.peak_rss_mib.max(peak_rss),
            cpu_secs: last.cpu_secs,
        },
    ))
}

/// Where a phase's CPU went: tandem (if it ran), each server, and the sum against what two
/// cores give in the phase's wall time (near 100 %: the phase was bound by the machine).
pub(crate) fn cpu_split(tandem: Option<f64>, servers: ServerCpu, wall: Duration) -> String {
    let total = tandem.unwrap_or(0.0) + servers.pg + servers.maria;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    format!(
        "{}PostgreSQL {:.1} s, MariaDB {:.1} s: {:.1} CPU-s in {:.1} s = {:.0} % of {cores:.0} cores",
        tandem.map_or(String::new(), |t| format!("tandem {t:.1} s, ")),
        servers.pg,
        servers.maria,
        total,
        wall.as_secs_f64(),
        100.0 * total / (wall.as_secs_f64() * cores)
    )
}

async fn check_equal(source: &mut Conn, target: &mut Conn, table: &str) -> Result<(i64, i64)> {
    let want = source.fingerprint("items").await?;
    let got = target.fingerprint(table).await?;
    if want != got {
        bail!(
            "{table} on the target differs from the source: (count, sum qty) {got:?} vs {want:?}"
        );
    }
    Ok(want)
}

pub async fn throughput(servers: &Servers, source: Side, changes: u64) -> Result<Vec<String>> {
    let target = source.other();
    let dir = direction(source);
    eprintln!("== throughput {dir}: {changes} changes");
    let plan = workload::plan(changes, 1000, 42);
    let pair = pair_for(servers, source, "tp").await?;
    let startup = first_start(&pair, 1).await?;
    let mut src = Conn::open(servers, source, pair.db(source)).await?;
    let mut dst = Conn::open(servers, target, pair.db(target)).await?;

    let write = write_plan(&mut src, &plan).await?;
    eprintln!(
        "   source written: {} txns in {:.1} s",
        plan.txns.len(),
        write.as_secs_f64()
    );

    let cpu0 = ServerCpu::read(servers);
    let (elapsed, usage) = catch_up(&pair, &mut dst, &plan).await?;
    let tandem_servers = ServerCpu::read(servers).since(cpu0);
    let fp = check_equal(&mut src, &mut dst, "items").await?;
    let tandem_rate = plan.changes as f64 / elapsed.as_secs_f64();
    eprintln!(
        "   tandem: {:.1} s = {tandem_rate:.0} changes/s; CPU {}",
        elapsed.as_secs_f64(),
        cpu_split(Some(usage.cpu_secs), tandem_servers, elapsed)
    );

    // The raw client: the same changes, merged per key in batches of 1,000.
    let batches = workload::batches(&plan, 1000);
    let cpu0 = ServerCpu::read(servers);
    let started = Instant::now();
    for (ups, dels) in &batches {
        dst.apply_batch("raw_items", ups, dels).await?;
    }
    let raw = started.elapsed();
    let raw_servers = ServerCpu::read(servers).since(cpu0);
    check_equal(&mut src, &mut dst, "raw_items").await?;
    let raw_rate = plan.changes as f64 / raw.as_secs_f64();
    eprintln!(
        "   raw upsert: {:.1} s = {raw_rate:.0} changes/s ({} row writes after merging per key); CPU {}",
        raw.as_secs_f64(),
        batches.iter().map(|(u, d)| u.len() + d.len()).sum::<usize>(),
        cpu_split(None, raw_servers, raw)
    );

    // The bulk path: as many fresh rows through COPY / LOAD DATA LOCAL.
    let file = pair.config.with_file_name("bulk.tsv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for id in 1..=i64::try_from(plan.changes).unwrap_or(i64::MAX) {
            w.write_all(workload::row_tsv(id, 0).as_bytes())?;
        }
        w.flush()?;
    }
    let bulk = match target {
        Side::Pg => shell(&format!(
            "{} -c \"\\copy bulk_items FROM '{}'\"",
            psql_cmd(servers, &pair.inv.name),
            file.display()
        ))?,
        Side::Maria => shell(&format!(
            "{} --local-infile=1 -e \"LOAD DATA LOCAL INFILE '{}' INTO TABLE bulk_items\"",
            mariadb_cmd(servers, "mariadb", &pair.ret.name),
            file.display()
        ))?,
    };
    let _ = std::fs::remove_file(&file);
    let bulk_rate = plan.changes as f64 / bulk.as_secs_f64();
    let bulk_name = if target == Side::Pg {
        "COPY FROM"
    } else {
        "LOAD DATA LOCAL"
    };
    eprintln!(
        "   {bulk_name}: {:.1} s = {bulk_rate:.0} rows/s",
        bulk.as_secs_f64()
    );

    Ok(vec![
        format!(
            "| {dir} | {} changes in {} txns (1–1000 rows) | tandem {tandem_rate:.0}/s ({:.1} s, first start to streaming {:.2} s) | raw upsert {raw_rate:.0}/s | **{:.0}%** | {bulk_name} {bulk_rate:.0} rows/s | **{:.0}%** | {:.0} MiB | {:.1} CPU-s | final rows {} |",
            plan.changes,
            plan.txns.len(),
            elapsed.as_secs_f64(),
            startup.as_secs_f64(),
            100.0 * tandem_rate / raw_rate,
            100.0 * tandem_rate / bulk_rate,
            usage.peak_rss_mib,
            usage.cpu_secs,
            fp.0,
        ),
    ])
}

/// One transaction of `rows` inserts, written while tandem is down.
pub async fn big_transaction(servers: &Servers, source: Side, rows: u64) -> Result<Vec<String>> {
    let target = source.other();
    let dir = direction(source);
    eprintln!("== one transaction of {rows} rows, {dir}");
    let pair = pair_for(servers, source, "bigtx").await?;
    first_start(&pair, 1).await?;
    let mut src = Conn::open(servers, source, pair.db(source)).await?;
    let mut dst = Conn::open(servers, target, pair.db(target)).await?;
    let plan = Plan {
        txns: vec![
            vec![Op::Insert(1, i64::try_from(rows).unwrap_or(1))],
            vec![Op::Insert(SENTINEL, SENTINEL)],
        ],
        changes: rows + 1,
    };
    write_plan(&mut src, &plan).await?;
    let (elapsed, usage) = catch_up(&pair, &mut dst, &plan).await?;
    check_equal(&mut src, &mut dst, "items").await?;
    let rate = plan.changes as f64 / elapsed.as_secs_f64();
    eprintln!(
        "   {:.1} s = {rate:.0} rows/s, peak RSS {:.0} MiB",
        elapsed.as_secs_f64(),
        usage.peak_rss_mib
    );
    Ok(vec![format!(
        "| {dir} | 1 transaction of {rows} inserts | {:.1} s = {rate:.0} rows/s | peak RSS **{:.0} MiB** | {:.1} CPU-s |",
        elapsed.as_secs_f64(),
        usage.peak_rss_mib,
        usage.cpu_secs
    )])
}
