//! memoryd's side of the embedding peer comparison (`benches/peers/run.py`):
//! texts/s at each batch size over a file of texts, and single-query latency over
//! a file of queries. One JSON object per line on stdout.
//!
//! `cargo bench --bench peer_embed -- --texts T --queries Q [--batches 1,8,32,128]`

mod common;

use std::time::Instant;

use memoryd::Embedder;
use memoryd::embed::model::ModelResolver;
use memoryd::embed::{BertEmbedder, BertOptions};

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("readable file")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(texts) = arg(&args, "--texts") else {
        eprintln!(
            "usage: --texts FILE --queries FILE [--batches 1,8,32,128] (run by benches/peers/run.py)"
        );
        return;
    };
    let texts = lines(&texts);
    let queries = arg(&args, "--queries")
        .map(|q| lines(&q))
        .unwrap_or_default();
    let batches: Vec<usize> = arg(&args, "--batches")
        .unwrap_or_else(|| "1,8,32,128".into())
        .split(',')
        .map(|b| b.parse().expect("batch sizes are integers"))
        .collect();
    let cfg = common::model_config();
    let dir = ModelResolver::new(&cfg.models_dir)
        .resolve(&cfg.name, None)
        .expect("model")
        .dir;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for b in batches {
        let e = BertEmbedder::load(
            &dir,
            BertOptions {
                batch_size: b,
                ..Default::default()
            },
        )
        .expect("model loads");
        e.embed(&refs[..refs.len().min(8)]).expect("warm-up");
        let t = Instant::now();
        e.embed(&refs).expect("embeds");
        let tps = refs.len() as f64 / t.elapsed().as_secs_f64();
        println!("{{\"impl\":\"memoryd\",\"batch\":{b},\"texts_per_s\":{tps:.2}}}");
    }
    if !queries.is_empty() {
        let e = BertEmbedder::load(&dir, BertOptions::default()).expect("model loads");
        e.embed(&[queries[0].as_str()]).expect("warm-up");
        let mut ms: Vec<f64> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                e.embed(&[q.as_str()]).expect("embeds");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let p = memoryd::eval::Percentiles::of(&mut ms);
        println!(
            "{{\"impl\":\"memoryd\",\"query_p50_ms\":{:.3},\"query_p95_ms\":{:.3}}}",
            p.p50, p.p95
        );
    }
}
