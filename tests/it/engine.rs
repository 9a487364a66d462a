use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use memoryd::{
    Access, EngineConfig, Error, Filter, HitKind, IndexConfig, Interaction, NewMessage, Role,
    SearchMode, SearchRequest,
};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{config, embedder, open, rt};

fn ts(day: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_683_500_000, 0).unwrap() + Duration::days(day)
}

const TURNS: &[(&str, &str)] = &[
    (
        "Caroline",
        "I went to an LGBTQ support group yesterday and it was so powerful.",
    ),
    (
        "Melanie",
        "That's great! I painted a sunrise over the lake last weekend.",
    ),
    (
        "Caroline",
        "I'm researching adoption agencies; I want to build a family.",
    ),
    (
        "Melanie",
        "My kids loved the camping trip to the mountains in June.",
    ),
    (
        "Caroline",
        "I signed up for a pottery class on Tuesday evenings.",
    ),
    ("Melanie", "We adopted a dog named Luna from the shelter."),
    (
        "Caroline",
        "Counseling school starts in September, I'm nervous and excited.",
    ),
    (
        "Melanie",
        "I ran a charity race for mental health awareness.",
    ),
];

fn conversation(session: &str) -> Vec<NewMessage> {
    TURNS
        .iter()
        .enumerate()
        .map(|(i, (who, text))| {
            NewMessage::new(
                if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                *text,
            )
            .with_name(*who)
            .with_timestamp(ts(i as i64))
            .with_session(session)
        })
        .collect()
}

#[test]
fn search_finds_the_relevant_turn_and_reopen_gives_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let queries = [
        "What pet did Melanie adopt?",
        "When does counseling school start?",
        "pottery",
    ];
    let first = rt.block_on(async {
        let e = open(dir.path());
        e.add_batch(&Access::full(), "conv-1", conversation("s1"))
            .await
            .unwrap();
        let mut all = Vec::new();
        for q in queries {
            all.push(
                e.search(&Access::full(), "conv-1", SearchRequest::text(q, 3))
                    .await
                    .unwrap()
                    .hits,
            );
        }
        all
    });
    assert!(first[0][0].as_message().unwrap().content.contains("Luna"));
    assert!(
        first[1][0]
            .as_message()
            .unwrap()
            .content
            .contains("Counseling")
    );
    assert!(
        first[2][0]
            .as_message()
            .unwrap()
            .content
            .contains("pottery")
    );
    for hits in &first {
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // Reopen: same ids, same order, same scores.
    let second = rt.block_on(async {
        let e = open(dir.path());
        let mut all = Vec::new();
        for q in queries {
            all.push(
                e.search(&Access::full(), "conv-1", SearchRequest::text(q, 3))
                    .await
                    .unwrap()
                    .hits,
            );
        }
        assert_eq!(
            e.recent(&Access::full(), "conv-1", 100)
                .await
                .unwrap()
                .len(),
            TURNS.len()
        );
        all
    });
    assert_eq!(first, second);
}

#[test]
fn namespaces_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        e.add_batch(&Access::full(), "alice", conversation("a"))
            .await
            .unwrap();
        e.add(
            &Access::full(),
            "bob",
            NewMessage::new(Role::User, "We adopted a dog named Luna."),
        )
        .await
        .unwrap();
        for q in ["dog named Luna", "pottery class", "adoption"] {
            for h in e
                .search(&Access::full(), "bob", SearchRequest::text(q, 50))
                .await
                .unwrap()
                .hits
            {
                assert_eq!(h.as_message().unwrap().namespace, "bob");
            }
            for h in e
                .search(&Access::full(), "alice", SearchRequest::text(q, 50))
                .await
                .unwrap()
                .hits
            {
                assert_eq!(h.as_message().unwrap().namespace, "alice");
            }
        }
        assert_eq!(
            e.search(&Access::full(), "bob", SearchRequest::text("dog", 50))
                .await
                .unwrap()
                .hits
                .len(),
            1
        );
        assert!(
            e.search(&Access::full(), "carol", SearchRequest::text("dog", 5))
                .await
                .unwrap()
                .hits
                .is_empty()
        );
        let names: Vec<_> = e
            .namespaces(&Access::full())
            .into_iter()
            .map(|n| (n.name, n.messages))
            .collect();
        assert_eq!(
            names,
            vec![("alice".to_string(), TURNS.len()), ("bob".to_string(), 1)]
        );
    });
}

