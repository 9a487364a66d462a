//! [`StoreIndex`]: a namespace ranked by its record store (PostgreSQL with
//! pgvector) instead of in memory.
//!
//! The store holds every message's and summary's vector and answers the dense
//! channel: an exact scan of the namespace (or of the rows a filter admits)
//! below [`STORE_GRAPH_THRESHOLD`] live records, and above it the
//! namespace's own HNSW index in the store, which [`SearchIndex::maintain`]
//! builds in the background ([`RecordStore::build_vector_index`]; until it is
//! valid the store scans exactly, which is correct, only slower). The node keeps
//! only what costs little per message: what filters need (role, agent, session,
//! speaker, time; ~50 bytes a row), the BM25 postings, session order for
//! neighbour expansion, and the vectors of context entries and board documents,
//! which are few and live in their own tables. Fusion and neighbour expansion are
//! [`hybrid::rank`], the same code as the in-memory index, so the two rank alike
//! (README, "Scaling out").

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::hybrid::{self, DenseChannel};
use super::lexical::LexicalIndex;
use super::vector::{NamespaceIndex, RowFilter, Scored};
use super::{IndexCounts, IndexDoc, RankQuery, Ranked, SearchIndex};
use crate::core::error::Result;
use crate::core::params::IndexConfig;
use crate::core::types::{Filter, HitKind};
use crate::storage::{RecordStore, VectorScan, VectorTables};

/// A namespace gets its HNSW index in the store from this many live messages
/// and summaries (or from [`IndexConfig::exact_threshold`] if lower). An exact
/// scan costs far more in PostgreSQL than in memory: at 10,000 messages in one
/// namespace, dense search p50 (query embedding included) was 15.8 ms with
/// PostgreSQL's exact scan, 5.1–5.8 ms with its HNSW index, and 3.6 ms with
/// the in-memory SIMD scan (`MEMORYD_SCALE_N=10000 cargo bench --bench scale --
/// big`, with and without `MEMORYD_STORE`; README "Scaling out"), so the store
/// switches to its graph much earlier than memory does.
pub const STORE_GRAPH_THRESHOLD: usize = 2_000;

/// After a failed index build, wait this long before trying again.
const BUILD_RETRY: Duration = Duration::from_secs(30);

/// While another node builds an index, look again after this long.
const CONTENDED_POLL: Duration = Duration::from_secs(2);

/// Held by the one index build of this process.
static BUILDS: Mutex<()> = Mutex::new(());

/// Rows asked of the store beyond the `n` wanted, so that rows this node has not
/// indexed yet (another node's newest writes) do not leave a top-n short.
const STORE_MARGIN: usize = 16;

/// One namespace searched in its record store; see the module docs.
pub struct StoreIndex {
    name: String,
    dim: usize,
    config: IndexConfig,
    store: Arc<dyn RecordStore>,
    /// Messages and summaries: filter fields only (dimension 0, no vectors).
    rows: RwLock<NamespaceIndex>,
    /// Context entries, board documents and agent cards, with their vectors
    /// (always scanned exactly).
    entries: RwLock<NamespaceIndex>,
    lexical: RwLock<LexicalIndex>,
    /// This node saw the store's HNSW index of this namespace valid (or built
    /// it); never reset (memoryd does not drop these indexes).
    graph: AtomicBool,
    /// Held by the one maintenance thread.
    maintaining: AtomicBool,
    /// The last [`IndexCounts`] read (a ranking holds the locks across a store
    /// query, and `counts` is asked from async tasks: `/health`).
    counted: Counted,
    /// No build attempt before this instant (after a failure or another node's
    /// build).
    retry_at: Mutex<Option<Instant>>,
}

/// Runs a store future to completion from a blocking thread (a `spawn_blocking`
/// worker, a maintenance thread).
fn wait<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(fut),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::Error::Io)?
            .block_on(fut),
    }
}

