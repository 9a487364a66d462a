//! The vector index of one namespace: an exact SIMD scan over contiguous
//! vectors, plus an HNSW graph (hnsw_rs) once the namespace is large.
//!
//! Why both: on 384-d vectors an exact scan took ~0.3 ms at 10k vectors and
//! stayed under 1 ms to ~15k with recall 1.0, while hnsw_rs needs 0.28 ms at
//! 10k for recall 0.95 (measurements in issue 2, with f32 vectors; the scan
//! now reads f16, half the bytes, and its recall is against the f16 vectors). Most namespaces (a conversation, a
//! user) are smaller than [`IndexConfig::exact_threshold`], so they never pay for
//! a graph or lose recall.
//!
//! Rows are append-only: a row's number never changes until the index is
//! rebuilt. A write only appends; the graph covers a prefix of the rows and
//! searches scan the rows after it (the *tail*) exactly, while the namespace's
//! maintenance thread inserts the tail into the graph ([`NamespaceIndex::graph_tail`],
//! [`NamespaceIndex::graph_extended`]): writers never wait for graph inserts, and a
//! graph reloaded from a dump ([`NamespaceIndex::restore`]) serves at once with
//! the rows written after the dump in its tail. Each vector is held once, as
//! f16: rows in the graph are read from hnsw_rs's points, only the tail (and
//! every row of a namespace without a graph) from this index's own contiguous
//! array. f16 halves the bytes (768 B a vector at 384 dimensions, the largest
//! part of a message's memory at scale; issue 19), and every row is scored as
//! f32 query · f16 vector ([`crate::simd::dot_f16`]: a cosine off by ~3e-5,
//! at most ~5e-4, against the f32 one; the same in the exact scan and the
//! graph, so a row scores the same before and after it enters the graph). The
//! store keeps the model's f32 vectors. Deletes are tombstones; a graph over-fetches and drops them, and
//! [`NamespaceIndex::needs_rebuild`] asks for a rebuild once they pass
//! [`IndexConfig::rebuild_dead_ratio`]. hnsw_rs has no delete, and its
//! `search_filter` disables early stopping (63 ms instead of 1.2 ms at 100k with
//! 10% allowed), so filters are applied here instead: over-fetch then
//! post-filter, or an exact scan of the matching rows when the filter is selective.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use hnsw_rs::hnsw::Point;
use hnsw_rs::prelude::{Distance, Hnsw};

use crate::core::params::IndexConfig;
use crate::core::types::{Filter, HitKind, Message, Summary};
use crate::simd::{dot_f16, dot_f16_f16, to_f16};

/// Which way a search went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchPath {
    /// An exact scan (no graph, asked for exact, or a selective filter).
    Exact,
    /// The graph, over-fetching for the filter.
    Graph,
    /// The graph's neighbourhood held too few matches; fell back to an exact scan.
    GraphFallback,
}

/// hnsw_rs can dump and reload only graphs created with this many layers.
const HNSW_MAX_LAYER: usize = 16;

/// A scored candidate: higher score first, then lower seq (older) first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Ranking score, higher is better: cosine similarity for the vector index.
    pub score: f32,
    /// The message's seq.
    pub seq: u64,
}

impl Eq for Scored {}
impl Ord for Scored {
    /// `Greater` means better.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` of a stream.
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(s));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && s > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(s));
        }
    }

    fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|Reverse(s)| s).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// Interned string id; 0 means "absent".
type Sym = u32;

#[derive(Default)]
struct Interner {
    ids: HashMap<String, Sym>,
}

impl Interner {
    fn intern(&mut self, s: Option<&str>) -> Sym {
        match s {
            None => 0,
            Some(s) => {
                let next = self.ids.len() as Sym + 1;
                *self.ids.entry(s.to_owned()).or_insert(next)
            }
        }
    }

    /// `None` when the string was never seen (so nothing can match it).
    fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }
}

