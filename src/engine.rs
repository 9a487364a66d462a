//! The engine: the public API every front end calls.
//!
//! Write path: validate → embed (model thread, bounded queue) → one sled
//! transaction + flush → index and short-term buffer. Read path: embed the query →
//! exact scan or HNSW (off the runtime, `spawn_blocking`) → fetch records.
//!
//! # Durability
//! [`Engine::add`], [`Engine::add_batch`], [`Engine::add_interaction`],
//! [`Engine::delete`] and [`Engine::delete_namespace`] return only after sled has
//! flushed the change to disk: an acknowledged write survives `kill -9`. A batch
//! is one transaction (all or nothing) and one flush (group commit). Indexes are
//! rebuilt from the store on open, so they always agree with it.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::embed::{
    Backend, BertEmbedder, BertOptions, EmbedQueue, Embedder, Embeddings, ModelInfo, Priority,
    l2_normalize,
};
use crate::error::{Error, Result};
use crate::index::{IndexConfig, NamespaceIndex, RowFilter, Scored};
use crate::lexical::LexicalIndex;
use crate::model::{DEFAULT_MODEL, ModelResolver};
use crate::store::{NewRecord, Store, parse_id};
use crate::summarize::{Extractive, LlmConfig, OpenAiChat, Summarizer, SummaryInput, WithFallback};
use crate::types::{
    Filter, Hit, HitKind, HybridParams, Interaction, Message, NamespaceInfo, NewMessage, Query,
    Role, SearchMode, SearchRequest, SearchResults, Summary, validate_namespace,
};

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

/// Counts describing the engine's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Model id.
    pub model: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Stored messages across namespaces.
    pub messages: usize,
    /// Summaries across namespaces.
    pub summaries: usize,
    /// Namespaces with at least one message.
    pub namespaces: usize,
    /// Namespaces searched through an HNSW graph.
    pub graph_namespaces: usize,
    /// Embedding requests waiting or running.
    pub embed_queue_depth: usize,
    /// Bytes the store occupies on disk.
    pub disk_bytes: u64,
}

/// One page of [`Engine::list`].
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct MessagePage {
    /// Messages, oldest first.
    pub messages: Vec<Message>,
    /// Cursor of the next page (opaque); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What [`Engine::check`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckReport {
    /// The store's own cross-check.
    pub store: crate::store::StoreCheck,
    /// Messages in the vector indexes.
    pub indexed_messages: usize,
    /// Summaries in the vector indexes.
    pub indexed_summaries: usize,
    /// Every inconsistency (the store's and index-versus-store); empty when sound.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when nothing is inconsistent.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Namespace {
    name: String,
    /// Unsummarized messages in seq order: (seq, insertion time in ms since the epoch).
    pending: Mutex<VecDeque<(u64, i64)>>,
    /// One summarization at a time per namespace.
    summarizing: tokio::sync::Mutex<()>,
    /// Every message with seq at or below this is summarized.
    summarized_upto: std::sync::atomic::AtomicU64,
    index: RwLock<NamespaceIndex>,
    /// BM25 over the same messages and summaries. Lock order: `index` before `lexical`.
    lexical: RwLock<LexicalIndex>,
    /// Newest at the back; seqs of the last `short_term_capacity` messages.
    recent: Mutex<VecDeque<u64>>,
    /// Serializes writes (store then index) so the index replays the store's order.
    writer: Mutex<()>,
    /// Set, under `writer`, when the namespace is deleted.
    deleted: AtomicBool,
    rebuilding: AtomicBool,
}

struct Inner {
    config: EngineConfig,
    summarizer: Box<dyn Summarizer>,
    store: Store,
    /// Write lane (messages, explicit embedding requests).
    embed: EmbedQueue,
    /// Query lane (search queries).
    query_embed: EmbedQueue,
    /// Background lane (summarization).
    background_embed: EmbedQueue,
    info: ModelInfo,
    namespaces: RwLock<BTreeMap<String, Arc<Namespace>>>,
    /// Query text → unit query vector `[dim]`.
    query_cache: Option<Mutex<lru::LruCache<String, Arc<[f32]>>>>,
}

/// The memory engine. Cheap to clone (an `Arc`); every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Loads the configured model (resolving and verifying its files).
///
/// # Errors
/// [`Error::ModelUnavailable`] when the files cannot be found, fetched or loaded.
pub fn load_embedder(model: &ModelConfig) -> Result<Arc<dyn Embedder>> {
    let resolver = ModelResolver::new(&model.models_dir);
    let resolved = resolver.resolve(&model.name, model.model_dir.as_deref())?;
    let embedder = BertEmbedder::load(
        &resolved.dir,
        BertOptions {
            backend: model.backend,
            weights: model.weights,
            batch_size: model.batch_size,
            id: Some(resolved.id),
            ..BertOptions::default()
        },
    )?;
    tracing::info!(
        model = %embedder.info().id,
        forward_pass = embedder.forward_pass(),
        "embedding model loaded"
    );
    Ok(Arc::new(embedder))
}

