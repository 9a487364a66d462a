//! The search seam: [`SearchIndex`] is what the engine asks to index, unindex and
//! rank one namespace's records. [`InProcessIndex`] implements it in memory: an
//! exact SIMD scan or an HNSW graph ([`vector`]) beside per-namespace BM25
//! ([`lexical`]), fused by [`hybrid`]. A backend that searches itself (pgvector
//! and SQL full text) implements the same trait; fusion and neighbour expansion
//! stay above it.
//!
//! Rows are the store's record keys ([`crate::storage::RowId`]): an index never
//! holds record text it would have to keep in step with the store, only what it
//! ranks by.

pub mod dictionary;
pub mod hybrid;
pub mod lexical;
pub mod persist;
pub mod store;
pub mod vector;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::RwLock;

use crate::core::params::{HybridParams, IndexConfig};
use crate::core::types::{Filter, HitKind, Message, SearchMode, Summary};
use lexical::LexicalIndex;
use vector::{NamespaceIndex, RowFilter, Scored};

/// A record to index with its row and unit vector `[dim]`.
#[derive(Debug, Clone, Copy)]
pub enum IndexDoc<'a> {
    /// A message.
    Message {
        /// Its row.
        row: u64,
        /// The message.
        message: &'a Message,
        /// Its unit embedding.
        vector: &'a [f32],
    },
    /// A summary.
    Summary {
        /// Its row.
        row: u64,
        /// The summary.
        summary: &'a Summary,
        /// Its unit embedding.
        vector: &'a [f32],
    },
    /// A context entry or board document: a row the engine assigns, its kind
    /// ([`HitKind::Context`] or [`HitKind::Board`]), its search text and time.
    /// Like summaries, it matches no role, agent, session, name or metadata
    /// filter and has no neighbours.
    Entry {
        /// Its row (the engine's, not a store record key).
        row: u64,
        /// `Context` or `Board`.
        kind: HitKind,
        /// The text BM25 indexes.
        text: &'a str,
        /// When its search text was last written (for time filters; a write that
        /// keeps the text, such as a vote, does not move it).
        at: chrono::DateTime<chrono::Utc>,
        /// Its unit embedding.
        vector: &'a [f32],
    },
}

/// A search's query as the ranking sees it.
#[derive(Debug, Clone, Copy)]
pub struct RankQuery<'a> {
    /// The query text (absent for a vector query).
    pub text: Option<&'a str>,
    /// Unit vector `[dim]`; `None` only in lexical mode.
    pub vector: Option<&'a [f32]>,
    /// Which channels rank.
    pub mode: SearchMode,
    /// Fusion weights and BM25 parameters.
    pub params: HybridParams,
}

/// One round of candidates from [`SearchIndex::rank`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Rows, best first.
    pub candidates: Vec<Scored>,
    /// Live records in the namespace (the most any fetch can return).
    pub live: usize,
    /// True when asking for more cannot find more.
    pub exhausted: bool,
    /// How a hybrid ranking normalized its channels (`None` in the other modes).
    pub norm: Option<hybrid::FusionNorm>,
}

