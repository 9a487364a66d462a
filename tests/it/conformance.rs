//! Engine behaviour every storage backend must show, run against each backend:
//! sled, and PostgreSQL (a real server, `tests/it/pg.rs`). The model is the hash embedder: these tests are about the
//! engine's bookkeeping (change log, access, registry), not about ranking.

use std::sync::Arc;

use memoryd::embed::HashEmbedder;
use memoryd::{
    Access, ChangeKind, Engine, EngineConfig, NamespacePattern, NewMessage, PgStore, Role, Scope,
    SearchRequest, SledStore,
};

type Open = fn(&std::path::Path) -> Engine;

fn sled(dir: &std::path::Path) -> Engine {
    let mut config = EngineConfig::with_data_dir(dir);
    config.summarize.enabled = false;
    let store = SledStore::open(dir).unwrap();
    Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), Arc::new(store)).unwrap()
}

fn postgres(dir: &std::path::Path) -> Engine {
    let mut config = EngineConfig::with_data_dir(dir);
    config.summarize.enabled = false;
    let store = PgStore::connect(&crate::pg::database(dir)).unwrap();
    Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), Arc::new(store)).unwrap()
}

const BACKENDS: &[(&str, Open)] = &[("sled", sled), ("postgres", postgres)];

fn each_backend(test: impl Fn(&str, Open, &std::path::Path)) {
    for (name, open) in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        test(name, *open, dir.path());
    }
}

fn said(text: &str) -> NewMessage {
    NewMessage::new(Role::User, text)
}

#[test]
fn every_write_is_one_change_log_entry_in_order_with_its_actor() {
    each_backend(|backend, open, dir| {
        let rt = crate::common::rt();
        rt.block_on(async {
            let e = open(dir);
            let agent = Access::full().with_agent("researcher");
            let stored = e
                .add_batch(&agent, "team", vec![said("a"), said("b")])
                .await
                .unwrap();
            e.delete(&Access::full(), &stored[0].id).await.unwrap();
            e.summarize(&Access::full(), "team").await.unwrap();
            let log = e.changes(&Access::full(), "team", 0, 100).await.unwrap();
            let kinds: Vec<(u64, ChangeKind)> = log.iter().map(|c| (c.seq, c.kind)).collect();
            assert_eq!(
                kinds,
                [
                    (1, ChangeKind::NamespaceCreated),
                    (2, ChangeKind::MessageAdded),
                    (3, ChangeKind::MessageAdded),
                    (4, ChangeKind::MessageDeleted),
                    (5, ChangeKind::SummaryCreated),
                ],
                "{backend}"
            );
            assert_eq!(log[1].ids, [stored[0].id.clone()], "{backend}");
            assert_eq!(log[1].actor.as_deref(), Some("researcher"), "{backend}");
            assert_eq!(log[3].actor, None, "{backend}");
            // The summary's entry names it and its one source.
            assert_eq!(log[4].ids.len(), 2, "{backend}");
            assert_eq!(log[4].ids[1], stored[1].id, "{backend}");
            // Paged reads continue where the last one stopped.
            let page = e.changes(&Access::full(), "team", 3, 1).await.unwrap();
            assert_eq!(page[0].seq, 4, "{backend}");
            drop(e);
        });
        // The log is durable and the sequence continues after a restart.
        rt.block_on(async {
            let e = open(dir);
            e.add(&Access::full(), "team", said("c")).await.unwrap();
            let log = e.changes(&Access::full(), "team", 0, 100).await.unwrap();
            let seqs: Vec<u64> = log.iter().map(|c| c.seq).collect();
            assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "{backend}");
        });
    });
}

