//! BERT-family sentence-transformers models on candle (CPU).
//!
//! Pipeline (as sentence-transformers does it): tokenize with the folder's
//! `tokenizer.json`, truncate at `max_seq_length` from `sentence_bert_config.json`
//! (the shipped tokenizer's own 128-token truncation and fixed padding are
//! replaced), sort by token count, pad each batch to its longest member, run
//! candle-transformers' `BertModel`, pool over the attention mask
//! (`1_Pooling/config.json`: mean, CLS or max) and L2-normalize when `modules.json`
//! lists a `Normalize` module.

use std::path::Path;

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::{Embedder, Embeddings, ModelInfo};
use crate::core::error::{Error, Result};

/// How token embeddings become one sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens of the attention mask (all-MiniLM-L6-v2, e5, gte).
    Mean,
    /// The first (`[CLS]`) token (bge).
    Cls,
    /// Element-wise max over the attention mask.
    Max,
}

/// Which forward pass runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// [`super::fast::FastBert`] when the folder is one it supports (BERT,
    /// absolute positions, safetensors), else candle's `BertModel`.
    #[default]
    Auto,
    /// Always [`super::fast::FastBert`]; loading fails if it cannot run the folder.
    Fast,
    /// Always candle-transformers' `BertModel` (the reference implementation).
    Candle,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "auto" => Ok(Backend::Auto),
            "fast" => Ok(Backend::Fast),
            "candle" => Ok(Backend::Candle),
            _ => Err(Error::invalid("backend", "must be auto, fast or candle")),
        }
    }
}

/// Options for [`BertEmbedder::load`].
#[derive(Debug, Clone)]
pub struct BertOptions {
    /// Forward-pass implementation. Default [`Backend::Auto`].
    pub backend: Backend,
    /// How the fast forward pass stores its weights. Default
    /// [`super::gemm::WeightFormat::Auto`] (f16 where the CPU has a SIMD f16
    /// kernel).
    pub weights: super::gemm::WeightFormat,
    /// Texts per forward pass. 8-64 is the sweet spot on CPU; 128 is slower for
    /// every implementation measured (issue 2). Default 32.
    pub batch_size: usize,
    /// Override of `max_seq_length` (tokens). Default: the folder's
    /// `sentence_bert_config.json`, else `max_position_embeddings`.
    pub max_seq_length: Option<usize>,
    /// Model id to report; default: the folder's name.
    pub id: Option<String>,
}

impl Default for BertOptions {
    fn default() -> Self {
        BertOptions {
            backend: Backend::Auto,
            weights: super::gemm::WeightFormat::Auto,
            batch_size: 32,
            max_seq_length: None,
            id: None,
        }
    }
}

enum Encoder {
    Fast(super::fast::FastBert),
    Candle(Box<BertModel>),
}

/// A loaded BERT sentence-embedding model.
pub struct BertEmbedder {
    model: Encoder,
    tokenizer: Tokenizer,
    pad_id: u32,
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
    device: Device,
    info: ModelInfo,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::ModelUnavailable(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::ModelUnavailable(format!("cannot parse {}: {e}", path.display())))
}

