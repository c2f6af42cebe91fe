//! `[[mappings]]`: which table on one endpoint corresponds to which on the other, column by
//! column, and how conflicts between them are resolved.
//!
//! Parsed from raw TOML because its keys include the endpoint names chosen by the DBA.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;

use super::error::{did_you_mean, ConfigError, ConfigErrors};

/// `on_error` when the mapping does not say.
pub const DEFAULT_ON_ERROR: OnError = OnError::Park;

/// Which way rows of a mapping flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    Both,
    OneWay { from: String, to: String },
}

impl Direction {
    /// Whether rows flow from endpoint `from` to endpoint `to`.
    pub fn flows(&self, from: &str, to: &str) -> bool {
        match self {
            Direction::Both => from != to,
            Direction::OneWay { from: f, to: t } => f == from && t == to,
        }
    }
}

/// What happens to a change that cannot be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Write it to the dead-letter table and go on.
    Park,
    /// Write it to the dead-letter table and stop the mapping until a DBA intervenes.
    Halt,
}

/// A conflict resolution strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The newer change wins, by `column` (a mapped timestamp column, named by either
    /// endpoint's column name); `None` at column level means "the mapping's column".
    LastWriterWins {
        column: Option<String>,
    },
    /// That endpoint's value always wins.
    Prefer(String),
    /// Apply `after − before` to the target's current value.
    Delta,
    Max,
    Min,
    /// Keep the target row and park the change for review.
    Manual,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::LastWriterWins { .. } => f.write_str("last_writer_wins"),
            Strategy::Prefer(e) => write!(f, "prefer:{e}"),
            Strategy::Delta => f.write_str("delta"),
            Strategy::Max => f.write_str("max"),
            Strategy::Min => f.write_str("min"),
            Strategy::Manual => f.write_str("manual"),
        }
    }
}

/// `conflict = "delta"` or `conflict = { strategy = "last_writer_wins", column = "updated_at" }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictSpec {
    pub strategy: Strategy,
}

/// One side of a mapping: a table on one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// `schema.table` on PostgreSQL, `table` (or `db.table`) on MySQL.
    pub table: String,
    /// Columns (of this side) that identify a row.
    pub key: Vec<String>,
    /// Row filter: only rows of this side for which the expression holds leave it.
    pub filter: Option<String>,
}

/// One mapped column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMapping {
    /// Endpoint name → column name on that endpoint.
    pub names: IndexMap<String, String>,
    pub conflict: Option<ConflictSpec>,
    /// Endpoint name → expression computing the value written *to* that endpoint
    /// (`value` is the source value, `row` the source row).
    pub transform: IndexMap<String, String>,
}

impl ColumnMapping {
    pub fn name_on(&self, endpoint: &str) -> Option<&str> {
        self.names.get(endpoint).map(String::as_str)
    }
}

/// A validated mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub name: String,
    pub direction: Direction,
    /// Endpoint name → side, in endpoint order.
    pub sides: IndexMap<String, Side>,
    pub conflict: Option<ConflictSpec>,
    pub columns: Vec<ColumnMapping>,
    pub on_error: OnError,
    /// Keep deletes this long so `last_writer_wins` can order them against updates.
    pub tombstones: Option<Duration>,
    /// Things that are allowed but probably not meant (`tandem check` prints them).
    pub warnings: Vec<ConfigError>,
}

impl Mapping {
    /// The strategy for a column: its own, else the mapping's, else `manual`.
    pub fn strategy_for(&self, column: &ColumnMapping) -> Strategy {
        column
            .conflict
            .as_ref()
            .or(self.conflict.as_ref())
            .map(|c| c.strategy.clone())
            .unwrap_or(Strategy::Manual)
    }