#[test]
fn access_limits_namespaces_and_scopes_and_hides_other_records() {
    each_backend(|backend, open, dir| {
        crate::common::rt().block_on(async {
            let e = open(dir);
            let full = Access::full();
            let theirs = e.add(&full, "team-b", said("secret plan")).await.unwrap();
            e.add(&full, "team-a", said("our plan")).await.unwrap();
            let reader = Access::new(
                vec![NamespacePattern::parse("team-a*").unwrap()],
                &[Scope::Read],
            );
            // Reads in scope work; writes, deletes and other namespaces do not.
            let hits = e
                .search(&reader, "team-a", SearchRequest::text("plan", 5))
                .await
                .unwrap();
            assert_eq!(hits.hits.len(), 1, "{backend}");
            let denied = e.add(&reader, "team-a", said("x")).await.unwrap_err();
            assert_eq!(denied.code(), "forbidden", "{backend}");
            let denied = e
                .search(&reader, "team-b", SearchRequest::text("plan", 5))
                .await
                .unwrap_err();
            assert_eq!(denied.code(), "forbidden", "{backend}");
            // A record in a namespace the caller cannot see does not exist for it.
            assert_eq!(
                e.get(&reader, &theirs.id).await.unwrap_err().code(),
                "not_found"
            );
            assert_eq!(
                e.delete(&reader, &theirs.id).await.unwrap_err().code(),
                "not_found"
            );
            assert!(e.get(&full, &theirs.id).await.is_ok(), "{backend}");
            let names: Vec<String> = e.namespaces(&reader).into_iter().map(|n| n.name).collect();
            assert_eq!(names, ["team-a"], "{backend}");
            assert_eq!(e.check(&reader).await.unwrap_err().code(), "forbidden");
            assert_eq!(
                e.delete_namespace(&reader, "team-a")
                    .await
                    .unwrap_err()
                    .code(),
                "forbidden"
            );
            assert_eq!(
                e.namespaces(&full).len(),
                2,
                "nothing was deleted ({backend})"
            );
        });
    });
}

#[test]
fn namespaces_exist_empty_with_parent_and_metadata_and_survive_restart() {
    each_backend(|backend, open, dir| {
        let rt = crate::common::rt();
        let full = Access::full();
        rt.block_on(async {
            let e = open(dir);
            let meta = serde_json::json!({"team": "support"})
                .as_object()
                .unwrap()
                .clone();
            e.create_namespace(&full, "support-l1", None, Default::default())
                .await
                .unwrap();
            let made = e
                .create_namespace(&full, "support-l2", Some("support-l1"), meta.clone())
                .await
                .unwrap();
            assert_eq!(
                (made.messages, made.parent.as_deref()),
                (0, Some("support-l1"))
            );
            // Creating it again changes nothing.
            let again = e
                .create_namespace(&full, "support-l2", None, Default::default())
                .await
                .unwrap();
            assert_eq!(again.parent.as_deref(), Some("support-l1"), "{backend}");
            assert_eq!(again.last_seq, 1, "{backend}");
            assert_eq!(e.namespaces(&full).len(), 2, "{backend}");
        });
        rt.block_on(async {
            let e = open(dir);
            let listed = e.namespaces(&full);
            assert_eq!(listed.len(), 2, "{backend}");
            assert_eq!(listed[1].metadata["team"], "support", "{backend}");
            assert!(listed[1].created_at.is_some(), "{backend}");
            assert_eq!(e.delete_namespace(&full, "support-l2").await.unwrap(), 0);
            let names: Vec<String> = e.namespaces(&full).into_iter().map(|n| n.name).collect();
            assert_eq!(names, ["support-l1"], "{backend}");
            // Its log stays, and a namespace of the same name continues the sequence.
            e.add(&full, "support-l2", said("back")).await.unwrap();
            let log = e.changes(&full, "support-l2", 0, 10).await.unwrap();
            let kinds: Vec<ChangeKind> = log.iter().map(|c| c.kind).collect();
            assert_eq!(
                kinds,
                [
                    ChangeKind::NamespaceCreated,
                    ChangeKind::NamespaceDeleted,
                    ChangeKind::NamespaceCreated,
                    ChangeKind::MessageAdded
                ],
                "{backend}"
            );
        });
    });
}

