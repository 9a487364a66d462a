//! What a message costs in memory, part by part (issue 19): `cargo bench --bench
//! memory` (`MEMORYD_SCALE_N`, default 100,000; `MEMORYD_SCALE_GRAPH_N`, default
//! the same, caps the rows the graph part is built from: a graph of 1M takes
//! ~15 min to build on 2 cores; the graph's share then uses the rows' cost
//! measured at N, which differs a little by how `Vec`s and maps grow).
//!
//! The data are the scale bench's (`benches/common/scale_data.rs`: LoCoMo turns
//! with varied speakers and dates, real-model vectors, perturbed copies past the
//! cache). Each part is built alone, in this order, and kept:
//! 1. BM25: `LexicalIndex::push_message` of the N messages, in one namespace
//!    and over namespaces of `MEMORYD_MEMORY_PER_NS` messages (each row with
//!    the process-wide dictionary of the terms' text; under 1,024 documents a
//!    namespace keeps no postings);
//! 2. rows under the graph threshold: `NamespaceIndex::rebuilt_from` a snapshot
//!    of the N messages with their vectors (what an exact scan holds: f16);
//! 3. the same rows with a graph (`NamespaceIndex::rebuilt_from`, M 16,
//!    ef_construction 100): f16 points in hnsw_rs, the rows, no other copies;
//! 4. the model, then a whole engine holding the N messages in one namespace,
//!    reopened after its graph was dumped (what a restarted server holds but
//!    the model; the rest over the parts above is sled, the change log,
//!    caches and tasks);
//! 5. the same N messages in namespaces of `MEMORYD_MEMORY_PER_NS` (default
//!    100) in an engine reopened: what a namespace costs on its own
//!    (`MEMORYD_MEMORY_PARTS=many` runs only this and parts 1, 2 and the model).
//!
//! Bytes are the heap bytes the allocator was asked for and not given back,
//! counted by [`cap::Cap`] around the `memoryd` binary's allocator (mimalloc;
//! the system's with `--no-default-features`); the allocator's own overhead and
//! fragmentation are not in them, RSS (printed beside, after each part; freed
//! memory is not always given back) has them.

mod common;

use std::time::Instant;

use cap::Cap;
use common::scale_data::{env_usize, message, vectors_for};
use memoryd::IndexConfig;
use memoryd::search::lexical::LexicalIndex;
use memoryd::search::vector::NamespaceIndex;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);
#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// VmRSS of this process, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// One table row: a part's live heap bytes per message and in all, the time it
/// took and RSS after it.
fn row(what: &str, bytes: isize, n: usize, secs: f64) {
    println!(
        "| {what} | {:.0} | {:.1} | {secs:.1} s | {:.0} MiB |",
        bytes as f64 / n as f64,
        bytes as f64 / MIB,
        rss_mib()
    );
}

/// Waits until no background thread is still freeing (or allocating): the
/// live heap moved by under 1 MiB in half a second.
/// Gives up after a minute (a thread that never stops allocating).
fn settle() {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while Instant::now() < deadline {
        let before = ALLOCATOR.allocated() as f64;
        std::thread::sleep(std::time::Duration::from_millis(500));
        if (ALLOCATOR.allocated() as f64 - before).abs() < MIB {
            return;
        }
    }
    eprintln!("the heap did not settle within a minute");
}

/// Runs `f` and returns what it built with the live heap bytes it added.
fn measured<T>(f: impl FnOnce() -> T) -> (T, isize, f64) {
    let before = ALLOCATOR.allocated() as isize;
    let started = Instant::now();
    let out = f();
    let secs = started.elapsed().as_secs_f64();
    (out, ALLOCATOR.allocated() as isize - before, secs)
}

