//! Where files that belong to a database live, beside it.

/// `metrics.duckdb` keeps its `record_runs` cassettes in `metrics.cassettes/`.
pub(crate) fn cassette_dir(db: &std::path::Path) -> std::path::PathBuf {
    db.with_extension("cassettes")
}

/// `metrics.duckdb` keeps the plot job's PNGs in `metrics.plots/`.
pub(crate) fn plot_dir(db: &std::path::Path) -> std::path::PathBuf {
    db.with_extension("plots")
}
