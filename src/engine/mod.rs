//! The engine: the public API every front end calls, and nothing else is.
//!
//! - [`config`]: configuration and its defaults.
//! - `write`: validation, embedding, and [`Inner::commit`], the one function every
//!   mutation goes through (records + change log in one storage transaction, then
//!   the in-memory side updated from it in one place, [`state`]).
//! - `read`: search, listings, the change log, checks.
//!
//! The storage and search seams are [`crate::storage::RecordStore`] and
//! [`crate::search::SearchIndex`]; `ARCHITECTURE.md` draws the path of a write
//! and of a search through them.
//!
//! # Durability
//! Every write returns only after the store made it durable: an acknowledged
//! write survives `kill -9`. A batch is one transaction (all or nothing) and one
//! flush (group commit). Indexes are rebuilt from the store on open, so they
//! always agree with it.

mod agents;
mod audit;
mod board;
pub mod config;
mod context;
mod documents;
mod events;
mod follow;
mod keys;
mod namespaces;
mod read;
mod state;
mod validate;
mod write;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::core::access::NamespaceName;
use crate::core::error::{Error, Result};
use crate::embed::model::ModelResolver;
use crate::embed::{BertEmbedder, BertOptions, EmbedQueue, Embedder, ModelInfo, Priority};
use crate::policy::{Job, JobRunner};
use crate::storage::{RecordKind, RecordStore, SledStore};
use crate::summarize::{BoxFuture, Extractive, OpenAiChat, Summarizer, WithFallback};
pub use audit::{AuditPage, AuditQuery, AuditReport};
pub use board::{MAX_TITLE_BYTES, ProblemPage};
pub use config::{EngineConfig, Limits, ModelConfig, SummarizeConfig};
pub use context::ContextPage;
pub use documents::MAX_DOCUMENT_ID_BYTES;
pub use events::{Event, EventCursor, EventFilter, EventPage, TreePage};
pub use keys::AuthFailure;
pub use namespaces::{MAX_DEPTH, NamespaceDetail};
pub use read::{CheckReport, MessagePage, Stats};
use state::NamespaceState;

pub(crate) struct Inner {
    config: EngineConfig,
    summarizer: Box<dyn Summarizer>,
    store: Arc<dyn RecordStore>,
    /// Write lane (messages, explicit embedding requests).
    embed: EmbedQueue,
    /// Query lane (search queries).
    query_embed: EmbedQueue,
    /// Background lane (summarization).
    background_embed: EmbedQueue,
    info: ModelInfo,
    namespaces: RwLock<BTreeMap<NamespaceName, Arc<NamespaceState>>>,
    /// Query text → unit query vector `[dim]`.
    query_cache: Option<Mutex<lru::LruCache<String, Arc<[f32]>>>>,
    /// Held while the namespace hierarchy changes (re-parenting, deletion).
    topology: tokio::sync::Mutex<()>,
    /// Bumped after every commit: wakes event subscribers (who then read the log).
    commits: tokio::sync::watch::Sender<u64>,
    /// Event data that never changes (a message or summary as added, a context
    /// version), by namespace and seq: many subscribers of one namespace build
    /// each event once.
    /// Cleared by every delete, so deleted text is never served from it.
    pub(crate) event_data: Mutex<lru::LruCache<(String, u64), serde_json::Value>>,
    /// API keys by id (all of them: live, expired, revoked), loaded on open and
    /// kept in step by every key write; requests authenticate against it.
    keys: RwLock<std::collections::HashMap<String, crate::core::keys::StoredKey>>,
    /// Last heartbeat of each registered agent heard by this process (a
    /// heartbeat is not a write; see `agents.rs`).
    agent_seen: Mutex<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// When this engine opened: after a restart every agent gets one timeout to
    /// send a heartbeat before it is judged unhealthy.
    opened_at: chrono::DateTime<chrono::Utc>,
    /// Graphs reloaded from dumps after open ([`Stats::graphs_reloaded`]).
    graphs_reloaded: std::sync::atomic::AtomicUsize,
    /// Claimed graph reloads not yet ended ([`Stats::graphs_reloading`]);
    /// decremented after `graphs_reloaded` is counted.
    reloads_pending: std::sync::atomic::AtomicUsize,
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

/// Records read per page while loading indexes on open.
const LOAD_PAGE: usize = 4_096;

impl Engine {
    /// Resolves and loads the model, opens the store in `config.data_dir` and
    /// rebuilds the indexes. Blocking (seconds): call it before starting the
    /// runtime or in `spawn_blocking`.
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
    /// The store is sled under `config.data_dir`, or PostgreSQL when
    /// `config.store_url` is set ([`crate::storage::PgStore`]).
    ///
    /// # Errors
    /// [`Error::ModelMismatch`], [`Error::Storage`], [`Error::Corrupt`];
    /// [`Error::InvalidInput`] for hybrid weights out of range or a store URL
    /// that is not PostgreSQL's.
    pub fn open_with_embedder(config: EngineConfig, embedder: Arc<dyn Embedder>) -> Result<Engine> {
        let store: Arc<dyn RecordStore> = match &config.store_url {
            None => Arc::new(SledStore::open(&config.data_dir)?),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(crate::storage::PgStore::connect(url)?)
            }
            Some(_) => {
                return Err(Error::invalid(
                    "store",
                    "a postgres:// or postgresql:// URL (or unset for the embedded sled store)",
                ));
            }
        };
        Engine::open_with_store(config, embedder, store)
    }

