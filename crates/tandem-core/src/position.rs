//! Source positions.
//!
//! A position says how far a source has been read or applied. It is a closed enum because
//! the kinds are not interchangeable: a PostgreSQL LSN and a MariaDB GTID state describe
//! different logs, and a file/offset pair is only ordered within one server's binlog
//! sequence. Comparison is therefore fallible ([`Position::try_cmp`]): positions of
//! different kinds, or GTID states that are concurrent (ahead in one domain, behind in
//! another), refuse to compare instead of yielding a plausible but wrong answer. Nobody
//! takes `max()` of positions; the pipeline tracks "received", "durably applied" and
//! "acknowledged" separately and only ever moves each forward through `try_cmp`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A PostgreSQL write-ahead-log position (`XXXXXXXX/XXXXXXXX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl FromStr for Lsn {
    type Err = PositionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PositionError::Parse {
            text: s.to_owned(),
            expected: "an LSN like 0/16B3748",
        };
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// A replicated-transaction state.
///
/// MariaDB keeps one `server-seq` per replication domain (`0-1-42,1-7-3`); MySQL keeps, per
/// source server UUID, the set of transaction numbers executed (`uuid:1-5:7`, MySQL's own
/// text form as `@@gtid_executed` and `Executed_Gtid_Set` print it).
///
/// The two flavours never compare with each other, with one exception: the *empty* state
/// ("nothing executed yet") is the same in both, and its text form (`""`) cannot say which
/// flavour it was, so an empty set compares as the bottom of either flavour.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GtidSet {
    /// domain id → (server id, sequence number) of the last transaction in that domain.
    MariaDb(BTreeMap<u32, (u32, u64)>),
    /// server uuid (lowercase, hyphenated) → sorted, disjoint, non-adjacent, inclusive
    /// intervals of transaction numbers (≥ 1).
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
}

const MYSQL_SET_EXPECTED: &str = "a MySQL GTID set like 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7";

impl GtidSet {
    /// An empty MariaDB state.
    pub fn mariadb() -> Self {
        GtidSet::MariaDb(BTreeMap::new())
    }

    /// An empty MySQL GTID set.
    pub fn mysql() -> Self {
        GtidSet::MySql(BTreeMap::new())
    }

