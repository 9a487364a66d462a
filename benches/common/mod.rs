//! Shared bench fixtures: the model (resolved like users resolve it), real
//! LoCoMo turns and questions, and seeded clustered synthetic unit vectors.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use memoryd::{Embedder, ModelConfig};
use rand::{Rng, SeedableRng};

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

/// `n` unit vectors of `dim` around `clusters` random centres (seeded). With
/// per-dimension noise 0.035 a point's cosine to its centre is ~0.85 and to a
/// cluster mate ~0.7, close to what sentence embeddings of related chat turns
/// show; uniform noise (all cosines ~0) is the worst case for HNSW and unlike real data.
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| unit(&mut rng, dim, None, 1.0))
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = &centres[rng.random_range(0..clusters)];
        out.extend(unit(&mut rng, dim, Some(c), 0.035));
    }
    out
}

fn unit(rng: &mut impl Rng, dim: usize, centre: Option<&[f32]>, noise: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|i| {
            // Box-Muller normal sample.
            let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random_range(0.0..1.0));
            let g = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
            centre.map_or(0.0, |c| c[i]) + noise * g
        })
        .collect();
    memoryd::embed::l2_normalize(&mut v);
    v
}
