//! hiring-api
fn main() {}
