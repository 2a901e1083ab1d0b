//! The operator's policy (`--policy FILE`, `SANDSTACK_POLICY`): what no batch
//! may exceed. The metrics folder is the batch author's and untrusted; the
//! policy is the operator's. A batch that asks for more than the policy
//! allows is refused at load with an error naming the file, the key, what
//! it asked for and what the policy allows; it is never silently clamped.
//! A limit a batch does not set is lowered to the ceiling. Without a policy
//! file everything is allowed, as for a single user, and each batch that
//! uses an operator-level power is named in a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;
use super::spec::BatchSpec;

/// The limits a policy may cap, by the batch key they cap.
const CAPPABLE: &[&str] = &[
    "ingest_fuel",
    "ingest_timeout_s",
    "ingest_memory_mb",
    "ingest_max_rows",
    "ingest_max_output_kb",
    "ingest_max_result_kb",
    "http_max_requests",
    "http_max_response_kb",
    "http_timeout_s",
    "job_timeout_s",
    "ingest_retries",
    "llmalert_max_calls",
    "llmalert_max_tokens",
    "ingest_max_name_len",
];

/// The policy file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    max: BTreeMap<String, f64>,
    /// Host variables any batch may list in `ingest_env` (names, or
    /// `PREFIX_*` patterns).
    #[serde(default)]
    ingest_env_allowed: Vec<String>,
    /// More variables, per batch (each batch's name bound to a folder in
    /// `folders`, so no other file can claim it).
    #[serde(default)]
    ingest_env_allowed_by_batch: BTreeMap<String, Vec<String>>,
    /// The folders batch files may be in (paths relative to the metrics
    /// folder) and the names a file in each may give its batch; when set,
    /// a batch file elsewhere, or claiming another name, is refused.
    #[serde(default)]
    folders: BTreeMap<String, FolderRules>,
    #[serde(default)]
    allow_http_private: bool,
    /// The `db` warehouses batches may read from with the operator's
    /// credentials (`sqlite`, `postgres`, `clickhouse`, `bigquery`,
    /// `snowflake`); `duckdb`, over sandstack's own store, is always allowed.
    #[serde(default)]
    warehouses: Vec<super::choices::Db>,
    #[serde(default)]
    allow_http_rewrite: bool,
    /// With `allow_http_rewrite`, the URL prefixes a rewrite may point to
    /// (empty: any).
    #[serde(default)]
    http_rewrite_targets: Vec<String>,
    /// If set, the only hosts any batch may reach; a batch's own
    /// `http_allow_hosts` must lie within it.
    #[serde(default)]
    http_allow_hosts: Vec<String>,
    #[serde(default = "yes")]
    allow_template_overrides: bool,
    /// The database engine's memory for the whole process, in MiB.
    #[serde(default)]
    duckdb_memory_mb: Option<u64>,
    /// The database engine's threads for the whole process.
    #[serde(default)]
    duckdb_threads: Option<u64>,
    /// A batch's SQL sees every batch's rows of its table, not only its
    /// own (it still reads no other table and changes nothing).
    #[serde(default)]
    batch_sql_reads_other_batches: bool,
    /// Host variables that are secrets: the hosts each may be sent to
    /// (the guest holds a placeholder), or `plain: true`.
    #[serde(default)]
    secrets: BTreeMap<String, super::secrets::Binding>,
}

fn yes() -> bool {
    true
}

/// What a batch file in one of the policy's `folders` may be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderRules {
    /// Batch names (or `PREFIX*` patterns) its files may claim.
    batches: Vec<String>,
    /// Host variables its batches may list in `ingest_env`.
    #[serde(default)]
    ingest_env_allowed: Vec<String>,
}

/// What the operator allows batches.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The file it came from; None: no policy (everything allowed).
    path: Option<PathBuf>,
    rules: PolicyFile,
}

impl Policy {
    /// No policy: a single-user setup, everything allowed.
    pub fn none() -> Policy {
        Policy::default()
    }

