//! One node at scale (issue 19): restart, memory, ingest and search at 100k
//! messages in one namespace, and many small namespaces.
//!
//! `cargo bench --bench scale -- big` (default `MEMORYD_SCALE_N=100000`):
//! 1. N LoCoMo-like turns (LoCoMo text with a varied name in front and a date of
//!    its own; each turn appears under 4 names, so at 100k every text is there
//!    4–5 times) with vectors from the real model,
//!    embedded once and cached under `$MEMORYD_CACHE/scale/` (~11 min the first
//!    time on 2 cores; a rerun reads the file);
//! 2. bulk load through `Engine::add_batch_with_embeddings` (1,000 per batch: one
//!    transaction and one fsync each), until the graph has caught up and is dumped;
//! 3. hybrid and dense search p50/p95 over 200 LoCoMo questions (query embedding
//!    included, no query cache), and the dense search's recall@10 against an exact
//!    scan of the same vectors;
//! 4. sustained ingest while the graph exists through `add_batch` (the model
//!    embeds them), 32 turns per request: 1,024 turns from one writer, then
//!    2,048 from four concurrent writers (`MEMORYD_EMBED_SLICE_TOKENS` sets how
//!    writes are cut into forward passes);
//! 5. restart: `Engine::open` until it returns and until the first search
//!    answers, with the graph dump (the default: reloaded in the background
//!    after open; the time until it is in and the hybrid p50 meanwhile are
//!    reported) and without (`persist_graphs: false`: exact scan at once, the
//!    graph rebuilt in the background; its build time is reported too);
//! 6. RSS (`VmRSS`) after each phase, and the restart's peak (`VmHWM`).
//!    `MEMORYD_LOG=info` logs where a restart's time goes (stderr).
//!
//! `MEMORYD_SCALE_N=1000000`: past the 102,048 cached real-model vectors each
//! message gets a perturbed copy of a cached vector of the same text
//! ([`vectors_for`]); with `MEMORYD_SCALE_KEEP` (~5 GB), ~25 min.
//!
//! `cargo bench --bench scale -- graph`: HNSW build time and recall@10 against
//! the exact scan on the cached real vectors, per ef_construction
//! (`MEMORYD_SCALE_EF_CONSTRUCTION=100,200`, `MEMORYD_INDEX_THREADS`).
//!
//! `cargo bench --bench scale -- many` (`MEMORYD_SCALE_NAMESPACES=10000`,
//! `MEMORYD_SCALE_PER_NS=100`): that many namespaces of that many messages each
//! (vectors reused from the cache), open time, RSS, and search p50 over random
//! namespaces.
//!
//! With `MEMORYD_STORE=postgres://…` every part runs against PostgreSQL
//! (searches in pgvector; add `MEMORYD_IN_MEMORY_INDEX=1` for the node-local
//! index); give each run a fresh database.
//!
//! Restarts and the spread searches run in fresh child processes of the bench
//! (`reopen`, `spread`), so their RSS is a restarted server's. 1M messages over
//! 100 namespaces: `MEMORYD_SCALE_NAMESPACES=100 MEMORYD_SCALE_PER_NS=10000
//! cargo bench --bench scale -- many`.

mod common;

use common::scale_data::{POOL, env_usize, message, turn, vectors, vectors_for};

/// The allocator the `memoryd` binary runs with (src/main.rs), so the restarted
/// processes' RSS is a server's; `--no-default-features` keeps the system's for
/// a comparison.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use memoryd::{Access, Engine, EngineConfig, Role, SearchMode, SearchRequest, SummarizeConfig};