impl Engine {
    /// Resolves and loads the model, opens the store and rebuilds the indexes.
    /// Blocking (seconds): call it before starting the runtime or in `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::ModelUnavailable`], [`Error::ModelMismatch`], [`Error::Storage`],
    /// [`Error::Corrupt`].
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let embedder = load_embedder(&config.model)?;
        Engine::open_with_embedder(config, embedder)
    }

    /// Like [`Engine::open`] with an already loaded model (several engines may share one).
    ///
    /// # Errors
    /// [`Error::ModelMismatch`], [`Error::Storage`], [`Error::Corrupt`];
    /// [`Error::InvalidInput`] for hybrid weights out of range.
    pub fn open_with_embedder(config: EngineConfig, embedder: Arc<dyn Embedder>) -> Result<Engine> {
        let started = Instant::now();
        config.hybrid.validate()?;
        let info = embedder.info().clone();
        let store = Store::open(&config.data_dir)?;
        store.check_or_init_meta(&info)?;
        let embed = EmbedQueue::start(
            embedder,
            config.embed_queue_capacity,
            config.embed_max_batch_texts,
            config.embed_slice_tokens,
        );
        let summarizer: Box<dyn Summarizer> = match &config.summarize.llm {
            Some(llm) => Box::new(WithFallback {
                primary: OpenAiChat::new(llm.clone())?,
                fallback: Extractive::default(),
            }),
            None => Box::new(Extractive::default()),
        };
        let query_cache = NonZeroUsize::new(config.query_cache_capacity)
            .map(|n| Mutex::new(lru::LruCache::new(n)));
        let inner = Inner {
            config,
            summarizer,
            store,
            query_embed: embed.with_priority(Priority::Query),
            background_embed: embed.with_priority(Priority::Background),
            embed,
            info,
            namespaces: RwLock::new(BTreeMap::new()),
            query_cache,
        };
        let mut count = 0usize;
        {
            let mut map = inner.namespaces.write();
            for name in inner.store.namespace_names()? {
                let ns = inner.new_namespace(&name);
                if let Some(rec) = inner.store.namespace_record(&name)? {
                    ns.summarized_upto
                        .store(rec.summarized_upto, Ordering::Relaxed);
                }
                map.insert(name, Arc::new(ns));
            }
            for item in inner.store.scan(inner.info.dim) {
                let (seq, message, vector) = item?;
                let ns = map
                    .entry(message.namespace.clone())
                    .or_insert_with(|| Arc::new(inner.new_namespace(&message.namespace)));
                ns.index.write().push(seq, &message, &vector);
                ns.lexical.write().push_message(seq, &message);
                push_recent(&mut ns.recent.lock(), seq, inner.config.short_term_capacity);
                if seq > ns.summarized_upto.load(Ordering::Relaxed) {
                    ns.pending.lock().push_back((seq, inserted_ms(&message.id)));
                }
                count += 1;
            }
            for item in inner.store.scan_summaries(inner.info.dim) {
                let (seq, summary, vector) = item?;
                let ns = map
                    .entry(summary.namespace.clone())
                    .or_insert_with(|| Arc::new(inner.new_namespace(&summary.namespace)));
                ns.index.write().push_summary(seq, &summary, &vector);
                ns.lexical.write().push_summary(seq, &summary);
            }
        }
        let engine = Engine {
            inner: Arc::new(inner),
        };
        for ns in engine.inner.namespaces.read().values() {
            if ns.index.read().needs_rebuild() {
                engine.inner.rebuild(ns);
            }
        }
        if engine.inner.config.summarize.enabled {
            start_scheduler(Arc::downgrade(&engine.inner));
        }
        tracing::info!(
            messages = count,
            namespaces = engine.inner.namespaces.read().len(),
            took_ms = started.elapsed().as_millis() as u64,
            "engine opened"
        );
        Ok(engine)
    }

    /// The model's identity and shape.
    pub fn model_info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Stores one message; returns it with its id and timestamp filled in.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::InvalidInput`], [`Error::TooLarge`],
    /// [`Error::Overloaded`], [`Error::Storage`].
    pub async fn add(&self, namespace: &str, message: NewMessage) -> Result<Message> {
        let mut out = self.add_batch(namespace, vec![message]).await?;
        Ok(out.remove(0))
    }

    /// Stores messages in one model call, one transaction and one flush; returns
    /// them in input order. All or nothing.
    ///
    /// # Errors
    /// As [`Engine::add`]; [`Error::InvalidInput`] for an empty batch.
    pub async fn add_batch(
        &self,
        namespace: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let built = self.build_messages(namespace, messages)?;
        self.store_messages(built).await
    }

    /// Like [`Engine::add_batch`] with embeddings computed elsewhere by this
    /// engine's model (an import, a migration): `embeddings` is `[messages.len(), dim]`
    /// row-major. Vectors are L2-normalized before storage. Mixing in vectors of
    /// another model silently ruins search: only use vectors from [`Engine::embed`]
    /// or the same model.
    ///
    /// # Errors
    /// As [`Engine::add_batch`]; [`Error::InvalidInput`] when `embeddings` has the
    /// wrong length or a row that is not finite and non-zero.
    pub async fn add_batch_with_embeddings(
        &self,
        namespace: &str,
        messages: Vec<NewMessage>,
        embeddings: Vec<f32>,
    ) -> Result<Vec<Message>> {
        let dim = self.inner.info.dim;
        if embeddings.len() != messages.len() * dim {
            return Err(Error::invalid(
                "embeddings",
                format!(
                    "expected {} values ({} messages x {dim})",
                    messages.len() * dim,
                    messages.len()
                ),
            ));
        }
        if let Some(i) = embeddings
            .chunks_exact(dim)
            .position(|r| !r.iter().all(|x| x.is_finite()) || r.iter().all(|x| *x == 0.0))
        {
            return Err(Error::invalid(
                format!("embeddings[{i}]"),
                "must be finite and non-zero",
            ));
        }
        let built = self.build_messages(namespace, messages)?;
        let tokens = vec![0; built.len()];
        let inner = self.inner.clone();
        let embeddings = Embeddings {
            data: embeddings,
            dim,
            tokens,
        };
        blocking(move || inner.persist(built, embeddings)).await
    }

    fn build_messages(&self, namespace: &str, messages: Vec<NewMessage>) -> Result<Vec<Message>> {
        validate_namespace(namespace)?;
        let limits = &self.inner.config.limits;
        if messages.is_empty() {
            return Err(Error::invalid("messages", "send at least one message"));
        }
        if messages.len() > limits.max_messages_per_request {
            return Err(Error::too_large(
                "messages",
                format!(
                    "{} messages in one request; the limit is {}: split the batch",
                    messages.len(),
                    limits.max_messages_per_request
                ),
            ));
        }
        for (i, m) in messages.iter().enumerate() {
            self.validate_message(i, m)?;
        }
        let now = to_micros(Utc::now());
        let built: Vec<Message> = messages
            .into_iter()
            .map(|m| Message {
                id: Uuid::now_v7().to_string(),
                namespace: namespace.to_owned(),
                role: m.role,
                name: m.name,
                content: m.content,
                timestamp: m.timestamp.map(to_micros).unwrap_or(now),
                agent_id: m.agent_id,
                session_id: m.session_id,
                exchange_id: None,
                metadata: m.metadata,
            })
            .collect();
        Ok(built)
    }

    /// Stores a user message and the agent's response sharing one `exchange_id`
    /// (the design's `add_interaction(agent_id, user_msg, agent_response, metadata)`).
    /// Returns `[user message, agent message]`.
    ///
    /// # Errors
    /// As [`Engine::add_batch`].
    pub async fn add_interaction(&self, namespace: &str, it: Interaction) -> Result<Vec<Message>> {
        let exchange = Uuid::now_v7().to_string();
        let ts = to_micros(it.timestamp.unwrap_or_else(Utc::now));
        let mut user = NewMessage::new(Role::User, it.user_message);
        user.name = it.user_name;
        user.timestamp = Some(ts);
        user.agent_id = it.agent_id.clone();
        user.session_id = it.session_id.clone();
        user.metadata = it.metadata.clone();
        let mut agent = NewMessage::new(Role::Assistant, it.agent_response);
        agent.name = it.agent_id.clone();
        agent.timestamp = Some(ts);
        agent.agent_id = it.agent_id;
        agent.session_id = it.session_id;
        agent.metadata = it.metadata;
        let mut built = self.build_messages(namespace, vec![user, agent])?;
        for m in &mut built {
            m.exchange_id = Some(exchange.clone());
        }
        self.store_messages(built).await
    }

    fn validate_message(&self, i: usize, m: &NewMessage) -> Result<()> {
        let limits = &self.inner.config.limits;
        let field = |f: &str| format!("messages[{i}].{f}");
        if m.content.trim().is_empty() {
            return Err(Error::invalid(
                field("content"),
                "must contain a non-whitespace character",
            ));
        }
        if m.content.len() > limits.max_content_bytes {
            return Err(Error::too_large(
                field("content"),
                format!(
                    "{} bytes; the limit is {}",
                    m.content.len(),
                    limits.max_content_bytes
                ),
            ));
        }
        check_controls(&field("content"), &m.content)?;
        for (name, v) in [
            ("name", &m.name),
            ("agent_id", &m.agent_id),
            ("session_id", &m.session_id),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > limits.max_label_bytes {
                    return Err(Error::invalid(
                        field(name),
                        format!("must be 1 to {} bytes", limits.max_label_bytes),
                    ));
                }
                check_controls(&field(name), v)?;
            }
        }
        let depth = json_depth(&m.metadata);
        if depth > limits.max_metadata_depth {
            return Err(Error::invalid(
                field("metadata"),
                format!(
                    "nests {depth} levels deep; the limit is {}",
                    limits.max_metadata_depth
                ),
            ));
        }
        if !m.metadata.is_empty() {
            let bytes = serde_json::to_vec(&m.metadata).map_or(usize::MAX, |b| b.len());
            if bytes > limits.max_metadata_bytes {
                return Err(Error::too_large(
                    field("metadata"),
                    format!(
                        "{bytes} bytes as JSON; the limit is {}",
                        limits.max_metadata_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn store_messages(&self, messages: Vec<Message>) -> Result<Vec<Message>> {
        let texts = messages.iter().map(Message::embedding_text).collect();
        let embeddings = self.inner.embed.embed(texts).await?;
        let inner = self.inner.clone();
        blocking(move || inner.persist(messages, embeddings)).await
    }

    /// The top-k messages most similar to the query in `namespace`, best first.
    /// An unknown namespace yields no hits.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`]; [`Error::InvalidInput`] for `k` outside
    /// `1..=max_k`, an empty time range, or a query vector of the wrong dimension,
    /// zero norm or non-finite values; [`Error::Overloaded`].
    pub async fn search(&self, namespace: &str, request: SearchRequest) -> Result<SearchResults> {
        let started = Instant::now();
        validate_namespace(namespace)?;
        let max_k = self.inner.config.limits.max_k;
        if request.k == 0 || request.k > max_k {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {max_k}"),
            ));
        }
        request.filter.validate()?;
        let params = request.hybrid.unwrap_or(self.inner.config.hybrid);
        params.validate()?;
        let (text, vector) = match request.query {
            Query::Text(text) => {
                if text.trim().is_empty() {
                    return Err(Error::invalid(
                        "query",
                        "must contain a non-whitespace character",
                    ));
                }
                if text.len() > self.inner.config.limits.max_content_bytes {
                    return Err(Error::too_large("query", "longer than the content limit"));
                }
                let vector = match request.mode {
                    SearchMode::Lexical => None,
                    _ => Some(self.query_vector(&text).await?),
                };
                (Some(text), vector)
            }
            Query::Vector(mut v) => {
                if request.mode == SearchMode::Lexical {
                    return Err(Error::invalid("mode", "lexical search needs a text query"));
                }
                if v.len() != self.inner.info.dim {
                    return Err(Error::invalid(
                        "vector",
                        format!(
                            "has {} values; the model's dimension is {}",
                            v.len(),
                            self.inner.info.dim
                        ),
                    ));
                }
                if !v.iter().all(|x| x.is_finite()) || l2_normalize(&mut v) == 0.0 {
                    return Err(Error::invalid("vector", "must be finite and non-zero"));
                }
                (None, Some(Arc::from(v)))
            }
        };
        let inner = self.inner.clone();
        let ns = namespace.to_owned();
        let mode = request.mode;
        let hits = blocking(move || {
            let q = RankQuery {
                text: text.as_deref(),
                vector: vector.as_deref(),
                mode,
                params,
            };
            inner.search(&ns, &q, request.k, &request.filter, &request.kinds)
        })
        .await?;
        let took = started.elapsed();
        metrics::histogram!("memoryd_search_duration_seconds", "mode" => request.mode.as_str())
            .record(took.as_secs_f64());
        Ok(SearchResults {
            hits,
            took_ms: took.as_secs_f64() * 1e3,
        })
    }

    /// The unit embedding `[dim]` of a query text, from the LRU cache when it was
    /// asked before.
    async fn query_vector(&self, text: &str) -> Result<Arc<[f32]>> {
        if let Some(cache) = &self.inner.query_cache
            && let Some(v) = cache.lock().get(text)
        {
            metrics::counter!("memoryd_query_cache_hits_total").increment(1);
            return Ok(v.clone());
        }
        let e = self.inner.query_embed.embed(vec![text.to_owned()]).await?;
        let v: Arc<[f32]> = Arc::from(e.data);
        if let Some(cache) = &self.inner.query_cache {
            cache.lock().put(text.to_owned(), v.clone());
        }
        Ok(v)
    }

    /// The `n` most recently added messages of `namespace` (from its short-term
    /// buffer, so at most `short_term_capacity`), newest first.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Storage`].
    pub async fn recent(&self, namespace: &str, n: usize) -> Result<Vec<Message>> {
        validate_namespace(namespace)?;
        let inner = self.inner.clone();
        let ns = namespace.to_owned();
        blocking(move || {
            let Some(ns) = inner.namespaces.read().get(&ns).cloned() else {
                return Ok(Vec::new());
            };
            let seqs: Vec<u64> = ns.recent.lock().iter().rev().take(n).copied().collect();
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(m) = inner.store.message(seq)? {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }

    /// A namespace's stored messages in insertion order, `limit` at a time:
    /// pass the returned [`MessagePage::next`] as `after` to continue (`None` for
    /// the first page). Lists everything, not only the short-term buffer. An
    /// unknown namespace yields an empty page.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`]; [`Error::InvalidInput`] for `limit` outside
    /// `1..=max_k` or a malformed cursor; [`Error::Storage`].
    pub async fn list(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MessagePage> {
        validate_namespace(namespace)?;
        let max = self.inner.config.limits.max_k;
        if limit == 0 || limit > max {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {max}"),
            ));
        }
        // Seqs start at 0, so "no cursor" is not a seq.
        let after: Option<u64> = after
            .map(|c| {
                c.parse().map_err(|_| {
                    Error::invalid("after", "not a cursor returned by a previous page")
                })
            })
            .transpose()?;
        let inner = self.inner.clone();
        let ns = namespace.to_owned();
        blocking(move || {
            let Some(ns) = inner.namespaces.read().get(&ns).cloned() else {
                return Ok(MessagePage::default());
            };
            // Seqs are increasing in insertion order.
            let seqs = ns.index.read().seqs_of(HitKind::Message);
            let start = after.map_or(0, |a| seqs.partition_point(|&s| s <= a));
            let page = &seqs[start..seqs.len().min(start + limit)];
            let mut messages = Vec::with_capacity(page.len());
            for &seq in page {
                // Deleted since the index was read: skip.
                if let Some(m) = inner.store.message(seq)? {
                    messages.push(m);
                }
            }
            let next = (start + limit < seqs.len())
                .then(|| page.last().map(|s| s.to_string()))
                .flatten();
            Ok(MessagePage { messages, next })
        })
        .await
    }

    /// Cross-checks the store's trees with each other and with the in-memory
    /// indexes (vector and BM25): the operator's `memoryd check`. Reads every
    /// record. On an engine that is being written to, a write landing during the
    /// check can show as a count mismatch; run it on a quiet engine.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be read.
    pub async fn check(&self) -> Result<CheckReport> {
        let inner = self.inner.clone();
        blocking(move || {
            let store = inner.store.check(inner.info.dim)?;
            let mut problems = store.problems.clone();
            let mut indexed_messages = 0;
            let mut indexed_summaries = 0;
            let map = inner.namespaces.read();
            for (name, ns) in map.iter() {
                let idx = ns.index.read();
                let lexical = ns.lexical.read().len();
                let (m, s) = (idx.count(HitKind::Message), idx.count(HitKind::Summary));
                indexed_messages += m;
                indexed_summaries += s;
                let stored = store.namespaces.get(name).copied().unwrap_or_default();
                if (stored.messages, stored.summaries) != (m, s) {
                    problems.push(format!(
                        "namespace {name}: the store has {} messages and {} summaries, the vector index {m} and {s}",
                        stored.messages, stored.summaries
                    ));
                }
                if lexical != m + s {
                    problems.push(format!(
                        "namespace {name}: the BM25 index has {lexical} documents, the vector index {}",
                        m + s
                    ));
                }
            }
            for name in store.namespaces.keys() {
                if !map.contains_key(name) {
                    problems.push(format!("namespace {name}: stored but not indexed"));
                }
            }
            Ok(CheckReport {
                store,
                indexed_messages,
                indexed_summaries,
                problems,
            })
        })
        .await
    }

    /// One message by id.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown (or malformed) id.
    pub async fn get(&self, id: &str) -> Result<Message> {
        let inner = self.inner.clone();
        let id = id.to_owned();
        blocking(move || {
            let uuid = parse_id(&id)?;
            inner
                .store
                .seq_of(&uuid)?
                .map(|seq| inner.store.message(seq))
                .transpose()?
                .flatten()
                .ok_or(Error::NotFound {
                    what: "message",
                    id,
                })
        })
        .await
    }

    /// Deletes one message from the store, the index and the short-term buffer.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let inner = self.inner.clone();
        let id = id.to_owned();
        blocking(move || inner.delete(&id)).await
    }

    /// Deletes every message of a namespace; returns how many were deleted.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Storage`].
    pub async fn delete_namespace(&self, namespace: &str) -> Result<usize> {
        validate_namespace(namespace)?;
        let inner = self.inner.clone();
        let ns = namespace.to_owned();
        blocking(move || inner.delete_namespace(&ns)).await
    }

    /// Namespaces and their message counts, by name.
    pub fn namespaces(&self) -> Vec<NamespaceInfo> {
        self.inner
            .namespaces
            .read()
            .values()
            .map(|ns| {
                let idx = ns.index.read();
                NamespaceInfo {
                    name: ns.name.clone(),
                    messages: idx.count(HitKind::Message),
                    summaries: idx.count(HitKind::Summary),
                }
            })
            .filter(|i| i.messages + i.summaries > 0)
            .collect()
    }

    /// Embeds texts with the engine's model: `[texts.len(), dim]`, unit length.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no input or an empty text, [`Error::TooLarge`]
    /// over `max_embed_inputs`, [`Error::Overloaded`].
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings> {
        let limits = &self.inner.config.limits;
        if texts.is_empty() {
            return Err(Error::invalid("input", "send at least one text"));
        }
        if texts.len() > limits.max_embed_inputs {
            return Err(Error::too_large(
                "input",
                format!(
                    "{} texts; the limit is {}",
                    texts.len(),
                    limits.max_embed_inputs
                ),
            ));
        }
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(Error::invalid(format!("input[{i}]"), "must not be empty"));
        }
        if let Some(i) = texts
            .iter()
            .position(|t| t.len() > limits.max_content_bytes)
        {
            return Err(Error::too_large(
                format!("input[{i}]"),
                "longer than the content limit",
            ));
        }
        self.inner.embed.embed(texts).await
    }

    /// Summarizes every unsummarized message of `namespace` now (in windows of
    /// `summarize.every`), whatever the triggers say. Returns the new summaries,
    /// oldest first (none when nothing is pending).
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Overloaded`], [`Error::Storage`].
    pub async fn summarize(&self, namespace: &str) -> Result<Vec<Summary>> {
        validate_namespace(namespace)?;
        self.inner.summarize_due(namespace, true).await
    }

    /// The summaries of `namespace`, newest first.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Storage`].
    pub async fn summaries(&self, namespace: &str) -> Result<Vec<Summary>> {
        validate_namespace(namespace)?;
        let inner = self.inner.clone();
        let ns = namespace.to_owned();
        blocking(move || {
            let Some(ns) = inner.namespace(&ns) else {
                return Ok(Vec::new());
            };
            let seqs = ns.index.read().seqs_of(HitKind::Summary);
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs.into_iter().rev() {
                out.extend(inner.store.summary(seq)?);
            }
            Ok(out)
        })
        .await
    }

    /// Messages of `namespace` not yet covered by a summary.
    pub fn unsummarized(&self, namespace: &str) -> usize {
        self.inner
            .namespace(namespace)
            .map_or(0, |ns| ns.pending.lock().len())
    }

    /// Counts for `/health`, `/metrics` and `memoryd stats`.
    pub fn stats(&self) -> Stats {
        let map = self.inner.namespaces.read();
        let mut messages = 0;
        let mut summaries = 0;
        let mut namespaces = 0;
        let mut graphs = 0;
        for ns in map.values() {
            let idx = ns.index.read();
            messages += idx.count(HitKind::Message);
            summaries += idx.count(HitKind::Summary);
            namespaces += usize::from(!idx.is_empty());
            graphs += usize::from(idx.has_graph());
        }
        Stats {
            model: self.inner.info.id.clone(),
            dim: self.inner.info.dim,
            messages,
            summaries,
            namespaces,
            graph_namespaces: graphs,
            embed_queue_depth: self.inner.embed.depth(),
            disk_bytes: self.inner.store.size_on_disk().unwrap_or(0),
        }
    }

    /// Flushes the store (every acknowledged write already is; this is for shutdown).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn flush(&self) -> Result<()> {
        self.inner.store.flush()
    }
}

