//! Pipeline validation on real data: dense exact retrieval on LoCoMo must
//! reproduce the reference figures for all-MiniLM-L6-v2 on speaker-prefixed
//! turns (`../shared/data/README.md`: R@5 0.331, R@10 0.425). A mismatch means a
//! bug in tokenization, pooling, text construction, evidence parsing or search.
//! The same ingested conversations then check the default (hybrid) ranking
//! against the targets its weights were cross-validated for (README, "Retrieval
//! quality"), and that lexical mode alone beats the BM25 reference.

use memoryd::{Engine, IndexConfig, SearchMode};

use crate::common::{config, embedder, shared_path};

#[test]
#[ignore = "needs LoCoMo in ../shared/data; .ci/run runs it with --ignored"]
fn locomo_dense_reproduces_reference_recall_and_hybrid_meets_its_target() {
    let path = shared_path("data/locomo/locomo10.json");
    let samples = memoryd::locomo::load(&path).expect("LoCoMo loads");
    assert_eq!(samples.len(), 10);
    assert_eq!(samples.iter().map(|s| s.turns.len()).sum::<usize>(), 5882);
    let with_evidence = samples
        .iter()
        .flat_map(|s| &s.questions)
        .filter(|q| !q.evidence.is_empty())
        .count();
    assert_eq!(with_evidence, 1982);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.index = IndexConfig {
        exact_threshold: usize::MAX,
        ..IndexConfig::default()
    };
    let engine = Engine::open_with_embedder(cfg, embedder()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(memoryd::eval::run_locomo(
            &engine,
            &samples,
            "locomo",
            20,
            SearchMode::Dense,
        ))
        .unwrap();
    assert_eq!(report.questions, 1982);
    assert!(
        (report.overall.r5 - 0.331).abs() <= 0.01,
        "R@5 {}",
        report.overall.r5
    );
    assert!(
        (report.overall.r10 - 0.425).abs() <= 0.01,
        "R@10 {}",
        report.overall.r10
    );
    assert_eq!(report.by_category.len(), 5);

    // Hybrid (the default) and lexical over the same namespaces.
    let ask = |mode| {
        let (outcomes, mut latencies) = rt
            .block_on(memoryd::eval::ask_locomo(
                &engine, &samples, "locomo", 20, mode, None,
            ))
            .unwrap();
        memoryd::eval::LocomoReport::new(mode, &outcomes, 0.0, &mut latencies)
    };
    let hybrid = ask(SearchMode::Hybrid);
    assert!(
        hybrid.overall.r5 >= 0.60,
        "hybrid R@5 {}",
        hybrid.overall.r5
    );
    assert!(
        hybrid.overall.r10 >= 0.70,
        "hybrid R@10 {}",
        hybrid.overall.r10
    );
    let lexical = ask(SearchMode::Lexical);
    // The data README's BM25 reference: R@5 0.511, R@10 0.581.
    assert!(
        lexical.overall.r10 > 0.581,
        "lexical R@10 {}",
        lexical.overall.r10
    );
    for (cat, r) in &hybrid.by_category {
        assert!(
            r.r10 >= lexical.by_category[cat].r10 - 0.02,
            "category {cat}: hybrid R@10 {} vs lexical {}",
            r.r10,
            lexical.by_category[cat].r10
        );
    }

    // `scope: inherit`: each conversation split into a parent (earlier sessions)
    // and a child namespace, asked from the child, ranks like one namespace.
    rt.block_on(memoryd::eval::ingest_locomo_split(
        &engine, &samples, "split",
    ))
    .unwrap();
    for (mode, single) in [
        (SearchMode::Hybrid, &hybrid),
        (SearchMode::Lexical, &lexical),
        (SearchMode::Dense, &report),
    ] {
        let (outcomes, mut latencies) = rt
            .block_on(memoryd::eval::ask_locomo_scoped(
                &engine,
                &samples,
                "split",
                20,
                mode,
                None,
                memoryd::SearchScope::Inherit,
            ))
            .unwrap();
        let split = memoryd::eval::LocomoReport::new(mode, &outcomes, 0.0, &mut latencies);
        eprintln!(
            "{mode:?}: one namespace R@5 {:.3} R@10 {:.3}; parent + child (inherit) R@5 {:.3} R@10 {:.3}",
            single.overall.r5, single.overall.r10, split.overall.r5, split.overall.r10
        );
        assert_eq!(split.questions, single.questions);
        assert!(
            (split.overall.r10 - single.overall.r10).abs() <= 0.01,
            "{mode:?}: inherit R@10 {} vs one namespace {}",
            split.overall.r10,
            single.overall.r10
        );
    }
}