    /// Like [`Engine::open_with_embedder`] over any [`RecordStore`] (the storage
    /// seam). Blocking, like [`Engine::open`]: the store is read on a thread of
    /// its own, so this may be called from inside or outside a runtime.
    ///
    /// # Errors
    /// As [`Engine::open_with_embedder`].
    pub fn open_with_store(
        config: EngineConfig,
        embedder: Arc<dyn Embedder>,
        store: Arc<dyn RecordStore>,
    ) -> Result<Engine> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // One worker: the store's read of the next page runs as a task
                // there while this thread indexes the current one (`load_records`).
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(Error::Io)?;
                rt.block_on(Engine::load(config, embedder, store))
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Io(std::io::Error::other("engine open panicked"))))
        })
    }

    async fn load(
        config: EngineConfig,
        embedder: Arc<dyn Embedder>,
        store: Arc<dyn RecordStore>,
    ) -> Result<Engine> {
        let started = Instant::now();
        config.hybrid.validate()?;
        if !crate::search::vector::set_graph_threads(config.index.build_threads) {
            tracing::warn!(
                threads = config.index.build_threads,
                "the HNSW build pool already exists in this process with another size (an earlier engine sized it); keeping it"
            );
        }
        let info = embedder.info().clone();
        store.check_or_init_meta(&info).await?;
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
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        let query_cache = NonZeroUsize::new(config.query_cache_capacity)
            .map(|n| Mutex::new(lru::LruCache::new(n)));
        let inner = Arc::new(Inner {
            config,
            summarizer,
            store,
            query_embed: embed.with_priority(Priority::Query),
            background_embed: embed.with_priority(Priority::Background),
            embed,
            info,
            namespaces: RwLock::new(BTreeMap::new()),
            query_cache,
            topology: tokio::sync::Mutex::new(()),
            commits: tokio::sync::watch::Sender::new(0),
            event_data: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(4096).expect("non-zero"),
            )),
            keys: RwLock::new(Default::default()),
            agent_seen: Mutex::new(Default::default()),
            opened_at: chrono::Utc::now(),
            graphs_reloaded: Default::default(),
            reloads_pending: Default::default(),
        });
        {
            let stored = inner.store.api_keys().await?;
            let mut keys = inner.keys.write();
            for k in stored {
                keys.insert(k.key.id.clone(), k);
            }
        }
        for record in inner.store.namespaces().await? {
            let name = NamespaceName::parse(&record.name)?;
            let ns = inner.new_namespace(&name, Some(record));
            inner.namespaces.write().insert(name, Arc::new(ns));
        }
        let count = if inner.store.shared() {
            follow::load_each(&inner).await?
        } else {
            load_records(&inner).await?
        };
        tracing::info!(
            records = count,
            took_ms = started.elapsed().as_millis() as u64,
            "records indexed"
        );
        let entries = load_entries(&inner).await?;
        let engine = Engine { inner };
        let states: Vec<Arc<NamespaceState>> =
            engine.inner.namespaces.read().values().cloned().collect();
        // Graph dumps are reloaded, then graph builds and tail inserts run, on one
        // background thread, namespace after namespace: open waits for neither
        // (a reload reads ~1 GB at 1M vectors). Until a namespace has its graph
        // it is served by an exact scan (correct, slower); a claimed namespace's
        // maintenance waits for its reload instead of building from scratch.
        let claimed = claim_graphs(&engine.inner, &states);
        // Weak: dropping the engine must release the store (a reopen of the
        // same directory in this process waits for sled's lock), not wait for
        // this thread's reloads and builds.
        let inner = Arc::downgrade(&engine.inner);
        let work = move || {
            restore_graphs(&inner, &claimed);
            for ns in states {
                if !ns.deleted.load(std::sync::atomic::Ordering::Acquire)
                    && ns.index.needs_maintenance()
                {
                    ns.index.maintain();
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("memoryd-index-open".into())
            .spawn(work)
        {
            // Without the thread claimed namespaces would keep their claim (and
            // no graph) for good.
            tracing::error!(error = %e, "cannot start the index maintenance thread");
            return Err(Error::Io(e));
        }
        let mut jobs: Vec<Box<dyn Job<Inner>>> = vec![Box::new(RetentionJob {
            last: Mutex::new(None),
        })];
        jobs.push(Box::new(ContextExpiryJob));
        jobs.push(Box::new(agents::AgentHealthJob));
        jobs.push(Box::new(agents::MailExpiryJob {
            last: Mutex::new(None),
        }));
        if engine.inner.config.summarize.enabled {
            jobs.push(Box::new(SummarizeJob));
        }
        if engine.inner.store.shared() {
            // Several nodes share the store: one runs each job at a time.
            jobs = jobs
                .into_iter()
                .map(|job| Box::new(SingleFlight(job)) as Box<dyn Job<Inner>>)
                .collect();
        }
        // Per node (each node maintains its own side): index work a namespace
        // asked for without a write to start it (a build another node held, a
        // failed one to retry).
        jobs.push(Box::new(IndexMaintenanceJob));
        JobRunner::start(
            Arc::downgrade(&engine.inner),
            engine.inner.config.summarize.tick,
            jobs,
        );
        follow::start(&engine.inner);
        tracing::info!(
            messages = count,
            context_entries = entries,
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

    /// Whether the engine can serve: false once the embedding worker has died
    /// (every write and text search then fails with `model_failed`).
    pub fn is_healthy(&self) -> bool {
        self.inner.embed.is_healthy()
    }
}

/// Background summarization: every namespace whose triggers fired.
struct SummarizeJob;

impl Job<Inner> for SummarizeJob {
    fn name(&self) -> &'static str {
        "summarize"
    }

    fn run<'a>(&'a self, inner: &'a Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let names: Vec<NamespaceName> = inner.namespaces.read().keys().cloned().collect();
            for name in names {
                if let Err(e) = inner.summarize_due(&name, false).await {
                    tracing::warn!(namespace = %name, error = %e, "summarization failed; will retry");
                }
            }
            Ok(())
        })
    }
}