/// A search's query as the ranking sees it.
struct RankQuery<'a> {
    text: Option<&'a str>,
    /// Unit vector `[dim]`; `None` only in lexical mode.
    vector: Option<&'a [f32]>,
    mode: SearchMode,
    params: HybridParams,
}

/// The best `fetch` candidates (more in hybrid mode) of `ns` for `q`, best first,
/// and whether asking for more cannot find more.
fn rank(
    ns: &Namespace,
    idx: &NamespaceIndex,
    rf: &RowFilter,
    q: &RankQuery<'_>,
    k: usize,
    fetch: usize,
) -> (Vec<Scored>, bool) {
    match (q.mode, q.text, q.vector) {
        (SearchMode::Hybrid, Some(text), Some(vector)) => {
            let lex = ns.lexical.read();
            crate::hybrid::rank(idx, &lex, rf, text, vector, fetch, &q.params)
        }
        (SearchMode::Lexical, Some(text), _) => {
            let lex = ns.lexical.read();
            let lq = lex.query(text, q.params.bm25);
            let found: Vec<Scored> = lex
                .top(&lq, fetch, |seq| idx.matches(seq, rf))
                .into_iter()
                .map(|(seq, score)| Scored { score, seq })
                .collect();
            let exhausted = found.len() < fetch;
            (found, exhausted)
        }
        (_, _, Some(vector)) => {
            // Dense, or hybrid with a vector query (no text to match).
            let exact = fetch > k * 64;
            let found = idx.search(vector, fetch, rf, exact);
            let exhausted = found.len() < fetch || exact;
            (found, exhausted)
        }
        // Lexical mode without text is rejected before ranking.
        (_, _, None) => (Vec::new(), true),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("worker task failed: {e}"))))?
}

