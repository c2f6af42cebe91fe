//! `tandem verify`: are both sides equal under the mapping? And with `--repair`, make them so.
//!
//! Per mapping, in three steps that each read less than the one before:
//! 1. **Checksums.** Both databases split the table into hash chunks (about
//!    [`ROWS_PER_CHUNK`] rows each) and return a row count and hash sum per chunk, computed
//!    on the server in one scan each, both sides at once (see [`tandem_core::verify`] for
//!    the canonical row text both compute).
//! 2. **Rows of differing chunks.** Only chunks whose count or sum differ are fetched, a
//!    batch of chunks at a time, and compared value by value after converting through the
//!    mapping ([`compare`]).
//! 3. **Re-check.** A key that differs may be a change tandem has not applied yet. Each
//!    differing key is read again by key after `--settle`; it is reported only when two
//!    looks in a row show the same difference (up to [`MAX_LOOKS`] looks), so a change in
//!    flight — which alters what a look sees — is not reported as drift.
//!
//! `--repair` then writes the winning side's values per the conflict strategy ([`repair`])
//! and records each repaired key in the repaired side's conflicts table (kind
//! `verify_repair`, decision `repaired`). Exit 0 when equal (or everything was repaired), 1
//! when differences remain, 2 on errors.
//!
//! Not covered yet: `where` filters and column transforms (a note says so when a mapping
//! has them).

mod compare;
mod repair;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as J};
use tandem_core::change::TableId;
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{Config, EndpointConfig, EndpointKind, Secret};
use tandem_core::error::StageError;
use tandem_core::sink::{ConflictRecord, RowWrite};
use tandem_core::verify::{ChunkSum, KeyedRow, VerifyReader};

use compare::{Diff, KeyDiff, Plan};
use repair::Decision;
use report::{ColumnDiff, DiffReport, MappingReport, RepairOutcome, Report};

/// Rows per checksum chunk aimed at: a differing chunk costs fetching this many rows.
pub const ROWS_PER_CHUNK: u64 = 200;
/// Most chunks a table is split into.
pub const MAX_CHUNKS: u64 = 1 << 16;
/// Rows fetched per batch of differing chunks (per side): each batch costs a scan of the
/// table, so a batch is large (100 scattered differences of a 5M-row table are one batch).
pub const ROWS_PER_FETCH: u64 = 200_000;
/// Differing keys held and listed per mapping; more are counted only.
pub const MAX_KEYS: usize = 10_000;
/// Looks at a differing key, the first included.
pub const MAX_LOOKS: usize = 4;
/// Default wait between looks.
pub const DEFAULT_SETTLE: &str = "1s";

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Options of one run.
pub struct Options {
    pub mapping: Option<String>,
    pub repair: bool,
    pub format: Format,
    pub prefer: Option<String>,
    pub settle: String,
}

fn fail(format: Format, what: &str) -> u8 {
    match format {
        Format::Text => eprintln!("{what}"),
        Format::Json => println!("{}", serde_json::json!({ "equal": false, "error": what })),
    }
    2
}

/// A mapping's table name on an endpoint (MySQL tables default to the URL's database).
fn table_id(cfg: &Config, endpoint: &str, table: &str) -> TableId {
    let default_schema = match cfg.endpoints.get(endpoint) {
        Some(ep) if ep.kind == EndpointKind::Mysql => ep.database().unwrap_or_default(),
        _ => "public".to_owned(),
    };
    TableId::parse(table, &default_schema)
}

type Opened<'a> = (Box<dyn VerifyReader + 'a>, Box<dyn Catalog + 'a>);

