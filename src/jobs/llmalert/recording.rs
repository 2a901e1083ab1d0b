//! An llmalert run's cassette: the variables a replay calls the endpoint
//! with, and the cassette written after a recording run (where answers come
//! from is [`crate::jobs::ingest::recording::tape`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::prompt;
use crate::cassette::{function_sha256, Cassette, FORMAT_VERSION};
use crate::config::{BatchSpec, Job};
use crate::jobs::ingest::recording::{kept_interactions, CassetteOptions, Plan};
use crate::llm::{self, Client};

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

/// Write the run's cassette when the plan records.
pub fn save(
    spec: &BatchSpec,
    plan: &Plan,
    opts: &CassetteOptions,
    client: &Client,
    env: &BTreeMap<String, String>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<PathBuf>, String> {
    let Some(interactions) = kept_interactions(plan, client.interactions.clone()) else {
        return Ok(None);
    };
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