/// What the index keeps per row to evaluate filters without reading the store.
#[derive(Debug, Clone, Copy)]
struct Row {
    seq: u64,
    /// [`HitKind`] as u8.
    kind: u8,
    timestamp_micros: i64,
    role: u8,
    agent: Sym,
    session: Sym,
    name: Sym,
    has_metadata: bool,
    alive: bool,
}

/// A filter compiled against one namespace's interned strings
/// ([`NamespaceIndex::compile`]).
#[derive(Debug, Clone, Copy)]
pub struct RowFilter {
    /// Bit `k` set: rows of kind `k` may match.
    kinds: u8,
    role: Option<u8>,
    agent: Option<Sym>,
    session: Option<Sym>,
    name: Option<Sym>,
    from: Option<i64>,
    to: Option<i64>,
    needs_metadata: bool,
}

impl RowFilter {
    /// True when the filter restricts nothing but the kinds of hit (role,
    /// agent, session, speaker, time and metadata are free).
    pub fn only_kinds(&self) -> bool {
        self.role.is_none()
            && self.agent.is_none()
            && self.session.is_none()
            && self.name.is_none()
            && self.from.is_none()
            && self.to.is_none()
            && !self.needs_metadata
    }

    /// Whether hits of `kind` may pass.
    pub fn admits_kind(&self, kind: HitKind) -> bool {
        self.kinds & (1 << kind.to_u8()) != 0
    }

    fn is_empty(&self) -> bool {
        self.kinds == u8::MAX && self.only_kinds()
    }

    #[inline]
    fn matches(&self, r: &Row) -> bool {
        r.alive
            && self.kinds & (1 << r.kind) != 0
            && self.role.is_none_or(|v| v == r.role)
            && self.agent.is_none_or(|v| v == r.agent)
            && self.session.is_none_or(|v| v == r.session)
            && self.name.is_none_or(|v| v == r.name)
            && self.from.is_none_or(|v| r.timestamp_micros >= v)
            && self.to.is_none_or(|v| r.timestamp_micros < v)
            && (!self.needs_metadata || r.has_metadata)
    }
}

/// The graph's distance between two f16 unit vectors (bit patterns):
/// `max(0, 1 − a·b)`, as hnsw_rs's `DistDot` computes it on f32.
#[derive(Debug, Default, Clone, Copy)]
pub struct DistDotF16;

impl Distance<u16> for DistDotF16 {
    fn eval(&self, a: &[u16], b: &[u16]) -> f32 {
        (1.0 - dot_f16_f16(a, b)).max(0.0)
    }
}

/// An HNSW graph over f16 points (IEEE binary16 bit patterns).
pub type GraphF16 = Hnsw<'static, u16, DistDotF16>;

/// The HNSW graph of a namespace. Only the namespace's maintenance thread
/// inserts into it (hnsw_rs inserts through `&self`), which is what lets a dump
/// be written while searches go on.
pub type SharedGraph = Arc<GraphF16>;

struct Graph {
    hnsw: SharedGraph,
    /// Rows `0..len` are in the graph; rows from `len` on are the tail.
    len: usize,
    /// Rows in the graph that are tombstones.
    dead: usize,
    /// Positions covered by the newest dump on disk (0: none).
    dumped: usize,
}

/// The pool graph inserts run on: by default one thread fewer than the machine
/// has (at least one; [`set_graph_threads`] to change it), because candle and our forward pass run the model on rayon's
/// global pool, and a graph build there starved query embedding (a text search
/// took ~500 ms during a build instead of ~20 ms). Shared by every namespace.
fn graph_pool() -> Option<&'static rayon::ThreadPool> {
    pool_of(0)
}

/// The pool, built on first use with `threads` (0: all cores but one).
fn pool_of(threads: usize) -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(resolve_threads(threads))
            .thread_name(|i| format!("memoryd-hnsw-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
        n => n,
    }
}

