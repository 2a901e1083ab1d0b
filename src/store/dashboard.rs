//! What the dashboard reads across batches (card figures, anomalies with
//! their votes) and writes (feedback rows, `thumbsup` / `thumbsdown`, as
//! Anomstack stores them).

use crate::store::TableKey;
use std::collections::BTreeMap;

use super::StoreError;
use crate::domain::MetricType;

/// One batch's home-page card figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CardFigures {
    pub metrics: i64,
    pub last_metric_us: Option<i64>,
    pub alerts_24h: i64,
    pub mean_score_24h: Option<f64>,
}

/// One alert, threshold alert or change, with its feedback counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub batch: String,
    pub metric: String,
    pub kind: MetricType,
    pub timestamp_us: i64,
    pub metadata: Option<String>,
    pub up: i64,
    pub down: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Up,
    Down,
}

impl Vote {
    pub fn metric_type(self) -> MetricType {
        match self {
            Vote::Up => MetricType::ThumbsUp,
            Vote::Down => MetricType::ThumbsDown,
        }
    }
}

pub trait DashboardStore {
    /// Card figures for every batch stored in `table_key`.
    fn card_figures(
        &self,
        table_key: &TableKey,
    ) -> Result<BTreeMap<String, CardFigures>, StoreError>;

    /// Anomalies of the given (table_key, batch) pairs, newest first.
    fn anomalies(
        &self,
        batches: &[(&TableKey, &str)],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Anomaly>, StoreError>;

    /// Store one vote on an anomaly; returns the vote's new count, or None
    /// when there is no such anomaly.
    fn record_feedback(
        &mut self,
        table_key: &TableKey,
        batch: &str,
        metric: &str,
        timestamp_us: i64,
        vote: Vote,
    ) -> Result<Option<i64>, StoreError>;
}
