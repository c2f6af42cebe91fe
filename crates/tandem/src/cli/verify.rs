//! `tandem verify`: are both sides equal under the mapping? And with `--repair`, make them so.
//!
//! Per mapping, in three steps that each read less than the one before:
//! 1. **Checksums.** Both databases split the table into chunks of about
//!    [`ROWS_PER_CHUNK`] rows and return a row count and hash sum per chunk, computed on the
//!    server in one scan each, both sides at once (see [`tandem_core::verify`] for the
//!    canonical row text both compute). How rows are chunked is picked per table from the
//!    key ([`tandem_core::verify::choose_chunking`]): integer key ranges or text key
//!    prefixes where the key's index can read a chunk back, md5 buckets otherwise.
//! 2. **Rows of differing chunks.** Only chunks whose count or sum differ are fetched, a
//!    batch of chunks at a time — through the key's index for range and prefix chunks, so
//!    100 scattered differences in 5M rows cost 100 small index scans rather than another
//!    pass over the table — and compared value by value after converting through the
//!    mapping ([`compare`]). A side behind a `where` filter or column transforms is read
//!    through tandem instead and hashed there, with the mapping applied (see [`compare`]).
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
//! [`verify`] is also what the daemon runs every `[verify] interval` (without repair).

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
use tandem_core::value::ColumnType;
use tandem_core::verify::{choose_chunking, ChunkSum, Chunking, KeyedRow, VerifyReader};

use compare::{Diff, KeyDiff, Plan};
use repair::Decision;
pub use report::Report;
use report::{ColumnDiff, DiffReport, MappingReport, RepairOutcome};

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

type Opened<'a> = (
    Box<dyn VerifyReader + 'a>,
    Box<dyn Catalog + Send + Sync + 'a>,
);

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
    let format = opts.format;
    let report = match verify(&cfg, &opts).await {
        Ok(r) => r,
        Err(why) => return fail(format, &why),
    };
    match format {
        Format::Text => print!("{}", report::text(&report)),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(format, &format!("Cannot render the report: {e}")),
        },
    }
    if report.mappings.iter().any(|m| m.error.is_some()) {
        2
    } else if report.equal {
        0
    } else {
        1
    }
}

