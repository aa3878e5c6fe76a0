//! The hiring domain: the data contract and its rules, a streaming CSV decoder, rejects,
//! the PostgreSQL repository (file loads, batches, ingestions) and the two metrics.
//!
//! This crate knows nothing of HTTP, Lambda or CloudFormation; the API and the pipeline
//! functions call into it.

pub mod backup;
pub mod batch;
pub mod decode;
pub mod error;
pub mod ingestions;
pub mod load;
pub mod metrics;
pub mod pipeline;
pub mod processed;
pub mod pump;
pub mod reject;
pub mod settings;
pub mod table;
pub mod validate;
pub mod zones;

/// The schema migrations, embedded at compile time; run them with `MIGRATOR.run(&pool)`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
