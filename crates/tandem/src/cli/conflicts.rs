//! `tandem conflicts list|show|resolve`: the conflicts tandem recorded in both databases,
//! and the DBA's decision on the parked ones.
//!
//! A parked conflict (strategy `manual`) left the target row as it was and the two sides
//! different on the parked columns. Resolving makes them agree by writing, as an ordinary
//! application write, one side's values into the other side's row:
//! - `--take source`: the change's `after` values into the target row;
//! - `--take target`: the target's *current* values into the source row.
//!
//! tandem then replicates that write to the other side, where the value is already present;
//! the resolver treats "incoming equals current" as no conflict, so the sides converge
//! without a new one. Only the parked columns are written — those with strategy `manual`
//! that the change altered — never a `delta` column: its value is a running sum, and an
//! absolute write replicated back would count as a change of it.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use tandem_core::config::{Config, Strategy};
use tandem_core::convert::convert;
use tandem_core::error::StageError;
use tandem_core::ledger::{value_from_json, ListFilter, StoredConflict, WriteMode};
use tandem_core::sink::RowWrite;
use tandem_core::value::Value;

use super::admin::{self, Side};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Take {
    /// Keep the target's current values; write them to the source side.
    Target,
    /// Take the change's values; write them to the target side.
    Source,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// List conflicts from both databases (default: parked ones not yet resolved).
    List {
        #[arg(short, long)]
        config: PathBuf,
        /// Only this mapping's conflicts.
        #[arg(long)]
        mapping: Option<String>,
        /// Every conflict, resolved or not, whatever the decision.
        #[arg(long)]
        all: bool,
        /// Most recent first, at most this many.
        #[arg(long, default_value_t = tandem_core::ledger::DEFAULT_LIST_LIMIT)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Every field of one conflict, images pretty-printed.
    Show {
        #[arg(short, long)]
        config: PathBuf,
        /// ENDPOINT:NUMBER, as `list` prints it.
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Make both sides agree on a parked conflict, then mark it resolved.
    Resolve {
        #[arg(short, long)]
        config: PathBuf,
        /// ENDPOINT:NUMBER, as `list` prints it.
        id: String,
        /// Whose values win.
        #[arg(long, value_enum)]
        take: Take,
        /// Kept with the resolution.
        #[arg(long)]
        note: Option<String>,
    },
}

pub async fn run(cmd: Cmd) -> u8 {
    let result = match cmd {
        Cmd::List {
            config,
            mapping,
            all,
            limit,
            format,
        } => match admin::load(&config) {
            Err(code) => return code,
            Ok(cfg) => {
                let filter = ListFilter {
                    mapping,
                    all,
                    limit,
                };
                list(&cfg, &filter, format).await
            }
        },
        Cmd::Show { config, id, format } => match admin::load(&config) {
            Err(code) => return code,
            Ok(cfg) => show(&cfg, &id, format).await,
        },
        Cmd::Resolve {
            config,
            id,
            take,
            note,
        } => match admin::load(&config) {
            Err(code) => return code,
            Ok(cfg) => resolve(&cfg, &id, take, note.as_deref()).await,
        },
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn status(c: &StoredConflict) -> String {
    match (&c.resolved_at, c.decision.as_str()) {
        (Some(at), _) => format!("resolved {}", at.format("%Y-%m-%d %H:%M:%S")),
        (None, "parked") => "open".to_owned(),
        (None, _) => "-".to_owned(),
    }
}

async fn list(cfg: &Config, filter: &ListFilter, format: Format) -> Result<(), String> {
    let rows = admin::gather(cfg, filter.limit, async |l| l.conflicts(filter).await).await?;
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> =
                rows.iter().map(|(e, c)| admin::listed_json(e, c)).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
        }
        Format::Text => {
            if rows.is_empty() {
                println!(
                    "no {}conflicts",
                    if filter.all { "" } else { "open parked " }
                );
                return Ok(());
            }
            println!(
                "{:<14} {:<19} {:<12} {:<15} {:<18} {:<11} {:<24} STATUS",
                "ID", "AT", "MAPPING", "KIND", "STRATEGY", "DECISION", "KEY"
            );
            for (e, c) in &rows {
                println!(
                    "{:<14} {:<19} {:<12} {:<15} {:<18} {:<11} {:<24} {}",
                    format!("{e}:{}", c.id),
                    c.at.format("%Y-%m-%d %H:%M:%S"),
                    c.mapping,
                    c.kind,
                    c.strategy,
                    c.decision,
                    admin::short(&c.key, 24),
                    status(c)
                );
            }
        }
    }
    Ok(())
}

async fn fetch(cfg: &Config, id: &str) -> Result<(Vec<Side>, usize, StoredConflict), String> {
    let (endpoint, n) = admin::parse_id(id, cfg)?;
    let mut sides = admin::open(cfg).await.map_err(|e| e.report())?;
    let i = sides
        .iter()
        .position(|s| s.name == endpoint)
        .ok_or_else(|| format!("no endpoint {endpoint:?}"))?;
    let c = sides[i]
        .ledger()
        .conflict(n)
        .await
        .map_err(|e| e.report())?
        .ok_or_else(|| format!("no conflict {id}"))?;
    Ok((sides, i, c))
}

async fn show(cfg: &Config, id: &str, format: Format) -> Result<(), String> {
    let (sides, i, c) = fetch(cfg, id).await?;
    let endpoint = &sides[i].name;
    if let Format::Json = format {
        let v = admin::listed_json(endpoint, &c);
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let opt_time = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string()
        })
    };
    println!("id:                 {endpoint}:{}", c.id);
    println!("stored in:          {endpoint} (the target of the change)");
    println!(
        "at:                 {}",
        c.at.format("%Y-%m-%d %H:%M:%S%.6f UTC")
    );
    println!("mapping:            {}", c.mapping);
    println!("kind:               {}", c.kind);
    println!("strategy:           {}", c.strategy);
    println!("decision:           {}", c.decision);
    println!("source commit time: {}", opt_time(&c.source_commit_time));
    println!("resolved at:        {}", opt_time(&c.resolved_at));
    println!(
        "resolution:         {}",
        c.resolution.as_deref().unwrap_or("-")
    );
    println!("key:\n{}", admin::pretty(Some(&c.key)));
    println!(
        "before (source, old image):\n{}",
        admin::pretty(c.before.as_ref())
    );
    println!(
        "after (source, new image):\n{}",
        admin::pretty(c.after.as_ref())
    );
    println!(
        "current (target row when applied):\n{}",
        admin::pretty(c.current.as_ref())
    );
    Ok(())
}

