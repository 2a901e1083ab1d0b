//! The dashboard's handlers, one plain async function per page. Database
//! work runs on the blocking pool with a connection of its own.

use std::collections::BTreeMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::chart_data;
use super::charts::{self, Window};
use super::data;
use super::error::{ApiError, PageError, WebError};
use super::{shown_batch, with_store, Shared};
use crate::alerts::message::format_time;
use crate::config::BatchSpec;
use crate::domain::{JudgementFacts, MetricType};
use crate::store::{RunFilter, Vote};

const PAGE_SIZE: usize = 50;

/// Render a template with the values every page has.
fn render(s: &Shared, name: &str, page: &str, ctx: minijinja::Value) -> Response {
    super::render::page(s.token.is_some(), name, page, ctx)
}

/// The batches the pages show (not those with `disable_dashboard`).
fn shown(s: &Shared) -> Vec<BatchSpec> {
    s.folder().dashboard_batches().cloned().collect()
}

pub async fn home(State(s): State<Shared>) -> Result<Response, PageError> {
    let batches = shown(&s);
    let folder = s.folder();
    let errors: Vec<String> = folder.errors.iter().map(|e| e.to_string()).collect();
    let dir = folder.dir.display().to_string();
    let result = with_store(&s, move |store| {
        let mut figures = BTreeMap::new();
        let tables: std::collections::BTreeSet<&crate::config::TableKey> = batches.iter().map(|b| &b.table_key).collect();
        for t in tables {
            figures.extend(store.card_figures(t)?);
        }
        let ingests = store.last_ingests()?;
        let mut cards: Vec<_> = batches
            .iter()
            .map(|b| {
                let f = figures.get(&b.metric_batch).cloned().unwrap_or_default();
                let run = ingests.get(&b.metric_batch);
                let last = run.map(|r| r.1).or(f.last_metric_us);
                (
                    f.alerts_24h,
                    b.metric_batch.clone(),
                    context! {
                        batch => b.metric_batch.clone(),
                        metrics => f.metrics,
                        alerts => f.alerts_24h,
                        mean_score => f.mean_score_24h.map(charts::short).unwrap_or_else(|| "n/a".into()),
                        last_ingest => last.map(format_time).unwrap_or_else(|| "never".into()),
                        last_status => run.map(|r| r.0.clone()),
                    },
                )
            })
            .collect();
        cards.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(cards.into_iter().map(|c| c.2).collect::<Vec<_>>())
    })
    .await?;
    Ok(render(
        &s,
        "home.html",
        "home",
        context! { cards => result, errors => errors, folder => dir },
    ))
}

#[derive(Debug, Deserialize, Default)]
pub struct BatchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    window: String,
    page: Option<usize>,
}

/// Judgements the batch page lists under its charts.
const BATCH_ANOMALIES: usize = 20;

pub async fn batch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<BatchQuery>,
) -> Result<Response, PageError> {
    let spec = shown_batch(&s, &name)?;
    let window_text = if q.window.is_empty() {
        "100".to_string()
    } else {
        q.window.clone()
    };
    let window = Window::parse(&window_text);
    let page = q.page.unwrap_or(1).max(1);
    // Under `sandstack run`: buttons to run each job now and to pause.
    let control = s.control.as_ref().map(|c| {
        let jobs: Vec<&str> = spec.scheduled_jobs().map(|(j, _)| j.name()).collect();
        let paused = c
            .paused
            .read()
            .is_ok_and(|p| p.contains(&spec.metric_batch));
        context! { jobs => jobs, paused => paused }
    });
    let threshold = spec.alert.threshold;
    let series_query = chart_data::SeriesQuery {
        q: q.q.clone(),
        window: window_text.clone(),
        page: Some(page),
        metrics: None,
    };
    let state = s.clone();
    let (charts, first_page, anomalies) = with_store(&s, move |store| {
        let now = chrono::Utc::now().timestamp_micros();
        let series = state.series.get(&spec, store, window, now)?;
        // One page of charts: a batch may have hundreds of metrics. The
        // page carries this page's chart data; the browser asks for the
        // next ones (`chart_data`).
        // The judgements read once: the page's marks and its anomaly list.
        let judged = chart_data::judgements(&spec, store)?;
        let first_page = chart_data::page_from(&spec, &series, &judged, &series_query, now)?;
        let charts = first_page
            .metrics
            .iter()
            .filter_map(|m| series.get(&m.metric).map(|ser| (&m.metric, ser)))
            .filter_map(|(m, ser)| charts::chart(m, ser, window, now, threshold))
            .collect::<Vec<_>>();
        let anomalies: Vec<_> = judged.into_iter().take(BATCH_ANOMALIES).collect();
        Ok((charts, first_page, anomalies))
    })
    .await?;
    let total = first_page.total;
    let windows: Vec<_> = Window::CHOICES
        .iter()
        .map(|(v, l)| context! { value => *v, label => *l })
        .collect();
    let more = page.saturating_mul(chart_data::PER_PAGE) < total;
    Ok(render(
        &s,
        "batch.html",
        "batch",
        context! {
            batch => name, charts => minijinja::value::Serde(&charts), q => q.q, window => window_text, windows => windows,
            w => charts::WIDTH, h => charts::HEIGHT, control => control,
            page => page, more => more, total => total, anomalies => anomaly_rows(&anomalies),
            chart_data => crate::escape::script_json(&first_page).unwrap_or_else(|_| "{}".into()),
        },
    ))
}

