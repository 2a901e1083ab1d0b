//! What the dashboard asks of the store, in terms of the metrics folder's
//! batches: card figures, chart series (`dashboard_sql`), anomalies across
//! batches, feedback votes.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::charts::Window;
use crate::config::BatchSpec;
use crate::domain::Series;
use crate::jobs::rows::{series_within, SeriesLimits};
use crate::store::{Anomaly, Store, StoreError, TableKey, Vote};

/// What one page's charts may take: a page of a thousand charts is
/// already more than anyone reads, and every view runs the query again.
pub const DASHBOARD_LIMITS: SeriesLimits = SeriesLimits {
    caps: crate::store::ResultCaps {
        max_rows: None,
        max_bytes: Some(64 << 20),
        rows_key: "",
        bytes_key: "a page's charts",
    },
    max_metrics: 1_000,
};

/// The points per metric a time window's charts may hold: a month of
/// one-minute observations is 43,200, and a chart is a few hundred pixels
/// wide.
pub const TIME_WINDOW_POINTS: usize = 5_000;

/// `dashboard_sql`'s series by metric for the page's `window`. The template
/// is rendered here with Anomstack's run-time variables: `last_n`, the
/// points a chart shows, and for a time window `cutoff_time` too (its
/// start, UTC), with `last_n` as a cap. It runs within the batch's
/// `job_timeout_s`, as a job's SQL does: a page cannot hold a helper
/// longer than a job could.
pub fn chart_series(
    spec: &BatchSpec,
    store: &mut Store,
    window: Window,
    now_us: i64,
) -> Result<BTreeMap<String, Series>, String> {
    let sql =
        crate::config::render_at_use(spec, "dashboard_sql", &window_variables(window, now_us))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "batch {}: the batch has no dashboard_sql",
                    spec.metric_batch
                )
            })?;
    let batch = &spec.metric_batch;
    store
        .ensure_metrics_table(&spec.table_key)
        .map_err(|e| format!("batch {batch}: {e}"))?;
    let limit = std::time::Duration::from_secs_f64(spec.jobs.timeout_s);
    match store.with_time_limit(limit, |store| {
        series_within(store, spec, &sql, "dashboard", DASHBOARD_LIMITS)
    }) {
        (Ok(mut series), _) => {
            series.values_mut().for_each(Series::mark_alerts_at_drivers);
            Ok(series)
        }
        (Err(_), true) => Err(format!(
            "batch {batch}: dashboard_sql ran past job_timeout_s={} and was stopped",
            spec.jobs.timeout_s
        )),
        (Err(e), false) => Err(format!("batch {batch}: {e}")),
    }
}

/// How long a batch's chart series are reused: a page and the script's
/// requests for its later pages and small charts read one run of
/// `dashboard_sql`, not one each.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Series kept at once (batch and window pairs).
const CACHE_ENTRIES: usize = 8;

type Cached = (
    String,
    std::time::Instant,
    std::sync::Arc<BTreeMap<String, Series>>,
);

/// Recent [`chart_series`] results, by batch, window and the rendered
/// template (a reloaded folder's new `dashboard_sql` is a new key).
#[derive(Default)]
pub struct SeriesCache {
    entries: std::sync::Mutex<Vec<Cached>>,
}

impl SeriesCache {
    /// The series of `spec` for `window`: a run of `dashboard_sql` at most
    /// [`CACHE_TTL`] old, else a fresh one.
    pub fn get(
        &self,
        spec: &BatchSpec,
        store: &mut Store,
        window: Window,
        now_us: i64,
    ) -> Result<std::sync::Arc<BTreeMap<String, Series>>, String> {
        // The batch's whole configuration is in the key: a reload that
        // changes it (its dashboard_sql, its table) reads afresh.
        let config = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for (k, v) in &spec.values {
                k.hash(&mut h);
                v.to_string().hash(&mut h);
            }
            h.finish()
        };
        let key = format!("{}\0{window:?}\0{config:x}", spec.metric_batch);
        let fresh = |e: &&Cached| e.0 == key && e.1.elapsed() < CACHE_TTL;
        if let Some(hit) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(fresh)
        {
            return Ok(hit.2.clone());
        }
        let series = std::sync::Arc::new(chart_series(spec, store, window, now_us)?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| e.0 != key && e.1.elapsed() < CACHE_TTL);
        if entries.len() >= CACHE_ENTRIES {
            entries.remove(0);
        }
        entries.push((key, std::time::Instant::now(), series.clone()));
        Ok(series)
    }
}

/// `last_n` and, for a time window, `cutoff_time`.
fn window_variables(window: Window, now_us: i64) -> Vec<(&'static str, Value)> {
    match window {
        Window::LastPoints(n) => vec![("last_n", Value::from(n as u64))],
        Window::LastHours(h) => {
            let from = now_us.saturating_sub(h.saturating_mul(3_600_000_000));
            let cutoff = chrono::DateTime::from_timestamp_micros(from)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            vec![
                ("last_n", Value::from(TIME_WINDOW_POINTS as u64)),
                ("cutoff_time", Value::String(cutoff)),
            ]
        }
    }
}

/// Anomalies of `batches`, newest first.
pub fn anomalies(
    store: &Store,
    batches: &[&BatchSpec],
    limit: usize,
    offset: usize,
) -> Result<Vec<Anomaly>, StoreError> {
    let pairs: Vec<(&TableKey, &str)> = batches
        .iter()
        .map(|b| (&b.table_key, b.metric_batch.as_str()))
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
