//! Rows DuckDB makes itself: the engine's own write rate, with no Arrow and
//! no appender in the way, which `sandstack bench store` prints beside the
//! Arrow append it measures.

use super::metrics::ensure_table;
use super::DuckStore;
use crate::store::error::db_err;
use crate::store::StoreError;
use crate::store::TableKey;

impl DuckStore {
    /// Insert `rows` metrics rows over `metrics` names (one timestamp per
    /// second per name, random values, batch `batch`) into `table_key`, in
    /// one statement. Returns the rows inserted.
    pub fn insert_generated(
        &self,
        table_key: &TableKey,
        batch: &str,
        rows: u64,
        metrics: u64,
    ) -> Result<usize, StoreError> {
        let key = ensure_table(self.connection(), table_key)?;
        let metrics = metrics.max(1);
        let sql = format!(
            "INSERT INTO {} SELECT TIMESTAMP '2026-01-01' + to_seconds(i // {metrics}), ?, \
             'metric_' || (i % {metrics}), 'metric', random(), NULL FROM range({rows}) t(i)",
            key.quoted()
        );
        self.connection()
            .execute(&sql, [batch])
            .map_err(db_err(format!("inserting generated rows into {table_key}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_rows::key;
    use crate::store::MetricsStore;

    #[test]
    fn generates_the_rows_asked_for_over_the_names_asked_for() {
        let s = DuckStore::in_memory().expect("db");
        assert_eq!(
            s.insert_generated(&key("g"), "b", 1000, 7).expect("insert"),
            1000
        );
        assert_eq!(s.count_rows(&key("g")).expect("count"), 1000);
        let names: i64 = s
            .connection()
            .query_row("SELECT count(DISTINCT metric_name) FROM g", [], |r| {
                r.get(0)
            })
            .expect("names");
        assert_eq!(names, 7);
    }
}
