//! Crash loop: `memoryd serve` is SIGKILLed at random moments while a client
//! streams single and batch adds, deletes, searches, forced summarizations and
//! compare-and-set increments of a shared context counter,
//! then restarted and checked against what the client saw acknowledged.
//!
//! `MEMORYD_CRASH_CYCLES` sets the number of cycles (default 20; the long mode
//! quoted in the README runs 500). `MEMORYD_CRASH_SEED` replays a run (each run
//! prints its seed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::repo_path;
use crate::server::Server;

const NS: &str = "crash";
/// Server flags of the crash loop.
const GRAPH: &[&str] = &["--exact-threshold", "64"];
/// Messages the first cycle adds before its writer starts: past the threshold
/// of [`GRAPH`] with room for the deletes of the first cycles.
const PAST_THRESHOLD: usize = 96;

const WORDS: &[&str] = &[
    "harbor", "violin", "glacier", "pepper", "lantern", "orchid", "canyon", "velvet", "compass",
    "meadow", "falcon", "quartz", "saffron", "tundra", "ember", "willow", "cobalt", "lagoon",
    "marble", "nectar", "prairie", "thistle", "walnut", "zephyr", "bramble", "cinder", "dune",
    "fjord", "garnet", "hazel", "juniper", "kelp", "lotus", "mosaic", "nimbus", "opal",
];

