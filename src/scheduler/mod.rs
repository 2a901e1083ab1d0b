//! `sandstack run`'s scheduler: fires every RUNNING job of every enabled
//! batch on its cron schedule ([`plan`]), at most `max_concurrent` at once
//! and one run of a given batch job at a time, records each run in the
//! history, takes reloaded folders while it runs ([`watch`]), and on
//! shutdown lets running jobs finish within a grace period.
//!
//! Time comes from a [`clock::Clock`] so tests drive it by hand; the work
//! itself from a [`runner::JobRunner`], so tests can replace it. With a
//! shared store, ticks are claimed in it first ([`fleet`]), so each runs
//! on one worker of the fleet. This file is the loop; one tick's attempts
//! and retries are in `attempts.rs`, pauses and run-now in [`controls`].

mod attempts;
pub mod clock;
pub mod controls;
pub mod failures;
pub mod fleet;
pub mod plan;
pub mod runner;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Semaphore};

use crate::config::{BatchSpec, Job, MetricsFolder};
use crate::store::{Claim, RunRecord, RunStatus};
use attempts::{attempt_once, retry_delay, unfinished};
use clock::Clock;
use controls::next_request;
pub use controls::{Controls, Paused, RunNow};
use fleet::{claim_first, heartbeats};
use plan::{JobKey, Plan, ReloadReport};
use runner::{JobRunner, RunLog, RunTicket};

/// What the scheduler did, as it did it (for tests and progress output).
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        key: JobKey,
        scheduled: DateTime<Utc>,
    },
    /// A tick came while the previous run of the job was still going.
    Skipped {
        key: JobKey,
        scheduled: DateTime<Utc>,
    },
    Finished(Box<RunRecord>),
    Reloaded(ReloadReport),
    /// Everything due up to `now` has been dispatched; waiting.
    Idle {
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Jobs running at once.
    pub max_concurrent: usize,
    /// How long running jobs get to finish after a shutdown signal.
    pub grace: Duration,
    /// How often old history is pruned.
    pub prune_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_concurrent: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            grace: Duration::from_secs(30),
            prune_every: Duration::from_secs(3600),
        }
    }
}

/// How the scheduler ended.
#[derive(Debug, Default)]
pub struct Shutdown {
    pub finished_in_grace: usize,
    pub interrupted: Vec<JobKey>,
}

/// A tick's end: its run's record, or None when another worker claimed
/// it (or it could not be claimed).
pub(super) type Done = (JobKey, Option<RunRecord>);

/// The jobs started and not yet reported done.
struct InFlight {
    /// Each running job with the tick it is for.
    running: HashMap<JobKey, DateTime<Utc>>,
    /// `max_concurrent` permits.
    slots: Arc<Semaphore>,
    /// Where a finished run reports.
    done: mpsc::UnboundedSender<Done>,
    /// Who asked for a run and waits for its record.
    waiting: HashMap<JobKey, tokio::sync::oneshot::Sender<Result<RunRecord, String>>>,
}

impl InFlight {
    /// A run ended: it is no longer running, and whoever asked for it
    /// gets its record.
    fn ended(&mut self, key: &JobKey, record: Option<&RunRecord>) {
        self.running.remove(key);
        if let Some(reply) = self.waiting.remove(key) {
            let _ =
                reply.send(record.cloned().ok_or_else(|| {
                    "another worker of the fleet claimed that tick first".to_string()
                }));
        }
    }
}

pub struct Scheduler {
    pub clock: Arc<dyn Clock>,
    pub runner: Arc<dyn JobRunner>,
    pub log: Arc<dyn RunLog>,
    pub options: Options,
    pub events: Option<mpsc::UnboundedSender<Event>>,
    pub controls: Controls,
    /// This worker's fleet, when the store is shared.
    pub fleet: Option<Arc<fleet::Fleet>>,
}

