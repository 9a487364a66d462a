//! Search parameters, one place for each default: vector index ([`IndexConfig`]),
//! BM25 ([`Bm25Params`]) and hybrid fusion ([`HybridParams`]). Plain data, no I/O;
//! `crate::search` implements what they parameterize.

use crate::core::error::{Error, Result};

/// Index parameters. Defaults are documented on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Namespaces with at least this many live vectors get an HNSW graph;
    /// smaller ones are scanned exactly. Default 15,000 (where an exact 384-d
    /// scan crosses ~1 ms).
    pub exact_threshold: usize,
    /// HNSW `M`: links per node and layer. Default 16.
    pub m: usize,
    /// HNSW `ef_construction`. Default 100: on 100k real-model LoCoMo-like
    /// vectors it builds in half the time of 200 (46.6 vs 91.7 s on one thread)
    /// for recall@10 0.866 vs 0.871 at ef_search 64 and the same from 128 on
    /// (`cargo bench --bench scale -- graph`, README "One node at scale").
    pub ef_construction: usize,
    /// HNSW `ef_search` (raised to the number of candidates fetched when larger).
    /// Default 64.
    pub ef_search: usize,
    /// Rebuild when tombstones exceed this fraction of the rows. Default 0.2.
    pub rebuild_dead_ratio: f32,
    /// Threads that build and extend HNSW graphs, in one pool per process (the
    /// first engine opened sizes it; later engines share it). 0 (default): all cores but one, at least
    /// one, so a build never takes the core that embeds queries. At 100k
    /// LoCoMo-like 384-d vectors on 2 cores: 86 s with 1 thread, 45 s with 2
    /// (`cargo bench --bench scale -- graph`, README "One node at scale").
    pub build_threads: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            exact_threshold: 15_000,
            m: 16,
            ef_construction: 100,
            ef_search: 64,
            rebuild_dead_ratio: 0.2,
            build_threads: 0,
        }
    }
}

/// Okapi BM25 parameters (Robertson & Zaragoza, "The Probabilistic Relevance
/// Framework: BM25 and Beyond", 2009).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation. Default 1.2.
    pub k1: f32,
    /// Length normalization, 0 (none) to 1 (full). Default 0.4: chat turns are short
    /// and similar in length; chosen by leave-one-conversation-out cross-validation on
    /// LoCoMo (README, "Retrieval quality").
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.4 }
    }
}

/// Weights of hybrid ranking. Defaults were chosen by leave-one-conversation-out
/// cross-validation on LoCoMo's 10 conversations (README, "Retrieval quality";
/// `memoryd eval locomo --cv` reproduces the choice).
///
/// For a query, the candidates are the top [`HybridParams::candidates`] by cosine
/// and the top as many by BM25 (both after filters). Over the candidates, cosine is
/// min-max normalized to [0, 1] and BM25 divided by its maximum; a candidate's base
/// score is `lexical_weight · bm25 + (1 − lexical_weight) · cosine`. Each candidate
/// and each neighbouring turn of one (the previous and next message of the same
/// session) then scores `base + neighbor_weight · max(base of its two neighbours)`:
/// a question's words often match the turn that asks, while the answer is the turn
/// after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridParams {
    /// Weight of the normalized BM25 score, 0..=1. Default 0.5.
    pub lexical_weight: f32,
    /// Share of the best neighbour's base score added to a turn, 0..=1. Default 0.6.
    pub neighbor_weight: f32,
    /// Candidates taken from each channel (at least `k`). Default 50: the dense
    /// channel's graph search then costs what a top-10 search costs (ef_search
    /// 64), and neither dataset lost recall against 100 (LoCoMo R@10 0.7703 vs
    /// 0.7695, LongMemEval dev turn@5/@10/session@5 identical; hybrid p50 at 100k
    /// messages 4.07 vs 5.35 ms; README, "One node at scale").
    pub candidates: usize,
    /// BM25 parameters.
    pub bm25: Bm25Params,
    /// A turn takes no neighbour bonus from a neighbour it is more than this
    /// many times longer than (in analyzed terms): a long assistant reply then
    /// does not ride on the short user turn before it, while the user turn
    /// still borrows from the reply. 0 (default): off. Measured (README,
    /// "LongMemEval_S"): 4 lifts LongMemEval turn recall_all@5 0.487 → 0.615
    /// and costs LoCoMo R@10 0.004; not the default yet (chosen with both sets
    /// in view, not cross-validated).
    pub neighbor_length_ratio: f32,
}

impl HybridParams {
    /// Checks the ranges documented on each field.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the offending parameter.
    pub fn validate(&self) -> Result<()> {
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if !unit(self.lexical_weight) {
            return Err(Error::invalid("lexical_weight", "must be between 0 and 1"));
        }
        if !unit(self.neighbor_weight) {
            return Err(Error::invalid("neighbor_weight", "must be between 0 and 1"));
        }
        if !(self.neighbor_length_ratio.is_finite() && self.neighbor_length_ratio >= 0.0) {
            return Err(Error::invalid(
                "neighbor_length_ratio",
                "must be 0 (off) or a positive number",
            ));
        }
        if self.candidates == 0 {
            return Err(Error::invalid("candidates", "must be at least 1"));
        }
        if !(self.bm25.k1.is_finite() && self.bm25.k1 >= 0.0 && unit(self.bm25.b)) {
            return Err(Error::invalid(
                "bm25",
                "k1 must be >= 0 and b between 0 and 1",
            ));
        }
        Ok(())
    }
}

impl Default for HybridParams {
    fn default() -> Self {
        HybridParams {
            lexical_weight: 0.5,
            neighbor_weight: 0.6,
            candidates: 50,
            bm25: Bm25Params::default(),
            neighbor_length_ratio: 0.0,
        }
    }
}