    /// Read a policy file; every mistake in it is an error naming it.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("policy {}: cannot read: {e}", path.display()))?;
        let rules: PolicyFile = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("policy {}: {e}", path.display()))?;
        for key in rules.max.keys() {
            if !CAPPABLE.contains(&key.as_str()) {
                let hint = super::choices::closest(key, CAPPABLE.iter().copied())
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "policy {}: max: `{key}` is not a limit a policy can cap{hint}; use {}",
                    path.display(),
                    CAPPABLE.join(", ")
                ));
            }
        }
        if let Some((key, v)) = rules
            .max
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(format!(
                "policy {}: max: `{key}` must be a number above 0, found {v}",
                path.display()
            ));
        }
        let refuse = |m: String| format!("policy {}: {m}", path.display());
        check_folders(&rules).map_err(refuse)?;
        for (name, binding) in &rules.secrets {
            binding.check(name).map_err(refuse)?;
        }
        for h in &rules.http_allow_hosts {
            super::hosts::check_pattern(h).map_err(|m| refuse(format!("http_allow_hosts: {m}")))?;
        }
        for t in &rules.http_rewrite_targets {
            super::url_prefix::UrlPrefix::parse(t)
                .map_err(|m| refuse(format!("http_rewrite_targets: `{t}`: {m}")))?;
        }
        Ok(Policy {
            path: Some(path.to_path_buf()),
            rules,
        })
    }

    /// Refuse `file`'s claim to the name `name` unless the policy's
    /// `folders` allow it (always, when the policy lists none).
    pub fn check_claim(&self, dir: &Path, file: &Path, name: &str) -> Result<(), ConfigError> {
        let (Some(policy), false) = (&self.path, self.rules.folders.is_empty()) else {
            return Ok(());
        };
        let refuse = |asked: String, allowed: String| ConfigError::OverPolicy {
            file: file.to_path_buf(),
            key: "metric_batch".into(),
            asked,
            allowed,
            policy: policy.clone(),
        };
        let Some(folder) = self.folder_of(dir, file) else {
            let listed: Vec<String> = self.rules.folders.keys().map(|f| format!("{f}/")).collect();
            return Err(refuse(
                format!("is a batch file outside the policy's folders (it claims `{name}`)"),
                format!("batch files only in {}", listed.join(", ")),
            ));
        };
        let key = folder.to_string_lossy();
        let rules = &self.rules.folders[key.as_ref()];
        if rules.batches.iter().any(|p| name_matches(p, name)) {
            return Ok(());
        }
        Err(refuse(
            format!("claims the batch name `{name}`"),
            format!(
                "files in {key}/ only the names {}",
                rules.batches.join(", ")
            ),
        ))
    }

    /// The policy folder `file` lies in (the deepest that holds it).
    pub fn folder_of(&self, dir: &Path, file: &Path) -> Option<PathBuf> {
        let rel = file.parent()?.strip_prefix(dir).ok()?;
        self.rules
            .folders
            .keys()
            .map(PathBuf::from)
            .filter(|f| rel.starts_with(f))
            .max_by_key(|f| f.components().count())
    }

    /// The policy folders strictly below `folder`: another tenant's.
    pub fn folders_below(&self, folder: &Path) -> Vec<PathBuf> {
        self.rules
            .folders
            .keys()
            .map(PathBuf::from)
            .filter(|f| f.starts_with(folder) && f != folder)
            .collect()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The engine's memory and threads, as the policy sets them.
    pub fn engine_memory_mb(&self) -> Option<u64> {
        self.rules.duckdb_memory_mb
    }

    pub fn engine_threads(&self) -> Option<u64> {
        self.rules.duckdb_threads
    }

    /// Whether a batch's SQL may read the other batches' rows of its table.
    pub fn batch_sql_reads_other_batches(&self) -> bool {
        self.rules.batch_sql_reads_other_batches
    }

    /// Hold `spec` to the policy: the errors refuse the batch; limits it
    /// does not set are lowered to their ceilings. Without a policy, the
    /// warnings name each operator-level power the batch uses.
    pub fn apply(&self, spec: &mut BatchSpec) -> (Vec<ConfigError>, Vec<String>) {
        let Some(policy) = &self.path else {
            return (Vec::new(), powers_used(spec));
        };
        // (key, asked, allowed)
        let mut over: Vec<(String, String, String)> = Vec::new();
        for (key, &ceiling) in &self.rules.max {
            let set = spec.values.contains_key(key);
            let Some(mut v) = limit(spec, key) else {
                continue;
            };
            if v.get() <= ceiling {
                continue;
            }
            if set {
                over.push((
                    key.clone(),
                    format!("asks for {}", show(v.get())),
                    format!("at most {}", show(ceiling)),
                ));
            } else {
                v.set(ceiling);
            }
        }
        over.extend(self.env_refusals(spec));
        let plain = self.grant_secrets(spec);
        over.extend(self.http_refusals(spec));
        if spec.db != super::choices::Db::DuckDb && !self.rules.warehouses.contains(&spec.db) {
            use super::choices::Choice;
            let allowed: Vec<&str> = std::iter::once("duckdb")
                .chain(self.rules.warehouses.iter().map(|d| d.name()))
                .collect();
            over.push((
                "db".to_string(),
                format!("asks for {}", spec.db.name()),
                format!("{} (the policy's `warehouses`)", allowed.join(", ")),
            ));
        }
        if !self.rules.allow_template_overrides {
            for key in super::shipped::overridden(spec) {
                over.push((
                    key,
                    "replaces the shipped template".into(),
                    "only the shipped templates".into(),
                ));
            }
        }
        let errors = over
            .into_iter()
            .map(|(key, asked, allowed)| ConfigError::OverPolicy {
                file: spec.origin_of(&key),
                key,
                asked,
                allowed,
                policy: policy.clone(),
            })
            .collect();
        (errors, plain)
    }

    /// Give `spec` the secrets bound for it (those its `ingest_env` lists,
    /// and those whose `batches` name it); the warnings name each handed
    /// to its code as a plain value.
    fn grant_secrets(&self, spec: &mut BatchSpec) -> Vec<String> {
        let mut plain = Vec::new();
        for (name, binding) in &self.rules.secrets {
            let listed = spec.ingest_settings.env.iter().any(|n| n == name);
            let named = binding
                .batches
                .iter()
                .any(|p| name_matches(p, &spec.metric_batch));
            if !(listed || named) {
                continue;
            }
            if binding.plain {
                if !listed {
                    spec.ingest_settings.env.push(name.clone());
                }
                plain.push(format!(
                    "{}: batch `{}` gets secret {name}'s value itself (the policy's `secrets: {{{name}: {{plain: true}}}}`): \
                     its code can send it to any host it may reach, store it or print it",
                    spec.file.display(),
                    spec.metric_batch
                ));
            } else {
                spec.ingest_settings.env.retain(|n| n != name);
                spec.secrets
                    .push(super::secrets::SecretGrant::new(name, binding));
            }
        }
        plain
    }

    /// Each `ingest_env` name the policy does not list.
    fn env_refusals(&self, spec: &BatchSpec) -> Vec<(String, String, String)> {
        let folder = self
            .folder_of(&spec.source.dir, &spec.file)
            .and_then(|f| self.rules.folders.get(f.to_string_lossy().as_ref()));
        let allowed: Vec<&String> = self
            .rules
            .ingest_env_allowed
            .iter()
            .chain(
                self.rules
                    .ingest_env_allowed_by_batch
                    .get(&spec.metric_batch)
                    .into_iter()
                    .flatten(),
            )
            .chain(folder.into_iter().flat_map(|f| &f.ingest_env_allowed))
            .collect();
        let shown = if allowed.is_empty() {
            "no host variables".to_string()
        } else {
            let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
            names.join(", ")
        };
        let mut over = Vec::new();
        for name in &spec.ingest_settings.env {
            if let Some(binding) = self.rules.secrets.get(name) {
                let batch = &spec.metric_batch;
                if !binding.batches.is_empty()
                    && !binding.batches.iter().any(|p| name_matches(p, batch))
                {
                    over.push((
                        "ingest_env".to_string(),
                        format!("asks for secret {name}"),
                        format!(
                            "{name} only for the batches {} (the policy's `secrets:`)",
                            binding.batches.join(", ")
                        ),
                    ));
                }
            } else if !allowed.iter().any(|p| name_matches(p, name)) {
                over.push((
                    "ingest_env".to_string(),
                    format!("asks for host variable {name}"),
                    shown.clone(),
                ));
            } else if crate::cassette::secret_name(name) {
                // Granted by a name list, a secret would reach the code
                // itself; the operator binds it to its hosts, or says plain.
                over.push((
                    "ingest_env".to_string(),
                    format!("asks for host variable {name}, whose name says it is a secret"),
                    format!(
                        "a secret only through the policy's `secrets:` (`{name}: {{hosts: [...]}}` sends it only \
                         to those hosts and keeps it out of the sandbox; `{name}: {{plain: true}}` hands the code its value)"
                    ),
                ));
            }
        }
        over
    }

    /// Private addresses, rewrites and hosts beyond what the policy allows;
    /// a batch without its own host list gets the policy's.
    fn http_refusals(&self, spec: &mut BatchSpec) -> Vec<(String, String, String)> {
        let mut over = Vec::new();
        let mut refuse = |key: &str, asked: String, allowed: String| {
            over.push((key.to_string(), asked, allowed));
        };
        if spec.http.allow_private && !self.rules.allow_http_private {
            refuse(
                "http_allow_private",
                "asks for true".into(),
                "only false".into(),
            );
        }
        if !spec.http.rewrite.is_empty() && !self.rules.allow_http_rewrite {
            refuse("http_rewrite", "sets rewrites".into(), "none".into());
        } else if !self.rules.http_rewrite_targets.is_empty() {
            use super::url_prefix::UrlPrefix;
            for target in spec.http.rewrite.values() {
                // Compared as URLs: scheme, host, port and path, so that
                // `http://127.0.0.1:8080@127.0.0.1:9/` is not "under"
                // `http://127.0.0.1:8080`.
                let ok = UrlPrefix::parse(target).is_ok_and(|t| {
                    self.rules
                        .http_rewrite_targets
                        .iter()
                        .filter_map(|allowed| UrlPrefix::parse(allowed).ok())
                        .any(|allowed| t.within(&allowed))
                });
                if !ok {
                    refuse(
                        "http_rewrite",
                        format!("rewrites to {target}"),
                        format!(
                            "targets under {}",
                            self.rules.http_rewrite_targets.join(", ")
                        ),
                    );
                }
            }
        }
        let hosts = &self.rules.http_allow_hosts;
        if !hosts.is_empty() {
            if spec.http.allow_hosts.is_empty() {
                spec.http.allow_hosts = hosts.clone();
            }
            for h in &spec.http.allow_hosts {
                if !hosts.iter().any(|p| host_within(h, p)) {
                    refuse(
                        "http_allow_hosts",
                        format!("asks for host {h}"),
                        format!("hosts within {}", hosts.join(", ")),
                    );
                }
            }
        }
        over
    }
}