/// Judgements as the anomaly lists show them.
fn anomaly_rows(rows: &[crate::store::Anomaly]) -> Vec<minijinja::Value> {
    rows.iter()
        .map(|a| {
            let meta: Option<serde_json::Value> = a
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok());
            let facts = JudgementFacts::read(a.kind, meta.as_ref());
            let num = |v: Option<f64>| v.map(charts::short).unwrap_or_default();
            context! {
                batch => a.batch.clone(), metric => a.metric.clone(), timestamp_us => a.timestamp_us,
                time => format_time(a.timestamp_us),
                kind => kind_label(a.kind),
                value => num(facts.value),
                score => num(facts.score),
                reason => facts.reason.unwrap_or_default(),
                up => a.up, down => a.down,
            }
        })
        .collect()
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    page: Option<usize>,
    #[serde(default)]
    batch: String,
    failed: Option<String>,
}

/// The first [`PAGE_SIZE`] of `rows` (fetched one longer), and whether
/// there are more.
fn one_page<T>(mut rows: Vec<T>) -> (Vec<T>, bool) {
    let more = rows.len() > PAGE_SIZE;
    rows.truncate(PAGE_SIZE);
    (rows, more)
}

pub async fn anomalies(
    State(s): State<Shared>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let page = q.page.unwrap_or(1).max(1);
    let batches = shown(&s);
    let result = with_store(&s, move |store| {
        let refs: Vec<&BatchSpec> = batches.iter().collect();
        Ok(data::anomalies(
            store,
            &refs,
            PAGE_SIZE + 1,
            (page - 1) * PAGE_SIZE,
        )?)
    })
    .await?;
    let (rows, more) = one_page(result);
    let list = anomaly_rows(&rows);
    Ok(render(
        &s,
        "anomalies.html",
        "anomalies",
        context! { anomalies => list, page => page, more => more },
    ))
}

pub async fn runs(
    State(s): State<Shared>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let page = q.page.unwrap_or(1).max(1);
    let failed = q.failed.is_some_and(|f| !f.is_empty() && f != "0");
    let batch = q.batch.trim().to_string();
    let filter = RunFilter {
        run_id: None,
        batch: (!batch.is_empty()).then(|| batch.clone()),
        job: None,
        failed_only: failed,
        limit: PAGE_SIZE + 1,
        offset: (page - 1) * PAGE_SIZE,
    };
    let (rows, workers, fleet) = with_store(&s, move |store| {
        let runs = store.list_runs(&filter)?;
        let workers = store.workers(WORKERS_SHOWN)?;
        Ok((runs, workers, store.shared()))
    })
    .await?;
    let now = chrono::Utc::now().timestamp_micros();
    let workers: Vec<_> = workers
        .iter()
        .map(|w| {
            let state = match w.stopped_us {
                Some(_) => "stopped".to_string(),
                None => format!(
                    "heartbeat {} s ago",
                    (now - w.heartbeat_us).max(0) / 1_000_000
                ),
            };
            context! {
                worker => w.worker.clone(), host => w.host.clone(), pid => w.pid,
                started => format_time(w.started_us), heartbeat => format_time(w.heartbeat_us),
                running => w.running, state => state,
            }
        })
        .collect();
    let (rows, more) = one_page(rows);
    let list: Vec<_> = rows
        .iter()
        .map(|r| {
            context! {
                run_id => r.run_id, batch => r.batch.clone(), job => r.job.clone(), status => r.status.as_str(),
                started => format_time(r.started_us), rows => r.rows,
                wall_ms => format!("{:.1}", r.wall_ms),
                late_ms => format!("{:.0}", (r.started_us - r.scheduled_us) as f64 / 1e3),
                error => r.error.clone(), cassette => r.cassette.is_some(),
                log => r.log.clone(), attempt => r.attempt,
                worker => r.worker.clone().unwrap_or_default(),
            }
        })
        .collect();
    Ok(render(
        &s,
        "runs.html",
        "runs",
        context! {
            runs => list, page => page, more => more, batch => batch, failed => failed,
            workers => workers, fleet => fleet,
        },
    ))
}

