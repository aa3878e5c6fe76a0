//! `sqlx::migrate!` embeds `migrations/` when this crate compiles, and cargo does not know the
//! macro read that folder: without this, a migration added without touching any Rust file is
//! missing from the build (sqlx's documented remedy:
//! https://docs.rs/sqlx/latest/sqlx/macro.migrate.html).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