pub(super) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl Scheduler {
    fn emit(&self, e: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    /// Run until `shutdown` turns true (or its sender is dropped).
    pub async fn run(
        mut self,
        mut plan: Plan,
        mut reloads: mpsc::Receiver<MetricsFolder>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Shutdown {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let beating = self
            .fleet
            .clone()
            .map(|f| tokio::spawn(heartbeats(f, self.controls.paused.clone())));
        let mut jobs = InFlight {
            running: HashMap::new(),
            slots: Arc::new(Semaphore::new(self.options.max_concurrent.max(1))),
            done: done_tx,
            waiting: HashMap::new(),
        };
        let mut last_prune: Option<Instant> = None;
        let mut reloads_open = true;
        let mut requests = self.controls.run_now.take();

        loop {
            if last_prune.is_none_or(|t| t.elapsed() >= self.options.prune_every) {
                last_prune = Some(Instant::now());
                let (log, now) = (self.log.clone(), self.clock.now());
                tokio::task::spawn_blocking(move || log.prune(now));
            }
            // Runs that ended since the last turn are not "still going",
            // and a job whose run just ended takes its next caught-up tick
            // now: a run that ends after this is heard in the select below,
            // which turns the loop again (drained after the backlog, a run
            // ending between the two left the next caught-up tick waiting
            // for the clock's next tick).
            while let Ok((key, record)) = done_rx.try_recv() {
                self.ended(&mut jobs, &key, record);
            }
            self.dispatch_backlog(&mut plan, &mut jobs);
            let now = self.clock.now();
            self.dispatch_due(&mut plan, &mut jobs, now);
            let next = plan.next_tick().map(|t| self.clock.sleep_until(t));
            let sleep = async {
                match next {
                    Some(s) => s.await,
                    None => std::future::pending().await,
                }
            };
            self.emit(Event::Idle { now });
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some((key, record)) = done_rx.recv() => {
                    self.ended(&mut jobs, &key, record);
                }
                Some(req) = next_request(&mut requests), if requests.is_some() => {
                    self.run_now(&plan, &mut jobs, req);
                }
                folder = reloads.recv(), if reloads_open => match folder {
                    Some(folder) => {
                        let report = plan.reload(&folder, self.clock.now());
                        log_reload(&report);
                        self.emit(Event::Reloaded(report));
                    }
                    None => reloads_open = false,
                },
                _ = sleep => {}
            }
        }
        // Heartbeats go on while running jobs finish in the grace period.
        let out = self.wind_down(jobs.running, done_rx).await;
        if let Some(b) = beating {
            b.abort();
        }
        out
    }

    /// This worker's name, in a fleet.
    fn worker(&self) -> Option<String> {
        self.fleet.as_ref().map(|f| f.worker.clone())
    }

    fn ended(&self, jobs: &mut InFlight, key: &JobKey, record: Option<RunRecord>) {
        jobs.ended(key, record.as_ref());
        if let Some(r) = record {
            self.emit(Event::Finished(Box::new(r)));
        }
    }

    /// Start a job asked for now, unless it is running already; it runs
    /// as a scheduled run would (same history, retries, failure alerts),
    /// paused or not.
    fn run_now(&self, plan: &Plan, jobs: &mut InFlight, req: RunNow) {
        let key = (req.batch.clone(), req.job);
        if let Some(tick) = jobs.running.get(&key) {
            let _ = req.reply.send(Err(format!(
                "the {} job of batch {} is running now (its tick of {}); ask again when it ends",
                req.job.name(),
                req.batch,
                tick.format("%H:%M:%S")
            )));
            return;
        }
        let Some(spec) = plan.batch(&req.batch) else {
            let _ = req.reply.send(Err(format!(
                "no batch named {} in the folder the daemon has loaded",
                req.batch
            )));
            return;
        };
        let ticket = RunTicket {
            spec: spec.clone(),
            job: req.job,
            scheduled: self.clock.now(),
            catch_up: false,
            attempt: 1,
            // Run now on the summary's carrier: the folder's summary.
            peers: if plan.carries_summary(&req.batch) {
                peers_for(plan, req.job)
            } else {
                Vec::new()
            },
        };
        jobs.waiting.insert(key, req.reply);
        self.dispatch(ticket, jobs);
    }

    fn is_paused(&self, batch: &str) -> bool {
        self.controls
            .paused
            .read()
            .map(|p| p.contains(batch))
            .unwrap_or(false)
    }

    /// Replayed ticks (catch_up) run one after another: the next of a job
    /// starts once the previous has ended.
    fn dispatch_backlog(&self, plan: &mut Plan, jobs: &mut InFlight) {
        let idle_with_backlog: Vec<JobKey> = plan
            .entries
            .iter()
            .filter(|(k, e)| !e.backlog.is_empty() && !jobs.running.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle_with_backlog {
            if self.is_paused(&key.0) {
                continue;
            }
            let peers = peers_for(plan, key.1);
            if let Some(e) = plan.entries.get_mut(&key) {
                if let Some(tick) = e.backlog.pop_front() {
                    let ticket = RunTicket {
                        spec: e.spec.clone(),
                        job: key.1,
                        scheduled: tick,
                        catch_up: true,
                        attempt: 1,
                        peers,
                    };
                    self.dispatch(ticket, jobs);
                }
            }
        }
    }

    /// Start every job due by `now`, skipping those still running.
    fn dispatch_due(&self, plan: &mut Plan, jobs: &mut InFlight, now: DateTime<Utc>) {
        for (key, tick) in plan.take_due(now) {
            if self.is_paused(&key.0) {
                tracing::debug!(batch = %key.0, job = key.1.name(), "paused, tick skipped");
                continue;
            }
            if jobs.running.contains_key(&key) {
                self.skip(&key, tick, now);
                continue;
            }
            let Some(e) = plan.entries.get(&key) else {
                continue;
            };
            let ticket = RunTicket {
                spec: e.spec.clone(),
                job: key.1,
                scheduled: tick,
                catch_up: false,
                attempt: 1,
                peers: peers_for(plan, key.1),
            };
            self.dispatch(ticket, jobs);
        }
    }

    /// Shutdown: start nothing new; give running jobs the grace period, then
    /// record the ones still going as interrupted.
    async fn wind_down(
        &self,
        mut running: HashMap<JobKey, DateTime<Utc>>,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
    ) -> Shutdown {
        let mut out = Shutdown::default();
        if !running.is_empty() {
            tracing::info!(
                grace_s = self.options.grace.as_secs(),
                running = running.len(),
                "shutting down: waiting for running jobs"
            );
        }
        let deadline = tokio::time::Instant::now() + self.options.grace;
        while !running.is_empty() {
            tokio::select! {
                Some((key, record)) = done_rx.recv() => {
                    running.remove(&key);
                    if let Some(r) = record {
                        out.finished_in_grace += 1;
                        self.emit(Event::Finished(Box::new(r)));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let now = self.clock.now();
        for ((batch, job), scheduled) in running {
            tracing::warn!(
                batch = %batch,
                job = job.name(),
                grace_s = self.options.grace.as_secs(),
                "still running after the grace period; abandoned (its transaction is not committed)"
            );
            let record = unfinished(
                &(batch.clone(), job),
                [scheduled, scheduled, now],
                RunStatus::Interrupted,
                format!(
                    "still running when sandstack shut down ({}s grace period)",
                    self.options.grace.as_secs()
                ),
                self.worker(),
            );
            // In a fleet, recorded with its claim ended: no other worker is
            // to take it over.
            let log = self.log.clone();
            let _ = tokio::task::spawn_blocking(move || log.record_claimed(&record)).await;
            out.interrupted.push((batch, job));
        }
        if let Some(f) = self.fleet.clone() {
            let _ = tokio::task::spawn_blocking(move || f.leave()).await;
        }
        out
    }

    fn skip(&self, key: &JobKey, tick: DateTime<Utc>, now: DateTime<Utc>) {
        tracing::warn!(
            batch = %key.0,
            job = key.1.name(),
            tick = %tick.format("%H:%M:%S"),
            "tick skipped, the previous run is still going"
        );
        self.emit(Event::Skipped {
            key: key.clone(),
            scheduled: tick,
        });
        let record = unfinished(
            key,
            [tick, now, now],
            RunStatus::Skipped,
            "the previous run of this job was still going".into(),
            self.worker(),
        );
        let (log, fleet, key) = (self.log.clone(), self.fleet.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            // In a fleet, only the worker that claims the tick records it.
            if let Some(f) = &fleet {
                match f.claim(&key, tick) {
                    Ok(Claim::Mine | Claim::Busy { .. }) => {}
                    Ok(Claim::Taken { .. }) => return,
                    Err(e) => {
                        tracing::error!(batch = %key.0, job = key.1.name(), error = %e, "recording the skipped tick failed: it could not be claimed");
                        return;
                    }
                }
            }
            log.record_claimed(&record);
            if let Some(f) = &fleet {
                f.release(&key, tick);
            }
        });
    }

    fn dispatch(&self, ticket: RunTicket, jobs: &mut InFlight) {
        let key = (ticket.spec.metric_batch.clone(), ticket.job);
        jobs.running.insert(key.clone(), ticket.scheduled);
        self.emit(Event::Started {
            key: key.clone(),
            scheduled: ticket.scheduled,
        });
        let (slots, done) = (jobs.slots.clone(), jobs.done.clone());
        let (runner, log, clock) = (self.runner.clone(), self.log.clone(), self.clock.clone());
        let retries = match ticket.job {
            Job::Ingest => ticket.spec.ingest_settings.retries as u32,
            _ => 0,
        };
        let fleet = self.fleet.clone();
        let worker = self.worker();
        tokio::spawn(async move {
            let scheduled = ticket.scheduled;
            if let Some(f) = &fleet {
                if !claim_first(f, &key, scheduled, &log, clock.as_ref(), &done).await {
                    return;
                }
            }
            let mut attempt = 1;
            let record = loop {
                // A slot per attempt: a run waiting to retry holds none.
                let slot = slots.clone().acquire_owned().await;
                let t = RunTicket {
                    attempt,
                    ..ticket.clone()
                };
                let (r, l, c) = (runner.clone(), log.clone(), clock.clone());
                let w = worker.clone();
                let work = tokio::task::spawn_blocking(move || {
                    attempt_once(&t, r.as_ref(), l.as_ref(), c.as_ref(), retries, w)
                })
                .await;
                drop(slot);
                match work {
                    Ok((_, true)) => {
                        tokio::time::sleep(retry_delay(attempt)).await;
                        attempt += 1;
                    }
                    Ok((record, false)) => {
                        let finished = (ticket.clone(), record.clone(), runner.clone());
                        // Telling about a streak may send messages: off the runtime.
                        let _ = tokio::task::spawn_blocking(move || {
                            finished.2.finished(&finished.0, &finished.1)
                        })
                        .await;
                        break record;
                    }
                    Err(e) => {
                        break unfinished(
                            &key,
                            [scheduled; 3],
                            RunStatus::Failed,
                            format!("the job panicked: {e}"),
                            worker.clone(),
                        )
                    }
                }
            };
            // The last attempt's record ended the claim; without one (the
            // job panicked, or the store refused the record) it ends here.
            if let Some(f) = fleet {
                let k = key.clone();
                let unrecorded = record.run_id == 0;
                let _ = tokio::task::spawn_blocking(move || {
                    if unrecorded {
                        f.finish(&k, scheduled);
                    }
                    f.release(&k, scheduled);
                })
                .await;
            }
            let _ = done.send((key, Some(record)));
        });
    }
}

fn log_reload(r: &ReloadReport) {
    for e in &r.errors {
        tracing::error!(error = %e, "reload of the metrics folder failed");
    }
    for b in &r.kept {
        tracing::warn!(batch = %b, "reload: the batch failed to load; its last good version keeps running");
    }
    for b in &r.added {
        tracing::info!(batch = %b, "reload: batch added");
    }
    for b in &r.changed {
        tracing::info!(batch = %b, "reload: batch changed");
    }
    for b in &r.removed {
        tracing::info!(batch = %b, "reload: batch removed");
    }
}

/// A scheduled job's peers: the batches the folder's summary covers (the
/// plan schedules the summary on one batch only); none for other jobs.
fn peers_for(plan: &Plan, job: Job) -> Vec<Arc<BatchSpec>> {
    if job == Job::Summary {
        plan.summarised()
    } else {
        Vec::new()
    }
}
