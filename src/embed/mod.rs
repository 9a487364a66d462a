//! Text embedding: the [`Embedder`] trait, the candle BERT implementation and the
//! bounded queue that keeps the model off the async runtime.

mod bert;
pub mod fast;
pub mod gemm;
mod hash;
pub mod model;
mod queue;

pub use bert::{Backend, BertEmbedder, BertOptions, Pooling};
pub use hash::HashEmbedder;
pub use queue::{EmbedQueue, Priority};

use crate::core::error::Result;

/// Identity and shape of an embedding model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model id recorded in data directories (e.g. `all-MiniLM-L6-v2`).
    pub id: String,
    /// Embedding dimension (384 for all-MiniLM-L6-v2).
    pub dim: usize,
    /// Truncation length in tokens, special tokens included (256 for all-MiniLM-L6-v2).
    pub max_seq_length: usize,
    /// sha256 of the weights file: two folders with the same weights share a vector space.
    pub weights_sha256: String,
}

/// A batch of embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Row-major `[n, dim]` f32 values.
    pub data: Vec<f32>,
    /// Row length.
    pub dim: usize,
    /// Tokens per input after truncation, special tokens included, in input order.
    pub tokens: Vec<usize>,
}

impl Embeddings {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`, `[dim]`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterates over rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
}

/// A sentence-embedding model. Implementations are CPU-heavy and blocking: call
/// them from a dedicated thread ([`EmbedQueue`]) or `spawn_blocking`, never on
/// the async runtime.
pub trait Embedder: Send + Sync + 'static {
    /// The model's identity and shape.
    fn info(&self) -> &ModelInfo;

    /// Embeds `texts` into `[texts.len(), dim]`, in input order.
    ///
    /// # Errors
    /// [`crate::Error::Embedding`] when tokenization or the forward pass fails.
    fn embed(&self, texts: &[&str]) -> Result<Embeddings>;
}

/// L2-normalizes `v` in place; returns its original norm.
pub fn l2_normalize(v: &mut [f32]) -> f32 {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

impl From<candle_core::Error> for crate::core::error::Error {
    fn from(e: candle_core::Error) -> Self {
        crate::core::error::Error::Embedding(e.to_string())
    }
}