/// Merges the rankings of several namespaces (a search with `scope: inherit`)
/// into one list of `(list index, candidate)`, best first.
///
/// Dense scores (cosine) and lexical scores (BM25, each namespace with its own
/// statistics) are merged as they are. Hybrid scores are normalized within each
/// namespace's pool, so a namespace where nothing matches well would still
/// put its best candidate at the top; each list's scores are therefore scaled
/// by how strong its pool is against the strongest one:
/// `g = w · lmax / max(lmax) + (1 − w) · (dmax − min(dmin)) / (max(dmax) − min(dmin))`
/// (`w` the lexical weight, `dmin`/`dmax`/`lmax` the list's [`hybrid::FusionNorm`]).
/// A namespace holding the best lexical and the best dense match keeps its
/// scores (`g = 1`). Measured on LoCoMo with each conversation split into a
/// parent and a child namespace (README, "Retrieval quality").
pub fn merge(lists: &[Ranked], lexical_weight: f32) -> Vec<(usize, Scored)> {
    let norms: Vec<_> = lists.iter().filter_map(|r| r.norm).collect();
    let scale: Vec<f32> = if norms.is_empty() {
        vec![1.0; lists.len()]
    } else {
        let lmax = norms.iter().map(|n| n.lexical_max).fold(0f32, f32::max);
        let dmax = norms.iter().map(|n| n.dense_max).fold(f32::MIN, f32::max);
        let dmin = norms.iter().map(|n| n.dense_min).fold(f32::MAX, f32::min);
        let w = lexical_weight;
        lists
            .iter()
            .map(|r| match r.norm {
                None => 0.0,
                Some(n) => {
                    let l = if lmax > 0.0 {
                        n.lexical_max / lmax
                    } else {
                        0.0
                    };
                    let d = if dmax > dmin {
                        (n.dense_max - dmin) / (dmax - dmin)
                    } else {
                        1.0
                    };
                    w * l + (1.0 - w) * d
                }
            })
            .collect()
    };
    let mut out: Vec<(usize, Scored)> = lists
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let g = scale[i];
            r.candidates.iter().map(move |s| {
                (
                    i,
                    Scored {
                        score: s.score * g,
                        seq: s.seq,
                    },
                )
            })
        })
        .collect();
    // Best first; ties: the nearer namespace, then its own order.
    out.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
    out
}

/// Record counts of one namespace's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounts {
    /// Indexed messages.
    pub messages: usize,
    /// Indexed summaries.
    pub summaries: usize,
    /// Indexed context entries and board documents.
    pub entries: usize,
    /// Documents in the lexical channel (every indexed record when in step).
    pub lexical_documents: usize,
    /// Whether an approximate (graph) index serves the namespace.
    pub graph: bool,
    /// Rows written after the graph's last position, served by an exact scan
    /// until maintenance inserts them (0 without a graph).
    pub graph_tail: usize,
    /// Graph positions covered by the newest dump on disk (0: none).
    pub graph_dumped: usize,
    /// A graph dump is being reloaded in the background after open (the
    /// namespace is served by an exact scan until it is in).
    pub graph_reloading: bool,
}