#[test]
fn deleted_messages_never_return_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let luna_id = rt.block_on(async {
        let e = open(dir.path());
        let stored = e
            .add_batch(&Access::full(), "conv", conversation("s"))
            .await
            .unwrap();
        let luna = stored
            .iter()
            .find(|m| m.content.contains("Luna"))
            .unwrap()
            .id
            .clone();
        e.delete(&Access::full(), &luna).await.unwrap();
        assert!(matches!(
            e.get(&Access::full(), &luna).await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            e.delete(&Access::full(), &luna).await,
            Err(Error::NotFound { .. })
        ));
        let hits = e
            .search(
                &Access::full(),
                "conv",
                SearchRequest::text("dog named Luna", 100),
            )
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), TURNS.len() - 1);
        assert!(hits.iter().all(|h| h.id != luna));
        assert!(
            e.recent(&Access::full(), "conv", 100)
                .await
                .unwrap()
                .iter()
                .all(|m| m.id != luna)
        );
        luna
    });
    rt.block_on(async {
        let e = open(dir.path());
        let hits = e
            .search(
                &Access::full(),
                "conv",
                SearchRequest::text("dog named Luna", 100),
            )
            .await
            .unwrap()
            .hits;
        assert!(hits.iter().all(|h| h.id != luna_id));
        assert_eq!(hits.len(), TURNS.len() - 1);
        assert_eq!(
            e.delete_namespace(&Access::full(), "conv").await.unwrap(),
            TURNS.len() - 1
        );
        assert!(
            e.search(&Access::full(), "conv", SearchRequest::text("Luna", 10))
                .await
                .unwrap()
                .hits
                .is_empty()
        );
        assert!(e.namespaces(&Access::full()).is_empty());
    });
    rt.block_on(async {
        let e = open(dir.path());
        assert!(e.namespaces(&Access::full()).is_empty());
        assert!(
            e.recent(&Access::full(), "conv", 10)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn filters_restrict_results_without_losing_matches() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let mut msgs = conversation("s1");
        msgs.extend(conversation("s2"));
        for (i, m) in msgs.iter_mut().enumerate() {
            m.metadata = json!({"topic": if i % 3 == 0 { "family" } else { "other" }, "i": i})
                .as_object()
                .unwrap()
                .clone();
            m.agent_id = Some(if i < 8 { "agent-a" } else { "agent-b" }.into());
        }
        e.add_batch(&Access::full(), "f", msgs).await.unwrap();
        let search = |filter: Filter| {
            let e = e.clone();
            async move {
                e.search(
                    &Access::full(),
                    "f",
                    SearchRequest::text("adopted a dog", 100).with_filter(filter),
                )
                .await
                .unwrap()
                .hits
            }
        };
        let by_session = search(Filter {
            session_id: Some("s2".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_session.len(), 8);
        assert!(
            by_session
                .iter()
                .all(|h| h.as_message().unwrap().session_id.as_deref() == Some("s2"))
        );
        let by_name = search(Filter {
            name: Some("Melanie".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_name.len(), 8);
        assert!(by_name[0].as_message().unwrap().content.contains("Luna"));
        let by_role = search(Filter {
            role: Some(Role::User),
            ..Default::default()
        })
        .await;
        assert!(
            by_role
                .iter()
                .all(|h| h.as_message().unwrap().role == Role::User)
        );
        let by_time = search(Filter {
            from: Some(ts(2)),
            to: Some(ts(4)),
            ..Default::default()
        })
        .await;
        assert_eq!(by_time.len(), 4);
        assert!(
            by_time
                .iter()
                .all(|h| h.as_message().unwrap().timestamp >= ts(2)
                    && h.as_message().unwrap().timestamp < ts(4))
        );
        let by_meta = search(Filter {
            metadata: json!({"topic": "family"}).as_object().unwrap().clone(),
            ..Default::default()
        })
        .await;
        assert_eq!(by_meta.len(), 6);
        assert!(
            by_meta
                .iter()
                .all(|h| h.as_message().unwrap().metadata["topic"] == "family")
        );
        let by_agent = search(Filter {
            agent_id: Some("agent-b".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_agent.len(), 8);
        let nobody = search(Filter {
            agent_id: Some("agent-z".into()),
            ..Default::default()
        })
        .await;
        assert!(nobody.is_empty());
        let inverted = e
            .search(
                &Access::full(),
                "f",
                SearchRequest::text("x", 5).with_filter(Filter {
                    from: Some(ts(3)),
                    to: Some(ts(1)),
                    ..Default::default()
                }),
            )
            .await;
        assert_eq!(inverted.unwrap_err().code(), "invalid_value");
    });
}

#[test]
fn recent_is_newest_first_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = EngineConfig {
        short_term_capacity: 5,
        ..config(dir.path())
    };
    rt.block_on(async {
        let e = memoryd::Engine::open_with_embedder(cfg.clone(), embedder()).unwrap();
        for i in 0..8 {
            e.add(
                &Access::full(),
                "r",
                NewMessage::new(Role::User, format!("message number {i}")),
            )
            .await
            .unwrap();
        }
        let recent = e.recent(&Access::full(), "r", 3).await.unwrap();
        let contents: Vec<_> = recent.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            contents,
            ["message number 7", "message number 6", "message number 5"]
        );
        assert_eq!(e.recent(&Access::full(), "r", 100).await.unwrap().len(), 5);
        // Everything stays searchable: the buffer only bounds short-term memory.
        assert_eq!(
            e.search(&Access::full(), "r", SearchRequest::text("message", 100))
                .await
                .unwrap()
                .hits
                .len(),
            8
        );
    });
    rt.block_on(async {
        let e = memoryd::Engine::open_with_embedder(cfg, embedder()).unwrap();
        let recent = e.recent(&Access::full(), "r", 100).await.unwrap();
        assert_eq!(recent.len(), 5);
        assert_eq!(recent[0].content, "message number 7");
        assert_eq!(recent[4].content, "message number 3");
    });
}

#[test]
fn interaction_stores_two_messages_sharing_an_exchange() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let stored = e
            .add_interaction(
                &Access::full(),
                "u1",
                Interaction {
                    agent_id: Some("helper".into()),
                    user_message: "My flight to Lisbon leaves on Friday.".into(),
                    agent_response: "Noted: Lisbon, Friday. Want a reminder?".into(),
                    session_id: Some("s".into()),
                    user_name: None,
                    timestamp: None,
                    metadata: json!({"channel": "chat"}).as_object().unwrap().clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].role, Role::User);
        assert_eq!(stored[1].role, Role::Assistant);
        assert!(stored[0].exchange_id.is_some());
        assert_eq!(stored[0].exchange_id, stored[1].exchange_id);
        let got = e.get(&Access::full(), &stored[1].id).await.unwrap();
        assert_eq!(got, stored[1]);
        let hits = e
            .search(
                &Access::full(),
                "u1",
                SearchRequest::text("when is the flight to Lisbon", 1),
            )
            .await
            .unwrap();
        assert_eq!(hits.hits[0].id, stored[0].id);
    });
}

#[test]
fn bad_input_is_rejected_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let cases: Vec<(&str, Vec<NewMessage>, &str)> = vec![
            (
                "a/b",
                vec![NewMessage::new(Role::User, "x")],
                "invalid_namespace",
            ),
            (
                "",
                vec![NewMessage::new(Role::User, "x")],
                "invalid_namespace",
            ),
            ("ok", vec![], "invalid_value"),
            (
                "ok",
                vec![NewMessage::new(Role::User, " \n\t ")],
                "invalid_value",
            ),
            (
                "ok",
                vec![NewMessage::new(Role::User, "x".repeat(70_000))],
                "too_large",
            ),
            (
                "ok",
                (0..1001)
                    .map(|i| NewMessage::new(Role::User, format!("{i}")))
                    .collect(),
                "too_large",
            ),
            (
                "ok",
                vec![
                    NewMessage::new(Role::User, "fine"),
                    NewMessage::new(Role::User, ""),
                ],
                "invalid_value",
            ),
        ];
        for (ns, msgs, code) in cases {
            let err = e.add_batch(&Access::full(), ns, msgs).await.unwrap_err();
            assert_eq!(err.code(), code, "{err}");
        }
        assert!(
            e.namespaces(&Access::full()).is_empty(),
            "a rejected request stored something"
        );
        for k in [0, 1001] {
            assert_eq!(
                e.search(&Access::full(), "ok", SearchRequest::text("x", k))
                    .await
                    .unwrap_err()
                    .code(),
                "invalid_value"
            );
        }
        let wrong_dim = SearchRequest::vector(vec![1.0; 3], 1);
        assert_eq!(
            e.search(&Access::full(), "ok", wrong_dim)
                .await
                .unwrap_err()
                .code(),
            "invalid_value"
        );
        let zero = SearchRequest::vector(vec![0.0; 384], 1);
        assert_eq!(
            e.search(&Access::full(), "ok", zero)
                .await
                .unwrap_err()
                .code(),
            "invalid_value"
        );
        let nan = SearchRequest::vector(vec![f32::NAN; 384], 1);
        assert_eq!(
            e.search(&Access::full(), "ok", nan)
                .await
                .unwrap_err()
                .code(),
            "invalid_value"
        );
        assert_eq!(
            e.get(&Access::full(), "not-a-uuid")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        assert_eq!(
            e.get(&Access::full(), "0190b3a2-0000-7000-8000-000000000000")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
    });
}

