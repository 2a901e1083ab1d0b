//! Anomaly models and the features they are fed. So far: the native
//! preprocess step (see [`preprocess`]); the models themselves come next.

pub mod preprocess;