    /// The mapping-level `last_writer_wins` timestamp column, if any.
    pub fn lww_column(&self) -> Option<&ColumnMapping> {
        let Some(ConflictSpec {
            strategy: Strategy::LastWriterWins { column: Some(c) },
        }) = &self.conflict
        else {
            return None;
        };
        self.columns
            .iter()
            .find(|m| m.names.values().any(|n| n == c))
    }

    /// Whether column `col` (by mapping index) is part of the key.
    pub fn is_key(&self, col: &ColumnMapping) -> bool {
        self.sides.iter().any(|(ep, side)| {
            col.name_on(ep)
                .is_some_and(|n| side.key.iter().any(|k| k == n))
        })
    }
}

const MAPPING_KEYS: &[&str] = &[
    "name",
    "direction",
    "conflict",
    "columns",
    "on_error",
    "tombstones",
];
const SIDE_KEYS: &[&str] = &["table", "key", "where"];
const COLUMN_KEYS: &[&str] = &["conflict", "transform"];

fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

fn get_str(v: &toml::Value, path: &str, errs: &mut ConfigErrors, fix: &str) -> Option<String> {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => Some(s.to_owned()),
        Some(_) => {
            errs.push(ConfigError::new(path, "is empty", fix));
            None
        }
        None => {
            errs.push(ConfigError::new(
                path,
                format!("expected a string, found {}", type_name(v)),
                fix,
            ));
            None
        }
    }
}

pub(crate) fn parse(
    raw: &toml::Table,
    path: &str,
    endpoints: &[String],
    errs: &mut ConfigErrors,
) -> Option<Mapping> {
    let before = errs.0.len();
    let ep_refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let mut allowed: Vec<&str> = MAPPING_KEYS.to_vec();
    allowed.extend(ep_refs.iter().copied());
    for k in raw.keys() {
        if !allowed.contains(&k.as_str()) {
            errs.push(ConfigError::new(
                format!("{path}.{k}"),
                "unknown key",
                did_you_mean(k, &allowed),
            ));
        }
    }
    let name = match raw.get("name") {
        Some(v) => get_str(
            v,
            &format!("{path}.name"),
            errs,
            "name the mapping, e.g. name = \"products\"",
        ),
        None => {
            errs.push(ConfigError::new(
                format!("{path}.name"),
                "is missing",
                "name the mapping, e.g. name = \"products\"",
            ));
            None
        }
    };
    if let Some(n) = &name {
        if !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errs.push(ConfigError::new(
                format!("{path}.name"),
                format!("{n:?} contains characters other than letters, digits, '_' and '-'"),
                "it appears in metric labels and table rows; keep it simple",
            ));
        }
    }
    let direction = parse_direction(raw.get("direction"), path, &ep_refs, errs);

    let mut sides = IndexMap::new();
    for ep in endpoints {
        let p = format!("{path}.{ep}");
        match raw.get(ep) {
            None => errs.push(ConfigError::new(
                &p,
                "is missing",
                format!("say which table this mapping uses on {ep}: {ep} = {{ table = \"…\", key = [\"id\"] }}"),
            )),
            Some(v) => {
                if let Some(side) = parse_side(v, &p, errs) {
                    sides.insert(ep.clone(), side);
                }
            }
        }
    }

    let conflict = raw
        .get("conflict")
        .and_then(|v| parse_conflict(v, &format!("{path}.conflict"), &ep_refs, true, errs));
    let on_error = match raw.get("on_error").map(|v| (v.as_str(), v)) {
        None => DEFAULT_ON_ERROR,
        Some((Some("park"), _)) => OnError::Park,
        Some((Some("halt"), _)) => OnError::Halt,
        Some((other, v)) => {
            errs.push(ConfigError::new(
                format!("{path}.on_error"),
                format!(
                    "{} is not an error policy",
                    other.map_or_else(|| type_name(v).to_owned(), |s| format!("{s:?}"))
                ),
                "use \"park\" (dead-letter the row and go on) or \"halt\" (stop the mapping)",
            ));
            DEFAULT_ON_ERROR
        }
    };
    let tombstones = match raw.get("tombstones") {
        None => None,
        Some(v) => match v.as_str().and_then(super::parse_duration) {
            Some(d) => Some(d),
            None => {
                errs.push(ConfigError::new(
                    format!("{path}.tombstones"),
                    "is not a duration",
                    "write it like \"24h\", \"30m\" or \"90s\"",
                ));
                None
            }
        },
    };

    let columns = parse_columns(raw.get("columns"), path, &ep_refs, errs);
    let mut mapping = Mapping {
        name: name.unwrap_or_default(),
        direction,
        sides,
        conflict,
        columns,
        on_error,
        tombstones,
        warnings: Vec::new(),
    };
    if mapping.tombstones.is_some() {
        // Accepted so configs written for it load, but said out loud: nothing silent.
        mapping.warnings.push(ConfigError::new(
            format!("{path}.tombstones"),
            "tombstones are not implemented yet: deletes still win over concurrent updates",
            "remove the key, or keep it for when tombstones arrive",
        ));
    }
    cross_check(&mut mapping, path, &ep_refs, errs);
    super::expressions::check(&mut mapping, path, errs);
    (errs.0.len() == before).then_some(mapping)
}

