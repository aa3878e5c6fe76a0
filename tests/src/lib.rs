//! Support for the black-box tests in `tests/` (each subdirectory there is one test binary):
//! [`moto`], the AWS emulator as a per-test fixture, and [`lambda`], the Lambda Runtime API
//! emulator that runs the built function binaries.

pub mod lambda;
pub mod moto;
mod server;