    /// Nothing executed (either flavour).
    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MariaDb(m) => m.is_empty(),
            GtidSet::MySql(m) => m.values().all(Vec::is_empty),
        }
    }

    /// Record one MariaDB GTID (`domain-server-seq`) as executed.
    pub fn record_mariadb(
        &mut self,
        domain: u32,
        server: u32,
        seq: u64,
    ) -> Result<(), PositionError> {
        if let GtidSet::MySql(m) = self {
            if !m.is_empty() {
                return Err(PositionError::Incomparable {
                    left: "a MySQL GTID set".into(),
                    right: "a MariaDB GTID".into(),
                });
            }
            *self = GtidSet::mariadb();
        }
        if let GtidSet::MariaDb(m) = self {
            m.insert(domain, (server, seq));
        }
        Ok(())
    }

    /// Record one MySQL GTID (`uuid:n`) as executed. `uuid` is the lowercase hyphenated
    /// form (what [`GtidSet::parse_mysql`] normalises to). Adding the next number of the
    /// last interval, the case of every commit, allocates nothing.
    pub fn record_mysql(&mut self, uuid: &str, n: u64) -> Result<(), PositionError> {
        if n == 0 {
            return Err(PositionError::Parse {
                text: format!("{uuid}:0"),
                expected: "a MySQL transaction number of 1 or more",
            });
        }
        if let GtidSet::MariaDb(m) = self {
            if !m.is_empty() {
                return Err(PositionError::Incomparable {
                    left: "a MariaDB GTID state".into(),
                    right: "a MySQL GTID".into(),
                });
            }
            *self = GtidSet::mysql();
        }
        let GtidSet::MySql(m) = self else {
            return Ok(());
        };
        let ranges = match m.get_mut(uuid) {
            Some(r) => r,
            None => m.entry(uuid.to_ascii_lowercase()).or_default(),
        };
        match ranges.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(n) => last.1 = n,
            Some(last) if last.0 <= n && n <= last.1 => {}
            _ => {
                ranges.push((n, n));
                normalize_ranges(ranges);
            }
        }
        Ok(())
    }

    /// Add the MySQL GTIDs `uuid:first` to `uuid:last` (inclusive) to the set.
    pub fn add_mysql_interval(
        &mut self,
        uuid: &str,
        first: u64,
        last: u64,
    ) -> Result<(), PositionError> {
        if first == 0 || first > last {
            return Err(PositionError::Parse {
                text: format!("{uuid}:{first}-{last}"),
                expected: "ascending GTID intervals of numbers from 1",
            });
        }
        self.record_mysql(uuid, first)?;
        if let GtidSet::MySql(m) = self {
            if let Some(ranges) = m.get_mut(uuid) {
                ranges.push((first, last));
                normalize_ranges(ranges);
            }
        }
        Ok(())
    }

    /// Whether MySQL GTID `uuid:n` is in the set (false for a MariaDB state).
    pub fn contains_mysql(&self, uuid: &str, n: u64) -> bool {
        match self {
            GtidSet::MySql(m) => m
                .get(uuid)
                .is_some_and(|r| r.iter().any(|&(a, b)| a <= n && n <= b)),
            GtidSet::MariaDb(_) => false,
        }
    }

    /// Add every GTID of `other` (MySQL: set union; MariaDB: per domain, the later one).
    /// Fails for two non-empty states of different flavours.
    pub fn union(&mut self, other: &GtidSet) -> Result<(), PositionError> {
        if other.is_empty() {
            return Ok(());
        }
        if self.is_empty() {
            *self = other.clone();
            return Ok(());
        }
        match (&mut *self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => {
                for (uuid, ranges) in b {
                    let mine = a.entry(uuid.clone()).or_default();
                    mine.extend_from_slice(ranges);
                    normalize_ranges(mine);
                }
                Ok(())
            }
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                for (&d, &(srv, seq)) in b {
                    if a.get(&d).is_none_or(|&(_, mine)| mine < seq) {
                        a.insert(d, (srv, seq));
                    }
                }
                Ok(())
            }
            _ => Err(PositionError::Incomparable {
                left: self.to_string(),
                right: other.to_string(),
            }),
        }
    }

    /// Parse either flavour: MySQL's when the text holds a `:`, MariaDB's otherwise (the
    /// empty text is the empty state, which serves either flavour).
    pub fn parse(s: &str) -> Result<Self, PositionError> {
        if s.contains(':') {
            return GtidSet::parse_mysql(s);
        }
        let s = s.trim();
        let bad = |expected| PositionError::Parse {
            text: s.to_owned(),
            expected,
        };
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.splitn(3, '-');
            let mut next = || -> Result<u64, PositionError> {
                it.next()
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(|| bad("a MariaDB GTID state like 0-1-42,1-2-7"))
            };
            let (d, srv, seq) = (next()?, next()?, next()?);
            let d = u32::try_from(d).map_err(|_| bad("a 32-bit domain id"))?;
            let srv = u32::try_from(srv).map_err(|_| bad("a 32-bit server id"))?;
            m.insert(d, (srv, seq));
        }
        Ok(GtidSet::MariaDb(m))
    }

    /// Parse MySQL's text form (`uuid:1-5:7,uuid2:3`, whitespace and newlines after commas
    /// allowed, as `SHOW MASTER STATUS` prints them; `""` is the empty set). UUIDs are
    /// normalised to lowercase hyphenated form. Tagged GTIDs (MySQL 8.4's `uuid:tag:1-5`)
    /// are refused: tandem does not track them.
    pub fn parse_mysql(s: &str) -> Result<Self, PositionError> {
        let s = s.trim();
        let bad = |expected| PositionError::Parse {
            text: s.to_owned(),
            expected,
        };
        let mut m: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = it.next().unwrap_or_default().trim();
            let uuid = uuid::Uuid::parse_str(uuid)
                .map_err(|_| bad(MYSQL_SET_EXPECTED))?
                .hyphenated()
                .to_string();
            let ranges = m.entry(uuid).or_default();
            let mut any = false;
            for iv in it {
                any = true;
                let iv = iv.trim();
                if iv.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    return Err(bad(
                        "an untagged MySQL GTID set (tagged GTIDs are not supported)",
                    ));
                }
                let (a, b) = iv.split_once('-').unwrap_or((iv, iv));
                let a: u64 = a.parse().map_err(|_| bad(MYSQL_SET_EXPECTED))?;
                let b: u64 = b.parse().map_err(|_| bad(MYSQL_SET_EXPECTED))?;
                if a == 0 || a > b {
                    return Err(bad("ascending GTID intervals of numbers from 1"));
                }
                ranges.push((a, b));
            }
            if !any {
                return Err(bad(MYSQL_SET_EXPECTED));
            }
            normalize_ranges(ranges);
        }
        Ok(GtidSet::MySql(m))
    }

    fn try_cmp(&self, other: &Self) -> Result<Ordering, PositionError> {
        let incomparable = || PositionError::Incomparable {
            left: self.to_string(),
            right: other.to_string(),
        };
        // The empty state is the bottom of both flavours (see the type's docs).
        match (self.is_empty(), other.is_empty()) {
            (true, true) => return Ok(Ordering::Equal),
            (true, false) => return Ok(Ordering::Less),
            (false, true) => return Ok(Ordering::Greater),
            (false, false) => {}
        }
        let (mut less, mut greater) = (false, false);
        match (self, other) {
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                let domains: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
                for d in domains {
                    let sa = a.get(d).map_or(0, |x| x.1);
                    let sb = b.get(d).map_or(0, |x| x.1);
                    match sa.cmp(&sb) {
                        Ordering::Less => less = true,
                        Ordering::Greater => greater = true,
                        Ordering::Equal => {}
                    }
                }
            }
            (GtidSet::MySql(a), GtidSet::MySql(b)) => {
                let a_in_b = is_subset(a, b);
                let b_in_a = is_subset(b, a);
                less = a_in_b && !b_in_a;
                greater = b_in_a && !a_in_b;
                if !a_in_b && !b_in_a {
                    return Err(incomparable());
                }
            }
            _ => return Err(incomparable()),
        }
        match (less, greater) {
            (true, true) => Err(incomparable()),
            (true, false) => Ok(Ordering::Less),
            (false, true) => Ok(Ordering::Greater),
            (false, false) => Ok(Ordering::Equal),
        }
    }
}

