//! Support for the black-box tests in `tests/` (each subdirectory there is one test binary):
//! [`moto`], the AWS emulator as a per-test fixture, and [`lambda`], the Lambda Runtime API
//! emulator that runs the built function binaries; [`server`] starts any local HTTP server on a
//! free port (`cargo xtask test-local` starts `hiring-api` with it); [`pg`] finds or starts
//! PostgreSQL (for xtask's `dev`, `test` and `bench` too) and runs clusters that tests restart.

pub mod lambda;
pub mod moto;
pub mod pg;
pub mod server;
