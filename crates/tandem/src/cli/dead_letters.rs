//! `tandem dead-letters list|retry`: changes tandem could not apply, and applying them
//! again once the DBA has fixed the cause (widened a column, created a missing parent row,
//! restored a dropped column).
//!
//! A retry rebuilds the change from its stored JSON (source column names, values read back
//! through the source catalog's types), maps it through the *current* config and catalogs
//! with the daemon's own [`RowMapper`], and writes it to the target by key in one
//! transaction: an insert inserts, an update sets the columns it altered (a `delta` column
//! gets `after − before` added to its current value, as the resolver would), a delete
//! deletes. If it fails again the dead letter stays, with the new reason; if it succeeds,
//! `retried_at` is set.
//!
//! A retried change is the applier's write done late, so it is tagged as tandem's own
//! where the target allows (MySQL: the marker row; PostgreSQL: the replication origin,
//! free only while `tandem run` is stopped) and does not come back. Untagged, it would be
//! replicated back to the source, which already holds it: harmless for plain values (equal
//! values are no conflict), but a `delta` column would count it twice — so such a retry
//! into PostgreSQL waits until `tandem run` is stopped.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use tandem_core::change::{Cell, OldRow, Row, RowChange, TableSchema};
use tandem_core::config::{Config, Strategy};
use tandem_core::convert::apply_delta;
use tandem_core::error::StageError;
use tandem_core::ledger::{value_from_json, ListFilter, StoredDeadLetter, WriteMode};
use tandem_core::mapper::{RowMapper, TargetChange};
use tandem_core::sink::RowWrite;
use tandem_core::value::Value;

use super::admin::{self, Side};
use super::conflicts::Format;

#[derive(Subcommand)]
pub enum Cmd {
    /// List dead letters from both databases (default: not yet retried).
    List {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        mapping: Option<String>,
        /// Also the ones retried successfully.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = tandem_core::ledger::DEFAULT_LIST_LIMIT)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Apply parked changes again; report per id.
    Retry {
        #[arg(short, long)]
        config: PathBuf,
        /// ENDPOINT:NUMBER, as `list` prints it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every dead letter not yet retried (of `--mapping`, if given).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        mapping: Option<String>,
    },
}

pub async fn run(cmd: Cmd) -> u8 {
    match cmd {
        Cmd::List {
            config,
            mapping,
            all,
            limit,
            format,
        } => {
            let cfg = match admin::load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let filter = ListFilter {
                mapping,
                all,
                limit,
            };
            match list(&cfg, &filter, format).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        Cmd::Retry {
            config,
            id,
            all: _,
            mapping,
        } => {
            let cfg = match admin::load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            retry(&cfg, id.as_deref(), mapping).await
        }
    }
}

async fn list(cfg: &Config, filter: &ListFilter, format: Format) -> Result<(), String> {
    let rows = admin::gather(cfg, filter.limit, async |l| l.dead_letters(filter).await).await?;
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> =
                rows.iter().map(|(e, d)| admin::listed_json(e, d)).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
        }
        Format::Text => {
            if rows.is_empty() {
                println!("no {}dead letters", if filter.all { "" } else { "open " });
                return Ok(());
            }
            for (e, d) in &rows {
                let op = d.change.get("op").and_then(|v| v.as_str()).unwrap_or("?");
                let table = d
                    .change
                    .get("table")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?");
                println!(
                    "{e}:{}  {}  mapping {}  {op} on {table}{}",
                    d.id,
                    d.at.format("%Y-%m-%d %H:%M:%S"),
                    d.mapping,
                    d.retried_at
                        .map(|t| format!("  retried {}", t.format("%Y-%m-%d %H:%M:%S")))
                        .unwrap_or_default()
                );
                println!("    reason: {}", d.reason);
                let image = d
                    .change
                    .get("after")
                    .filter(|v| !v.is_null())
                    .or_else(|| d.change.get("before"));
                if let Some(img) = image {
                    println!("    row:    {}", admin::short(img, 160));
                }
            }
        }
    }
    Ok(())
}