/// The parked columns of a conflict: `(target name, source name)` of every non-key column
/// with strategy `manual` whose value the change altered.
fn parked_columns(
    mapping: &tandem_core::config::Mapping,
    target: &str,
    source: &str,
    c: &StoredConflict,
) -> Vec<(String, String)> {
    let field = |img: &Option<serde_json::Value>, name: &str| {
        img.as_ref().and_then(|v| v.get(name)).cloned()
    };
    mapping
        .columns
        .iter()
        .filter(|col| !mapping.is_key(col) && mapping.strategy_for(col) == Strategy::Manual)
        .filter_map(|col| Some((col.name_on(target)?, col.name_on(source)?)))
        .filter(|(t, _)| {
            let after = field(&c.after, t);
            after.is_some() && (c.before.is_none() || field(&c.before, t) != after)
        })
        .map(|(t, s)| (t.to_owned(), s.to_owned()))
        .collect()
}

async fn resolve(cfg: &Config, id: &str, take: Take, note: Option<&str>) -> Result<(), String> {
    let (mut sides, ti, c) = fetch(cfg, id).await?;
    if c.decision != "parked" {
        return Err(format!(
            "conflict {id} was decided ({}) when it happened; only parked conflicts are resolved",
            c.decision
        ));
    }
    if let Some(at) = c.resolved_at {
        return Err(format!(
            "conflict {id} was resolved at {at}: {}",
            c.resolution.as_deref().unwrap_or("")
        ));
    }
    let mapping = admin::find_mapping(cfg, &c.mapping).map_err(|e| e.report())?;
    let target = sides[ti].name.clone();
    let source = admin::other_side(mapping, &target)
        .map_err(|e| e.report())?
        .to_owned();
    let si = sides
        .iter()
        .position(|s| s.name == source)
        .ok_or_else(|| format!("no endpoint {source:?}"))?;
    let columns = parked_columns(mapping, &target, &source, &c);
    let written = if columns.is_empty() {
        "nothing to write: the change altered no parked column".to_owned()
    } else {
        settle(cfg, &mut sides, (ti, si), mapping, &c, &columns, take)
            .await
            .map_err(|e| format!("conflict {id} is not resolved: {}", e.report()))?
    };
    let mut resolution = match take {
        Take::Source => "took source".to_owned(),
        Take::Target => "took target".to_owned(),
    };
    if let Some(n) = note {
        resolution.push_str(": ");
        resolution.push_str(n);
    }
    let marked = sides[ti]
        .ledger()
        .mark_resolved(c.id, &resolution)
        .await
        .map_err(|e| e.report())?;
    if !marked {
        return Err(format!(
            "conflict {id} was resolved meanwhile by someone else"
        ));
    }
    println!("{id}: {written}; marked resolved ({resolution})");
    // The same concurrent edit usually parked on both sides (each direction's change met
    // the other's): point at the twin, which now settles with either decision.
    let filter = ListFilter {
        mapping: Some(c.mapping.clone()),
        all: false,
        limit: tandem_core::ledger::DEFAULT_LIST_LIMIT,
    };
    if let Ok(open) = sides[si].ledger().conflicts(&filter).await {
        for twin in open.iter().filter(|o| o.key == c.key) {
            println!(
                "also open for this row: {source}:{} (the sides agree now; resolve it too)",
                twin.id
            );
        }
    }
    Ok(())
}

