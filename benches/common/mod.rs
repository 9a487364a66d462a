//! Shared bench fixtures: the model (resolved like users resolve it), real
//! LoCoMo turns and questions, and seeded clustered synthetic unit vectors.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use memoryd::{Embedder, ModelConfig};
use rand::{Rng, SeedableRng};

pub mod scale_data;

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn model_config() -> ModelConfig {
    ModelConfig {
        models_dir: repo_path("models"),
        ..ModelConfig::default()
    }
}

pub fn embedder() -> Arc<dyn Embedder> {
    memoryd::load_embedder(&model_config()).expect("model resolves")
}

fn samples() -> Vec<memoryd::locomo::Sample> {
    memoryd::locomo::load(&repo_path("../shared/data/locomo/locomo10.json"))
        .expect("LoCoMo at ../shared/data")
}

/// Speaker-prefixed LoCoMo turns, as the engine embeds them, in file order.
pub fn locomo_turns() -> Vec<String> {
    samples()
        .iter()
        .flat_map(|s| s.turns.iter().map(|t| format!("{}: {}", t.speaker, t.text)))
        .collect()
}

/// LoCoMo questions (realistic queries, ~15 tokens).
pub fn locomo_questions() -> Vec<String> {
    samples()
        .iter()
        .flat_map(|s| s.questions.iter().map(|q| q.question.clone()))
        .collect()
}

/// `n` unit vectors of `dim` in `clusters` clusters (seeded). Each cluster is a
/// random centre plus variation along its own 8 random directions (scale 0.5)
/// and a little isotropic noise (0.01 per dimension): a low intrinsic dimension,
/// as real sentence embeddings have. Isotropic noise alone makes every cluster
/// mate equidistant, the worst case for any graph index and unlike real data.
/// `benches/peers/run.py` generates the same distribution.
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const BASIS: usize = 8;
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| gaussian(&mut rng, dim, 1.0))
        .collect();
    let bases: Vec<Vec<Vec<f32>>> = (0..clusters)
        .map(|_| {
            (0..BASIS)
                .map(|_| gaussian(&mut rng, dim, 1.0 / (dim as f32).sqrt()))
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        let mut v: Vec<f32> = centres[c].iter().map(|x| x / (dim as f32).sqrt()).collect();
        for b in &bases[c] {
            let z = gaussian(&mut rng, 1, 0.5)[0];
            v.iter_mut().zip(b).for_each(|(x, y)| *x += z * y);
        }
        v.iter_mut()
            .zip(gaussian(&mut rng, dim, 0.01))
            .for_each(|(x, e)| *x += e);
        memoryd::embed::l2_normalize(&mut v);
        out.extend(v);
    }
    out
}

fn gaussian(rng: &mut impl Rng, dim: usize, scale: f32) -> Vec<f32> {
    (0..dim)
        .map(|_| {
            // Box-Muller normal sample.
            let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random_range(0.0..1.0));
            scale * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}