/// VmRSS of this process, MiB.
fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A `/proc/self/status` field in kB, as MiB (`VmHWM:`: the peak RSS).
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        model: common::model_config(),
        summarize: SummarizeConfig {
            enabled: false,
            ..SummarizeConfig::default()
        },
        query_cache_capacity: 0,
        // MEMORYD_STORE=postgres://…: the same figures with the state (and, unless
        // MEMORYD_IN_MEMORY_INDEX is set, the dense channel) in PostgreSQL.
        store_url: std::env::var("MEMORYD_STORE").ok(),
        in_memory_index: std::env::var_os("MEMORYD_IN_MEMORY_INDEX").is_some(),
        // How writes are cut into forward passes (memoryd's --embed-slice-tokens).
        embed_slice_tokens: env_usize(
            "MEMORYD_EMBED_SLICE_TOKENS",
            EngineConfig::default().embed_slice_tokens,
        ),
        ..EngineConfig::with_data_dir(dir)
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p95 of `queries` in `mode` on `ns`, ms.
async fn search_ms(e: &Engine, ns: &str, queries: &[String], mode: SearchMode) -> (f64, f64) {
    latency_ms(
        e,
        queries.iter().map(|q| {
            (
                ns.to_owned(),
                SearchRequest::text(q.clone(), 10).with_mode(mode),
            )
        }),
    )
    .await
}

