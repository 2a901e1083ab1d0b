//! The schedule table: which job of which batch fires when. Built from a
//! loaded metrics folder, advanced tick by tick, and merged with a reloaded
//! folder so that unchanged schedules keep their timing and a batch whose
//! edit is broken keeps its last good version.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{BatchSpec, CronExpr, Job, MetricsFolder, ScheduleStatus, DEFAULTS_FILE};

/// Most missed ticks `catch_up: true` replays per job after downtime.
pub const CATCH_UP_MAX: usize = 100;

/// A batch's job.
pub type JobKey = (String, Job);

/// One scheduled job.
#[derive(Debug)]
pub struct Entry {
    pub spec: Arc<BatchSpec>,
    pub cron: CronExpr,
    /// The next tick.
    pub next: DateTime<Utc>,
    /// Ticks missed while the process was down, oldest first, replayed one
    /// after another (`catch_up: true`).
    pub backlog: VecDeque<DateTime<Utc>>,
}

/// What a reload changed, for the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Batches whose file failed to load, still running their last good
    /// version.
    pub kept: Vec<String>,
    pub errors: Vec<String>,
}

impl ReloadReport {
    pub fn is_empty(&self) -> bool {
        *self == ReloadReport::default()
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    pub entries: BTreeMap<JobKey, Entry>,
    /// Every batch in force (enabled or not), by name.
    batches: BTreeMap<String, Arc<BatchSpec>>,
    dir: PathBuf,
}

/// The first tick of `cron` strictly after `t`.
fn after(cron: &CronExpr, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.schedule.after(&t).next()
}

/// The jobs of `spec` that run on a schedule: not disabled, and RUNNING.
pub fn runnable_jobs(spec: &BatchSpec) -> impl Iterator<Item = (Job, &CronExpr)> {
    spec.scheduled_jobs()
        .filter(move |(_, s)| !spec.disable_batch && s.status == ScheduleStatus::Running)
        .map(|(job, s)| (job, &s.cron))
}

/// The batch whose summary job sends the folder's one daily summary,
/// across every batch (as Anomstack runs one summary job, on its first
/// batch's settings): the first batch by name whose summary would run on
/// its schedule (enabled, not disabled, RUNNING). The other batches'
/// summary schedules do not fire.
pub fn summary_carrier<'a>(batches: impl Iterator<Item = &'a BatchSpec>) -> Option<&'a str> {
    batches
        .filter(|b| runnable_jobs(b).any(|(j, _)| j == Job::Summary))
        .map(|b| b.metric_batch.as_str())
        .min()
}

