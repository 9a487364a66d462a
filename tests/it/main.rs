//! Integration tests (one binary, a module per area), run with the real model.
//! The model is resolved like users resolve it (`models/`, HF cache, pip) and
//! loaded once per test binary.

mod common;
mod embedding;
mod engine;