/// Without a policy: the operator-level powers a batch uses, one warning
/// each.
fn powers_used(spec: &BatchSpec) -> Vec<String> {
    let mut used = Vec::new();
    if !spec.ingest_settings.env.is_empty() {
        let secret = spec
            .ingest_settings
            .env
            .iter()
            .any(|n| crate::cassette::secret_name(n));
        used.push(format!(
            "ingest_env ({}){}",
            spec.ingest_settings.env.join(", "),
            if secret {
                " and its code holds their values (a policy's `secrets:` would keep a secret out of the \
                 sandbox, sent only to the hosts it is for)"
            } else {
                ""
            }
        ));
    }
    if spec.http.allow_private {
        used.push("http_allow_private".to_string());
    }
    if spec.db != super::choices::Db::DuckDb {
        use super::choices::Choice;
        used.push(format!(
            "db: {} (its SQL runs on that warehouse with the operator's credentials)",
            spec.db.name()
        ));
    }
    if !spec.http.rewrite.is_empty() {
        used.push("http_rewrite".to_string());
    }
    used.into_iter()
        .map(|power| {
            format!(
                "{}: batch `{}` uses {power}, which only an operator should grant: \
                 without a policy file (--policy) every batch may; see the README's security model",
                spec.file.display(),
                spec.metric_batch
            )
        })
        .collect()
}