#[test]
fn opening_with_another_model_fails_clearly() {
    struct Fake(memoryd::ModelInfo);
    impl memoryd::Embedder for Fake {
        fn info(&self) -> &memoryd::ModelInfo {
            &self.0
        }
        fn embed(&self, texts: &[&str]) -> memoryd::Result<memoryd::Embeddings> {
            Ok(memoryd::Embeddings {
                data: vec![0.5; texts.len() * 4],
                dim: 4,
                tokens: vec![1; texts.len()],
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let fake = Fake(memoryd::ModelInfo {
        id: "fake".into(),
        dim: 4,
        max_seq_length: 8,
        weights_sha256: "00".into(),
    });
    let err = memoryd::Engine::open_with_embedder(config(dir.path()), std::sync::Arc::new(fake))
        .err()
        .unwrap();
    assert_eq!(err.code(), "model_mismatch");
    assert!(err.to_string().contains("all-MiniLM-L6-v2"), "{err}");
}

/// Namespaces past the exact-scan threshold are served by an HNSW graph built in
/// the background and dumped; a reopen reloads the dump (and without dumps finds
/// the same results); deleting the namespace deletes its dump.
#[test]
fn large_namespace_switches_to_graph() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        index: IndexConfig {
            exact_threshold: 300,
            ..IndexConfig::default()
        },
        ..config(dir.path())
    };
    let rt = rt();
    let texts: Vec<String> = (0..400)
        .map(|i| {
            format!(
                "note {i}: the {} {} likes {}",
                ["red", "blue", "green", "tall", "old"][i % 5],
                ["cat", "dog", "owl", "fox", "bee", "cow", "elk"][i % 7],
                [
                    "tea", "jazz", "rain", "maps", "chess", "figs", "kites", "salt", "snow",
                    "glue", "wool"
                ][i % 11]
            )
        })
        .collect();
    let deleted = rt.block_on(async {
        let e = memoryd::Engine::open_with_embedder(cfg.clone(), embedder()).unwrap();
        let batch = texts
            .iter()
            .map(|t| NewMessage::new(Role::User, t.clone()))
            .collect();
        let stored = e.add_batch(&Access::full(), "big", batch).await.unwrap();
        // The build runs on its own thread; wait for it (bounded).
        for _ in 0..200 {
            if e.stats().graph_namespaces == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(e.stats().graph_namespaces, 1);
        let mut top1 = 0;
        for (m, t) in stored.iter().zip(&texts).step_by(10) {
            let hits = e
                .search(
                    &Access::full(),
                    "big",
                    SearchRequest::text(format!("user: {t}"), 1),
                )
                .await
                .unwrap()
                .hits;
            top1 += usize::from(hits[0].id == m.id);
        }
        assert!(top1 >= 38, "self top-1 through the graph: {top1}/40");
        // The graph was dumped before it was swapped in.
        assert_eq!(e.stats().graph_tail_rows, 0);
        assert!(dir.path().join("graphs").read_dir().unwrap().count() == 1);
        e.delete(&Access::full(), &stored[0].id).await.unwrap();
        let hits = e
            .search(
                &Access::full(),
                "big",
                SearchRequest::text(format!("user: {}", texts[0]), 10),
            )
            .await
            .unwrap()
            .hits;
        assert!(hits.iter().all(|h| h.id != stored[0].id));
        let f = Filter {
            role: Some(Role::Assistant),
            ..Default::default()
        };
        assert!(
            e.search(
                &Access::full(),
                "big",
                SearchRequest::text("cat", 10).with_filter(f)
            )
            .await
            .unwrap()
            .hits
            .is_empty()
        );
        stored[0].id.clone()
    });
    let queries: Vec<SearchRequest> = texts
        .iter()
        .step_by(37)
        .map(|t| SearchRequest::text(format!("user: {t}"), 5))
        .collect();
    let before = rt.block_on(async {
        let e = memoryd::Engine::open_with_embedder(cfg.clone(), embedder()).unwrap();
        // Reloaded from its dump (in the background after open), not rebuilt.
        e.wait_graph_reloads().await;
        let stats = e.stats();
        assert_eq!(stats.graphs_reloaded, 1);
        assert_eq!(stats.graphs_reloading, 0);
        assert_eq!(stats.graph_namespaces, 1);
        assert_eq!(stats.messages, 399);
        let mut out = Vec::new();
        for q in &queries {
            let hits = e
                .search(&Access::full(), "big", q.clone())
                .await
                .unwrap()
                .hits;
            assert!(hits.iter().all(|h| h.id != deleted), "{q:?}");
            out.push(hits.into_iter().map(|h| h.id).collect::<Vec<_>>());
        }
        out
    });
    // The same searches without the dump (rebuilt in the background, exact scan
    // meanwhile) find the same messages.
    let no_dumps = EngineConfig {
        persist_graphs: false,
        ..cfg.clone()
    };
    rt.block_on(async {
        let e = memoryd::Engine::open_with_embedder(no_dumps, embedder()).unwrap();
        assert_eq!(e.stats().graphs_reloaded, 0);
        for (q, want) in queries.iter().zip(&before) {
            let hits = e
                .search(&Access::full(), "big", q.clone())
                .await
                .unwrap()
                .hits;
            let got: Vec<String> = hits.into_iter().map(|h| h.id).collect();
            // Exact scan (or a fresh build) against the reloaded graph: the same
            // best hit, and mostly the same top 5.
            assert_eq!(got[0], want[0], "{q:?}");
            let shared = got.iter().filter(|g| want.contains(g)).count();
            assert!(shared >= 4, "{q:?}: {got:?} vs {want:?}");
        }
    });
    rt.block_on(async {
        let e = memoryd::Engine::open_with_embedder(cfg.clone(), embedder()).unwrap();
        e.wait_graph_reloads().await;
        assert_eq!(e.stats().graphs_reloaded, 1);
        e.delete_namespace(&Access::full(), "big").await.unwrap();
        // Deleted by a thread of its own, off the commit.
        let graphs = dir.path().join("graphs");
        for _ in 0..100 {
            if graphs.read_dir().unwrap().count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            graphs.read_dir().unwrap().count(),
            0,
            "a deleted namespace's graph dump is deleted with it"
        );
    });
}

#[test]
fn concurrent_adds_deletes_and_searches_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (kept, deleted) = rt.block_on(async {
        let e = open(dir.path());
        let mut tasks = Vec::new();
        for t in 0..8 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut deleted = Vec::new();
                for i in 0..12 {
                    let m = e
                        .add(
                            &Access::full(),
                            "shared",
                            NewMessage::new(
                                Role::User,
                                format!("task {t} writes line {i} about topic {}", i % 4),
                            ),
                        )
                        .await
                        .unwrap();
                    let hits = e
                        .search(
                            &Access::full(),
                            "shared",
                            SearchRequest::text(format!("task {t} line {i}"), 5),
                        )
                        .await
                        .unwrap();
                    assert!(!hits.hits.is_empty());
                    if i % 3 == 0 {
                        e.delete(&Access::full(), &m.id).await.unwrap();
                        deleted.push(m.id);
                    } else {
                        kept.push(m.id);
                    }
                }
                (kept, deleted)
            }));
        }
        let mut kept = HashSet::new();
        let mut deleted = HashSet::new();
        for t in tasks {
            let (k, d) = t.await.unwrap();
            kept.extend(k);
            deleted.extend(d);
        }
        let hits: HashSet<String> = e
            .search(
                &Access::full(),
                "shared",
                SearchRequest::text("task line topic", 1000).with_kinds(vec![HitKind::Message]),
            )
            .await
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(hits, kept);
        (kept, deleted)
    });
    rt.block_on(async {
        let e = open(dir.path());
        let hits: HashSet<String> = e
            .search(
                &Access::full(),
                "shared",
                SearchRequest::text("task line topic", 1000).with_kinds(vec![HitKind::Message]),
            )
            .await
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(hits, kept);
        assert!(hits.is_disjoint(&deleted));
        assert_eq!(e.stats().messages, kept.len());
    });
}

