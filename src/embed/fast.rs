//! A BERT encoder forward pass written for CPU inference (issue 8).
//!
//! Same arithmetic as candle-transformers' `BertModel` (which stays the reference
//! oracle in tests and the path for checkpoints this one does not load), organised
//! for small batches on few cores:
//!
//! - **Ragged batches**: the texts of a batch are concatenated token-wise
//!   (`[total_tokens, hidden]`); linear layers run over all real tokens at once and
//!   attention runs per text, so no padding is computed or masked.
//! - **Pre-packed weights** ([`PackedLinear`]): packed once at load, never per call.
//! - **Fused QKV**: one `[3·hidden, hidden]` product per layer instead of three.
//! - **Vectorizable GELU and softmax**: `erf` (Abramowitz & Stegun 7.1.26, |error| ≤
//!   1.5e-7) and `exp` (Cephes `expf` range reduction and polynomial, relative error
//!   ~1e-7) written branch-free so the compiler vectorizes them, instead of libm calls.
//!
//! Supports `model_type: bert`, absolute position embeddings, and `hidden_act`
//! `gelu` / `gelu_new` (tanh approximation) / `relu`, from `model.safetensors`.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

use super::gemm::{DisjointOut, PackedLinear, Tile, WeightFormat, Workers};
use crate::core::error::{Error, Result};

/// Calls a function body compiled for the widest vector unit present: AVX-512F,
/// else AVX2+FMA, else the baseline target. The body is the same branch-free
/// code; the compiler vectorizes it per target (run-time dispatch, as `crate::simd`).
macro_rules! widest {
    (fn($($arg:ident: $ty:ty),*) -> $ret:ty $body:block, ($($val:expr),*)) => {{
        // Under Miri, which does not implement the wide vector intrinsics, the
        // baseline body.
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) -> $ret $body
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) -> $ret $body
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: `avx512` only needs AVX-512F, detected just above.
                return unsafe { avx512($($val),*) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: `avx2` only needs AVX2 and FMA, detected just above.
                return unsafe { avx2($($val),*) };
            }
        }
        fn baseline($($arg: $ty),*) -> $ret $body
        baseline($($val),*)
    }};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Activation {
    Gelu,
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    Relu,
}

#[derive(Debug, Deserialize)]
struct FastConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: Activation,
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

struct Layer {
    qkv: PackedLinear,
    attn_out: PackedLinear,
    attn_norm: LayerNorm,
    up: PackedLinear,
    down: PackedLinear,
    out_norm: LayerNorm,
}

