//! The hiring domain: the data contract and its rules (`validate`, `batch`), a streaming CSV
//! decoder (`decode`), rejects, loads into PostgreSQL (`load`, streamed through `pump`), the
//! pipeline's two steps (`pipeline`) and the ingestions' lifecycle (`lifecycle`, read through `ingestions`), the two
//! metrics, the storage zones (`zones`), Parquet output (`processed`), AVRO backups (`backup`)
//! and the settings the API and the functions share (`settings`).
//!
//! This crate knows nothing of HTTP, Lambda or CloudFormation; the API and the pipeline
//! functions call into it.

pub mod avro_blocks;
pub mod backup;
pub mod batch;
pub mod decode;
pub mod error;
pub mod faults;
pub mod ingestions;
pub mod lifecycle;
pub mod load;
pub mod metrics;
pub mod pipeline;
mod presign;
pub mod processed;
pub mod pump;
pub mod reject;
pub mod settings;
pub mod table;
pub mod validate;
pub mod zones;

/// The schema migrations, embedded at compile time; run them with `MIGRATOR.run(&pool)`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