async fn retry(cfg: &Config, id: Option<&str>, mapping: Option<String>) -> u8 {
    let mut sides = match admin::open(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", e.report());
            return 1;
        }
    };
    // (side index, dead letter)
    let mut todo: Vec<(usize, StoredDeadLetter)> = Vec::new();
    match id {
        Some(id) => {
            let (endpoint, n) = match admin::parse_id(id, cfg) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            };
            let Some(i) = sides.iter().position(|s| s.name == endpoint) else {
                eprintln!("no endpoint {endpoint:?}");
                return 1;
            };
            match sides[i].ledger().dead_letter(n).await {
                Ok(Some(d)) => todo.push((i, d)),
                Ok(None) => {
                    eprintln!("no dead letter {id}");
                    return 1;
                }
                Err(e) => {
                    eprintln!("{}", e.report());
                    return 1;
                }
            }
        }
        None => {
            let filter = ListFilter {
                mapping,
                all: false,
                limit: usize::MAX,
            };
            for (i, side) in sides.iter_mut().enumerate() {
                match side.ledger().dead_letters(&filter).await {
                    // Oldest first: changes are retried in the order they happened.
                    Ok(v) => todo.extend(v.into_iter().rev().map(|d| (i, d))),
                    Err(e) => {
                        eprintln!("{}: {}", side.name, e.report());
                        return 1;
                    }
                }
            }
        }
    }
    if todo.is_empty() {
        println!("no dead letters to retry");
        return 0;
    }
    let mut failed = 0;
    for (i, d) in &todo {
        let id = format!("{}:{}", sides[*i].name, d.id);
        if d.retried_at.is_some() {
            println!("{id}: already retried; skipped");
            continue;
        }
        match retry_one(cfg, &mut sides, *i, d).await {
            Ok(what) => {
                if let Err(e) = sides[*i].ledger().mark_retried(d.id).await {
                    println!(
                        "{id}: applied ({what}) but not marked retried: {}",
                        e.report()
                    );
                    failed += 1;
                } else {
                    println!("{id}: applied ({what})");
                }
            }
            Err(e) => {
                failed += 1;
                let reason = e.report();
                println!("{id}: failed again: {reason}");
                if let Err(e) = sides[*i].ledger().set_reason(d.id, &reason).await {
                    println!("{id}: the new reason could not be stored: {}", e.report());
                }
            }
        }
    }
    println!("{} of {} applied", todo.len() - failed, todo.len());
    u8::from(failed > 0)
}

/// A stored row image back as a row of `schema`.
fn row_of(schema: &TableSchema, img: &serde_json::Value) -> Result<Row, String> {
    let mut cells = Vec::with_capacity(schema.columns.len());
    for col in &schema.columns {
        cells.push(match img.get(&col.name) {
            // Not sent by the source (unchanged TOAST), or not in the table at the time.
            None => Cell::Unchanged,
            Some(serde_json::Value::String(s)) if s == "(unchanged)" => Cell::Unchanged,
            Some(v) => Cell::Value(value_from_json(&col.name, v, &col.column_type)?),
        });
    }
    Ok(Row(cells))
}

