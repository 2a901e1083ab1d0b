//! The batch page's charts as JSON for the browser's charts
//! (`/api/batches/{batch}/series`): one page of metrics at a time (a batch
//! may have hundreds), each with its points, anomaly scores and every
//! judgement on it (alert, threshold, change, LLM) with what it says. The
//! page itself, and its SVG charts for a browser without scripts, come from
//! `pages::batch`; both cut the same window and page.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::charts::Window;
use super::error::{ApiError, WebError};
use super::{data, with_store, Shared};
use crate::config::BatchSpec;
use crate::domain::{JudgementFacts, MetricType, Series};

/// Charts per page: what a screen or two shows at once.
pub const PER_PAGE: usize = 48;
/// Judgements read for one page's marks (newest first).
const MAX_MARKS: usize = 20_000;

#[derive(Debug, Deserialize, Default)]
pub struct SeriesQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub window: String,
    pub page: Option<usize>,
    /// Metrics by their exact names, one a line (the anomaly list's small
    /// charts; names hold no control characters).
    pub metrics: Option<String>,
}

/// One judgement on a chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    /// Seconds since the epoch (the charts' time axis).
    pub t: f64,
    /// `alert`, `threshold`, `change` or `llm`.
    pub kind: &'static str,
    /// What it says: an LLM's reason, a threshold's bound, a score.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricSeries {
    pub metric: String,
    pub t: Vec<f64>,
    pub v: Vec<Option<f64>>,
    pub s: Vec<Option<f64>>,
    pub marks: Vec<Mark>,
}

#[derive(Debug, Serialize)]
pub struct SeriesPage {
    pub batch: String,
    pub window: String,
    pub threshold: f64,
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub more: bool,
    pub metrics: Vec<MetricSeries>,
}

/// The names on page `page` (from 1) of the metrics matching `q`, and how
/// many match.
pub fn page_of<'a>(
    names: impl Iterator<Item = &'a String>,
    q: &str,
    page: usize,
) -> (Vec<String>, usize) {
    let needle = q.to_lowercase();
    let all: Vec<&String> = names
        .filter(|m| needle.is_empty() || m.to_lowercase().contains(&needle))
        .collect();
    let start = (page.max(1) - 1).saturating_mul(PER_PAGE);
    let shown = all
        .iter()
        .skip(start)
        .take(PER_PAGE)
        .map(|m| m.to_string())
        .collect();
    (shown, all.len())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// A metric's points in the window, with the alert and change flags
/// `dashboard_sql` returned as marks.
fn metric_series(metric: &str, s: &Series, window: Window, now_us: i64) -> MetricSeries {
    let n = s.values.len();
    let start = match window {
        Window::LastPoints(k) => n.saturating_sub(k),
        Window::LastHours(h) => {
            let cut = now_us.saturating_sub(h.saturating_mul(3_600_000_000));
            s.timestamps_us.partition_point(|t| *t < cut)
        }
    };
    let col = |name: &str| s.extra.get(name);
    let score = col("metric_score");
    let mut out = MetricSeries {
        metric: metric.to_string(),
        t: Vec::with_capacity(n - start),
        v: Vec::with_capacity(n - start),
        s: Vec::with_capacity(n - start),
        marks: Vec::new(),
    };
    for i in start..n {
        let t = seconds(s.timestamps_us[i]);
        out.t.push(t);
        out.v.push(finite(s.values[i]));
        out.s.push(score.and_then(|c| finite(c[i])));
        for (name, kind) in [("metric_alert", "alert"), ("metric_change", "change")] {
            if col(name).is_some_and(|c| c[i] > 0.0) {
                let text = match (kind, score.and_then(|c| finite(c[i]))) {
                    ("alert", Some(sc)) => format!("anomaly score {}", super::charts::short(sc)),
                    _ => String::new(),
                };
                out.marks.push(Mark { t, kind, text });
            }
        }
    }
    out
}

/// What a stored judgement says, for its mark's hover.
fn mark_text(kind: MetricType, facts: &JudgementFacts) -> String {
    let num = |v: Option<f64>| v.map(super::charts::short);
    match kind {
        MetricType::LlmAlert => match (&facts.reason, &facts.model) {
            (Some(r), Some(m)) => format!("{r} ({m})"),
            (Some(r), None) => r.clone(),
            _ => "flagged by the chat model".into(),
        },
        MetricType::ThresholdAlert => format!(
            "{} threshold {} crossed",
            facts.bound.as_deref().unwrap_or("a"),
            num(facts.threshold).unwrap_or_default()
        ),
        _ => num(facts.score)
            .map(|s| format!("score {s}"))
            .unwrap_or_default(),
    }
}

/// The window `q` asks for, as written (100 points when unset) and read.
fn window_of(q: &SeriesQuery) -> (&str, Window) {
    let text = if q.window.is_empty() {
        "100"
    } else {
        q.window.as_str()
    };
    (text, Window::parse(text))
}

/// One page of the batch's charts (the series from `cache`, or read).
pub fn series_page(
    spec: &BatchSpec,
    store: &mut crate::store::Store,
    cache: &data::SeriesCache,
    q: &SeriesQuery,
    now_us: i64,
) -> Result<SeriesPage, WebError> {
    let (_, window) = window_of(q);
    let all = cache
        .get(spec, store, window, now_us)
        .map_err(WebError::Internal)?;
    let judged = judgements(spec, store)?;
    page_from(spec, &all, &judged, q, now_us)
}

/// The batch's stored judgements a page marks, newest first (the batch
/// page lists the newest of them too).
pub fn judgements(
    spec: &BatchSpec,
    store: &crate::store::Store,
) -> Result<Vec<crate::store::Anomaly>, WebError> {
    Ok(data::anomalies(store, &[spec], MAX_MARKS, 0)?)
}

/// A page of `all` (the batch's `dashboard_sql` series for `q`'s window,
/// already read: the batch page passes its own, so its first page's data
/// comes with it and `dashboard_sql` runs once), its marks from `judged`
/// ([`judgements`]).
pub fn page_from(
    spec: &BatchSpec,
    all: &BTreeMap<String, Series>,
    judged: &[crate::store::Anomaly],
    q: &SeriesQuery,
    now_us: i64,
) -> Result<SeriesPage, WebError> {
    let (window_text, window) = window_of(q);
    let page = q.page.unwrap_or(1).max(1);
    let (names, total) = match &q.metrics {
        Some(list) => {
            let names: Vec<String> = list
                .lines()
                .filter(|m| all.contains_key(*m))
                .take(PER_PAGE)
                .map(str::to_string)
                .collect();
            let n = names.len();
            (names, n)
        }
        None => page_of(all.keys(), &q.q, page),
    };
    let mut metrics: Vec<MetricSeries> = names
        .iter()
        .filter_map(|m| all.get(m).map(|s| metric_series(m, s, window, now_us)))
        .collect();
    // Threshold and LLM alerts are not in dashboard_sql's columns: their
    // stored rows, with what they say, on the metrics of this page.
    let wanted: BTreeMap<&str, usize> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| (m.metric.as_str(), i))
        .collect();
    let mut extra: Vec<(usize, Mark)> = Vec::new();
    for a in judged {
        if !matches!(a.kind, MetricType::ThresholdAlert | MetricType::LlmAlert) {
            continue;
        }
        let Some(&i) = wanted.get(a.metric.as_str()) else {
            continue;
        };
        let t = seconds(a.timestamp_us);
        if metrics[i].t.first().is_none_or(|first| t < *first) {
            continue;
        }
        let meta: Option<serde_json::Value> = a
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok());
        let facts = JudgementFacts::read(a.kind, meta.as_ref());
        let kind = if a.kind == MetricType::LlmAlert {
            "llm"
        } else {
            "threshold"
        };
        extra.push((
            i,
            Mark {
                t,
                kind,
                text: mark_text(a.kind, &facts),
            },
        ));
    }
    for (i, m) in extra {
        metrics[i].marks.push(m);
    }
    Ok(SeriesPage {
        batch: spec.metric_batch.clone(),
        window: window_text.to_string(),
        threshold: spec.alert.threshold,
        total,
        page,
        per_page: PER_PAGE,
        more: q.metrics.is_none() && page.saturating_mul(PER_PAGE) < total,
        metrics,
    })
}