/// Shared context on every backend: versions from 1, a stale compare-and-set
/// changes nothing, a merge patch, key-ordered listing, a tombstone, history,
/// all of it after a restart too; an API key and the audit chain over all those
/// writes verify; deleting the namespace takes its context with it, and the
/// store's own check is clean.
#[test]
fn context_compare_and_set_history_keys_audit_and_deletion() {
    use memoryd::{ContextWrite, Error, NewKey};
    use serde_json::json;
    each_backend(|backend, open, dir| {
        let rt = crate::common::rt();
        rt.block_on(async {
            let e = open(dir);
            let me = Access::full().with_agent("writer");
            let cas = |v: u64| ContextWrite {
                expected_version: Some(v),
                ..ContextWrite::default()
            };
            let v1 = e
                .context_set(&me, "team", "plan", json!({"step": 1}), cas(0))
                .await
                .unwrap();
            assert_eq!(v1.version, 1, "{backend}");
            let stale = e
                .context_set(&me, "team", "plan", json!({"step": 9}), cas(0))
                .await;
            assert!(
                matches!(stale, Err(Error::PreconditionFailed { .. })),
                "{backend}: {stale:?}"
            );
            let v2 = e
                .context_patch(&me, "team", "plan", json!({"owner": "ana"}), cas(1))
                .await
                .unwrap();
            assert_eq!(v2.value, json!({"step": 1, "owner": "ana"}), "{backend}");
            e.context_set(&me, "team", "notes", json!("n"), ContextWrite::default())
                .await
                .unwrap();
            e.context_set(&me, "team", "b.one", json!(1), ContextWrite::default())
                .await
                .unwrap();
            let keys = |page: memoryd::ContextPage| -> Vec<String> {
                page.entries.into_iter().map(|c| c.key).collect()
            };
            let all = e
                .context_list(&Access::full(), "team", "", None, 10)
                .await
                .unwrap();
            assert_eq!(keys(all), ["b.one", "notes", "plan"], "{backend}");
            let after = e
                .context_list(&Access::full(), "team", "", Some("b.one"), 1)
                .await
                .unwrap();
            assert_eq!(keys(after), ["notes"], "{backend}: page after a key");
            e.context_delete(&me, "team", "notes", Some(1))
                .await
                .unwrap();
            let gone = e.context_get(&Access::full(), "team", "notes").await;
            assert!(matches!(gone, Err(Error::NotFound { .. })), "{backend}");
            drop(e);

            let e = open(dir);
            let plan = e
                .context_get(&Access::full(), "team", "plan")
                .await
                .unwrap();
            assert_eq!(
                (plan.version, plan.value),
                (2, json!({"step": 1, "owner": "ana"})),
                "{backend}"
            );
            let history = e
                .context_history(&Access::full(), "team", "plan", 0, 10)
                .await
                .unwrap();
            let versions: Vec<u64> = history.iter().map(|v| v.version).collect();
            assert_eq!(versions, [1, 2], "{backend}");
            e.create_key(
                &Access::full(),
                NewKey {
                    name: "reader".into(),
                    namespaces: vec!["team".into()],
                    scopes: vec![Scope::Read],
                    agent_id: None,
                    expires_at: None,
                    redact: Default::default(),
                },
            )
            .await
            .unwrap();
            let audit = e.audit_verify(&Access::full()).await.unwrap();
            assert!(audit.first_bad.is_none(), "{backend}: {audit:?}");
            // namespace created, 5 context writes, the key.
            assert!(audit.entries >= 7, "{backend}: {audit:?}");
            e.delete_namespace(&Access::full(), "team").await.unwrap();
            let gone = e.context_get(&Access::full(), "team", "plan").await;
            assert!(matches!(gone, Err(Error::NotFound { .. })), "{backend}");
            let check = e.check(&Access::full()).await.unwrap();
            assert!(check.is_ok(), "{backend}: {:?}", check.problems);
        });
    });
}