impl BertEmbedder {
    /// Loads a sentence-transformers folder: `config.json`, `tokenizer.json`,
    /// `model.safetensors` (or `pytorch_model.bin`), and optionally
    /// `sentence_bert_config.json`, `1_Pooling/config.json`, `modules.json`.
    ///
    /// # Errors
    /// [`Error::ModelUnavailable`] when a file is missing or malformed, or the
    /// architecture is not BERT.
    pub fn load(dir: &Path, opts: BertOptions) -> Result<Self> {
        let config: Config = read_json(&dir.join("config.json"))?;
        let raw: serde_json::Value = read_json(&dir.join("config.json"))?;
        let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if model_type != "bert" {
            return Err(Error::ModelUnavailable(format!(
                "{}: model_type {model_type:?} is not supported; memoryd runs BERT-family models",
                dir.display()
            )));
        }
        let sbert_max = dir
            .join("sentence_bert_config.json")
            .is_file()
            .then(|| read_json::<SbertConfig>(&dir.join("sentence_bert_config.json")))
            .transpose()?
            .and_then(|c| c.max_seq_length);
        let max_seq_length = opts
            .max_seq_length
            .or(sbert_max)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let pooling = if dir.join("1_Pooling/config.json").is_file() {
            let p: PoolingConfig = read_json(&dir.join("1_Pooling/config.json"))?;
            match (
                p.pooling_mode_mean_tokens,
                p.pooling_mode_cls_token,
                p.pooling_mode_max_tokens,
            ) {
                (true, false, false) => Pooling::Mean,
                (false, true, false) => Pooling::Cls,
                (false, false, true) => Pooling::Max,
                _ => {
                    return Err(Error::ModelUnavailable(
                        "1_Pooling/config.json: exactly one of mean, cls or max pooling is supported"
                            .into(),
                    ));
                }
            }
        } else {
            Pooling::Mean
        };
        let normalize = if dir.join("modules.json").is_file() {
            let modules: Vec<ModuleEntry> = read_json(&dir.join("modules.json"))?;
            modules.iter().any(|m| m.kind.ends_with("Normalize"))
        } else {
            true
        };

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            Error::ModelUnavailable(format!("{}/tokenizer.json: {e}", dir.display()))
        })?;
        // The shipped tokenizer pads to 128 and truncates at 128: we pad per batch
        // ourselves and truncate where sentence-transformers does.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::ModelUnavailable(format!("tokenizer truncation: {e}")))?;
        let pad_id = tokenizer
            .token_to_id("[PAD]")
            .unwrap_or(config.pad_token_id as u32);

        let device = Device::Cpu;
        let safetensors = dir.join("model.safetensors");
        let fast = match opts.backend {
            Backend::Candle => None,
            Backend::Fast => Some(super::fast::FastBert::load(dir, opts.weights)?),
            Backend::Auto => match super::fast::FastBert::load(dir, opts.weights) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::info!(error = %e, "using candle's BertModel for this model");
                    None
                }
            },
        };
        let (model, weights) = match fast {
            Some(f) => (Encoder::Fast(f), safetensors),
            None => {
                let (vb, weights) = Self::var_builder(dir, &device)?;
                let model = BertModel::load(vb, &config)
                    .map_err(|e| Error::ModelUnavailable(format!("loading BERT weights: {e}")))?;
                (Encoder::Candle(Box::new(model)), weights)
            }
        };
        let weights_sha256 = crate::embed::model::sha256_file(&weights)?;
        let id = opts.id.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "bert".into())
        });
        Ok(BertEmbedder {
            model,
            tokenizer,
            pad_id,
            pooling,
            normalize,
            batch_size: opts.batch_size.max(1),
            device,
            info: ModelInfo {
                id,
                dim: config.hidden_size,
                max_seq_length,
                weights_sha256,
            },
        })
    }

    /// True when the optimized forward pass ([`Backend::Fast`]) runs this model.
    pub fn is_fast(&self) -> bool {
        matches!(self.model, Encoder::Fast(_))
    }

    /// Which forward pass runs: `fast-f16`, `fast-f32` or `candle` (for logs).
    pub fn forward_pass(&self) -> &'static str {
        match &self.model {
            Encoder::Fast(f) if f.weight_format() == super::gemm::WeightFormat::F16 => "fast-f16",
            Encoder::Fast(_) => "fast-f32",
            Encoder::Candle(_) => "candle",
        }
    }

    /// The weights file and a `VarBuilder` over it (safetensors, else PyTorch pickle).
    fn var_builder(
        dir: &Path,
        device: &Device,
    ) -> Result<(VarBuilder<'static>, std::path::PathBuf)> {
        let safetensors = dir.join("model.safetensors");
        let (vb, weights) = if safetensors.is_file() {
            // SAFETY: the mapping must not change while `vb` and the tensors read
            // from it live. memoryd never writes model files (manifest models are
            // verified read-only copies); only another process truncating or
            // rewriting the file meanwhile could break that, as with any mapped model.
            let vb = unsafe {
                VarBuilder::from_mmaped_safetensors(&[&safetensors], DType::F32, device)?
            };
            (vb, safetensors)
        } else {
            let pth = dir.join("pytorch_model.bin");
            if !pth.is_file() {
                return Err(Error::ModelUnavailable(format!(
                    "{} has neither model.safetensors nor pytorch_model.bin",
                    dir.display()
                )));
            }
            (VarBuilder::from_pth(&pth, DType::F32, device)?, pth)
        };
        Ok((vb, weights))
    }

    /// The pooling mode read from the folder.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Token ids of each text after truncation (special tokens included).
    ///
    /// # Errors
    /// [`Error::Embedding`] when the tokenizer fails.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Embedding(format!("tokenizer: {e}")))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Pooled (and normalized) embeddings of a tokenized, non-empty `batch`,
    /// `[batch.len(), dim]` row-major.
    fn embed_tokens(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        match &self.model {
            Encoder::Candle(_) => Ok(self
                .forward_candle(batch)?
                .flatten_all()?
                .to_vec1::<f32>()?),
            Encoder::Fast(f) => {
                let h = f.hidden();
                let hidden = f.forward(batch)?; // [Σ len, h]
                let mut out = vec![0f32; batch.len() * h];
                let mut row = 0;
                for (b, ids) in batch.iter().enumerate() {
                    let rows = &hidden[row * h..(row + ids.len()) * h];
                    let o = &mut out[b * h..(b + 1) * h];
                    match self.pooling {
                        Pooling::Mean => {
                            for r in rows.chunks_exact(h) {
                                o.iter_mut().zip(r).for_each(|(a, v)| *a += v);
                            }
                            let n = ids.len().max(1) as f32;
                            o.iter_mut().for_each(|a| *a /= n);
                        }
                        Pooling::Cls => o.copy_from_slice(&rows[..h]),
                        Pooling::Max => {
                            o.iter_mut().for_each(|a| *a = f32::NEG_INFINITY);
                            for r in rows.chunks_exact(h) {
                                o.iter_mut().zip(r).for_each(|(a, v)| *a = a.max(*v));
                            }
                        }
                    }
                    if self.normalize {
                        let norm = o.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                        o.iter_mut().for_each(|v| *v /= norm);
                    }
                    row += ids.len();
                }
                Ok(out)
            }
        }
    }

    /// candle's `BertModel` over a padded batch: `[batch.len(), dim]`.
    fn forward_candle(&self, batch: &[&[u32]]) -> Result<Tensor> {
        let Encoder::Candle(model) = &self.model else {
            unreachable!("forward_candle is only called for the candle encoder");
        };
        let n = batch.len();
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for row in batch {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(self.pad_id, len - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, len - row.len()));
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?; // [n, len, dim]
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [n, len, 1]
        let pooled = match self.pooling {
            Pooling::Mean => {
                let sum = hidden.broadcast_mul(&mask)?.sum(1)?; // [n, dim]
                let count = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // [n, 1]
                sum.broadcast_div(&count)?
            }
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
            Pooling::Max => {
                let penalty = ((mask - 1.0)? * 1e9)?;
                hidden.broadcast_add(&penalty)?.max(1)?
            }
        };
        if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            Ok(pooled.broadcast_div(&norm)?)
        } else {
            Ok(pooled)
        }
    }
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let dim = self.info.dim;
        let tokens = self.tokenize(texts)?;
        // Sorting by token count keeps padding near 1% on chat turns (44-55% in
        // arrival order; issue 2's measurement).
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokens[i].len());
        let mut data = vec![0f32; texts.len() * dim];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            let out = self.embed_tokens(&batch)?;
            for (&i, row) in chunk.iter().zip(out.chunks_exact(dim)) {
                data[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        }
        Ok(Embeddings {
            data,
            dim,
            tokens: tokens.iter().map(Vec::len).collect(),
        })
    }
}