async fn open<'a>(
    cfg: &'a Config,
    name: &str,
    ep: &'a EndpointConfig,
    pw: Option<&'a Secret>,
) -> Result<Opened<'a>, StageError> {
    match ep.kind {
        EndpointKind::Postgres => {
            let v = tandem_postgres::verify::PgVerifier::connect(ep, pw).await?;
            let mut schemas: Vec<String> = cfg
                .mappings
                .iter()
                .filter_map(|m| m.sides.get(name))
                .map(|s| table_id(cfg, name, &s.table).schema)
                .collect();
            schemas.sort();
            schemas.dedup();
            let refs: Vec<&str> = schemas.iter().map(String::as_str).collect();
            let cat =
                tandem_postgres::catalog::PgCatalog::load(v.client(), &refs, "public").await?;
            Ok((Box::new(v), Box::new(cat)))
        }
        EndpointKind::Mysql => {
            let mut v = tandem_mysql::verify::MySqlVerifier::connect(ep, pw).await?;
            let db = ep.database().unwrap_or_default();
            let cat = tandem_mysql::catalog::MySqlCatalog::load(v.conn(), &db).await?;
            Ok((Box::new(v), Box::new(cat)))
        }
    }
}

pub async fn run(path: &Path, opts: Options) -> u8 {
    let cfg = match super::check::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(settle) = tandem_core::config::parse_duration(&opts.settle) else {
        return fail(
            opts.format,
            &format!(
                "--settle {:?} is not a duration; write it like \"1s\" or \"500ms\"",
                opts.settle
            ),
        );
    };
    let names = cfg.priority();
    let [a, b] = names[..] else {
        return fail(
            opts.format,
            "verify compares exactly two endpoints; the config has another number",
        );
    };
    let endpoints = [a, b];
    let prefer = match &opts.prefer {
        None => None,
        Some(p) => match endpoints.iter().position(|e| e == p) {
            Some(i) => Some(i),
            None => {
                return fail(
                    opts.format,
                    &format!("--prefer {p:?} is not an endpoint; use {a} or {b}"),
                )
            }
        },
    };
    let mappings: Vec<_> = cfg
        .mappings
        .iter()
        .filter(|m| opts.mapping.as_ref().is_none_or(|n| *n == m.name))
        .collect();
    if mappings.is_empty() {
        let known: Vec<&str> = cfg.mappings.iter().map(|m| m.name.as_str()).collect();
        return fail(
            opts.format,
            &format!(
                "No mapping named {:?}; the config has: {}",
                opts.mapping.unwrap_or_default(),
                known.join(", ")
            ),
        );
    }
    let mut passwords = Vec::new();
    for name in endpoints {
        let Some(ep) = cfg.endpoints.get(name) else {
            return fail(opts.format, &format!("No endpoint named {name:?}"));
        };
        match &ep.password {
            None => passwords.push(None),
            Some(r) => match r.resolve() {
                Ok(s) => passwords.push(Some(s)),
                Err(why) => return fail(opts.format, &format!("endpoints.{name}.password: {why}")),
            },
        }
    }
    let mut opened = Vec::new();
    for (i, name) in endpoints.iter().enumerate() {
        let Some(ep) = cfg.endpoints.get(*name) else {
            return fail(opts.format, &format!("No endpoint named {name:?}"));
        };
        match open(&cfg, name, ep, passwords.get(i).and_then(Option::as_ref)).await {
            Ok(o) => opened.push(o),
            Err(e) => return fail(opts.format, &format!("{name}: {}", e.report())),
        }
    }
    let (Some((r1, c1)), Some((r0, c0))) = (opened.pop(), opened.pop()) else {
        return fail(opts.format, "internal error: endpoints not opened");
    };
    let mut readers = [r0, r1];
    let catalogs: [&dyn Catalog; 2] = [c0.as_ref(), c1.as_ref()];

    let mut report = Report {
        equal: true,
        mappings: Vec::new(),
    };
    let mut errors = false;
    for m in mappings {
        let started = Instant::now();
        let tables = [
            table_id(
                &cfg,
                a,
                m.sides.get(a).map(|s| s.table.as_str()).unwrap_or_default(),
            ),
            table_id(
                &cfg,
                b,
                m.sides.get(b).map(|s| s.table.as_str()).unwrap_or_default(),
            ),
        ];
        let mut mr = MappingReport {
            mapping: m.name.clone(),
            ..Default::default()
        };
        for (e, t) in endpoints.iter().zip(&tables) {
            mr.tables.insert((*e).to_owned(), J::String(t.to_string()));
        }
        let result = match Plan::new(m, endpoints, tables, catalogs) {
            Err(why) => Err(why),
            Ok(mut plan) => {
                mr.notes = plan.notes();
                verify_mapping(
                    &mut plan,
                    &mut readers,
                    &mut mr,
                    settle,
                    opts.repair,
                    prefer,
                )
                .await
                .map_err(|e| e.report())
            }
        };
        if let Err(e) = result {
            mr.error = Some(e);
            errors = true;
        }
        mr.seconds = started.elapsed().as_secs_f64();
        let remaining = mr.differing_keys.saturating_sub(mr.repaired);
        if remaining > 0 || mr.error.is_some() {
            report.equal = false;
        }
        report.mappings.push(mr);
    }
    match opts.format {
        Format::Text => print!("{}", report::text(&report)),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(opts.format, &format!("Cannot render the report: {e}")),
        },
    }
    if errors {
        2
    } else if report.equal {
        0
    } else {
        1
    }
}

