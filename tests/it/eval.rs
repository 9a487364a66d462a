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
    let dense = || {
        rt.block_on(memoryd::eval::run_locomo(
            &engine,
            &samples,
            "locomo",
            20,
            SearchMode::Dense,
        ))
        .unwrap()
    };
    let report = dense();
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

    // A re-run on the same store (`eval locomo --data-dir` twice) asks the stored
    // conversations as they are: no turn is stored twice, the figures repeat.
    let again = dense();
    assert_eq!(again.ingest_turns_per_s, 0.0, "nothing ingested again");
    assert_eq!(
        (again.overall.r1, again.overall.r5, again.overall.r10),
        (report.overall.r1, report.overall.r5, report.overall.r10),
        "a re-run on the same store changed the figures"
    );

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
    // Issue #15's target; 0.697 / 0.796 measured with the defaults.
    assert!(
        hybrid.overall.r5 >= 0.68,
        "hybrid R@5 {}",
        hybrid.overall.r5
    );
    assert!(
        hybrid.overall.r10 >= 0.78,
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
    // In every category at least as good as the better channel.
    for (cat, r) in &hybrid.by_category {
        for channel in [&lexical, &report] {
            let c = &channel.by_category[cat];
            assert!(
                r.r5 >= c.r5 && r.r10 >= c.r10,
                "category {cat}: hybrid R@5/R@10 {}/{} vs {} {}/{}",
                r.r5,
                r.r10,
                channel.mode.as_str(),
                c.r5,
                c.r10
            );
        }
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

/// LongMemEval_S development set (40 questions, ~20k turns; `../shared/data/longmemeval-dev`):
/// the default ranking must not lose to its own lexical or dense channel on the benchmark's
/// turn and session metrics (README, "Retrieval quality"), and the set must be read as its
/// README describes it.
#[test]
#[ignore = "needs LongMemEval in ../shared/data; .ci/run runs it with --ignored"]
fn longmemeval_hybrid_does_not_lose_to_its_channels() {
    use memoryd::eval::longmemeval as lme;
    let path = shared_path("data/longmemeval-dev/longmemeval_s.dev40.json.gz");
    let questions = lme::load(&path).expect("LongMemEval loads");
    assert_eq!(questions.len(), 40);
    assert_eq!(
        questions
            .iter()
            .filter(|q| !q.evidence().is_empty())
            .count(),
        39
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.query_cache_capacity = 4096;
    let engine = Engine::open_with_embedder(cfg, embedder()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(lme::ingest(&engine, &questions, "lme", 4))
        .unwrap();
    let ask = |mode| {
        let (outcomes, mut latencies) = rt
            .block_on(lme::ask(&engine, &questions, "lme", 50, mode, None))
            .unwrap();
        lme::LmeReport::new(mode, &outcomes, &mut latencies)
    };
    let hybrid = ask(SearchMode::Hybrid);
    let lexical = ask(SearchMode::Lexical);
    let dense = ask(SearchMode::Dense);
    assert_eq!(hybrid.overall.questions, 40);
    assert_eq!(hybrid.overall.with_turn_evidence, 39);
    // Issue #15's targets: turn recall_all@5 at least 0.05 above either channel
    // (0.615 against 0.436 and 0.436 measured), session recall_any@5 >= 0.97.
    assert!(
        hybrid.overall.session_any5 >= 0.97,
        "session recall_any@5 {}",
        hybrid.overall.session_any5
    );
    for channel in [&lexical, &dense] {
        assert!(
            hybrid.overall.turn_all5 >= channel.overall.turn_all5 + 0.05,
            "turn recall_all@5: hybrid {} vs {} {}",
            hybrid.overall.turn_all5,
            channel.mode.as_str(),
            channel.overall.turn_all5
        );
        // And no question type below either channel at turn@5 or session@5.
        for (t, r) in &hybrid.by_type {
            let c = &channel.by_type[t];
            assert!(
                r.turn_all5 >= c.turn_all5 && r.session_any5 >= c.session_any5,
                "{t}: hybrid turn@5/session@5 {}/{} vs {} {}/{}",
                r.turn_all5,
                r.session_any5,
                channel.mode.as_str(),
                c.turn_all5,
                c.session_any5
            );
        }
    }
}

#[test]
#[ignore = "loads the model; .ci/run runs the eval tests with --ignored"]
fn already_ingested_keeps_a_complete_namespace_and_deletes_an_interrupted_one() {
    use memoryd::{Access, NewMessage, Role};
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::common::open(dir.path());
    crate::common::rt().block_on(async {
        let all = Access::full();
        let msgs: Vec<NewMessage> = (0..3)
            .map(|i| NewMessage::new(Role::User, format!("turn number {i}")))
            .collect();
        engine.add_batch(&all, "conv", msgs).await.unwrap();
        let held = |ns: &'static str| {
            let engine = engine.clone();
            async move {
                engine
                    .namespace(&Access::full(), ns)
                    .await
                    .map(|d| d.info.messages)
            }
        };
        // All three turns there: kept as it is.
        assert!(
            memoryd::eval::already_ingested(&engine, "conv", 3)
                .await
                .unwrap()
        );
        assert_eq!(held("conv").await.unwrap(), 3);
        // The sample has five: an interrupted ingest, deleted to be done again.
        assert!(
            !memoryd::eval::already_ingested(&engine, "conv", 5)
                .await
                .unwrap()
        );
        assert!(
            matches!(held("conv").await, Err(memoryd::Error::NotFound { .. })),
            "the partial namespace is gone"
        );
        // Never written: ingested.
        assert!(
            !memoryd::eval::already_ingested(&engine, "other", 2)
                .await
                .unwrap()
        );
    });
}
