//! The jobs a batch runs. Each job reads a [`crate::config::BatchSpec`] and
//! works against the [`crate::store::Store`].

pub mod ingest;