fn main() {
    let n = env_usize("MEMORYD_SCALE_N", 100_000);
    let graph_n = env_usize("MEMORYD_SCALE_GRAPH_N", n).min(n);
    let turns = common::locomo_turns();
    let vecs = vectors_for(&turns, n);
    let dim = vecs.len() / n.max(common::scale_data::POOL);
    let messages: Vec<memoryd::Message> = (0..n)
        .map(|i| {
            let m = message(&turns, i);
            memoryd::Message {
                id: String::new(),
                namespace: "big".into(),
                role: m.role,
                name: m.name,
                content: m.content,
                timestamp: m.timestamp.expect("timestamped"),
                agent_id: m.agent_id,
                session_id: m.session_id,
                exchange_id: None,
                metadata: Default::default(),
            }
        })
        .collect();
    println!(
        "\n| {n} messages (graph part: {graph_n}) | live heap bytes / message | MiB | took | RSS after |\n|---|---|---|---|---|"
    );
    println!(
        "| inputs: messages and vectors (not part of the index) | {:.0} | {:.1} | | {:.0} MiB |",
        ALLOCATOR.allocated() as f64 / n as f64,
        ALLOCATOR.allocated() as f64 / MIB,
        rss_mib()
    );

    let (lexical, bytes, secs) = measured(|| {
        let mut lex = LexicalIndex::new();
        for (i, m) in messages.iter().enumerate() {
            lex.push_message(i as u64, m);
        }
        lex
    });
    row(
        "BM25 (postings, per-document terms, dictionary)",
        bytes,
        n,
        secs,
    );
    // Dropped before the next part, which then pays for the dictionary's text
    // too (it is shared by every index alive).
    drop(lexical);

    // The same messages over namespaces of `per` (the `many` layout): each has
    // its own statistics; the terms' text is in the shared dictionary.
    let per = env_usize("MEMORYD_MEMORY_PER_NS", 100).max(1);
    let (spread, bytes, secs) = measured(|| {
        messages
            .chunks(per)
            .enumerate()
            .map(|(c, chunk)| {
                let mut lex = LexicalIndex::new();
                for (i, m) in chunk.iter().enumerate() {
                    lex.push_message((c * per + i) as u64, m);
                }
                lex
            })
            .collect::<Vec<_>>()
    });
    row(
        &format!("BM25 over namespaces of {per} messages each"),
        bytes,
        n,
        secs,
    );
    drop(spread);

    let config = IndexConfig {
        exact_threshold: usize::MAX,
        ..IndexConfig::default()
    };
    let mut idx = NamespaceIndex::new(dim, config);
    for (i, m) in messages.iter().enumerate() {
        idx.push(i as u64, m, &vecs[i * dim..(i + 1) * dim]);
    }
    let snapshot = idx.snapshot();
    drop(idx);
    // Rebuilt from a snapshot, as maintenance does: the f16 vectors in one
    // allocation of their exact size (pushed one by one they sit in a Vec whose
    // unused capacity is allocated but mostly never touched, so not resident).
    let (exact, bytes, secs) = measured(|| NamespaceIndex::rebuilt_from(&snapshot));
    drop(snapshot);
    let f16_bytes = (n * dim * 2) as isize;
    row("rows, exact scan: f16 vectors and rows", bytes, n, secs);
    row(
        "- of which f16 vectors (computed: dim × 2 B)",
        f16_bytes,
        n,
        0.0,
    );
    row(
        "- of which rows (seq, kind, time, role, names, seq map)",
        bytes - f16_bytes,
        n,
        0.0,
    );
    let rows_bytes = (bytes - f16_bytes) as f64 / n as f64;
    drop(exact);

    // MEMORYD_MEMORY_PARTS=many: only the parts the many-namespace engine is
    // compared with (no graph, no single-namespace engine).
    let only_many = std::env::var("MEMORYD_MEMORY_PARTS").as_deref() == Ok("many");
    if !only_many {
        graph_part(&messages, &vecs, dim, graph_n, rows_bytes);
    }
    let new = messages_as_new(&turns, n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (embedder, bytes, secs) = measured(common::embedder);
    row(
        "the model (all-MiniLM-L6-v2 weights and tokenizer)",
        bytes,
        n,
        secs,
    );
    if !only_many {
        engine(&rt, &embedder, &new, &vecs, dim);
    }
    many(&rt, &embedder, &new, &vecs, dim);
}

/// Rows with a graph: f16 points in hnsw_rs, the rows (`rows_bytes` a row,
/// measured before), no other copies.
fn graph_part(
    messages: &[memoryd::Message],
    vecs: &[f32],
    dim: usize,
    graph_n: usize,
    rows_bytes: f64,
) {
    let graph_config = IndexConfig {
        exact_threshold: 1,
        ..IndexConfig::default()
    };
    let mut idx = NamespaceIndex::new(dim, graph_config);
    for (i, m) in messages.iter().take(graph_n).enumerate() {
        idx.push(i as u64, m, &vecs[i * dim..(i + 1) * dim]);
    }
    let snapshot = idx.snapshot();
    drop(idx);
    let (graph, bytes, secs) = measured(|| NamespaceIndex::rebuilt_from(&snapshot));
    drop(snapshot);
    row(
        "rows with a graph (f16 points, hnsw_rs links, rows)",
        bytes,
        graph_n,
        secs,
    );
    let graph_only = bytes as f64 - rows_bytes * graph_n as f64;
    row(
        "- of which the graph (the above less the rows)",
        graph_only as isize,
        graph_n,
        0.0,
    );
    row(
        "- of which f16 points (computed: dim × 2 B)",
        (graph_n * dim * 2) as isize,
        graph_n,
        0.0,
    );
    drop(graph);
}

/// The engine both engine parts open: the bench's model, no summaries.
fn engine_config(dir: &std::path::Path) -> memoryd::EngineConfig {
    memoryd::EngineConfig {
        model: common::model_config(),
        summarize: memoryd::SummarizeConfig {
            enabled: false,
            ..memoryd::SummarizeConfig::default()
        },
        ..memoryd::EngineConfig::with_data_dir(dir)
    }
}

/// Writes `messages` with their vectors `[n · dim]` into `e`, `chunk` a batch,
/// the i-th batch into namespace `namespace(i)`.
fn load(
    rt: &tokio::runtime::Runtime,
    e: &memoryd::Engine,
    messages: &[memoryd::NewMessage],
    vecs: &[f32],
    dim: usize,
    chunk: usize,
    namespace: impl Fn(usize) -> String,
) {
    let n = messages.len();
    rt.block_on(async {
        for (i, start) in (0..n).step_by(chunk).enumerate() {
            let end = (start + chunk).min(n);
            e.add_batch_with_embeddings(
                &memoryd::Access::full(),
                &namespace(i),
                messages[start..end].to_vec(),
                vecs[start * dim..end * dim].to_vec(),
            )
            .await
            .unwrap();
        }
    });
}

/// After an engine is dropped: a background thread (a dump in progress) may
/// hold it a while, so waits (up to 5 min) until the live heap is back within
/// 32 MiB of `base`, then for quiet.
fn wait_released(base: usize) {
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while ALLOCATOR.allocated() > base + (32 << 20) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    settle();
}

fn messages_as_new(turns: &[String], n: usize) -> Vec<memoryd::NewMessage> {
    (0..n).map(|i| message(turns, i)).collect()
}

/// The whole engine: the model, then an engine holding the N messages in one
/// namespace, loaded, dumped, dropped and reopened (the graph reloaded from its
/// dump, as after a restart, and the rows written after the dump inserted). Its live heap less the parts above is what the
/// rest costs: sled (its page cache is 64 MiB), the change log, caches, tasks.
fn engine(
    rt: &tokio::runtime::Runtime,
    embedder: &std::sync::Arc<dyn memoryd::Embedder>,
    messages: &[memoryd::NewMessage],
    vecs: &[f32],
    dim: usize,
) {
    use memoryd::Engine;
    let n = messages.len();
    let dir = tempfile::tempdir().unwrap();
    let config = || engine_config(dir.path());
    let base = ALLOCATOR.allocated();
    let e = Engine::open_with_embedder(config(), embedder.clone()).unwrap();
    load(rt, &e, messages, vecs, dim, 1000, |_| "big".into());
    // A dump is in place once its manifest is.
    let has_dump = || {
        std::fs::read_dir(dir.path().join("graphs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|ns| std::fs::read_dir(ns.path()).ok())
            .flatten()
            .flatten()
            .any(|g| g.path().join("manifest.json").exists())
    };
    // Until the graph has caught up with the load (the last dump covers all
    // but under max(5,000, a tenth) of the rows: the tail a restart inserts).
    while n >= e.config().index.exact_threshold && {
        let s = e.stats();
        s.graph_namespaces == 0 || s.graph_tail_rows > 0 || !has_dump()
    } {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(e);
    wait_released(base);
    eprintln!(
        "engine dropped: {:.1} MiB live over the heap before it",
        (ALLOCATOR.allocated() as f64 - base as f64) / MIB
    );
    if n >= IndexConfig::default().exact_threshold {
        use memoryd::search::persist;
        let ns_dir = persist::namespace_dir(&dir.path().join("graphs"), "big");
        let (loaded, bytes, secs) =
            measured(|| persist::load(&ns_dir, "big", dim, &IndexConfig::default()));
        let covered = loaded.as_ref().expect("the dump reloads").seqs.len();
        drop(loaded);
        row(
            &format!("the graph read back from its dump of {covered} points (hnsw_rs's reader)"),
            bytes,
            covered,
            secs,
        );
    }
    let (e, bytes, secs) = measured(|| {
        let e = Engine::open_with_embedder(config(), embedder.clone()).unwrap();
        rt.block_on(e.wait_graph_reloads());
        // Rows the dump did not cover (written after it) are inserted next.
        while e.stats().graph_tail_rows > 0 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        settle();
        e
    });
    row(
        "the engine reopened, graph reloaded (everything but the model)",
        bytes,
        n,
        secs,
    );
    drop(e);
}

/// The same N messages in namespaces of `MEMORYD_MEMORY_PER_NS` (default 100)
/// each, in an engine loaded, dropped and reopened: its live heap, in all and
/// per namespace. Less the per-message parts measured above (rows, f16
/// vectors, BM25 over namespaces of that size) it is what each namespace costs
/// on its own, plus sled's cache (64 MiB in all) and the spare capacity the
/// reopened engine's arrays grew into one row at a time (the parts above are
/// built at their exact size: ~200 B a message of f16 vectors at 100 a
/// namespace). "took" includes waiting for the heap to settle (≥ 0.5 s).
fn many(
    rt: &tokio::runtime::Runtime,
    embedder: &std::sync::Arc<dyn memoryd::Embedder>,
    messages: &[memoryd::NewMessage],
    vecs: &[f32],
    dim: usize,
) {
    use memoryd::Engine;
    let n = messages.len();
    let per = env_usize("MEMORYD_MEMORY_PER_NS", 100).max(1);
    let nss = n.div_ceil(per);
    let dir = tempfile::tempdir().unwrap();
    let config = || engine_config(dir.path());
    let base = ALLOCATOR.allocated();
    let e = Engine::open_with_embedder(config(), embedder.clone()).unwrap();
    load(rt, &e, messages, vecs, dim, per, |i| format!("ns-{i}"));
    drop(e);
    wait_released(base);
    let (e, bytes, secs) = measured(|| {
        let e = Engine::open_with_embedder(config(), embedder.clone()).unwrap();
        settle();
        e
    });
    row(
        &format!("the engine reopened with {nss} namespaces of {per} (everything but the model)"),
        bytes,
        n,
        secs,
    );
    println!(
        "| - the same per namespace (all parts) | | {:.3} | | |",
        bytes as f64 / nss as f64 / MIB
    );
    drop(e);
}