/// The encoder with packed weights. Thread-safe; `forward` uses rayon's pool.
pub struct FastBert {
    hidden: usize,
    heads: usize,
    intermediate: usize,
    max_positions: usize,
    activation: Activation,
    /// `[vocab, hidden]`.
    word: Vec<f32>,
    /// `[max_positions, hidden]`.
    position: Vec<f32>,
    /// Token type 0 (the only one sentence embedding uses), `[hidden]`.
    token_type: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl FastBert {
    /// The format the encoder's weights are stored in (`Auto` resolved).
    pub fn weight_format(&self) -> WeightFormat {
        self.layers
            .first()
            .map_or(WeightFormat::F32, |l| l.qkv.format())
    }

    /// Loads `config.json` and `model.safetensors` from a sentence-transformers
    /// folder, packing the encoder's weights as `format`.
    ///
    /// # Errors
    /// [`Error::ModelUnavailable`] when the folder has no safetensors file, the
    /// configuration is outside what this implementation supports (relative
    /// position embeddings, other activations), or a tensor is missing.
    pub fn load(dir: &Path, format: WeightFormat) -> Result<FastBert> {
        let unsupported =
            |why: String| Error::ModelUnavailable(format!("{}: {why}", dir.display()));
        let bytes = std::fs::read(dir.join("config.json"))?;
        let c: FastConfig =
            serde_json::from_slice(&bytes).map_err(|e| unsupported(format!("config.json: {e}")))?;
        if c.position_embedding_type
            .as_deref()
            .is_some_and(|t| t != "absolute")
        {
            return Err(unsupported(
                "only absolute position embeddings are supported".into(),
            ));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(unsupported(
                "hidden_size is not a multiple of num_attention_heads".into(),
            ));
        }
        let file = dir.join("model.safetensors");
        if !file.is_file() {
            return Err(unsupported("no model.safetensors".into()));
        }
        // SAFETY: the mapping must not change while `vb` lives (the weights are
        // copied out before `load` returns). memoryd never writes model files;
        // only another process truncating or rewriting the file meanwhile could
        // break that, as with any mapped model.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&file], DType::F32, &Device::Cpu)? };
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = c.hidden_size;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = vb
                .get(shape, name)
                .map_err(|e| unsupported(format!("tensor {name}: {e}")))?;
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let norm = |prefix: &str| -> Result<LayerNorm> {
            let (g, b) = match (
                get(&format!("{prefix}.weight"), &[h]),
                get(&format!("{prefix}.bias"), &[h]),
            ) {
                (Ok(g), Ok(b)) => (g, b),
                _ => (
                    get(&format!("{prefix}.gamma"), &[h])?,
                    get(&format!("{prefix}.beta"), &[h])?,
                ),
            };
            Ok(LayerNorm {
                gamma: g,
                beta: b,
                eps: c.layer_norm_eps as f32,
            })
        };
        let linear = |prefix: &str, out: usize, inp: usize| -> Result<PackedLinear> {
            let w = get(&format!("{prefix}.weight"), &[out, inp])?;
            let b = get(&format!("{prefix}.bias"), &[out])?;
            Ok(PackedLinear::with_format(&w, &b, out, inp, format))
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            // Fused QKV: rows [q; k; v] of one [3h, h] weight.
            let mut w = Vec::with_capacity(3 * h * h);
            let mut b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                w.extend(get(&format!("{p}.attention.self.{part}.weight"), &[h, h])?);
                b.extend(get(&format!("{p}.attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv: PackedLinear::with_format(&w, &b, 3 * h, h, format),
                attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&format!("{p}.intermediate.dense"), c.intermediate_size, h)?,
                down: linear(&format!("{p}.output.dense"), h, c.intermediate_size)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        // Token type 0 only (sentence embedding never uses another); tables have 1 or 2 rows.
        let type_table = vb
            .get_unchecked("embeddings.token_type_embeddings.weight")
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| unsupported(format!("token type embeddings: {e}")))?;
        if type_table.len() < h || type_table.len() % h != 0 {
            return Err(unsupported(
                "token type embeddings of the wrong width".into(),
            ));
        }
        Ok(FastBert {
            hidden: h,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            max_positions: c.max_position_embeddings,
            activation: c.hidden_act,
            word: get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[c.max_position_embeddings, h],
            )?,
            token_type: type_table[..h].to_vec(),
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
        })
    }

    /// Hidden size (the embedding dimension).
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Last hidden states of a ragged batch: `[Σ len, hidden]`, the texts' tokens
    /// one after another in `batch` order.
    ///
    /// # Errors
    /// [`Error::Embedding`] for a token id outside the vocabulary or a text longer
    /// than `max_position_embeddings` (the tokenizer truncates before this).
    pub fn forward(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        // Called from outside the pool (the embedding thread), every one of the
        // forward's ~30 parallel products would be injected into the pool and
        // waited for across threads; run the whole forward on a pool thread so
        // they fork and join locally. Single query p50 9–14% lower, p95 ~20%
        // lower (alternating A/B, 2 threads).
        if rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1 {
            return rayon::scope(|_| self.forward_on_pool(batch));
        }
        self.forward_on_pool(batch)
    }

    fn forward_on_pool(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        // The element-wise parts (embeddings, LayerNorm, residuals, attention) are
        // compiled once per vector width; the products dispatch on their own.
        widest!(fn(f: &FastBert, batch: &[&[u32]]) -> Result<Vec<f32>> { f.forward_impl(batch) }, (self, batch))
    }

    #[inline(always)]
    fn forward_impl(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let total: usize = batch.iter().map(|t| t.len()).sum();
        let vocab = self.word.len() / h;
        // Embeddings.
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for ids in batch {
            if ids.len() > self.max_positions {
                return Err(Error::Embedding(format!(
                    "{} tokens; the model takes {}",
                    ids.len(),
                    self.max_positions
                )));
            }
            for (pos, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(Error::Embedding(format!(
                        "token id {id} outside the vocabulary ({vocab})"
                    )));
                }
                let out = &mut x[row * h..(row + 1) * h];
                let (w, p) = (
                    &self.word[id * h..(id + 1) * h],
                    &self.position[pos * h..(pos + 1) * h],
                );
                for i in 0..h {
                    out[i] = w[i] + p[i] + self.token_type[i];
                }
                row += 1;
            }
        }
        self.embed_norm.apply(&mut x, h);
        let mut qkv = vec![0f32; total * 3 * h];
        let mut ctx = vec![0f32; total * h];
        let mut tmp = vec![0f32; total * h];
        let mut inter = vec![0f32; total * self.intermediate];
        for layer in &self.layers {
            layer.qkv.forward(&x, total, &mut qkv);
            self.attention(batch, &qkv, &mut ctx);
            layer.attn_out.forward(&ctx, total, &mut tmp);
            add_assign(&mut x, &tmp);
            layer.attn_norm.apply(&mut x, h);
            layer.up.forward(&x, total, &mut inter);
            if inter.len() >= 1 << 15 && rayon::current_num_threads() > 1 {
                inter
                    .par_chunks_mut(1 << 13)
                    .for_each(|c| activate(self.activation, c));
            } else {
                activate(self.activation, &mut inter);
            }
            layer.down.forward(&inter, total, &mut tmp);
            add_assign(&mut x, &tmp);
            layer.out_norm.apply(&mut x, h);
        }
        Ok(x)
    }

    /// Scaled dot-product attention per text and head (see [`attention`]).
    #[inline(always)]
    fn attention(&self, batch: &[&[u32]], qkv: &[f32], ctx: &mut [f32]) {
        attention(
            batch,
            self.heads,
            self.hidden,
            qkv,
            ctx,
            ATTENTION_PARALLEL_MIN_WORK,
            Workers::Pool,
        )
    }
}

/// Attention work (`Σ len² · hidden`) below which one thread runs every head.
const ATTENTION_PARALLEL_MIN_WORK: usize = 1 << 16;

/// Scaled dot-product attention per text and head: `ctx[Σ len, hidden]` from
/// `qkv[Σ len, 3·hidden]` (rows `[q | k | v]`). (text, head) pairs run in
/// parallel on `workers` once there is `min_work`, so one long text uses every
/// core; each pair writes its own tile of `ctx` (a text's rows × a head's
/// columns).
#[inline(always)]
fn attention(
    batch: &[&[u32]],
    heads: usize,
    h: usize,
    qkv: &[f32],
    ctx: &mut [f32],
    min_work: usize,
    workers: Workers,
) {
    let d = h / heads;
    let total: usize = batch.iter().map(|t| t.len()).sum();
    assert!(d * heads == h && qkv.len() == total * 3 * h && ctx.len() == total * h);
    let mut tasks = Vec::with_capacity(batch.len() * heads);
    let mut start = 0;
    for ids in batch {
        for head in 0..heads {
            tasks.push((start, ids.len(), head));
        }
        start += ids.len();
    }
    let work: usize = batch.iter().map(|t| t.len() * t.len()).sum::<usize>() * h;
    let ctx = DisjointOut::new(ctx);
    let run = |&(start, len, head): &(usize, usize, usize)| {
        // SAFETY: task (text, head) is the only user of rows [start, start + len)
        // × columns [head·d, (head + 1)·d) of ctx: texts have disjoint row ranges,
        // heads disjoint column ranges, and each pair is one task. `tile` checks
        // the bounds.
        let mut out = unsafe { ctx.tile(start * h + head * d, len, d, h) };
        attend_head(
            &qkv[start * 3 * h..(start + len) * 3 * h],
            len,
            h,
            d,
            head,
            &mut out,
        );
    };
    workers.run(tasks.len(), work <= min_work, |i| run(&tasks[i]));
}

/// One head of one text: `qkv[len, 3·hidden]` → `out[len, d]`, the head's
/// columns `[head·d, (head+1)·d)` of the text's rows of `ctx`. Dispatched to the
/// widest vector unit present.
fn attend_head(qkv: &[f32], len: usize, h: usize, d: usize, head: usize, out: &mut Tile<'_>) {
    widest!(
        fn(qkv: &[f32], len: usize, h: usize, d: usize, head: usize, out: &mut Tile<'_>) -> () {
            attend_head_impl(qkv, len, h, d, head, out)
        },
        (qkv, len, h, d, head, out)
    )
}

#[inline(always)]
fn attend_head_impl(qkv: &[f32], len: usize, h: usize, d: usize, head: usize, out: &mut Tile<'_>) {
    debug_assert!(out.rows() == len && out.cols() == d);
    let scale = 1.0 / (d as f32).sqrt();
    let (qo, ko, vo) = (head * d, h + head * d, 2 * h + head * d);
    let mut kt = vec![0f32; d * len]; // Kᵀ of this head, [d, len]
    for j in 0..len {
        for t in 0..d {
            kt[t * len + j] = qkv[j * 3 * h + ko + t];
        }
    }
    let mut scores = vec![0f32; len];
    let mut acc = vec![0f32; d];
    for i in 0..len {
        let q = &qkv[i * 3 * h + qo..i * 3 * h + qo + d];
        scores.iter_mut().for_each(|s| *s = 0.0);
        for (t, &qt) in q.iter().enumerate() {
            let a = qt * scale;
            for (s, k) in scores.iter_mut().zip(&kt[t * len..(t + 1) * len]) {
                *s += a * k;
            }
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let inv = 1.0 / sum8(scores.iter().copied());
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (j, &p) in scores.iter().enumerate() {
            let v = &qkv[j * 3 * h + vo..j * 3 * h + vo + d];
            for (a, vv) in acc.iter_mut().zip(v) {
                *a += p * vv;
            }
        }
        for (o, a) in out.row(i).iter_mut().zip(&acc) {
            *o = a * inv;
        }
    }
}

impl LayerNorm {
    /// Normalizes each `width`-long row of `x` in place (two-pass mean and variance, in f32
    /// with eight partial sums, as BERT's LayerNorm: biased variance, eps inside the root).
    #[inline(always)]
    fn apply(&self, x: &mut [f32], width: usize) {
        for row in x.chunks_exact_mut(width) {
            let mean = sum8(row.iter().copied()) / width as f32;
            let var = sum8(row.iter().map(|v| (v - mean) * (v - mean))) / width as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// Sum with eight interleaved partial sums (vectorizes; more accurate than one chain).
#[inline(always)]
fn sum8(values: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, v) in values.enumerate() {
        acc[i & 7] += v;
    }
    acc.iter().sum()
}

#[inline(always)]
fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// `e^x`, Cephes `expf`: `x = n·ln 2 + r`, a degree-6 polynomial for `e^r`, and
/// `2^n` built in the exponent bits. Relative error ~1e-7 on [-87, 88]; branch-free.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round x·log2(e) to the nearest integer by adding 1.5·2^23 (SSE2 has no
    // vector floor; a libm call would stop vectorization): the integer then sits
    // in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r2 + r + 1.0;
    let n_int = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits((n_int.wrapping_add(127) as u32) << 23)
}

/// `erf(x)`, Abramowitz & Stegun 7.1.26: |error| ≤ 1.5e-7. Branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Applies the activation in place, compiled for the widest vector unit present
/// (the same branch-free code, vectorized by the compiler per target).
fn activate(act: Activation, v: &mut [f32]) {
    widest!(
        fn(act: Activation, v: &mut [f32]) -> () {
            match act {
                Activation::Gelu => v.iter_mut().for_each(|x| *x = gelu_erf(*x)),
                Activation::GeluNew => v.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
                Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
            }
        },
        (act, v)
    )
}

/// GELU with the exact (erf) form, as BERT's `gelu`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU, tanh approximation (`gelu_new`).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    // tanh(u) = 1 − 2 / (e^{2u} + 1)
    let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_libm() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 / 1000.0;
            let e = (x as f64).exp();
            worst_exp = worst_exp.max(((exp(x) as f64) - e).abs() / e);
            worst_erf = worst_erf.max(((erf(x) as f64) - libm_erf(x as f64)).abs());
        }
        assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf absolute error {worst_erf}");
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-87.0) > 0.0 && exp(-87.0) < 1e-37);
    }

    /// Every (text, head) task on two threads (scoped std threads, and natively
    /// also a two-thread rayon pool), on shapes small enough for
    /// Miri (see `gemm`'s module docs): heads of one text write interleaved
    /// columns of the same rows of `ctx`. Natively it checks the result against
    /// a plain softmax(q·kᵀ/√d)·v; under Miri, also that no task forms a
    /// reference over cells another task writes.
    #[test]
    fn parallel_heads_write_disjoint_tiles_and_match_the_reference() {
        let (heads, h) = (2, 8);
        let d = h / heads;
        let lens = [3usize, 1, 4];
        let ids: Vec<Vec<u32>> = lens.iter().map(|&l| vec![0; l]).collect();
        let batch: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let total: usize = lens.iter().sum();
        let qkv: Vec<f32> = (0..total * 3 * h)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let mut want = vec![0f32; total * h];
        let mut start = 0;
        for &len in &lens {
            for head in 0..heads {
                let at = |row: usize, part: usize, t: usize| {
                    qkv[(start + row) * 3 * h + part * h + head * d + t] as f64
                };
                for i in 0..len {
                    let s: Vec<f64> = (0..len)
                        .map(|j| (0..d).map(|t| at(i, 0, t) * at(j, 1, t)).sum::<f64>())
                        .map(|v| v / (d as f64).sqrt())
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for t in 0..d {
                        let v: f64 = (0..len).map(|j| e[j] * at(j, 2, t)).sum();
                        want[(start + i) * h + head * d + t] = (v / sum) as f32;
                    }
                }
            }
            start += len;
        }
        let check = |workers| {
            let mut got = vec![f32::NAN; total * h];
            attention(&batch, heads, h, &qkv, &mut got, 0, workers);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-5, "{workers:?} [{i}]: {g} vs {w}");
            }
        };
        Workers::each_for_tests(check);
    }

    /// erf by its Taylor series / continued fraction in f64 (reference only).
    fn libm_erf(x: f64) -> f64 {
        // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)), converges fast for |x| ≤ 3;
        // beyond that erf is 1 to within 2e-5 and the f32 value is exactly ±1 − tiny.
        if x.abs() > 3.0 {
            let t = 1.0 / (1.0 + 0.5 * x.abs());
            // Numerical Recipes erfc (|error| < 1.2e-7), enough at these magnitudes.
            let y = t
                * (-x * x - 1.265_512_23
                    + t * (1.000_023_68
                        + t * (0.374_091_96
                            + t * (0.096_784_18
                                + t * (-0.186_288_06
                                    + t * (0.278_868_07
                                        + t * (-1.135_203_98
                                            + t * (1.488_515_87
                                                + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                    .exp();
            return (1.0 - y).copysign(x);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
