//! HTTP load on loopback: starts `memoryd serve` (release binary) on a free port
//! with a fresh data directory, preloads one LoCoMo conversation (419 turns), then:
//!
//! - `sweep` (default): search and add at concurrency 1, 16 and 64, `--seconds`
//!   each (default 10): QPS, p50/p95/p99 latency, status codes (429s included).
//! - `context`: shared-context GET and PUT (one transaction + fsync each) over
//!   100 keys at concurrency 1 and 64, `--seconds` each.
//! - `events`: 100 SSE subscribers on one namespace while one writer PUTs a
//!   context counter 100 times a second (its text never changes, so no
//!   embedding): write → event delivered latency (from just before the PUT is
//!   sent to the subscriber parsing the event), p50/p95/p99 over every
//!   (event, subscriber) pair, and events delivered per second.
//! - `mixed`: one run of 90% search / 10% add (LoCoMo questions and turns) at
//!   concurrency 64 for `--seconds` (default 60): the same figures plus the
//!   server's peak RSS (VmHWM) and RSS sampled every 500 ms, and 5xx count.
//!   `--store postgres://…/db` (or `MEMORYD_STORE`) runs the servers on that
//!   database (use an empty one per run); `--nodes N` starts N servers on it and
//!   spreads the 64 clients over them in equal blocks (the conversation is stored
//!   once, through the first node). The servers run without a query cache
//!   (`--query-cache 0`): every search embeds its query.
//! - `overload`: the same mix against a server with a small embedding queue
//!   (`--embed-queue 8`): how many requests get 429 and how fast those answers are.
//!
//! - `agents`: the agent registry, discovery, direct messages and 100
//!   simulated agents (see `http_load_agents/mod.rs`; `--period-ms`).
//!
//! `cargo build --release && cargo bench --bench http_load -- [sweep|mixed|overload|context|events|auth|agents] [--seconds N]`

mod common;
#[path = "http_load_agents/mod.rs"]
mod http_load_agents;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Run {
    ok: usize,
    statuses: BTreeMap<u16, usize>,
    /// Latencies (ms) per status code.
    by_status: BTreeMap<u16, Vec<f64>>,
    latencies_ms: Vec<f64>,
    elapsed: Duration,
}

async fn drive(
    client: reqwest::Client,
    bases: &[String],
    mode: &'static str,
    concurrency: usize,
    seconds: u64,
    texts: Arc<Vec<String>>,
    adds: Arc<Vec<String>>,
) -> Run {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        // Workers are spread over the nodes in contiguous blocks: worker w asks
        // questions w, w + c, … and adds on every tenth, so a split by w's parity
        // (round robin over two nodes, c and the question count both even) would
        // send every add and half of the questions to one node.
        let base = bases[w * bases.len() / concurrency.max(1)].clone();
        let texts = texts.clone();
        let adds = adds.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut by_status: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            let mut i = w;
            // Bounded in time and in count.
            while Instant::now() < deadline && lat.len() < 100_000 {
                i = (i + concurrency) % texts.len();
                let t = Instant::now();
                // "mixed": every tenth request of a worker is an add.
                let search = mode == "search" || (mode == "mixed" && i % 10 != 0);
                let resp = if mode == "context-get" {
                    client
                        .get(format!("{base}/v1/namespaces/load/context/k{}", i % 100))
                        .send()
                        .await
                } else if mode == "context-set" {
                    client
                        .put(format!("{base}/v1/namespaces/load/context/k{}", i % 100))
                        .json(&json!({"value": {"text": texts[i], "n": i}}))
                        .send()
                        .await
                } else if search {
                    client
                        .post(format!("{base}/v1/namespaces/load/search"))
                        .json(&json!({"query": texts[i], "k": 10}))
                        .send()
                        .await
                } else {
                    client
                        .post(format!("{base}/v1/namespaces/load-add/messages"))
                        .json(&json!({"messages": [{"role": "user", "content": adds[i % adds.len()]}]}))
                        .send()
                        .await
                };
                // Read the body: a request is done when its answer is.
                let status = match resp {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        r.bytes().await.map_or(0, |_| s)
                    }
                    Err(_) => 0,
                };
                let ms = t.elapsed().as_secs_f64() * 1e3;
                *statuses.entry(status).or_default() += 1;
                by_status.entry(status).or_default().push(ms);
                lat.push(ms);
            }
            (lat, statuses, by_status)
        }));
    }
    let mut run = Run {
        ok: 0,
        statuses: BTreeMap::new(),
        by_status: BTreeMap::new(),
        latencies_ms: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (lat, st, by) = t.await.expect("worker");
        run.latencies_ms.extend(lat);
        for (k, v) in by {
            run.by_status.entry(k).or_default().extend(v);
        }
        for (k, v) in st {
            *run.statuses.entry(k).or_default() += v;
        }
    }
    run.elapsed = started.elapsed();
    run.ok = run
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    run
}

