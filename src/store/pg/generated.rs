//! Rows PostgreSQL makes itself (the server's own write rate, with no COPY
//! from the client), which `sandstack bench store` prints beside the COPY
//! it measures; and dropping the bench's scratch schema.

use super::{pg_err, quoted, PgStore};
use crate::store::{StoreError, TableKey};

impl PgStore {
    /// Insert `rows` metrics rows over `metrics` names into `table_key` in
    /// one statement; returns the rows inserted.
    pub fn insert_generated(
        &self,
        table_key: &TableKey,
        batch: &str,
        rows: u64,
        metrics: u64,
    ) -> Result<usize, StoreError> {
        let t = quoted(self.ensure_table(table_key)?);
        let (rows, metrics) = (rows as i64, metrics.max(1) as i64);
        let sql = format!(
            "INSERT INTO {t} SELECT TIMESTAMP '2026-01-01' + (i / $2::bigint) * INTERVAL '1 second', $3::text, \
             'metric_' || (i % $2::bigint), 'metric', random(), NULL FROM generate_series(0::bigint, $1::bigint - 1) AS i"
        );
        self.conn()?
            .execute(&sql, &[&rows, &metrics, &batch])
            .map(|n| n as usize)
            .map_err(pg_err(format!("inserting generated rows into {table_key}")))
    }

    /// Drop a schema and everything in it (the bench's scratch schema).
    pub fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        let key = TableKey::parse(&format!("{schema}.x"))?;
        let name = quoted(&key);
        let schema = name.split('.').next().unwrap_or_default();
        self.known_tables().clear();
        self.conn()?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .map_err(pg_err(format!("dropping schema {schema}")))
    }
}
