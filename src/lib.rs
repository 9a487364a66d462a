//! # memoryd
//!
//! Semantic conversation memory for AI agents: every message is embedded by a
//! local BERT model run with candle, persisted in sled, and searched by hybrid
//! ranking: cosine similarity (exact SIMD scan for small namespaces, an HNSW graph
//! from `hnsw_rs` for large ones) fused with per-namespace BM25 ([`lexical`],
//! [`hybrid`]); `SearchMode::Dense` and `SearchMode::Lexical` rank by one channel.
//! A bounded short-term buffer per namespace keeps the most recent messages.
//!
//! The [`Engine`] is the only API: the HTTP server, the CLI and future protocol
//! adapters are thin layers over it.
//!
//! ```no_run
//! use memoryd::{Engine, EngineConfig, NewMessage, Role, SearchRequest};
//!
//! # async fn demo() -> memoryd::Result<()> {
//! let engine = Engine::open(EngineConfig::with_data_dir("/tmp/memoryd-demo"))?;
//! engine
//!     .add("user-42", NewMessage::new(Role::User, "I adopted a greyhound named Pixel").with_name("Ana"))
//!     .await?;
//! let results = engine.search("user-42", SearchRequest::text("what pet does Ana have?", 5)).await?;
//! println!("{} ({:.3})", results.hits[0].text(), results.hits[0].score);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod hybrid;
pub mod index;
pub mod lexical;
pub mod locomo;
pub mod model;
pub mod server;
pub mod simd;
pub mod store;
pub mod summarize;
pub mod types;

pub use embed::{Embedder, Embeddings, ModelInfo};
pub use engine::{
    CheckReport, Engine, EngineConfig, Limits, MessagePage, ModelConfig, Stats, SummarizeConfig,
    load_embedder,
};
pub use error::{Error, ErrorKind, Result};
pub use index::IndexConfig;
pub use types::{
    Filter, Hit, HitKind, HybridParams, Interaction, Message, NamespaceInfo, NewMessage, Query,
    Role, SearchMode, SearchRequest, SearchResults, Summary, validate_namespace,
};