pub async fn batch_series(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Response, ApiError> {
    let spec = super::shown_batch(&s, &name)?;
    let state = s.clone();
    let page = with_store(&s, move |store| {
        series_page(
            &spec,
            store,
            &state.series,
            &q,
            chrono::Utc::now().timestamp_micros(),
        )
    })
    .await?;
    Ok(Json(page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cut_the_filtered_names() {
        let names: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
        let (p1, total) = page_of(names.iter(), "", 1);
        assert_eq!((p1.len(), total), (PER_PAGE, 100));
        let (p3, _) = page_of(names.iter(), "", 3);
        assert_eq!(p3.len(), 100 - 2 * PER_PAGE);
        assert_eq!(p3[0], "m096");
        let (f, total) = page_of(names.iter(), "M05", 1);
        assert_eq!((f.len(), total), (10, 10));
        assert!(page_of(names.iter(), "", 99).0.is_empty());
    }

    #[test]
    fn a_series_keeps_its_window_and_marks_its_flags() {
        let hour = 3_600_000_000i64;
        let mut extra = BTreeMap::new();
        extra.insert(
            "metric_score".to_string(),
            (0..10).map(|i| i as f64 / 10.0).collect(),
        );
        extra.insert(
            "metric_alert".to_string(),
            (0..10).map(|i| if i == 8 { 1.0 } else { 0.0 }).collect(),
        );
        let s = Series {
            timestamps_us: (0..10).map(|i| i * hour).collect(),
            values: (0..10)
                .map(|i| if i == 5 { f64::NAN } else { i as f64 })
                .collect(),
            extra,
        };
        let m = metric_series("m", &s, Window::LastPoints(6), 10 * hour);
        assert_eq!(m.t.len(), 6);
        assert_eq!(m.v[1], None, "NaN is a gap");
        assert_eq!(m.marks.len(), 1);
        assert_eq!(m.marks[0].kind, "alert");
        assert_eq!(m.marks[0].t, 8.0 * 3600.0);
        assert_eq!(m.marks[0].text, "anomaly score 0.8");
    }
}
