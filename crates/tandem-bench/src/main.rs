//! `tandem-bench`: tandem end to end against the raw limits of its databases, in one run on
//! throwaway servers (issue 8; the figures and how to read them are in `BENCHMARKS.md`).
//!
//! ```text
//! tandem-bench [--quick] [throughput|both|decode|lag|snapshot|bigtx|all]...
//! ```
//! Sizes follow the issue at scale 1; `TANDEM_BENCH_SCALE=0.2` (or `--quick`, 0.1) shrinks
//! every row count and duration. Each benchmark measures tandem and the tool or client it
//! is compared with in the same run, on the same servers, so the noise of a shared machine
//! largely cancels in the ratio. Results go to stdout as Markdown table rows; progress to
//! stderr.

#![allow(clippy::cast_precision_loss)]

mod both;
mod db;
mod decode;
mod env;
mod lag;
mod pair;
mod snapshot;
mod throughput;
mod workload;

use anyhow::{bail, Result};

use crate::db::Side;

const ALL: [&str; 6] = ["throughput", "both", "decode", "lag", "snapshot", "bigtx"];

fn main() -> Result<()> {
    // tandem's allocator, so that the sources decoded in this process run as in `tandem`.
    tandem_alloc::tune();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<()> {
    let mut scale: f64 = std::env::var("TANDEM_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let mut which: Vec<String> = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => scale = 0.1,
            "all" => which.extend(ALL.iter().map(|s| (*s).to_owned())),
            a if ALL.contains(&a) => which.push(a.to_owned()),
            other => bail!("unknown argument {other:?}; expected --quick or one of {ALL:?} or all"),
        }
    }
    if which.is_empty() {
        which.extend(ALL.iter().map(|s| (*s).to_owned()));
    }
    let n = |base: f64| ((base * scale).round() as u64).max(1000);
    let secs = ((20.0 * scale).round() as u64).clamp(5, 60);

    env::tandem_binary()?;
    let servers = env::Servers::start().await?;
    println!(
        "\n<!-- tandem-bench {} -->",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    println!("Machine: {}; scale {scale}; PostgreSQL fsync=on, MariaDB innodb_flush_log_at_trx_commit=1.\n", env::machine_note());
    for bench in &which {
        let lines = match bench.as_str() {
            "throughput" => {
                let mut v = vec![
                    "| direction | workload | tandem | raw batched upsert (1000/stmt) | ratio | bulk load of as many rows | ratio | tandem peak RSS | tandem CPU | check |".to_owned(),
                    "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
                ];
                for source in [Side::Pg, Side::Maria] {
                    v.extend(throughput::throughput(&servers, source, n(1_000_000.0)).await?);
                }
                v
            }
            "both" => {
                let mut v = vec![
                    "| direction | workload | tandem, both directions at once | raw batched upsert, both clients at once | ratio |".to_owned(),
                    "|---|---|---|---|---|".to_owned(),
                ];
                v.extend(both::both(&servers, n(1_000_000.0)).await?);
                v
            }
            "decode" => {
                let mut v = vec![
                    "| source | data | tandem's source, no sink | the server's tool | ratio |"
                        .to_owned(),
                    "|---|---|---|---|---|".to_owned(),
                ];
                v.extend(decode::postgres(&servers, n(1_000_000.0)).await?);
                v.extend(decode::mariadb(&servers, n(1_000_000.0)).await?);
                v
            }
            "lag" => {
                let mut v = vec![
                    "| direction | offered | p50 | p99 | max | tandem peak RSS | tandem CPU |"
                        .to_owned(),
                    "|---|---|---|---|---|---|---|".to_owned(),
                ];
                for source in [Side::Pg, Side::Maria] {
                    for rate in [1_000, 10_000] {
                        v.extend(lag::lag(&servers, source, rate, secs).await?);
                    }
                }
                v
            }
            "snapshot" => {
                let mut v = vec![
                    "| direction | rows | tandem first start | cross-db pipe | ratio | PG COPY TO→FROM | ratio | mariadb-dump→mariadb | ratio | tandem peak RSS | tandem CPU |".to_owned(),
                    "|---|---|---|---|---|---|---|---|---|---|---|".to_owned(),
                ];
                for source in [Side::Pg, Side::Maria] {
                    v.extend(snapshot::snapshot(&servers, source, n(1_000_000.0)).await?);
                }
                v
            }
            "bigtx" => {
                let mut v = vec![
                    "| direction | transaction | time | memory | tandem CPU |".to_owned(),
                    "|---|---|---|---|---|".to_owned(),
                ];
                for source in [Side::Pg, Side::Maria] {
                    v.extend(throughput::big_transaction(&servers, source, n(1_000_000.0)).await?);
                }
                v
            }
            _ => unreachable!("arguments are checked above"),
        };
        println!("\n### {bench}\n");
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}