/// A NUL character in metadata (a message's or a namespace's) is refused with a
/// 400-kind error on every backend, before anything is written: PostgreSQL's
/// `jsonb` cannot hold it, and a batch must not fail with a storage error.
#[test]
fn nul_in_metadata_is_refused_before_any_backend_sees_it() {
    use memoryd::Error;
    use serde_json::json;
    each_backend(|backend, open, dir| {
        let rt = crate::common::rt();
        rt.block_on(async {
            let e = open(dir);
            let mut bad = said("fine text");
            bad.metadata
                .insert("note".into(), json!({"k": ["a\u{0}b"]}));
            let res = e
                .add_batch(&Access::full(), "team", vec![said("ok"), bad])
                .await;
            assert!(
                matches!(res, Err(Error::InvalidInput { .. })),
                "{backend}: {res:?}"
            );
            let mut meta = serde_json::Map::new();
            meta.insert("a\u{0}".into(), json!(1));
            let res = e
                .create_namespace(&Access::full(), "other", None, meta)
                .await;
            assert!(
                matches!(res, Err(Error::InvalidInput { .. })),
                "{backend}: {res:?}"
            );
            let listed = e.namespaces(&Access::full());
            assert!(
                listed.is_empty(),
                "{backend}: nothing was written: {listed:?}"
            );
        });
    });
}

/// Change-log retention on every backend, through the store itself: the newest
/// `max_entries` stay, entries older than `max_age` go, the newest entry never.
#[test]
fn change_log_retention_keeps_the_newest_entries() {
    use memoryd::{RecordStore, Retention};
    type StoreOf = Box<dyn Fn(&std::path::Path) -> Arc<dyn RecordStore>>;
    let stores: Vec<(&str, StoreOf)> = vec![
        ("sled", Box::new(|d| Arc::new(SledStore::open(d).unwrap()))),
        (
            "postgres",
            Box::new(|d| Arc::new(PgStore::connect(&crate::pg::database(d)).unwrap())),
        ),
    ];
    for (backend, store_of) in stores {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(dir.path());
        let mut config = EngineConfig::with_data_dir(dir.path());
        config.summarize.enabled = false;
        let e = Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), store.clone())
            .unwrap();
        let rt = crate::common::rt();
        rt.block_on(async {
            for t in ["a", "b", "c", "d", "e"] {
                e.add_batch(&Access::full(), "team", vec![said(t)])
                    .await
                    .unwrap();
            }
            let seqs =
                |log: Vec<memoryd::Change>| -> Vec<u64> { log.iter().map(|c| c.seq).collect() };
            let long = std::time::Duration::from_secs(3600);
            let now = chrono::Utc::now();
            let removed = store
                .prune_changes(
                    Retention {
                        max_age: long,
                        max_entries: 2,
                    },
                    now,
                )
                .await
                .unwrap();
            assert_eq!(removed, 4, "{backend}");
            assert_eq!(
                seqs(store.changes("team", 0, 100).await.unwrap()),
                [5, 6],
                "{backend}"
            );
            let later = now + chrono::Duration::seconds(10);
            let removed = store
                .prune_changes(
                    Retention {
                        max_age: std::time::Duration::ZERO,
                        max_entries: 100,
                    },
                    later,
                )
                .await
                .unwrap();
            assert_eq!(
                removed, 1,
                "{backend}: all but the newest are older than the cutoff"
            );
            assert_eq!(
                seqs(store.changes("team", 0, 100).await.unwrap()),
                [6],
                "{backend}"
            );
        });
    }
}