impl StoreIndex {
    /// An empty index of namespace `name` whose `dim`-dimensional message and
    /// summary vectors are in `store` (which must [`RecordStore::ranks_vectors`]).
    pub fn new(
        name: &str,
        dim: usize,
        config: IndexConfig,
        store: Arc<dyn RecordStore>,
    ) -> StoreIndex {
        // Nothing in memory ever builds a graph.
        let memory = IndexConfig {
            exact_threshold: usize::MAX,
            ..config.clone()
        };
        StoreIndex {
            name: name.to_owned(),
            dim,
            rows: RwLock::new(NamespaceIndex::new(0, memory.clone())),
            entries: RwLock::new(NamespaceIndex::new(dim, memory)),
            config,
            store,
            lexical: RwLock::new(LexicalIndex::new()),
            graph: AtomicBool::new(false),
            maintaining: AtomicBool::new(false),
            counted: Counted::default(),
            retry_at: Mutex::new(None),
        }
    }

    /// Live rows from which the store's HNSW index serves this namespace.
    fn graph_threshold(&self) -> usize {
        self.config.exact_threshold.min(STORE_GRAPH_THRESHOLD)
    }

    fn wants_graph(&self) -> bool {
        self.rows.read().len() >= self.graph_threshold()
    }
}

/// Live record counts as [`SearchIndex::counts`] last read them.
#[derive(Default)]
struct Counted {
    messages: AtomicUsize,
    summaries: AtomicUsize,
    entries: AtomicUsize,
    lexical: AtomicUsize,
}

impl Counted {
    fn set(&self, rows: &NamespaceIndex, entries: &NamespaceIndex, lex: &LexicalIndex) {
        let r = Ordering::Relaxed;
        self.messages.store(rows.count(HitKind::Message), r);
        self.summaries.store(rows.count(HitKind::Summary), r);
        self.entries.store(
            entries.count(HitKind::Context)
                + entries.count(HitKind::Board)
                + entries.count(HitKind::Agent),
            r,
        );
        self.lexical.store(lex.len(), r);
    }
}

/// The dense channel of one search: the store for messages and summaries, memory
/// for entries.
struct Dense<'a> {
    index: &'a StoreIndex,
    rows: &'a NamespaceIndex,
    rows_filter: Option<RowFilter>,
    entries: &'a NamespaceIndex,
    entries_filter: Option<RowFilter>,
}

impl Dense<'_> {
    /// The store's nearest admitted rows, `n` of them when that many pass.
    fn stored_nearest(&self, query: &[f32], n: usize, exact: bool) -> Result<Vec<Scored>> {
        let Some(rf) = &self.rows_filter else {
            return Ok(Vec::new());
        };
        let live = self.rows.len();
        let tables = VectorTables {
            messages: rf.admits_kind(HitKind::Message),
            summaries: rf.admits_kind(HitKind::Summary),
        };
        if n == 0 || live == 0 || !(tables.messages || tables.summaries) {
            return Ok(Vec::new());
        }
        let store = &self.index.store;
        let name = self.index.name.as_str();
        let threshold = self.index.graph_threshold();
        let approximate = !exact && live >= threshold;
        let admitted = |found: Vec<(u64, f32)>| -> Vec<Scored> {
            let mut out: Vec<Scored> = found
                .into_iter()
                .filter(|&(seq, _)| self.rows.matches(seq, rf))
                .map(|(seq, score)| Scored { score, seq })
                .collect();
            out.sort_by(|a, b| b.cmp(a));
            out.truncate(n);
            out
        };
        let exactly = |rows: &[u64]| -> Result<Vec<Scored>> {
            Ok(admitted(wait(store.nearest(
                name,
                query,
                n,
                VectorScan::Rows(rows),
                tables,
            ))?))
        };
        // Filters the store does not know (role, agent, session, speaker, time,
        // metadata) are applied here. As in memory: a selective filter, or any
        // filter below the graph threshold, scans exactly the rows it admits;
        // otherwise the store over-fetches by the fraction the filter keeps.
        let matching = (!rf.only_kinds()).then(|| self.rows.matching(rf));
        let mut fetch = match &matching {
            None => n + STORE_MARGIN,
            Some(rows) if rows.is_empty() => return Ok(Vec::new()),
            Some(rows) if !approximate || rows.len() <= threshold.min(live / 10).max(n) => {
                return exactly(rows);
            }
            Some(rows) => (n * live).div_ceil(rows.len()) * 2 + STORE_MARGIN,
        };
        let mut out = Vec::new();
        for _ in 0..2 {
            let scan = if approximate {
                VectorScan::Approximate {
                    ef_search: self.index.config.ef_search.max(fetch),
                }
            } else {
                VectorScan::All
            };
            let found = wait(store.nearest(name, query, fetch, scan, tables))?;
            // Fewer than asked from every table: nothing more to find.
            let full = found.len() >= fetch;
            out = admitted(found);
            if out.len() >= n || !full {
                return Ok(out);
            }
            // Rows the store holds but this node has not indexed yet (another
            // node's newest writes), or a filter keeping fewer than expected, took
            // the places: ask for more.
            fetch = 4 * fetch + 64;
        }
        // Still short: scan the admitted rows exactly when they are few; an
        // approximate answer otherwise (never a list of every row id).
        let rows = matching.unwrap_or_else(|| self.rows.matching(rf));
        if rows.len() <= threshold {
            return exactly(&rows);
        }
        Ok(out)
    }
}

