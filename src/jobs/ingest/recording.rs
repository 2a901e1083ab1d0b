//! Record and replay of a Python ingest run (`--record`, `--replay`,
//! `--cassette` with `--record-mode`): what the run is seeded with before it
//! starts, and the cassette written after it ends, whether it succeeded or
//! failed (a failed run's cassette is what one wants to replay).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cassette::tape::Tape;
use crate::cassette::{
    function_sha256, Cassette, Interaction, MatchOn, RecordMode, ReplayBook, DEFAULT_MATCH_ON,
    FORMAT_VERSION, SCRUBBED,
};
use crate::config::{BatchSpec, PythonSource};
use crate::sandbox::{ExecReport, ExecRequest};

#[derive(Debug, Clone)]
pub struct CassetteOptions {
    pub path: PathBuf,
    pub mode: RecordMode,
    /// Request parts that must match; empty means method, url and body.
    pub match_on: Vec<MatchOn>,
    /// Extra header or variable names to scrub.
    pub scrub: Vec<String>,
}

/// What this run does with its cassette.
#[derive(Debug)]
pub enum Plan {
    /// Run for real and write the cassette.
    Record,
    /// Answer from the cassette; with `allow_new`, record what is missing.
    Replay {
        cassette: Box<Cassette>,
        allow_new: bool,
    },
}

/// What to do with the cassette of a run of `job` (None: ingest); a
/// cassette recorded from another job is refused.
pub fn plan(opts: &CassetteOptions, job: Option<&str>) -> Result<Plan, String> {
    let exists = opts.path.exists();
    let load = || {
        let c = Cassette::load(&opts.path).map_err(|e| e.to_string())?;
        if c.job.as_deref() != job {
            let name = |j: Option<&str>| j.unwrap_or("ingest").to_string();
            return Err(format!(
                "cassette {} records a run of the {} job, not of {}: replay it with `sandstack {} {}`",
                opts.path.display(),
                name(c.job.as_deref()),
                name(job),
                name(c.job.as_deref()),
                c.batch
            ));
        }
        Ok(c)
    };
    Ok(match (opts.mode, exists) {
        (RecordMode::All, _) | (RecordMode::Once, false) | (RecordMode::NewEpisodes, false) => {
            Plan::Record
        }
        (RecordMode::Once, true) => Plan::Replay {
            cassette: Box::new(load()?),
            allow_new: false,
        },
        (RecordMode::NewEpisodes, true) => Plan::Replay {
            cassette: Box::new(load()?),
            allow_new: true,
        },
        (RecordMode::None, true) => Plan::Replay {
            cassette: Box::new(load()?),
            allow_new: false,
        },
        (RecordMode::None, false) => {
            return Err(format!(
                "cassette {} does not exist: record one with --record {}",
                opts.path.display(),
                opts.path.display()
            ))
        }
    })
}

/// Where a run's answers come from under `plan` (none: live), replayed
/// matching on what `opts` says, else method, URL and body: for sandstack's
/// own requests (a warehouse, the chat model), through
/// [`crate::cassette::tape`].
pub fn tape(plan: Option<&Plan>, opts: Option<&CassetteOptions>) -> Tape {
    match plan {
        None => Tape::Live,
        Some(Plan::Record) => Tape::Record,
        Some(Plan::Replay {
            cassette,
            allow_new,
        }) => {
            let match_on = opts
                .map(|c| c.match_on.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| DEFAULT_MATCH_ON.to_vec());
            Tape::Replay(ReplayBook::new(
                cassette.interactions.clone(),
                match_on,
                *allow_new,
            ))
        }
    }
}

/// The interactions a run's cassette is written with under `plan`: the
/// run's own when recording, the cassette's and the run's new ones with
/// `new_episodes`; None when a replay writes nothing.
pub fn kept_interactions(plan: &Plan, new: Vec<Interaction>) -> Option<Vec<Interaction>> {
    match plan {
        Plan::Record => Some(new),
        Plan::Replay {
            allow_new: false, ..
        } => None,
        Plan::Replay { cassette, .. } => {
            let mut all = cassette.interactions.clone();
            all.extend(new);
            Some(all)
        }
    }
}

/// Seed `req` for the plan; returns warnings for the user.
pub fn prepare(
    req: &mut ExecRequest,
    plan: &Plan,
    opts: &CassetteOptions,
    source: &PythonSource,
) -> Vec<String> {
    let mut warnings = Vec::new();
    req.scrub_names = opts.scrub.clone();
    // Recording, and new_episodes (which rewrites the cassette), keep
    // every interaction.
    req.record_interactions = matches!(
        plan,
        Plan::Record
            | Plan::Replay {
                allow_new: true,
                ..
            }
    );
    if let Plan::Replay {
        cassette,
        allow_new,
    } = plan
    {
        let now_hash = function_sha256(&source.code);
        if cassette.function_sha256 != now_hash {
            warnings.push(format!(
                "cassette {} was recorded from different ingest code (sha256 {}, now {}); replaying anyway",
                opts.path.display(),
                short(&cassette.function_sha256),
                short(&now_hash)
            ));
        }
        req.seed = cassette.seed_bytes();
        if req.seed.is_none() {
            warnings.push(format!(
                "cassette {} has no valid seed; using a fresh one",
                opts.path.display()
            ));
        }
        req.clock_start_us = Some(cassette.clock_start_us);
        req.virtual_clock = true;
        // Recorded values make the replay exact; scrubbed secrets come from
        // the environment now.
        for var in &cassette.env {
            if var.value != SCRUBBED {
                req.env.insert(var.name.clone(), var.value.clone());
            }
        }
        let match_on = if opts.match_on.is_empty() {
            DEFAULT_MATCH_ON.to_vec()
        } else {
            opts.match_on.clone()
        };
        req.replay = Some(ReplayBook::new(
            cassette.interactions.clone(),
            match_on,
            *allow_new,
        ));
    }
    warnings
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Write the cassette if the plan records; returns its path.
pub fn write_after(
    plan: &Plan,
    opts: &CassetteOptions,
    spec: &BatchSpec,
    source: &PythonSource,
    env: &BTreeMap<String, String>,
    report: &ExecReport,
) -> Result<Option<PathBuf>, String> {
    let (seed, clock) = match plan {
        Plan::Record => (hex::encode(report.seed), report.clock_start_us),
        Plan::Replay {
            allow_new: false, ..
        } => return Ok(None),
        Plan::Replay { cassette, .. } => (cassette.seed.clone(), cassette.clock_start_us),
    };
    let recorded_at = chrono::DateTime::from_timestamp_micros(clock)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default();
    let cassette = Cassette {
        version: FORMAT_VERSION,
        note: None,
        job: None,
        batch: spec.metric_batch.clone(),
        function_sha256: function_sha256(&source.code),
        clock_start_us: clock,
        recorded_at,
        seed,
        env: report.scrubber.env(env),
        interactions: report.interactions.clone(),
    };
    cassette.save(&opts.path).map_err(|e| e.to_string())?;
    Ok(Some(opts.path.clone()))
}