fn parse_direction(
    v: Option<&toml::Value>,
    path: &str,
    eps: &[&str],
    errs: &mut ConfigErrors,
) -> Direction {
    let p = format!("{path}.direction");
    let Some(v) = v else { return Direction::Both };
    let fix = match eps {
        [a, b] => format!("use \"both\", \"{a}->{b}\" or \"{b}->{a}\""),
        _ => "use \"both\" or \"<from>-><to>\"".to_owned(),
    };
    let Some(s) = v.as_str() else {
        errs.push(ConfigError::new(
            p,
            format!("expected a string, found {}", type_name(v)),
            fix,
        ));
        return Direction::Both;
    };
    if s == "both" {
        return Direction::Both;
    }
    let Some((from, to)) = s.split_once("->") else {
        errs.push(ConfigError::new(
            p,
            format!("{s:?} is not a direction"),
            fix,
        ));
        return Direction::Both;
    };
    let (from, to) = (from.trim(), to.trim());
    for e in [from, to] {
        if !eps.contains(&e) {
            errs.push(ConfigError::new(
                &p,
                format!("{e:?} is not an endpoint"),
                format!("{} ({fix})", did_you_mean(e, eps)),
            ));
            return Direction::Both;
        }
    }
    if from == to {
        errs.push(ConfigError::new(
            p,
            "a mapping cannot flow from an endpoint to itself",
            fix,
        ));
        return Direction::Both;
    }
    Direction::OneWay {
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

fn parse_side(v: &toml::Value, path: &str, errs: &mut ConfigErrors) -> Option<Side> {
    let Some(t) = v.as_table() else {
        errs.push(ConfigError::new(
            path,
            format!("expected a table, found {}", type_name(v)),
            "write it like { table = \"products\", key = [\"sku\"] }",
        ));
        return None;
    };
    for k in t.keys() {
        if !SIDE_KEYS.contains(&k.as_str()) {
            errs.push(ConfigError::new(
                format!("{path}.{k}"),
                "unknown key",
                did_you_mean(k, SIDE_KEYS),
            ));
        }
    }
    let table = match t.get("table") {
        Some(v) => get_str(
            v,
            &format!("{path}.table"),
            errs,
            "name the table, e.g. table = \"public.items\"",
        ),
        None => {
            errs.push(ConfigError::new(
                format!("{path}.table"),
                "is missing",
                "name the table, e.g. table = \"public.items\"",
            ));
            None
        }
    };
    let key_fix = "list the key columns, e.g. key = [\"sku\"]";
    let key = match t.get("key") {
        None => {
            errs.push(ConfigError::new(
                format!("{path}.key"),
                "is missing",
                key_fix,
            ));
            None
        }
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            let mut out = Vec::new();
            for (i, k) in a.iter().enumerate() {
                out.extend(get_str(k, &format!("{path}.key[{i}]"), errs, key_fix));
            }
            let unique: BTreeSet<_> = out.iter().collect();
            if unique.len() != out.len() {
                errs.push(ConfigError::new(
                    format!("{path}.key"),
                    "names a column twice",
                    key_fix,
                ));
            }
            Some(out)
        }
        Some(toml::Value::String(s)) => Some(vec![s.clone()]),
        Some(_) => {
            errs.push(ConfigError::new(
                format!("{path}.key"),
                "must be a non-empty list of column names",
                key_fix,
            ));
            None
        }
    };
    let filter = t.get("where").and_then(|v| {
        get_str(
            v,
            &format!("{path}.where"),
            errs,
            "write a boolean expression over the row, e.g. where = \"row.active\"",
        )
    });
    Some(Side {
        table: table?,
        key: key?,
        filter,
    })
}

fn parse_conflict(
    v: &toml::Value,
    path: &str,
    eps: &[&str],
    mapping_level: bool,
    errs: &mut ConfigErrors,
) -> Option<ConflictSpec> {
    let names = [
        "last_writer_wins",
        "delta",
        "max",
        "min",
        "manual",
        "prefer:<endpoint>",
    ];
    let fix_all = "use one of: last_writer_wins, prefer:<endpoint>, delta, max, min, manual";
    let (strategy, column) = match v {
        toml::Value::String(s) => (s.clone(), None),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !["strategy", "column"].contains(&k.as_str()) {
                    errs.push(ConfigError::new(
                        format!("{path}.{k}"),
                        "unknown key",
                        did_you_mean(k, &["strategy", "column"]),
                    ));
                }
            }
            let s = match t.get("strategy").and_then(|s| s.as_str()) {
                Some(s) => s.to_owned(),
                None => {
                    errs.push(ConfigError::new(
                        format!("{path}.strategy"),
                        "is missing or not a string",
                        fix_all,
                    ));
                    return None;
                }
            };
            let c = match t.get("column") {
                None => None,
                Some(c) => get_str(
                    c,
                    &format!("{path}.column"),
                    errs,
                    "name the mapped timestamp column",
                ),
            };
            (s, c)
        }
        other => {
            errs.push(ConfigError::new(
                path,
                format!("expected a string or a table, found {}", type_name(other)),
                fix_all,
            ));
            return None;
        }
    };
    let strategy = match strategy.as_str() {
        "last_writer_wins" => {
            if mapping_level && column.is_none() {
                errs.push(ConfigError::new(
                    path,
                    "last_writer_wins needs the timestamp column it compares",
                    "write conflict = { strategy = \"last_writer_wins\", column = \"updated_at\" }",
                ));
                return None;
            }
            Strategy::LastWriterWins {
                column: column.clone(),
            }
        }
        "delta" => Strategy::Delta,
        "max" => Strategy::Max,
        "min" => Strategy::Min,
        "manual" => Strategy::Manual,
        s if s.starts_with("prefer:") => {
            let ep = &s["prefer:".len()..];
            if !eps.contains(&ep) {
                errs.push(ConfigError::new(
                    path,
                    format!("prefer names {ep:?}, which is not an endpoint"),
                    did_you_mean(ep, eps),
                ));
                return None;
            }
            Strategy::Prefer(ep.to_owned())
        }
        "incoming_wins" | "source_wins" | "overwrite" => {
            errs.push(ConfigError::new(
                path,
                format!("{strategy:?} is not offered: two sides that both overwrite each other swap values and diverge"),
                "use last_writer_wins with a timestamp column, or prefer:<endpoint> to name the owner",
            ));
            return None;
        }
        other => {
            errs.push(ConfigError::new(
                path,
                format!("{other:?} is not a strategy"),
                did_you_mean(other, &names),
            ));
            return None;
        }
    };
    if column.is_some() && !matches!(strategy, Strategy::LastWriterWins { .. }) {
        errs.push(ConfigError::new(
            format!("{path}.column"),
            "only last_writer_wins takes a column",
            "remove it",
        ));
    }
    Some(ConflictSpec { strategy })
}

