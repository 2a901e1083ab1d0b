//! An llmalert run's cassette: the variables a replay calls the endpoint
//! with, where answers come from ([`Tape`]), and the cassette written after
//! a recording run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::prompt;
use crate::cassette::{function_sha256, Cassette, ReplayBook, DEFAULT_MATCH_ON, FORMAT_VERSION};
use crate::config::{BatchSpec, Job};
use crate::jobs::ingest::recording::{CassetteOptions, Plan};
use crate::llm::{self, Client, Tape};

/// The variables the endpoint is read from: a replay's are the recorded
/// ones, keys scrubbed, so it needs none of this machine's.
pub fn env_for(plan: Option<&Plan>, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    match plan {
        Some(Plan::Replay { cassette, .. }) => cassette
            .env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect(),
        _ => llm::client::recorded_env(env),
    }
}

/// Where the run's answers come from.
pub fn tape_of(plan: Option<&Plan>, opts: Option<&CassetteOptions>) -> Tape {
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

/// Write the run's cassette when the plan records.
pub fn save(
    spec: &BatchSpec,
    plan: &Plan,
    opts: &CassetteOptions,
    client: &Client,
    env: &BTreeMap<String, String>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<PathBuf>, String> {
    let mut interactions = match plan {
        Plan::Record => Vec::new(),
        Plan::Replay {
            allow_new: false, ..
        } => return Ok(None),
        Plan::Replay { cassette, .. } => cassette.interactions.clone(),
    };
    interactions.extend(client.interactions.iter().cloned());
    let what = format!(
        "{:?}\n{:?}\n{:?}\n{}",
        spec.llmalert,
        spec.sql(Job::Llmalert),
        client.endpoint().model,
        prompt::SYSTEM
    );
    let cassette = Cassette {
        version: FORMAT_VERSION,
        note: Some("the chat model's exchanges of one llmalert run".into()),
        job: Some("llmalert".into()),
        batch: spec.metric_batch.clone(),
        function_sha256: function_sha256(&what),
        clock_start_us: at.timestamp_micros(),
        recorded_at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        seed: String::new(),
        env: client.scrubber().env(env),
        interactions,
    };
    cassette.save(&opts.path).map_err(|e| e.to_string())?;
    Ok(Some(opts.path.clone()))
}