/// What the client knows: acknowledged state plus the operations in flight at
/// the kill, whose outcome is unknown until the restart shows it.
#[derive(Default)]
struct Model {
    /// Acknowledged and not deleted: id → content.
    live: BTreeMap<String, String>,
    /// Acknowledged deletes.
    deleted: HashSet<String>,
    /// Contents of adds that got no answer (the kill came first).
    unsure_adds: HashSet<String>,
    /// Ids of deletes that got no answer.
    unsure_deletes: HashSet<String>,
    /// Operations sent, and answered.
    ops: usize,
    acknowledged: usize,
    /// Summaries made by acknowledged forced summarizations.
    summaries: usize,
    /// Unanswered writes that the restart showed landed, and that did not.
    landed: usize,
    lost_in_flight: usize,
    /// The shared context counter: its acknowledged version (every version `v`
    /// holds the value `v`), and whether a write of the next one got no answer.
    counter_version: u64,
    counter_unsure: bool,
    /// Context writes acknowledged.
    context_writes: usize,
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn send(
    c: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send()?;
    let status = resp.status().as_u16();
    // A body cut off by the kill counts as no answer.
    let bytes = resp.bytes()?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Streams operations until `stop`; returns the model updated with every answer.
fn writer(base: String, mut model: Model, cycle: usize, seed: u64, stop: Arc<AtomicBool>) -> Model {
    let c = client();
    let mut rng = StdRng::seed_from_u64(seed);
    let url = |p: &str| format!("{base}{p}");
    while !stop.load(Ordering::Relaxed) {
        model.ops += 1;
        let op = rng.random_range(0..100);
        if op < 65 {
            // Single (40%) or batch (25%) add.
            let n = if op < 40 { 1 } else { rng.random_range(2..=8) };
            let contents: Vec<String> = (0..n)
                .map(|i| {
                    let w: Vec<&str> = (0..4).map(|_| *WORDS.choose(&mut rng).unwrap()).collect();
                    format!("cycle {cycle} op {} part {i}: {}", model.ops, w.join(" "))
                })
                .collect();
            let msgs: Vec<Value> = contents
                .iter()
                .map(|t| json!({"role": "user", "content": t, "session_id": format!("s{cycle}")}))
                .collect();
            match send(
                &c,
                reqwest::Method::POST,
                url(&format!("/v1/namespaces/{NS}/messages")),
                Some(json!({"messages": msgs})),
            ) {
                Ok((201, v)) => {
                    let ids = v["ids"].as_array().expect("ids");
                    assert_eq!(ids.len(), contents.len());
                    for (id, t) in ids.iter().zip(contents) {
                        model.live.insert(id.as_str().unwrap().to_owned(), t);
                    }
                }
                Ok((s, v)) => panic!("add answered {s}: {v}"),
                Err(_) => {
                    model.unsure_adds.extend(contents);
                    break; // the server is gone
                }
            }
        } else if op < 85 {
            let Some(id) = model
                .live
                .keys()
                .nth(rng.random_range(0..model.live.len().max(1)))
            else {
                continue;
            };
            let id = id.clone();
            match send(
                &c,
                reqwest::Method::DELETE,
                url(&format!("/v1/messages/{id}")),
                None,
            ) {
                Ok((204, _)) => {
                    model.live.remove(&id);
                    model.deleted.insert(id);
                }
                Ok((s, v)) => panic!("delete of an acknowledged id answered {s}: {v}"),
                Err(_) => {
                    model.live.remove(&id);
                    model.unsure_deletes.insert(id);
                    break;
                }
            }
        } else if op < 90 {
            // A compare-and-set increment of a shared context counter.
            let next = model.counter_version + 1;
            let req = c
                .put(url(&format!("/v1/namespaces/{NS}/context/counter")))
                .header("if-match", format!("\"{}\"", model.counter_version))
                .json(&json!({"value": next, "agent_id": format!("cycle-{cycle}")}));
            match req.send().and_then(|r| {
                let s = r.status().as_u16();
                r.bytes().map(|b| (s, b))
            }) {
                Ok((200 | 201, _)) => {
                    model.counter_version = next;
                    model.context_writes += 1;
                }
                Ok((s, b)) => panic!(
                    "context CAS at the acknowledged version answered {s}: {}",
                    String::from_utf8_lossy(&b)
                ),
                Err(_) => {
                    model.counter_unsure = true;
                    break;
                }
            }
        } else if op < 95 {
            let q = WORDS.choose(&mut rng).unwrap();
            match send(
                &c,
                reqwest::Method::POST,
                url(&format!("/v1/namespaces/{NS}/search")),
                Some(json!({"query": q, "k": 5})),
            ) {
                Ok((s, v)) => assert_eq!(s, 200, "{v}"),
                Err(_) => break,
            }
        } else {
            match send(
                &c,
                reqwest::Method::POST,
                url(&format!("/v1/namespaces/{NS}/summarize")),
                None,
            ) {
                Ok((s, v)) => {
                    assert_eq!(s, 200, "{v}");
                    model.summaries += v["ids"].as_array().unwrap().len();
                }
                Err(_) => break,
            }
        }
        model.acknowledged += 1;
    }
    model
}

/// Every stored message of the namespace, through the paged listing.
fn list_all(c: &reqwest::blocking::Client, base: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/namespaces/{NS}/messages?limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (s, v) = send(c, reqwest::Method::GET, url, None).unwrap();
        assert_eq!(s, 200, "{v}");
        for m in v["messages"].as_array().unwrap() {
            out.push((
                m["id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            ));
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return out,
        }
    }
}

/// Checks the restarted server against the model and resolves the unsure
/// operations from what it shows.
fn verify(server: &Server, model: &mut Model, rng: &mut StdRng, cycle: usize) {
    let c = client();
    let stored = list_all(&c, &server.base);
    let ids: HashSet<&str> = stored.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(
        ids.len(),
        stored.len(),
        "cycle {cycle}: an id is listed twice"
    );
    let contents: HashSet<&str> = stored.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        contents.len(),
        stored.len(),
        "cycle {cycle}: a message was stored twice"
    );
    for (id, content) in &model.live {
        assert!(
            ids.contains(id.as_str()),
            "cycle {cycle}: acknowledged message {id} ({content}) is gone"
        );
    }
    for id in &model.deleted {
        assert!(
            !ids.contains(id.as_str()),
            "cycle {cycle}: deleted message {id} came back"
        );
    }
    // Resolve what the kill left open: an unanswered add either landed whole
    // or not at all; an unanswered delete either happened or not.
    for (id, content) in &stored {
        if model.live.contains_key(id) {
            assert_eq!(&model.live[id], content, "cycle {cycle}: content changed");
        } else if model.unsure_deletes.remove(id) {
            model.lost_in_flight += 1;
            model.live.insert(id.clone(), content.clone());
        } else {
            assert!(
                model.unsure_adds.remove(content),
                "cycle {cycle}: message {id} ({content}) was never sent or was deleted"
            );
            model.landed += 1;
            model.live.insert(id.clone(), content.clone());
        }
    }
    model.landed += model.unsure_deletes.len();
    model.lost_in_flight += model.unsure_adds.len();
    model.deleted.extend(model.unsure_deletes.drain());
    model.unsure_adds.clear();
    assert_eq!(model.live.len(), stored.len());

    // The index agrees with the store: the count the index reports, point reads,
    // and searches that find live messages and never deleted ones.
    let (_, health) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/health", server.base),
        None,
    )
    .unwrap();
    assert_eq!(
        health["messages"],
        model.live.len(),
        "cycle {cycle}: {health}"
    );
    let live: Vec<(&String, &String)> = model.live.iter().collect();
    for (id, content) in live.choose_multiple(rng, 6) {
        let (s, v) = send(
            &c,
            reqwest::Method::GET,
            format!("{}/v1/messages/{id}", server.base),
            None,
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["content"], content.as_str());
        let (s, v) = send(
            &c,
            reqwest::Method::POST,
            format!("{}/v1/namespaces/{NS}/search", server.base),
            Some(json!({"query": content, "k": 5, "kinds": ["message"]})),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        let found: Vec<&str> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        assert!(
            found.contains(&id.as_str()),
            "cycle {cycle}: search misses {id} ({content}): {v}"
        );
        assert!(
            found.iter().all(|f| model.live.contains_key(*f)),
            "cycle {cycle}: search returned a deleted message: {v}"
        );
    }
    let deleted: Vec<&String> = model.deleted.iter().collect();
    for id in deleted.choose_multiple(rng, 6) {
        let (s, _) = send(
            &c,
            reqwest::Method::GET,
            format!("{}/v1/messages/{id}", server.base),
            None,
        )
        .unwrap();
        assert_eq!(s, 404, "cycle {cycle}: deleted {id} is readable");
    }
    // The context counter lost no acknowledged version: it is at the acknowledged
    // one, or one further when the last write got no answer; every version in its
    // history holds its own number, with no gap.
    let (s, v) = send(
        &c,
        reqwest::Method::GET,
        format!(
            "{}/v1/namespaces/{NS}/context/counter/history?limit=1000",
            server.base
        ),
        None,
    )
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let versions: Vec<(u64, u64)> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["version"].as_u64().unwrap(), x["value"].as_u64().unwrap()))
        .collect();
    let top = versions.last().map_or(0, |x| x.0);
    let expected = model.counter_version;
    assert!(
        top == expected || (model.counter_unsure && top == expected + 1),
        "cycle {cycle}: the counter is at version {top}, acknowledged {expected} (unsure: {})",
        model.counter_unsure
    );
    assert!(
        versions
            .iter()
            .enumerate()
            .all(|(i, &(ver, val))| ver == i as u64 + 1 && val == ver),
        "cycle {cycle}: the counter's history has a gap or a wrong value: {versions:?}"
    );
    model.counter_version = top;
    model.counter_unsure = false;
    // Summaries never cover a message twice.
    let (_, v) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/v1/namespaces/{NS}/summaries", server.base),
        None,
    )
    .unwrap();
    let mut covered = HashMap::new();
    for s in v["summaries"].as_array().unwrap() {
        for id in s["source_ids"].as_array().unwrap() {
            *covered.entry(id.as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
    }
    assert!(
        covered.values().all(|&n| n == 1),
        "cycle {cycle}: a message was summarized twice"
    );
}

/// Runs `memoryd <command> [flags]` on a stopped server's directory.
fn offline(command: &str, dir: &std::path::Path, flags: &[&str]) -> std::process::Output {
    Command::new(crate::server::binary())
        .arg(command)
        .args(flags)
        .arg("--data-dir")
        .arg(dir)
        .arg("--models-dir")
        .arg(repo_path("models"))
        .env("MEMORYD_LOG", "warn")
        .output()
        .unwrap()
}

/// `memoryd stats` on the stopped server's directory.
fn stats(dir: &std::path::Path, flags: &[&str]) -> Value {
    let out = offline("stats", dir, flags);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `memoryd check` on the stopped server's directory: the store's trees agree
/// with each other and with the indexes rebuilt from them.
fn offline_check(dir: &std::path::Path, cycle: usize, flags: &[&str]) {
    let out = offline("check", dir, flags);
    assert!(
        out.status.success(),
        "cycle {cycle}: memoryd check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kill_9_loop_loses_no_acknowledged_write() {
    crash_loop("sled", 20, &[]);
}

/// The same loop with the state in PostgreSQL (a real server, `tests/it/pg.rs`):
/// a write is acknowledged after its transaction commits, so `kill -9` of the
/// node loses none. Searches run in PostgreSQL: the namespace's HNSW index is
/// built there (`CREATE INDEX CONCURRENTLY`) once it passes the threshold, so
/// kills also land during builds, which leave an invalid index the next start
/// replaces.
#[test]
fn kill_9_loop_on_postgres_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::pg::database(dir.path());
    crash_loop("postgres", 8, &["--store", &url]);
}

/// The loop on PostgreSQL with each node's own in-memory index
/// (`--in-memory-index`): graph dumps stay in the node's data directory and
/// restarts reload them.
#[test]
fn kill_9_loop_on_postgres_with_in_memory_index_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::pg::database(dir.path());
    crash_loop("postgres", 4, &["--store", &url, "--in-memory-index"]);
}

/// `cycles` (or `MEMORYD_CRASH_CYCLES`) rounds of: start the server with
/// `store` flags, verify everything acknowledged so far, write concurrently,
/// `kill -9` at a random moment, `memoryd check` offline.
fn crash_loop(backend: &str, default_cycles: usize, store: &[&str]) {
    let cycles: usize = std::env::var("MEMORYD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cycles);
    let flags: Vec<&str> = GRAPH.iter().chain(store).copied().collect();
    let flags = flags.as_slice();
    let seed: u64 = std::env::var("MEMORYD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash loop ({backend}): {cycles} cycles, MEMORYD_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let started = std::time::Instant::now();
    for cycle in 0..cycles {
        // A low graph threshold: the namespace gets an HNSW graph in the first
        // cycle, rebuilt (and dumped) as deletes pile up, so kills also land
        // during builds and dumps and restarts reload dumps.
        let server = Server::start_with(dir.path(), flags);
        verify(&server, &mut model, &mut rng, cycle);
        if cycle == 0 {
            past_the_threshold(&server, &mut model, dir.path(), store);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let (base, stop, seed) = (server.base.clone(), stop.clone(), rng.random());
            std::thread::spawn(move || writer(base, model, cycle, seed, stop))
        };
        std::thread::sleep(Duration::from_millis(rng.random_range(50..1500)));
        server.signal("-KILL");
        stop.store(true, Ordering::Relaxed);
        model = client.join().expect("the client saw only valid answers");
        offline_check(dir.path(), cycle, store);
        if (cycle + 1) % 25 == 0 {
            eprintln!(
                "crash loop: {} cycles done, {} acknowledged operations, {} live messages, {:.0} s",
                cycle + 1,
                model.acknowledged,
                model.live.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let server = Server::start_with(dir.path(), flags);
    verify(&server, &mut model, &mut rng, cycles);
    let in_store = store.contains(&"--store") && !store.contains(&"--in-memory-index");
    if in_store {
        // The store's HNSW index of the namespace becomes valid (built again if
        // a kill left it invalid) and searches still find every live message.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while let Err(text) = store_index_valid(&server.base) {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: the store's vector index never became valid:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        verify(&server, &mut model, &mut rng, cycles + 1);
    }
    server.signal("-KILL");
    if !in_store {
        // The namespace passed the threshold in the first cycle and its graph
        // was dumped, so the restarts reloaded it (not only rebuilt it).
        let stats = stats(dir.path(), flags);
        assert_eq!(stats["graphs_reloaded"], 1, "{backend}: {stats}");
    }
    eprintln!(
        "crash loop ({backend}): {cycles} cycles, {} operations sent, {} acknowledged, {} summaries; \
         unanswered writes at the kill: {} landed, {} did not; \
         {} live and {} deleted messages at the end; context counter at version {} \
         ({} acknowledged CAS writes), {:.0} s",
        model.ops,
        model.acknowledged,
        model.summaries,
        model.landed,
        model.lost_in_flight,
        model.live.len(),
        model.deleted.len(),
        model.counter_version,
        model.context_writes,
        started.elapsed().as_secs_f64()
    );
}

/// Whether the store's HNSW index of the namespace is valid (the
/// `memoryd_graph_namespaces` metric); the metrics text when it is not.
fn store_index_valid(base: &str) -> Result<(), String> {
    let text = reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    if text.lines().any(|l| l == "memoryd_graph_namespaces 1") {
        Ok(())
    } else {
        Err(text)
    }
}

/// Adds [`PAST_THRESHOLD`] messages (acknowledged, so the model holds them) and
/// waits until the namespace has its graph: a dump in the data directory for
/// the in-memory index, the store's valid HNSW index otherwise. Without this,
/// whether the loop's own writes pass the threshold depended on the machine's
/// speed and the seed, and the final checks (a reload from a dump, the store's
/// index) could not hold.
fn past_the_threshold(server: &Server, model: &mut Model, dir: &std::path::Path, store: &[&str]) {
    let c = client();
    for chunk in 0..PAST_THRESHOLD / 8 {
        let contents: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    "seed {chunk} part {i}: {}",
                    WORDS[(chunk * 8 + i) % WORDS.len()]
                )
            })
            .collect();
        let msgs: Vec<Value> = contents
            .iter()
            .map(|t| json!({"role": "user", "content": t, "session_id": "seed"}))
            .collect();
        let (status, v) = send(
            &c,
            reqwest::Method::POST,
            format!("{}/v1/namespaces/{NS}/messages", server.base),
            Some(json!({"messages": msgs})),
        )
        .expect("the server answers");
        assert_eq!(status, 201, "{v}");
        for (id, t) in v["ids"].as_array().expect("ids").iter().zip(contents) {
            model.live.insert(id.as_str().unwrap().to_owned(), t);
        }
        model.ops += 1;
        model.acknowledged += 1;
    }
    let in_store = store.contains(&"--store") && !store.contains(&"--in-memory-index");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ready = if in_store {
            store_index_valid(&server.base).is_ok()
        } else {
            // A generation counts once its manifest is in place (persist.rs).
            std::fs::read_dir(dir.join("graphs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|ns| std::fs::read_dir(ns.path()).ok())
                .flatten()
                .flatten()
                .any(|g| g.path().join("manifest.json").exists())
        };
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the namespace's graph was not built (and dumped) within 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kill -9` while a graph dump is being written (held, every file written and
/// no manifest yet, by the fault-injection pause): the restart discards the
/// unfinished generation, serves every acknowledged message at once (an exact
/// scan until the graph is rebuilt in the background), rebuilds and dumps again;
/// the next restart reloads that dump, and the store agrees with the index.
#[test]
fn kill_9_during_a_graph_dump_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--exact-threshold", "64", "--no-background-summarize"];
    let server = Server::start_with_env(
        dir.path(),
        &flags,
        &[("MEMORYD_FAULT_DUMP_PAUSE_MS", "600000")],
    );
    let c = client();
    let contents: Vec<String> = (0..120)
        .map(|i| {
            format!(
                "dump test {i}: {} {} {}",
                WORDS[i % WORDS.len()],
                WORDS[(i * 7 + 3) % WORDS.len()],
                WORDS[(i * 13 + 5) % WORDS.len()]
            )
        })
        .collect();
    let mut ids = Vec::new();
    for chunk in contents.chunks(40) {
        let msgs: Vec<Value> = chunk
            .iter()
            .map(|t| json!({"role": "user", "content": t}))
            .collect();
        let (s, v) = send(
            &c,
            reqwest::Method::POST,
            format!("{}/v1/namespaces/{NS}/messages", server.base),
            Some(json!({"messages": msgs})),
        )
        .unwrap();
        assert_eq!(s, 201, "{v}");
        ids.extend(
            v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned()),
        );
    }
    // Wait until the dump is held: a generation with its files and no manifest.
    let graphs = dir.path().join("graphs");
    let held_dir = || -> Option<std::path::PathBuf> {
        std::fs::read_dir(&graphs).ok()?.flatten().find_map(|ns| {
            std::fs::read_dir(ns.path())
                .ok()?
                .flatten()
                .map(|g| g.path())
                .find(|g| g.join("rows.bin").exists() && !g.join("manifest.json").exists())
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let unfinished = loop {
        if let Some(g) = held_dir() {
            break g;
        }
        assert!(std::time::Instant::now() < deadline, "no dump started");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.signal("-KILL");
    // A mark of our own in the unfinished generation: the background rebuild
    // after the restart may write a new generation under the same name, but
    // never this file.
    let mark = unfinished.join("left-by-the-test");
    std::fs::write(&mark, b"").unwrap();

    // Restart with dumps still held before their manifest: the background
    // rebuild's new dump then cannot clean older generations up, so only open
    // can have deleted the mark.
    let paused = Server::start_with_env(
        dir.path(),
        &flags,
        &[("MEMORYD_FAULT_DUMP_PAUSE_MS", "600000")],
    );
    assert!(
        !mark.exists(),
        "the unfinished generation was deleted on open"
    );
    drop(paused);
    let server = Server::start_with(dir.path(), &flags);
    let search = |server: &Server, t: &str| -> Vec<String> {
        let (s, v) = send(
            &c,
            reqwest::Method::POST,
            format!("{}/v1/namespaces/{NS}/search", server.base),
            Some(json!({"query": t, "k": 3})),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (id, t) in ids.iter().zip(&contents).step_by(9) {
        assert!(
            search(&server, t).contains(id),
            "{t} not found after the restart"
        );
    }
    // The background rebuild dumps again (no pause now).
    let whole = || {
        std::fs::read_dir(&graphs).is_ok_and(|nss| {
            nss.flatten().any(|ns| {
                std::fs::read_dir(ns.path()).is_ok_and(|gens| {
                    gens.flatten()
                        .any(|g| g.path().join("manifest.json").exists())
                })
            })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !whole() {
        assert!(
            std::time::Instant::now() < deadline,
            "no dump after the restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal("-KILL");
    offline_check(dir.path(), 0, &[]);
    let stats = stats(dir.path(), &["--exact-threshold", "64"]);
    assert_eq!(stats["graphs_reloaded"], 1, "{stats}");
    // With the reload's info log line enabled (it once read the index while
    // holding its write lock: a deadlock only with info logging on).
    let server = Server::start_with_env(
        dir.path(),
        &flags,
        &[("MEMORYD_LOG", "warn,memoryd::search=info")],
    );
    for (id, t) in ids.iter().zip(&contents).step_by(7) {
        assert!(
            search(&server, t).contains(id),
            "{t} not found after the reload"
        );
    }
}

/// Events across a crash: a subscriber follows a namespace over SSE while a
/// writer adds messages; the server is SIGKILLed and restarted on the same
/// directory, and the subscriber reconnects with `Last-Event-ID` (its client
/// also cuts every stream after 2 s, so it resumes many times). It must see
/// every change-log entry exactly once and in order, and an event for every
/// acknowledged message.
#[test]
fn a_subscriber_resumes_across_kill_9_without_gap_or_duplicate() {
    use std::io::BufRead;
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    // No background summaries: the writer makes every change, so the log ends with it.
    let server = Server::start_with(dir.path(), &["--no-background-summarize"]);
    let base = Arc::new(Mutex::new(server.base.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // (seq, type, message id)
    type Seen = Vec<(u64, String, Option<String>)>;
    let subscriber = {
        let (base, stop, reached) = (base.clone(), stop.clone(), reached.clone());
        std::thread::spawn(move || -> Seen {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut seen: Seen = Vec::new();
            let mut last_id: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{}/v1/namespaces/crash-ev/events", base.lock().unwrap());
                let mut req = client.get(url).header("accept", "text/event-stream");
                if let Some(id) = &last_id {
                    req = req.header("last-event-id", id.as_str());
                }
                let Ok(resp) = req.send() else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if resp.status() != 200 {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let (mut id, mut data) = (None, None);
                for line in std::io::BufReader::new(resp).lines() {
                    let Ok(line) = line else { break };
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_owned());
                    } else if line.is_empty() {
                        if let (Some(i), Some(d)) = (id.take(), data.take()) {
                            let v: Value = serde_json::from_str(&d).unwrap();
                            reached.store(v["seq"].as_u64().unwrap(), Ordering::Release);
                            seen.push((
                                v["seq"].as_u64().unwrap(),
                                v["type"].as_str().unwrap().to_owned(),
                                v["data"]["id"].as_str().map(str::to_owned),
                            ));
                            last_id = Some(i);
                        }
                        data = None;
                    }
                }
            }
            seen
        })
    };
    let write = |base: &str, i: usize| -> Option<String> {
        let r = client()
            .post(format!("{base}/v1/namespaces/crash-ev/messages"))
            .json(&serde_json::json!({"messages": [{"role": "user", "content": format!("event {i}")}]}))
            .send()
            .ok()?;
        if r.status() != 201 {
            return None;
        }
        let v: Value = r.json().ok()?;
        v["ids"][0].as_str().map(str::to_owned)
    };
    let mut acknowledged = Vec::new();
    let mut i = 0;
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        if let Some(id) = write(&server.base, i) {
            acknowledged.push(id);
        }
        i += 1;
    }
    server.signal("-KILL");
    // No background summaries: the writer makes every change, so the log ends with it.
    let server = Server::start_with(dir.path(), &["--no-background-summarize"]);
    *base.lock().unwrap() = server.base.clone();
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        if let Some(id) = write(&server.base, i) {
            acknowledged.push(id);
        }
        i += 1;
    }
    // The log's last seq, then wait for the subscriber to get there.
    let (_, page) = server.get("/v1/namespaces/crash-ev/events?after=0&limit=1000");
    let mut last = page["next"].as_u64().unwrap();
    loop {
        let (_, more) = server.get(&format!(
            "/v1/namespaces/crash-ev/events?after={last}&limit=1000"
        ));
        let next = more["next"].as_u64().unwrap();
        if next == last {
            break;
        }
        last = next;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reached.load(Ordering::Acquire) < last && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A little longer: a duplicate after the last seq would show.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = subscriber.join().unwrap();
    let seqs: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<u64>>(),
        "every change once, in order"
    );
    let added: std::collections::HashSet<&str> = seen
        .iter()
        .filter(|s| s.1 == "message.added")
        .filter_map(|s| s.2.as_deref())
        .collect();
    for id in &acknowledged {
        assert!(
            added.contains(id.as_str()),
            "acknowledged message {id} has no event"
        );
    }
    eprintln!(
        "events across kill -9: {} acknowledged writes, {} events seen",
        acknowledged.len(),
        seen.len()
    );
}