/// A job run by one node at a time on a shared store: each run first takes the
/// store's lock named after the job ([`RecordStore::try_job_lock`]; PostgreSQL's
/// `pg_try_advisory_xact_lock`) and is skipped when another node holds it.
struct SingleFlight(Box<dyn Job<Inner>>);

impl Job<Inner> for SingleFlight {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn run<'a>(&'a self, inner: &'a Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(_lock) = inner.store.try_job_lock(self.0.name()).await? else {
                return Ok(());
            };
            // Other nodes' writes reach this node's side through the follower
            // (at once on their notice); a summary window another node just took
            // fails the store's check and is not written twice.
            self.0.run(inner).await
        })
    }
}

/// Deletes expired context entries (they already read as absent).
/// Starts [`SearchIndex::maintain`](crate::search::SearchIndex::maintain) on
/// its own thread for every namespace whose index asks for it; writes do the
/// same after each commit, this covers namespaces nobody writes to.
struct IndexMaintenanceJob;

impl Job<Inner> for IndexMaintenanceJob {
    fn name(&self) -> &'static str {
        "index maintenance"
    }

    fn run<'a>(&'a self, inner: &'a Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let states: Vec<Arc<NamespaceState>> =
                inner.namespaces.read().values().cloned().collect();
            for ns in states {
                if !ns.deleted.load(std::sync::atomic::Ordering::Acquire) {
                    inner.maintain(&ns);
                }
            }
            Ok(())
        })
    }
}