fn sentence() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "garden",
        "river",
        "violin",
        "mortgage",
        "python",
        "soccer",
        "bakery",
        "glacier",
        "poetry",
        "tax",
        "rocket",
        "lantern",
        "orchid",
        "subway",
        "vaccine",
        "chess",
        "marathon",
        "quilt",
        "volcano",
        "espresso",
        "thunder",
        "library",
        "kayak",
        "saxophone",
        "desert",
        "password",
    ]);
    prop::collection::vec(words, 3..9).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Every stored text, queried as it was embedded, is its own dense top-1 (a
    /// property of cosine; hybrid may rank a neighbouring turn first).
    #[test]
    fn every_stored_text_is_its_own_top1(texts in prop::collection::hash_set(sentence(), 5..25)) {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = texts.into_iter().collect();
        rt().block_on(async {
            let e = open(dir.path());
            let batch = texts.iter().map(|t| NewMessage::new(Role::User, t.clone()).with_name("Sam")).collect();
            let stored = e.add_batch(&Access::full(), "p", batch).await.unwrap();
            for m in &stored {
                let request = SearchRequest::text(m.embedding_text(), 1).with_mode(SearchMode::Dense);
                let hits = e.search(&Access::full(), "p", request).await.unwrap().hits;
                prop_assert_eq!(&hits[0].id, &m.id);
                prop_assert!(hits[0].score > 0.999);
            }
            Ok(())
        })?;
    }
}

