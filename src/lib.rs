//! sandstack: Anomstack-compatible metric ingest, anomaly detection and
//! alerting in one binary, with user Python run in a WebAssembly sandbox.
//!
//! A metric row's path, by module: [`config`] reads a batch's YAML into a
//! `BatchSpec`; [`scheduler`] decides when each job runs and [`pipeline`]
//! runs it (for the command line and backfill too); [`jobs::ingest`] gets
//! its rows from the batch's SQL (or a [`warehouse`] it names) or from the [`sandbox`] (CPython in
//! wasmtime), normalises them, and hands them to [`store`] (DuckDB or
//! PostgreSQL, one table per `table_key`, the batch's SQL confined to its own
//! rows); [`models`] fit and score, and [`alerts`] delivers what the jobs
//! found. ARCHITECTURE.md has the floors and where each thing happens.

pub mod alerts;
pub mod cassette;
pub mod child;
pub mod cli;
pub mod config;
pub mod domain;
pub mod drawing;
pub mod escape;
pub mod file_names;
pub mod folder_tests;
pub mod jobs;
pub mod llm;
pub mod models;
pub mod outbound;
pub mod pipeline;
pub mod sandbox;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod warehouse;
pub mod web;