/// The search side of one namespace. Implementations are internally
/// synchronized; the engine calls `insert`/`remove` for one namespace from one
/// writer at a time, in commit order, and `rank` from any thread.
pub trait SearchIndex: Send + Sync {
    /// Indexes records (rows increasing).
    fn insert(&self, docs: &[IndexDoc<'_>]);
    /// Removes rows; unknown rows are ignored.
    fn remove(&self, rows: &[u64]);
    /// The best `fetch` candidates for `q` among the records that pass `filter`
    /// and `kinds` (empty: all kinds), or `None` when no record can pass.
    /// Blocking (CPU-bound, or a query to the store): call it off the async
    /// runtime.
    ///
    /// # Errors
    /// An index that asks the store ([`store::StoreIndex`]) returns the store's
    /// errors ([`crate::Error::Storage`]); the in-memory one never fails.
    fn rank(
        &self,
        q: &RankQuery<'_>,
        k: usize,
        fetch: usize,
        filter: &Filter,
        kinds: &[HitKind],
    ) -> crate::Result<Option<Ranked>>;
    /// Rows of one kind, ascending (their insertion order).
    fn rows(&self, kind: HitKind) -> Vec<u64>;
    /// Record counts.
    fn counts(&self) -> IndexCounts;
    /// Whether [`SearchIndex::maintain`] has work to do (e.g. a graph to build).
    fn needs_maintenance(&self) -> bool;
    /// Does that work (seconds at 100k); call it on a background thread. Searches
    /// keep being served meanwhile.
    fn maintain(&self);
    /// Claims the namespace for [`SearchIndex::restore`], on open after the
    /// records were inserted and before the engine serves: until the reload
    /// ends, maintenance leaves the namespace alone instead of building a graph
    /// from scratch. Returns whether there may be something to reload (then
    /// `restore` must follow). Default: nothing is persisted.
    fn claim_restore(&self) -> bool {
        false
    }
    /// Adopts what an earlier process persisted for this namespace (a graph
    /// dump) and ends a claim, if one is held (it may also be called without
    /// one, e.g. by a follower's rebuild, and then leaves maintenance alone).
    /// Returns whether anything was adopted; blocking (reads files: ~1 GB at
    /// 1M vectors), so the engine runs it on a background thread while
    /// searches are served. A deleted namespace's dump is not read. Default:
    /// nothing.
    fn restore(&self) -> bool {
        false
    }
    /// Ends a claim without reloading anything (the engine is gone, or the
    /// reload failed); maintenance may then build. Default: nothing.
    fn discard_claim(&self) {}
    /// The namespace was deleted: drop what is persisted for it. Default: nothing.
    fn discard(&self) {}
}

/// Dump a growing graph again once this many positions (at least; or a tenth of
/// the dump, whichever is more) were inserted since the last dump, so a restart
/// replays a bounded tail.
const REDUMP_MIN: usize = 5_000;
/// Tail rows inserted into the graph per round (the index lock is taken between
/// rounds only to copy the vectors and to move the graph's end).
const TAIL_ROUND: usize = 4_096;

/// Adds a record's search text to a namespace's BM25 index (both index kinds).
fn index_text(lex: &mut LexicalIndex, doc: &IndexDoc<'_>) {
    match *doc {
        IndexDoc::Message { row, message, .. } => lex.push_message(row, message),
        IndexDoc::Summary { row, summary, .. } => lex.push_summary(row, summary),
        IndexDoc::Entry { row, text, .. } => lex.push_text(row, text),
    }
}

/// The in-process implementation: [`NamespaceIndex`] (exact scan below
/// [`IndexConfig::exact_threshold`], HNSW above) and [`LexicalIndex`].
/// Lock order: `vector` before `lexical`.
pub struct InProcessIndex {
    name: String,
    dim: usize,
    config: IndexConfig,
    vector: RwLock<NamespaceIndex>,
    lexical: RwLock<LexicalIndex>,
    /// Held (true) by the one maintenance thread of the namespace, or by a
    /// claimed reload ([`SearchIndex::claim_restore`]).
    rebuilding: AtomicBool,
    /// A claimed reload has not ended.
    restoring: AtomicBool,
    /// Where this namespace's graph dumps go ([`persist`]); `None`: not persisted.
    dumps: Option<PathBuf>,
    /// Set by [`SearchIndex::discard`]: no more dumps.
    discarded: AtomicBool,
}

impl InProcessIndex {
    /// An empty index for namespace `name`. With `dumps` (this namespace's dump
    /// directory, [`persist::namespace_dir`]) its graphs are saved there after
    /// every build and as they grow, and [`SearchIndex::restore`] reloads them.
    pub fn new(
        name: &str,
        dim: usize,
        config: IndexConfig,
        dumps: Option<PathBuf>,
    ) -> InProcessIndex {
        InProcessIndex {
            name: name.to_owned(),
            dim,
            vector: RwLock::new(NamespaceIndex::new(dim, config.clone())),
            config,
            lexical: RwLock::new(LexicalIndex::new()),
            rebuilding: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            dumps,
            discarded: AtomicBool::new(false),
        }
    }

    /// Maintenance work to do: a rebuild, or tail rows to insert into the graph.
    fn has_work(&self) -> bool {
        let idx = self.vector.read();
        idx.needs_rebuild() || idx.tail_len() > 0
    }

    /// Rebuilds the vector index from a snapshot without blocking searches, swaps
    /// it in (rows written meanwhile become its tail), then dumps the new graph.
    fn rebuild(&self) {
        let started = Instant::now();
        let snapshot = self.vector.read().snapshot();
        let mut rebuilt = NamespaceIndex::rebuilt_from(&snapshot);
        let dump = self.dumps.as_ref().and(rebuilt.graph_for_dump());
        {
            let mut idx = self.vector.write();
            idx.catch_up(&mut rebuilt, snapshot.upto);
            *idx = rebuilt;
        }
        tracing::info!(
            namespace = %self.name,
            took_ms = started.elapsed().as_millis() as u64,
            "index rebuilt"
        );
        match dump {
            // Swapped in already; this thread is still the graph's only writer.
            Some((graph, seqs)) => self.dump(&graph, &seqs),
            None => {
                if let Some(dir) = &self.dumps
                    && !self.discarded.load(Ordering::Acquire)
                {
                    persist::remove(dir);
                }
            }
        }
    }

    /// Inserts up to [`TAIL_ROUND`] tail rows into the graph; dumps it when it
    /// grew enough since the last dump. False when there was nothing to do.
    fn extend_graph(&self) -> bool {
        let Some((graph, from, vectors)) = self.vector.read().graph_tail(TAIL_ROUND) else {
            return false;
        };
        let to = from + vectors.len() / self.dim;
        NamespaceIndex::insert_tail(&graph, from, &vectors, self.dim);
        let extended = self.vector.write().graph_extended(&graph, from, to);
        if !extended {
            return true;
        }
        let due = self.dumps.is_some() && {
            let idx = self.vector.read();
            idx.undumped() >= REDUMP_MIN.max(idx.dumped() / 10)
        };
        let due = due.then(|| self.vector.read().graph_for_dump()).flatten();
        if let Some((g, seqs)) = due
            && Arc::ptr_eq(&g, &graph)
        {
            self.dump(&graph, &seqs);
        }
        true
    }

    /// Writes a dump of `graph` (positions `0..seqs.len()`; the caller is the
    /// graph's only writer) and records the positions it covers. A failed dump is
    /// recorded too (logged; the next open rebuilds, which is slower, not wrong), so
    /// the next attempt waits for [`REDUMP_MIN`] more rows instead of following
    /// every write.
    fn dump(&self, graph: &vector::SharedGraph, seqs: &[u64]) {
        let Some(dir) = &self.dumps else { return };
        if !self.discarded.load(Ordering::Acquire) {
            let started = Instant::now();
            match persist::dump(dir, &self.name, graph, seqs, self.dim, &self.config) {
                // Deleted meanwhile: only this dump goes (a namespace of the same
                // name created since may have dumps of its own here).
                Ok(written) if self.discarded.load(Ordering::Acquire) => persist::remove(&written),
                Ok(_) => tracing::info!(
                    namespace = %self.name,
                    positions = seqs.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "graph dumped"
                ),
                Err(e) => {
                    tracing::warn!(namespace = %self.name, error = %e, "graph dump failed")
                }
            }
        }
        self.vector.write().graph_dumped(graph, seqs.len());
    }
}

impl SearchIndex for InProcessIndex {
    fn insert(&self, docs: &[IndexDoc<'_>]) {
        let mut idx = self.vector.write();
        let mut lex = self.lexical.write();
        for doc in docs {
            match *doc {
                IndexDoc::Message {
                    row,
                    message,
                    vector,
                } => idx.push(row, message, vector),
                IndexDoc::Summary {
                    row,
                    summary,
                    vector,
                } => idx.push_summary(row, summary, vector),
                IndexDoc::Entry {
                    row,
                    kind,
                    at,
                    vector,
                    ..
                } => idx.push_entry(row, kind, at, vector),
            }
            index_text(&mut lex, doc);
        }
    }

    fn remove(&self, rows: &[u64]) {
        let mut idx = self.vector.write();
        let mut lex = self.lexical.write();
        for &row in rows {
            idx.remove(row);
            lex.remove(row);
        }
    }

    fn rank(
        &self,
        q: &RankQuery<'_>,
        k: usize,
        fetch: usize,
        filter: &Filter,
        kinds: &[HitKind],
    ) -> crate::Result<Option<Ranked>> {
        let idx = self.vector.read();
        let Some(rf) = idx.compile_for(filter, kinds) else {
            return Ok(None);
        };
        let live = idx.len();
        let (candidates, exhausted, norm) = self.rank_with(&idx, &rf, q, k, fetch)?;
        Ok(Some(Ranked {
            candidates,
            live,
            exhausted: exhausted || fetch >= live,
            norm,
        }))
    }

    fn rows(&self, kind: HitKind) -> Vec<u64> {
        self.vector.read().seqs_of(kind)
    }

    fn counts(&self) -> IndexCounts {
        let idx = self.vector.read();
        IndexCounts {
            messages: idx.count(HitKind::Message),
            summaries: idx.count(HitKind::Summary),
            entries: idx.count(HitKind::Context)
                + idx.count(HitKind::Board)
                + idx.count(HitKind::Agent),
            lexical_documents: self.lexical.read().len(),
            graph: idx.has_graph(),
            graph_tail: idx.tail_len(),
            graph_dumped: idx.dumped(),
            graph_reloading: self.restoring.load(Ordering::Acquire),
        }
    }

    fn needs_maintenance(&self) -> bool {
        !self.rebuilding.load(Ordering::Acquire) && self.has_work()
    }

    /// Rebuilds the graph when [`NamespaceIndex::needs_rebuild`] says so and
    /// inserts tail rows into it, until there is nothing left; searches are served
    /// throughout. One maintenance thread per namespace; a second call while one
    /// runs returns at once (the running one sees the new work before it stops).
    fn maintain(&self) {
        /// Lowers the flag however the round ends (a panic included), so a failed
        /// round does not stop this namespace's maintenance for good.
        struct Lower<'a>(&'a AtomicBool);
        impl Drop for Lower<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        loop {
            if self.rebuilding.swap(true, Ordering::AcqRel) {
                return;
            }
            let lower = Lower(&self.rebuilding);
            let mut rebuilds = 0;
            loop {
                // At most two rebuilds per call: deletes racing a rebuild must not
                // keep this thread rebuilding forever (the next write asks again).
                if rebuilds < 2 && self.vector.read().needs_rebuild() {
                    rebuilds += 1;
                    self.rebuild();
                } else if !self.extend_graph() {
                    break;
                }
            }
            drop(lower);
            // Work that arrived after the last check but before the flag dropped
            // found the flag up and left it to this thread.
            let more = {
                let idx = self.vector.read();
                idx.tail_len() > 0 || (rebuilds < 2 && idx.needs_rebuild())
            };
            if !more {
                return;
            }
        }
    }

    fn claim_restore(&self) -> bool {
        let Some(dir) = &self.dumps else { return false };
        // Below the threshold nothing is reloaded. Not deleted either: an engine
        // opened with another threshold (say `memoryd check` without the
        // server's flags) must not cost the server its dump.
        if !dir.exists() || self.vector.read().len() < self.config.exact_threshold {
            return false;
        }
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.restoring.store(true, Ordering::Release);
        true
    }

    fn restore(&self) -> bool {
        /// Ends the claim however the reload ends.
        struct Release<'a>(&'a InProcessIndex);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.discard_claim();
            }
        }
        let _release = Release(self);
        let Some(dir) = &self.dumps else { return false };
        // Deleted (its dump directory may already belong to a new namespace of
        // the same name), or too small for a graph.
        if self.discarded.load(Ordering::Acquire)
            || self.vector.read().len() < self.config.exact_threshold
        {
            return false;
        }
        let started = Instant::now();
        let Some(loaded) = persist::load(dir, &self.name, self.dim, &self.config) else {
            return false;
        };
        let positions = loaded.seqs.len();
        // Its own statement: the write guard must be gone before the log line
        // reads the index (parking_lot locks are not re-entrant).
        let restored = self.vector.write().restore(loaded.hnsw, loaded.seqs);
        match restored {
            Ok(dead) => {
                let tail = self.vector.read().tail_len();
                tracing::info!(
                    namespace = %self.name,
                    positions,
                    tombstones = dead,
                    tail,
                    took_ms = started.elapsed().as_millis() as u64,
                    "graph reloaded"
                );
                true
            }
            Err(e) => {
                tracing::warn!(namespace = %self.name, error = %e, "graph dump does not fit; discarded");
                if !self.discarded.load(Ordering::Acquire) {
                    persist::remove(dir);
                }
                false
            }
        }
    }

    fn discard_claim(&self) {
        if self.restoring.swap(false, Ordering::AcqRel) {
            self.rebuilding.store(false, Ordering::Release);
        }
    }

    fn discard(&self) {
        self.discarded.store(true, Ordering::Release);
        if let Some(dir) = self.dumps.clone() {
            // Off the caller's thread (this runs inside a commit); a crash before it
            // is finished is cleaned up by the next open.
            let spawned = std::thread::Builder::new()
                .name("memoryd-dump-rm".into())
                .spawn(move || persist::remove(&dir));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a thread to delete a graph dump");
            }
        }
    }
}

