//! Shared context entries through the library API: versions, compare-and-set,
//! merge patches, tombstones, history, expiry, listing, and the change log. The
//! hash embedder stands in for the model (context entries are not embedded yet).

use std::sync::Arc;
use std::time::Duration;

use memoryd::embed::HashEmbedder;
use memoryd::{Access, ChangeKind, ContextOp, ContextWrite, Engine, EngineConfig, SledStore};
use serde_json::json;

use crate::common::rt;

fn open(dir: &std::path::Path, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut config = EngineConfig::with_data_dir(dir);
    config.summarize.enabled = false;
    config.summarize.tick = Duration::from_millis(20);
    tweak(&mut config);
    let store = SledStore::open(dir).unwrap();
    Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), Arc::new(store)).unwrap()
}

fn cas(v: u64) -> ContextWrite {
    ContextWrite {
        expected_version: Some(v),
        ..ContextWrite::default()
    }
}

#[test]
fn versions_compare_and_set_patch_delete_and_history() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path(), |_| {});
        let me = Access::full().with_agent("researcher");
        let ns = "task-7";
        let key = "research:findings";
        let v1 = e
            .context_set(&me, ns, key, json!({"sources": 3, "draft": "a"}), cas(0))
            .await
            .unwrap();
        assert_eq!(
            (v1.version, v1.agent_id.as_deref()),
            (1, Some("researcher"))
        );
        // `0` means "must not exist": a second create loses and writes nothing.
        let err = e
            .context_set(&me, ns, key, json!("other"), cas(0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "precondition_failed");
        match err {
            memoryd::Error::PreconditionFailed {
                current_version,
                current,
                ..
            } => {
                assert_eq!(current_version, Some(1));
                assert_eq!(current.unwrap()["value"]["sources"], 3);
            }
            other => panic!("{other}"),
        }
        // Last write wins without a precondition, still versioned.
        let v2 = e
            .context_set(
                &me,
                ns,
                key,
                json!({"sources": 4, "draft": "a"}),
                ContextWrite::default(),
            )
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        // A merge patch: objects merge, null removes.
        let v3 = e
            .context_patch(
                &me,
                ns,
                key,
                json!({"draft": null, "status": "done"}),
                cas(2),
            )
            .await
            .unwrap();
        assert_eq!(v3.value, json!({"sources": 4, "status": "done"}));
        assert_eq!(e.context_get(&me, ns, key).await.unwrap(), v3);
        // Stale CAS on delete fails; the right one writes a tombstone.
        assert_eq!(
            e.context_delete(&me, ns, key, Some(2))
                .await
                .unwrap_err()
                .code(),
            "precondition_failed"
        );
        let gone = e.context_delete(&me, ns, key, Some(3)).await.unwrap();
        assert!(gone.deleted);
        assert_eq!(gone.version, 4);
        assert_eq!(
            e.context_get(&me, ns, key).await.unwrap_err().code(),
            "not_found"
        );
        assert_eq!(
            e.context_delete(&me, ns, key, None)
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        // CAS against a deleted key: it does not exist, so only 0 matches.
        assert_eq!(
            e.context_set(&me, ns, key, json!(1), cas(4))
                .await
                .unwrap_err()
                .code(),
            "precondition_failed"
        );
        let again = e
            .context_set(&me, ns, key, json!("back"), cas(0))
            .await
            .unwrap();
        assert_eq!(again.version, 5);
        let history = e.context_history(&me, ns, key, 0, 100).await.unwrap();
        let ops: Vec<(u64, ContextOp)> = history.iter().map(|v| (v.version, v.op)).collect();
        assert_eq!(
            ops,
            [
                (1, ContextOp::Set),
                (2, ContextOp::Set),
                (3, ContextOp::Patch),
                (4, ContextOp::Delete),
                (5, ContextOp::Set)
            ]
        );
        assert_eq!(history[0].value["draft"], "a");
        assert_eq!(
            e.context_history(&me, ns, key, 3, 1).await.unwrap()[0].version,
            4
        );
        // Every version is one change-log entry naming the key.
        let log = e.changes(&me, ns, 0, 100).await.unwrap();
        let kinds: Vec<ChangeKind> = log.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ChangeKind::NamespaceCreated,
                ChangeKind::ContextSet,
                ChangeKind::ContextSet,
                ChangeKind::ContextSet,
                ChangeKind::ContextDeleted,
                ChangeKind::ContextSet
            ]
        );
        // `[key, version]`: versions 1 to 5 in commit order.
        let ids: Vec<Vec<String>> = log[1..].iter().map(|c| c.ids.clone()).collect();
        let expected: Vec<Vec<String>> = (1..=5)
            .map(|v| vec![key.to_owned(), v.to_string()])
            .collect();
        assert_eq!(ids, expected);
        assert_eq!(log[1].actor.as_deref(), Some("researcher"));
    });
    // Durable: the same state after a restart.
    rt().block_on(async {
        let e = open(dir.path(), |_| {});
        let got = e
            .context_get(&Access::full(), "task-7", "research:findings")
            .await
            .unwrap();
        assert_eq!((got.version, got.value), (5, json!("back")));
    });
}