fn contents(hits: &[memoryd::Hit]) -> Vec<String> {
    hits.iter()
        .filter_map(|h| h.as_message().map(|m| m.content.clone()))
        .collect()
}

#[test]
fn modes_rank_by_words_dates_and_neighbouring_turns() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let e = open(dir.path());
        e.add_batch(&Access::full(), "conv", conversation("s"))
            .await
            .unwrap();
        let search = |q: &str, k: usize, mode: SearchMode| {
            let e = e.clone();
            let request = SearchRequest::text(q, k).with_mode(mode);
            async move {
                e.search(&Access::full(), "conv", request)
                    .await
                    .unwrap()
                    .hits
            }
        };
        // Lexical: only turns that share a word with the query (after stemming).
        let hits = search("Luna", 10, SearchMode::Lexical).await;
        assert_eq!(
            contents(&hits),
            ["We adopted a dog named Luna from the shelter."]
        );
        let hits = search("races", 10, SearchMode::Lexical).await;
        assert_eq!(
            contents(&hits),
            ["I ran a charity race for mental health awareness."]
        );
        // Dense ranks every turn.
        assert_eq!(
            search("Luna", 10, SearchMode::Dense).await.len(),
            TURNS.len()
        );
        // A turn is indexed with its date: turn 5 was said on 12 May 2023.
        let hits = search("What did Melanie say on 12 May?", 3, SearchMode::Lexical).await;
        assert!(contents(&hits)[0].contains("Luna"), "{:?}", contents(&hits));
        // Hybrid: the name match comes first.
        let hits = search("Who is Luna?", 3, SearchMode::Hybrid).await;
        assert!(contents(&hits)[0].contains("Luna"), "{:?}", contents(&hits));
        // A vector query cannot be ranked lexically.
        let v = e.embed(vec!["dog".into()]).await.unwrap().data;
        let err = e
            .search(
                &Access::full(),
                "conv",
                SearchRequest::vector(v, 3).with_mode(SearchMode::Lexical),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    });
}