fn differing_chunks(a: &[ChunkSum], b: &[ChunkSum]) -> BTreeMap<u32, u64> {
    let index =
        |s: &[ChunkSum]| -> HashMap<u32, ChunkSum> { s.iter().map(|c| (c.chunk, *c)).collect() };
    let (ia, ib) = (index(a), index(b));
    let mut out = BTreeMap::new();
    for c in ia.keys().chain(ib.keys()) {
        let (x, y) = (ia.get(c), ib.get(c));
        let same = matches!((x, y), (Some(x), Some(y)) if x.rows == y.rows && x.hash == y.hash);
        if !same {
            let rows = x.map_or(0, |x| x.rows).max(y.map_or(0, |y| y.rows));
            out.insert(*c, rows);
        }
    }
    out
}

fn by_key(rows: Vec<KeyedRow>) -> HashMap<String, KeyedRow> {
    rows.into_iter().map(|r| (r.key.clone(), r)).collect()
}

async fn verify_mapping(
    plan: &mut Plan,
    readers: &mut [Box<dyn VerifyReader + '_>; 2],
    mr: &mut MappingReport,
    settle: Duration,
    repair: bool,
    prefer: Option<usize>,
) -> Result<(), StageError> {
    let [r0, r1] = readers;
    let [t0, t1] = &plan.tables;
    let (t0, t1) = (t0.clone(), t1.clone());
    let (e0, e1) = tokio::join!(r0.estimate_rows(&t0), r1.estimate_rows(&t1));
    let estimate = e0?.max(e1?);
    let chunks = u32::try_from((estimate / ROWS_PER_CHUNK).clamp(1, MAX_CHUNKS)).unwrap_or(1);
    mr.chunks = chunks;
    let (s0, s1) = tokio::join!(r0.chunk_sums(&t0, chunks), r1.chunk_sums(&t1, chunks));
    let (s0, s1) = (s0?, s1?);
    for (e, s) in plan.endpoints.iter().zip([&s0, &s1]) {
        mr.rows
            .insert(e.clone(), J::from(s.iter().map(|c| c.rows).sum::<u64>()));
    }
    let differing = differing_chunks(&s0, &s1);
    mr.differing_chunks = differing.len();
    tracing::info!(mapping = %plan.mapping.name, chunks, differing = differing.len(), "checksums compared");

    // Rows of differing chunks, a batch at a time.
    let mut diffs: Vec<KeyDiff> = Vec::new();
    let mut batch: Vec<u32> = Vec::new();
    let mut batch_rows = 0;
    let mut pending: Vec<(u32, u64)> = differing.into_iter().collect();
    pending.push((u32::MAX, 0)); // sentinel: flushes the last batch
    for (chunk, rows) in pending {
        let last = chunk == u32::MAX;
        if !last && (batch.is_empty() || batch_rows + rows <= ROWS_PER_FETCH) {
            batch.push(chunk);
            batch_rows += rows;
            continue;
        }
        if !batch.is_empty() {
            let (a, b) = tokio::join!(
                r0.rows_in_chunks(&t0, chunks, &batch),
                r1.rows_in_chunks(&t1, chunks, &batch)
            );
            let (a, b) = (by_key(a?), by_key(b?));
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                if let Some(d) = plan.compare(k, [a.get(k), b.get(k)]) {
                    mr.differing_keys += 1;
                    if diffs.len() < MAX_KEYS {
                        diffs.push(d);
                    } else {
                        mr.truncated = true;
                    }
                }
            }
        }
        batch = vec![chunk];
        batch_rows = rows;
    }

    tracing::info!(mapping = %plan.mapping.name, keys = diffs.len(), "rows of differing chunks compared");
    // Re-check: only differences that stay the same between two looks are reported.
    let mut confirmed: Vec<KeyDiff> = Vec::new();
    let mut looks = 1;
    while !diffs.is_empty() && looks < MAX_LOOKS {
        tokio::time::sleep(settle).await;
        looks += 1;
        let k0: Vec<_> = diffs.iter().filter_map(|d| plan.key_on(0, d)).collect();
        let k1: Vec<_> = diffs.iter().filter_map(|d| plan.key_on(1, d)).collect();
        let (a, b) = tokio::join!(r0.rows_by_key(&t0, &k0), r1.rows_by_key(&t1, &k1));
        let (a, b) = (by_key(a?), by_key(b?));
        let mut changed = Vec::new();
        for old in diffs {
            match plan.compare(&old.key, [a.get(&old.key), b.get(&old.key)]) {
                None => mr.differing_keys = mr.differing_keys.saturating_sub(1),
                Some(new) if new == old => confirmed.push(new),
                Some(new) => changed.push(new),
            }
        }
        diffs = changed;
    }
    tracing::info!(mapping = %plan.mapping.name, looks, "differing keys re-checked");
    // Still changing after every look: report what the last look saw.
    confirmed.extend(diffs);
    confirmed.sort_by(|x, y| x.key.cmp(&y.key));

    let mut outcomes: Vec<Option<RepairOutcome>> = Vec::new();
    if repair {
        outcomes = repair_all(plan, readers_pair(r0, r1), &confirmed, prefer, mr).await?;
    }
    for (i, d) in confirmed.iter().enumerate() {
        let mut dr = describe(plan, d);
        dr.repair = outcomes.get_mut(i).and_then(Option::take);
        mr.differences.push(dr);
    }
    Ok(())
}

