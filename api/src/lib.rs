//! The hiring HTTP API.
