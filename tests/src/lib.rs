//! Support for the black-box tests in `tests/` (each subdirectory there is one test binary):
//! [`moto`], the AWS emulator as a per-test fixture.

pub mod moto;