/// Verify (and with `opts.repair`, repair) the mappings `opts` selects. `Err` when nothing
/// could be compared (bad options, an endpoint unreachable); a mapping that fails on its
/// own carries its error in the report.
pub async fn verify(cfg: &Config, opts: &Options) -> Result<Report, String> {
    let Some(settle) = tandem_core::config::parse_duration(&opts.settle) else {
        return Err(format!(
            "--settle {:?} is not a duration; write it like \"1s\" or \"500ms\"",
            opts.settle
        ));
    };
    let names = cfg.priority();
    let [a, b] = names[..] else {
        return Err("verify compares exactly two endpoints; the config has another number".into());
    };
    let endpoints = [a, b];
    let prefer = match &opts.prefer {
        None => None,
        Some(p) => match endpoints.iter().position(|e| e == p) {
            Some(i) => Some(i),
            None => return Err(format!("--prefer {p:?} is not an endpoint; use {a} or {b}")),
        },
    };
    let mappings: Vec<_> = cfg
        .mappings
        .iter()
        .filter(|m| opts.mapping.as_ref().is_none_or(|n| *n == m.name))
        .collect();
    if mappings.is_empty() {
        let known: Vec<&str> = cfg.mappings.iter().map(|m| m.name.as_str()).collect();
        return Err(format!(
            "No mapping named {:?}; the config has: {}",
            opts.mapping.clone().unwrap_or_default(),
            known.join(", ")
        ));
    }
    let mut passwords = Vec::new();
    for name in endpoints {
        let Some(ep) = cfg.endpoints.get(name) else {
            return Err(format!("No endpoint named {name:?}"));
        };
        match &ep.password {
            None => passwords.push(None),
            Some(r) => match r.resolve() {
                Ok(s) => passwords.push(Some(s)),
                Err(why) => return Err(format!("endpoints.{name}.password: {why}")),
            },
        }
    }
    let mut opened = Vec::new();
    for (i, name) in endpoints.iter().enumerate() {
        let Some(ep) = cfg.endpoints.get(*name) else {
            return Err(format!("No endpoint named {name:?}"));
        };
        match open(cfg, name, ep, passwords.get(i).and_then(Option::as_ref)).await {
            Ok(o) => opened.push(o),
            Err(e) => return Err(format!("{name}: {}", e.report())),
        }
    }
    let (Some((r1, c1)), Some((r0, c0))) = (opened.pop(), opened.pop()) else {
        return Err("internal error: endpoints not opened".into());
    };
    let mut readers = [r0, r1];
    // Plans are made before the first comparison: the catalogs are not shared across
    // threads, and the daemon runs verify on its own task.
    let plans: Vec<(MappingReport, Result<Plan, String>)> = {
        let catalogs: [&dyn Catalog; 2] = [c0.as_ref(), c1.as_ref()];
        mappings
            .into_iter()
            .map(|m| {
                let tables = [
                    table_id(
                        cfg,
                        a,
                        m.sides.get(a).map(|s| s.table.as_str()).unwrap_or_default(),
                    ),
                    table_id(
                        cfg,
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
                (mr, Plan::new(m, endpoints, tables, catalogs))
            })
            .collect()
    };
    drop((c0, c1));

    let mut report = Report {
        equal: true,
        mappings: Vec::new(),
    };
    for (mut mr, plan) in plans {
        let started = Instant::now();
        let result = match plan {
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
        }
        mr.seconds = started.elapsed().as_secs_f64();
        let remaining = mr.differing_keys.saturating_sub(mr.repaired);
        if remaining > 0 || mr.error.is_some() {
            report.equal = false;
        }
        report.mappings.push(mr);
    }
    Ok(report)
}

fn differing_chunks(a: &[ChunkSum], b: &[ChunkSum]) -> BTreeMap<String, u64> {
    let index = |s: &[ChunkSum]| -> HashMap<String, (u64, u128)> {
        s.iter()
            .map(|c| (c.chunk.clone(), (c.rows, c.hash)))
            .collect()
    };
    let (ia, ib) = (index(a), index(b));
    let mut out = BTreeMap::new();
    for c in ia.keys().chain(ib.keys()) {
        let (x, y) = (ia.get(c), ib.get(c));
        if x != y {
            let rows = x.map_or(0, |x| x.0).max(y.map_or(0, |y| y.0));
            out.insert(c.clone(), rows);
        }
    }
    out
}

/// The two sides' key columns are one column, both integers / both text.
fn key_kinds(plan: &Plan) -> (bool, bool) {
    let ty = |s: usize| -> Option<&ColumnType> {
        let t = &plan.tables[s];
        match t.key[..] {
            [k] => t.columns.get(k).map(|c| &c.1),
            _ => None,
        }
    };
    let int = |t: Option<&ColumnType>| matches!(t, Some(ColumnType::Int { .. }));
    let text = |t: Option<&ColumnType>| matches!(t, Some(ColumnType::Text { .. }));
    (int(ty(0)) && int(ty(1)), text(ty(0)) && text(ty(1)))
}

type Reader<'r, 'a> = &'r mut Box<dyn VerifyReader + 'a>;

/// Chunk sums of side `s`: from its database, or computed in tandem (see [`compare`]).
async fn sums_of(
    reader: Reader<'_, '_>,
    plan: Option<&mut Plan>,
    table: &tandem_core::verify::VerifyTable,
    s: usize,
    chunking: &Chunking,
) -> Result<Vec<ChunkSum>, StageError> {
    let Some(plan) = plan else {
        return reader.chunk_sums(table, chunking).await;
    };
    let mut sums: HashMap<String, (u64, u128)> = HashMap::new();
    reader
        .scan(table, &mut |values| {
            if let Some((_, label, hash)) = plan.tandem_hash(s, &values, chunking) {
                let e = sums.entry(label).or_default();
                e.0 += 1;
                e.1 = e.1.wrapping_add(hash);
            }
            Ok(())
        })
        .await?;
    Ok(sums
        .into_iter()
        .map(|(chunk, (rows, hash))| ChunkSum { chunk, rows, hash })
        .collect())
}

/// Rows of side `s` in the chunks `which`: from its database, or by streaming the side
/// through tandem again and keeping the rows whose label is listed.
async fn rows_of(
    reader: Reader<'_, '_>,
    plan: Option<&mut Plan>,
    table: &tandem_core::verify::VerifyTable,
    s: usize,
    chunking: &Chunking,
    which: &[String],
) -> Result<Vec<KeyedRow>, StageError> {
    let Some(plan) = plan else {
        return reader.rows_in_chunks(table, chunking, which).await;
    };
    let wanted: BTreeSet<&String> = which.iter().collect();
    let mut out = Vec::new();
    reader
        .scan(table, &mut |values| {
            if let Some((key, label, _)) = plan.tandem_hash(s, &values, chunking) {
                if wanted.contains(&label) {
                    out.push(KeyedRow { key, values });
                }
            }
            Ok(())
        })
        .await?;
    Ok(out)
}

/// Both sides at once where the borrow of the plan allows it (a side hashed in tandem
/// needs the plan's mappers).
macro_rules! both_sides {
    ($plan:expr, $r0:expr, $r1:expr, $t0:expr, $t1:expr, |$r:ident, $p:ident, $t:ident, $s:ident| $body:expr) => {{
        match ($plan.tandem[0], $plan.tandem[1]) {
            (false, false) => {
                let f0 = {
                    let ($r, $p, $t, $s) = ($r0, None, $t0, 0);
                    $body
                };
                let f1 = {
                    let ($r, $p, $t, $s) = ($r1, None, $t1, 1);
                    $body
                };
                tokio::join!(f0, f1)
            }
            (true, false) => {
                let f0 = {
                    let ($r, $p, $t, $s) = ($r0, Some(&mut *$plan), $t0, 0);
                    $body
                };
                let f1 = {
                    let ($r, $p, $t, $s) = ($r1, None, $t1, 1);
                    $body
                };
                tokio::join!(f0, f1)
            }
            (false, true) => {
                let f0 = {
                    let ($r, $p, $t, $s) = ($r0, None, $t0, 0);
                    $body
                };
                let f1 = {
                    let ($r, $p, $t, $s) = ($r1, Some(&mut *$plan), $t1, 1);
                    $body
                };
                tokio::join!(f0, f1)
            }
            (true, true) => {
                let a = {
                    let ($r, $p, $t, $s) = ($r0, Some(&mut *$plan), $t0, 0);
                    $body
                }
                .await;
                let b = {
                    let ($r, $p, $t, $s) = ($r1, Some(&mut *$plan), $t1, 1);
                    $body
                }
                .await;
                (a, b)
            }
        }
    }};
}

/// Rows of side `s` by key text, without those its `where` filter keeps at home.
fn by_key(plan: &Plan, s: usize, rows: Vec<KeyedRow>) -> HashMap<String, KeyedRow> {
    rows.into_iter()
        .filter(|r| plan.visible(s, &r.values))
        .map(|r| (r.key.clone(), r))
        .collect()
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
    let target = u32::try_from((estimate / ROWS_PER_CHUNK).clamp(1, MAX_CHUNKS)).unwrap_or(1);
    let (p0, p1) = tokio::join!(r0.key_profile(&t0, estimate), r1.key_profile(&t1, estimate));
    let (p0, p1) = (p0?, p1?);
    let (int_key, text_key) = key_kinds(plan);
    let chunking = choose_chunking(
        estimate,
        target,
        ROWS_PER_CHUNK,
        int_key,
        text_key,
        [&p0, &p1],
    );
    tracing::info!(mapping = %plan.mapping.name, ?chunking, "chunking chosen");
    mr.chunking = format!("{chunking:?}");
    let (s0, s1) = both_sides!(plan, &mut *r0, &mut *r1, &t0, &t1, |r, p, t, s| {
        sums_of(r, p, t, s, &chunking)
    });
    let (s0, s1) = (s0?, s1?);
    mr.chunks = u32::try_from(
        s0.iter()
            .chain(&s1)
            .map(|c| &c.chunk)
            .collect::<BTreeSet<_>>()
            .len(),
    )
    .unwrap_or(u32::MAX);
    for (e, s) in plan.endpoints.iter().zip([&s0, &s1]) {
        mr.rows
            .insert(e.clone(), J::from(s.iter().map(|c| c.rows).sum::<u64>()));
    }
    let differing = differing_chunks(&s0, &s1);
    mr.differing_chunks = differing.len();
    tracing::info!(mapping = %plan.mapping.name, chunks = mr.chunks, differing = differing.len(), "checksums compared");

    // Rows of differing chunks, a batch at a time.
    let mut diffs: Vec<KeyDiff> = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut batch_rows = 0;
    let mut pending: Vec<(Option<String>, u64)> =
        differing.into_iter().map(|(c, r)| (Some(c), r)).collect();
    pending.push((None, 0)); // sentinel: flushes the last batch
    for (chunk, rows) in pending {
        if let Some(c) = &chunk {
            if batch.is_empty() || batch_rows + rows <= ROWS_PER_FETCH {
                batch.push(c.clone());
                batch_rows += rows;
                continue;
            }
        }
        if !batch.is_empty() {
            let (a, b) = both_sides!(plan, &mut *r0, &mut *r1, &t0, &t1, |r, p, t, s| {
                rows_of(r, p, t, s, &chunking, &batch)
            });
            let (a, b) = (by_key(plan, 0, a?), by_key(plan, 1, b?));
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
        batch = chunk.into_iter().collect();
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
        let (a, b) = (by_key(plan, 0, a?), by_key(plan, 1, b?));
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
