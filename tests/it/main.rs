//! sandstack's integration tests, in one binary (each file under tests/
//! would otherwise link the whole stack again).

mod support;

mod alert_delivery;
mod anomstack_compat;
mod backtest;
mod batch_text;
mod bench;
mod bundle;
mod cassettes;
mod config_folder;
mod confinement;
mod dashboard;
mod detection;
mod fleet;
mod folder_tests;
mod hostile;
mod import;
mod ingest_sql;
mod kill;
mod layers;
mod llmalert;
mod loader;
mod model_stores;
mod operating;
mod policy;
mod residue;
mod sandbox_door;
mod sandbox_hackernews;
mod sandbox_http;
mod sandbox_limits;
mod sandbox_runs;
mod scheduler;
mod scheduler_soak;
mod secrets;
mod sql_templates;
mod warehouse;
