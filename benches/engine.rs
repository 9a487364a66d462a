//! The engine end to end: `search` (embed + index + fetch) at 100k messages,
//! search by vector (everything but the model), and `add_batch` throughput
//! (embedding + one transaction + one fsync per batch).
//!
//! `cargo bench --bench engine`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memoryd::{Engine, EngineConfig, NewMessage, Role, SearchRequest};

const N: usize = 100_000;

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let turns = common::locomo_turns();
    let questions = common::locomo_questions();
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        model: common::model_config(),
        ..EngineConfig::with_data_dir(dir.path())
    };
    let engine = Engine::open_with_embedder(cfg, common::embedder()).unwrap();

    // 100k messages with real LoCoMo text; their vectors are clustered synthetic
    // ones (embedding 100k texts would take ~20 min here; index cost does not
    // depend on where a vector came from).
    let started = std::time::Instant::now();
    let mut vectors = common::clustered(N + 100, 384, 1000, 3);
    let qv = vectors.split_off(N * 384); // held-out queries from the same clusters
    rt.block_on(async {
        for (chunk_i, chunk) in vectors.chunks(1000 * 384).enumerate() {
            let msgs = (0..chunk.len() / 384)
                .map(|i| {
                    NewMessage::new(
                        Role::User,
                        turns[(chunk_i * 1000 + i) % turns.len()].clone(),
                    )
                })
                .collect();
            engine
                .add_batch_with_embeddings("big", msgs, chunk.to_vec())
                .await
                .unwrap();
        }
        while engine.stats().graph_namespaces == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    eprintln!(
        "loaded {N} messages and built the graph in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("engine_search_n100k");
    g.sample_size(50);
    let mut qi = 0;
    g.bench_function("text_query_k10", |b| {
        b.iter(|| {
            qi = (qi + 1) % questions.len();
            rt.block_on(engine.search("big", SearchRequest::text(questions[qi].clone(), 10)))
                .unwrap()
        })
    });
    g.bench_function("vector_query_k10", |b| {
        b.iter(|| {
            qi = (qi + 1) % 100;
            let q = SearchRequest::vector(qv[qi * 384..(qi + 1) * 384].to_vec(), 10);
            rt.block_on(engine.search("big", q)).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("engine_add_batch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(64));
    let mut off = 0;
    g.bench_function("64_locomo_turns", |b| {
        b.iter(|| {
            off = (off + 64) % (turns.len() - 64);
            let msgs = turns[off..off + 64]
                .iter()
                .map(|t| NewMessage::new(Role::User, t.clone()))
                .collect();
            rt.block_on(engine.add_batch("adds", msgs)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
