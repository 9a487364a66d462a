//! memoryd's side of the index peer comparison (`benches/peers/run.py`): builds
//! the HNSW graph over raw f32 vectors, then reports recall@10 against the exact
//! scan and single-query latency (p50, one thread) for each ef_search, and the
//! exact scan's latency. One JSON object per line on stdout.
//!
//! `cargo bench --bench peer_index -- --vectors V --queries Q [--efs 16,32,64,128,256] [--m 16] [--efc 200]`

use std::time::Instant;

use memoryd::IndexConfig;
use memoryd::search::vector::{NamespaceIndex, Scored};
use memoryd::{Filter, Message, Role};

const DIM: usize = 384;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("readable vectors");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn p50(mut v: Vec<f64>) -> f64 {
    memoryd::eval::Percentiles::of(&mut v).p50
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(vectors) = arg(&args, "--vectors") else {
        eprintln!(
            "usage: --vectors FILE --queries FILE [--efs ..] [--m 16] [--efc 200] (run by benches/peers/run.py)"
        );
        return;
    };
    let data = read_f32(&vectors);
    let queries = read_f32(&arg(&args, "--queries").expect("--queries"));
    let efs: Vec<usize> = arg(&args, "--efs")
        .unwrap_or_else(|| "16,32,64,128,256".into())
        .split(',')
        .map(|e| e.parse().expect("integers"))
        .collect();
    let m: usize = arg(&args, "--m").map_or(16, |v| v.parse().expect("integer"));
    let efc: usize = arg(&args, "--efc").map_or(200, |v| v.parse().expect("integer"));
    let msg = Message {
        id: String::new(),
        namespace: "peer".into(),
        role: Role::User,
        name: None,
        content: String::new(),
        timestamp: chrono::DateTime::from_timestamp(0, 0).expect("epoch"),
        agent_id: None,
        session_id: None,
        exchange_id: None,
        metadata: Default::default(),
    };
    let cfg = IndexConfig {
        exact_threshold: 1,
        m,
        ef_construction: efc,
        ..IndexConfig::default()
    };
    let mut flat = NamespaceIndex::new(DIM, cfg);
    for (i, v) in data.chunks_exact(DIM).enumerate() {
        flat.push(i as u64, &msg, v);
    }
    let n = data.len() / DIM;
    let t = Instant::now();
    let mut idx = NamespaceIndex::rebuilt_from(&flat.snapshot());
    println!(
        "{{\"impl\":\"memoryd\",\"n\":{n},\"build_s\":{:.2}}}",
        t.elapsed().as_secs_f64()
    );
    let all = idx.compile(&Filter::default()).expect("empty filter");
    let qs: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
    let mut exact_ms = Vec::new();
    let truth: Vec<Vec<Scored>> = qs
        .iter()
        .map(|q| {
            let t = Instant::now();
            let r = idx.search(q, 10, &all, true);
            exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
            r
        })
        .collect();
    println!(
        "{{\"impl\":\"memoryd\",\"method\":\"exact\",\"n\":{n},\"recall\":1.0,\"p50_ms\":{:.4}}}",
        p50(exact_ms)
    );
    for ef in efs {
        idx.set_ef_search(ef);
        let mut ms = Vec::new();
        let mut hit = 0usize;
        for (q, t) in qs.iter().zip(&truth) {
            let start = Instant::now();
            let got = idx.search(q, 10, &all, false);
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            hit += t
                .iter()
                .filter(|x| got.iter().any(|g| g.seq == x.seq))
                .count();
        }
        let recall = hit as f64 / (10 * qs.len()) as f64;
        println!(
            "{{\"impl\":\"memoryd\",\"method\":\"hnsw\",\"n\":{n},\"ef\":{ef},\"recall\":{recall:.4},\"p50_ms\":{:.4}}}",
            p50(ms)
        );
    }
}