struct ContextExpiryJob;

impl Job<Inner> for ContextExpiryJob {
    fn name(&self) -> &'static str {
        "context expiry"
    }

    fn run<'a>(&'a self, inner: &'a Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let n = inner.expire_context(chrono::Utc::now()).await?;
            if n > 0 {
                tracing::debug!(deleted = n, "expired context entries deleted");
            }
            Ok(())
        })
    }
}

/// Change-log retention ([`EngineConfig::change_retention`]); runs at most once a
/// minute.
struct RetentionJob {
    last: Mutex<Option<Instant>>,
}

impl Job<Inner> for RetentionJob {
    fn name(&self) -> &'static str {
        "change-log retention"
    }

    fn run<'a>(&'a self, inner: &'a Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            {
                let mut last = self.last.lock();
                if last.is_some_and(|t| t.elapsed().as_secs() < 60) {
                    return Ok(());
                }
                *last = Some(Instant::now());
            }
            let removed = inner
                .store
                .prune_changes(inner.config.change_retention, chrono::Utc::now())
                .await?;
            if removed > 0 {
                tracing::debug!(removed, "change-log entries past retention dropped");
            }
            Ok(())
        })
    }
}

// Compile-time check that the engine can be shared across tasks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
};

/// Reads every message and summary from the store into the namespaces' indexes
/// and short-term rings; returns the number of messages. Pipelined: the store
/// reads page n + 1 (a task on the open runtime's worker; sled decodes on the
/// blocking pool) while this thread indexes page n, the namespaces of a page in
/// parallel (rayon), each with one lock per page.
///
/// # Errors
/// [`Error::Corrupt`] for a vector of the wrong dimension or a bad namespace
/// name; the store's errors.
async fn load_records(inner: &Arc<Inner>) -> Result<usize> {
    use rayon::prelude::*;
    let mut count = 0usize;
    for kind in [RecordKind::Message, RecordKind::Summary] {
        let read = |after| {
            let store = inner.store.clone();
            tokio::spawn(async move { store.scan(kind, after, LOAD_PAGE).await })
        };
        let mut next = read(None);
        loop {
            let page = next.await.map_err(|e| {
                Error::Io(std::io::Error::other(format!("store read failed: {e}")))
            })??;
            let Some(last) = page.last() else { break };
            next = read(Some(last.row));
            // The page's records by namespace, in row order within each.
            let mut groups: Vec<(Arc<NamespaceState>, Vec<&crate::storage::StoredRecord>)> =
                Vec::new();
            let mut at: std::collections::HashMap<&str, usize> = Default::default();
            for stored in &page {
                if stored.vector.len() != inner.info.dim {
                    return Err(Error::Corrupt {
                        tree: "vectors",
                        message: format!(
                            "row {} has {} values, the model {}",
                            stored.row,
                            stored.vector.len(),
                            inner.info.dim
                        ),
                    });
                }
                let name = stored.record.namespace();
                let i = match at.get(name) {
                    Some(&i) => i,
                    None => {
                        let ns = inner.namespace_or_create(&NamespaceName::parse(name)?);
                        groups.push((ns, Vec::new()));
                        at.insert(name, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                groups[i].1.push(stored);
            }
            let capacity = inner.config.short_term_capacity;
            count += groups
                .par_iter()
                .map(|(ns, records)| ns.index_stored(records, capacity))
                .sum::<usize>();
        }
    }
    Ok(count)
}

/// Claims the namespaces large enough for a graph whose dump will be reloaded
/// ([`crate::search::SearchIndex::claim_restore`]), counting them in
/// [`Stats::graphs_reloading`], and deletes dump directories no loaded
/// namespace owns (deleted namespaces, or a crash between a namespace's
/// deletion and its dump's removal). Returns the claimed ones.
fn claim_graphs(inner: &Arc<Inner>, states: &[Arc<NamespaceState>]) -> Vec<Arc<NamespaceState>> {
    let Some(root) = inner.graph_root() else {
        return Vec::new();
    };
    let mut owned = std::collections::HashSet::new();
    let mut claimed = Vec::new();
    for ns in states {
        owned.insert(crate::search::persist::namespace_dir(
            &root,
            ns.name.as_str(),
        ));
        if ns.index.claim_restore() {
            claimed.push(Arc::clone(ns));
        }
    }
    inner
        .reloads_pending
        .store(claimed.len(), std::sync::atomic::Ordering::Release);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            if !owned.contains(&e.path()) {
                crate::search::persist::remove(&e.path());
            }
        }
    }
    claimed
}

/// Reloads the claimed namespaces' graph dumps, one after another (on the
/// open's background thread), counting them in [`Stats::graphs_reloaded`].
/// Every claim ends: a reload that panics is logged and its namespace keeps
/// its exact scan until maintenance builds a graph; once the engine is dropped
/// the remaining claims are ended without reading their dumps.
fn restore_graphs(inner: &std::sync::Weak<Inner>, claimed: &[Arc<NamespaceState>]) {
    use std::sync::atomic::Ordering;
    let started = Instant::now();
    let mut reloaded = 0;
    for ns in claimed {
        let Some(engine) = inner.upgrade() else {
            // Nobody can search any more; end the claim cheaply.
            ns.index.discard_claim();
            continue;
        };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.index.restore()))
            .unwrap_or_else(|_| {
                tracing::error!(namespace = %ns.name, "graph reload panicked; the graph will be rebuilt");
                ns.index.discard_claim();
                false
            });
        if ok {
            reloaded += 1;
            engine.graphs_reloaded.fetch_add(1, Ordering::AcqRel);
        }
        // After the count, so a caller that sees no reload pending sees it.
        engine.reloads_pending.fetch_sub(1, Ordering::AcqRel);
    }
    if reloaded > 0 {
        tracing::info!(
            graphs = reloaded,
            took_ms = started.elapsed().as_millis() as u64,
            "graphs reloaded"
        );
    }
}

