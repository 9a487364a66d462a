//! HTTP load on loopback: starts `memoryd serve` (release binary) on a free port
//! with a fresh data directory, preloads one LoCoMo conversation, then drives
//! search and add at concurrency 1, 16 and 64 for a bounded time each and prints
//! QPS, p50/p95/p99 latency and the status codes seen (429s included).
//!
//! `cargo build --release && cargo bench --bench http_load -- [--seconds 10]`

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
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
    latencies_ms: Vec<f64>,
    elapsed: Duration,
}

async fn drive(
    client: reqwest::Client,
    base: String,
    mode: &'static str,
    concurrency: usize,
    seconds: u64,
    texts: Arc<Vec<String>>,
) -> Run {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let base = base.clone();
        let texts = texts.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            let mut i = w;
            // Bounded in time and in count.
            while Instant::now() < deadline && lat.len() < 100_000 {
                i = (i + concurrency) % texts.len();
                let t = Instant::now();
                let resp = if mode == "search" {
                    client
                        .post(format!("{base}/v1/namespaces/load/search"))
                        .json(&json!({"query": texts[i], "k": 10}))
                        .send()
                        .await
                } else {
                    client
                        .post(format!("{base}/v1/namespaces/load-add/messages"))
                        .json(&json!({"messages": [{"role": "user", "content": texts[i]}]}))
                        .send()
                        .await
                };
                let status = resp.map(|r| r.status().as_u16()).unwrap_or(0);
                *statuses.entry(status).or_default() += 1;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            (lat, statuses)
        }));
    }
    let mut run = Run {
        ok: 0,
        statuses: BTreeMap::new(),
        latencies_ms: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (lat, st) = t.await.expect("worker");
        run.latencies_ms.extend(lat);
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = arg(&args, "--seconds").map_or(10, |s| s.parse().expect("integer"));
    let bin = common::repo_path("target/release/memoryd");
    if !bin.exists() {
        eprintln!("build the server first: cargo build --release");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--no-background-summarize",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--models-dir")
        .arg(common::repo_path("models"))
        .env("MEMORYD_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("memoryd starts");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let turns = Arc::new(common::locomo_turns());
    let questions = Arc::new(common::locomo_questions());
    rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().expect("client");
        let ready = Instant::now() + Duration::from_secs(120);
        while client.get(format!("{base}/health")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            assert!(Instant::now() < ready, "server not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Preload one conversation (conv-26, 419 turns).
        let conv: Vec<_> = turns.iter().take(419).map(|t| json!({"role": "user", "content": t})).collect();
        for chunk in conv.chunks(100) {
            client.post(format!("{base}/v1/namespaces/load/messages")).json(&json!({"messages": chunk})).send().await.expect("preload");
        }
        println!("| route | concurrency | requests | QPS | p50 ms | p95 ms | p99 ms | statuses |\n|---|---|---|---|---|---|---|---|");
        for mode in ["search", "add"] {
            for c in [1usize, 16, 64] {
                let texts = if mode == "search" { questions.clone() } else { turns.clone() };
                let mut run = drive(client.clone(), base.clone(), mode, c, seconds, texts).await;
                let p = memoryd::eval::Percentiles::of(&mut run.latencies_ms);
                println!(
                    "| {mode} | {c} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:?} |",
                    run.latencies_ms.len(),
                    run.ok as f64 / run.elapsed.as_secs_f64(),
                    p.p50,
                    p.p95,
                    p.p99,
                    run.statuses
                );
            }
        }
    });
    let _ = child.kill();
    let _ = child.wait();
}
