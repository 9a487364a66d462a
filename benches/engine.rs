//! The engine end to end: `search` (embed + index + fetch) at 100k messages by
//! text (hybrid, the default; dense; lexical, which computes no embedding), by
//! vector (everything but the model), by text while another
//! client imports batches of 128 turns (the query waits for one slice of the
//! import, not all of it), and `add_batch` throughput (embedding + one
//! transaction + one fsync per batch).
//!
//! `cargo bench --bench engine`; `MEMORYD_BENCH_N=20000` for a quicker run;
//! `MEMORYD_BENCH_SLICE_TOKENS` overrides `embed_slice_tokens` (a huge value turns
//! slicing off, for an A/B).
//!
//! Background summarization is off while the namespace is loaded: its extractive
//! summarizer embeds every sentence of the 100k messages (~10 min here), which is
//! ingest cost, not search cost. What it does to a query's wait is what the
//! import scenario measures.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memoryd::{
    Access, Engine, EngineConfig, NewMessage, Role, SearchMode, SearchRequest, SummarizeConfig,
};

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

fn engine(c: &mut Criterion) {
    let n = env_usize("MEMORYD_BENCH_N").unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let turns = common::locomo_turns();
    let questions = common::locomo_questions();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig {
        model: common::model_config(),
        summarize: SummarizeConfig {
            enabled: false,
            ..SummarizeConfig::default()
        },
        // Every query is embedded (no LRU hits), as a new question would be.
        query_cache_capacity: 0,
        ..EngineConfig::with_data_dir(dir.path())
    };
    if let Some(t) = env_usize("MEMORYD_BENCH_SLICE_TOKENS") {
        cfg.embed_slice_tokens = t;
    }
    let engine = Engine::open_with_embedder(cfg, common::embedder()).unwrap();

    // n messages with real LoCoMo text; their vectors are clustered synthetic
    // ones (embedding 100k texts would take ~20 min here; index cost does not
    // depend on where a vector came from).
    let started = std::time::Instant::now();
    let mut vectors = common::clustered(n + 100, 384, 1000, 3);
    let qv = vectors.split_off(n * 384); // held-out queries from the same clusters
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
                .add_batch_with_embeddings(&Access::full(), "big", msgs, chunk.to_vec())
                .await
                .unwrap();
        }
        while engine.stats().graph_namespaces == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    eprintln!(
        "loaded {n} messages and built the graph in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group(format!("engine_search_n{}k", n / 1000));
    g.sample_size(50);
    let mut qi = 0;
    g.bench_function("text_query_k10", |b| {
        b.iter(|| {
            qi = (qi + 1) % questions.len();
            rt.block_on(engine.search(
                &Access::full(),
                "big",
                SearchRequest::text(questions[qi].clone(), 10),
            ))
            .unwrap()
        })
    });
    g.bench_function("dense_text_query_k10", |b| {
        b.iter(|| {
            qi = (qi + 1) % questions.len();
            let q = SearchRequest::text(questions[qi].clone(), 10).with_mode(SearchMode::Dense);
            rt.block_on(engine.search(&Access::full(), "big", q))
                .unwrap()
        })
    });
    g.bench_function("lexical_query_k10", |b| {
        b.iter(|| {
            qi = (qi + 1) % questions.len();
            let q = SearchRequest::text(questions[qi].clone(), 10).with_mode(SearchMode::Lexical);
            rt.block_on(engine.search(&Access::full(), "big", q))
                .unwrap()
        })
    });
    g.bench_function("vector_query_k10", |b| {
        b.iter(|| {
            qi = (qi + 1) % 100;
            let q = SearchRequest::vector(qv[qi * 384..(qi + 1) * 384].to_vec(), 10);
            rt.block_on(engine.search(&Access::full(), "big", q))
                .unwrap()
        })
    });
    // The same text queries while a writer imports 128 turns per request
    // without pause.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (engine, turns, stop) = (engine.clone(), turns.clone(), stop.clone());
        rt.spawn(async move {
            let mut off = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                off = (off + 128) % (turns.len() - 128);
                let msgs = turns[off..off + 128]
                    .iter()
                    .map(|t| NewMessage::new(Role::User, t.clone()))
                    .collect();
                engine
                    .add_batch(&Access::full(), "import", msgs)
                    .await
                    .unwrap();
            }
        })
    };
    g.bench_function("text_query_k10_during_import", |b| {
        b.iter(|| {
            qi = (qi + 1) % questions.len();
            rt.block_on(engine.search(
                &Access::full(),
                "big",
                SearchRequest::text(questions[qi].clone(), 10),
            ))
            .unwrap()
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(writer).unwrap();
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
            rt.block_on(engine.add_batch(&Access::full(), "adds", msgs))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
