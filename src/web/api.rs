//! The control API: JSON on the dashboard's listener, for the command line
//! (which uses it whenever a running daemon holds the database) and for
//! scripts. Reads are open as the pages are; anything that changes state
//! (run a job now, pause, resume, reload) needs the dashboard token when
//! one is set. Running jobs, pausing and reloading need `sandstack run`;
//! `sandstack dashboard` alone answers them 503.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::error::{ApiError, WebError};
use super::{with_store, Shared};
use crate::config::{Choice, Job, MetricsFolder};
use crate::scheduler::{Paused, RunNow};
use crate::store::{RunFilter, RunRecord};

/// What the API needs of a running scheduler.
#[derive(Clone)]
pub struct DaemonControl {
    pub run_now: mpsc::Sender<RunNow>,
    pub paused: Paused,
    /// Where a reloaded folder goes (as from the folder watch).
    pub reload: mpsc::Sender<MetricsFolder>,
}

fn unauthorized() -> ApiError {
    WebError::Unauthorized(
        "this needs the dashboard token: send SANDSTACK_DASHBOARD_TOKEN as `Authorization: Bearer TOKEN`".into(),
    )
    .into()
}

fn no_daemon() -> ApiError {
    WebError::Unavailable(
        "this dashboard is not part of `sandstack run`: there is no scheduler to run, pause or reload".into(),
    )
    .into()
}

fn shutting_down() -> ApiError {
    WebError::Unavailable("the scheduler is shutting down".into()).into()
}