impl DenseChannel for Dense<'_> {
    fn nearest(&self, query: &[f32], n: usize, exact: bool) -> Result<Vec<Scored>> {
        let mut out = self.stored_nearest(query, n, exact)?;
        if let Some(rf) = &self.entries_filter {
            out.extend(self.entries.search(query, n, rf, true));
            out.sort_by(|a, b| b.cmp(a));
            out.truncate(n);
        }
        Ok(out)
    }

    fn similarities(&self, query: &[f32], seqs: &[u64]) -> Result<HashMap<u64, f32>> {
        let mut out = HashMap::with_capacity(seqs.len());
        let mut ask = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            match self.entries.similarity(query, seq) {
                Some(d) => {
                    out.insert(seq, d);
                }
                None => ask.push(seq),
            }
        }
        if !ask.is_empty() {
            out.extend(wait(self.index.store.similarities(query, &ask))?);
        }
        Ok(out)
    }

    fn admits(&self, seq: u64) -> bool {
        self.rows_filter
            .as_ref()
            .is_some_and(|rf| self.rows.matches(seq, rf))
            || self
                .entries_filter
                .as_ref()
                .is_some_and(|rf| self.entries.matches(seq, rf))
    }
}

impl SearchIndex for StoreIndex {
    fn insert(&self, docs: &[IndexDoc<'_>]) {
        let mut rows = self.rows.write();
        let mut entries = self.entries.write();
        let mut lex = self.lexical.write();
        for doc in docs {
            match *doc {
                // The store holds these vectors.
                IndexDoc::Message { row, message, .. } => rows.push(row, message, &[]),
                IndexDoc::Summary { row, summary, .. } => rows.push_summary(row, summary, &[]),
                IndexDoc::Entry {
                    row,
                    kind,
                    at,
                    vector,
                    ..
                } => entries.push_entry(row, kind, at, vector),
            }
            super::index_text(&mut lex, doc);
        }
    }

    fn remove(&self, seqs: &[u64]) {
        let mut rows = self.rows.write();
        let mut entries = self.entries.write();
        let mut lex = self.lexical.write();
        for &seq in seqs {
            if !rows.remove(seq) {
                entries.remove(seq);
            }
            lex.remove(seq);
        }
    }

    fn rank(
        &self,
        q: &RankQuery<'_>,
        k: usize,
        fetch: usize,
        filter: &Filter,
        kinds: &[HitKind],
    ) -> Result<Option<Ranked>> {
        let rows = self.rows.read();
        let entries = self.entries.read();
        let rows_filter = rows.compile_for(filter, kinds);
        let entries_filter = entries.compile_for(filter, kinds);
        if rows_filter.is_none() && entries_filter.is_none() {
            return Ok(None);
        }
        let live = rows.len() + entries.len();
        let dense = Dense {
            index: self,
            rows: &rows,
            rows_filter,
            entries: &entries,
            entries_filter,
        };
        let (candidates, exhausted, norm) =
            hybrid::rank_by_mode(&dense, &self.lexical.read(), q, k, fetch)?;
        Ok(Some(Ranked {
            candidates,
            live,
            exhausted: exhausted || fetch >= live,
            norm,
        }))
    }

    fn rows(&self, kind: HitKind) -> Vec<u64> {
        match kind {
            HitKind::Message | HitKind::Summary => self.rows.read().seqs_of(kind),
            _ => self.entries.read().seqs_of(kind),
        }
    }

    fn counts(&self) -> IndexCounts {
        // Fresh when no ranking or write holds the locks; the last figures
        // otherwise (never waits behind a store query).
        if let (Some(rows), Some(entries), Some(lex)) = (
            self.rows.try_read(),
            self.entries.try_read(),
            self.lexical.try_read(),
        ) {
            self.counted.set(&rows, &entries, &lex);
        }
        let r = Ordering::Relaxed;
        IndexCounts {
            messages: self.counted.messages.load(r),
            summaries: self.counted.summaries.load(r),
            entries: self.counted.entries.load(r),
            lexical_documents: self.counted.lexical.load(r),
            graph: self.graph.load(Ordering::Acquire),
            graph_tail: 0,
            graph_dumped: 0,
            graph_reloading: false,
        }
    }

    fn needs_maintenance(&self) -> bool {
        if self.maintaining.load(Ordering::Acquire) {
            return false;
        }
        // Called from async tasks: never wait for a lock that a ranking holds
        // across a store query (a contended check answers "no"; the next write
        // asks again).
        let (Some(rows), Some(entries)) = (self.rows.try_read(), self.entries.try_read()) else {
            return false;
        };
        let compact = rows.needs_rebuild() || entries.needs_rebuild();
        let build = !self.graph.load(Ordering::Acquire)
            && rows.len() >= self.graph_threshold()
            && self.retry_at.lock().is_none_or(|at| Instant::now() >= at);
        compact || build
    }

    /// Compacts the in-memory rows after many deletions, and asks the store to
    /// build this namespace's HNSW index once it holds
    /// `min(`[`STORE_GRAPH_THRESHOLD`]`, exact_threshold)` live records (minutes at 100k; searches
    /// are served meanwhile by the store's exact scan).
    fn maintain(&self) {
        if self.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
        struct Lower<'a>(&'a AtomicBool);
        impl Drop for Lower<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _lower = Lower(&self.maintaining);
        for side in [&self.rows, &self.entries] {
            let mut idx = side.write();
            if idx.needs_rebuild() {
                // No vectors or no graph: a copy of the live rows, milliseconds.
                let snapshot = idx.snapshot();
                *idx = NamespaceIndex::rebuilt_from(&snapshot);
            }
        }
        if self.graph.load(Ordering::Acquire) || !self.wants_graph() {
            return;
        }
        // One build at a time in this process: PostgreSQL builds one index of a
        // table concurrently at a time anyway, and each waiting build would hold
        // a pooled connection.
        let _one = BUILDS.lock();
        let started = Instant::now();
        let built = wait(self.store.build_vector_index(
            &self.name,
            self.dim,
            self.config.m,
            self.config.ef_construction,
        ));
        match built {
            Ok(true) => {
                self.graph.store(true, Ordering::Release);
                tracing::info!(
                    namespace = %self.name,
                    took_ms = started.elapsed().as_millis() as u64,
                    "store vector index ready"
                );
            }
            // Another node is building an index: look again shortly (the
            // engine's index job asks every namespace on its tick, so a quiet
            // namespace is asked too).
            Ok(false) => *self.retry_at.lock() = Some(Instant::now() + CONTENDED_POLL),
            Err(e) => {
                tracing::warn!(namespace = %self.name, error = %e, "store vector index build failed; exact scans meanwhile");
                *self.retry_at.lock() = Some(Instant::now() + BUILD_RETRY);
            }
        }
    }

    // `discard` keeps the default (nothing): the namespace's index is keyed by
    // its name, is emptied with its rows, and serves the name's next life; a
    // drop could race a build (or the next life's use) on another node.
}
