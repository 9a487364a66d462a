//! The audit log: one hash-chained entry per change, written with it, with the
//! change's actor; verification finds the first edited or missing entry.

use std::sync::Arc;

use memoryd::embed::HashEmbedder;
use memoryd::{
    Access, AuditQuery, ChangeKind, ContextWrite, Engine, EngineConfig, NewMessage, NewProblem,
    Role, SledStore,
};
use serde_json::json;

use crate::common::rt;

fn open(dir: &std::path::Path) -> Engine {
    let mut config = EngineConfig::with_data_dir(dir);
    config.summarize.enabled = false;
    let store = SledStore::open(dir).unwrap();
    Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), Arc::new(store)).unwrap()
}

async fn write_some(e: &Engine) -> String {
    let a = Access::full().with_agent("alice");
    let b = Access::full().with_agent("bob");
    let m = e
        .add(&a, "n1", NewMessage::new(Role::User, "hello"))
        .await
        .unwrap();
    e.context_set(
        &b,
        "n2",
        "plan",
        json!({"step": 1}),
        ContextWrite::default(),
    )
    .await
    .unwrap();
    e.board_post(
        &Access::full().with_agent("carol"),
        "n2",
        NewProblem {
            title: "t".into(),
            body: String::new(),
            agent_id: None,
        },
    )
    .await
    .unwrap();
    e.delete(&a, &m.id).await.unwrap();
    m.id
}

#[test]
fn every_change_leaves_one_chained_entry_with_its_actor() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let id = write_some(&e).await;
        let me = Access::full();
        let all = e.audit(&me, &AuditQuery::default(), 1000).await.unwrap();
        let got: Vec<(ChangeKind, &str, Option<&str>)> = all
            .entries
            .iter()
            .map(|x| (x.action, x.namespace.as_str(), x.agent_id.as_deref()))
            .collect();
        use ChangeKind::*;
        assert_eq!(
            got,
            [
                (NamespaceCreated, "n1", Some("alice")),
                (MessageAdded, "n1", Some("alice")),
                (NamespaceCreated, "n2", Some("bob")),
                (ContextSet, "n2", Some("bob")),
                (BoardProblemCreated, "n2", Some("carol")),
                (MessageDeleted, "n1", Some("alice")),
            ]
        );
        // One audit entry per change-log entry, across namespaces.
        let changes = e.changes(&me, "n1", 0, 100).await.unwrap().len()
            + e.changes(&me, "n2", 0, 100).await.unwrap().len();
        assert_eq!(all.entries.len(), changes);
        assert_eq!(all.entries[1].target, [id]);
        assert!(all.entries[1].value_sha256.is_some());
        assert!(all.entries[3].value_sha256.is_some());
        assert!(
            all.entries[5].value_sha256.is_none(),
            "a delete writes no record"
        );
        let seqs: Vec<u64> = all.entries.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert_eq!(all.entries[0].prev_hash, memoryd::storage::AUDIT_GENESIS);
        assert_eq!(all.entries[1].prev_hash, all.entries[0].hash);
        let report = e.audit_verify(&me).await.unwrap();
        assert_eq!((report.entries, report.first_bad), (6, None));
        // Filters.
        let bob = AuditQuery {
            agent_id: Some("bob".into()),
            ..AuditQuery::default()
        };
        assert_eq!(e.audit(&me, &bob, 100).await.unwrap().entries.len(), 2);
        let ctx = AuditQuery {
            action: Some(ContextSet),
            ..AuditQuery::default()
        };
        assert_eq!(e.audit(&me, &ctx, 100).await.unwrap().entries[0].seq, 4);
        // Admin only.
        let reader = Access::new(
            vec![memoryd::NamespacePattern::parse("*").unwrap()],
            &[memoryd::Scope::Read],
        );
        let err = e
            .audit(&reader, &AuditQuery::default(), 10)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
    });
}

/// Edit one stored entry (as someone with the files could): verification
/// names that entry. Delete one: verification names the entry after the gap.
#[test]
fn tampering_with_the_stored_log_is_found_at_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        write_some(&e).await;
        e.flush().await.unwrap();
    });
    let tamper = |f: &dyn Fn(&sled::Tree)| {
        // sled releases its lock from a background thread after the engine drops.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match sled::open(dir.path().join("sled")) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        let audit = db.open_tree("audit").unwrap();
        f(&audit);
        db.flush().unwrap();
    };
    tamper(&|audit| {
        let key = 3u64.to_be_bytes();
        // A format byte, then the entry's JSON.
        let stored = audit.get(key).unwrap().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&stored[1..]).unwrap();
        v["agent_id"] = json!("mallory");
        let mut edited = vec![stored[0]];
        edited.extend(serde_json::to_vec(&v).unwrap());
        audit.insert(key, edited).unwrap();
    });
    rt().block_on(async {
        let e = open(dir.path());
        let report = e.audit_verify(&Access::full()).await.unwrap();
        let (seq, why) = report.first_bad.expect("the edit is found");
        assert_eq!(seq, 3, "{why}");
        assert!(why.contains("hash"), "{why}");
    });
    tamper(&|audit| {
        // Entry 2 deleted: the gap is reported at the entry after it (checked
        // before that entry's own, edited, hash).
        audit.remove(2u64.to_be_bytes()).unwrap();
    });
    rt().block_on(async {
        let e = open(dir.path());
        let report = e.audit_verify(&Access::full()).await.unwrap();
        let (seq, why) = report.first_bad.expect("the gap is found");
        assert_eq!(seq, 3, "{why}");
        assert!(why.contains("missing"), "{why}");
    });
}