/// Sizes the process-wide pool that builds and extends HNSW graphs
/// ([`IndexConfig::build_threads`]; 0: all cores but one, at least one). The
/// pool is built by the first call (or the first graph build, whichever comes
/// first) and keeps its size for the life of the process; returns whether its
/// size is the one asked for (the engine logs a warning otherwise).
pub fn set_graph_threads(threads: usize) -> bool {
    pool_of(threads).map(|p| p.current_num_threads()) == Some(resolve_threads(threads))
}

/// Inserts f16 vectors `[n · dim]` (bit patterns) at positions
/// `from..from + n`, in parallel on [`graph_pool`] when there are enough of them.
fn insert_all(hnsw: &GraphF16, halves: &[u16], dim: usize, from: usize) {
    let items: Vec<(&[u16], usize)> = halves
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (v, from + i))
        .collect();
    match graph_pool() {
        Some(pool) if items.len() >= 64 => pool.install(|| hnsw.parallel_insert_slice(&items)),
        _ => items.iter().for_each(|&item| hnsw.insert_slice(item)),
    }
}

impl Row {
    /// A dump position whose row is gone (or changed) in the store.
    fn tombstone(seq: u64) -> Row {
        Row {
            seq,
            kind: 0,
            timestamp_micros: 0,
            role: u8::MAX,
            agent: 0,
            session: 0,
            name: 0,
            has_metadata: false,
            alive: false,
        }
    }
}

/// The vectors of one namespace.
pub struct NamespaceIndex {
    dim: usize,
    config: IndexConfig,
    /// The vectors of positions `0..points.len()`, which the graph holds as f16:
    /// each vector is stored once, in hnsw_rs's point, not also here.
    points: Vec<Arc<Point<'static, u16>>>,
    /// The vectors of positions `points.len()..`, row-major, rounded to f16
    /// (bit patterns) `[n · dim]`: half the bytes of f32, and the same values
    /// the graph's points hold, so a row scores the same before and after it
    /// enters the graph (issue 19).
    vectors: Vec<u16>,
    rows: Vec<Row>,
    by_seq: HashMap<u64, usize>,
    live: usize,
    interner: Interner,
    graph: Option<Graph>,
}

