//! Several memoryd nodes on one PostgreSQL database (`--store`): two real
//! `memoryd serve` processes, each with its own data directory (graph dumps) and
//! the same store. What one node commits, the other serves: searches, listings,
//! events, context, deletions, API keys; background jobs run on one node at a
//! time.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn search_ids(node: &Server, ns: &str, query: &str) -> Vec<String> {
    let (s, v) = node.post(
        &format!("/v1/namespaces/{ns}/search"),
        json!({"query": query, "k": 10}),
    );
    assert!(s == 200 || s == 404, "search answered {s}: {v}");
    v["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| h["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn request(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new().request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Node A writes, node B serves it (and the reverse): a message is searchable,
/// listed and streamed as an event on the other node; a context entry written
/// with compare-and-set on one is read (and conflicts) on the other; a delete
/// on one disappears from the other's search; a namespace deleted on one is gone
/// on the other and can be written again; an API key created on one
/// authenticates on the other and a revocation there takes effect here.
#[test]
fn a_write_on_one_node_is_searchable_streamed_and_revocable_on_the_other() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = crate::pg::database(dir_a.path());
    // A long poll interval: what follows must arrive by notice, not by polling.
    let flags = [
        "--store",
        &url,
        "--follow-interval-s",
        "3600",
        "--no-background-summarize",
    ];
    let a = Server::start_with(dir_a.path(), &flags);
    let b = Server::start_with(dir_b.path(), &flags);

    // A subscriber on B, long-polling before the write exists.
    let events_url = format!("{}/v1/namespaces/team/events?after=0&wait_s=30", b.base);
    let subscriber = std::thread::spawn(move || {
        let (s, v) = request(reqwest::Method::GET, events_url, None, None);
        assert_eq!(s, 200, "{v}");
        v
    });
    std::thread::sleep(Duration::from_millis(300));
    let (s, v) = a.post(
        "/v1/namespaces/team/messages",
        json!({"messages": [
            {"role": "user", "content": "The deploy key rotates every Tuesday at noon", "session_id": "s1"},
            {"role": "assistant", "content": "Noted: rotation on Tuesdays", "session_id": "s1"}
        ]}),
    );
    assert_eq!(s, 201, "{v}");
    let ids: Vec<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();
    let page = subscriber.join().unwrap();
    let added: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message.added")
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect();
    assert!(
        !added.is_empty(),
        "B's subscriber saw no message.added: {page}"
    );

    let hits = eventually(10, "A's message searchable on B", || {
        let hits = search_ids(&b, "team", "when does the deploy key rotate");
        hits.contains(&ids[0]).then_some(hits)
    });
    assert!(hits.contains(&ids[1]), "{hits:?}");
    let (s, listed) = b.get("/v1/namespaces/team/messages?limit=10");
    assert_eq!(s, 200, "{listed}");
    assert_eq!(
        listed["messages"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Context: created on B, read on A; a stale compare-and-set on A conflicts.
    let put = |node: &Server, body: Value, if_match: Option<&str>| {
        let mut r = reqwest::blocking::Client::new()
            .put(format!("{}/v1/namespaces/team/context/plan", node.base))
            .json(&body);
        if let Some(m) = if_match {
            r = r.header("if-match", m);
        }
        let r = r.send().unwrap();
        r.status().as_u16()
    };
    assert_eq!(put(&b, json!({"value": {"step": 1}}), None), 201);
    let (s, entry) = a.get("/v1/namespaces/team/context/plan");
    assert_eq!(s, 200, "{entry}");
    assert_eq!(entry["value"]["step"], 1, "{entry}");
    assert_eq!(put(&a, json!({"value": {"step": 2}}), Some("\"1\"")), 200);
    assert_eq!(put(&b, json!({"value": {"step": 3}}), Some("\"1\"")), 412);
    // The entry's text is searchable on the node that did not write it.
    eventually(10, "context written on A searchable on B", || {
        let (_, v) = b.post(
            "/v1/namespaces/team/search",
            json!({"query": "plan step", "k": 10, "kinds": ["context"]}),
        );
        v["hits"]
            .as_array()
            .and_then(|h| {
                h.iter()
                    .find(|h| h["context"]["key"] == "plan" && h["context"]["value"]["step"] == 2)
            })
            .cloned()
    });

    // A delete on B disappears from A's search.
    let (s, v) = request(
        reqwest::Method::DELETE,
        format!("{}/v1/messages/{}", b.base, ids[0]),
        None,
        None,
    );
    assert_eq!(s, 204, "{v}");
    eventually(10, "a message deleted on B gone from A's search", || {
        (!search_ids(&a, "team", "when does the deploy key rotate").contains(&ids[0])).then_some(())
    });

    // A namespace deleted on A is gone on B, and B can write it again.
    let (s, v) = request(
        reqwest::Method::DELETE,
        format!("{}/v1/namespaces/team", a.base),
        None,
        None,
    );
    assert!(s == 200 || s == 204, "{s} {v}");
    eventually(10, "a namespace deleted on A gone on B", || {
        (b.get("/v1/namespaces/team").0 == 404).then_some(())
    });
    let (s, v) = b.post(
        "/v1/namespaces/team/messages",
        json!({"messages": [{"role": "user", "content": "A fresh start after the reset"}]}),
    );
    assert_eq!(s, 201, "{v}");
    let fresh = v["ids"][0].as_str().unwrap().to_owned();
    // Read-your-writes on the writing node, at once: its side of the name's new
    // life is not thrown away by the old life's deletion in the log.
    assert_eq!(
        search_ids(&b, "team", "fresh start"),
        std::slice::from_ref(&fresh)
    );
    assert_eq!(b.get("/v1/namespaces/team").0, 200);
    eventually(
        10,
        "the namespace written again on B searchable on A",
        || {
            let hits = search_ids(&a, "team", "fresh start");
            (hits == [fresh.clone()]).then_some(())
        },
    );

    // An API key created on A authenticates on B; revoked on B, refused on A.
    let (s, created) = a.post(
        "/v1/keys",
        json!({"name": "ops", "namespaces": ["*"], "scopes": ["admin"]}),
    );
    assert_eq!(s, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    eventually(10, "the key created on A accepted by B", || {
        let (s, _) = request(
            reqwest::Method::GET,
            format!("{}/v1/namespaces", b.base),
            Some(&token),
            None,
        );
        (s == 200).then_some(())
    });
    // With a key in the store, B (on loopback) no longer serves callers without one.
    assert_eq!(
        request(
            reqwest::Method::GET,
            format!("{}/v1/namespaces", b.base),
            None,
            None
        )
        .0,
        401
    );
    let (s, v) = request(
        reqwest::Method::DELETE,
        format!("{}/v1/keys/{id}", b.base),
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    eventually(10, "the key revoked on B refused by A", || {
        let (s, _) = request(
            reqwest::Method::GET,
            format!("{}/v1/namespaces", a.base),
            Some(&token),
            None,
        );
        (s == 401).then_some(())
    });
}

/// Two nodes with background summarization on, writes to both: each window is
/// summarized once (no two summaries share a source message), every summary is
/// served by both nodes, and both agree on what is pending.
#[test]
fn with_two_nodes_eligible_each_window_is_summarized_once() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = crate::pg::database(dir_a.path());
    let flags = [
        "--store",
        &url,
        "--summarize-every",
        "5",
        "--summarize-tick-ms",
        "20",
    ];
    let a = Server::start_with(dir_a.path(), &flags);
    let b = Server::start_with(dir_b.path(), &flags);
    for i in 0..40 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (s, v) = node.post(
            "/v1/namespaces/shared/messages",
            json!({"messages": [{"role": "user", "content": format!("Status update number {i} about the migration"), "session_id": "s"}]}),
        );
        assert_eq!(s, 201, "{v}");
    }
    // 40 messages in windows of 5: 8 summaries, whichever node writes them.
    let summaries = |node: &Server| -> Vec<Value> {
        let (s, v) = node.get("/v1/namespaces/shared/summaries");
        assert_eq!(s, 200, "{v}");
        v["summaries"].as_array().cloned().unwrap_or_default()
    };
    eventually(60, "8 summaries", || {
        (summaries(&a).len() >= 8).then_some(())
    });
    // Time for a duplicate to appear if single-flight or the window check failed.
    std::thread::sleep(Duration::from_millis(1500));
    let on_a = summaries(&a);
    assert_eq!(on_a.len(), 8, "{on_a:#?}");
    let mut sources = std::collections::HashSet::new();
    for s in &on_a {
        for id in s["source_ids"].as_array().expect("source_ids") {
            assert!(
                sources.insert(id.as_str().unwrap().to_owned()),
                "message {id} summarized twice"
            );
        }
    }
    assert_eq!(sources.len(), 40);
    // The change log agrees: 8 summary.created, read through B.
    let (s, page) = b.get("/v1/namespaces/shared/events?after=0&limit=1000&types=summary.created");
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(8), "{page}");
    let ids = |v: &[Value]| -> Vec<String> {
        let mut ids: Vec<String> = v
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    eventually(10, "B serves the same summaries", || {
        (ids(&summaries(&b)) == ids(&on_a)).then_some(())
    });
}

/// The background-job lock of a shared store: held by one connection (node) at
/// a time, per job name, and free again once its holder drops it. On sled (one
/// process) it is always granted.
#[test]
fn a_job_lock_is_held_by_one_node_at_a_time() {
    use memoryd::{PgStore, RecordStore, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let url = crate::pg::database(dir.path());
    let (one, two) = (
        PgStore::connect(&url).unwrap(),
        PgStore::connect(&url).unwrap(),
    );
    crate::common::rt().block_on(async {
        let held = one.try_job_lock("summarize").await.unwrap();
        assert!(held.as_ref().is_some_and(|l| l.is_backed()), "{held:?}");
        assert!(two.try_job_lock("summarize").await.unwrap().is_none());
        // The holder itself cannot take it twice either (another transaction).
        assert!(one.try_job_lock("summarize").await.unwrap().is_none());
        // Another job's lock is independent.
        assert!(two.try_job_lock("ttl").await.unwrap().is_some());
        drop(held);
        // Released by the holder's transaction ending (asynchronously).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if two.try_job_lock("summarize").await.unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "the lock was not released");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sled = SledStore::open(&dir.path().join("sled")).unwrap();
        let a = sled.try_job_lock("summarize").await.unwrap();
        let b = sled.try_job_lock("summarize").await.unwrap();
        assert!(a.is_some() && b.is_some());
        assert!(!sled.shared() && one.shared());
    });
}

/// An agent that sends its heartbeats to node A only stays healthy on node B
/// (B runs the health job too, from the heartbeats A shares through the
/// store); once the heartbeats stop, both nodes judge it unhealthy.
#[test]
fn an_agent_beating_to_one_node_stays_healthy_on_the_other() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = crate::pg::database(dir_a.path());
    let flags = [
        "--store",
        &url,
        "--agent-timeout-s",
        "2",
        "--summarize-tick-ms",
        "100",
        "--no-background-summarize",
    ];
    let a = Server::start_with(dir_a.path(), &flags);
    let b = Server::start_with(dir_b.path(), &flags);
    let card = crate::agents::card(
        "scout",
        "Finds sources",
        &[("search", "Search the web", &["web"])],
    );
    let (s, v) = a.post("/v1/agents", json!({"id": "scout", "card": card}));
    assert_eq!(s, 201, "{v}");
    let status = |node: &Server| {
        let (s, v) = node.get("/v1/agents/scout");
        assert_eq!(s, 200, "{v}");
        v["status"].as_str().unwrap_or_default().to_owned()
    };
    // 6 s of heartbeats to A, three agent timeouts.
    for _ in 0..12 {
        let (s, v) = request(
            reqwest::Method::PUT,
            format!("{}/v1/agents/scout/heartbeat", a.base),
            None,
            None,
        );
        assert_eq!(s, 200, "{v}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(status(&b), "healthy");
        assert_eq!(status(&a), "healthy");
    }
    eventually(15, "silent agent unhealthy on both nodes", || {
        (status(&a) != "healthy" && status(&b) != "healthy").then_some(())
    });
}
