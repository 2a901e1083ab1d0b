//! What the dashboard asks of the store, in terms of the metrics folder's
//! batches: card figures, chart series (`dashboard_sql`), anomalies across
//! batches, feedback votes.

use std::collections::BTreeMap;

use crate::config::BatchSpec;
use crate::domain::Series;
use crate::jobs::rows::load_input;
use crate::store::{Anomaly, Store, StoreError, Vote};

/// `dashboard_sql`'s series by metric.
pub fn chart_series(spec: &BatchSpec, store: &Store) -> Result<BTreeMap<String, Series>, String> {
    load_input(spec, store, "dashboard_sql", "dashboard", None)
        .map(|input| input.series)
        .map_err(|e| crate::jobs::rows::JobError::of(spec)(e).to_string())
}

/// Anomalies of `batches`, newest first.
pub fn anomalies(
    store: &Store,
    batches: &[&BatchSpec],
    limit: usize,
    offset: usize,
) -> Result<Vec<Anomaly>, StoreError> {
    let pairs: Vec<(&str, &str)> = batches
        .iter()
        .map(|b| (b.table_key.as_str(), b.metric_batch.as_str()))
        .collect();
    store.anomalies(&pairs, limit, offset)
}

/// Store one vote on an anomaly of `spec`; returns the vote's new count, or
/// None when there is no such anomaly.
pub fn record_feedback(
    store: &mut Store,
    spec: &BatchSpec,
    metric: &str,
    timestamp_us: i64,
    vote: Vote,
) -> Result<Option<i64>, StoreError> {
    store.record_feedback(
        &spec.table_key,
        &spec.metric_batch,
        metric,
        timestamp_us,
        vote,
    )
}