/// p50 and p95 of `searches` (namespace, request), one after another, ms.
async fn latency_ms(
    e: &Engine,
    searches: impl Iterator<Item = (String, SearchRequest)>,
) -> (f64, f64) {
    let mut t = Vec::new();
    for (ns, request) in searches {
        let s = Instant::now();
        let hits = e.search(&Access::full(), &ns, request).await.unwrap();
        t.push(s.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(hits);
    }
    t.sort_by(f64::total_cmp);
    (pct(&t, 0.5), pct(&t, 0.95))
}

/// Recall@10 of the engine's dense search (by vector, as served: HNSW past the
/// threshold, in memory or in PostgreSQL) against an exact scan of `vecs` (the
/// stored vectors, `[n, 384]`, message `i` is row `i`), over `questions`
/// embedded by the model. The texts repeat (each LoCoMo turn under a few
/// speakers, identical vectors), so rows are matched by content as a multiset:
/// a text found m times among the hits and e times in the exact top 10 counts
/// min(m, e). Returns (that recall, recall counting any hit that scores at least
/// the exact 10th less 0.001: near-copies under other speakers tie within a
/// hair). Needs at least 10 rows.
async fn dense_recall(
    e: &Engine,
    turns: &[String],
    questions: &[String],
    vecs: &[f32],
) -> (f64, f64) {
    use std::collections::HashMap;
    let dim = 384;
    let n = vecs.len() / dim;
    assert!(n >= 10, "dense recall@10 needs at least 10 rows");
    let refs: Vec<&str> = questions.iter().map(|q| q.as_str()).collect();
    let queries = common::embedder().embed(&refs).unwrap().data;
    let (mut found, mut near, mut total) = (0usize, 0usize, 0usize);
    for q in queries.chunks_exact(dim) {
        let mut exact: Vec<(f32, usize)> = vecs
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        exact.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
        exact.truncate(10);
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let tenth = exact[9].0;
        let hits = e
            .search(
                &Access::full(),
                "big",
                SearchRequest::vector(q.to_vec(), 10).with_mode(SearchMode::Dense),
            )
            .await
            .unwrap()
            .hits;
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for (_, i) in &exact {
            *wanted.entry(turn(turns, *i).0).or_default() += 1;
        }
        for h in &hits {
            if let Some(left) = h
                .message
                .as_ref()
                .and_then(|m| wanted.get_mut(&m.content))
                .filter(|left| **left > 0)
            {
                *left -= 1;
                found += 1;
            }
        }
        near += hits.iter().filter(|h| h.score >= tenth - 1e-3).count();
        total += 10;
    }
    (found as f64 / total as f64, near as f64 / total as f64)
}

/// The runtime every part of the bench searches from (two workers, like the server
/// on this machine).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn wait_caught_up(e: &Engine) {
    loop {
        let s = e.stats();
        // Below the threshold no graph is wanted (exact scans).
        let mut threshold = e.config().index.exact_threshold;
        if e.config().store_url.is_some() && !e.config().in_memory_index {
            threshold = threshold.min(memoryd::search::store::STORE_GRAPH_THRESHOLD);
        }
        if s.messages < threshold || (s.graph_namespaces > 0 && s.graph_tail_rows == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(what: &str, value: String) {
    println!("| {what} | {value} |");
}

/// Whether the `MEMORYD_SCALE_KEEP` directory `dir` already holds `dataset`
/// (then a rerun only restarts); marks an empty one for it. Panics when it holds
/// another dataset, whose figures would be printed under the wrong heading.
fn kept_dataset(dir: &std::path::Path, dataset: &str) -> bool {
    let mark = dir.join("scale-dataset");
    match std::fs::read_to_string(&mark) {
        Ok(held) if held == dataset => dir.join("sled").exists(),
        Ok(held) => panic!("{} holds {held:?}, not {dataset:?}", dir.display()),
        Err(_) if dir.join("sled").exists() => {
            panic!("{} holds an unmarked store", dir.display())
        }
        Err(_) => {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&mark, dataset).unwrap();
            false
        }
    }
}

fn big() {
    let n = env_usize("MEMORYD_SCALE_N", 100_000);
    let turns = common::locomo_turns();
    let questions: Vec<String> = common::locomo_questions().into_iter().take(200).collect();
    let vecs = vectors_for(&turns, n + 2048);
    let dim = 384;
    let rt = runtime();
    // MEMORYD_SCALE_KEEP=DIR: load into DIR and keep it (a rerun on a loaded DIR
    // only restarts), for looking at restarts alone.
    let kept = std::env::var_os("MEMORYD_SCALE_KEEP").map(PathBuf::from);
    if let Some(k) = &kept
        && kept_dataset(k, &format!("big {n}"))
    {
        reopen_child(k, "big", true);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir: &std::path::Path = kept.as_deref().unwrap_or(tmp.path());
    let rss0 = rss_mib();
    println!("\n| {n} messages in one namespace | |\n|---|---|");
    rt.block_on(async {
        let e = Engine::open_with_embedder(config(dir), common::embedder()).unwrap();
        let started = Instant::now();
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            let msgs = (start..end).map(|i| message(&turns, i)).collect();
            e.add_batch_with_embeddings(
                &Access::full(),
                "big",
                msgs,
                vecs[start * dim..end * dim].to_vec(),
            )
            .await
            .unwrap();
        }
        let loaded = started.elapsed().as_secs_f64();
        row(
            "bulk load (stored + BM25, vectors given)",
            format!("{loaded:.1} s, {:.0} msg/s", n as f64 / loaded),
        );
        wait_caught_up(&e).await;
        row(
            "graph caught up (built in the background while loading, then dumped)",
            format!("{:.1} s after the start", started.elapsed().as_secs_f64()),
        );
        row(
            "RSS after load",
            format!(
                "{:.0} MiB ({:.0} MiB over the empty engine, {:.0} B/message)",
                rss_mib(),
                rss_mib() - rss0,
                (rss_mib() - rss0) * 1048576.0 / n as f64
            ),
        );
        let (h50, h95) = search_ms(&e, "big", &questions, SearchMode::Hybrid).await;
        let (d50, d95) = search_ms(&e, "big", &questions, SearchMode::Dense).await;
        let (l50, l95) = search_ms(&e, "big", &questions, SearchMode::Lexical).await;
        row("hybrid search p50 / p95", format!("{h50:.2} / {h95:.2} ms"));
        row("dense search p50 / p95", format!("{d50:.2} / {d95:.2} ms"));
        row(
            "lexical search p50 / p95",
            format!("{l50:.2} / {l95:.2} ms"),
        );
        let (found, near) = dense_recall(&e, &turns, &questions, &vecs[..n * dim]).await;
        row(
            "dense recall@10 against the exact scan (200 questions; with ties within 0.001)",
            format!("{found:.3} ({near:.3})"),
        );

        // Sustained ingest with the model on the write path, graph present: one
        // writer, then four concurrent writers (agents), 32 turns per request.
        // The ceiling: the model alone on the same kind of texts, 32 per call.
        let model = common::embedder();
        let texts: Vec<String> = (0..1024).map(|i| turn(&turns, n + 4096 + i).0).collect();
        let began = Instant::now();
        for chunk in texts.chunks(32) {
            let refs: Vec<&str> = chunk.iter().map(|t| t.as_str()).collect();
            std::hint::black_box(model.embed(&refs).unwrap());
        }
        row(
            "the model alone on 1,024 such turns, 32 per call (the ceiling)",
            format!("{:.0} turns/s", 1024.0 / began.elapsed().as_secs_f64()),
        );
        drop(model);
        let started = Instant::now();
        let mut next = n;
        for writers in [1usize, 4] {
            let per_writer = 1024 / writers * writers.min(2);
            let began = Instant::now();
            let streams = (0..writers).map(|w| {
                let first = next + w * per_writer;
                let e = e.clone();
                let turns = &turns;
                async move {
                    for start in (first..first + per_writer).step_by(32) {
                        let msgs = (start..start + 32).map(|i| message(turns, i)).collect();
                        e.add_batch(&Access::full(), "big", msgs).await.unwrap();
                    }
                }
            });
            futures::future::join_all(streams).await;
            next += writers * per_writer;
            row(
                &format!("ingest with embedding, graph present ({writers} writer(s), 32 turns per request)"),
                format!(
                    "{:.0} turns/s",
                    (writers * per_writer) as f64 / began.elapsed().as_secs_f64()
                ),
            );
        }
        wait_caught_up(&e).await;
        row(
            "graph tail caught up after that ingest",
            format!("{:.1} s after it began", started.elapsed().as_secs_f64()),
        );
        e.flush().await.unwrap();
    });
    drop(rt);
    // Restarts, each in a fresh process (clean RSS): with the dump, then without.
    reopen_child(dir, "big", true);
    if kept.is_none() {
        reopen_child(dir, "big", false);
    }
    if std::env::var_os("MEMORYD_STORE").is_some() {
        let e = Engine::open_with_embedder(config(dir), common::embedder()).unwrap();
        std::thread::sleep(Duration::from_secs(2)); // pg_database_size is read on connect
        row(
            "PostgreSQL database size",
            format!("{:.0} MiB", e.stats().disk_bytes as f64 / 1048576.0),
        );
    }
    let size: u64 = walk(&dir.join("graphs"));
    row(
        "graph dump on disk",
        format!("{:.0} MiB", size as f64 / 1048576.0),
    );
    row(
        "store on disk",
        format!(
            "{:.0} MiB",
            walk(dir) as f64 / 1048576.0 - size as f64 / 1048576.0
        ),
    );
}

/// Runs `reopen` in a child process of this bench and passes its rows through.
fn reopen_child(dir: &std::path::Path, ns: &str, dumps: bool) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("reopen")
        .env("MEMORYD_SCALE_DIR", dir)
        .env("MEMORYD_SCALE_NS", ns)
        .env("MEMORYD_SCALE_DUMPS", if dumps { "1" } else { "0" })
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

/// A restart: `Engine::open` on `MEMORYD_SCALE_DIR`, the first search of
/// `MEMORYD_SCALE_NS`, hybrid p50 right after, RSS; without dumps also the time
/// until the background build has caught up.
fn reopen() {
    let dir = PathBuf::from(std::env::var_os("MEMORYD_SCALE_DIR").expect("MEMORYD_SCALE_DIR"));
    let ns = std::env::var("MEMORYD_SCALE_NS").unwrap();
    let dumps = std::env::var("MEMORYD_SCALE_DUMPS").as_deref() == Ok("1");
    if let Ok(filter) = std::env::var("MEMORYD_LOG") {
        // Where the open's time goes (e.g. MEMORYD_LOG=info), on stderr.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let questions: Vec<String> = common::locomo_questions().into_iter().take(200).collect();
    let rt = runtime();
    let embedder = common::embedder();
    let rss_model = rss_mib();
    let t = Instant::now();
    let cfg = EngineConfig {
        persist_graphs: dumps,
        ..config(&dir)
    };
    let e = Engine::open_with_embedder(cfg, embedder).unwrap();
    let opened = t.elapsed().as_secs_f64();
    let rss_opened = rss_mib();
    let first = rt.block_on(async {
        e.search(
            &Access::full(),
            &ns,
            SearchRequest::text(questions[0].clone(), 10),
        )
        .await
        .unwrap();
        t.elapsed().as_secs_f64()
    });
    let label = if dumps {
        "with graph dumps"
    } else {
        "without graph dumps"
    };
    row(
        &format!("restart {label}: open / first search answered"),
        format!("{opened:.2} s / {first:.2} s (RSS when open returned {rss_opened:.0} MiB)"),
    );
    if dumps {
        // Open does not wait for the reload; searches meanwhile are exact scans.
        let (x50, _) = rt.block_on(search_ms(&e, &ns, &questions[..10], SearchMode::Hybrid));
        let busy = e.stats().graphs_reloading > 0;
        rt.block_on(e.wait_graph_reloads());
        let s = e.stats();
        row(
            "  graph reloaded in the background",
            format!(
                "{:.2} s after the start (graphs reloaded {}, tail {}); hybrid p50 while reloading {}",
                t.elapsed().as_secs_f64(),
                s.graphs_reloaded,
                s.graph_tail_rows,
                if busy {
                    format!("{x50:.2} ms (10 questions)")
                } else {
                    "– (it was done)".into()
                }
            ),
        );
    }
    let (h50, h95) = rt.block_on(search_ms(&e, &ns, &questions[..100], SearchMode::Hybrid));
    row(
        "  hybrid p50 / p95 right after (100 questions)",
        format!("{h50:.2} / {h95:.2} ms"),
    );
    if std::env::var_os("MEMORYD_SCALE_CANDIDATES").is_some() {
        // Hybrid latency against the size of each channel's candidate pool.
        for c in [100, 70, 50, 30, 20] {
            let params = memoryd::HybridParams {
                candidates: c,
                ..Default::default()
            };
            let searches = questions.iter().map(|q| {
                let request = SearchRequest::text(q.clone(), 10).with_hybrid(params);
                (ns.clone(), request)
            });
            let (p50, p95) = rt.block_on(latency_ms(&e, searches));
            row(
                &format!("  hybrid p50 / p95 with {c} candidates per channel"),
                format!("{p50:.2} / {p95:.2} ms"),
            );
        }
    }
    row(
        "  RSS after open (fresh process; model alone); peak",
        format!(
            "{:.0} MiB ({:.0} MiB); {:.0} MiB",
            rss_mib(),
            rss_model,
            status_mib("VmHWM:")
        ),
    );
    if !dumps {
        // A namespace big enough for a graph is being built in the background.
        let want = e.config().index.exact_threshold;
        if e.stats().messages >= want {
            rt.block_on(wait_caught_up(&e));
            row(
                "  background graph build (all rows)",
                format!("done {:.0} s after open", t.elapsed().as_secs_f64()),
            );
        }
    }
}

fn walk(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() { walk(&e.path()) } else { m.len() }
            })
            .sum()
    })
}

