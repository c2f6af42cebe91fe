//! `[verify] interval`: the daemon runs `tandem verify` on every mapping, never with
//! `--repair`, and exports the last result as metrics (`tandem_verify_*`) and as the
//! `verify` field of `/status`.
//!
//! It is the same comparison as the command (chunk checksums in the databases, re-check of
//! differing keys after a settle so changes in flight are not reported), on connections of
//! its own. A run that fails — an endpoint down — is reported as such and retried at the
//! next interval; it never touches the directions. The first run starts one interval after
//! start-up, so the initial sync is not reported as drift.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tandem_core::telemetry::{self, VerifyBoard, VerifyMappingStatus, VerifyStatus};
use tokio::sync::watch;
use tracing::{info, warn};

use super::SharedConfig;
use crate::cli::verify::{self, Format, Options};

/// Differing keys listed per mapping in `/status` (the metric counts them all).
const LISTED_KEYS: usize = 20;

pub async fn run(cfg: SharedConfig, board: VerifyBoard, mut stop: watch::Receiver<bool>) {
    let Some(interval) = cfg.verify.interval() else {
        return;
    };
    board.set(VerifyStatus {
        interval_seconds: interval.as_secs(),
        ..VerifyStatus::default()
    });
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let opts = Options {
            mapping: None,
            repair: false,
            format: Format::Json,
            prefer: None,
            settle: verify::DEFAULT_SETTLE.to_owned(),
        };
        let result = tokio::select! {
            r = verify::verify(&cfg, &opts) => r,
            _ = stop.changed() => return,
        };
        let status = publish(result, interval, started.elapsed());
        board.set(status);
    }
}

/// Metrics and status of one run.
fn publish(
    result: Result<verify::Report, String>,
    interval: Duration,
    took: Duration,
) -> VerifyStatus {
    let now = chrono::Utc::now();
    metrics::gauge!(telemetry::VERIFY_LAST_RUN).set(now.timestamp() as f64);
    metrics::gauge!(telemetry::VERIFY_DURATION).set(took.as_secs_f64());
    let mut status = VerifyStatus {
        interval_seconds: interval.as_secs(),
        last_run: Some(now),
        seconds: took.as_secs_f64(),
        ..VerifyStatus::default()
    };
    let report = match result {
        Ok(r) => r,
        Err(why) => {
            warn!(error = %why, "verify could not run");
            status.equal = Some(false);
            status.error = Some(why);
            return status;
        }
    };
    let mut mappings = BTreeMap::new();
    for m in &report.mappings {
        let failed = if m.error.is_some() { 1.0 } else { 0.0 };
        metrics::gauge!(telemetry::VERIFY_FAILED, "mapping" => m.mapping.clone()).set(failed);
        metrics::gauge!(telemetry::VERIFY_DIFFERENCES, "mapping" => m.mapping.clone())
            .set(m.differing_keys as f64);
        let differences = m
            .differences
            .iter()
            .take(LISTED_KEYS)
            .map(|d| d.summary())
            .collect();
        mappings.insert(
            m.mapping.clone(),
            VerifyMappingStatus {
                differing_keys: m.differing_keys,
                differences,
                error: m.error.clone(),
            },
        );
        info!(mapping = %m.mapping, differing_keys = m.differing_keys, error = m.error.as_deref(), "verify run");
    }
    status.equal = Some(report.equal);
    status.mappings = mappings;
    status
}
