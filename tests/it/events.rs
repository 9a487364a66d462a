//! Events through the library API: every committed change once and in order
//! for a subscriber that reads the log while a writer runs, filters, consumer
//! cursors, and the `reset` a consumer gets when retention dropped what it asked
//! for. The hash embedder stands in for the model.

use std::sync::Arc;
use std::time::Duration;

use memoryd::embed::HashEmbedder;
use memoryd::{
    Access, ChangeKind, ContextWrite, Engine, EngineConfig, EventFilter, NewMessage, RecordStore,
    Retention, Role, SledStore,
};
use serde_json::json;

use crate::common::rt;

fn open(dir: &std::path::Path) -> (Engine, Arc<SledStore>) {
    let mut config = EngineConfig::with_data_dir(dir);
    config.summarize.enabled = false;
    let store = Arc::new(SledStore::open(dir).unwrap());
    let engine =
        Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), store.clone()).unwrap();
    (engine, store)
}

#[test]
fn a_subscriber_sees_every_event_of_a_concurrent_writer_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (e, _) = open(dir.path());
        let me = Access::full().with_agent("writer");
        let writer = {
            let e = e.clone();
            let me = me.clone();
            tokio::spawn(async move {
                for i in 0..60 {
                    e.add(
                        &me,
                        "live",
                        NewMessage::new(Role::User, format!("turn {i}")),
                    )
                    .await
                    .unwrap();
                    if i % 3 == 0 {
                        e.context_set(&me, "live", "progress", json!(i), ContextWrite::default())
                            .await
                            .unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let all = EventFilter::default();
        let mut seen = Vec::new();
        let mut cursor = 0;
        let mut counter = e.commit_counter();
        loop {
            let page = e.events(&me, "live", cursor, 7, &all).await.unwrap();
            assert!(page.reset.is_none());
            seen.extend(
                page.events
                    .iter()
                    .map(|ev| (ev.seq, ev.kind, ev.data.clone())),
            );
            if page.next == cursor {
                if writer.is_finished() {
                    // One more read after the writer is done: nothing can follow.
                    let last = e.events(&me, "live", cursor, 7, &all).await.unwrap();
                    assert!(last.events.is_empty());
                    break;
                }
                counter = e.wait_for_commit(counter, Duration::from_millis(200)).await;
            }
            cursor = page.next;
        }
        writer.await.unwrap();
        // 1 namespace.created + 60 messages + 20 context versions, seq 1..=81.
        let seqs: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(seqs, (1..=81).collect::<Vec<u64>>());
        assert_eq!(seen[0].1, ChangeKind::NamespaceCreated);
        let messages: Vec<&serde_json::Value> = seen
            .iter()
            .filter(|s| s.1 == ChangeKind::MessageAdded)
            .map(|s| &s.2)
            .collect();
        assert_eq!(messages.len(), 60);
        assert_eq!(messages[59]["content"], "turn 59");
        // Each context event carries the version it wrote, not the latest one.
        let versions: Vec<(u64, i64)> = seen
            .iter()
            .filter(|s| s.1 == ChangeKind::ContextSet)
            .map(|s| {
                (
                    s.2["version"].as_u64().unwrap(),
                    s.2["value"].as_i64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(u64, i64)> = (0..20).map(|v| (v as u64 + 1, v * 3)).collect();
        assert_eq!(versions, expected);
    });
}

#[test]
fn filters_pick_types_and_context_key_prefixes_and_still_advance() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (e, _) = open(dir.path());
        let me = Access::full();
        e.add(&me, "f", NewMessage::new(Role::User, "hello"))
            .await
            .unwrap();
        for key in ["research:a", "draft", "research:b"] {
            e.context_set(&me, "f", key, json!(1), ContextWrite::default())
                .await
                .unwrap();
        }
        e.context_delete(&me, "f", "research:a", None)
            .await
            .unwrap();
        let research = EventFilter {
            key_prefix: Some("research:".into()),
            ..EventFilter::default()
        };
        let page = e.events(&me, "f", 0, 100, &research).await.unwrap();
        let got: Vec<(ChangeKind, &str)> = page
            .events
            .iter()
            .map(|ev| (ev.kind, ev.data["key"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (ChangeKind::ContextSet, "research:a"),
                (ChangeKind::ContextSet, "research:b"),
                (ChangeKind::ContextDeleted, "research:a")
            ]
        );
        assert_eq!(page.next, 6, "the filtered-out changes are read past");
        let messages = EventFilter {
            types: vec![ChangeKind::MessageAdded],
            ..EventFilter::default()
        };
        let page = e.events(&me, "f", 0, 100, &messages).await.unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].data["content"], "hello");
        assert_eq!(page.events[0].id, "f:2");
    });
}

#[test]
fn a_consumer_resumes_after_what_it_acknowledged_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let me = Access::full();
    rt().block_on(async {
        let (e, _) = open(dir.path());
        for i in 0..5 {
            e.add(&me, "c", NewMessage::new(Role::User, format!("m{i}")))
                .await
                .unwrap();
        }
        assert_eq!(e.consumer_acked(&me, "c", "indexer").await.unwrap(), 0);
        e.consumer_ack(&me, "c", "indexer", 4).await.unwrap();
        let err = e.consumer_ack(&me, "c", "indexer", 99).await.unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        let err = e.consumer_ack(&me, "c", "bad/name", 1).await.unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        e.flush().await.unwrap();
    });
    rt().block_on(async {
        let (e, _) = open(dir.path());
        let acked = e.consumer_acked(&me, "c", "indexer").await.unwrap();
        assert_eq!(acked, 4);
        let page = e
            .events(&me, "c", acked, 100, &EventFilter::default())
            .await
            .unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|ev| ev.seq).collect();
        assert_eq!(seqs, [5, 6], "exactly what was not acknowledged");
    });
}

