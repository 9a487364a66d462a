//! Embedding throughput on real LoCoMo turns at batch 1, 8, 32, 128 (texts/s),
//! and single-query latency on LoCoMo questions, for both forward passes in the
//! same run: memoryd's own with f32 weights (`fast-f32`) and with f16 weights
//! (`fast-f16`, what `auto` picks on CPUs with AVX-512F or AVX2 + F16C), and
//! candle-transformers' `BertModel` (`candle`, the reference).
//!
//! `cargo bench --bench embed` (`-- fast` or `-- candle` for some of them)

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memoryd::embed::gemm::WeightFormat;
use memoryd::embed::{Backend, BertEmbedder, BertOptions};
use memoryd::{Embedder, embed::model::ModelResolver};

fn load((backend, weights): (Backend, WeightFormat), batch_size: usize) -> BertEmbedder {
    let cfg = common::model_config();
    let dir = ModelResolver::new(&cfg.models_dir)
        .resolve(&cfg.name, None)
        .unwrap()
        .dir;
    BertEmbedder::load(
        &dir,
        BertOptions {
            backend,
            weights,
            batch_size,
            ..Default::default()
        },
    )
    .unwrap()
}

fn embedding(c: &mut Criterion) {
    let turns = common::locomo_turns();
    // 128 turns spread over the file (every conversation, mean ~35 tokens).
    let step = turns.len() / 128;
    let sample: Vec<&str> = turns
        .iter()
        .step_by(step)
        .take(128)
        .map(String::as_str)
        .collect();
    let questions = common::locomo_questions();
    for (name, backend) in [
        ("fast-f32", (Backend::Fast, WeightFormat::F32)),
        ("fast-f16", (Backend::Fast, WeightFormat::F16)),
        ("candle", (Backend::Candle, WeightFormat::F32)),
    ] {
        let mut g = c.benchmark_group(format!("embed_locomo_turns/{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(sample.len() as u64));
        for batch in [1usize, 8, 32, 128] {
            let e = load(backend, batch);
            g.bench_with_input(BenchmarkId::new("batch", batch), &sample, |b, s| {
                b.iter(|| e.embed(s).unwrap())
            });
        }
        g.finish();

        let e = load(backend, 32);
        let mut i = 0;
        let mut g = c.benchmark_group(format!("embed_query/{name}"));
        g.sample_size(100);
        g.bench_function("locomo_question", |b| {
            b.iter(|| {
                i = (i + 1) % questions.len();
                e.embed(&[questions[i].as_str()]).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, embedding);
criterion_main!(benches);
