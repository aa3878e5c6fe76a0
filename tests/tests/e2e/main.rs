//! End-to-end tests of `hiring-api` through HTTP, each against its own PostgreSQL database
//! (`#[sqlx::test]` creates one per test on the server in `DATABASE_URL`).
//!
//! Run them with `cargo xtask test`, which finds or starts PostgreSQL first.

mod analytics;
mod auth;
mod backup;
mod batch;
mod connections;
mod functions;
mod helpers;
mod load;
mod metrics;
mod misuse;
mod openapi;
mod pool;
mod processed;
mod report;
mod rules;
mod upload;
mod uploads;
