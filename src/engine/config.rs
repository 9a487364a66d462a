//! Engine configuration: one struct per concern, each default written once, in
//! its `Default` impl (the CLI's flags fall back to these; see `main.rs`).

use std::path::PathBuf;
use std::time::Duration;

use crate::core::params::{HybridParams, IndexConfig};
use crate::embed::Backend;
use crate::embed::model::DEFAULT_MODEL;
use crate::storage::Retention;
use crate::summarize::LlmConfig;

/// Input limits. Requests over them fail with [`Error::TooLarge`] or
/// [`Error::InvalidInput`] and store nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Messages per `add_batch` call. Default 1,000.
    pub max_messages_per_request: usize,
    /// Bytes of UTF-8 per message content. Default 65,536.
    pub max_content_bytes: usize,
    /// Bytes per name, agent id or session id. Default 256.
    pub max_label_bytes: usize,
    /// Largest `k` of a search. Default 1,000.
    pub max_k: usize,
    /// Texts per `embed` call. Default 2,048.
    pub max_embed_inputs: usize,
    /// Bytes of a message's metadata as compact JSON. Default 16,384.
    pub max_metadata_bytes: usize,
    /// Nesting depth of a message's metadata (`{"a": 1}` is 1). Default 32.
    pub max_metadata_depth: usize,
    /// Bytes of a context value as compact JSON (after a merge patch too).
    /// Default 65,536.
    pub max_context_value_bytes: usize,
    /// Nesting depth of a context value. Default 32.
    pub max_context_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages_per_request: 1_000,
            max_content_bytes: 64 * 1024,
            max_label_bytes: 256,
            max_k: 1_000,
            max_embed_inputs: 2_048,
            max_metadata_bytes: 16 * 1024,
            max_metadata_depth: 32,
            max_context_value_bytes: 64 * 1024,
            max_context_depth: 32,
        }
    }
}

/// Which model to run and where its files are.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// A name from `models/manifest.toml` (default `all-MiniLM-L6-v2`).
    pub name: String,
    /// A sentence-transformers folder to use as is (overrides `name`'s resolution).
    pub model_dir: Option<PathBuf>,
    /// Where `<name>/` folders are unpacked. Default `models`.
    pub models_dir: PathBuf,
    /// Texts per forward pass. Default 32.
    pub batch_size: usize,
    /// Forward-pass implementation. Default [`Backend::Auto`] (the optimized one
    /// when it supports the model).
    pub backend: Backend,
    /// How the optimized forward pass stores its weights (f16 halves the bytes a
    /// query streams; arithmetic stays f32). Default `Auto`: f16 where the CPU
    /// has a SIMD f16 kernel (x86-64 with AVX-512F or AVX2 + F16C), else f32.
    pub weights: crate::embed::gemm::WeightFormat,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: DEFAULT_MODEL.into(),
            model_dir: None,
            models_dir: PathBuf::from("models"),
            batch_size: 32,
            backend: Backend::Auto,
            weights: crate::embed::gemm::WeightFormat::Auto,
        }
    }
}

