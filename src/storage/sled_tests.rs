//! Unit tests of the sled backend: the change log, retention, compare-and-set,
//! the consistency check.

use super::*;
use crate::core::access::NamespaceName;
use crate::core::types::Message;
use crate::storage::Mutation;

fn message(ns: &str) -> Message {
    let mut m = crate::storage::codec::tests::sample();
    m.namespace = ns.into();
    m
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn add(ns: &str, messages: &[&Message]) -> Commit {
    Commit {
        namespace: NamespaceName::parse(ns).unwrap(),
        mutation: Mutation::AddMessages(
            messages
                .iter()
                .map(|m| ((*m).clone(), vec![1.0, 0.0, 0.0]))
                .collect(),
        ),
        actor: Some("tester".into()),
        key_id: None,
    }
}

#[test]
fn check_finds_each_kind_of_inconsistency() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (a, b) = (message("ns"), message("ns"));
    let committed = rt().block_on(store.commit(&add("ns", &[&a, &b]))).unwrap();
    let (r1, _r2) = (committed.rows[0], committed.rows[1]);
    let sound = store.check_sync(3).unwrap();
    assert!(sound.problems.is_empty(), "{:?}", sound.problems);
    assert_eq!((sound.messages, sound.vectors, sound.ids), (2, 2, 2));
    assert_eq!(sound.namespaces["ns"].messages, 2);
    // Wrong dimension, a lost vector, an id entry gone, a corrupt record.
    assert_eq!(store.check_sync(4).unwrap().problems.len(), 2);
    store.vectors.remove(r1.to_be_bytes()).unwrap();
    store
        .ids
        .remove(parse_id(&b.id).unwrap().as_bytes())
        .unwrap();
    let bad_row = committed.rows[1] + 1;
    store
        .messages
        .insert(
            bad_row.to_be_bytes(),
            &[super::super::codec::FORMAT_VERSION, 0xff][..],
        )
        .unwrap();
    let broken = store.check_sync(3).unwrap();
    let joined = broken.problems.join("\n");
    assert!(
        joined.contains(&format!("messages seq {r1}: no vector")),
        "{joined}"
    );
    assert!(
        joined.contains(&format!("messages seq {}: no id entry", committed.rows[1])),
        "{joined}"
    );
    assert!(
        joined.contains(&format!("messages seq {bad_row}")),
        "{joined}"
    );
    assert_eq!(broken.problems.len(), 3, "{joined}");
}

/// The change log: one entry per record, gap-free from 1, in commit order,
/// written with the records; the sequence survives the namespace's deletion.
#[test]
fn commits_write_a_gap_free_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let rt = rt();
    let (a, b, c) = (message("n"), message("n"), message("n"));
    let first = rt.block_on(store.commit(&add("n", &[&a, &b]))).unwrap();
    let kinds: Vec<_> = first.changes.iter().map(|c| (c.seq, c.kind)).collect();
    assert_eq!(
        kinds,
        [
            (1, ChangeKind::NamespaceCreated),
            (2, ChangeKind::MessageAdded),
            (3, ChangeKind::MessageAdded)
        ]
    );
    assert_eq!(first.changes[1].ids, std::slice::from_ref(&a.id));
    assert_eq!(first.changes[1].actor.as_deref(), Some("tester"));
    let del = Commit {
        namespace: NamespaceName::parse("n").unwrap(),
        mutation: Mutation::DeleteMessages(vec![(first.rows[0], parse_id(&a.id).unwrap())]),
        actor: None,
        key_id: None,
    };
    rt.block_on(store.commit(&del)).unwrap();
    // Deleting it again fails and writes nothing.
    assert_eq!(
        rt.block_on(store.commit(&del)).unwrap_err().code(),
        "not_found"
    );
    rt.block_on(store.commit(&add("n", &[&c]))).unwrap();
    let log = rt.block_on(store.changes("n", 0, 100)).unwrap();
    let seqs: Vec<u64> = log.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(log[3].kind, ChangeKind::MessageDeleted);
    assert_eq!(rt.block_on(store.changes("n", 3, 1)).unwrap()[0].seq, 4);
    // Another namespace has its own sequence.
    let other = rt
        .block_on(store.commit(&add("o", &[&message("o")])))
        .unwrap();
    assert_eq!(other.changes.last().unwrap().seq, 2);
    // Deleting the namespace hides it; its sequence continues when reused.
    let drop = Commit {
        namespace: NamespaceName::parse("n").unwrap(),
        mutation: Mutation::DeleteNamespace {
            messages: vec![first.rows[1]],
            summaries: Vec::new(),
        },
        actor: None,
        key_id: None,
    };
    assert_eq!(rt.block_on(store.commit(&drop)).unwrap().changes[0].seq, 6);
    let names: Vec<String> = rt
        .block_on(store.namespaces())
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["o"]);
    let again = rt
        .block_on(store.commit(&add("n", &[&message("n")])))
        .unwrap();
    let seqs: Vec<u64> = again.changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [7, 8]);
    // Reopened, the log reads the same.
    drop_store(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(rt.block_on(store.changes("n", 0, 100)).unwrap().len(), 8);
}

