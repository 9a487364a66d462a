//! Integration tests (one binary, a module per area), run with the real model.
//! The model is resolved like users resolve it (`models/`, HF cache, pip) and
//! loaded once per test binary. Tests that need `../shared/data` are ignored
//! with a reason; `.ci/run` runs them (`cargo test --release --features eval --
//! --ignored`).

mod a2a;
mod agents;
mod audit;
mod auth;
mod bad_input;
mod board;
mod common;
mod compat;
mod concurrency;
mod conformance;
mod context;
mod crash;
mod e2e;
mod embedding;
mod engine;
#[cfg(feature = "eval")]
mod eval;
mod events;
mod http;
mod mcp;
mod nodes;
mod pg;
mod server;
mod summarize;
mod telemetry;