#[test]
fn hybrid_lifts_the_answer_after_the_matching_question() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let turns = [
            ("Jon", "How was the weekend?"),
            ("Gina", "Relaxing. I read two novels by the pool."),
            ("Jon", "What is the name of the bakery you opened downtown?"),
            (
                "Gina",
                "Sunrise Crumbs! Everyone in the neighbourhood comes by.",
            ),
            (
                "Jon",
                "My dance studio needs new mirrors and a sound system.",
            ),
            ("Gina", "The studio looks amazing, by the way."),
            ("Jon", "I have been practising salsa every evening."),
            ("Gina", "I went hiking with my sister on Sunday."),
        ];
        let msgs: Vec<NewMessage> = turns
            .iter()
            .map(|(who, text)| {
                NewMessage::new(Role::User, *text)
                    .with_name(*who)
                    .with_session("s1")
            })
            .collect();
        e.add_batch(&Access::full(), "c", msgs).await.unwrap();
        let q = "What is the name of Gina's bakery?";
        let top = |mode: SearchMode| {
            let e = e.clone();
            async move {
                contents(
                    &e.search(
                        &Access::full(),
                        "c",
                        SearchRequest::text(q, 2).with_mode(mode),
                    )
                    .await
                    .unwrap()
                    .hits,
                )
            }
        };
        let hybrid = top(SearchMode::Hybrid).await;
        assert!(hybrid[0].contains("bakery"), "{hybrid:?}");
        // The answer shares no word with the question; its neighbour does.
        assert!(hybrid[1].contains("Sunrise Crumbs"), "{hybrid:?}");
        let lexical = top(SearchMode::Lexical).await;
        assert!(
            lexical.iter().all(|c| !c.contains("Sunrise")),
            "{lexical:?}"
        );
    });
}