/// The policy's `folders` and the per-batch secrets that rely on them: a
/// folder is a relative path inside the metrics folder, and every batch
/// granted variables by name is bound to a folder (else any file could
/// claim the name, and its secrets).
fn check_folders(rules: &PolicyFile) -> Result<(), String> {
    for (folder, r) in &rules.folders {
        let p = Path::new(folder);
        let plain = !folder.is_empty()
            && p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(format!(
                "folders: `{folder}` must be a folder inside the metrics folder, written relative to it \
                 (like examples/weather), without `..`"
            ));
        }
        if r.batches.is_empty() {
            return Err(format!(
                "folders: `{folder}` lists no batch names: give it `batches: [name, ...]`"
            ));
        }
    }
    // (batch, what the policy grants it by name)
    let by_name = rules
        .ingest_env_allowed_by_batch
        .keys()
        .map(|b| (b, "ingest_env_allowed_by_batch grants".to_string()))
        .chain(
            rules
                .secrets
                .iter()
                // A plain value's batches always; a placeholder's once the
                // policy binds folders at all (it still hands over the key's use).
                .filter(|(_, s)| s.plain || !rules.folders.is_empty())
                .flat_map(|(name, s)| {
                    s.batches
                        .iter()
                        .map(move |b| (b, format!("secrets: {name} grants")))
                }),
        );
    for (batch, grant) in by_name {
        let binding: Vec<&String> = rules
            .folders
            .iter()
            .filter(|(_, r)| r.batches.iter().any(|p| name_matches(p, batch)))
            .map(|(f, _)| f)
            .collect();
        if binding.len() > 1 {
            let shown: Vec<String> = binding.iter().map(|f| format!("{f}/")).collect();
            return Err(format!(
                "{grant} `{batch}` host variables, but the name is bound to {}: \
                 a file in any of them could claim it and its variables; bind it to one folder",
                shown.join(" and ")
            ));
        }
        if binding.is_empty() {
            return Err(format!(
                "{grant} `{batch}` host variables, but no entry of `folders` binds \
                 the name `{batch}` to a folder, so a batch file anywhere could claim it: add \
                 `folders: {{<its folder>: {{batches: [{batch}]}}}}`, or grant the variables there"
            ));
        }
    }
    Ok(())
}

