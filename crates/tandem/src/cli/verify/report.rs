//! What `tandem verify` prints: one line per differing key and a summary per mapping as
//! text, or the same content as one JSON document for monitoring jobs.

use serde::Serialize;
use serde_json::{Map, Value as J};

/// The result for one mapping.
#[derive(Debug, Default, Serialize)]
pub struct MappingReport {
    pub mapping: String,
    /// Endpoint → table.
    pub tables: Map<String, J>,
    /// Endpoint → rows counted by the checksums.
    pub rows: Map<String, J>,
    /// How rows were chunked (`Hash`, `IntRange` or `Prefix`, with its parameters).
    pub chunking: String,
    pub chunks: u32,
    pub differing_chunks: usize,
    pub differing_keys: usize,
    /// More keys differed than are listed.
    pub truncated: bool,
    pub differences: Vec<DiffReport>,
    pub repaired: usize,
    pub refused: usize,
    pub seconds: f64,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DiffReport {
    pub key: Map<String, J>,
    /// `only_in`, `differs` or `cannot_cross`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_in: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Endpoint → the row as that side holds it (null when absent).
    pub rows: Map<String, J>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairOutcome>,
}

#[derive(Debug, Serialize)]
pub struct ColumnDiff {
    /// Endpoint → column name.
    pub column: Map<String, J>,
    /// Endpoint → value as displayed.
    pub values: Map<String, J>,
}

#[derive(Debug, Serialize)]
pub struct RepairOutcome {
    /// `repaired` or `refused`.
    pub status: &'static str,
    pub detail: String,
}

/// The whole run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub equal: bool,
    pub mappings: Vec<MappingReport>,
}

impl DiffReport {
    /// One line: `only in retail: {sku: "A-1"}`, `differs: {sku: "A-1"} column price`.
    pub fn summary(&self) -> String {
        let key = key_text(&self.key);
        match self.kind {
            "only_in" => format!("only in {}: {key}", self.only_in.as_deref().unwrap_or("?")),
            "differs" => {
                let names: Vec<String> = self
                    .columns
                    .iter()
                    .filter_map(|c| c.column.values().next().map(plain))
                    .collect();
                format!("differs: {key} column {}", names.join(", "))
            }
            _ => format!("cannot cross: {key}"),
        }
    }
}

fn key_text(key: &Map<String, J>) -> String {
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn plain(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The text form.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for m in &report.mappings {
        let tables: Vec<String> = m
            .tables
            .iter()
            .map(|(e, t)| format!("{e} {}", plain(t)))
            .collect();
        out.push_str(&format!(
            "mapping {}: {}\n",
            m.mapping,
            tables.join(" <-> ")
        ));
        for n in &m.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        if let Some(e) = &m.error {
            out.push_str(&format!("  error: {e}\n"));
            continue;
        }
        for d in &m.differences {
            let key = key_text(&d.key);
            match d.kind {
                "only_in" => out.push_str(&format!(
                    "  only in {}: {key}\n",
                    d.only_in.as_deref().unwrap_or("?")
                )),
                "differs" => {
                    for c in &d.columns {
                        let names: Vec<String> = c.column.values().map(plain).collect();
                        let mut name = names.first().cloned().unwrap_or_default();
                        if names.iter().any(|n| *n != name) {
                            name = names.join("/");
                        }
                        let vals: Vec<String> = c
                            .values
                            .iter()
                            .map(|(e, v)| format!("{e} {}", plain(v)))
                            .collect();
                        out.push_str(&format!(
                            "  differs: {key} column {name}: {}\n",
                            vals.join(", ")
                        ));
                    }
                }
                _ => out.push_str(&format!(
                    "  cannot cross: {key}: {}\n",
                    d.reason.as_deref().unwrap_or("")
                )),
            }
            if let Some(r) = &d.repair {
                out.push_str(&format!("    {}: {}\n", r.status, r.detail));
            }
        }
        if m.truncated {
            out.push_str(&format!(
                "  … {} more differing keys not listed\n",
                m.differing_keys.saturating_sub(m.differences.len())
            ));
        }
        let rows: Vec<String> = m
            .rows
            .iter()
            .map(|(e, n)| format!("{n} rows in {e}"))
            .collect();
        out.push_str(&format!(
            "  {}: {}; {} chunks, {} differing; {} differing keys",
            m.mapping,
            rows.join(", "),
            m.chunks,
            m.differing_chunks,
            m.differing_keys
        ));
        if m.repaired + m.refused > 0 {
            out.push_str(&format!("; {} repaired, {} refused", m.repaired, m.refused));
        }
        out.push_str(&format!("; {:.2} s\n", m.seconds));
    }
    out.push_str(if report.equal {
        "equal\n"
    } else {
        "NOT equal\n"
    });
    out
}
