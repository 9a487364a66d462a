//! Index search on clustered synthetic 384-d unit vectors at N = 10k and 100k
//! (and 1M with `MEMORYD_BENCH_1M=1`): exact scan vs HNSW at several
//! ef_search, with recall@10 against the exact scan printed beside each. Also
//! the exact scan's kernel over 10k vectors held as f32 (`simd::dot`) and as
//! f16 (`simd::dot_f16`, what the index holds since issue 19), same run.
//!
//! BM25's top 50 for LoCoMo questions over namespaces of LoCoMo turns either
//! side of `POSTINGS_FROM` (1,024 documents: below it a query reads every
//! document's term list, from it postings; 1,023 against 1,024 compares the
//! two at one size).
//!
//! `cargo bench --bench index`; `MEMORYD_BENCH_SIZES=15000,30000,50000` replaces
//! the sizes (where the exact scan and the graph cross: `exact_threshold`).

mod common;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use memoryd::IndexConfig;
use memoryd::search::vector::{NamespaceIndex, Scored};
use memoryd::{Filter, Message, Role};

const DIM: usize = 384;
const QUERIES: usize = 200;

fn message() -> Message {
    Message {
        id: String::new(),
        namespace: "bench".into(),
        role: Role::User,
        name: None,
        content: String::new(),
        timestamp: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        agent_id: None,
        session_id: None,
        exchange_id: None,
        metadata: Default::default(),
    }
}

/// `n` data vectors and `QUERIES` held-out queries from the same clusters.
fn data(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut all = common::clustered(n + QUERIES, DIM, (n / 100).max(10), 42);
    let queries = all.split_off(n * DIM);
    (all, queries)
}

fn build(data: &[f32], graph: bool) -> NamespaceIndex {
    let n = data.len() / DIM;
    let cfg = IndexConfig {
        exact_threshold: if graph { 1 } else { usize::MAX },
        ..IndexConfig::default()
    };
    let mut idx = NamespaceIndex::new(DIM, cfg);
    let m = message();
    for (i, v) in data.chunks_exact(DIM).enumerate() {
        idx.push(i as u64, &m, v);
    }
    if graph {
        let started = std::time::Instant::now();
        let snap = idx.snapshot();
        idx = NamespaceIndex::rebuilt_from(&snap);
        eprintln!("hnsw build n={n}: {:.1} s", started.elapsed().as_secs_f64());
    }
    idx
}

fn recall(got: &[Scored], truth: &[Scored]) -> f64 {
    truth
        .iter()
        .filter(|t| got.iter().any(|g| g.seq == t.seq))
        .count() as f64
        / truth.len() as f64
}

/// One query against 10k vectors, all scores summed: f32 · f32 against
/// f32 · f16 (the index's vectors are f16; this is what the halving cost or
/// saved in scan time).
fn kernels(c: &mut Criterion) {
    let (vectors, queries) = data(10_000);
    let halves = memoryd::simd::to_f16(&vectors);
    let q = &queries[..DIM];
    let mut g = c.benchmark_group("scan_kernel_n10000");
    g.sample_size(30);
    g.bench_function("f32", |b| {
        b.iter(|| {
            vectors
                .chunks_exact(DIM)
                .map(|v| memoryd::simd::dot(q, v))
                .sum::<f32>()
        })
    });
    g.bench_function("f16", |b| {
        b.iter(|| {
            halves
                .chunks_exact(DIM)
                .map(|v| memoryd::simd::dot_f16(q, v))
                .sum::<f32>()
        })
    });
    g.finish();
}

fn index(c: &mut Criterion) {
    let mut sizes = vec![10_000usize, 100_000];
    if std::env::var("MEMORYD_BENCH_1M").is_ok_and(|v| v == "1") {
        sizes.push(1_000_000);
    }
    if let Ok(list) = std::env::var("MEMORYD_BENCH_SIZES") {
        sizes = list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("MEMORYD_BENCH_SIZES: numbers, comma-separated")
            })
            .collect();
    }
    for n in sizes {
        let (vectors, queries) = data(n);
        let mut idx = build(&vectors, true);
        let all = idx.compile(&Filter::default()).unwrap();
        let truth: Vec<Vec<Scored>> = queries
            .chunks_exact(DIM)
            .map(|q| idx.search(q, 10, &all, true))
            .collect();
        let mut g = c.benchmark_group(format!("index_search_n{n}"));
        g.sample_size(30);
        let mut qi = 0;
        // Exact over the graph's points (what `exact: true` costs once a graph
        // exists) and over the contiguous f16 array of an index without one
        // (a namespace under `exact_threshold`).
        g.bench_function("exact", |b| {
            b.iter(|| {
                qi = (qi + 1) % QUERIES;
                idx.search(&queries[qi * DIM..(qi + 1) * DIM], 10, &all, true)
            })
        });
        let flat = build(&vectors, false);
        let flat_all = flat.compile(&Filter::default()).unwrap();
        g.bench_function("exact_no_graph", |b| {
            b.iter(|| {
                qi = (qi + 1) % QUERIES;
                flat.search(&queries[qi * DIM..(qi + 1) * DIM], 10, &flat_all, true)
            })
        });
        drop(flat);
        for ef in [16usize, 32, 64, 128, 256] {
            idx.set_ef_search(ef);
            let r: f64 = queries
                .chunks_exact(DIM)
                .zip(&truth)
                .map(|(q, t)| recall(&idx.search(q, 10, &all, false), t))
                .sum::<f64>()
                / QUERIES as f64;
            eprintln!("n={n} ef_search={ef}: recall@10 {r:.3}");
            g.bench_with_input(BenchmarkId::new("hnsw_ef", ef), &ef, |b, _| {
                b.iter(|| {
                    qi = (qi + 1) % QUERIES;
                    idx.search(&queries[qi * DIM..(qi + 1) * DIM], 10, &all, false)
                })
            });
        }
        g.finish();
    }
}

/// BM25 query analysis and top 50 (what the lexical channel of a hybrid search
/// costs) in one namespace of `n` LoCoMo turns, questions taken in turn.
fn lexical(c: &mut Criterion) {
    let turns = common::locomo_turns();
    let questions = common::locomo_questions();
    let mut g = c.benchmark_group("lexical_top50");
    g.sample_size(30);
    for n in [100usize, 1_023, 1_024, 5_000] {
        let mut idx = memoryd::search::lexical::LexicalIndex::new();
        for (i, t) in turns.iter().cycle().take(n).enumerate() {
            idx.push_text(i as u64, t);
        }
        let mut qi = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                qi = (qi + 1) % questions.len();
                let q = idx.query(&questions[qi], memoryd::Bm25Params::default());
                idx.top(&q, 50, |_| true)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernels, lexical, index);
criterion_main!(benches);