/// The jobs of `spec` the plan schedules: its runnable ones, the summary
/// only on the folder's carrier.
fn planned_jobs<'a>(
    spec: &'a BatchSpec,
    carrier: Option<&'a str>,
) -> impl Iterator<Item = (Job, &'a CronExpr)> + 'a {
    runnable_jobs(spec)
        .filter(move |(job, _)| *job != Job::Summary || carrier == Some(spec.metric_batch.as_str()))
}

impl Plan {
    /// The plan for a freshly loaded folder at `now`. `last_scheduled`
    /// gives the newest recorded tick of a job, used by `catch_up`.
    pub fn new(
        folder: &MetricsFolder,
        now: DateTime<Utc>,
        last_scheduled: &dyn Fn(&str, Job) -> Option<DateTime<Utc>>,
    ) -> Plan {
        let mut plan = Plan {
            dir: folder.dir.clone(),
            ..Default::default()
        };
        let carrier = summary_carrier(folder.batches.iter()).map(str::to_string);
        for spec in &folder.batches {
            let spec = Arc::new(spec.clone());
            plan.batches.insert(spec.metric_batch.clone(), spec.clone());
            for (job, cron) in planned_jobs(&spec, carrier.as_deref()) {
                let Some(next) = after(cron, now) else {
                    continue;
                };
                let mut backlog = VecDeque::new();
                if spec.ingest_settings.catch_up {
                    if let Some(last) = last_scheduled(&spec.metric_batch, job) {
                        let mut t = last;
                        while let Some(tick) = after(cron, t).filter(|t| *t <= now) {
                            backlog.push_back(tick);
                            if backlog.len() > CATCH_UP_MAX {
                                backlog.pop_front();
                            }
                            t = tick;
                        }
                    }
                }
                plan.entries.insert(
                    (spec.metric_batch.clone(), job),
                    Entry {
                        spec: spec.clone(),
                        cron: cron.clone(),
                        next,
                        backlog,
                    },
                );
            }
        }
        plan
    }

    pub fn batch(&self, name: &str) -> Option<&Arc<BatchSpec>> {
        self.batches.get(name)
    }

    pub fn batches(&self) -> impl Iterator<Item = &Arc<BatchSpec>> {
        self.batches.values()
    }

    /// What the folder's summary covers: every enabled batch but those
    /// that set `disable_summary`.
    pub fn summarised(&self) -> Vec<Arc<BatchSpec>> {
        self.batches
            .values()
            .filter(|b| !b.disable_batch)
            .filter(|b| b.scheduled_jobs().any(|(j, _)| j == Job::Summary))
            .cloned()
            .collect()
    }

    /// Whether `batch` carries the folder's summary (its summary is planned).
    pub fn carries_summary(&self, batch: &str) -> bool {
        self.entries
            .contains_key(&(batch.to_string(), Job::Summary))
    }

    /// The earliest next tick of any job.
    pub fn next_tick(&self) -> Option<DateTime<Utc>> {
        self.entries.values().map(|e| e.next).min()
    }

    /// Every tick due at `now`, in time order, advancing each job past
    /// them. A job that fell more than one period behind yields each
    /// missed tick (no tick is lost while the process runs).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(JobKey, DateTime<Utc>)> {
        let mut due = Vec::new();
        for (key, e) in self.entries.iter_mut() {
            while e.next <= now {
                due.push((key.clone(), e.next));
                match after(&e.cron, e.next) {
                    Some(n) => e.next = n,
                    None => {
                        // A schedule with no future tick (e.g. a past year).
                        e.next = DateTime::<Utc>::MAX_UTC;
                        break;
                    }
                }
            }
        }
        due.sort_by_key(|(_, t)| *t);
        due
    }

    /// Merge a reloaded folder into the plan at `now`.
    pub fn reload(&mut self, folder: &MetricsFolder, now: DateTime<Utc>) -> ReloadReport {
        let mut report = ReloadReport {
            errors: folder.errors.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        };
        let broken_files: BTreeSet<&Path> = folder.errors.iter().flat_map(|e| e.files()).collect();
        let defaults_broken = broken_files.contains(self.dir.join(DEFAULTS_FILE).as_path())
            || broken_files.contains(self.dir.as_path());
        let mut next_batches: BTreeMap<String, Arc<BatchSpec>> = BTreeMap::new();
        for spec in &folder.batches {
            next_batches.insert(spec.metric_batch.clone(), Arc::new(spec.clone()));
        }
        // A batch that vanished because its file no longer loads keeps its
        // last good version; one whose file is gone (or renamed it) goes.
        for (name, old) in &self.batches {
            if next_batches.contains_key(name) {
                continue;
            }
            let file_broken = broken_files.contains(old.file.as_path());
            if old.file.exists() && (file_broken || defaults_broken) {
                report.kept.push(name.clone());
                next_batches.insert(name.clone(), old.clone());
            }
        }
        for (name, spec) in &next_batches {
            match self.batches.get(name) {
                None => report.added.push(name.clone()),
                Some(old) if !Arc::ptr_eq(old, spec) && !same_batch(old, spec) => {
                    report.changed.push(name.clone())
                }
                _ => {}
            }
        }
        for name in self.batches.keys() {
            if !next_batches.contains_key(name) {
                report.removed.push(name.clone());
            }
        }

        let mut entries = BTreeMap::new();
        let carrier =
            summary_carrier(next_batches.values().map(|b| b.as_ref())).map(str::to_string);
        for spec in next_batches.values() {
            for (job, cron) in planned_jobs(spec, carrier.as_deref()) {
                let key = (spec.metric_batch.clone(), job);
                let entry = match self.entries.remove(&key) {
                    // Same schedule: keep its timing and backlog.
                    Some(old) if old.cron.text == cron.text => Entry {
                        spec: spec.clone(),
                        ..old
                    },
                    _ => match after(cron, now) {
                        Some(next) => Entry {
                            spec: spec.clone(),
                            cron: cron.clone(),
                            next,
                            backlog: VecDeque::new(),
                        },
                        None => continue,
                    },
                };
                entries.insert(key, entry);
            }
        }
        self.entries = entries;
        self.batches = next_batches;
        report
    }
}

/// Whether two loads of a batch are the same configuration (the loader
/// builds fresh values each time, so compare what was rendered).
fn same_batch(a: &BatchSpec, b: &BatchSpec) -> bool {
    a.values == b.values
        && a.file == b.file
        && a.ingest == b.ingest
        && a.preprocess_fn == b.preprocess_fn
        && a.sql == b.sql
}
