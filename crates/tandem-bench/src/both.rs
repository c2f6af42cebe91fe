//! Benchmark 2: both directions at once, with conflicting keys.
//!
//! One mapping `direction = "both"` under the demo's strategies: `last_writer_wins` by
//! `updated_at` for the row, `prefer:inventory` for `price`, `delta` for `qty`. Before
//! tandem's first start, `HOT` shared rows (ids `-HOT..=-1`) are inserted on PostgreSQL and
//! copied to MariaDB by the initial sync. Then, with tandem stopped, the workload of
//! benchmark 1 is written on **both** sides at the same time (MariaDB's ids shifted by
//! `OFFSET`, so inserts and deletes never collide), and every fourth transaction on each
//! side also updates ten of the shared rows: both sides change the same keys, so applying
//! either side's change finds the target row changed too (`update_differs`), and the
//! strategies decide. tandem is started and timed from spawn until each side's sentinel is
//! on the other side; then until both sides are equal. Checks: `count(*)` and `sum(qty)` are
//! equal on both sides **and** equal to what the plans imply (`delta` must count every
//! shared-row increment from both sides exactly once), and `tandem verify` finds no
//! difference.
//!
//! The raw limit, same run, same servers: the two plain batched-upsert clients of
//! benchmark 1, one per target, running at the same time, each applying its direction's
//! changes (shared-row updates included, as upserts). Their combined rate (all changes of
//! both directions over the time until both finished) is what the two databases absorb
//! together on this machine when nothing checks for conflicts; tandem's combined rate is
//! compared with it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::db::{Conn, Side};
use crate::env::{ServerCpu, Servers, Tandem, Usage};
use crate::pair::Pair;
use crate::throughput::cpu_split;
use crate::throughput::write_plan;
use crate::workload::{self, Batch, Plan, COLUMNS, SENTINEL};

/// MariaDB's plan ids start here; PostgreSQL's stay below.
const OFFSET: i64 = 1_000_000_000;
/// Shared rows, ids `-HOT..=-1`.
const HOT: i64 = 1_000;
const TIMEOUT: Duration = Duration::from_secs(1800);
/// How long both sides may take to become equal after both sentinels arrived (write-backs
/// of conflict decisions travel after the changes that caused them).
const SETTLE: Duration = Duration::from_secs(120);

fn mapping_toml() -> String {
    let mut s = String::from(
        "\n[[mappings]]\nname = \"items\"\ndirection = \"both\"\n\
         inventory = { table = \"public.items\", key = [\"id\"] }\n\
         retail = { table = \"items\", key = [\"id\"] }\n\
         conflict = { strategy = \"last_writer_wins\", column = \"updated_at\" }\ncolumns = [\n",
    );
    for c in COLUMNS {
        let strategy = match c {
            "price" => ", conflict = \"prefer:inventory\"",
            "qty" => ", conflict = \"delta\"",
            _ => "",
        };
        s.push_str(&format!(
            "  {{ inventory = \"{c}\", retail = \"{c}\"{strategy} }},\n"
        ));
    }
    s.push_str("]\n");
    s
}

/// The two sides' plans: PostgreSQL's ids from 0, MariaDB's from `OFFSET`; both with
/// shared-row updates. Returns the plans and the shared-row changes of each.
fn plans(changes: u64) -> (Plan, Plan, u64) {
    let mut pg = workload::plan(changes, 1000, 42);
    let mut maria = workload::shifted(workload::plan(changes, 1000, 43), OFFSET);
    let hot = workload::add_hot_updates(&mut pg, HOT, 4, 10, 1)
        + workload::add_hot_updates(&mut maria, HOT, 4, 10, 2);
    (pg, maria, hot)
}

/// Seconds since `since` until `id` is on `conn`'s `items`, polling every 20 ms.
async fn arrived(
    conn: &mut Conn,
    id: i64,
    done: &mut Option<Duration>,
    since: Instant,
) -> Result<()> {
    if done.is_none() && conn.has("items", id).await? {
        *done = Some(since.elapsed());
    }
    Ok(())
}

async fn conflicts(pg: &mut Conn, maria: &mut Conn) -> Result<(i64, i64)> {
    Ok((
        pg.int("SELECT count(*) FROM tandem.conflicts").await?,
        maria.int("SELECT count(*) FROM tandem_conflicts").await?,
    ))
}

