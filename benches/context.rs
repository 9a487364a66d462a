//! Shared context in process: `context_get` (one sled point read + decode),
//! `context_lookup` through a 3-level chain whose key lives at the top,
//! `context_set` (one transaction + fsync each) and a compare-and-set write.
//! The hash embedder stands in for the model: a write embeds its value's search
//! text only when the text changes, and the counter's text (`counter`) never does,
//! so `set_fsync` and `compare_and_set_fsync` measure the store; `http_load
//! context` measures writes that embed with the real model.
//!
//! `cargo bench --bench context`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use memoryd::embed::HashEmbedder;
use memoryd::{Access, ContextWrite, Engine, EngineConfig, SledStore};
use serde_json::json;

fn context(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::with_data_dir(dir.path());
    config.summarize.enabled = false;
    let store = SledStore::open(dir.path()).unwrap();
    let engine =
        Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), Arc::new(store)).unwrap();
    let me = Access::full();
    let none = serde_json::Map::new();
    rt.block_on(async {
        engine.put_namespace(&me, "l1", None, none.clone()).await.unwrap();
        engine.put_namespace(&me, "l2", Some("l1"), none.clone()).await.unwrap();
        engine.put_namespace(&me, "l3", Some("l2"), none.clone()).await.unwrap();
        for i in 0..1000 {
            let v = json!({"finding": format!("fact number {i}"), "sources": [i, i + 1], "confidence": 0.8});
            engine
                .context_set(&me, "l1", &format!("research:{i}"), v, ContextWrite::default())
                .await
                .unwrap();
        }
    });
    let mut g = c.benchmark_group("context");
    g.sample_size(100);
    let mut i = 0usize;
    g.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7) % 1000;
            rt.block_on(engine.context_get(&me, "l1", &format!("research:{i}")))
                .unwrap()
        })
    });
    g.bench_function("lookup_through_3_levels", |b| {
        b.iter(|| {
            i = (i + 7) % 1000;
            rt.block_on(engine.context_lookup(&me, "l3", &format!("research:{i}")))
                .unwrap()
        })
    });
    g.bench_function("set_fsync", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(engine.context_set(&me, "l2", "counter", json!(i), ContextWrite::default()))
                .unwrap()
        })
    });
    g.bench_function("compare_and_set_fsync", |b| {
        b.iter(|| {
            rt.block_on(async {
                let cur = engine.context_get(&me, "l2", "counter").await.unwrap();
                let opts = ContextWrite {
                    expected_version: Some(cur.version),
                    ..ContextWrite::default()
                };
                engine
                    .context_set(&me, "l2", "counter", json!(cur.version), opts)
                    .await
                    .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, context);
criterion_main!(benches);