/// 8 agents each add 1 to a shared counter 50 times (read, then write with
/// If-Match, retrying on a lost race): exactly 400, in 400 versions.
#[test]
fn concurrent_compare_and_set_increments_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path(), |_| {});
        let me = Access::full();
        e.context_set(&me, "team", "counter", json!(0), cas(0))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for agent in 0..8 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let me = Access::full().with_agent(format!("agent-{agent}"));
                let mut retries = 0;
                for _ in 0..50 {
                    loop {
                        let cur = e.context_get(&me, "team", "counter").await.unwrap();
                        let next = json!(cur.value.as_u64().unwrap() + 1);
                        match e
                            .context_set(&me, "team", "counter", next, cas(cur.version))
                            .await
                        {
                            Ok(_) => break,
                            Err(err) if err.code() == "precondition_failed" => retries += 1,
                            Err(err) => panic!("{err}"),
                        }
                    }
                }
                retries
            }));
        }
        let mut retries = 0;
        for t in tasks {
            retries += t.await.unwrap();
        }
        let end = e.context_get(&me, "team", "counter").await.unwrap();
        assert_eq!(end.value, json!(400));
        assert_eq!(end.version, 401);
        let history = e
            .context_history(&me, "team", "counter", 0, 1000)
            .await
            .unwrap();
        assert_eq!(history.len(), 401);
        let values: Vec<u64> = history.iter().map(|v| v.value.as_u64().unwrap()).collect();
        assert_eq!(
            values,
            (0..=400).collect::<Vec<u64>>(),
            "every increment kept, in order"
        );
        eprintln!("400 increments with {retries} lost races retried");
    });
}

#[test]
fn expiry_reads_absent_at_once_and_the_job_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path(), |_| {});
        let me = Access::full();
        let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
        let opts = ContextWrite {
            expires_at: Some(soon),
            ..ContextWrite::default()
        };
        e.context_set(&me, "n", "lease", json!("held"), opts)
            .await
            .unwrap();
        e.context_set(&me, "n", "keep", json!("stays"), ContextWrite::default())
            .await
            .unwrap();
        assert!(e.context_get(&me, "n", "lease").await.is_ok());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            e.context_get(&me, "n", "lease").await.unwrap_err().code(),
            "not_found"
        );
        let listed: Vec<String> = e
            .context_list(&me, "n", "", None, 10)
            .await
            .unwrap()
            .entries
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(listed, ["keep"]);
        // An expired key can be created again with If-Match 0.
        // The background job writes the tombstone (agent none) within a few ticks.
        let mut swept = false;
        for _ in 0..100 {
            let h = e.context_history(&me, "n", "lease", 0, 10).await.unwrap();
            if h.len() == 2 {
                assert_eq!((h[1].op, h[1].agent_id.clone()), (ContextOp::Delete, None));
                swept = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(swept, "the expiry job deleted the entry");
        let v = e
            .context_set(&me, "n", "lease", json!("again"), cas(0))
            .await
            .unwrap();
        assert_eq!(v.version, 3);
        assert_eq!(
            e.context_set(
                &me,
                "n",
                "bad",
                json!(1),
                ContextWrite {
                    ttl_s: Some(0),
                    ..ContextWrite::default()
                }
            )
            .await
            .unwrap_err()
            .code(),
            "invalid_value"
        );
    });
}

