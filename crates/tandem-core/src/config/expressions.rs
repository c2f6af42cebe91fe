//! The mapping's expressions, checked at load: every `where` filter and `transform`
//! compiles ([`crate::expr::compile`]), names only variables and functions that exist, and
//! sits where it can take effect. A mistake here would otherwise surface as one dead letter
//! per row, long after the DBA walked away.

use super::error::{ConfigError, ConfigErrors};
use super::mapping::Mapping;
use crate::expr::{self, ExprKind};

pub(super) fn check(m: &mut Mapping, path: &str, errs: &mut ConfigErrors) {
    let endpoints: Vec<String> = m.sides.keys().cloned().collect();
    let receives = |ep: &str| endpoints.iter().any(|from| m.direction.flows(from, ep));
    let sends = |ep: &str| endpoints.iter().any(|to| m.direction.flows(ep, to));
    let mut warnings = Vec::new();
    for (ep, side) in &m.sides {
        let Some(filter) = &side.filter else { continue };
        let p = format!("{path}.{ep}.where");
        if let Err(e) = expr::compile(filter, ExprKind::Filter) {
            errs.push(ConfigError::new(&p, e.message, e.fix));
        } else if !sends(ep) {
            warnings.push(ConfigError::new(
                p,
                format!("rows never leave {ep} in this mapping, so this filter is never used"),
                "remove it, or put it on the side the rows come from",
            ));
        }
    }
    for (i, col) in m.columns.iter().enumerate() {
        for (ep, source) in &col.transform {
            let p = format!("{path}.columns[{i}].transform.{ep}");
            if m.is_key(col) {
                errs.push(ConfigError::new(
                    &p,
                    "key columns cannot be transformed: a changed key would no longer find its row on either side",
                    "remove the transform, or map a non-key column instead",
                ));
                continue;
            }
            let back: Vec<&String> = endpoints
                .iter()
                .filter(|o| *o != ep && m.direction.flows(ep, o) && !col.transform.contains_key(*o))
                .collect();
            if let Err(e) = expr::compile(source, ExprKind::Transform) {
                errs.push(ConfigError::new(&p, e.message, e.fix));
            } else if let Some(other) = back.first() {
                // A masked value that flows back would overwrite the original.
                warnings.push(ConfigError::new(
                    &p,
                    format!("rows also flow from {ep} to {other}, which would receive the transformed value back when the row changes on {ep}"),
                    format!("make the mapping \"{other}->{ep}\", or give the column a transform to {other} too"),
                ));
            } else if !receives(ep) {
                warnings.push(ConfigError::new(
                    p,
                    format!(
                        "rows never flow to {ep} in this mapping, so this transform is never used"
                    ),
                    "key the transform by the endpoint the value is written to",
                ));
            }
        }
    }
    m.warnings.extend(warnings);
}