async fn retry_one(
    cfg: &Config,
    sides: &mut [Side],
    ti: usize,
    d: &StoredDeadLetter,
) -> Result<String, StageError> {
    let bad = |e: String| StageError::definite(e, "fix the cause, then retry again");
    let mapping = admin::find_mapping(cfg, &d.mapping)?;
    let target = sides[ti].name.clone();
    let source = admin::other_side(mapping, &target)?.to_owned();
    let si = sides
        .iter()
        .position(|s| s.name == source)
        .ok_or_else(|| bad(format!("no endpoint {source:?}")))?;
    let op = d.change.get("op").and_then(|v| v.as_str()).unwrap_or("");
    let side_table = |ep: &str| {
        mapping
            .sides
            .get(ep)
            .map(|s| admin::table_id(cfg, ep, &s.table))
            .ok_or_else(|| bad(format!("mapping {:?} has no side on {ep}", mapping.name)))
    };
    let source_table = side_table(&source)?;
    let target_table = side_table(&target)?;
    let schema = sides[si]
        .catalog
        .table(&source_table)
        .map(|t| Arc::new(t.schema.clone()))
        .ok_or_else(|| bad(format!("table {source_table} no longer exists on {source}")))?;
    let image = |k: &str| -> Result<Option<Row>, StageError> {
        match d.change.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => row_of(&schema, v).map(Some).map_err(bad),
        }
    };
    let row = match (op, image("before")?, image("after")?) {
        ("insert", _, Some(new)) => RowChange::Insert { new },
        ("update", old, Some(new)) => RowChange::Update {
            old: old.map_or(OldRow::Missing, OldRow::Full),
            new,
        },
        ("delete", Some(old), _) => RowChange::Delete {
            old: OldRow::Full(old),
        },
        ("truncate", _, _) => {
            return Err(StageError::definite(
                "A TRUNCATE is not replayed",
                format!("empty {target_table} on {target} by hand if that was intended"),
            ))
        }
        _ => {
            return Err(bad(format!(
                "the stored change is not readable: {}",
                d.change
            )))
        }
    };
    let priority = cfg.priority();
    let target_side = &sides[ti];
    let types = |c: &str| target_side.column_type(&target_table, c);
    let mut mapper = RowMapper::new(
        mapping,
        &source,
        &target,
        source_table,
        target_table.clone(),
        &types,
        &priority,
    )
    .map_err(|e| bad(e.to_string()))?;
    let change = mapper.map(&schema, &row).map_err(|e| bad(e.to_string()))?;
    let table = mapper.target.clone();
    let key_of = |r: &[Option<Value>]| -> Result<Vec<Value>, StageError> {
        table
            .key
            .iter()
            .map(|&i| r.get(i).cloned().flatten())
            .collect::<Option<Vec<Value>>>()
            .ok_or_else(|| bad("the change has no value for a key column".into()))
    };
    let mut counts_delta = false;
    let (write, what) = match change {
        TargetChange::Insert { after } => {
            counts_delta = table_has_delta(&mapper.strategies, &after);
            let values = after
                .into_iter()
                .map(|v| v.unwrap_or(Value::Null))
                .collect();
            (RowWrite::Insert { values }, "inserted")
        }
        TargetChange::Delete { before, .. } => (
            RowWrite::Delete {
                key: key_of(&before)?,
            },
            "deleted",
        ),
        TargetChange::Update { before, after } => {
            let key = key_of(&after)?;
            if before.as_ref().is_some_and(|b| {
                key_of(b).is_ok_and(|k| k.iter().zip(&key).any(|(x, y)| !x.same_as(y)))
            }) {
                return Err(bad(
                    "the change alters the row's key; apply it by hand".into()
                ));
            }
            let current = sides[ti].ledger().read_row(&table, &key).await?;
            let Some(current) = current else {
                return Err(bad(format!(
                    "no row of {} on {target} has this key any more (it was deleted since)",
                    table.table
                )));
            };
            let mut columns = Vec::new();
            for (i, a) in after.iter().enumerate() {
                let Some(a) = a else { continue };
                if table.key.contains(&i) {
                    continue;
                }
                let b = before.as_ref().and_then(|b| b.get(i).cloned().flatten());
                if b.as_ref().is_some_and(|b| b.same_as(a)) {
                    continue;
                }
                let v = match (mapper.strategies.get(i), &b, current.get(i)) {
                    (Some(Strategy::Delta), Some(b), Some(t)) => {
                        counts_delta = true;
                        apply_delta(b, a, t).ok_or_else(|| {
                            bad(format!(
                                "cannot add the change to column {i}'s current value"
                            ))
                        })?
                    }
                    _ => a.clone(),
                };
                columns.push((i, v));
            }
            if columns.is_empty() {
                return Ok("nothing to change: the target already holds it".into());
            }
            (RowWrite::Update { key, columns }, "updated")
        }
    };
    let echoes = mapping.direction.flows(&target, &source);
    let mode = if sides[ti].can_tag().await {
        WriteMode::Tandem
    } else if echoes && counts_delta {
        return Err(StageError::definite(
            format!(
                "Retrying would count a `delta` column twice: {target} cannot tag the write as \
                 tandem's own while `tandem run` holds its replication origin, and mapping {:?} \
                 replicates it back",
                mapping.name
            ),
            "stop tandem run, retry, then start it again",
        ));
    } else {
        WriteMode::Application
    };
    sides[ti]
        .ledger()
        .write_rows(&table, std::slice::from_ref(&write), mode)
        .await?;
    Ok(format!("{what} in {target} {}", table.table))
}

fn table_has_delta(strategies: &[Strategy], row: &[Option<Value>]) -> bool {
    strategies
        .iter()
        .zip(row)
        .any(|(s, v)| *s == Strategy::Delta && v.is_some())
}
