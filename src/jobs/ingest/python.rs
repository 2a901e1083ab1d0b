//! `ingest_fn`: the batch's Python, run in the sandbox with the batch's
//! limits, HTTP policy and allowlisted environment.

use std::collections::BTreeMap;

use crate::config::{BatchSpec, PythonSource};
use crate::sandbox::secrets::HostSecret;
use crate::sandbox::{ExecError, ExecRequest};

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
    req.secrets = spec
        .secrets
        .iter()
        .map(|grant| HostSecret {
            grant: grant.clone(),
            value: env.get(&grant.name).cloned(),
        })
        .collect();
    req
}

/// The user's exception with what only the host knows added: a variable
/// that exists on the host but is not allowlisted for the batch (the code
/// sees a bare KeyError), or a module the guest does not have (CPython's
/// own hint speaks of site-packages, which do not exist in the sandbox).
pub fn explain(
    spec: &BatchSpec,
    host_env: &BTreeMap<String, String>,
    error: ExecError,
) -> ExecError {
    let ExecError::Exception {
        type_name,
        message,
        traceback,
    } = error
    else {
        return error;
    };
    let hint = match type_name.as_str() {
        "KeyError" => {
            let name = message.trim().trim_matches(|c| c == '\'' || c == '"');
            let allowed = spec.ingest_settings.env.iter().any(|n| n == name);
            let bound = spec.secrets.iter().any(|s| s.name == name);
            if bound && host_env.get(name).is_none_or(|v| v.is_empty()) {
                return ExecError::Exception {
                    message: format!(
                        "{message}: {name} is a secret the policy binds for batch `{}`, but it is not set in \
                         sandstack's environment: set it where sandstack runs",
                        spec.metric_batch
                    ),
                    type_name,
                    traceback,
                };
            }
            (host_env.contains_key(name) && !allowed && !bound).then(|| {
                format!(
                    "{message}: the environment variable {name} is set on the host but not allowed for batch `{}`; \
                     add it to the batch's ingest_env (ingest_env: [{name}]) to pass it in, \
                     or, as the operator, set ANOMSTACK__{}__INGEST_ENV={name}",
                    spec.metric_batch,
                    crate::config::env_batch_name(&spec.metric_batch)
                )
            })
        }
        "ModuleNotFoundError" => {
            let module = message
                .split('\'')
                .nth(1)
                .unwrap_or(message.as_str())
                .to_string();
            Some(format!(
                "No module named '{module}': the sandbox has Python's standard library and {}; \
                 other packages cannot be installed into it",
                crate::sandbox::guest::GUEST_PACKAGES.join(", ")
            ))
        }
        _ => None,
    };
    // CPython's advice about site-packages does not apply in the sandbox.
    let traceback = match traceback.find(". Site initialization is disabled") {
        Some(at) => {
            let end = traceback[at..]
                .find('\n')
                .map_or(traceback.len(), |n| at + n);
            format!("{}{}", &traceback[..at], &traceback[end..])
        }
        None => traceback,
    };
    ExecError::Exception {
        type_name,
        message: hint.unwrap_or(message),
        traceback,
    }
}