/// 429, with when to ask again.
fn too_many(message: String, wait: Option<std::time::Duration>) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({ "error": message })),
    )
        .into_response();
    if let Some(v) = wait.and_then(|w| (w.as_secs() + 1).to_string().parse().ok()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

/// Why an llmalert run asked for now would spend a second budget in its
/// schedule period (it has run since the period began), or None. The
/// period is the time since the schedule's last tick.
async fn llmalert_period_spent(
    s: &Shared,
    spec: &crate::config::BatchSpec,
) -> Result<Option<String>, WebError> {
    let Some(schedule) = spec.schedules.get(&Job::Llmalert) else {
        return Ok(None);
    };
    let now = chrono::Utc::now();
    let period_start = last_tick(&schedule.cron.schedule, now);
    let filter = RunFilter {
        run_id: None,
        batch: Some(spec.metric_batch.clone()),
        job: Some(Job::Llmalert.name().to_string()),
        failed_only: false,
        limit: 1,
        offset: 0,
    };
    let last = with_store(s, move |st| Ok(st.list_runs(&filter)?)).await?;
    Ok(last
        .first()
        .filter(|r| r.started_us >= period_start.timestamp_micros())
        .map(|r| {
            format!(
                "batch {}: llmalert already ran in this period of its schedule (`{}`, since {}; run {}), \
                 and each period may spend llmalert_max_calls once; ask again after its next tick",
                spec.metric_batch,
                schedule.cron.text,
                period_start.format("%Y-%m-%d %H:%M:%S UTC"),
                r.run_id
            )
        }))
}

/// The schedule's newest tick at or before `now` (a year back at most).
fn last_tick(
    schedule: &cron::Schedule,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    for back in [1, 24, 24 * 35, 24 * 400] {
        let from = now - chrono::Duration::hours(back);
        if let Some(t) = schedule.after(&from).take_while(|t| *t <= now).last() {
            return t;
        }
    }
    now - chrono::Duration::days(400)
}

#[derive(Debug, Deserialize, Serialize, Default)]
pub struct RunsQuery {
    pub batch: Option<String>,
    pub job: Option<String>,
    #[serde(default)]
    pub failed: bool,
    pub limit: Option<usize>,
}

/// `GET /api/runs`: the run history, newest first.
pub async fn runs(
    State(s): State<Shared>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, ApiError> {
    let filter = RunFilter {
        run_id: None,
        batch: q.batch,
        job: q.job,
        failed_only: q.failed,
        limit: q.limit.unwrap_or(50).min(10_000),
        offset: 0,
    };
    let runs = with_store(&s, move |st| Ok(st.list_runs(&filter)?)).await?;
    Ok(Json(runs).into_response())
}

/// `GET /api/workers`: the fleet's workers heard from in the last hour
/// (none when the store is not shared).
pub async fn workers(State(s): State<Shared>) -> Result<Response, ApiError> {
    let window = super::pages::WORKERS_SHOWN;
    let w = with_store(&s, move |st| Ok(st.workers(window)?)).await?;
    Ok(Json(w).into_response())
}

/// `GET /api/runs/{id}`: one run, its log included.
pub async fn run(State(s): State<Shared>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    match with_store(&s, move |st| Ok(st.run_by_id(id)?)).await? {
        Some(run) => Ok(Json(run).into_response()),
        None => Err(WebError::NotFound(format!("no run {id} (old runs are pruned)")).into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct SummaryQuery {
    pub batch: Option<String>,
}

/// The summary as the command line prints it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SummaryText {
    pub rows: usize,
    pub table: String,
}

/// `GET /api/summary`: rows and timestamps per batch, metric and type.
pub async fn summary(
    State(s): State<Shared>,
    Query(q): Query<SummaryQuery>,
) -> Result<Response, ApiError> {
    let folder = s.folder();
    if let Some(b) = q.batch.as_deref().filter(|b| folder.batch(b).is_none()) {
        return Err(WebError::NotFound(format!("no batch named {b}")).into());
    }
    let text = with_store(&s, move |st| {
        let batches: Vec<_> = match &q.batch {
            Some(b) => folder.batch(b).into_iter().collect(),
            None => folder.enabled_batches().collect(),
        };
        let out = crate::jobs::maintenance::summary(batches.into_iter(), st)?;
        // The batch's SQL results, each cell one line, as the CLI prints them.
        let table = crate::escape::table(&out)
            .map_err(|e| WebError::Internal(format!("cannot format the summary: {e}")))?;
        Ok(SummaryText {
            rows: out.iter().map(|b| b.num_rows()).sum(),
            table,
        })
    })
    .await?;
    Ok(Json(text).into_response())
}

/// One batch as the API lists it.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchState {
    pub batch: String,
    pub enabled: bool,
    pub paused: bool,
    /// Each scheduled job: its cron and RUNNING or STOPPED.
    pub schedules: BTreeMap<String, String>,
}

/// `GET /api/batches`: every batch with its schedules and whether it is
/// paused.
pub async fn batches(State(s): State<Shared>) -> Response {
    let paused = s.control.as_ref().map(|c| c.paused.clone());
    let folder = s.folder();
    let list: Vec<BatchState> = folder
        .batches
        .iter()
        .map(|b| BatchState {
            batch: b.metric_batch.clone(),
            enabled: !b.disable_batch,
            paused: paused
                .as_ref()
                .and_then(|p| p.read().ok().map(|p| p.contains(&b.metric_batch)))
                .unwrap_or(false),
            schedules: b
                .scheduled_jobs()
                .map(|(j, sch)| {
                    (
                        j.name().to_string(),
                        format!("{} {}", sch.cron.text, sch.status.name()),
                    )
                })
                .collect(),
        })
        .collect();
    Json(list).into_response()
}

/// The token a page's form sends (without its script, which sends it as
/// `Authorization: Bearer`).
fn form_token(body: &str) -> String {
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `POST /api/batches/{batch}/pause` and `/resume`.
pub async fn pause(
    s: State<Shared>,
    h: HeaderMap,
    b: Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    set_paused(s, h, b, &body, true).await
}

pub async fn resume(
    s: State<Shared>,
    h: HeaderMap,
    b: Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    set_paused(s, h, b, &body, false).await
}

async fn set_paused(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(batch): Path<String>,
    body: &str,
    paused: bool,
) -> Result<Response, ApiError> {
    if !s.allows(&headers, &form_token(body)) {
        return Err(unauthorized());
    }
    let Some(control) = s.control.clone() else {
        return Err(no_daemon());
    };
    if s.folder().batch(&batch).is_none() {
        return Err(WebError::NotFound(format!("no batch named {batch}")).into());
    }
    let name = batch.clone();
    with_store(&s, move |st| Ok(st.set_paused(&name, paused)?)).await?;
    if let Ok(mut set) = control.paused.write() {
        if paused {
            set.insert(batch.clone());
        } else {
            set.remove(&batch);
        }
    }
    tracing::info!(batch = %batch, paused, "schedules paused or resumed");
    Ok(Json(json!({ "batch": batch, "paused": paused })).into_response())
}

/// `POST /api/batches/{batch}/jobs/{job}/run`: run it now and answer
/// with its run, once it has ended.
pub async fn run_job(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((batch, job)): Path<(String, String)>,
    body: String,
) -> Result<Response, ApiError> {
    if !s.allows(&headers, &form_token(&body)) {
        return Err(unauthorized());
    }
    let Some(control) = s.control.clone() else {
        return Err(no_daemon());
    };
    let Some(job) = Job::ALL.into_iter().find(|j| j.name() == job) else {
        let names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
        return Err(WebError::NotFound(format!(
            "no job named {job}: use one of {}",
            names.join(", ")
        ))
        .into());
    };
    let Some(spec) = s.folder().batch(&batch).cloned() else {
        return Err(WebError::NotFound(format!("no batch named {batch}")).into());
    };
    if job == Job::Llmalert {
        if let Some(why) = llmalert_period_spent(&s, &spec).await? {
            return Ok(too_many(why, None));
        }
    }
    if let Err(wait) = s.limits.take_run_now(&batch, std::time::Instant::now()) {
        return Ok(too_many(
            format!(
                "batch {batch}: at most {} runs may be asked for at once, then one every {} s; ask again in {} s",
                super::limits::RUN_NOW_BURST,
                super::limits::RUN_NOW_EVERY.as_secs(),
                wait.as_secs() + 1
            ),
            Some(wait),
        ));
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = RunNow { batch, job, reply };
    if control.run_now.send(req).await.is_err() {
        return Err(shutting_down());
    }
    match answer.await {
        Ok(Ok(record)) => Ok(Json::<RunRecord>(record).into_response()),
        Ok(Err(why)) if why.starts_with("no batch") => Err(WebError::NotFound(why).into()),
        Ok(Err(why)) => Err(WebError::Conflict(why).into()),
        Err(_) => {
            Err(WebError::Unavailable("the daemon shut down before the run ended".into()).into())
        }
    }
}

/// `POST /api/reload`: read the metrics folder again now.
pub async fn reload(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    if !s.allows(&headers, &form_token(&body)) {
        return Err(unauthorized());
    }
    let Some(control) = s.control.clone() else {
        return Err(no_daemon());
    };
    if let Err(wait) = s.limits.take_reload(std::time::Instant::now()) {
        return Ok(too_many(
            format!(
                "the folder was reloaded less than {} s ago; ask again in {} s",
                super::limits::RELOAD_EVERY.as_secs(),
                wait.as_secs() + 1
            ),
            Some(wait),
        ));
    }
    let loader = s.loader.clone();
    let folder = tokio::task::spawn_blocking(move || loader()).await?;
    let answer = json!({
        "batches": folder.batches.len(),
        "errors": folder.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    s.forget_folder();
    if control.reload.send(folder).await.is_err() {
        return Err(shutting_down());
    }
    Ok(Json(answer).into_response())
}