/// Stored as its usual text form (`0-1-42,1-2-7` or `uuid:1-5`), which DBAs can read in
/// the checkpoint table and paste into `@slave_connect_state` or `gtid_purged`.
impl Serialize for GtidSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GtidSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GtidSet::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Sort and merge overlapping or adjacent intervals.
fn normalize_ranges(r: &mut Vec<(u64, u64)>) {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for &(a, b) in r.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *r = out;
}

/// Every interval of `a` lies inside one of `b`'s (both normalised, so merged intervals
/// cover maximal runs and one containing interval suffices).
fn is_subset(a: &BTreeMap<String, Vec<(u64, u64)>>, b: &BTreeMap<String, Vec<(u64, u64)>>) -> bool {
    a.iter().all(|(uuid, ranges)| {
        let other = b.get(uuid).map(Vec::as_slice).unwrap_or(&[]);
        ranges
            .iter()
            .all(|&(x, y)| other.iter().any(|&(p, q)| p <= x && y <= q))
    })
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MariaDb(m) => {
                for (i, (d, (s, n))) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}-{s}-{n}")?;
                }
                Ok(())
            }
            GtidSet::MySql(m) => {
                let mut first = true;
                for (u, rs) in m.iter().filter(|(_, rs)| !rs.is_empty()) {
                    if !first {
                        f.write_str(",")?;
                    }
                    first = false;
                    f.write_str(u)?;
                    for &(a, b) in rs {
                        if a == b {
                            write!(f, ":{a}")?;
                        } else {
                            write!(f, ":{a}-{b}")?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Where a source stands in its change log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// PostgreSQL: the end LSN of a commit (what the slot is acknowledged with).
    PgLsn { lsn: Lsn },
    /// MySQL/MariaDB: the GTID state after a transaction, plus the file/offset it ended at.
    /// The GTID state is what resumes and orders first; equal states are ordered by the
    /// file/offset (they run ahead of the state while an XA transaction is prepared).
    MySqlGtid {
        gtid: GtidSet,
        file: Option<String>,
        pos: Option<u64>,
    },
    /// MySQL/MariaDB without GTIDs: binlog file name and byte offset after the transaction.
    MySqlFile { file: String, pos: u64 },
}

impl Position {
    /// Compare two positions of the same log.
    ///
    /// Fails for positions of different kinds and for concurrent GTID states. File
    /// positions compare by the binlog's numeric suffix, then by offset.
    pub fn try_cmp(&self, other: &Position) -> Result<Ordering, PositionError> {
        match (self, other) {
            (Position::PgLsn { lsn: a }, Position::PgLsn { lsn: b }) => Ok(a.cmp(b)),
            (
                Position::MySqlGtid {
                    gtid: a,
                    file: fa,
                    pos: pa,
                },
                Position::MySqlGtid {
                    gtid: b,
                    file: fb,
                    pos: pb,
                },
            ) => {
                // Equal states: the file/offset orders them. They differ while the MySQL
                // source holds its state before a prepared XA transaction (see
                // tandem-mysql's source docs), and later groups must still count as ahead.
                let by_state = a.try_cmp(b)?;
                let by_offset = match (fa, pa, fb, pb) {
                    (Some(fa), Some(pa), Some(fb), Some(pb)) => {
                        match (split_binlog_name(fa), split_binlog_name(fb)) {
                            (Some((ba, na)), Some((bb, nb))) if ba == bb => {
                                na.cmp(&nb).then(pa.cmp(pb))
                            }
                            _ => Ordering::Equal,
                        }
                    }
                    _ => Ordering::Equal,
                };
                Ok(by_state.then(by_offset))
            }
            (
                Position::MySqlFile { file: fa, pos: pa },
                Position::MySqlFile { file: fb, pos: pb },
            ) => {
                let (ba, na) = split_binlog_name(fa)
                    .ok_or_else(|| PositionError::BadFileName { file: fa.clone() })?;
                let (bb, nb) = split_binlog_name(fb)
                    .ok_or_else(|| PositionError::BadFileName { file: fb.clone() })?;
                if ba != bb {
                    return Err(PositionError::Incomparable {
                        left: self.to_string(),
                        right: other.to_string(),
                    });
                }
                Ok(na.cmp(&nb).then(pa.cmp(pb)))
            }
            _ => Err(PositionError::Incomparable {
                left: self.to_string(),
                right: other.to_string(),
            }),
        }
    }

    /// True when `self` is at or before `other` (the "already applied" test).
    pub fn is_at_or_before(&self, other: &Position) -> Result<bool, PositionError> {
        Ok(self.try_cmp(other)? != Ordering::Greater)
    }

    /// Serialise for a checkpoint table column.
    pub fn to_checkpoint_text(&self) -> String {
        // Serialising a plain enum of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("null"))
    }

    /// Parse what [`Position::to_checkpoint_text`] wrote.
    pub fn from_checkpoint_text(s: &str) -> Result<Position, PositionError> {
        serde_json::from_str(s).map_err(|_| PositionError::Parse {
            text: s.to_owned(),
            expected: "a checkpoint written by tandem",
        })
    }
}

fn split_binlog_name(name: &str) -> Option<(&str, u64)> {
    let (base, num) = name.rsplit_once('.')?;
    Some((base, num.parse().ok()?))
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::PgLsn { lsn } => write!(f, "lsn {lsn}"),
            Position::MySqlGtid { gtid, .. } => write!(f, "gtid {gtid}"),
            Position::MySqlFile { file, pos } => write!(f, "{file}:{pos}"),
        }
    }
}

/// Why a position could not be parsed or compared.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PositionError {
    #[error("Positions {left} and {right} belong to different logs or concurrent histories and cannot be ordered")]
    Incomparable { left: String, right: String },
    #[error("Cannot parse {text:?}: expected {expected}")]
    Parse {
        text: String,
        expected: &'static str,
    },
    #[error("Binlog file name {file:?} has no numeric suffix")]
    BadFileName { file: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_through_text() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert!("16B374D848".parse::<Lsn>().is_err());
    }

    #[test]
    fn positions_of_different_kinds_never_compare() {
        let a = Position::PgLsn { lsn: Lsn(5) };
        let b = Position::MySqlFile {
            file: "bin.000001".into(),
            pos: 4,
        };
        assert!(a.try_cmp(&b).is_err());
    }

    #[test]
    fn mariadb_states_compare_per_domain() {
        let a = GtidSet::parse("0-1-10,1-2-5").unwrap();
        let b = GtidSet::parse("0-1-11,1-2-5").unwrap();
        let c = GtidSet::parse("0-1-9,1-2-6").unwrap();
        let pa = Position::MySqlGtid {
            gtid: a,
            file: None,
            pos: None,
        };
        let pb = Position::MySqlGtid {
            gtid: b,
            file: None,
            pos: None,
        };
        let pc = Position::MySqlGtid {
            gtid: c,
            file: None,
            pos: None,
        };
        assert_eq!(pa.try_cmp(&pb).unwrap(), Ordering::Less);
        assert_eq!(pb.try_cmp(&pa).unwrap(), Ordering::Greater);
        assert!(
            pa.try_cmp(&pc).is_err(),
            "ahead in one domain, behind in another"
        );
        // A domain absent on one side counts as sequence 0.
        let d = Position::MySqlGtid {
            gtid: GtidSet::parse("0-1-10").unwrap(),
            file: None,
            pos: None,
        };
        assert_eq!(d.try_cmp(&pa).unwrap(), Ordering::Less);
    }

    #[test]
    fn equal_gtid_states_are_ordered_by_file_and_offset() {
        let at = |file: Option<&str>, pos: Option<u64>| Position::MySqlGtid {
            gtid: GtidSet::parse("0-1-10").unwrap(),
            file: file.map(str::to_owned),
            pos,
        };
        let p1 = at(Some("binlog.000002"), Some(900));
        let p2 = at(Some("binlog.000002"), Some(1200));
        let p3 = at(Some("binlog.000003"), Some(300));
        assert_eq!(p1.try_cmp(&p2).unwrap(), Ordering::Less);
        assert_eq!(p3.try_cmp(&p2).unwrap(), Ordering::Greater);
        assert!(
            !p2.is_at_or_before(&p1).unwrap(),
            "a later group is not applied yet"
        );
        assert_eq!(at(None, None).try_cmp(&p1).unwrap(), Ordering::Equal);
        // The state still decides first.
        let later = Position::MySqlGtid {
            gtid: GtidSet::parse("0-1-11").unwrap(),
            file: Some("binlog.000001".into()),
            pos: Some(4),
        };
        assert_eq!(later.try_cmp(&p3).unwrap(), Ordering::Greater);
    }

    #[test]
    fn mysql_sets_compare_by_inclusion() {
        let a = GtidSet::parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5").unwrap();
        let b = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3:4-7").unwrap();
        assert_eq!(b.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7");
        assert_eq!(a.try_cmp(&b).unwrap(), Ordering::Less);
        let c = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:9").unwrap();
        assert!(b.try_cmp(&c).is_err());
    }

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "b7a2c2f4-0000-11ef-8000-0242ac130004";

    #[test]
    fn mysql_text_form_is_mysqls() {
        // SHOW MASTER STATUS breaks Executed_Gtid_Set after each comma.
        let s = GtidSet::parse(&format!("{U2}:3-4:1,\n{U1}:1-3:5:4")).unwrap();
        assert_eq!(s.to_string(), format!("{U1}:1-5,{U2}:1:3-4"));
        assert!(s.contains_mysql(U2, 4) && !s.contains_mysql(U2, 2));
        for bad in [
            "not-a-uuid:1-5",
            &format!("{U1}:0-3"),
            &format!("{U1}:5-3"),
            U1,
            &format!("{U1}:tag:1-3"),
            &format!("{U1}:1-x"),
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
        assert!(GtidSet::parse_mysql("").unwrap().is_empty());
    }

    #[test]
    fn the_empty_state_is_the_bottom_of_either_flavour() {
        let empty = GtidSet::parse("").unwrap();
        let my = GtidSet::parse(&format!("{U1}:1")).unwrap();
        let maria = GtidSet::parse("0-1-1").unwrap();
        assert_eq!(empty.try_cmp(&my).unwrap(), Ordering::Less);
        assert_eq!(maria.try_cmp(&GtidSet::mysql()).unwrap(), Ordering::Greater);
        assert!(my.try_cmp(&maria).is_err());
        let mut e = GtidSet::mariadb();
        e.record_mysql(U1, 1).unwrap();
        assert_eq!(e, my);
        assert!(e.record_mariadb(0, 1, 2).is_err());
        assert!(e.clone().union(&maria).is_err());
    }

    fn model_set(gtids: &[(usize, u64)]) -> (GtidSet, std::collections::BTreeSet<(usize, u64)>) {
        let mut set = GtidSet::mysql();
        for &(u, n) in gtids {
            set.record_mysql([U1, U2][u], n).unwrap();
        }
        (set, gtids.iter().copied().collect())
    }

    fn normalised(set: &GtidSet) -> bool {
        let GtidSet::MySql(m) = set else { return false };
        m.values().all(|r| {
            r.iter().all(|&(a, b)| 1 <= a && a <= b)
                && r.windows(2).all(|w| w[0].1.saturating_add(1) < w[1].0)
        })
    }

    proptest::proptest! {
        /// A MySQL set behaves as the set of GTIDs recorded in it, whatever the order.
        #[test]
        fn mysql_sets_are_sets(
            a in proptest::collection::vec((0usize..2, 1u64..60), 0..80),
            b in proptest::collection::vec((0usize..2, 1u64..60), 0..80),
        ) {
            let (sa, ma) = model_set(&a);
            let (sb, mb) = model_set(&b);
            proptest::prop_assert!(normalised(&sa));
            for u in 0..2 {
                for n in 0..62 {
                    proptest::prop_assert_eq!(sa.contains_mysql([U1, U2][u], n), ma.contains(&(u, n)));
                }
            }
            // Text round trip (the empty text is the empty state of either flavour).
            if !sa.is_empty() {
                proptest::prop_assert_eq!(&GtidSet::parse(&sa.to_string()).unwrap(), &sa);
            }
            // Union is recording both, in any order.
            let mut u = sa.clone();
            u.union(&sb).unwrap();
            let mut all = a.clone();
            all.extend(b.iter().copied());
            proptest::prop_assert_eq!(&u, &model_set(&all).0);
            let mut u2 = sb.clone();
            u2.union(&sa).unwrap();
            proptest::prop_assert_eq!(&u, &u2);
            proptest::prop_assert!(normalised(&u));
            // Ordering is inclusion; sets neither side of the other refuse to compare.
            let expected = match (ma.is_subset(&mb), mb.is_subset(&ma)) {
                (true, true) => Some(Ordering::Equal),
                (true, false) => Some(Ordering::Less),
                (false, true) => Some(Ordering::Greater),
                (false, false) => None,
            };
            proptest::prop_assert_eq!(sa.try_cmp(&sb).ok(), expected);
            proptest::prop_assert_eq!(sa.try_cmp(&u).ok(), Some(if ma.is_superset(&mb) { Ordering::Equal } else { Ordering::Less }));
        }
    }

    #[test]
    fn file_positions_order_by_sequence_then_offset() {
        let a = Position::MySqlFile {
            file: "bin.000009".into(),
            pos: 900,
        };
        let b = Position::MySqlFile {
            file: "bin.000010".into(),
            pos: 4,
        };
        assert_eq!(a.try_cmp(&b).unwrap(), Ordering::Less);
        let other = Position::MySqlFile {
            file: "other.000010".into(),
            pos: 4,
        };
        assert!(a.try_cmp(&other).is_err());
    }

    #[test]
    fn checkpoint_text_round_trips() {
        for p in [
            Position::PgLsn {
                lsn: Lsn(0x1_0000_0010),
            },
            Position::MySqlGtid {
                gtid: GtidSet::parse("0-1-7,5-9-2").unwrap(),
                file: Some("bin.000002".into()),
                pos: Some(1234),
            },
            Position::MySqlFile {
                file: "bin.000001".into(),
                pos: 4,
            },
        ] {
            assert_eq!(
                Position::from_checkpoint_text(&p.to_checkpoint_text()).unwrap(),
                p
            );
        }
    }
}