#[test]
fn asking_for_changes_older_than_the_retention_says_reset() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (e, store) = open(dir.path());
        let me = Access::full();
        for i in 0..10 {
            e.add(&me, "r", NewMessage::new(Role::User, format!("m{i}")))
                .await
                .unwrap();
        }
        let retention = Retention {
            max_entries: 4,
            ..Retention::default()
        };
        store
            .prune_changes(retention, chrono::Utc::now())
            .await
            .unwrap();
        let page = e
            .events(&me, "r", 2, 100, &EventFilter::default())
            .await
            .unwrap();
        assert_eq!(page.reset, Some(8));
        assert_eq!(page.events.first().map(|ev| ev.seq), Some(8));
        let page = e
            .events(&me, "r", 8, 100, &EventFilter::default())
            .await
            .unwrap();
        assert_eq!(page.reset, None);
    });
}

#[test]
fn descendants_follow_the_tree_each_namespace_in_order_none_skipped() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (e, _) = open(dir.path());
        let me = Access::full();
        e.create_namespace(&me, "team", None, Default::default())
            .await
            .unwrap();
        e.create_namespace(&me, "team.a", Some("team"), Default::default())
            .await
            .unwrap();
        e.create_namespace(&me, "other", None, Default::default())
            .await
            .unwrap();
        for i in 0..5 {
            e.add(&me, "team", NewMessage::new(Role::User, format!("t{i}")))
                .await
                .unwrap();
            e.add(&me, "team.a", NewMessage::new(Role::User, format!("a{i}")))
                .await
                .unwrap();
            e.add(&me, "other", NewMessage::new(Role::User, format!("o{i}")))
                .await
                .unwrap();
        }
        let all = EventFilter::default();
        // Small pages: the cursor must carry every namespace's position.
        let mut cursor = memoryd::EventCursor::default();
        let mut seen: Vec<(String, u64)> = Vec::new();
        loop {
            let page = e.events_below(&me, "team", &cursor, 3, &all).await.unwrap();
            if !page.advanced {
                break;
            }
            seen.extend(page.events.iter().map(|ev| (ev.namespace.clone(), ev.seq)));
            cursor = page.cursor;
        }
        let of =
            |ns: &str| -> Vec<u64> { seen.iter().filter(|s| s.0 == ns).map(|s| s.1).collect() };
        assert_eq!(of("team"), (1..=6).collect::<Vec<u64>>());
        assert_eq!(of("team.a"), (1..=6).collect::<Vec<u64>>());
        assert!(of("other").is_empty(), "not below team");
        assert_eq!(cursor.to_string(), "team:6,team.a:6");
        assert_eq!(
            memoryd::EventCursor::parse(&cursor.to_string()).unwrap(),
            cursor
        );
        // A namespace created below later joins from its first event.
        e.create_namespace(&me, "team.b", Some("team.a"), Default::default())
            .await
            .unwrap();
        e.add(&me, "team.b", NewMessage::new(Role::User, "b0"))
            .await
            .unwrap();
        let page = e
            .events_below(&me, "team", &cursor, 10, &all)
            .await
            .unwrap();
        let got: Vec<(String, u64)> = page
            .events
            .iter()
            .map(|ev| (ev.namespace.clone(), ev.seq))
            .collect();
        assert_eq!(got, [("team.b".to_owned(), 1), ("team.b".to_owned(), 2)]);
        assert!(memoryd::EventCursor::parse("team:x").is_err());
        assert!(memoryd::EventCursor::parse("a b:1").is_err());
    });
}