/// Timestamps are stored with microsecond precision; truncate up front so the
/// message returned by `add` equals the one read back.
fn to_micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}

/// Insertion time of a message from its UUID v7 id (ms since the epoch).
fn inserted_ms(id: &str) -> i64 {
    Uuid::parse_str(id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or(0)
}

/// The background summarizer: a thread with its own small runtime that checks
/// every namespace's triggers each `tick`, and stops when the engine is dropped.
fn start_scheduler(inner: std::sync::Weak<Inner>) {
    let spawned = std::thread::Builder::new().name("memoryd-summarizer".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            tracing::error!("cannot start the summarizer runtime; background summarization is off");
            return;
        };
        loop {
            let Some(strong) = inner.upgrade() else { return };
            let tick = strong.config.summarize.tick;
            let names: Vec<String> = strong.namespaces.read().keys().cloned().collect();
            for name in names {
                if let Err(e) = rt.block_on(strong.summarize_due(&name, false)) {
                    tracing::warn!(namespace = %name, error = %e, "summarization failed; will retry");
                }
            }
            drop(strong);
            std::thread::sleep(tick);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the summarizer thread");
    }
}

fn push_recent(buf: &mut VecDeque<u64>, seq: u64, capacity: usize) {
    if capacity == 0 {
        return;
    }
    while buf.len() >= capacity {
        buf.pop_front();
    }
    buf.push_back(seq);
}

impl Inner {
    /// Summarizes the windows of `name` that are due (all pending ones when `force`).
    async fn summarize_due(self: &Arc<Self>, name: &str, force: bool) -> Result<Vec<Summary>> {
        let Some(ns) = self.namespace(name) else {
            return Ok(Vec::new());
        };
        let _one_at_a_time = ns.summarizing.lock().await;
        let cfg = &self.config.summarize;
        let every = cfg.every.max(1);
        let mut out = Vec::new();
        loop {
            let window: Vec<u64> = {
                let pending = ns.pending.lock();
                let now = Utc::now().timestamp_millis();
                let stale = pending
                    .front()
                    .is_some_and(|&(_, t)| now - t >= cfg.after.as_millis() as i64);
                if pending.is_empty() || !(force || stale || pending.len() >= every) {
                    break;
                }
                pending.iter().take(every).map(|&(seq, _)| seq).collect()
            };
            if let Some(summary) = self.summarize_window(&ns, window).await? {
                out.push(summary);
            }
        }
        Ok(out)
    }

    async fn summarize_window(
        self: &Arc<Self>,
        ns: &Arc<Namespace>,
        window: Vec<u64>,
    ) -> Result<Option<Summary>> {
        let inner = self.clone();
        let seqs = window.clone();
        let messages: Vec<(u64, Message)> = blocking(move || {
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(m) = inner.store.message(seq)? {
                    out.push((seq, m));
                }
            }
            Ok(out)
        })
        .await?;
        if messages.is_empty() {
            ns.pending.lock().retain(|(s, _)| !window.contains(s));
            return Ok(None);
        }
        let (seqs, msgs): (Vec<u64>, Vec<Message>) = messages.into_iter().unzip();
        let written = self
            .summarizer
            .summarize(SummaryInput {
                messages: &msgs,
                embed: &self.background_embed,
                max_tokens: self.info.max_seq_length,
            })
            .await?;
        let mut vector = self
            .background_embed
            .embed(vec![written.text.clone()])
            .await?
            .data;
        l2_normalize(&mut vector);
        let summary = Summary {
            id: Uuid::now_v7().to_string(),
            namespace: ns.name.clone(),
            text: written.text,
            source_ids: msgs.iter().map(|m| m.id.clone()).collect(),
            from: msgs
                .iter()
                .map(|m| m.timestamp)
                .min()
                .unwrap_or_else(Utc::now),
            to: msgs
                .iter()
                .map(|m| m.timestamp)
                .max()
                .unwrap_or_else(Utc::now),
            created_at: to_micros(Utc::now()),
            summarizer: written.summarizer,
        };
        let inner = self.clone();
        let ns = ns.clone();
        let upto = *window.last().expect("window is not empty");
        blocking(move || inner.commit_summary(&ns, summary, &vector, upto, &window, &seqs)).await
    }

    fn commit_summary(
        &self,
        ns: &Namespace,
        summary: Summary,
        vector: &[f32],
        upto: u64,
        window: &[u64],
        sources: &[u64],
    ) -> Result<Option<Summary>> {
        let _w = ns.writer.lock();
        if ns.deleted.load(Ordering::Acquire) {
            return Ok(None);
        }
        let evict: Vec<(u64, Uuid)> = if self.config.summarize.evict_summarized {
            sources
                .iter()
                .zip(&summary.source_ids)
                .map(|(&seq, id)| Ok((seq, parse_id(id)?)))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let seq = self.store.next_seq()?;
        self.store
            .insert_summary(seq, &summary, vector, upto, &evict)?;
        ns.summarized_upto.store(upto, Ordering::Release);
        {
            let mut idx = ns.index.write();
            idx.push_summary(seq, &summary, vector);
            for (s, _) in &evict {
                idx.remove(*s);
            }
            let mut lex = ns.lexical.write();
            lex.push_summary(seq, &summary);
            for (s, _) in &evict {
                lex.remove(*s);
            }
        }
        if !evict.is_empty() {
            ns.recent.lock().retain(|s| !sources.contains(s));
        }
        ns.pending.lock().retain(|(s, _)| !window.contains(s));
        metrics::counter!("memoryd_summaries_total").increment(1);
        tracing::debug!(namespace = %ns.name, sources = sources.len(), "summary written");
        Ok(Some(summary))
    }

    fn new_namespace(&self, name: &str) -> Namespace {
        Namespace {
            name: name.to_owned(),
            pending: Mutex::new(VecDeque::new()),
            summarizing: tokio::sync::Mutex::new(()),
            summarized_upto: std::sync::atomic::AtomicU64::new(0),
            index: RwLock::new(NamespaceIndex::new(
                self.info.dim,
                self.config.index.clone(),
            )),
            lexical: RwLock::new(LexicalIndex::new()),
            recent: Mutex::new(VecDeque::new()),
            writer: Mutex::new(()),
            deleted: AtomicBool::new(false),
            rebuilding: AtomicBool::new(false),
        }
    }

    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(name).cloned()
    }

    fn namespace_or_create(&self, name: &str) -> Arc<Namespace> {
        if let Some(ns) = self.namespace(name) {
            return ns;
        }
        self.namespaces
            .write()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(self.new_namespace(name)))
            .clone()
    }

    fn persist(
        self: &Arc<Self>,
        messages: Vec<Message>,
        embeddings: Embeddings,
    ) -> Result<Vec<Message>> {
        let ns_name = messages[0].namespace.clone();
        let mut vectors: Vec<Vec<f32>> = embeddings.rows().map(<[f32]>::to_vec).collect();
        vectors.iter_mut().for_each(|v| {
            l2_normalize(v);
        });
        loop {
            let ns = self.namespace_or_create(&ns_name);
            let _w = ns.writer.lock();
            if ns.deleted.load(Ordering::Acquire) {
                continue; // deleted while we waited: write into the new namespace
            }
            let mut seqs = Vec::with_capacity(messages.len());
            for _ in &messages {
                seqs.push(self.store.next_seq()?);
            }
            let records: Vec<NewRecord<'_>> = messages
                .iter()
                .zip(&seqs)
                .zip(&vectors)
                .map(|((m, &seq), v)| NewRecord {
                    seq,
                    message: m,
                    vector: v,
                })
                .collect();
            self.store.insert(&records)?;
            {
                let mut idx = ns.index.write();
                for ((m, &seq), v) in messages.iter().zip(&seqs).zip(&vectors) {
                    idx.push(seq, m, v);
                }
                let mut lex = ns.lexical.write();
                for (m, &seq) in messages.iter().zip(&seqs) {
                    lex.push_message(seq, m);
                }
            }
            {
                let mut recent = ns.recent.lock();
                for &seq in &seqs {
                    push_recent(&mut recent, seq, self.config.short_term_capacity);
                }
            }
            {
                let mut pending = ns.pending.lock();
                for (m, &seq) in messages.iter().zip(&seqs) {
                    pending.push_back((seq, inserted_ms(&m.id)));
                }
            }
            drop(_w);
            metrics::counter!("memoryd_messages_added_total").increment(messages.len() as u64);
            self.maybe_rebuild(&ns);
            return Ok(messages);
        }
    }

    fn search(
        &self,
        ns: &str,
        q: &RankQuery<'_>,
        k: usize,
        filter: &Filter,
        kinds: &[HitKind],
    ) -> Result<Vec<Hit>> {
        let Some(ns) = self.namespace(ns) else {
            return Ok(Vec::new());
        };
        let needs_metadata = !filter.metadata.is_empty();
        let mut fetch = if needs_metadata { k * 4 } else { k };
        loop {
            let (candidates, live, exhausted) = {
                let idx = ns.index.read();
                let Some(rf) = idx.compile_for(filter, kinds) else {
                    return Ok(Vec::new());
                };
                let live = idx.len();
                let (candidates, exhausted) = rank(&ns, &idx, &rf, q, k, fetch);
                (candidates, live, exhausted || fetch >= live)
            };
            let mut hits = Vec::with_capacity(k);
            for Scored { score, seq } in candidates {
                let Some(message) = self.store.message(seq)? else {
                    // A summary (metadata filters never match those), or deleted
                    // since the index was read.
                    if let Some(summary) = self.store.summary(seq)? {
                        hits.push(Hit {
                            id: summary.id.clone(),
                            kind: HitKind::Summary,
                            score,
                            message: None,
                            summary: Some(summary),
                        });
                        if hits.len() == k {
                            break;
                        }
                    }
                    continue;
                };
                if needs_metadata
                    && !filter
                        .metadata
                        .iter()
                        .all(|(key, v)| message.metadata.get(key) == Some(v))
                {
                    continue;
                }
                hits.push(Hit {
                    id: message.id.clone(),
                    kind: HitKind::Message,
                    score,
                    message: Some(message),
                    summary: None,
                });
                if hits.len() == k {
                    break;
                }
            }
            if hits.len() == k || exhausted {
                return Ok(hits);
            }
            fetch = (fetch * 4).min(live);
        }
    }

    fn delete(self: &Arc<Self>, id: &str) -> Result<()> {
        let not_found = || Error::NotFound {
            what: "message",
            id: id.chars().take(100).collect(),
        };
        let uuid = parse_id(id)?;
        let seq = self.store.seq_of(&uuid)?.ok_or_else(not_found)?;
        let message = self.store.message(seq)?.ok_or_else(not_found)?;
        let ns = self.namespace_or_create(&message.namespace);
        // Lock order everywhere: the namespaces map (released) before a writer.
        let _w = ns.writer.lock();
        // Re-check under the writer lock: a concurrent delete may have won.
        if self.store.seq_of(&uuid)?.is_none() {
            return Err(not_found());
        }
        self.store.delete(&[(seq, uuid)])?;
        ns.index.write().remove(seq);
        ns.lexical.write().remove(seq);
        ns.recent.lock().retain(|&s| s != seq);
        ns.pending.lock().retain(|&(s, _)| s != seq);
        drop(_w);
        metrics::counter!("memoryd_messages_deleted_total").increment(1);
        self.maybe_rebuild(&ns);
        Ok(())
    }

    fn delete_namespace(&self, name: &str) -> Result<usize> {
        let Some(ns) = self.namespace(name) else {
            return Ok(0);
        };
        let _w = ns.writer.lock();
        let (messages, summaries) = {
            let idx = ns.index.read();
            (idx.seqs_of(HitKind::Message), idx.seqs_of(HitKind::Summary))
        };
        let mut items = Vec::with_capacity(messages.len());
        for seq in &messages {
            if let Some(m) = self.store.message(*seq)? {
                items.push((*seq, parse_id(&m.id)?));
            }
        }
        let mut summary_items = Vec::with_capacity(summaries.len());
        for seq in &summaries {
            if let Some(m) = self.store.summary(*seq)? {
                summary_items.push((*seq, parse_id(&m.id)?));
            }
        }
        for chunk in summary_items.chunks(1_000) {
            self.store.delete_summaries(chunk)?;
        }
        for chunk in items.chunks(1_000) {
            self.store.delete(chunk)?;
        }
        self.store.remove_namespace(name)?;
        ns.deleted.store(true, Ordering::Release);
        self.namespaces.write().remove(name);
        Ok(items.len())
    }

    /// Starts an off-lock rebuild of `ns` on its own thread when the index asks for one.
    fn maybe_rebuild(self: &Arc<Self>, ns: &Arc<Namespace>) {
        if !ns.index.read().needs_rebuild() || ns.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        let target = ns.clone();
        let spawned = std::thread::Builder::new()
            .name("memoryd-index-build".into())
            .spawn(move || {
                inner.rebuild(&target);
            });
        if spawned.is_err() {
            ns.rebuilding.store(false, Ordering::Release);
        }
    }

    /// Rebuilds from a snapshot without blocking searches, then swaps it in.
    fn rebuild(&self, ns: &Namespace) {
        let started = Instant::now();
        loop {
            let snapshot = ns.index.read().snapshot();
            let mut rebuilt = NamespaceIndex::rebuilt_from(&snapshot);
            // Catching up happens under the write lock, which blocks searches: if a
            // bulk ingest appended many rows during the build, build again from a
            // fresh snapshot instead of inserting them one by one under the lock.
            let appended = ns.index.read().rows_total().saturating_sub(snapshot.upto);
            if appended > (snapshot.upto / 10).max(1_000) {
                continue;
            }
            let mut idx = ns.index.write();
            idx.catch_up(&mut rebuilt, snapshot.upto);
            *idx = rebuilt;
            break;
        }
        ns.rebuilding.store(false, Ordering::Release);
        tracing::info!(
            namespace = %ns.name,
            took_ms = started.elapsed().as_millis() as u64,
            "index rebuilt"
        );
    }
}

/// Rejects NUL and the other C0 control characters except tab, line feed and
/// carriage return: they are invisible in logs and UIs, break C-string consumers
/// downstream, and in chat text are almost always a client's encoding bug.
fn check_controls(field: &str, text: &str) -> Result<()> {
    match text
        .char_indices()
        .find(|(_, c)| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r' | '\x7f'))
    {
        None => Ok(()),
        Some((at, c)) => Err(Error::invalid(
            field,
            format!(
                "contains the control character U+{:04X} at byte {at}; only tab, line feed and carriage return are allowed",
                c as u32
            ),
        )),
    }
}

/// Nesting depth of a JSON object's values: `{}` and `{"a": 1}` are 1,
/// `{"a": [1]}` is 2. Iterative, so any depth is measured without recursion.
fn json_depth(object: &serde_json::Map<String, serde_json::Value>) -> usize {
    if object.is_empty() {
        return 0;
    }
    let mut deepest = 1;
    let mut stack: Vec<(&serde_json::Value, usize)> = object.values().map(|v| (v, 1)).collect();
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

// Compile-time check that the engine can be shared across tasks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
};