#[test]
fn lexical_index_follows_deletes_summaries_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let lexical = |e: &memoryd::Engine, q: &str, kinds: Vec<HitKind>| {
        let e = e.clone();
        let request = SearchRequest::text(q, 10)
            .with_mode(SearchMode::Lexical)
            .with_kinds(kinds);
        async move {
            e.search(&Access::full(), "conv", request)
                .await
                .unwrap()
                .hits
        }
    };
    let word = rt.block_on(async {
        let e = open(dir.path());
        let stored = e
            .add_batch(&Access::full(), "conv", conversation("s"))
            .await
            .unwrap();
        let luna = stored.iter().find(|m| m.content.contains("Luna")).unwrap();
        e.delete(&Access::full(), &luna.id).await.unwrap();
        assert!(lexical(&e, "Luna", vec![]).await.is_empty());
        let summaries = e.summarize(&Access::full(), "conv").await.unwrap();
        assert_eq!(summaries.len(), 1);
        // A word the summary quotes from the conversation.
        let word = [
            "pottery",
            "counseling",
            "camping",
            "painted",
            "charity",
            "adoption",
        ]
        .into_iter()
        .find(|w| summaries[0].text.to_lowercase().contains(w))
        .expect("the summary quotes a turn");
        let hits = lexical(&e, word, vec![HitKind::Summary]).await;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, summaries[0].id);
        word
    });
    rt.block_on(async {
        let e = open(dir.path());
        assert_eq!(lexical(&e, word, vec![HitKind::Summary]).await.len(), 1);
    });
    rt.block_on(async {
        let e = open(dir.path());
        assert!(lexical(&e, "Luna", vec![]).await.is_empty());
        assert_eq!(
            lexical(&e, "pottery", vec![HitKind::Message]).await.len(),
            1
        );
        e.delete_namespace(&Access::full(), "conv").await.unwrap();
        assert!(lexical(&e, "pottery", vec![]).await.is_empty());
    });
}