impl NamespaceIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize, config: IndexConfig) -> Self {
        NamespaceIndex {
            dim,
            config,
            points: Vec::new(),
            vectors: Vec::new(),
            rows: Vec::new(),
            by_seq: HashMap::new(),
            live: 0,
            interner: Interner::default(),
            graph: None,
        }
    }

    /// Cosine of position `i` to the unit vector `query` (f32 · f16).
    #[inline]
    fn score(&self, query: &[f32], i: usize) -> f32 {
        dot_f16(query, self.half(i))
    }

    /// The f16 vector (bit patterns) of position `i` `[dim]`: the graph's point,
    /// or this index's copy past the graph.
    #[inline]
    fn half(&self, i: usize) -> &[u16] {
        match self.points.get(i) {
            Some(p) => p.get_v(),
            None => {
                let j = i - self.points.len();
                &self.vectors[j * self.dim..(j + 1) * self.dim]
            }
        }
    }

    /// Once the graph holds positions `..upto`, reads their vectors from its points
    /// and drops this index's copies. Keeps the copies if a point is missing.
    fn adopt_points(&mut self, upto: usize) {
        let Some(g) = &self.graph else { return };
        let base = self.points.len();
        if upto <= base {
            return;
        }
        let mut slot: Vec<Option<Arc<Point<'static, u16>>>> = vec![None; upto - base];
        for p in g.hnsw.get_point_indexation() {
            let id = p.get_origin_id();
            if (base..upto).contains(&id) && p.get_v().len() == self.dim {
                slot[id - base] = Some(p);
            }
        }
        if slot.iter().any(Option::is_none) {
            return;
        }
        self.points.extend(slot.into_iter().flatten());
        self.vectors.drain(..(upto - base) * self.dim);
        if self.vectors.capacity() > 2 * self.vectors.len() + 64 * self.dim {
            self.vectors.shrink_to_fit();
        }
    }

    /// Vectors this index keeps itself (those of rows not in the graph); the
    /// graph's points hold the others.
    pub fn vectors_held(&self) -> usize {
        self.vectors.len() / self.dim
    }

    /// Live (not deleted) vectors, messages and summaries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Live rows of one kind.
    pub fn count(&self, kind: HitKind) -> usize {
        let k = kind.to_u8();
        self.rows.iter().filter(|r| r.alive && r.kind == k).count()
    }

    /// True when no live vector is left.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Rows ever appended since the last rebuild, deleted ones included.
    pub fn rows_total(&self) -> usize {
        self.rows.len()
    }

    /// Whether searches go through an HNSW graph.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Seqs of all live rows, in insertion order.
    pub fn seqs(&self) -> Vec<u64> {
        self.rows
            .iter()
            .filter(|r| r.alive)
            .map(|r| r.seq)
            .collect()
    }

    /// Seqs of live rows of one kind, ascending (insertion order for messages and
    /// summaries; a graph reloaded by [`Self::restore`] may reorder rows).
    pub fn seqs_of(&self, kind: HitKind) -> Vec<u64> {
        let k = kind.to_u8();
        let mut seqs: Vec<u64> = self
            .rows
            .iter()
            .filter(|r| r.alive && r.kind == k)
            .map(|r| r.seq)
            .collect();
        if !seqs.is_sorted() {
            seqs.sort_unstable();
        }
        seqs
    }

    /// Appends a message's unit vector `[dim]`. If the namespace has a graph the
    /// vector is inserted into it too.
    ///
    /// # Panics
    /// When `vector.len() != dim` (the engine checks dimensions first).
    pub fn push(&mut self, seq: u64, message: &Message, vector: &[f32]) {
        let row = Row {
            seq,
            kind: HitKind::Message.to_u8(),
            timestamp_micros: message.timestamp.timestamp_micros(),
            role: message.role.to_u8(),
            agent: self.interner.intern(message.agent_id.as_deref()),
            session: self.interner.intern(message.session_id.as_deref()),
            name: self.interner.intern(message.name.as_deref()),
            has_metadata: !message.metadata.is_empty(),
            alive: true,
        };
        self.push_row(row, vector);
    }

    /// Appends a summary's unit vector `[dim]`. Summaries match no role, name,
    /// agent, session or metadata filter; their time is `to`.
    ///
    /// # Panics
    /// When `vector.len() != dim`.
    pub fn push_summary(&mut self, seq: u64, summary: &Summary, vector: &[f32]) {
        let row = Row {
            seq,
            kind: HitKind::Summary.to_u8(),
            timestamp_micros: summary.to.timestamp_micros(),
            role: u8::MAX,
            agent: 0,
            session: 0,
            name: 0,
            has_metadata: false,
            alive: true,
        };
        self.push_row(row, vector);
    }

    /// Appends a context entry's or board document's unit vector `[dim]`
    /// (`kind` is [`HitKind::Context`] or [`HitKind::Board`]); like a summary it
    /// matches no role, name, agent, session or metadata filter; its time is `at`.
    ///
    /// # Panics
    /// When `vector.len() != dim`.
    pub fn push_entry(&mut self, seq: u64, kind: HitKind, at: DateTime<Utc>, vector: &[f32]) {
        let row = Row {
            seq,
            kind: kind.to_u8(),
            timestamp_micros: at.timestamp_micros(),
            role: u8::MAX,
            agent: 0,
            session: 0,
            name: 0,
            has_metadata: false,
            alive: true,
        };
        self.push_row(row, vector);
    }

    fn push_row(&mut self, row: Row, vector: &[f32]) {
        assert_eq!(vector.len(), self.dim, "vector dimension");
        let seq = row.seq;
        let idx = self.rows.len();
        self.rows.push(row);
        // The same rounding as the graph's points (`to_f16`), so a dump's
        // points match these bit for bit on reload.
        self.vectors.extend_from_slice(&to_f16(vector));
        self.by_seq.insert(seq, idx);
        self.live += 1;
    }

    /// Marks `seq` deleted. Returns false when it was not live here.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(&idx) = self.by_seq.get(&seq) else {
            return false;
        };
        self.by_seq.remove(&seq);
        self.rows[idx].alive = false;
        self.live -= 1;
        if let Some(g) = &mut self.graph
            && idx < g.len
        {
            g.dead += 1;
        }
        true
    }

    /// True when a rebuild would help: a graph is missing above the threshold,
    /// no longer needed far below it, or tombstones pass the configured ratio.
    pub fn needs_rebuild(&self) -> bool {
        let dead = self.rows.len() - self.live;
        let too_dead =
            dead > 64 && dead as f32 > self.config.rebuild_dead_ratio * self.rows.len() as f32;
        let want_graph = self.live >= self.config.exact_threshold;
        too_dead
            || (want_graph && self.graph.is_none())
            || (!want_graph && self.live * 2 < self.config.exact_threshold && self.graph.is_some())
    }

    /// A compacted copy of the live rows (with a graph when large enough). Runs
    /// without locks held by the caller on a snapshot; see [`Self::catch_up`].
    pub fn rebuilt_from(snapshot: &Snapshot) -> NamespaceIndex {
        let mut idx = NamespaceIndex::new(snapshot.dim, snapshot.config.clone());
        idx.interner.ids = snapshot.interner.clone();
        for (i, row) in snapshot.rows.iter().enumerate() {
            idx.rows.push(*row);
            idx.by_seq.insert(row.seq, i);
        }
        idx.vectors = snapshot.vectors.clone();
        idx.live = idx.rows.len();
        if idx.live >= idx.config.exact_threshold {
            idx.build_graph();
            idx.adopt_points(idx.rows.len());
        }
        idx
    }

    fn build_graph(&mut self) {
        debug_assert!(
            self.points.is_empty(),
            "built from an index without a graph"
        );
        let n = self.rows.len();
        let hnsw = GraphF16::new(
            self.config.m,
            n.max(1024),
            HNSW_MAX_LAYER,
            self.config.ef_construction,
            DistDotF16,
        );
        insert_all(&hnsw, &self.vectors, self.dim, 0);
        let dead = self.rows.iter().filter(|r| !r.alive).count();
        self.graph = Some(Graph {
            hnsw: Arc::new(hnsw),
            len: n,
            dead,
            dumped: 0,
        });
    }

    /// The graph and the rows `0..len` it covers (`None` without a graph): what a
    /// dump writes. The caller must be the graph's only writer while it dumps.
    pub fn graph_for_dump(&self) -> Option<(SharedGraph, Vec<u64>)> {
        let g = self.graph.as_ref()?;
        Some((
            g.hnsw.clone(),
            self.rows[..g.len].iter().map(|r| r.seq).collect(),
        ))
    }

    /// Records that a dump of `graph` covering `len` positions is on disk.
    pub fn graph_dumped(&mut self, graph: &SharedGraph, len: usize) {
        if let Some(g) = &mut self.graph
            && Arc::ptr_eq(&g.hnsw, graph)
        {
            g.dumped = g.dumped.max(len);
        }
    }

    /// Positions in the graph not yet covered by a dump (0 without a graph).
    pub fn undumped(&self) -> usize {
        self.graph
            .as_ref()
            .map_or(0, |g| g.len - g.dumped.min(g.len))
    }

    /// Positions covered by the newest dump (0: none or no graph).
    pub fn dumped(&self) -> usize {
        self.graph.as_ref().map_or(0, |g| g.dumped)
    }

    /// Rows appended after the graph's last position (0 without a graph).
    pub fn tail_len(&self) -> usize {
        self.graph.as_ref().map_or(0, |g| self.rows.len() - g.len)
    }

    /// Up to `max` tail rows to insert into the graph: the graph, the first tail
    /// position and copies of the f16 vectors from there (`[n · dim]`).
    pub fn graph_tail(&self, max: usize) -> Option<(SharedGraph, usize, Vec<u16>)> {
        let g = self.graph.as_ref()?;
        let from = g.len;
        let to = self.rows.len().min(from.saturating_add(max));
        if to == from {
            return None;
        }
        let mut vectors = Vec::with_capacity((to - from) * self.dim);
        for i in from..to {
            vectors.extend_from_slice(self.half(i));
        }
        Some((g.hnsw.clone(), from, vectors))
    }

    /// Inserts tail vectors (from [`Self::graph_tail`]) into `graph` at positions
    /// `from..`. Runs without the index's lock (hnsw_rs inserts through `&self`;
    /// searches ignore positions past the graph's `len` until
    /// [`Self::graph_extended`] moves it).
    pub fn insert_tail(graph: &SharedGraph, from: usize, vectors: &[u16], dim: usize) {
        insert_all(graph, vectors, dim, from);
    }

    /// Moves the graph's end to `to` after [`Self::insert_tail`] inserted
    /// `from..to`; false (nothing changed) when the graph was replaced or moved
    /// meanwhile.
    pub fn graph_extended(&mut self, graph: &SharedGraph, from: usize, to: usize) -> bool {
        let Some(g) = &mut self.graph else {
            return false;
        };
        if !Arc::ptr_eq(&g.hnsw, graph) || g.len != from || to > self.rows.len() {
            return false;
        }
        g.dead += self.rows[from..to].iter().filter(|r| !r.alive).count();
        g.len = to;
        self.adopt_points(to);
        true
    }

    /// Adopts a graph reloaded from a dump whose position `p` held row `seqs[p]`.
    /// Rows are reordered so that every position whose row is live here with a
    /// vector that rounds to the point's f16 vector bit for bit keeps it; other
    /// positions become tombstones (the row was deleted, or an entry was
    /// renumbered). Live rows the dump lacks are appended after it: the tail,
    /// scanned exactly until maintenance inserts it. The graph's points become
    /// the vectors of positions `0..n` (no copy is kept). Returns how many
    /// positions became tombstones.
    ///
    /// # Errors
    /// The dump does not fit (another dimension, points missing or out of
    /// range, mostly stale positions); the index is unchanged.
    pub fn restore(&mut self, hnsw: GraphF16, seqs: Vec<u64>) -> Result<usize, String> {
        let n = seqs.len();
        let mut points = vec![None; n];
        for p in hnsw.get_point_indexation() {
            let id = p.get_origin_id();
            if id >= n || p.get_v().len() != self.dim {
                return Err(format!("point {id} out of range or of another dimension"));
            }
            points[id] = Some(p);
        }
        let points: Vec<Arc<Point<'static, u16>>> = points
            .into_iter()
            .enumerate()
            .map(|(pos, p)| p.ok_or_else(|| format!("position {pos} has no point")))
            .collect::<Result<_, _>>()?;
        let mut placed = vec![false; self.rows.len()];
        let mut rows = Vec::with_capacity(self.rows.len().max(n));
        let mut dead = 0;
        for (point, &seq) in points.iter().zip(&seqs) {
            let stored = point.get_v();
            match self.by_seq.get(&seq) {
                Some(&i) if !placed[i] && self.half(i) == stored => {
                    placed[i] = true;
                    rows.push(self.rows[i]);
                }
                _ => {
                    dead += 1;
                    rows.push(Row::tombstone(seq));
                }
            }
        }
        if dead > 64 && dead as f32 > self.config.rebuild_dead_ratio * n as f32 {
            // Mostly stale (e.g. a namespace deleted and created again before a
            // crash): tombstones would make every search walk most of the graph.
            return Err(format!("{dead} of {n} positions are stale"));
        }
        let mut tail = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            // Rows deleted before the reload and not in the dump are dropped,
            // not carried into the graph as tombstones.
            if !placed[i] && r.alive {
                rows.push(*r);
                tail.extend_from_slice(self.half(i));
            }
        }
        self.by_seq = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.alive)
            .map(|(i, r)| (r.seq, i))
            .collect();
        self.live = self.by_seq.len();
        self.rows = rows;
        self.points = points;
        self.vectors = tail;
        self.graph = Some(Graph {
            hnsw: Arc::new(hnsw),
            len: n,
            dead,
            dumped: n,
        });
        Ok(dead)
    }

    /// Copies the live rows for an off-lock rebuild.
    pub fn snapshot(&self) -> Snapshot {
        let mut rows = Vec::with_capacity(self.live);
        let mut vectors = Vec::with_capacity(self.live * self.dim);
        for (i, r) in self.rows.iter().enumerate() {
            if r.alive {
                rows.push(*r);
                vectors.extend_from_slice(self.half(i));
            }
        }
        Snapshot {
            dim: self.dim,
            config: self.config.clone(),
            rows,
            vectors,
            interner: self.interner.ids.clone(),
            upto: self.rows.len(),
        }
    }

    /// Brings a rebuilt index up to date with this one: rows deleted since the
    /// snapshot are deleted, rows appended since are appended (to the tail: not
    /// inserted into the graph here, which runs under the write lock).
    pub fn catch_up(&self, rebuilt: &mut NamespaceIndex, snapshot_upto: usize) {
        let stale: Vec<u64> = rebuilt
            .rows
            .iter()
            .filter(|r| !self.by_seq.contains_key(&r.seq))
            .map(|r| r.seq)
            .collect();
        for seq in stale {
            rebuilt.remove(seq);
        }
        for i in snapshot_upto..self.rows.len() {
            let r = self.rows[i];
            let idx = rebuilt.rows.len();
            rebuilt.rows.push(Row { alive: true, ..r });
            rebuilt.vectors.extend_from_slice(self.half(i));
            rebuilt.by_seq.insert(r.seq, idx);
            rebuilt.live += 1;
            if !r.alive {
                rebuilt.remove(r.seq);
            }
        }
        rebuilt.interner.ids = self.interner.ids.clone();
    }

    /// Sets `ef_search` (candidates explored per graph query).
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.config.ef_search = ef_search;
    }

    /// Compiles `filter` for hits of `kinds` (empty: all kinds); `None` when it
    /// can match nothing here (e.g. an unknown agent). Metadata equality is not
    /// evaluated here (the engine checks it on the records).
    pub fn compile_for(&self, filter: &Filter, kinds: &[HitKind]) -> Option<RowFilter> {
        let mut f = self.compile(filter)?;
        if !kinds.is_empty() {
            f.kinds = kinds.iter().fold(0, |m, k| m | (1 << k.to_u8()));
        }
        Some(f)
    }

    /// Compiles `filter` for all kinds; see [`Self::compile_for`].
    pub fn compile(&self, filter: &Filter) -> Option<RowFilter> {
        let sym = |s: &Option<String>| -> Option<Option<Sym>> {
            match s {
                None => Some(None),
                Some(s) => self.interner.get(s).map(Some),
            }
        };
        Some(RowFilter {
            kinds: u8::MAX,
            role: filter.role.map(|r| r.to_u8()),
            agent: sym(&filter.agent_id)?,
            session: sym(&filter.session_id)?,
            name: sym(&filter.name)?,
            from: filter.from.map(|t| t.timestamp_micros()),
            to: filter.to.map(|t| t.timestamp_micros()),
            needs_metadata: !filter.metadata.is_empty(),
        })
    }

    /// The best `k` live rows matching `filter` for the unit vector `query`,
    /// best first. `exact` forces the exact scan.
    pub fn search(&self, query: &[f32], k: usize, filter: &RowFilter, exact: bool) -> Vec<Scored> {
        self.search_traced(query, k, filter, exact).0
    }

    /// [`NamespaceIndex::search`], also saying which way it went (tests check
    /// that the graph paths really run).
    pub(crate) fn search_traced(
        &self,
        query: &[f32],
        k: usize,
        filter: &RowFilter,
        exact: bool,
    ) -> (Vec<Scored>, SearchPath) {
        if k == 0 || self.live == 0 {
            return (Vec::new(), SearchPath::Exact);
        }
        let Some(graph) = self.graph.as_ref().filter(|_| !exact) else {
            return (self.exact(query, k, filter), SearchPath::Exact);
        };
        let matching = if filter.is_empty() {
            self.live
        } else {
            self.rows.iter().filter(|r| filter.matches(r)).count()
        };
        if matching == 0 {
            return (Vec::new(), SearchPath::Exact);
        }
        // A selective filter: scanning the few matching rows beats walking the graph.
        if matching <= self.config.exact_threshold.min(self.live / 10).max(k) {
            return (self.exact(query, k, filter), SearchPath::Exact);
        }
        // Unfiltered: k plus the tombstones that may occupy the top. Filtered:
        // twice the k that the matching fraction predicts.
        let wanted = if filter.is_empty() {
            k
        } else {
            (k * self.live).div_ceil(matching) * 2
        };
        let fetch = (wanted + graph.dead).min(graph.len);
        let ef = self.config.ef_search.max(fetch);
        let mut top = TopK::new(k);
        if fetch > 0 {
            for n in graph.hnsw.search(&to_f16(query), fetch, ef) {
                let idx = n.d_id;
                // Positions past `len` are being inserted; the tail scan has them.
                if idx < graph.len
                    && let Some(r) = self.rows.get(idx)
                    && filter.matches(r)
                {
                    // f32 query · f16 point (the graph's distance clamps at 0
                    // and loses the sign).
                    top.push(Scored {
                        score: self.score(query, idx),
                        seq: r.seq,
                    });
                }
            }
        }
        // The tail: rows not in the graph yet, scanned exactly.
        for idx in graph.len..self.rows.len() {
            if filter.matches(&self.rows[idx]) {
                top.push(Scored {
                    score: self.score(query, idx),
                    seq: self.rows[idx].seq,
                });
            }
        }
        let found = top.into_sorted();
        if found.len() < k.min(matching) {
            // The graph's neighbourhood held too few matches: never lose recall to a filter.
            return (self.exact(query, k, filter), SearchPath::GraphFallback);
        }
        (found, SearchPath::Graph)
    }

    /// The live rows that `filter` admits, in insertion order.
    pub fn matching(&self, filter: &RowFilter) -> Vec<u64> {
        self.rows
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.seq)
            .collect()
    }

    /// Whether `seq` is a live row that `filter` admits.
    pub fn matches(&self, seq: u64, filter: &RowFilter) -> bool {
        self.by_seq
            .get(&seq)
            .is_some_and(|&i| filter.matches(&self.rows[i]))
    }

    /// Cosine similarity of the live row `seq` to the unit vector `query`
    /// (`None` for unknown or deleted rows).
    pub fn similarity(&self, query: &[f32], seq: u64) -> Option<f32> {
        let &i = self.by_seq.get(&seq)?;
        Some(self.score(query, i))
    }

    fn exact(&self, query: &[f32], k: usize, filter: &RowFilter) -> Vec<Scored> {
        let mut top = TopK::new(k);
        for (i, r) in self.rows.iter().enumerate() {
            if filter.matches(r) {
                top.push(Scored {
                    score: self.score(query, i),
                    seq: r.seq,
                });
            }
        }
        top.into_sorted()
    }
}

/// Live rows copied out of an index for an off-lock rebuild.
pub struct Snapshot {
    dim: usize,
    config: IndexConfig,
    rows: Vec<Row>,
    /// f16 bit patterns `[rows · dim]`.
    vectors: Vec<u16>,
    interner: HashMap<String, Sym>,
    /// Row count of the source index when the snapshot was taken.
    pub upto: usize,
}

#[cfg(test)]
#[path = "vector_tests.rs"]
mod tests;
