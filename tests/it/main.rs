//! Integration tests (one binary, a module per area), run with the real model.
//! The model is resolved like users resolve it (`models/`, HF cache, pip) and
//! loaded once per test binary.

mod bad_input;
mod common;
mod concurrency;
mod crash;
mod e2e;
mod embedding;
mod engine;
mod eval;
mod http;
mod server;
mod summarize;