pub async fn both(servers: &Servers, changes: u64) -> Result<Vec<String>> {
    eprintln!("== both directions at once: {changes} changes per side");
    let (plan_pg, plan_maria, hot_changes) = plans(changes);
    let ddl = |side: Side| format!("{}{}", side.ddl("items"), side.ddl("raw_items"));
    let pair = Pair::create_toml(
        servers,
        "both",
        &ddl(Side::Pg),
        &ddl(Side::Maria),
        &mapping_toml(),
    )
    .await?;
    let mut pg = Conn::open(servers, Side::Pg, &pair.inv).await?;
    let mut maria = Conn::open(servers, Side::Maria, &pair.ret).await?;

    // The shared rows, on PostgreSQL; the initial sync copies them.
    pg.exec(&workload::pg_sql(
        "items",
        &[workload::Op::Insert(-HOT, -1)],
    ))
    .await?;
    let mut t = Tandem::start(&pair.config, &pair.listen)?;
    t.wait_streaming(2, Duration::from_secs(120)).await?;
    let startup = t.started.elapsed();
    loop {
        if maria.fingerprint("items").await?.0 == HOT {
            break;
        }
        t.check_alive()?;
        if t.started.elapsed() > Duration::from_secs(120) {
            bail!("the initial sync did not copy the {HOT} shared rows within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let copied = t.started.elapsed();
    t.stop()?;

    let started = Instant::now();
    let (a, b) = tokio::join!(
        write_plan(&mut pg, &plan_pg),
        write_plan(&mut maria, &plan_maria)
    );
    let (write_pg, write_maria) = (a?, b?);
    eprintln!(
        "   sources written at the same time: PostgreSQL {:.1} s, MariaDB {:.1} s (wall {:.1} s)",
        write_pg.as_secs_f64(),
        write_maria.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // tandem catches up both directions.
    let cpu0 = ServerCpu::read(servers);
    let mut t = Tandem::start(&pair.config, &pair.listen)?;
    let since = t.started;
    let (mut to_retail, mut to_inventory) = (None, None);
    let mut peak_rss = 0f64;
    while to_retail.is_none() || to_inventory.is_none() {
        arrived(&mut maria, SENTINEL, &mut to_retail, since).await?;
        arrived(&mut pg, OFFSET + SENTINEL, &mut to_inventory, since).await?;
        t.check_alive()?;
        peak_rss = peak_rss.max(t.usage().peak_rss_mib);
        if since.elapsed() > TIMEOUT {
            bail!("timed out after {TIMEOUT:?} waiting for the sentinels");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (to_retail, to_inventory) = (
        to_retail.unwrap_or_default(),
        to_inventory.unwrap_or_default(),
    );
    let both_in = to_retail.max(to_inventory);
    let cpu_tandem = cpu_split(
        Some(t.usage().cpu_secs),
        ServerCpu::read(servers).since(cpu0),
        both_in,
    );

    // Until both sides are equal (conflict write-backs may still travel).
    let settle_from = Instant::now();
    let fp = loop {
        let (p, m) = (
            pg.fingerprint("items").await?,
            maria.fingerprint("items").await?,
        );
        if p == m {
            break p;
        }
        t.check_alive()?;
        if settle_from.elapsed() > SETTLE {
            bail!("both sides still differ {SETTLE:?} after the sentinels: (count, sum qty) inventory {p:?}, retail {m:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let settled = since.elapsed();
    let usage = t.usage();
    // Both directions must have streamed their plans, not copied the tables afresh.
    let want_txns = plan_pg.txns.len() + plan_maria.txns.len();
    let applied = t.applied_at_least(want_txns).await;
    eprintln!("   tandem applied: {applied}");
    if applied.txns < want_txns as f64 || applied.copied_rows > 0.0 {
        bail!("the timed tandem did not stream the {want_txns} source transactions (it applied: {applied})");
    }
    let last = t.stop()?;
    let usage = Usage {
        peak_rss_mib: usage.peak_rss_mib.max(peak_rss).max(last.peak_rss_mib),
        cpu_secs: last.cpu_secs,
    };

    // What the plans imply: every row either side left, the shared rows, and every
    // increment of a shared row's qty from both sides (delta).
    let (n_pg, q_pg) = workload::final_rows(&plan_pg);
    let (n_maria, q_maria) = workload::final_rows(&plan_maria);
    let want = (
        n_pg + n_maria + HOT,
        q_pg + q_maria + i64::try_from(hot_changes).unwrap_or(i64::MAX),
    );
    if fp != want {
        bail!("both sides hold (count, sum qty) {fp:?}, the plans imply {want:?}");
    }
    let verify = crate::env::tandem_verify(&pair.config)?;
    let (conf_pg, conf_maria) = conflicts(&mut pg, &mut maria).await?;
    let total = plan_pg.changes + plan_maria.changes;
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    eprintln!(
        "   tandem: inventory->retail {:.1} s, retail->inventory {:.1} s, equal after {:.1} s; conflicts {conf_pg} + {conf_maria}; verify: {verify}",
        to_retail.as_secs_f64(),
        to_inventory.as_secs_f64(),
        settled.as_secs_f64()
    );
    eprintln!("   tandem CPU until both had arrived: {cpu_tandem}");

    // The raw limit: both plain clients at the same time.
    let (batches_pg, batches_maria) = (
        workload::batches(&plan_pg, 1000),
        workload::batches(&plan_maria, 1000),
    );
    let cpu0 = ServerCpu::read(servers);
    let raw_started = Instant::now();
    let (a, b) = tokio::join!(
        raw_client(&mut maria, &batches_pg, raw_started),
        raw_client(&mut pg, &batches_maria, raw_started)
    );
    let (raw_retail, raw_inventory) = (a?, b?);
    let raw_both = raw_retail.max(raw_inventory);
    let cpu_raw = cpu_split(None, ServerCpu::read(servers).since(cpu0), raw_both);
    raw_check(&mut pg, &mut maria, &format!("id >= 0 AND id < {OFFSET}")).await?;
    raw_check(&mut maria, &mut pg, &format!("id >= {OFFSET}")).await?;
    eprintln!(
        "   raw upsert, both at once: into MariaDB {:.1} s, into PostgreSQL {:.1} s",
        raw_retail.as_secs_f64(),
        raw_inventory.as_secs_f64()
    );
    eprintln!("   raw CPU: {cpu_raw}");

    let tandem_total = rate(total, both_in);
    let raw_total = rate(total, raw_both);
    Ok(vec![
        format!(
            "| inventory->retail | {} changes ({hot_changes} of them, both sides together, on {HOT} shared rows) | tandem {:.0}/s ({:.1} s) | raw upsert {:.0}/s ({:.1} s) | **{:.0}%** |",
            plan_pg.changes,
            rate(plan_pg.changes, to_retail),
            to_retail.as_secs_f64(),
            rate(plan_pg.changes, raw_retail),
            raw_retail.as_secs_f64(),
            100.0 * rate(plan_pg.changes, to_retail) / rate(plan_pg.changes, raw_retail),
        ),
        format!(
            "| retail->inventory | {} changes | tandem {:.0}/s ({:.1} s) | raw upsert {:.0}/s ({:.1} s) | **{:.0}%** |",
            plan_maria.changes,
            rate(plan_maria.changes, to_inventory),
            to_inventory.as_secs_f64(),
            rate(plan_maria.changes, raw_inventory),
            raw_inventory.as_secs_f64(),
            100.0 * rate(plan_maria.changes, to_inventory) / rate(plan_maria.changes, raw_inventory),
        ),
        format!(
            "| **both** | {total} changes | tandem **{tandem_total:.0}/s** ({:.1} s; equal on both sides after {:.1} s) | both raw clients at once **{raw_total:.0}/s** ({:.1} s) | **{:.0}%** |",
            both_in.as_secs_f64(),
            settled.as_secs_f64(),
            raw_both.as_secs_f64(),
            100.0 * tandem_total / raw_total,
        ),
        String::new(),
        format!(
            "Conflicts recorded: {conf_pg} in inventory's `tandem.conflicts`, {conf_maria} in retail's `tandem_conflicts`. Both sides: {} rows, sum(qty) {} (as the plans imply); `tandem verify`: {verify}. tandem peak RSS {:.0} MiB, {:.1} CPU-s; first start: streaming after {:.2} s, the {HOT} shared rows copied after {:.2} s; sources written at the same time in {:.1} s (PostgreSQL) and {:.1} s (MariaDB).",
            fp.0,
            fp.1,
            usage.peak_rss_mib,
            usage.cpu_secs,
            startup.as_secs_f64(),
            copied.as_secs_f64(),
            write_pg.as_secs_f64(),
            write_maria.as_secs_f64(),
        ),
    ])
}

/// The plain batched-upsert client of benchmark 1 applying a plan's `batches` to
/// `target`'s `raw_items`; returns the time from `started` until it finished.
async fn raw_client(target: &mut Conn, batches: &[Batch], started: Instant) -> Result<Duration> {
    for (ups, dels) in batches {
        target.apply_batch("raw_items", ups, dels).await?;
    }
    Ok(started.elapsed())
}

/// The raw client's rows on `target` must be the source's own rows (`range`).
async fn raw_check(source: &mut Conn, target: &mut Conn, range: &str) -> Result<()> {
    let want = source.fingerprint_where("items", range).await?;
    let got = target.fingerprint_where("raw_items", range).await?;
    if want != got {
        bail!("raw_items differs from the source's items where {range}: {got:?} vs {want:?}");
    }
    Ok(())
}
