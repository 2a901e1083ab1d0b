//! Where files that belong to a database live: beside a DuckDB file, or,
//! for a shared store (a PostgreSQL URL), in this worker's working
//! directory (`sandstack.cassettes/`, `sandstack.plots/`).

/// The stem files beside `db` are named after.
fn stem(db: &std::path::Path) -> std::path::PathBuf {
    if super::is_shared_db(db) {
        std::path::PathBuf::from("sandstack")
    } else {
        db.to_path_buf()
    }
}

/// `metrics.duckdb` keeps its `record_runs` cassettes in `metrics.cassettes/`.
pub(crate) fn cassette_dir(db: &std::path::Path) -> std::path::PathBuf {
    stem(db).with_extension("cassettes")
}

/// `metrics.duckdb` keeps the plot job's PNGs in `metrics.plots/`.
pub(crate) fn plot_dir(db: &std::path::Path) -> std::path::PathBuf {
    stem(db).with_extension("plots")
}