/// Write one side's values of `columns` into the other side's row. Returns what was done.
async fn settle(
    cfg: &Config,
    sides: &mut [Side],
    (ti, si): (usize, usize),
    mapping: &tandem_core::config::Mapping,
    c: &StoredConflict,
    columns: &[(String, String)],
    take: Take,
) -> Result<String, StageError> {
    let bad = |e: String| StageError::definite(e, "settle the row by hand, then mark it resolved");
    let target_names: Vec<String> = columns.iter().map(|(t, _)| t.clone()).collect();
    let source_names: Vec<String> = columns.iter().map(|(_, s)| s.clone()).collect();
    let t_table = admin::mapped_table(cfg, &sides[ti], mapping, &target_names)?;
    let s_table = admin::mapped_table(cfg, &sides[si], mapping, &source_names)?;
    // The key, in the target's columns, from the stored key (or the images).
    let mut t_key = Vec::new();
    for (name, ty) in t_table
        .key_names()
        .zip(t_table.columns.iter().map(|c| &c.1))
    {
        let j = [Some(&c.key), c.current.as_ref(), c.after.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|img| img.get(name))
            .ok_or_else(|| bad(format!("the conflict does not record key column {name:?}")))?;
        t_key.push(value_from_json(name, j, ty).map_err(bad)?);
    }
    let target = sides[ti].name.clone();
    let source = sides[si].name.clone();
    // The source's key: the same values under the source's names and types.
    let mut s_key = Vec::new();
    for (name, ty) in s_table
        .key_names()
        .zip(s_table.columns.iter().map(|c| &c.1))
    {
        let t_name = mapping
            .columns
            .iter()
            .find(|col| col.name_on(&source) == Some(name))
            .and_then(|col| col.name_on(&target))
            .ok_or_else(|| bad(format!("key column {name:?} of {source} is not mapped")))?;
        let pos = t_table
            .columns
            .iter()
            .position(|(n, _)| n == t_name)
            .and_then(|p| t_key.get(p))
            .ok_or_else(|| bad(format!("key column {t_name:?} of {target} is not the key")))?;
        s_key.push(convert(name, pos, ty).map_err(|e| bad(e.to_string()))?);
    }
    match take {
        Take::Source => {
            let after = c.after.as_ref();
            let mut set = Vec::new();
            for (i, (name, ty)) in t_table.columns.iter().enumerate().skip(t_table.key.len()) {
                let j = after
                    .and_then(|a| a.get(name))
                    .ok_or_else(|| bad(format!("the change carries no value for {name:?}")))?;
                set.push((i, value_from_json(name, j, ty).map_err(bad)?));
            }
            let shown = describe(&t_table.columns, &set);
            sides[ti]
                .ledger()
                .write_rows(
                    &t_table,
                    &[RowWrite::Update {
                        key: t_key,
                        columns: set,
                    }],
                    WriteMode::Application,
                )
                .await?;
            Ok(format!("wrote {shown} to {target} {}", t_table.table))
        }
        Take::Target => {
            let row = sides[ti]
                .ledger()
                .read_row(&t_table, &t_key)
                .await?
                .ok_or_else(|| {
                    bad(format!(
                        "the row is gone from {target} {}; nothing to take",
                        t_table.table
                    ))
                })?;
            let mut set = Vec::new();
            // Both tables list the key first, then the parked columns in the same order.
            let values = row.iter().skip(t_table.key.len());
            for ((i, (name, ty)), v) in s_table
                .columns
                .iter()
                .enumerate()
                .skip(s_table.key.len())
                .zip(values)
            {
                set.push((i, convert(name, v, ty).map_err(|e| bad(e.to_string()))?));
            }
            let shown = describe(&s_table.columns, &set);
            sides[si]
                .ledger()
                .write_rows(
                    &s_table,
                    &[RowWrite::Update {
                        key: s_key,
                        columns: set,
                    }],
                    WriteMode::Application,
                )
                .await?;
            Ok(format!("wrote {shown} to {source} {}", s_table.table))
        }
    }
}

fn describe(
    columns: &[(String, tandem_core::value::ColumnType)],
    set: &[(usize, Value)],
) -> String {
    set.iter()
        .map(|(i, v)| {
            let n = columns.get(*i).map_or("?", |c| c.0.as_str());
            format!("{n} = {v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
