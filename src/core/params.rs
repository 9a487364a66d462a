//! Search parameters, one place for each default: vector index ([`IndexConfig`]),
//! BM25 ([`Bm25Params`]) and hybrid fusion ([`HybridParams`]). Plain data, no I/O;
//! `crate::search` implements what they parameterize.

use crate::core::error::{Error, Result};

/// Index parameters. Defaults are documented on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Namespaces with at least this many live vectors get an HNSW graph;
    /// smaller ones are scanned exactly. Default 15,000: where an exact 384-d
    /// scan of f32 vectors crossed ~1 ms. Re-measured with the f16 scan
    /// (2026-11-28, 2 vCPUs of an AMD EPYC with AVX2; `MEMORYD_BENCH_SIZES=
    /// 15000,30000,60000 cargo bench --bench index -- index_search`, clustered
    /// vectors, criterion medians): exact scan without a graph 1.27 / 3.88 /
    /// 6.75 ms against HNSW at ef_search 64 0.82 / 1.15 / 1.52 ms (recall@10
    /// 1.000), so a higher threshold would not keep the scan near 1 ms.
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

/// Weights of hybrid ranking. The weights were chosen by leave-one-conversation-out
/// cross-validation on LoCoMo's 10 conversations (`memoryd eval locomo --cv`
/// reproduces the choice), the length cap on the LongMemEval development set;
/// each is checked on the other dataset (README, "Retrieval quality").
///
/// For a query, the candidates are the top [`HybridParams::candidates`] by cosine
/// and the top as many by BM25 (both after filters). Over the candidates, cosine is
/// min-max normalized to [0, 1] and BM25 divided by its maximum; a candidate's base
/// score is `lexical_weight · bm25 + (1 − lexical_weight) · cosine`. Each candidate
/// and each neighbouring turn of one (the previous and next message of the same
/// session) then scores `base + neighbor_weight · max(base of its two
/// neighbours) + session_weight · max(base in its session)`: a question's words
/// often match the turn that asks, while the answer is the turn after it, and the
/// evidence tends to sit in the session that matches best. A turn longer than
/// [`HybridParams::neighbor_max_terms`] borrows no neighbour score (it carries
/// its own context).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridParams {
    /// Weight of the normalized BM25 score, 0..=1. Default 0.5.
    pub lexical_weight: f32,
    /// Share of the best neighbour's base score added to a turn, 0..=1. Default 0.5.
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
    /// and costs LoCoMo R@10 0.004; [`HybridParams::neighbor_max_terms`] does
    /// better on LongMemEval and costs LoCoMo nothing, so it is the default rule.
    pub neighbor_length_ratio: f32,
    /// A turn longer than this many analyzed terms (BM25 terms: stop words out,
    /// date words in) takes no neighbour bonus: it carries its own context, and a
    /// long assistant reply otherwise rides into the top k on the short user turn
    /// before it. It still lends to its neighbours. 0: no cap. Default 48
    /// (LoCoMo's figures are the same with and without it; LongMemEval's
    /// assistant replies, median 270 words, are mostly over it).
    /// Chosen on the LongMemEval development set among 0/32/48/64/96/128
    /// (turn recall_all@5 / @10 0.487 / 0.692 without a cap, 0.667 / 0.821 at
    /// 48), checked on LoCoMo (README, "Across datasets").
    pub neighbor_max_terms: u32,
    /// Weight of a turn's session: every ranked message scores
    /// `session_weight · the best base score among the ranked turns of its
    /// session` on top (a message without a session id, and a summary, is a
    /// session of its own, so it adds `session_weight · its own base`). Evidence
    /// tends to sit in the session that matches best. 0..=2; 0: off. Default 1,
    /// chosen by every fold of LoCoMo's leave-one-conversation-out
    /// cross-validation (held-out R@10 0.770 → 0.791), checked on the
    /// LongMemEval development set (README, "Across datasets").
    pub session_weight: f32,
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
        if !(self.session_weight.is_finite() && (0.0..=2.0).contains(&self.session_weight)) {
            return Err(Error::invalid("session_weight", "must be between 0 and 2"));
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
            neighbor_weight: 0.5,
            candidates: 50,
            bm25: Bm25Params::default(),
            neighbor_length_ratio: 0.0,
            neighbor_max_terms: 48,
            session_weight: 1.0,
        }
    }
}