fn many() {
    let nss = env_usize("MEMORYD_SCALE_NAMESPACES", 10_000);
    let per = env_usize("MEMORYD_SCALE_PER_NS", 100);
    let turns = common::locomo_turns();
    let pool = 100_000;
    let vecs = vectors(&turns, POOL);
    let dim = 384;
    let rt = runtime();
    // MEMORYD_SCALE_KEEP=DIR as in `big`: a rerun on a loaded DIR skips the load.
    let kept = std::env::var_os("MEMORYD_SCALE_KEEP").map(PathBuf::from);
    let loaded = kept
        .as_ref()
        .is_some_and(|k| kept_dataset(k, &format!("many {nss}x{per}")));
    let tmp = tempfile::tempdir().unwrap();
    let dir: &std::path::Path = kept.as_deref().unwrap_or(tmp.path());
    println!("\n| {nss} namespaces × {per} messages | |\n|---|---|");
    let rss0 = rss_mib();
    rt.block_on(async {
        if loaded {
            return;
        }
        let e = Engine::open_with_embedder(config(dir), common::embedder()).unwrap();
        let started = Instant::now();
        for ns in 0..nss {
            for start in (0..per).step_by(1000) {
                let end = (start + 1000).min(per);
                let first = ns * per + start;
                let msgs = (0..end - start)
                    .map(|i| message(&turns, (first + i) % pool))
                    .collect();
                let v: Vec<f32> = (0..end - start)
                    .flat_map(|i| {
                        let r = (first + i) % pool;
                        vecs[r * dim..(r + 1) * dim].to_vec()
                    })
                    .collect();
                e.add_batch_with_embeddings(&Access::full(), &format!("agent-{ns}"), msgs, v)
                    .await
                    .unwrap();
            }
            if nss >= 100 && ns % (nss / 10) == 0 {
                eprintln!("many: {ns}/{nss} namespaces loaded");
            }
        }
        row(
            "load (one batch per namespace)",
            format!("{:.1} s", started.elapsed().as_secs_f64()),
        );
        row(
            "RSS after load",
            format!(
                "{:.0} MiB ({:.0} B/message over the empty engine)",
                rss_mib(),
                (rss_mib() - rss0) * 1048576.0 / (nss * per) as f64
            ),
        );
        e.flush().await.unwrap();
    });
    drop(rt);
    reopen_child(dir, "agent-0", true);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("spread")
        .env("MEMORYD_SCALE_DIR", dir)
        .env("MEMORYD_SCALE_NAMESPACES", nss.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    print!("{}", String::from_utf8_lossy(&out.stdout));
    row(
        "store on disk",
        format!("{:.0} MiB", walk(dir) as f64 / 1048576.0),
    );
}

/// Hybrid search over random namespaces of a `many` directory, fresh process.
fn spread() {
    let dir = PathBuf::from(std::env::var_os("MEMORYD_SCALE_DIR").expect("MEMORYD_SCALE_DIR"));
    let nss = env_usize("MEMORYD_SCALE_NAMESPACES", 10_000);
    let questions: Vec<String> = common::locomo_questions().into_iter().take(200).collect();
    let rt = runtime();
    let e = Engine::open_with_embedder(config(&dir), common::embedder()).unwrap();
    let searches = questions.iter().enumerate().map(|(i, q)| {
        let ns = format!("agent-{}", (i * 7919) % nss);
        (ns, SearchRequest::text(q.clone(), 10))
    });
    let (p50, p95) = rt.block_on(latency_ms(&e, searches));
    row(
        "hybrid search p50 / p95, 200 questions over random namespaces",
        format!("{p50:.2} / {p95:.2} ms"),
    );
}

/// HNSW build time and recall@10 against the exact scan on the real-model
/// vectors (the first `MEMORYD_SCALE_N`, default 100k, of the cache), queried
/// by 200 LoCoMo questions, for each ef_construction in
/// `MEMORYD_SCALE_EF_CONSTRUCTION` (default `100,200`), built on
/// `MEMORYD_INDEX_THREADS` threads (default: all cores but one).
fn graph() {
    use memoryd::search::vector::{NamespaceIndex, Scored};
    let n = env_usize("MEMORYD_SCALE_N", 100_000);
    let turns = common::locomo_turns();
    let vecs = vectors(&turns, n.max(POOL));
    let dim = 384;
    let embedder = common::embedder();
    let questions: Vec<String> = common::locomo_questions().into_iter().take(200).collect();
    let refs: Vec<&str> = questions.iter().map(|q| q.as_str()).collect();
    let queries = embedder.embed(&refs).unwrap().data;
    let efs: Vec<usize> = std::env::var("MEMORYD_SCALE_EF_CONSTRUCTION")
        .unwrap_or_else(|_| "100,200".into())
        .split(',')
        .map(|v| v.trim().parse().expect("MEMORYD_SCALE_EF_CONSTRUCTION"))
        .collect();
    // MEMORYD_INDEX_THREADS: the build pool's size (memoryd's --index-threads).
    memoryd::search::vector::set_graph_threads(env_usize("MEMORYD_INDEX_THREADS", 0));
    let m = memoryd::Message {
        id: String::new(),
        namespace: "graph".into(),
        role: Role::User,
        name: None,
        content: String::new(),
        timestamp: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        agent_id: None,
        session_id: None,
        exchange_id: None,
        metadata: Default::default(),
    };
    println!(
        "\n| HNSW on {n} real vectors (M 16) | build | recall@10 (with ties within 0.001) at ef_search 16 / 32 / 64 / 128 / 256 | p50 at 64 / 256 |\n|---|---|---|---|"
    );
    for ef_c in efs {
        let cfg = memoryd::IndexConfig {
            exact_threshold: 1,
            ef_construction: ef_c,
            ..memoryd::IndexConfig::default()
        };
        let mut idx = NamespaceIndex::new(dim, cfg);
        for (i, v) in vecs[..n * dim].chunks_exact(dim).enumerate() {
            idx.push(i as u64, &m, v);
        }
        let started = Instant::now();
        let mut idx = NamespaceIndex::rebuilt_from(&idx.snapshot());
        let build = started.elapsed().as_secs_f64();
        let all = idx.compile(&memoryd::Filter::default()).unwrap();
        let truth: Vec<Vec<Scored>> = queries
            .chunks_exact(dim)
            .map(|q| idx.search(q, 10, &all, true))
            .collect();
        let mut recalls = Vec::new();
        let mut p50 = Vec::new();
        for ef in [16usize, 32, 64, 128, 256] {
            idx.set_ef_search(ef);
            let mut t = Vec::new();
            let (mut found, mut near) = (0usize, 0usize);
            for (q, truth) in queries.chunks_exact(dim).zip(&truth) {
                let s = Instant::now();
                let got = idx.search(q, 10, &all, false);
                t.push(s.elapsed().as_secs_f64() * 1e3);
                found += truth
                    .iter()
                    .filter(|x| got.iter().any(|g| g.seq == x.seq))
                    .count();
                // Near-duplicates (the same turn under another speaker) tie within
                // a hair: also count hits as good as the exact 10th, less 0.001.
                let tenth = truth.last().map_or(f32::MIN, |x| x.score);
                near += got.iter().filter(|g| g.score >= tenth - 1e-3).count();
            }
            let total = (10 * truth.len()) as f64;
            recalls.push(format!(
                "{:.3} ({:.3})",
                found as f64 / total,
                near as f64 / total
            ));
            t.sort_by(f64::total_cmp);
            if ef == 64 || ef == 256 {
                p50.push(format!("{:.3}", pct(&t, 0.5)));
            }
        }
        println!(
            "| ef_construction {ef_c} | {build:.1} s | {} | {} ms |",
            recalls.join(" / "),
            p50.join(" / ")
        );
    }
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    if which.iter().any(|w| w == "reopen") {
        return reopen();
    }
    if which.iter().any(|w| w == "spread") {
        return spread();
    }
    if all || which.iter().any(|w| w == "big") {
        big();
    }
    if all || which.iter().any(|w| w == "many") {
        many();
    }
    if which.iter().any(|w| w == "graph") {
        graph();
    }
}
