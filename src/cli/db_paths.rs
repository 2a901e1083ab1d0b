//! Where files that belong to a database live: beside a DuckDB file, or,
//! for a shared store (a PostgreSQL URL), in this worker's working
//! directory (`sandstack.cassettes/`, `sandstack.plots/`).

use std::path::PathBuf;

use crate::store::DbTarget;

/// The stem files beside `db` are named after.
fn stem(db: &DbTarget) -> PathBuf {
    match db {
        DbTarget::File(path) => path.clone(),
        DbTarget::Postgres(_) => PathBuf::from("sandstack"),
    }
}

/// `metrics.duckdb` keeps its `record_runs` cassettes in `metrics.cassettes/`.
pub(crate) fn cassette_dir(db: &DbTarget) -> PathBuf {
    stem(db).with_extension("cassettes")
}

/// `metrics.duckdb` keeps the plot job's PNGs in `metrics.plots/`.
pub(crate) fn plot_dir(db: &DbTarget) -> PathBuf {
    stem(db).with_extension("plots")
}
