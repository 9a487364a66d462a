//! Embedding throughput on real LoCoMo turns at batch 1, 8, 32, 128 (texts/s),
//! and single-query latency on LoCoMo questions.
//!
//! `cargo bench --bench embed`

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memoryd::embed::{BertEmbedder, BertOptions};
use memoryd::{Embedder, model::ModelResolver};

fn load(batch_size: usize) -> BertEmbedder {
    let cfg = common::model_config();
    let dir = ModelResolver::new(&cfg.models_dir)
        .resolve(&cfg.name, None)
        .unwrap()
        .dir;
    BertEmbedder::load(
        &dir,
        BertOptions {
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
    let mut g = c.benchmark_group("embed_locomo_turns");
    g.sample_size(10);
    g.throughput(Throughput::Elements(sample.len() as u64));
    for batch in [1usize, 8, 32, 128] {
        let e = load(batch);
        g.bench_with_input(BenchmarkId::new("batch", batch), &sample, |b, s| {
            b.iter(|| e.embed(s).unwrap())
        });
    }
    g.finish();

    let questions = common::locomo_questions();
    let e = load(32);
    let mut i = 0;
    let mut g = c.benchmark_group("embed_query");
    g.sample_size(100);
    g.bench_function("locomo_question", |b| {
        b.iter(|| {
            i = (i + 1) % questions.len();
            e.embed(&[questions[i].as_str()]).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, embedding);
criterion_main!(benches);
