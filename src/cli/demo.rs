//! `sandstack run --demo`: every batch's schedules on at a fast cadence (as
//! environment overrides, the mechanism a user has), and empty batches
//! backfilled and judged first, so scores and alerts appear at once.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use super::tasks::blocking;
use crate::config::{self, env_batch_name, Job, MetricsFolder, Policy};
use crate::pipeline::backfill;
use crate::pipeline::describe::describe;
use crate::store::Store;

/// The demo profile as environment overrides, the same mechanism a user
/// has (`ANOMSTACK__<BATCH>__<JOB>_DEFAULT_SCHEDULE_STATUS=RUNNING`).
fn demo_overrides(folder: &MetricsFolder) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for b in &folder.batches {
        let upper = env_batch_name(&b.metric_batch);
        for job in Job::ALL {
            let cron = match job {
                Job::Ingest | Job::Score | Job::Alert | Job::Change | Job::Plot => "* * * * *",
                Job::Train => "*/5 * * * *",
                _ => continue,
            };
            let j = job.name().to_ascii_uppercase();
            env.insert(
                format!("SANDSTACK__{upper}__{j}_DEFAULT_SCHEDULE_STATUS"),
                "RUNNING".into(),
            );
            env.insert(
                format!("SANDSTACK__{upper}__{j}_CRON_SCHEDULE"),
                cron.into(),
            );
        }
    }
    env
}

/// Load the folder with the process's overrides, plus the demo profile's
/// (the user's own variables win).
pub(crate) fn load(dir: &std::path::Path, demo: bool, policy: &Policy) -> MetricsFolder {
    let env = config::process_env();
    let folder = config::load_with_policy(dir, &env, policy);
    if !demo {
        return folder;
    }
    let mut with_demo = demo_overrides(&folder);
    with_demo.extend(env);
    config::load_with_policy(dir, &with_demo, policy)
}

pub(super) async fn demo_backfill(
    folder: &MetricsFolder,
    store: &Store,
    env: &BTreeMap<String, String>,
    periods: usize,
) -> anyhow::Result<()> {
    for spec in folder.enabled_batches() {
        let mut conn = blocking(|| store.try_clone())?;
        let spec = spec.clone();
        let env = env.clone();
        let name = spec.metric_batch.clone();
        let has_rows = blocking(|| conn.batch_has_rows(&spec.table_key, &name)).unwrap_or(false);
        if has_rows {
            errln!("demo: {name} already has rows, no backfill");
            continue;
        }
        errln!("demo: backfilling {name}: {periods} periods, 10 minutes apart");
        tokio::task::spawn_blocking(move || {
            let ctx = super::job_context(&env, None, Default::default());
            let report = backfill::ingest_periods(
                &spec,
                &mut conn,
                &ctx,
                backfill::Periods {
                    count: periods,
                    step: Duration::from_secs(600),
                    end_us: chrono::Utc::now().timestamp_micros(),
                    give_up_after: Some(3),
                },
                &|done, total, took| {
                    errln!(
                        "demo: {name}: {done}/{total} periods ({:.1}s)",
                        took.as_secs_f64()
                    )
                },
            );
            if report.gave_up {
                errln!(
                    "demo: {name}: the first periods all failed, skipping its backfill: {}",
                    report.first_error.unwrap_or_default()
                );
                return;
            }
            errln!(
                "demo: {name}: {} rows stored, {} periods failed",
                report.stored,
                report.failed
            );
            // Each judging job's lines as it ends; a failed one is said
            // and the next runs.
            let judged = backfill::judge(
                &spec,
                &mut conn,
                &ctx,
                periods,
                &mut |scoring, job, done| {
                    match done {
                        Ok(out) => print!(
                            "{}",
                            crate::escape::terminal_block(&describe(scoring, &out))
                        ),
                        Err(e) => {
                            errln!("demo: {name}: {job:?} failed: {:#}", anyhow::Error::from(e))
                        }
                    }
                    true
                },
            );
            if let Err(errors) = judged {
                for e in errors {
                    errln!("demo: {name}: {e}");
                }
            }
        })
        .await
        .context("demo backfill")?;
    }
    Ok(())
}