impl InProcessIndex {
    /// The best `fetch` candidates (more in hybrid mode) for `q`, best first, and
    /// whether asking for more cannot find more ([`hybrid::rank_by_mode`]).
    fn rank_with(
        &self,
        idx: &NamespaceIndex,
        rf: &RowFilter,
        q: &RankQuery<'_>,
        k: usize,
        fetch: usize,
    ) -> crate::Result<(Vec<Scored>, bool, Option<hybrid::FusionNorm>)> {
        let dense = hybrid::InMemory {
            index: idx,
            filter: rf,
        };
        hybrid::rank_by_mode(&dense, &self.lexical.read(), q, k, fetch)
    }
}

#[cfg(test)]
mod tests {
    use super::hybrid::FusionNorm;
    use super::*;

    fn ranked(scores: &[(u64, f32)], norm: Option<FusionNorm>) -> Ranked {
        Ranked {
            candidates: scores
                .iter()
                .map(|&(seq, score)| Scored { score, seq })
                .collect(),
            live: scores.len(),
            exhausted: true,
            norm,
        }
    }

    #[test]
    fn a_weak_namespace_is_scaled_below_a_strong_one() {
        // Both lists' best candidates score ~1 in their own normalization, but the
        // parent's pool matched the query far better on both channels.
        let strong = FusionNorm {
            dense_min: 0.1,
            dense_max: 0.8,
            lexical_max: 12.0,
        };
        let weak = FusionNorm {
            dense_min: 0.1,
            dense_max: 0.3,
            lexical_max: 2.0,
        };
        let child = ranked(&[(1, 1.0), (2, 0.5)], Some(weak));
        let parent = ranked(&[(10, 0.95), (11, 0.6)], Some(strong));
        let merged = merge(&[child, parent], 0.5);
        let order: Vec<(usize, u64)> = merged.iter().map(|(i, s)| (*i, s.seq)).collect();
        assert_eq!(order, [(1, 10), (1, 11), (0, 1), (0, 2)]);
        // g(child) = 0.5·2/12 + 0.5·(0.3 − 0.1)/(0.8 − 0.1) = 0.2262
        assert!((merged[2].1.score - 0.2262).abs() < 1e-3, "{merged:?}");
        // The strongest list keeps its scores.
        assert_eq!(merged[0].1.score, 0.95);
    }

