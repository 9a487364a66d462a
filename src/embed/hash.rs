//! A deterministic stand-in for the model in tests of engine logic (the change
//! log, access, the registry, backends' conformance) and fuzzing: no files, no
//! forward pass, microseconds per text. Not semantic: texts sharing bytes at the
//! same positions are close, nothing more. Never use it to store real memory.

use super::{Embedder, Embeddings, ModelInfo, l2_normalize};
use crate::core::error::Result;

/// Hashes bytes into `dim`-dimensional unit vectors (never zero).
pub struct HashEmbedder {
    info: ModelInfo,
}

impl HashEmbedder {
    /// An embedder of `dim` dimensions (its model id is `hash-<dim>`).
    pub fn new(dim: usize) -> HashEmbedder {
        HashEmbedder {
            info: ModelInfo {
                id: format!("hash-{dim}"),
                dim,
                max_seq_length: 256,
                weights_sha256: format!("hash-embedder-{dim}"),
            },
        }
    }
}

impl Embedder for HashEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let dim = self.info.dim;
        let mut data = Vec::with_capacity(texts.len() * dim);
        for t in texts {
            let mut row = vec![1e-3f32; dim];
            for (i, b) in t.bytes().enumerate() {
                row[(i * 7 + usize::from(b)) % dim] += f32::from(b) / 255.0;
            }
            l2_normalize(&mut row);
            data.extend(row);
        }
        Ok(Embeddings {
            data,
            dim,
            tokens: texts.iter().map(|t| t.len().min(256)).collect(),
        })
    }
}