/// A `memoryd serve` child on a free port with a fresh data directory.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bin: &std::path::Path, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(bin)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--no-background-summarize",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--models-dir")
            .arg(common::repo_path("models"))
            .env("MEMORYD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("memoryd starts");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Waits (up to 120 s) until `/health` answers 200.
    async fn healthy(&self, client: &reqwest::Client) {
        let base = &self.base;
        let ready = Instant::now() + Duration::from_secs(120);
        while client
            .get(format!("{base}/health"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
            != 200
        {
            assert!(Instant::now() < ready, "server not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for health, then stores one LoCoMo conversation in namespace `load`.
    async fn ready(&self, client: &reqwest::Client, turns: &[String]) {
        self.healthy(client).await;
        let base = &self.base;
        let conv: Vec<_> = turns
            .iter()
            .take(419)
            .map(|t| json!({"role": "user", "content": t}))
            .collect();
        for chunk in conv.chunks(100) {
            let r = client
                .post(format!("{base}/v1/namespaces/load/messages"))
                .json(&json!({"messages": chunk}))
                .send()
                .await
                .expect("preload");
            assert_eq!(r.status().as_u16(), 201, "preload");
        }
    }

    /// (VmRSS, VmHWM) of the server in KiB, from /proc (Linux).
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

fn row(route: &str, c: usize, run: &mut Run) {
    let p = memoryd::eval::Percentiles::of(&mut run.latencies_ms);
    println!(
        "| {route} | {c} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:?} |",
        run.latencies_ms.len(),
        run.ok as f64 / run.elapsed.as_secs_f64(),
        p.p50,
        p.p95,
        p.p99,
        run.statuses
    );
}

/// The `events` scenario: `subscribers` SSE streams, one writer at 100 PUTs/s.
async fn events(client: &reqwest::Client, base: &str, subscribers: usize, seconds: u64) {
    let url = format!("{base}/v1/namespaces/ev/context/counter");
    client
        .put(&url)
        .json(&json!({"value": 0}))
        .send()
        .await
        .expect("seed");
    // Start after the seed: subscribers see only the measured writes.
    let after = 2;
    let sent: Arc<parking_lot::Mutex<Vec<Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let (client, sent, done) = (client.clone(), sent.clone(), done.clone());
        let url = format!("{base}/v1/namespaces/ev/events?after={after}");
        subs.push(tokio::spawn(async move {
            let mut resp = client
                .get(&url)
                .header("accept", "text/event-stream")
                .send()
                .await
                .expect("stream");
            assert_eq!(resp.status(), 200);
            let mut lat = Vec::new();
            let mut buf = String::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let chunk = tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await;
                let Ok(Ok(Some(bytes))) = chunk else { continue };
                buf.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let v: serde_json::Value = serde_json::from_str(data.trim()).expect("event");
                    if let Some(n) = v["data"]["value"].as_u64()
                        && let Some(t) = sent.lock().get(n as usize - 1).copied()
                    {
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        n += 1;
        sent.lock().push(Instant::now());
        let resp = client
            .put(&url)
            .json(&json!({"value": n}))
            .send()
            .await
            .expect("put");
        assert!(resp.status().is_success());
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, std::sync::atomic::Ordering::Release);
    let mut all = Vec::new();
    for s in subs {
        all.extend(s.await.expect("subscriber"));
    }
    let delivered = all.len();
    let p = memoryd::eval::Percentiles::of(&mut all);
    println!(
        "events: {subscribers} SSE subscribers, 1 writer, {n} writes in {:.1} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "delivered {delivered} of {} (event, subscriber) pairs, {:.0} events/s; write → delivered p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        n as usize * subscribers,
        delivered as f64 / elapsed.as_secs_f64(),
        p.p50,
        p.p95,
        p.p99
    );
}

fn per_status(run: &mut Run) {
    for (status, lat) in run.by_status.iter_mut() {
        let p = memoryd::eval::Percentiles::of(lat);
        println!(
            "  status {status}: {} answers, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            lat.len(),
            p.p50,
            p.p95,
            p.p99
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = [
        "sweep", "mixed", "overload", "context", "events", "auth", "agents",
    ]
    .into_iter()
    .find(|s| args.iter().any(|a| a == s))
    .unwrap_or("sweep");
    let default_seconds = if scenario == "mixed" { 60 } else { 10 };
    let seconds: u64 =
        arg(&args, "--seconds").map_or(default_seconds, |s| s.parse().expect("integer"));
    let bin = common::repo_path("target/release/memoryd");
    if !bin.exists() {
        eprintln!("build the server first: cargo build --release");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let turns = Arc::new(common::locomo_turns());
    let questions = Arc::new(common::locomo_questions());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        // A stalled request fails (status 0) instead of hanging the bench.
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let header = "| route | concurrency | requests | QPS | p50 ms | p95 ms | p99 ms | statuses |\n|---|---|---|---|---|---|---|---|";
    match scenario {
        "sweep" => {
            let server = Server::start(&bin, &[]);
            rt.block_on(async {
                server.ready(&client, &turns).await;
                println!("{header}");
                for mode in ["search", "add"] {
                    for c in [1usize, 16, 64] {
                        let texts = if mode == "search" {
                            questions.clone()
                        } else {
                            turns.clone()
                        };
                        let mut run = drive(
                            client.clone(),
                            std::slice::from_ref(&server.base),
                            mode,
                            c,
                            seconds,
                            texts,
                            turns.clone(),
                        )
                        .await;
                        row(mode, c, &mut run);
                    }
                }
            });
        }
        "context" => {
            // Shared context over HTTP: GET and PUT (one transaction + fsync
            // each) of 100 keys, at concurrency 1 and 64.
            let server = Server::start(&bin, &[]);
            rt.block_on(async {
                server.ready(&client, &turns).await;
                for k in 0..100 {
                    client
                        .put(format!("{}/v1/namespaces/load/context/k{k}", server.base))
                        .json(&json!({"value": {"seed": k}}))
                        .send()
                        .await
                        .expect("seed write");
                }
                println!("{header}");
                for mode in ["context-get", "context-set"] {
                    for c in [1usize, 64] {
                        let mut run = drive(
                            client.clone(),
                            std::slice::from_ref(&server.base),
                            mode,
                            c,
                            seconds,
                            turns.clone(),
                            turns.clone(),
                        )
                        .await;
                        row(mode, c, &mut run);
                    }
                }
            });
        }
        "auth" => {
            // The cost of authentication and redaction on the same server:
            // context GETs and searches anonymously (loopback, no key yet), then
            // with a key, then with a `--redact pii` key, at concurrency 1.
            let server = Server::start(&bin, &[]);
            rt.block_on(async {
                server.ready(&client, &turns).await;
                for k in 0..100 {
                    client
                        .put(format!("{}/v1/namespaces/load/context/k{k}", server.base))
                        .json(&json!({"value": {"seed": k, "note": "call ann@example.com or +1 415 555 0100"}}))
                        .send()
                        .await
                        .expect("seed write");
                }
                println!("{header}");
                let with_token = |token: &str| {
                    let mut h = reqwest::header::HeaderMap::new();
                    h.insert(
                        reqwest::header::AUTHORIZATION,
                        format!("Bearer {token}").parse().expect("header"),
                    );
                    reqwest::Client::builder()
                        .default_headers(h)
                        .build()
                        .expect("client")
                };
                let measure = |name: &'static str, c: reqwest::Client| {
                    let base = server.base.clone();
                    let (questions, turns) = (questions.clone(), turns.clone());
                    async move {
                        for mode in ["context-get", "search"] {
                            let texts = if mode == "search" { questions.clone() } else { turns.clone() };
                            let mut run = drive(c.clone(), std::slice::from_ref(&base), mode, 1, seconds, texts, turns.clone()).await;
                            row(&format!("{mode} ({name})"), 1, &mut run);
                        }
                    }
                };
                // Anonymous first: the first key closes anonymous access.
                measure("anonymous", client.clone()).await;
                // The first key (made anonymously) is an admin key that makes the others.
                let r = client
                    .post(format!("{}/v1/keys", server.base))
                    .json(&json!({"name": "admin", "namespaces": ["*"], "scopes": ["admin"]}))
                    .send()
                    .await
                    .expect("admin key");
                let body: serde_json::Value = r.json().await.expect("admin key body");
                let admin = with_token(body["token"].as_str().expect("admin token"));
                let mut keyed = Vec::new();
                for (name, redact) in [("key", false), ("redacting key", true)] {
                    let r = admin
                        .post(format!("{}/v1/keys", server.base))
                        .json(&json!({"name": name, "namespaces": ["load"], "scopes": ["read"],
                            "redact": {"pii": redact}}))
                        .send()
                        .await
                        .expect("key");
                    let body: serde_json::Value = r.json().await.expect("key body");
                    keyed.push((name, with_token(body["token"].as_str().expect("token"))));
                }
                for (name, c) in keyed {
                    measure(name, c).await;
                }
            });
        }
        "agents" => {
            let server = Server::start(&bin, &[]);
            let period: u64 =
                arg(&args, "--period-ms").map_or(2000, |s| s.parse().expect("integer"));
            rt.block_on(async {
                server.ready(&client, &turns).await;
                http_load_agents::run(&client, &server.base, seconds, period, questions.clone())
                    .await;
            });
        }
        "events" => {
            let server = Server::start(&bin, &[]);
            rt.block_on(async {
                server.ready(&client, &turns).await;
                events(&client, &server.base, 100, seconds).await;
            });
        }
        "mixed" => {
            // `--store postgres://…/db --nodes N`: N servers on one (empty) database,
            // the clients spread over them in equal blocks.
            let store = arg(&args, "--store").or_else(|| std::env::var("MEMORYD_STORE").ok());
            let nodes: usize = arg(&args, "--nodes").map_or(1, |s| s.parse().expect("integer"));
            assert!(nodes >= 1, "--nodes must be at least 1");
            assert!(
                nodes == 1 || store.is_some(),
                "--nodes N > 1 needs --store postgres://… (sled allows one process)"
            );
            // No query cache: the clients cycle through 1,986 questions, more than a
            // node's cache (1,024) holds, but a split of the clients that gave each
            // node only part of them would let the cache, not the node count, make
            // the difference. Every search embeds its query.
            let mut extra: Vec<&str> = vec!["--query-cache", "0"];
            if let Some(url) = &store {
                extra.extend(["--store", url.as_str()]);
            }
            let servers: Vec<Server> = (0..nodes).map(|_| Server::start(&bin, &extra)).collect();
            rt.block_on(async {
                // The conversation is stored once, through the first node.
                servers[0].ready(&client, &turns).await;
                for s in &servers[1..] {
                    s.healthy(&client).await;
                }
                let rss0: Vec<u64> = servers.iter().map(|s| s.rss_kib().0).collect();
                // Sample every node's RSS while the load runs.
                let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
                let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop = done.clone();
                let sampler = tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let mut total = 0u64;
                        for pid in &pids {
                            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                            total += status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                        }
                        samples.push(total);
                    }
                    samples
                });
                let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
                let mut run = drive(client.clone(), &bases, "mixed", 64, seconds, questions.clone(), turns.clone()).await;
                done.store(true, std::sync::atomic::Ordering::Release);
                let samples = sampler.await.expect("sampler");
                let backend = if store.is_some() { "PostgreSQL" } else { "sled" };
                println!("mixed load: 90% search / 10% add, concurrency 64, {seconds} s, {nodes} node(s) on {backend}");
                println!("{header}");
                row("mixed", 64, &mut run);
                per_status(&mut run);
                let five_xx: usize = run.statuses.iter().filter(|(s, _)| **s >= 500 || **s == 0).map(|(_, n)| n).sum();
                println!("5xx or failed connections: {five_xx}");
                for (i, s) in servers.iter().enumerate() {
                    // What each node served, from its own /metrics.
                    let metrics = client.get(format!("{}/metrics", s.base)).send().await.expect("metrics").text().await.expect("metrics body");
                    let sum = |name: &str| -> f64 {
                        metrics.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
                    };
                    println!("node {i}: {:.0} HTTP requests, {:.0} messages added", sum("memoryd_http_requests_total"), sum("memoryd_messages_added_total"));
                    let (rss1, hwm) = s.rss_kib();
                    println!("node {i} RSS: {:.1} MiB before the load, {:.1} MiB after, peak (VmHWM) {:.1} MiB", rss0[i] as f64 / 1024.0, rss1 as f64 / 1024.0, hwm as f64 / 1024.0);
                }
                let top = samples.iter().copied().max().unwrap_or(0);
                println!("all nodes' RSS together, sampled every 500 ms: at most {:.1} MiB ({} samples)", top as f64 / 1024.0, samples.len());
                if nodes > 1 {
                    // A write acknowledged by the first node, searched for on the last
                    // until it is found: the lag between nodes right after the load.
                    let token = format!("zqprobe{}", std::process::id());
                    let sent = Instant::now();
                    let r = client
                        .post(format!("{}/v1/namespaces/load/messages", bases[0]))
                        .json(&json!({"messages": [{"role": "user", "content": format!("the probe {token} was written on node 0")}]}))
                        .send()
                        .await
                        .expect("probe write");
                    assert_eq!(r.status().as_u16(), 201, "probe write");
                    let acked = sent.elapsed();
                    let last = bases.last().expect("nodes");
                    let found = loop {
                        let r = client
                            .post(format!("{last}/v1/namespaces/load/search"))
                            .json(&json!({"query": token, "k": 1, "mode": "lexical"}))
                            .send()
                            .await
                            .expect("probe search");
                        let body: serde_json::Value = r.json().await.expect("probe body");
                        if body["hits"][0]["message"]["content"].as_str().is_some_and(|c| c.contains(&token)) {
                            break sent.elapsed();
                        }
                        assert!(sent.elapsed() < Duration::from_secs(30), "node {} never saw the probe", nodes - 1);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    };
                    println!(
                        "a write acknowledged by node 0 after {:.1} ms was found by a search on node {} after {:.1} ms",
                        acked.as_secs_f64() * 1e3,
                        nodes - 1,
                        found.as_secs_f64() * 1e3
                    );
                }
            });
        }
        _ => {
            let server = Server::start(&bin, &["--embed-queue", "8"]);
            rt.block_on(async {
                server.ready(&client, &turns).await;
                let mut run = drive(client.clone(), std::slice::from_ref(&server.base), "mixed", 64, seconds, questions.clone(), turns.clone()).await;
                println!("overload: 90% search / 10% add, concurrency 64, embedding queue of 8 jobs, {seconds} s");
                println!("{header}");
                row("mixed", 64, &mut run);
                per_status(&mut run);
                let (_, hwm) = server.rss_kib();
                println!("server peak RSS (VmHWM) {:.1} MiB", hwm as f64 / 1024.0);
            });
        }
    }
}
