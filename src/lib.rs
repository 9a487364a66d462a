//! # memoryd
//!
//! Semantic conversation memory for AI agents: every message is embedded by a
//! local BERT model (our own forward pass; candle's `BertModel` is the reference
//! oracle), persisted behind a storage seam (sled by default), and searched by
//! hybrid ranking: cosine similarity (exact SIMD scan for small namespaces, an
//! HNSW graph from `hnsw_rs` for large ones) fused with per-namespace BM25
//! ([`search`]). A bounded short-term buffer per namespace keeps the most recent
//! messages, which are summarized into long-term memory in the background
//! ([`policy`]). Every change is recorded in a per-namespace change log.
//!
//! The [`Engine`] is the only API: the HTTP server, the CLI and future protocol
//! adapters are thin layers over it. Every operation takes the caller's
//! [`Access`]. `ARCHITECTURE.md` maps the modules.
//!
//! ```no_run
//! use memoryd::{Access, Engine, EngineConfig, NewMessage, Role, SearchRequest};
//!
//! # async fn demo() -> memoryd::Result<()> {
//! let engine = Engine::open(EngineConfig::with_data_dir("/tmp/memoryd-demo"))?;
//! let me = Access::full();
//! engine
//!     .add(&me, "user-42", NewMessage::new(Role::User, "I adopted a greyhound named Pixel").with_name("Ana"))
//!     .await?;
//! let results = engine.search(&me, "user-42", SearchRequest::text("what pet does Ana have?", 5)).await?;
//! println!("{} ({:.3})", results.hits[0].text(), results.hits[0].score);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod a2a;
pub mod core;
pub mod embed;
pub mod engine;
#[cfg(feature = "eval")]
pub mod eval;
pub mod locomo;
pub mod mcp;
pub mod policy;
pub mod search;
pub mod server;
pub mod simd;
pub mod storage;
pub mod summarize;
pub mod telemetry;

pub use crate::core::access::{Access, NamespaceName, NamespacePattern, Scope, validate_namespace};
pub use crate::core::agents::{
    AckState, AgentFilter, AgentMatch, AgentPage, AgentRecord, AgentStatus, InboxAck, InboxPage,
    Mail, NewMail,
};
pub use crate::core::board::{
    BoardItem, NewProblem, NewProposal, NewVote, Problem, ProblemDetail, ProblemStatus, Proposal,
    Resolution, Resolve,
};
pub use crate::core::context::{ContextEntry, ContextOp, ContextVersion, ContextWrite};
pub use crate::core::error::{Error, ErrorKind, Result};
/// API-key helpers (token format, durations).
pub use crate::core::keys;
pub use crate::core::keys::{ApiKey, CreatedKey, NewKey};
pub use crate::core::params::{Bm25Params, HybridParams, IndexConfig};
pub use crate::core::redact::Redaction;
pub use crate::core::types::{
    Filter, Hit, HitKind, Interaction, Message, NamespaceInfo, NewMessage, Query, Role, SearchMode,
    SearchRequest, SearchResults, SearchScope, Summary,
};
pub use embed::{Embedder, Embeddings, ModelInfo};
pub use engine::{
    AuditPage, AuditQuery, AuditReport, CheckReport, ContextPage, Engine, EngineConfig, Event,
    EventCursor, EventFilter, EventPage, Limits, MessagePage, ModelConfig, ProblemPage, Stats,
    SummarizeConfig, load_embedder,
};
pub use storage::{AuditEntry, Change, ChangeKind, PgStore, RecordStore, Retention, SledStore};