/// Scores of a short user turn and the long reply after it (~60 analyzed terms;
/// the short turn and the "thanks" after the reply have under 10), asked with
/// each of `settings` in turn: `(short, long)` per setting.
fn short_and_long_reply_scores(settings: &[memoryd::HybridParams]) -> Vec<(f32, f32)> {
    use memoryd::{Access, HitKind, NewMessage, Role, SearchRequest};
    let dir = tempfile::tempdir().unwrap();
    let mut c = memoryd::EngineConfig::with_data_dir(dir.path());
    c.summarize.enabled = false;
    let e = memoryd::Engine::open_with_embedder(
        c,
        std::sync::Arc::new(memoryd::embed::HashEmbedder::new(16)),
    )
    .unwrap();
    let rt = crate::common::rt();
    rt.block_on(async {
        let me = Access::full();
        let filler = "the weather was mild and we talked about many other things for a long while \
            including recipes gardens trains books films music travel plans budgets schedules \
            holidays neighbours weekends mornings evenings and more";
        let turns = [
            (Role::User, "my lighthouse keeper is called Rex".to_owned()),
            // Over 4 times the terms of the turn before it.
            (Role::Assistant, [filler; 3].join(" ")),
            (Role::User, "thanks".to_owned()),
        ];
        let msgs: Vec<NewMessage> = turns
            .into_iter()
            .map(|(r, t)| NewMessage::new(r, t).with_session("s1"))
            .collect();
        let stored = e.add_batch(&me, "chat", msgs).await.unwrap();
        let (short, long) = (&stored[0].id, &stored[1].id);
        let mut out = Vec::new();
        for p in settings {
            let mut r =
                SearchRequest::text("lighthouse keeper Rex", 10).with_kinds(vec![HitKind::Message]);
            r.hybrid = Some(*p);
            let hits = e.search(&me, "chat", r).await.unwrap().hits;
            let of = |id: &str| hits.iter().find(|h| h.id == id).map(|h| h.score).unwrap();
            out.push((of(short), of(long)));
        }
        out
    })
}

/// `neighbor_length_ratio`: a long turn no longer borrows the score of the
/// short turn before it, while the short turn still borrows from the long one
/// (and with the ratio off, both borrow).
#[test]
fn a_long_reply_does_not_ride_on_the_short_turn_before_it() {
    let ratio = |neighbor_length_ratio| memoryd::HybridParams {
        neighbor_length_ratio,
        neighbor_max_terms: 0,
        ..Default::default()
    };
    let s = short_and_long_reply_scores(&[ratio(0.0), ratio(4.0)]);
    let [(short_off, long_off), (short_on, long_on)] = [s[0], s[1]];
    assert!(
        long_on < long_off,
        "the long reply still borrows: {long_on} vs {long_off}"
    );
    assert_eq!(
        short_on, short_off,
        "the short turn still borrows from the reply"
    );
}

/// `neighbor_max_terms`: a turn longer than the cap borrows nothing from the
/// short turn before it, while the short turn still borrows from the long one
/// (and with no cap, both borrow).
#[test]
fn a_turn_over_the_term_cap_borrows_no_neighbour_score() {
    let cap = |neighbor_max_terms| memoryd::HybridParams {
        neighbor_max_terms,
        ..Default::default()
    };
    let s = short_and_long_reply_scores(&[cap(0), cap(10)]);
    let [(short_off, long_off), (short_on, long_on)] = [s[0], s[1]];
    assert!(
        long_on < long_off,
        "the long reply still borrows: {long_on} vs {long_off}"
    );
    assert_eq!(
        short_on, short_off,
        "the short turn still borrows from the reply"
    );
}
