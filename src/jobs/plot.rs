//! The plot job: one PNG per metric of a batch, drawn from `plot_sql`'s
//! rows, and those rows for the plots alert messages attach.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::rows::{load_input, JobError};
use crate::config::{BatchSpec, Job};
use crate::domain::Series;
use crate::drawing::{self, DrawError};
use crate::file_names::file_stem;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Rows(#[from] JobError),
    #[error("batch {batch}: {source}")]
    Draw {
        batch: String,
        #[source]
        source: DrawError,
    },
    #[error("cannot write the plots to {path}: {source}", path = path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `plot_sql`'s rows by metric.
pub fn series(spec: &BatchSpec, store: &Store) -> Result<BTreeMap<String, Series>, JobError> {
    load_input(spec, store, Job::Plot, None)
        .map(|input| {
            let mut series = input.series;
            series.values_mut().for_each(Series::mark_alerts_at_drivers);
            series
        })
        .map_err(JobError::of(spec))
}

/// Write one PNG per metric of the batch to `dir/<batch>/<metric>.png`;
/// returns the files written.
pub fn write_plots(spec: &BatchSpec, store: &Store, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let series = series(spec, store)?;
    let folder = dir.join(file_stem(&spec.metric_batch));
    std::fs::create_dir_all(&folder).map_err(|source| PlotError::Write {
        path: folder.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (metric, s) in &series {
        let png = drawing::render_png(&spec.metric_batch, metric, s, spec.alert.threshold)
            .map_err(|source| PlotError::Draw {
                batch: spec.metric_batch.clone(),
                source,
            })?;
        let path = folder.join(format!("{}.png", file_stem(metric)));
        std::fs::write(&path, png).map_err(|source| PlotError::Write {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}