fn drop_store(store: SledStore) {
    store.flush_sync().unwrap();
    drop(store);
}

#[test]
fn retention_prunes_by_count_and_age_but_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let rt = rt();
    let msgs: Vec<Message> = (0..5).map(|_| message("n")).collect();
    let refs: Vec<&Message> = msgs.iter().collect();
    rt.block_on(store.commit(&add("n", &refs))).unwrap(); // seqs 1..=6
    let keep_3 = Retention {
        max_age: std::time::Duration::from_secs(3600),
        max_entries: 3,
    };
    assert_eq!(
        rt.block_on(store.prune_changes(keep_3, Utc::now()))
            .unwrap(),
        3
    );
    let seqs: Vec<u64> = rt
        .block_on(store.changes("n", 0, 100))
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
    let later = Utc::now() + chrono::Duration::hours(2);
    assert_eq!(rt.block_on(store.prune_changes(keep_3, later)).unwrap(), 2);
    let left = rt.block_on(store.changes("n", 0, 100)).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, 6);
}

#[test]
fn compare_and_set_writes_only_when_expected_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let rt = rt();
    let cas = |e: Option<&[u8]>, n: Option<&[u8]>| {
        rt.block_on(store.compare_and_set("k", e.map(<[u8]>::to_vec), n.map(<[u8]>::to_vec)))
            .unwrap()
    };
    assert_eq!(cas(None, Some(b"1")), Ok(()));
    assert_eq!(cas(None, Some(b"2")), Err(Some(b"1".to_vec())));
    assert_eq!(cas(Some(b"1"), Some(b"2")), Ok(()));
    assert_eq!(
        rt.block_on(store.get_key("k")).unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(cas(Some(b"2"), None), Ok(()));
    assert_eq!(rt.block_on(store.get_key("k")).unwrap(), None);
}

