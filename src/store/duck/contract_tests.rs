//! The storage contract (`store/contract.rs`) against DuckDB in memory.

use crate::store::contract;
use crate::store::Store;

fn store() -> Store {
    Store::in_memory().expect("an in-memory DuckDB")
}

#[test]
fn metrics_rows_round_trip_as_arrow() {
    contract::metrics_rows_round_trip_as_arrow(&mut store());
}

#[test]
fn a_batchs_sql_sees_and_deletes_only_its_own_rows() {
    contract::a_batchs_sql_sees_and_deletes_only_its_own_rows(&mut store());
}

#[test]
fn runs_and_pauses() {
    contract::runs_and_pauses(&mut store());
}

#[test]
fn feedback_only_on_a_stored_anomaly() {
    contract::feedback_only_on_a_stored_anomaly(&mut store());
}

#[test]
fn a_batchs_sql_runs_at_the_stores_clock() {
    contract::a_batchs_sql_runs_at_the_stores_clock(&mut store());
}
