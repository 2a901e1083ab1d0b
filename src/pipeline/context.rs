//! What a job runs with beyond its batch's spec: where its side effects go,
//! the sandboxes Python ingests run in, and how this one run goes (a
//! cassette, a dry run, a simulated clock).

use std::collections::BTreeMap;
use std::path::Path;

use crate::alerts::Channels;
use crate::jobs::ingest::recording::CassetteOptions;
use crate::jobs::ingest::SandboxSource;

/// Where a job's side effects go.
pub struct JobContext<'a> {
    /// What `local://` model paths are relative to.
    pub model_base: &'a Path,
    /// Where the plot job writes its PNGs.
    pub plot_dir: &'a Path,
    /// Alert channels; None sends nothing (backfills).
    pub channels: Option<&'a Channels>,
    /// The operator's environment: a batch's `ingest_env` picks from it,
    /// llmalert finds its chat model in it.
    pub env: &'a BTreeMap<String, String>,
    /// Where Python ingests get their sandbox.
    pub sandboxes: &'a dyn SandboxSource,
    /// A scheduled summary's batches (the folder's one summary covers them
    /// all); empty: the batch alone.
    pub peers: &'a [std::sync::Arc<crate::config::BatchSpec>],
    /// How this run goes.
    pub mode: RunMode,
}

impl JobContext<'_> {
    /// The same context, with the clock at `at_us` (a backfill's period).
    pub fn at(&self, at_us: i64) -> JobContext<'_> {
        JobContext {
            mode: RunMode {
                simulated_now_us: Some(at_us),
                ..self.mode.clone()
            },
            ..*self
        }
    }
}

/// How one run goes, beyond the batch's settings.
#[derive(Debug, Clone, Default)]
pub struct RunMode {
    /// Where ingest (Python batches) or llmalert records or replays its
    /// exchanges.
    pub cassette: Option<CassetteOptions>,
    /// Ingest: run and validate, store nothing. llmalert: ask nothing,
    /// preview the questions.
    pub dry_run: bool,
    /// Run as if it were this instant (µs since the epoch): backfills,
    /// missed ticks caught up, `--at`, replays. Ingest stamps its rows with
    /// it; every job's SQL reads it as `now()` (see `Store::set_clock`).
    pub simulated_now_us: Option<i64>,
}
