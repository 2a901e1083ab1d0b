//! The jobs a batch runs, each reading a [`crate::config::BatchSpec`] and
//! working against the [`crate::store::Store`]: [`ingest`] stores metrics,
//! [`train`] fits models, [`score`] writes anomaly scores, [`alert`] and
//! [`change`] write judgements, [`plot`] draws each metric, [`maintenance`]
//! deletes old rows and summarises; [`rows`] holds what they share.

pub mod alert;
pub mod change;
pub mod features;
pub mod import;
pub mod ingest;
pub mod llmalert;
pub mod maintenance;
pub mod plot;
pub mod rows;
pub mod score;
pub mod train;