/// `context_expiry` follows the entries: written with an expiry, replaced by a
/// rewrite, gone with a tombstone or the namespace; the sweep reads it.
#[test]
fn the_expiry_index_follows_context_writes() {
    use crate::core::context::ContextOp;
    use crate::storage::ContextPut;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let rt = rt();
    let now = Utc::now();
    let write = |key: &str, op: ContextOp, expires_at: Option<DateTime<Utc>>| Commit {
        namespace: NamespaceName::parse("n").unwrap(),
        mutation: Mutation::PutContext(ContextPut {
            key: key.into(),
            op,
            value: serde_json::json!(1),
            expected_version: None,
            agent_id: None,
            expires_at,
            at: now,
            max_value_bytes: 1 << 16,
            keep_versions: None,
            expire_version: None,
            vector: None,
            change: None,
        }),
        actor: None,
        key_id: None,
    };
    let soon = now + chrono::Duration::seconds(5);
    rt.block_on(store.commit(&write("a", ContextOp::Set, Some(soon))))
        .unwrap();
    rt.block_on(store.commit(&write("b", ContextOp::Set, Some(soon))))
        .unwrap();
    assert_eq!(store.context_expiry.len(), 2);
    let later = soon + chrono::Duration::seconds(1);
    assert_eq!(store.context_expired_sync(now, 10).unwrap().len(), 0);
    assert_eq!(store.context_expired_sync(later, 10).unwrap().len(), 2);
    // A rewrite without expiry and a delete both drop their entry's key.
    rt.block_on(store.commit(&write("a", ContextOp::Set, None)))
        .unwrap();
    assert_eq!(store.context_expiry.len(), 1);
    rt.block_on(store.commit(&write("b", ContextOp::Delete, None)))
        .unwrap();
    assert_eq!(store.context_expiry.len(), 0);
    rt.block_on(store.commit(&write("c", ContextOp::Set, Some(soon))))
        .unwrap();
    let drop = Commit {
        namespace: NamespaceName::parse("n").unwrap(),
        mutation: Mutation::DeleteNamespace {
            messages: Vec::new(),
            summaries: Vec::new(),
        },
        actor: None,
        key_id: None,
    };
    rt.block_on(store.commit(&drop)).unwrap();
    assert_eq!(store.context_expiry.len(), 0);
    assert_eq!(store.context.len(), 0);
}

/// The stored search vector of a context entry follows its versions: replaced
/// by a write that brings one, kept by one that does not, dropped by a delete;
/// board documents are listed only under their own prefix.
#[test]
fn context_vectors_follow_writes_and_board_keys_stay_hidden() {
    use crate::core::context::ContextOp;
    use crate::storage::ContextPut;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let rt = rt();
    let now = Utc::now();
    let write = |key: &str, op: ContextOp, vector: Option<Vec<f32>>| Commit {
        namespace: NamespaceName::parse("n").unwrap(),
        mutation: Mutation::PutContext(ContextPut {
            key: key.into(),
            op,
            value: serde_json::json!({"v": 1}),
            expected_version: None,
            agent_id: None,
            expires_at: None,
            at: now,
            max_value_bytes: 1 << 16,
            keep_versions: None,
            expire_version: None,
            vector,
            change: None,
        }),
        actor: None,
        key_id: None,
    };
    let vector_of = |key: &str| -> Option<Vec<f32>> {
        rt.block_on(store.context_indexed("n", now))
            .unwrap()
            .into_iter()
            .find(|(e, _)| e.key == key)
            .and_then(|(_, v)| v)
    };
    rt.block_on(store.commit(&write("a", ContextOp::Set, Some(vec![1.0, 0.0]))))
        .unwrap();
    assert_eq!(vector_of("a"), Some(vec![1.0, 0.0]));
    rt.block_on(store.commit(&write("a", ContextOp::Patch, None)))
        .unwrap();
    assert_eq!(
        vector_of("a"),
        Some(vec![1.0, 0.0]),
        "kept by a write without one"
    );
    rt.block_on(store.commit(&write("a", ContextOp::Set, Some(vec![0.0, 1.0]))))
        .unwrap();
    assert_eq!(vector_of("a"), Some(vec![0.0, 1.0]), "replaced");
    rt.block_on(store.commit(&write("a", ContextOp::Delete, None)))
        .unwrap();
    assert_eq!(store.context_vectors.len(), 0, "dropped with the delete");

    rt.block_on(store.commit(&write("b", ContextOp::Set, None)))
        .unwrap();
    rt.block_on(store.commit(&write(
        "~board:problem:1",
        ContextOp::Set,
        Some(vec![1.0, 0.0]),
    )))
    .unwrap();
    let keys = |prefix: &str| -> Vec<String> {
        rt.block_on(store.context_list("n", prefix, None, 10, now))
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    assert_eq!(keys(""), ["b"]);
    assert_eq!(keys("~board:"), ["~board:problem:1"]);
    assert_eq!(
        rt.block_on(store.context_indexed("n", now)).unwrap().len(),
        2
    );
}
