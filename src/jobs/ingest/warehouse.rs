//! An ingest whose `ingest_sql` runs on a warehouse (`db:` other than
//! `duckdb`): the query on the operator's server ([`crate::warehouse`]),
//! recorded or replayed when asked (HTTP sources), then the same checks and
//! store as every ingest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::recording::{self, CassetteOptions, Plan};
use super::{IngestError, IngestOptions, IngestReport};
use crate::cassette::{function_sha256, SCRUBBED};
use crate::config::BatchSpec;
use crate::store::Store;
use crate::warehouse::{self, QueryLimits};

pub(super) fn run(
    spec: &BatchSpec,
    store: &mut Store,
    sql: &str,
    env: &BTreeMap<String, String>,
    opts: IngestOptions,
    started: Instant,
) -> Result<IngestReport, IngestError> {
    let limits = QueryLimits {
        timeout: Duration::from_secs_f64(spec.limits.timeout_s),
        max_rows: usize::try_from(spec.limits.max_rows).unwrap_or(usize::MAX),
        max_bytes: usize::try_from(spec.limits.max_result_kb.saturating_mul(1024))
            .unwrap_or(usize::MAX),
    };
    let plan = match &opts.cassette {
        Some(c) => Some((
            recording::plan(c, None).map_err(|message| IngestError::Cassette { message })?,
            c,
        )),
        None => None,
    };
    let mut run_env = env.clone();
    let tape = recording::tape(plan.as_ref().map(|(p, _)| p), opts.cassette.as_ref());
    if let Some((
        Plan::Replay {
            cassette,
            allow_new,
        },
        c,
    )) = &plan
    {
        if cassette.function_sha256 != function_sha256(sql) {
            tracing::warn!(
                batch = %spec.metric_batch,
                "cassette {} was recorded from another ingest_sql; replaying anyway",
                c.path.display()
            );
        }
        // A replay asks the recorded URLs, so it takes the settings naming
        // the server from the cassette: only those the source names (never
        // a credential, a file or a local server), and only when nothing
        // leaves the process (`new_episodes` asks the operator's own
        // server, with its own settings).
        if !*allow_new {
            let names = warehouse::replay_setting_names(spec.db);
            for var in &cassette.env {
                if var.value != SCRUBBED && names.contains(&var.name.as_str()) {
                    run_env.insert(var.name.clone(), var.value.clone());
                }
            }
        }
    }
    let over_http = warehouse::reads_over_http(spec.db, &run_env);
    // A replay promises no live query: one of a database that cannot
    // replay asks nothing of it (nor asks for its settings).
    if matches!(plan, Some((Plan::Replay { .. }, _))) && !over_http {
        return Err(IngestError::Cassette {
            message: format!(
                "db: {} is not read over HTTP, so a run of it cannot be recorded or replayed: nothing \
                 was asked of it (test the batch's judgements with a fixture history instead)",
                crate::config::Choice::name(spec.db)
            ),
        });
    }
    let t = Instant::now();
    let scrub = opts
        .cassette
        .as_ref()
        .map(|c| c.scrub.clone())
        .unwrap_or_default();
    let mut source =
        warehouse::open(spec.db, &run_env, tape, &scrub)?.ok_or_else(|| IngestError::Sql {
            message: "db: duckdb runs over the store, not as a warehouse".into(),
        })?;
    let clock_start_us = chrono::Utc::now().timestamp_micros();
    let result = source.query(sql, &limits);
    if let Some((plan, c)) = &plan {
        if over_http {
            let interactions = source.take_interactions();
            let settings = source.replay_settings();
            write_cassette(plan, c, spec, sql, &settings, interactions, clock_start_us)?;
        } else {
            tracing::warn!(
                batch = %spec.metric_batch,
                "db: {} is not read over HTTP, so there is nothing to record: the query ran for real and \
                 no cassette was written",
                crate::config::Choice::name(spec.db)
            );
        }
    }
    let raw = result?;
    super::check_and_store(spec, store, &[raw], opts, started, t.elapsed())
}

/// The cassette of a recorded run, written whether the query succeeded or
/// failed (a failed run's is the one to replay).
fn write_cassette(
    plan: &Plan,
    opts: &CassetteOptions,
    spec: &BatchSpec,
    sql: &str,
    settings: &BTreeMap<String, String>,
    interactions: Vec<crate::cassette::Interaction>,
    clock_start_us: i64,
) -> Result<(), IngestError> {
    let Some(kept) = recording::kept_interactions(plan, interactions) else {
        return Ok(());
    };
    let clock = match plan {
        Plan::Replay { cassette, .. } => cassette.clock_start_us,
        Plan::Record => clock_start_us,
    };
    // Only what the source names; scrubbed all the same, by name.
    let scrubber = crate::cassette::Scrubber::new(settings, &opts.scrub);
    let cassette = crate::cassette::Cassette {
        version: crate::cassette::FORMAT_VERSION,
        note: None,
        job: None,
        batch: spec.metric_batch.clone(),
        function_sha256: function_sha256(sql),
        clock_start_us: clock,
        recorded_at: chrono::DateTime::from_timestamp_micros(clock)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default(),
        seed: String::new(),
        env: scrubber.env(settings),
        interactions: kept,
    };
    cassette
        .save(&opts.path)
        .map_err(|e| IngestError::Cassette {
            message: e.to_string(),
        })?;
    tracing::info!(
        batch = %spec.metric_batch,
        cassette = %opts.path.display(),
        "wrote cassette"
    );
    Ok(())
}