/// Engine configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The data directory (sled lives in `<data_dir>/sled`). Default `memoryd-data`.
    pub data_dir: PathBuf,
    /// The embedding model.
    pub model: ModelConfig,
    /// Vector index parameters.
    pub index: IndexConfig,
    /// Messages kept in each namespace's short-term buffer. Default 100 (the
    /// design's `deque(maxlen=100)`).
    pub short_term_capacity: usize,
    /// Embedding requests that may wait before new ones get [`Error::Overloaded`].
    /// Default 256.
    pub embed_queue_capacity: usize,
    /// Texts of waiting requests merged into one forward pass. Default 64.
    pub embed_max_batch_texts: usize,
    /// Writes and background work (summaries) are embedded in slices of about
    /// this many tokens, so a search query waits for one slice, not for a whole
    /// import (see [`crate::embed::EmbedQueue`]). Default 256 (~40 ms here; batch
    /// throughput is flat from ~8 chat turns up).
    pub embed_slice_tokens: usize,
    /// Input limits.
    pub limits: Limits,
    /// Long-term memory: when and how windows of messages are summarized.
    pub summarize: SummarizeConfig,
    /// Weights of hybrid search (the default mode).
    pub hybrid: HybridParams,
    /// Query embeddings kept in an LRU cache, keyed by the exact query text
    /// (agents repeat queries). 0 disables it. Default 1,024 (~1.6 MiB at 384-d).
    pub query_cache_capacity: usize,
    /// How long the change log keeps entries (see [`Retention`]).
    pub change_retention: Retention,
    /// Versions kept in each context key's history (older ones are dropped as new
    /// ones land). `None` (default) keeps every version.
    pub context_history_versions: Option<u64>,
    /// Record context reads (get, list, history) in the audit log too, as
    /// `context.read` entries. Default false (every read would be a write).
    pub audit_reads: bool,
    /// A registered agent not heard from (heartbeat or registration) for this
    /// long is `unhealthy`. Default 120 s.
    pub agent_timeout: Duration,
    /// ... and for this long, `gone`. Default 20 min (10× the timeout).
    pub agent_gone_after: Duration,
    /// Save each namespace's HNSW graph under `<data_dir>/graphs` after it is
    /// built and as it grows, and reload it after open (in the background; exact
    /// scans meanwhile) instead of rebuilding it (`search::persist`). Default true.
    pub persist_graphs: bool,
    /// Where the state lives: `None` (default) for the embedded sled store in
    /// `<data_dir>/sled`, or a PostgreSQL URL (`postgres://user@host:port/db`,
    /// with the pgvector extension available; [`crate::storage::PgStore`]).
    /// Graph dumps stay under `data_dir` either way.
    pub store_url: Option<String>,
    /// On a store shared by several nodes (PostgreSQL): how often this node
    /// polls the namespace registry for writes it was not notified of (a notice
    /// lost while its `LISTEN` connection was down). Notices themselves are
    /// followed at once. Default 5 s.
    pub follow_interval: Duration,
    /// With a store that ranks vectors itself (PostgreSQL + pgvector): keep
    /// each namespace's vectors and HNSW graph in this node's memory anyway, as
    /// with sled (faster searches; every node then needs RAM for every vector).
    /// Default false: the dense channel runs in the store
    /// ([`crate::search::store::StoreIndex`]). Ignored with sled.
    pub in_memory_index: bool,
}

/// When and how messages are summarized into long-term memory.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarizeConfig {
    /// Summarize in the background when a trigger fires. Default true.
    /// [`Engine::summarize`] works either way.
    pub enabled: bool,
    /// Summarize once this many messages are unsummarized. Default 50 (the design's).
    pub every: usize,
    /// ... or once the oldest unsummarized message was stored this long ago. Default 1 h.
    pub after: Duration,
    /// How often the background task checks the triggers. Default 1 s.
    pub tick: Duration,
    /// Delete summarized messages (text and vector) in the transaction that writes
    /// their summary. Default false: they stay searchable (episodic memory).
    pub evict_summarized: bool,
    /// Use an OpenAI-compatible chat endpoint (falling back to extractive on any
    /// failure) instead of the extractive summarizer.
    pub llm: Option<LlmConfig>,
}

impl Default for SummarizeConfig {
    fn default() -> Self {
        SummarizeConfig {
            enabled: true,
            every: 50,
            after: Duration::from_secs(3600),
            tick: Duration::from_secs(1),
            evict_summarized: false,
            llm: None,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("memoryd-data"),
            model: ModelConfig::default(),
            index: IndexConfig::default(),
            short_term_capacity: 100,
            embed_queue_capacity: 256,
            embed_max_batch_texts: 64,
            embed_slice_tokens: 256,
            limits: Limits::default(),
            summarize: SummarizeConfig::default(),
            hybrid: HybridParams::default(),
            query_cache_capacity: 1024,
            change_retention: Retention::default(),
            context_history_versions: None,
            audit_reads: false,
            agent_timeout: Duration::from_secs(120),
            agent_gone_after: Duration::from_secs(1200),
            persist_graphs: true,
            store_url: None,
            follow_interval: Duration::from_secs(5),
            in_memory_index: false,
        }
    }
}

impl EngineConfig {
    /// Defaults with the given data directory.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            ..Default::default()
        }
    }
}