    #[test]
    fn unnormalized_modes_merge_raw_scores_nearest_namespace_first_on_ties() {
        let a = ranked(&[(1, 0.5), (2, 0.2)], None);
        let b = ranked(&[(10, 0.7), (11, 0.5)], None);
        let order: Vec<(usize, u64)> = merge(&[a, b], 0.5)
            .iter()
            .map(|(i, s)| (*i, s.seq))
            .collect();
        assert_eq!(order, [(1, 10), (0, 1), (1, 11), (0, 2)]);
    }

    /// A namespace claimed for a reload on open is left alone by maintenance (a
    /// write must not start a build from scratch while the dump is read), is
    /// served by an exact scan meanwhile, and gets the dump's graph from
    /// `restore`, which ends the claim.
    #[test]
    fn a_claimed_namespace_waits_for_its_reload_instead_of_building() {
        use crate::core::types::{Message, Role};
        let dir = tempfile::tempdir().unwrap();
        let config = IndexConfig {
            exact_threshold: 200,
            ..IndexConfig::default()
        };
        let msg = |i: usize| Message {
            id: String::new(),
            namespace: "t".into(),
            role: Role::User,
            name: None,
            content: format!("m{i}"),
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            agent_id: None,
            session_id: None,
            exchange_id: None,
            metadata: Default::default(),
        };
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let vectors: Vec<Vec<f32>> = (0..301)
            .map(|_| {
                let mut v: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0..1.0)).collect();
                crate::embed::l2_normalize(&mut v);
                v
            })
            .collect();
        let messages: Vec<Message> = (0..301).map(msg).collect();
        let fill = |index: &InProcessIndex| {
            let docs: Vec<IndexDoc<'_>> = (0..300)
                .map(|i| IndexDoc::Message {
                    row: i as u64 + 1,
                    message: &messages[i],
                    vector: &vectors[i],
                })
                .collect();
            index.insert(&docs);
        };
        // A first process builds the graph and dumps it.
        let first = InProcessIndex::new("t", 16, config.clone(), Some(dir.path().to_path_buf()));
        fill(&first);
        first.maintain();
        assert!(first.counts().graph && first.counts().graph_dumped == 300);
        drop(first);

        // The next open: records inserted, the namespace claimed.
        let next = InProcessIndex::new("t", 16, config, Some(dir.path().to_path_buf()));
        fill(&next);
        assert!(next.claim_restore());
        assert!(next.counts().graph_reloading);
        assert!(!next.needs_maintenance(), "claimed: no build from scratch");
        next.maintain();
        assert!(
            !next.counts().graph,
            "maintenance built a graph during the claim"
        );
        let q = RankQuery {
            text: None,
            vector: Some(&vectors[5]),
            mode: SearchMode::Dense,
            params: HybridParams::default(),
        };
        let hits = next
            .rank(&q, 1, 1, &Filter::default(), &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            hits.candidates[0].seq, 6,
            "served by the exact scan meanwhile"
        );

        // A write and a delete during the claim: after the reload the new row
        // is the tail and the deleted one stays deleted.
        next.insert(&[IndexDoc::Message {
            row: 301,
            message: &messages[300],
            vector: &vectors[300],
        }]);
        next.remove(&[7]);
        assert!(next.restore(), "the dump is reloaded");
        let c = next.counts();
        assert!(c.graph && !c.graph_reloading);
        assert_eq!((c.messages, c.graph_tail), (300, 1));
        let q = RankQuery {
            vector: Some(&vectors[6]),
            ..q
        };
        let hits = next
            .rank(&q, 1, 1, &Filter::default(), &[])
            .unwrap()
            .unwrap();
        assert_ne!(
            hits.candidates[0].seq, 7,
            "a row deleted during the claim is found"
        );
        assert!(next.needs_maintenance(), "the tail is left to maintenance");
        next.maintain();
        assert_eq!(next.counts().graph_tail, 0);
    }

    /// A claim whose reload finds no usable dump ends, and maintenance then
    /// builds the graph.
    #[test]
    fn a_failed_reload_ends_the_claim_and_maintenance_builds() {
        use crate::core::types::{Message, Role};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("g-1")).unwrap(); // no manifest
        let config = IndexConfig {
            exact_threshold: 50,
            ..IndexConfig::default()
        };
        let index = InProcessIndex::new("t", 4, config, Some(dir.path().to_path_buf()));
        let m = Message {
            id: String::new(),
            namespace: "t".into(),
            role: Role::User,
            name: None,
            content: "m".into(),
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            agent_id: None,
            session_id: None,
            exchange_id: None,
            metadata: Default::default(),
        };
        let vectors: Vec<[f32; 4]> = (0..60)
            .map(|i| {
                let a = i as f32 * 0.1;
                [a.cos() * 0.6, a.sin() * 0.6, 0.8, 0.0]
            })
            .collect();
        let docs: Vec<IndexDoc<'_>> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| IndexDoc::Message {
                row: i as u64 + 1,
                message: &m,
                vector: v,
            })
            .collect();
        index.insert(&docs);
        assert!(index.claim_restore());
        assert!(!index.needs_maintenance());
        assert!(!index.restore(), "nothing whole to reload");
        assert!(!index.counts().graph_reloading);
        assert!(index.needs_maintenance(), "the claim ended");
        index.maintain();
        assert!(index.counts().graph, "maintenance built the graph");
    }
}