fn parse_columns(
    v: Option<&toml::Value>,
    path: &str,
    eps: &[&str],
    errs: &mut ConfigErrors,
) -> Vec<ColumnMapping> {
    let fix = "list the mapped columns: columns = [ { inventory = \"sku\", retail = \"sku\" }, … ]";
    let Some(v) = v else {
        errs.push(ConfigError::new(
            format!("{path}.columns"),
            "is missing",
            fix,
        ));
        return Vec::new();
    };
    let Some(arr) = v.as_array().filter(|a| !a.is_empty()) else {
        errs.push(ConfigError::new(
            format!("{path}.columns"),
            "must be a non-empty list",
            fix,
        ));
        return Vec::new();
    };
    let mut allowed: Vec<&str> = COLUMN_KEYS.to_vec();
    allowed.extend(eps.iter().copied());
    let mut out = Vec::new();
    for (i, c) in arr.iter().enumerate() {
        let p = format!("{path}.columns[{i}]");
        let Some(t) = c.as_table() else {
            errs.push(ConfigError::new(
                &p,
                format!("expected a table, found {}", type_name(c)),
                fix,
            ));
            continue;
        };
        for k in t.keys() {
            if !allowed.contains(&k.as_str()) {
                errs.push(ConfigError::new(
                    format!("{p}.{k}"),
                    "unknown key",
                    did_you_mean(k, &allowed),
                ));
            }
        }
        let mut names = IndexMap::new();
        for ep in eps {
            match t.get(*ep) {
                Some(n) => {
                    if let Some(n) = get_str(
                        n,
                        &format!("{p}.{ep}"),
                        errs,
                        "name the column on that endpoint",
                    ) {
                        names.insert((*ep).to_owned(), n);
                    }
                }
                None => errs.push(ConfigError::new(
                    format!("{p}.{ep}"),
                    "is missing",
                    format!("name the column on {ep}: {ep} = \"column_name\""),
                )),
            }
        }
        let conflict = t
            .get("conflict")
            .and_then(|v| parse_conflict(v, &format!("{p}.conflict"), eps, false, errs));
        let mut transform = IndexMap::new();
        if let Some(tv) = t.get("transform") {
            match tv.as_table() {
                Some(tt) => {
                    for (ep, expr) in tt {
                        let tp = format!("{p}.transform.{ep}");
                        if !eps.contains(&ep.as_str()) {
                            errs.push(ConfigError::new(
                                &tp,
                                "is not an endpoint",
                                did_you_mean(ep, eps),
                            ));
                            continue;
                        }
                        if let Some(e) = get_str(
                            expr,
                            &tp,
                            errs,
                            "write an expression over `value` and `row`",
                        ) {
                            transform.insert(ep.clone(), e);
                        }
                    }
                }
                None => errs.push(ConfigError::new(
                    format!("{p}.transform"),
                    "must be a table keyed by the endpoint the value is written to",
                    "write transform = { inventory = \"sha256(value)\" }",
                )),
            }
        }
        out.push(ColumnMapping {
            names,
            conflict,
            transform,
        });
    }
    out
}

