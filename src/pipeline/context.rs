//! What a job runs with beyond its batch's spec: where its side effects go
//! and how an llmalert run goes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::alerts::Channels;
use crate::jobs::ingest::recording::CassetteOptions;

/// Where a job's side effects go.
pub struct JobContext<'a> {
    /// What `local://` model paths are relative to.
    pub model_base: &'a Path,
    /// Where the plot job writes its PNGs.
    pub plot_dir: &'a Path,
    /// Alert channels; None sends nothing (backfills).
    pub channels: Option<&'a Channels>,
    /// The operator's environment: the chat model llmalert calls.
    pub env: &'a BTreeMap<String, String>,
    /// How llmalert runs.
    pub llmalert: LlmAlertMode,
}

/// How an llmalert run goes, beyond the batch's settings.
#[derive(Debug, Clone, Default)]
pub struct LlmAlertMode {
    /// Where it records or replays its exchanges.
    pub cassette: Option<CassetteOptions>,
    /// Ask nothing; preview the questions.
    pub dry_run: bool,
}