#[test]
fn listing_pages_by_key_and_prefix_and_limits_hold() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path(), |c| c.limits.max_context_value_bytes = 100);
        let me = Access::full();
        for k in ["research:a", "research:b", "research:c", "draft:x"] {
            e.context_set(&me, "n", k, json!(k), ContextWrite::default())
                .await
                .unwrap();
        }
        e.context_delete(&me, "n", "research:b", None)
            .await
            .unwrap();
        let p1 = e
            .context_list(&me, "n", "research:", None, 1)
            .await
            .unwrap();
        assert_eq!(p1.entries[0].key, "research:a");
        let p2 = e
            .context_list(&me, "n", "research:", p1.next.as_deref(), 1)
            .await
            .unwrap();
        assert_eq!(p2.entries[0].key, "research:c", "the tombstone is skipped");
        assert_eq!(p2.next, None);
        // Bad input: nothing stored.
        for (key, value, code) in [
            ("a/b", json!(1), "invalid_value"),
            ("", json!(1), "invalid_value"),
            ("big", json!("x".repeat(200)), "too_large"),
            ("nul", json!({"a\u{0}": 1}), "invalid_value"),
        ] {
            let err = e
                .context_set(&me, "n", key, value, ContextWrite::default())
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{key}");
        }
        // A patch that grows the value past the limit is refused.
        e.context_set(
            &me,
            "n",
            "grow",
            json!({"a": "x".repeat(60)}),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        let err = e
            .context_patch(
                &me,
                "n",
                "grow",
                json!({"b": "y".repeat(60)}),
                ContextWrite::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "too_large");
        assert_eq!(e.context_get(&me, "n", "grow").await.unwrap().version, 1);
        // Deleting the namespace deletes its context.
        e.delete_namespace(&me, "n").await.unwrap();
        assert_eq!(
            e.context_get(&me, "n", "research:a")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        assert!(
            e.context_history(&me, "n", "research:a", 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

/// Escalation L1 → L2 → L3: each level inherits the context above it like a
/// `ChainMap`, shadows without modifying, and a tombstone hides the parent's
/// entry. Chains stay acyclic and shallow; deleting a parent needs `recursive`.
#[test]
fn hierarchy_inherits_context_like_a_chain_map() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path(), |_| {});
        let me = Access::full();
        let none = serde_json::Map::new();
        e.put_namespace(&me, "l1", None, none.clone())
            .await
            .unwrap();
        e.put_namespace(&me, "l2", Some("l1"), none.clone())
            .await
            .unwrap();
        e.put_namespace(&me, "l3", Some("l2"), none.clone())
            .await
            .unwrap();
        e.context_set(
            &me,
            "l1",
            "customer",
            json!("ACME"),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        e.context_set(&me, "l1", "priority", json!("low"), ContextWrite::default())
            .await
            .unwrap();
        e.context_set(
            &me,
            "l2",
            "priority",
            json!("high"),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        let got = e.context_lookup(&me, "l3", "customer").await.unwrap();
        assert_eq!((got.value, got.namespace.as_str()), (json!("ACME"), "l1"));
        let got = e.context_lookup(&me, "l3", "priority").await.unwrap();
        assert_eq!((got.value, got.namespace.as_str()), (json!("high"), "l2"));
        // The child's write shadowed, never modified, the parent's entry.
        assert_eq!(
            e.context_get(&me, "l1", "priority").await.unwrap().value,
            json!("low")
        );
        // Without inheritance only the namespace itself is read.
        assert_eq!(
            e.context_get(&me, "l3", "customer")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        // A tombstone in the child hides the parent's entry.
        e.context_delete(&me, "l2", "priority", None).await.unwrap();
        assert_eq!(
            e.context_lookup(&me, "l3", "priority")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        // An access that covers l3 only inherits nothing it cannot read.
        let narrow = Access::new(
            vec![memoryd::NamespacePattern::parse("l3").unwrap()],
            &[memoryd::Scope::Read],
        );
        assert_eq!(
            e.context_lookup(&narrow, "l3", "customer")
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        // Cycles and unknown parents are refused; nothing changes.
        assert_eq!(
            e.put_namespace(&me, "l1", Some("l3"), none.clone())
                .await
                .unwrap_err()
                .code(),
            "conflict"
        );
        assert_eq!(
            e.put_namespace(&me, "l1", Some("l1"), none.clone())
                .await
                .unwrap_err()
                .code(),
            "conflict"
        );
        assert_eq!(
            e.put_namespace(&me, "x", Some("nope"), none.clone())
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
        let detail = e.namespace(&me, "l2").await.unwrap();
        assert_eq!(
            (detail.info.parent.as_deref(), detail.children.clone()),
            (Some("l1"), vec!["l3".to_string()])
        );
        // At most 16 deep.
        let mut parent = "l3".to_string();
        for i in 4..=16 {
            let name = format!("l{i}");
            e.put_namespace(&me, &name, Some(&parent), none.clone())
                .await
                .unwrap();
            parent = name;
        }
        assert_eq!(
            e.put_namespace(&me, "l17", Some("l16"), none.clone())
                .await
                .unwrap_err()
                .code(),
            "conflict"
        );
        // Re-parenting is an update in the change log.
        e.put_namespace(&me, "l16", Some("l1"), none.clone())
            .await
            .unwrap();
        let log = e.changes(&me, "l16", 0, 10).await.unwrap();
        assert_eq!(log.last().unwrap().kind, ChangeKind::NamespaceUpdated);
        assert_eq!(
            e.delete_namespace(&me, "l1").await.unwrap_err().code(),
            "conflict"
        );
        e.delete_namespace_tree(&me, "l2", true).await.unwrap();
        let left: Vec<String> = e.namespaces(&me).into_iter().map(|n| n.name).collect();
        assert_eq!(left, ["l1", "l16"]);
    });
    // The hierarchy is durable.
    rt().block_on(async {
        let e = open(dir.path(), |_| {});
        let got = e
            .context_lookup(&Access::full(), "l16", "customer")
            .await
            .unwrap();
        assert_eq!(got.namespace, "l1");
    });
}