fn readers_pair<'r, 'a>(
    r0: &'r mut Box<dyn VerifyReader + 'a>,
    r1: &'r mut Box<dyn VerifyReader + 'a>,
) -> [&'r mut Box<dyn VerifyReader + 'a>; 2] {
    [r0, r1]
}

fn describe(plan: &Plan, d: &KeyDiff) -> DiffReport {
    let mut rows = Map::new();
    for (s, e) in plan.endpoints.iter().enumerate() {
        rows.insert(
            e.clone(),
            d.rows[s].as_ref().map_or(J::Null, |r| plan.row_json(s, r)),
        );
    }
    let mut dr = DiffReport {
        key: plan.key_json(d),
        kind: "differs",
        only_in: None,
        columns: Vec::new(),
        reason: None,
        rows,
        repair: None,
    };
    match &d.diff {
        Diff::OnlyIn(s) => {
            dr.kind = "only_in";
            dr.only_in = plan.endpoints.get(*s).cloned();
        }
        Diff::Unconvertible(why) => {
            dr.kind = "cannot_cross";
            dr.reason = Some(why.clone());
        }
        Diff::Columns(cols) => {
            for &c in cols {
                let mut column = Map::new();
                let mut values = Map::new();
                for (s, e) in plan.endpoints.iter().enumerate() {
                    let name = plan.tables[s].columns.get(c).map(|x| x.0.clone());
                    column.insert(e.clone(), name.map_or(J::Null, J::String));
                    let v = d.rows[s].as_ref().and_then(|r| r.get(c));
                    values.insert(e.clone(), v.map_or(J::Null, |v| J::String(v.to_string())));
                }
                dr.columns.push(ColumnDiff { column, values });
            }
        }
    }
    dr
}