fn cross_check(m: &mut Mapping, path: &str, eps: &[&str], errs: &mut ConfigErrors) {
    // Column names unique per side.
    for ep in eps {
        let mut seen = BTreeSet::new();
        for (i, c) in m.columns.iter().enumerate() {
            if let Some(n) = c.name_on(ep) {
                if !seen.insert(n) {
                    errs.push(ConfigError::new(
                        format!("{path}.columns[{i}].{ep}"),
                        format!("column {n:?} is mapped twice"),
                        "map each column once",
                    ));
                }
            }
        }
    }
    // Key columns must be mapped, and pair up across sides.
    for (ep, side) in &m.sides {
        for k in &side.key {
            if !m.columns.iter().any(|c| c.name_on(ep) == Some(k.as_str())) {
                let mapped: Vec<&str> = m.columns.iter().filter_map(|c| c.name_on(ep)).collect();
                errs.push(ConfigError::new(
                    format!("{path}.{ep}.key"),
                    format!("key column {k:?} is not in columns"),
                    match super::error::suggest(k, mapped.iter().copied()) {
                        Some(s) => format!("did you mean \"{s}\"? Otherwise add {{ {ep} = \"{k}\", … }} to columns"),
                        None => format!("add {{ {ep} = \"{k}\", … }} to columns"),
                    },
                ));
            }
        }
    }
    if let [(a, sa), (b, sb)] = m.sides.iter().collect::<Vec<_>>()[..] {
        let paired = sa.key.len() == sb.key.len()
            && sa.key.iter().all(|k| {
                m.columns
                    .iter()
                    .find(|c| c.name_on(a) == Some(k.as_str()))
                    .and_then(|c| c.name_on(b))
                    .is_some_and(|other| sb.key.iter().any(|x| x == other))
            });
        if !paired && errs.is_empty() {
            errs.push(ConfigError::new(
                format!("{path}.{b}.key"),
                format!("the key columns of {a} and {b} are not mapped to each other"),
                "list, on both sides, the key columns that the columns list pairs up",
            ));
        }
    }
    // Strategies per column.
    let mut any_strategy = m.conflict.is_some();
    for (i, c) in m.columns.iter().enumerate() {
        let p = format!("{path}.columns[{i}].conflict");
        let Some(spec) = &c.conflict else { continue };
        any_strategy = true;
        if m.is_key(c) {
            errs.push(ConfigError::new(
                &p,
                "key columns never conflict",
                "remove the conflict setting from the key column",
            ));
        }
        if let Strategy::LastWriterWins { column: None } = spec.strategy {
            if m.lww_column().is_none() {
                errs.push(ConfigError::new(
                    &p,
                    "last_writer_wins needs a timestamp column",
                    "write conflict = { strategy = \"last_writer_wins\", column = \"updated_at\" } here or at mapping level",
                ));
            }
        }
    }
    let lww_cols: Vec<(String, Option<String>)> = std::iter::once(m.conflict.as_ref())
        .chain(m.columns.iter().map(|c| c.conflict.as_ref()))
        .enumerate()
        .filter_map(|(i, c)| match c {
            Some(ConflictSpec {
                strategy: Strategy::LastWriterWins { column: Some(col) },
            }) => Some((
                if i == 0 {
                    format!("{path}.conflict.column")
                } else {
                    format!("{path}.columns[{}].conflict.column", i - 1)
                },
                Some(col.clone()),
            )),
            _ => None,
        })
        .collect();
    for (p, col) in lww_cols {
        let Some(col) = col else { continue };
        if !m
            .columns
            .iter()
            .any(|c| c.names.values().any(|n| *n == col))
        {
            let mapped: Vec<&str> = m
                .columns
                .iter()
                .flat_map(|c| c.names.values().map(String::as_str))
                .collect();
            errs.push(ConfigError::new(
                p,
                format!("timestamp column {col:?} is not a mapped column"),
                did_you_mean(&col, &mapped),
            ));
        }
    }
    if !any_strategy && matches!(m.direction, Direction::Both) {
        m.warnings.push(ConfigError::new(
            format!("{path}.conflict"),
            "no conflict strategy: conflicts on this mapping are parked for review (manual)",
            "set conflict = { strategy = \"last_writer_wins\", column = \"updated_at\" } or per-column strategies",
        ));
    }
}
