//! Errors a user can make in a metrics folder. Each names the file and, where
//! there is one, the key, and says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    #[error("metrics folder {dir} does not exist: pass --metrics DIR or set SANDSTACK_METRICS")]
    MissingFolder { dir: PathBuf },

    #[error("{file}: cannot read: {message}")]
    Io { file: PathBuf, message: String },

    #[error("{file}: invalid YAML: {message}")]
    Yaml { file: PathBuf, message: String },

    #[error("{file}: expected a mapping of keys to values at the top level")]
    NotAMapping { file: PathBuf },

    #[error("{file}: missing required key `metric_batch`: every batch file must name its batch")]
    MissingBatchName { file: PathBuf },

    #[error(
        "metric_batch `{name}` is claimed by {}: a batch name belongs to one file, so none of them loads; \
         rename all but one",
        file_list(files)
    )]
    DuplicateBatch { name: String, files: Vec<PathBuf> },

    #[error("{file}: key `{key}`: {message}")]
    Template {
        file: PathBuf,
        key: String,
        message: String,
    },

    #[error("{file}: key `{key}`: expected {expected}, found {found}")]
    BadType {
        file: PathBuf,
        key: String,
        expected: String,
        found: String,
    },

    #[error("{file}: key `{key}`: {message}")]
    BadValue {
        file: PathBuf,
        key: String,
        message: String,
    },

    /// The batch asks for more than the operator's policy allows.
    #[error("{file}: key `{key}`: {asked}, but the policy {policy} allows {allowed}: change the batch, or ask the operator to change the policy")]
    OverPolicy {
        file: PathBuf,
        key: String,
        asked: String,
        allowed: String,
        policy: PathBuf,
    },

    #[error("{file}: key `{key}`: invalid cron expression \"{expr}\": {message}")]
    BadCron {
        file: PathBuf,
        key: String,
        expr: String,
        message: String,
    },

    /// An error outside the batches' own files (in the defaults, say),
    /// reported once for all the batches it stops.
    #[error("{error} (stops {}: fix it once there)", batch_list(batches))]
    InBatches {
        error: Box<ConfigError>,
        batches: Vec<String>,
    },
}

fn file_list(files: &[PathBuf]) -> String {
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    match shown.as_slice() {
        [a, b] => format!("both {a} and {b}"),
        _ => format!("{} files: {}", shown.len(), shown.join(", ")),
    }
}

fn batch_list(batches: &[String]) -> String {
    const SHOWN: usize = 6;
    let names: Vec<String> = batches
        .iter()
        .take(SHOWN)
        .map(|b| format!("`{b}`"))
        .collect();
    let more = batches.len().saturating_sub(SHOWN);
    match (batches.len(), more) {
        (1, _) => format!("batch {}", names.join("")),
        (_, 0) => format!("{} batches: {}", batches.len(), names.join(", ")),
        (n, more) => format!("{n} batches: {} and {more} more", names.join(", ")),
    }
}

impl ConfigError {
    /// The key the error is about, if one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Template { key, .. }
            | ConfigError::BadType { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::OverPolicy { key, .. }
            | ConfigError::BadCron { key, .. } => Some(key),
            ConfigError::InBatches { error, .. } => error.key(),
            _ => None,
        }
    }

    /// The files the error is about (a batch that fails to load is kept at
    /// its last good version by hot reload when its file is named here).
    pub fn files(&self) -> Vec<&std::path::Path> {
        match self {
            ConfigError::MissingFolder { dir } => vec![dir],
            ConfigError::DuplicateBatch { files, .. } => {
                files.iter().map(PathBuf::as_path).collect()
            }
            ConfigError::Io { file, .. }
            | ConfigError::Yaml { file, .. }
            | ConfigError::NotAMapping { file }
            | ConfigError::MissingBatchName { file }
            | ConfigError::Template { file, .. }
            | ConfigError::BadType { file, .. }
            | ConfigError::BadValue { file, .. }
            | ConfigError::OverPolicy { file, .. }
            | ConfigError::BadCron { file, .. } => vec![file],
            ConfigError::InBatches { error, .. } => error.files(),
        }
    }
}