/// Decide and apply the repair of every confirmed difference; one outcome per difference.
async fn repair_all(
    plan: &mut Plan,
    readers: [&mut Box<dyn VerifyReader + '_>; 2],
    diffs: &[KeyDiff],
    prefer: Option<usize>,
    mr: &mut MappingReport,
) -> Result<Vec<Option<RepairOutcome>>, StageError> {
    let mut writes: [Vec<RowWrite>; 2] = [Vec::new(), Vec::new()];
    let mut records: [Vec<ConflictRecord>; 2] = [Vec::new(), Vec::new()];
    let mut outcomes = Vec::new();
    // Which diffs each side's transaction carries, to mark them failed if it fails.
    let mut carried: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, d) in diffs.iter().enumerate() {
        let key = J::Object(plan.key_json(d));
        let mapping_name = plan.mapping.name.clone();
        let record = |strategy: String, before: Option<J>, after: J| ConflictRecord {
            mapping: mapping_name.clone(),
            kind: "verify_repair".into(),
            strategy,
            decision: "repaired".into(),
            key: key.clone(),
            before,
            after: Some(after),
            current: None,
            source_commit_time: None,
        };
        match repair::decide(plan, d, prefer) {
            Decision::Refused(why) => {
                mr.refused += 1;
                outcomes.push(Some(RepairOutcome {
                    status: "refused",
                    detail: why,
                }));
            }
            Decision::Copy { from } => {
                let to = 1 - from;
                let Some(row) = &d.rows[from] else {
                    outcomes.push(None);
                    continue;
                };
                match plan.convert(from, row) {
                    Err(why) => {
                        mr.refused += 1;
                        outcomes.push(Some(RepairOutcome {
                            status: "refused",
                            detail: format!("the row cannot cross: {why}"),
                        }));
                    }
                    Ok(values) => {
                        let rec = record("copy_missing".into(), None, plan.row_json(to, &values));
                        records[to].push(rec);
                        writes[to].push(RowWrite::Insert { values });
                        carried[to].push(i);
                        outcomes.push(Some(RepairOutcome {
                            status: "repaired",
                            detail: format!("copied to {}", plan.endpoints[to]),
                        }));
                    }
                }
            }
            Decision::Update { sets, strategies } => {
                let mut sides = Vec::new();
                for (s, set) in sets.into_iter().enumerate() {
                    if set.is_empty() {
                        continue;
                    }
                    let (Some(key), Some(before)) = (plan.key_on(s, d), d.rows[s].clone()) else {
                        continue;
                    };
                    let mut after = before.clone();
                    for (c, v) in &set {
                        if let Some(slot) = after.get_mut(*c) {
                            *slot = v.clone();
                        }
                    }
                    let names: Vec<String> = set
                        .iter()
                        .filter_map(|(c, _)| plan.tables[s].columns.get(*c).map(|x| x.0.clone()))
                        .collect();
                    sides.push(format!("{} {}", plan.endpoints[s], names.join(", ")));
                    records[s].push(record(
                        strategies.join(","),
                        Some(plan.row_json(s, &before)),
                        plan.row_json(s, &after),
                    ));
                    writes[s].push(RowWrite::Update { key, columns: set });
                    carried[s].push(i);
                }
                outcomes.push(Some(RepairOutcome {
                    status: "repaired",
                    detail: format!("set {} ({})", sides.join("; "), strategies.join(", ")),
                }));
            }
        }
    }
    let [r0, r1] = readers;
    for (s, reader) in [r0, r1].into_iter().enumerate() {
        if writes[s].is_empty() {
            continue;
        }
        let target = plan.mappers[1 - s].target.clone();
        if let Err(e) = reader.repair(&target, &writes[s], &records[s]).await {
            for &i in &carried[s] {
                if let Some(o) = outcomes.get_mut(i) {
                    *o = Some(RepairOutcome {
                        status: "refused",
                        detail: format!("writing to {} failed: {}", plan.endpoints[s], e.report()),
                    });
                }
            }
        }
    }
    mr.repaired = outcomes
        .iter()
        .filter(|o| o.as_ref().is_some_and(|o| o.status == "repaired"))
        .count();
    mr.refused = outcomes.len() - mr.repaired;
    Ok(outcomes)
}
