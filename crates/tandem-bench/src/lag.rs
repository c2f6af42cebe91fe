//! Benchmark 3: lag under a steady offered load, from timestamps the databases write.
//!
//! The writer offers `rate` changes/s as one transaction every 10 ms (`rate / 100` rows
//! each) while tandem streams. Each target row gets `applied_at` from the target's clock
//! at the moment tandem's applier writes it (MariaDB: a `BEFORE INSERT` trigger setting
//! `SYSDATE(6)`; PostgreSQL: a `clock_timestamp()` default), which is before that
//! transaction commits by at most one statement and the commit. The source side is the
//! commit timestamp itself on PostgreSQL (`pg_xact_commit_timestamp`, the kit turns
//! `track_commit_timestamp` on); MariaDB keeps none, so the row carries `SYSDATE(6)` from
//! the autocommit statement that inserts it, committed right after. Both servers run on
//! this machine and read the same clock. Lag is never sampled by polling.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::db::{Conn, Side};
use crate::env::{Mapping, Servers, Tandem};
use crate::pair::{direction, Pair};

const PG_DDL: &str = "CREATE TABLE ticks (id bigint PRIMARY KEY, payload text NOT NULL, \
    src_ts timestamptz(6) NOT NULL, applied_at timestamptz(6) DEFAULT clock_timestamp());\n\
    ALTER TABLE ticks REPLICA IDENTITY FULL;\n";
const MARIA_DDL: &str = "CREATE TABLE ticks (id bigint PRIMARY KEY, payload varchar(255) NOT NULL, \
    src_ts datetime(6) NOT NULL, applied_at datetime(6) NULL) ENGINE=InnoDB;\n\
    CREATE TRIGGER ticks_applied BEFORE INSERT ON ticks FOR EACH ROW SET NEW.applied_at = SYSDATE(6);\n";

pub async fn lag(servers: &Servers, source: Side, rate: u64, secs: u64) -> Result<Vec<String>> {
    let target = source.other();
    let dir = direction(source);
    eprintln!("== lag {dir} at {rate} changes/s for {secs} s");
    let pair = Pair::create(
        servers,
        "lag",
        PG_DDL,
        MARIA_DDL,
        &[Mapping {
            name: "ticks",
            direction: dir,
            inventory_table: "public.ticks",
            retail_table: "ticks",
            columns: &["id", "payload", "src_ts"],
        }],
    )
    .await?;
    let mut src = Conn::open(servers, source, pair.db(source)).await?;
    let mut dst = Conn::open(servers, target, pair.db(target)).await?;
    for conn in [&mut src, &mut dst] {
        settle(conn).await?;
    }
    let mut tandem = Tandem::start(&pair.config, &pair.listen)?;
    tandem.wait_streaming(1, Duration::from_secs(120)).await?;

    let per_tx = (rate / 100).max(1);
    let period = Duration::from_micros(1_000_000 * per_tx / rate.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut next = 1i64;
    let per_tx_i = i64::try_from(per_tx).unwrap_or(1);
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let (a, b) = (next, next + per_tx_i - 1);
        let sql = match source {
            Side::Pg => format!(
                "INSERT INTO ticks (id, payload, src_ts) SELECT g, 'tick ' || g, clock_timestamp() \
                 FROM generate_series({a}, {b}) g"
            ),
            Side::Maria => format!(
                "INSERT INTO ticks (id, payload, src_ts) SELECT seq, CONCAT('tick ', seq), SYSDATE(6) \
                 FROM seq_{a}_to_{b}"
            ),
        };
        src.exec(&sql).await?;
        next = b + 1;
    }
    let offered_secs = started.elapsed().as_secs_f64();
    let total = next - 1;
    let deadline = Instant::now() + Duration::from_secs(300);
    while dst.int("SELECT count(*) FROM ticks").await? < total {
        tandem.check_alive()?;
        if Instant::now() > deadline {
            bail!("the target did not receive all {total} rows within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage = tandem.stop()?;

    let src_sql = match source {
        Side::Pg => "SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint FROM ticks",
        Side::Maria => "SELECT id, CAST(UNIX_TIMESTAMP(src_ts) * 1000000 AS SIGNED) FROM ticks",
    };
    let dst_sql = match target {
        Side::Pg => "SELECT id, (extract(epoch FROM applied_at) * 1000000)::bigint FROM ticks",
        Side::Maria => "SELECT id, CAST(UNIX_TIMESTAMP(applied_at) * 1000000 AS SIGNED) FROM ticks",
    };
    let committed: std::collections::HashMap<i64, i64> =
        src.pairs(src_sql).await?.into_iter().collect();
    let mut lags: Vec<f64> = dst
        .pairs(dst_sql)
        .await?
        .into_iter()
        .filter_map(|(id, applied)| committed.get(&id).map(|c| (applied - c) as f64 / 1000.0))
        .collect();
    if lags.len() as i64 != total {
        bail!(
            "matched {} of {total} rows between source and target",
            lags.len()
        );
    }
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((lags.len() as f64 - 1.0) * p).round() as usize;
        lags.get(i).copied().unwrap_or(f64::NAN)
    };
    let achieved = total as f64 / offered_secs;
    eprintln!(
        "   offered {achieved:.0}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(vec![format!(
        "| {dir} | {rate}/s ({per_tx} rows/txn, achieved {achieved:.0}/s, {total} rows) | {:.1} ms | **{:.1} ms** | {:.1} ms | {:.0} MiB | {:.1} CPU-s |",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        usage.peak_rss_mib,
        usage.cpu_secs
    )])
}

/// Lets a server finish what the benchmarks before left it, so that the latencies measured
/// are tandem's under this load, not the tail of the last benchmark's 2,000,000 changes:
/// PostgreSQL checkpoints its WAL now rather than in the middle of the measurement (where
/// its writes slowed every commit: retail->inventory p99 300–400 ms right after `both`,
/// 5 ms alone), MariaDB purges its old row versions (waits, at most a minute, until the
/// history list is short).
async fn settle(conn: &mut Conn) -> Result<()> {
    match conn {
        Conn::Pg(_) => conn.exec("CHECKPOINT").await,
        Conn::Maria(_) => {
            let started = Instant::now();
            let history = "SELECT CAST(count AS SIGNED) FROM information_schema.innodb_metrics \
                           WHERE name = 'trx_rseg_history_len'";
            while conn.int(history).await? > 1_000 && started.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let left = conn.int(history).await?;
            eprintln!(
                "   MariaDB settled in {:.1} s (history list {left})",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