/// Dense search finds what an exact scan finds, on every backend, once the
/// namespace is past the graph threshold (sled: the in-memory hnsw_rs graph;
/// PostgreSQL: the namespace's own pgvector HNSW index, queried with iterative
/// scans): unfiltered and under a 25%-selective filter (the graph path,
/// over-fetching) recall@10 against brute force stays ≥ 0.9, and a 2%-selective
/// filter (scanned exactly) returns the brute-force top 10 of its rows (ranks
/// compared by score within 1e-3: sled scores every row from its f16 vector).
/// On PostgreSQL the index's own scan count shows the searches used it.
#[test]
fn dense_search_past_the_graph_threshold_matches_brute_force_with_filters() {
    use rand::{Rng, SeedableRng};
    const N: usize = 1_000;
    const DIM: usize = 16;
    let agent = |i: usize| {
        if i.is_multiple_of(50) {
            "rare"
        } else if i % 4 == 1 {
            "common"
        } else {
            "plain"
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut unit = move || {
        let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let vectors: Vec<Vec<f32>> = (0..N).map(|_| unit()).collect();
    let queries: Vec<Vec<f32>> = (0..20).map(|_| unit()).collect();
    let cosine =
        |q: &[f32], i: usize| -> f32 { vectors[i].iter().zip(q).map(|(a, b)| a * b).sum() };
    let brute = |q: &[f32], only: Option<&str>| -> Vec<usize> {
        let mut scored: Vec<(f32, usize)> = (0..N)
            .filter(|&i| only.is_none_or(|a| agent(i) == a))
            .map(|i| (vectors[i].iter().zip(q).map(|(a, b)| a * b).sum(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.iter().take(10).map(|&(_, i)| i).collect()
    };
    each_backend(|backend, _, dir| {
        let mut config = EngineConfig::with_data_dir(dir);
        config.summarize.enabled = false;
        config.index.exact_threshold = 200;
        let url = (backend == "postgres").then(|| crate::pg::database(dir));
        let store: Arc<dyn memoryd::RecordStore> = match &url {
            Some(url) => Arc::new(PgStore::connect(url).unwrap()),
            None => Arc::new(SledStore::open(dir).unwrap()),
        };
        crate::common::rt().block_on(async {
            let e =
                Engine::open_with_store(config, Arc::new(HashEmbedder::new(DIM)), store).unwrap();
            for start in (0..N).step_by(250) {
                let msgs = (start..start + 250)
                    .map(|i| {
                        let mut m = said(&format!("m{i}"));
                        m.agent_id = Some(agent(i).to_owned());
                        m
                    })
                    .collect();
                let flat = vectors[start..start + 250].concat();
                e.add_batch_with_embeddings(&Access::full(), "big", msgs, flat)
                    .await
                    .unwrap();
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while e.stats().graph_namespaces != 1 || e.stats().graph_tail_rows != 0 {
                assert!(std::time::Instant::now() < deadline, "{backend}: no graph");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let search = |q: Vec<f32>, only: Option<&str>| {
                let mut request = SearchRequest::vector(q, 10);
                if let Some(a) = only {
                    request = request.with_filter(memoryd::Filter {
                        agent_id: Some(a.to_owned()),
                        ..Default::default()
                    });
                }
                let e = e.clone();
                async move {
                    let hits = e.search(&Access::full(), "big", request).await.unwrap();
                    hits.hits
                        .iter()
                        .map(|h| {
                            let m = h.message.as_ref().unwrap();
                            m.content[1..].parse::<usize>().unwrap()
                        })
                        .collect::<Vec<usize>>()
                }
            };
            let (mut found, mut found_common) = (0, 0);
            for q in &queries {
                let all = search(q.clone(), None).await;
                assert_eq!(all.len(), 10, "{backend}");
                found += brute(q, None).iter().filter(|i| all.contains(i)).count();
                let common = search(q.clone(), Some("common")).await;
                assert_eq!(common.len(), 10, "{backend}: {common:?}");
                assert!(common.iter().all(|&i| agent(i) == "common"), "{backend}");
                found_common += brute(q, Some("common"))
                    .iter()
                    .filter(|i| common.contains(i))
                    .count();
                // Exact over its rows, to the f16 precision of the index's vectors
                // (sled): the j-th hit scores as the brute-force j-th, within 1e-3.
                let rare = search(q.clone(), Some("rare")).await;
                let want = brute(q, Some("rare"));
                assert_eq!(rare.len(), want.len(), "{backend}");
                for (got, want) in rare.iter().zip(&want) {
                    let (g, w) = (cosine(q, *got), cosine(q, *want));
                    assert!((g - w).abs() < 1e-3, "{backend}: {rare:?} vs {want:?}");
                }
            }
            let recall = found as f64 / 200.0;
            let recall_common = found_common as f64 / 200.0;
            assert!(recall >= 0.9, "{backend}: recall@10 {recall}");
            assert!(
                recall_common >= 0.9,
                "{backend}: filtered recall@10 {recall_common}"
            );
            if let Some(url) = &url {
                // The searches went through the namespace's HNSW index, not an
                // exact plan (PostgreSQL's statistics arrive within a second or so).
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                loop {
                    let scans: i64 = sqlx::query_scalar(
                        "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
                         WHERE indexrelname LIKE 'memoryd_hnsw_%'",
                    )
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    if scans >= 20 {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the HNSW index served {scans} scans"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        });
    });
}
