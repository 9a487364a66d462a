use memoryd::Embedder;
use memoryd::embed::gemm::WeightFormat;
use memoryd::embed::{Backend, BertEmbedder, BertOptions};
use serde::Deserialize;

use crate::common::{embedder, model_config, repo_path, shared_path};

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens_untruncated: usize,
    embedding: Vec<f32>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// The default model's folder, resolved as users resolve it.
fn model_dir() -> std::path::PathBuf {
    let cfg = model_config();
    memoryd::embed::model::ModelResolver::new(&cfg.models_dir)
        .resolve(&cfg.name, None)
        .unwrap()
        .dir
}

fn reference() -> Reference {
    let path = repo_path("tests/fixtures/minilm-reference.json");
    serde_json::from_slice(&std::fs::read(&path).expect("reference fixture present"))
        .expect("fixture parses")
}

/// sentence-transformers' own output, batched together (padding must not leak
/// into the pooled vectors) and one by one.
#[test]
fn reproduces_sentence_transformers_reference() {
    let r = reference();
    let e = embedder();
    assert_eq!(e.info().dim, 384);
    assert_eq!(e.info().max_seq_length, r.max_seq_length);
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    let batched = e.embed(&texts).unwrap();
    assert_eq!(batched.len(), r.items.len());
    assert!(
        r.items.iter().any(|i| i.tokens_untruncated > 256),
        "fixture covers truncation"
    );
    for (i, item) in r.items.iter().enumerate() {
        let c = cosine(batched.row(i), &item.embedding);
        assert!(
            c >= 0.9999,
            "item {i} ({} tokens): cosine {c}",
            item.tokens_untruncated
        );
        assert_eq!(
            batched.tokens[i],
            item.tokens_untruncated.min(256),
            "item {i} token count"
        );
        let single = e.embed(&[item.text.as_str()]).unwrap();
        let c1 = cosine(single.row(0), &item.embedding);
        assert!(c1 >= 0.9999, "item {i} alone: cosine {c1}");
    }
}

#[test]
fn outputs_are_unit_length_in_input_order() {
    let e = embedder();
    let out = e
        .embed(&[
            "a cat",
            "a much longer sentence about dogs and parks",
            "a cat",
        ])
        .unwrap();
    for row in out.rows() {
        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
    }
    assert_eq!(out.row(0), out.row(2));
    assert_ne!(out.row(0), out.row(1));
}

/// Any sentence-transformers folder loads by path; a smaller batch size gives the same vectors.
#[test]
fn loads_a_folder_by_path_with_other_batch_size() {
    let dir = model_dir();
    let e = BertEmbedder::load(
        &dir,
        BertOptions {
            batch_size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let r = reference();
    let texts: Vec<&str> = r.items.iter().take(10).map(|i| i.text.as_str()).collect();
    let out = e.embed(&texts).unwrap();
    for (i, item) in r.items.iter().take(10).enumerate() {
        assert!(cosine(out.row(i), &item.embedding) >= 0.9999);
    }
}

#[test]
fn rejects_a_folder_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let err = BertEmbedder::load(dir.path(), BertOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.code(), "model_unavailable");
}

/// The optimized forward pass against candle-transformers' `BertModel` (the
/// oracle) on real chat turns of every length, batched and alone: the fixture
/// checks 34 texts; this checks the same arithmetic on 300 more.
#[test]
#[ignore = "needs LoCoMo in ../shared/data; .ci/run runs it with --ignored"]
fn fast_forward_matches_the_candle_oracle() {
    let dir = model_dir();
    let load = |backend, weights| {
        BertEmbedder::load(
            &dir,
            BertOptions {
                backend,
                weights,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let oracle = load(Backend::Candle, WeightFormat::F32);
    assert!(!oracle.is_fast());
    let samples = memoryd::locomo::load(&shared_path("data/locomo/locomo10.json")).unwrap();
    let mut texts: Vec<String> = samples[0]
        .turns
        .iter()
        .take(300)
        .map(|t| format!("{}: {}", t.speaker, t.text))
        .collect();
    // Long inputs too: truncated at 256 tokens.
    texts.push(texts.join(" "));
    texts.push("x".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let b = oracle.embed(&refs).unwrap();
    // f32 weights: the same arithmetic up to summation order. f16 weights: the
    // weights rounded to 11 significant bits, nothing else.
    for (weights, bound) in [(WeightFormat::F32, 0.99999), (WeightFormat::F16, 0.99995)] {
        let fast = load(Backend::Fast, weights);
        assert!(fast.is_fast());
        let a = fast.embed(&refs).unwrap();
        let mut worst = 1f32;
        for i in 0..refs.len() {
            worst = worst.min(cosine(a.row(i), b.row(i)));
        }
        eprintln!("{weights:?} weights: worst cosine to candle {worst}");
        assert!(worst >= bound, "{weights:?}: worst cosine {worst}");
        for t in [refs[0], refs[refs.len() - 2]] {
            let c = cosine(
                fast.embed(&[t]).unwrap().row(0),
                oracle.embed(&[t]).unwrap().row(0),
            );
            assert!(c >= bound, "{weights:?} alone: cosine {c}");
        }
    }
}

/// Both weight formats (whichever `auto` picks here, the other explicitly)
/// reproduce sentence-transformers.
#[test]
fn both_weight_formats_reproduce_the_reference() {
    let dir = model_dir();
    let r = reference();
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    for weights in [WeightFormat::F32, WeightFormat::F16] {
        let e = BertEmbedder::load(
            &dir,
            BertOptions {
                backend: Backend::Fast,
                weights,
                ..Default::default()
            },
        )
        .unwrap();
        let out = e.embed(&texts).unwrap();
        let worst = r
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| cosine(out.row(i), &item.embedding))
            .fold(1f32, f32::min);
        eprintln!("{weights:?} weights: worst cosine to the fixture {worst}");
        assert!(worst >= 0.9999, "{weights:?}: worst cosine {worst}");
    }
}