/// Indexes every namespace's live context entries and board documents from the
/// store; entries stored without a vector of the model's dimension (written
/// before entries were searchable) are embedded now, in memory only (so again
/// on every open until they are next written). Returns how many were indexed.
async fn load_entries(inner: &Arc<Inner>) -> Result<usize> {
    let now = chrono::Utc::now();
    let states: Vec<Arc<NamespaceState>> = inner.namespaces.read().values().cloned().collect();
    let mut count = 0;
    for ns in states {
        let mut entries = inner.store.context_indexed(ns.name.as_str(), now).await?;
        entries.retain(|(e, _)| state::searchable(&e.key));
        let missing: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.as_ref().is_none_or(|v| v.len() != inner.info.dim))
            .map(|(i, _)| i)
            .collect();
        let mut embedded = std::collections::HashMap::new();
        for chunk in missing.chunks(64) {
            let texts = chunk
                .iter()
                .map(|&i| state::entry_text(&entries[i].0).1)
                .collect();
            // Not fatal: the entries stay readable, only not searchable until
            // their next write or a later open.
            match inner.background_embed.embed(texts).await {
                Ok(e) => {
                    for (j, &i) in chunk.iter().enumerate() {
                        embedded.insert(i, e.row(j).to_vec());
                    }
                }
                Err(err) => tracing::warn!(
                    namespace = %ns.name,
                    error = %err,
                    "context entries without a stored vector could not be embedded; they are not searchable"
                ),
            }
        }
        for (i, (entry, vector)) in entries.iter().enumerate() {
            match embedded.get(&i).or(vector.as_ref()) {
                Some(v) => ns.index_entry(entry, v),
                None => continue,
            }
            count += 1;
        }
    }
    Ok(count)
}