/// A cappable limit, whole or fractional.
enum Capped<'a> {
    U(&'a mut u64),
    F(&'a mut f64),
}

impl Capped<'_> {
    fn get(&self) -> f64 {
        match self {
            Capped::U(v) => **v as f64,
            Capped::F(v) => **v,
        }
    }

    fn set(&mut self, ceiling: f64) {
        match self {
            Capped::U(v) => **v = ceiling as u64,
            Capped::F(v) => **v = ceiling,
        }
    }
}

/// The value of a cappable limit in `spec`.
fn limit<'a>(spec: &'a mut BatchSpec, key: &str) -> Option<Capped<'a>> {
    let l = &mut spec.limits;
    Some(match key {
        "ingest_fuel" => Capped::U(&mut l.fuel),
        "ingest_timeout_s" => Capped::F(&mut l.timeout_s),
        "ingest_memory_mb" => Capped::U(&mut l.memory_mb),
        "ingest_max_rows" => Capped::U(&mut l.max_rows),
        "ingest_max_output_kb" => Capped::U(&mut l.max_output_kb),
        "ingest_max_result_kb" => Capped::U(&mut l.max_result_kb),
        "http_max_requests" => Capped::U(&mut l.http_max_requests),
        "http_max_response_kb" => Capped::U(&mut l.http_max_response_kb),
        "http_timeout_s" => Capped::F(&mut l.http_timeout_s),
        "job_timeout_s" => Capped::F(&mut spec.jobs.timeout_s),
        "ingest_retries" => Capped::U(&mut spec.ingest_settings.retries),
        "llmalert_max_calls" => Capped::U(&mut spec.llmalert.max_calls),
        "llmalert_max_tokens" => Capped::U(&mut spec.llmalert.max_tokens),
        "ingest_max_name_len" => Capped::U(&mut l.max_name_len),
        _ => return None,
    })
}

fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// `pattern` is a name, or `PREFIX_*`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Whether every host `host` (a name or `*.domain`) allows is also allowed
/// by `pattern`.
fn host_within(host: &str, pattern: &str) -> bool {
    let (host, pattern) = (
        host.trim().to_ascii_lowercase(),
        pattern.trim().to_ascii_lowercase(),
    );
    let under = |name: &str, domain: &str| name.ends_with(&format!(".{domain}"));
    match (host.strip_prefix("*."), pattern.strip_prefix("*.")) {
        (Some(sub), Some(domain)) => sub == domain || under(sub, domain),
        (None, Some(domain)) => under(&host, domain),
        (Some(_), None) => false,
        (None, None) => host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hosts_match_their_patterns() {
        assert!(name_matches("POSTHOG_*", "POSTHOG_KEY"));
        assert!(!name_matches("POSTHOG_*", "ANOMSTACK_ALERT_EMAIL_PASSWORD"));
        assert!(name_matches("WEATHER_API_KEY", "WEATHER_API_KEY"));
        assert!(host_within("api.example.com", "*.example.com"));
        assert!(host_within("*.api.example.com", "*.example.com"));
        assert!(host_within("*.example.com", "*.example.com"));
        assert!(!host_within("*.example.com", "api.example.com"));
        assert!(!host_within("example.com.evil.net", "*.example.com"));
        assert!(!host_within("evil-example.com", "*.example.com"));
    }
}
