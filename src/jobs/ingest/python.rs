//! `ingest_fn`: the batch's Python, run in the sandbox with the batch's
//! limits, HTTP policy and allowlisted environment.

use std::collections::BTreeMap;

use crate::config::{BatchSpec, PythonSource};
use crate::sandbox::ExecRequest;

/// The allowlisted variables' values from `env` (those set).
pub fn allowed_env(spec: &BatchSpec, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    spec.ingest_settings
        .env
        .iter()
        .filter_map(|name| env.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

pub fn request(
    spec: &BatchSpec,
    source: &PythonSource,
    env: &BTreeMap<String, String>,
) -> ExecRequest {
    let mut req = ExecRequest::new(
        &spec.metric_batch,
        source.clone(),
        spec.limits.clone(),
        spec.http.clone(),
    );
    req.env = allowed_env(spec, env);
    req
}
