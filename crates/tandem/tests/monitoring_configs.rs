//! The shipped Grafana dashboard and Prometheus alert rules stay importable and in step
//! with the metrics tandem really exports: a query on a misspelled or renamed metric would
//! chart nothing and alert never, silently — so every metric name in their queries must be
//! one of `tandem_core::telemetry::ALL`, and the operator's first questions (lag, slot
//! retention, halted mappings, dead letters) must each have a panel and an alert.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use tandem_core::telemetry::{self, ALL};

const DASHBOARD: &str = include_str!("../../../configs/grafana-dashboard.json");
const ALERTS: &str = include_str!("../../../configs/prometheus-alerts.yml");

/// The `tandem_*` metric names a PromQL expression refers to, with the series suffixes of
/// histograms and summaries (`_sum`, `_count`, `_bucket`) taken off.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tandem_") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        let known = |n: &str| ALL.iter().any(|(m, _)| *m == n);
        let base = ["_sum", "_count", "_bucket"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| known(b)))
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[len..];
    }
    names
}

fn assert_known(what: &str, expr: &str) {
    let found = metrics_in(expr);
    assert!(!found.is_empty(), "{what}: no tandem metric in {expr:?}");
    for name in found {
        assert!(
            ALL.iter().any(|(m, _)| *m == name),
            "{what}: {name:?} is not a metric tandem exports (telemetry::ALL); query: {expr}"
        );
    }
}

#[test]
fn metric_names_are_found_in_queries() {
    assert_eq!(
        metrics_in("rate(tandem_apply_batch_duration_seconds_sum[5m]) / tandem_nope_total"),
        ["tandem_apply_batch_duration_seconds", "tandem_nope_total"]
    );
}

#[test]
fn grafana_dashboard_parses_and_charts_only_exported_metrics() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = Vec::new();
    let mut charted = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        ids.push(p["id"].as_u64().expect("every panel has a numeric id"));
        assert!(p["gridPos"]["w"].is_u64(), "{title}: no gridPos");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("a target has an expr");
            assert_known(title, expr);
            charted.extend(metrics_in(expr));
        }
    }
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "panel ids are not unique");
    for wanted in [
        telemetry::LAG_SECONDS,
        telemetry::LAG_BYTES,
        telemetry::CHANGES_APPLIED,
        telemetry::CONFLICTS,
        telemetry::DEAD_LETTERS,
        telemetry::RECONNECTS,
        telemetry::MAPPING_HALTED,
        telemetry::PG_SLOT_SAFE_WAL_BYTES,
        telemetry::PG_SLOT_WAL_STATUS,
        telemetry::SNAPSHOT_ROWS,
        telemetry::SNAPSHOT_ROWS_ESTIMATED,
    ] {
        assert!(
            charted.iter().any(|c| c == wanted),
            "no panel charts {wanted}"
        );
    }
}

#[test]
fn prometheus_alerts_parse_and_cover_lag_slot_halts_and_dead_letters() {
    let doc: serde_yaml::Value = serde_yaml::from_str(ALERTS).expect("the rules are valid YAML");
    let groups = doc["groups"].as_sequence().expect("groups");
    let mut rules = Vec::new();
    for g in groups {
        assert!(g["name"].is_string(), "a group without a name");
        for r in g["rules"].as_sequence().expect("a group has rules") {
            let name = r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned();
            let expr = r["expr"].as_str().expect("an alert has an expr").to_owned();
            assert_known(&name, &expr);
            assert!(
                r["annotations"]["summary"].is_string()
                    && r["annotations"]["description"].is_string(),
                "{name}: summary and description tell the operator what to do"
            );
            assert!(r["labels"]["severity"].is_string(), "{name}: no severity");
            let for_ = r["for"].as_str().unwrap_or("0m").to_owned();
            rules.push((name, expr, for_));
        }
    }
    let names: Vec<&str> = rules.iter().map(|r| r.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "alert names are not unique");

    let alert_on = |metric: &str| {
        rules
            .iter()
            .filter(|(_, expr, _)| metrics_in(expr).iter().any(|m| m == metric))
            .collect::<Vec<_>>()
    };
    let lag = alert_on(telemetry::LAG_SECONDS);
    assert!(
        lag.iter().any(|(_, _, f)| f == "5m"),
        "lag above the threshold must alert after 5m: {lag:?}"
    );
    assert!(!alert_on(telemetry::PG_SLOT_SAFE_WAL_BYTES).is_empty());
    let wal_status: Vec<_> = alert_on(telemetry::PG_SLOT_WAL_STATUS)
        .iter()
        .map(|r| r.1.clone())
        .collect();
    for code in ["== 2", "== 3"] {
        assert!(
            wal_status.iter().any(|e| e.contains(code)),
            "no alert for wal_status {code} (unreserved/lost): {wal_status:?}"
        );
    }
    for metric in [
        telemetry::MAPPING_HALTED,
        telemetry::DIRECTION_UP,
        telemetry::DEAD_LETTERS,
    ] {
        assert!(!alert_on(metric).is_empty(), "no alert on {metric}");
    }
}
