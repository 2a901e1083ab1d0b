//! sandstack: Anomstack-compatible metric ingest, anomaly detection and
//! alerting in one binary, with user Python run in a WebAssembly sandbox.
//!
//! A metric row's path, by module: [`config`] reads a batch's YAML into a
//! `BatchSpec`; [`jobs::ingest`] gets its rows from DuckDB SQL or from the
//! [`sandbox`] (CPython in wasmtime), normalises them, and hands them to
//! [`store`], one long DuckDB table per `table_key`. [`models`] turns stored
//! metrics into model features.

pub mod alerts;
pub mod child;
pub mod cli;
pub mod config;
pub mod domain;
pub mod drawing;
pub mod escape;
pub mod file_names;
pub mod jobs;
pub mod llm;
pub mod models;
pub mod pipeline;
pub mod sandbox;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod web;