/// The workers the runs page lists: those heard from in the last hour.
pub(crate) const WORKERS_SHOWN: std::time::Duration = std::time::Duration::from_secs(3600);

/// A recorded run's cassette, only from the cassette folder.
pub async fn cassette(State(s): State<Shared>, Path(id): Path<i64>) -> Result<Response, PageError> {
    let dir = s.cassette_dir.clone();
    let result = with_store(&s, move |store| {
        let run = store.run_by_id(id)?;
        let Some(path) = run.and_then(|r| r.cassette) else {
            return Ok(None);
        };
        let (Ok(real), Ok(root)) = (std::fs::canonicalize(&path), std::fs::canonicalize(&dir))
        else {
            return Ok(None);
        };
        if !real.starts_with(&root) {
            return Ok(None);
        }
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        std::fs::read(&real)
            .map(|b| Some((name, b)))
            .map_err(|e| WebError::Internal(format!("cannot read the cassette of run {id}: {e}")))
    })
    .await?;
    match result {
        Some((name, bytes)) => Ok((
            [
                (header::CONTENT_TYPE, "application/yaml".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"run-{id}-{}\"",
                        crate::file_names::file_stem(&name)
                    ),
                ),
            ],
            bytes,
        )
            .into_response()),
        None => Err(WebError::NotFound(format!("run {id} has no cassette")).into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct FeedbackForm {
    batch: String,
    metric: String,
    timestamp_us: i64,
    vote: String,
    #[serde(default)]
    token: String,
}

pub async fn feedback(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<FeedbackForm>,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let fail = |error: WebError| {
        if wants_json {
            ApiError(error).into_response()
        } else {
            PageError(error).into_response()
        }
    };
    if !s.allows(&headers, &f.token) {
        return fail(WebError::Unauthorized(
            "feedback needs the dashboard token (SANDSTACK_DASHBOARD_TOKEN): enter it at the top of the page".into(),
        ));
    }
    let vote = match f.vote.as_str() {
        "up" => Vote::Up,
        "down" => Vote::Down,
        other => {
            return fail(WebError::BadRequest(format!(
                "vote must be up or down, not {other}"
            )))
        }
    };
    let Some(spec) = s.folder().batch(&f.batch).cloned() else {
        return fail(WebError::NotFound(format!("no batch named {}", f.batch)));
    };
    let (metric, ts) = (f.metric.clone(), f.timestamp_us);
    let result = with_store(&s, move |store| {
        Ok(data::record_feedback(store, &spec, &metric, ts, vote)?)
    })
    .await;
    match result {
        Ok(Some(count)) if wants_json => {
            axum::Json(serde_json::json!({ "count": count })).into_response()
        }
        Ok(Some(_)) => Redirect::to("/anomalies").into_response(),
        Ok(None) => fail(WebError::NotFound(format!(
            "no anomaly of {} / {} at {}",
            f.batch,
            f.metric,
            format_time(f.timestamp_us)
        ))),
        Err(e) => fail(e),
    }
}

pub async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/app.css"),
    )
}

pub async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/app.js"),
    )
}

/// The batch page's charts (uPlot, below).
pub async fn charts_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/charts.js"),
    )
}

/// The chosen theme, applied before the page is drawn.
pub async fn theme_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/theme.js"),
    )
}

/// uPlot, the charts' library, served from the binary (`static/vendor/uplot/`).
pub async fn uplot_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("static/vendor/uplot/uPlot.iife.min.js"),
    )
}

pub async fn uplot_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("static/vendor/uplot/uPlot.min.css"),
    )
}

/// What the anomalies page calls each kind of judgement.
fn kind_label(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Alert => "anomaly",
        MetricType::ThresholdAlert => "threshold",
        MetricType::LlmAlert => "LLM",
        other => other.as_str(),
    }
}
