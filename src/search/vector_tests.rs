//! Unit tests of the vector index: exact scan, graph recall, tombstones,
//! filters through the graph (over-fetch and fallback), catch-up.

use super::*;
use crate::core::types::{NewMessage, Role};
use rand::{Rng, SeedableRng};

fn msg(i: usize) -> Message {
    let n = NewMessage::new(
        if i.is_multiple_of(2) {
            Role::User
        } else {
            Role::Assistant
        },
        format!("m{i}"),
    );
    Message {
        id: String::new(),
        namespace: "t".into(),
        role: n.role,
        name: Some(format!("s{}", i % 3)),
        content: n.content,
        timestamp: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
        agent_id: None,
        session_id: Some(format!("sess{}", i % 10)),
        exchange_id: None,
        metadata: Default::default(),
    }
}

fn unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    crate::embed::l2_normalize(&mut v);
    v
}

fn build(n: usize, threshold: usize) -> (NamespaceIndex, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let cfg = IndexConfig {
        exact_threshold: threshold,
        ..IndexConfig::default()
    };
    let mut idx = NamespaceIndex::new(32, cfg);
    let mut vs = Vec::new();
    for i in 0..n {
        let v = unit(&mut rng, 32);
        idx.push(i as u64 + 1, &msg(i), &v);
        vs.push(v);
    }
    (idx, vs)
}

fn all() -> RowFilter {
    NamespaceIndex::new(1, IndexConfig::default())
        .compile(&Filter::default())
        .unwrap()
}

#[test]
fn exact_scan_is_ordered_and_finds_self() {
    let (idx, vs) = build(500, 10_000);
    let hits = idx.search(&vs[42], 5, &all(), false);
    assert_eq!(hits[0].seq, 43);
    // Its own vector rounded to f16: within 5e-4 of 1.
    assert!((hits[0].score - 1.0).abs() < 5e-4);
    assert!(hits.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn graph_search_recalls_and_skips_tombstones() {
    let (idx, vs) = build(3000, 1000);
    assert!(idx.needs_rebuild());
    let snap = idx.snapshot();
    let mut rebuilt = NamespaceIndex::rebuilt_from(&snap);
    idx.catch_up(&mut rebuilt, snap.upto);
    let idx_g = rebuilt;
    assert!(idx_g.has_graph());
    let mut found = 0;
    for (i, v) in vs.iter().enumerate().take(200) {
        if idx_g.search(v, 1, &all(), false)[0].seq == i as u64 + 1 {
            found += 1;
        }
    }
    assert!(found >= 190, "self-recall {found}/200");
    let mut idx_g = idx_g;
    assert!(idx_g.remove(11));
    let hits = idx_g.search(&vs[10], 10, &all(), false);
    assert!(hits.iter().all(|h| h.seq != 11));
}

#[test]
/// A selective filter (5% of the rows) is served by an exact scan of the
/// matching rows even when a graph exists; a filter nothing can match compiles
/// to `None`. (The graph paths are `filtered_graph_search_over_fetches_and_falls_back`.)
fn selective_filters_scan_the_matching_rows_exactly() {
    let (idx, vs) = build(2000, 500);
    let snap = idx.snapshot();
    let g = NamespaceIndex::rebuilt_from(&snap);
    let f = Filter {
        session_id: Some("sess3".into()),
        role: Some(Role::Assistant),
        ..Default::default()
    };
    let rf = g.compile(&f).unwrap();
    let (via_graph, path) = g.search_traced(&vs[0], 10, &rf, false);
    assert_eq!(path, SearchPath::Exact);
    let exact = g.search(&vs[0], 10, &rf, true);
    assert_eq!(via_graph, exact);
    assert!(!via_graph.is_empty());
    assert!(
        g.compile(&Filter {
            agent_id: Some("nobody".into()),
            ..Default::default()
        })
        .is_none()
    );
}

/// A filter matching half the rows is not selective, so the graph serves it
/// by over-fetching; a filter whose matches all lie outside the query's
/// neighbourhood makes the graph come back short and the exact scan take over.
/// Both agree with the exact reference.
#[test]
fn filtered_graph_search_over_fetches_and_falls_back() {
    let (idx, vs) = build(2000, 500);
    let g = NamespaceIndex::rebuilt_from(&idx.snapshot());
    assert!(g.has_graph());
    let half = g
        .compile(&Filter {
            role: Some(Role::Assistant),
            ..Default::default()
        })
        .unwrap();
    let mut agree = 0;
    for q in vs.iter().skip(1).step_by(2).take(20) {
        let (via_graph, path) = g.search_traced(q, 10, &half, false);
        assert_eq!(path, SearchPath::Graph);
        let exact = g.search(q, 10, &half, true);
        assert_eq!(via_graph[0], exact[0], "an assistant row finds itself");
        agree += via_graph.iter().filter(|s| exact.contains(s)).count();
    }
    assert!(agree >= 180, "filtered graph recall@10 {agree}/200");

    // 200 assistant rows packed around `q`, 800 user rows elsewhere.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let q = unit(&mut rng, 32);
    let mut idx = NamespaceIndex::new(
        32,
        IndexConfig {
            exact_threshold: 100,
            ..IndexConfig::default()
        },
    );
    for i in 0..1000usize {
        let v = if i < 200 {
            let mut v: Vec<f32> = q
                .iter()
                .map(|x| x + rng.random_range(-0.05..0.05))
                .collect();
            crate::embed::l2_normalize(&mut v);
            v
        } else {
            unit(&mut rng, 32)
        };
        let mut m = msg(i);
        m.role = if i < 200 { Role::Assistant } else { Role::User };
        idx.push(i as u64 + 1, &m, &v);
    }
    let g = NamespaceIndex::rebuilt_from(&idx.snapshot());
    assert!(g.has_graph());
    let users = g
        .compile(&Filter {
            role: Some(Role::User),
            ..Default::default()
        })
        .unwrap();
    let (found, path) = g.search_traced(&q, 10, &users, false);
    assert_eq!(path, SearchPath::GraphFallback);
    assert_eq!(found, g.search(&q, 10, &users, true));
    assert_eq!(found.len(), 10);
    assert!(found.iter().all(|s| s.seq > 200), "only user rows");
}

#[test]
fn catch_up_applies_concurrent_changes() {
    let (mut idx, _) = build(100, 50);
    let snap = idx.snapshot();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    idx.remove(5);
    idx.push(1000, &msg(1000), &unit(&mut rng, 32));
    let mut rebuilt = NamespaceIndex::rebuilt_from(&snap);
    idx.catch_up(&mut rebuilt, snap.upto);
    assert_eq!(rebuilt.len(), idx.len());
    assert_eq!(rebuilt.seqs(), idx.seqs());
}

/// Rows written after the graph was built are not in it: they are the tail,
/// found by an exact scan beside the graph search until the maintenance thread
/// inserts them; then they are found through the graph.
#[test]
fn rows_after_the_graph_are_found_through_the_tail_then_the_graph() {
    let (idx, _) = build(2000, 500);
    let mut g = NamespaceIndex::rebuilt_from(&idx.snapshot());
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let fresh: Vec<Vec<f32>> = (0..300).map(|_| unit(&mut rng, 32)).collect();
    for (i, v) in fresh.iter().enumerate() {
        g.push(10_000 + i as u64, &msg(i), v);
    }
    assert_eq!(g.tail_len(), 300);
    assert_eq!(
        g.vectors_held(),
        300,
        "the graph's rows keep their vector in the graph only"
    );
    for (i, v) in fresh.iter().enumerate().step_by(7) {
        let (hits, path) = g.search_traced(v, 3, &all(), false);
        assert_eq!(path, SearchPath::Graph);
        assert_eq!(hits[0].seq, 10_000 + i as u64, "tail row {i} finds itself");
    }
    let (graph, from, vectors) = g.graph_tail(usize::MAX).unwrap();
    assert_eq!(from, 2000);
    NamespaceIndex::insert_tail(&graph, from, &vectors, 32);
    assert!(g.graph_extended(&graph, from, 2300));
    assert_eq!(g.tail_len(), 0);
    assert_eq!(g.vectors_held(), 0);
    assert!(!g.graph_extended(&graph, from, 2300), "moved once only");
    let mut found = 0;
    for (i, v) in fresh.iter().enumerate() {
        found += usize::from(g.search(v, 1, &all(), false)[0].seq == 10_000 + i as u64);
    }
    assert!(found >= 285, "inserted tail self-recall {found}/300");
}

/// A dump reloaded into an index whose rows were loaded in another order, with
/// one row deleted, one vector changed and rows added since the dump: every
/// position keeps its own row, the deleted and changed ones become tombstones,
/// the changed and new rows are the tail, and searches find every live row and
/// never the deleted one.
#[test]
fn a_reloaded_dump_keeps_each_row_at_its_position() {
    let (idx, vs) = build(1500, 500);
    let g = NamespaceIndex::rebuilt_from(&idx.snapshot());
    let (graph, seqs) = g.graph_for_dump().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = IndexConfig {
        exact_threshold: 500,
        ..IndexConfig::default()
    };
    super::super::persist::dump(dir.path(), "t", &graph, &seqs, 32, &cfg).unwrap();
    let loaded = super::super::persist::load(dir.path(), "t", 32, &cfg).unwrap();

    // The store's view on the next open: reversed order, row 7 deleted, row 9
    // re-embedded differently, 20 new rows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut fresh = NamespaceIndex::new(32, cfg);
    let changed = unit(&mut rng, 32);
    for i in (0..1500).rev() {
        let seq = i as u64 + 1;
        if seq == 7 {
            continue;
        }
        let v = if seq == 9 { &changed } else { &vs[i] };
        fresh.push(seq, &msg(i), v);
    }
    let added: Vec<Vec<f32>> = (0..20).map(|_| unit(&mut rng, 32)).collect();
    for (i, v) in added.iter().enumerate() {
        fresh.push(5_000 + i as u64, &msg(i), v);
    }
    let dead = fresh.restore(loaded.hnsw, loaded.seqs).unwrap();
    assert_eq!(dead, 2, "row 7 (deleted) and row 9 (changed)");
    assert_eq!(fresh.len(), 1499 + 20);
    assert_eq!(fresh.tail_len(), 21, "row 9 and the 20 new rows");
    assert_eq!(fresh.vectors_held(), 21);
    assert!(fresh.has_graph());
    let mut found = 0;
    for (i, v) in vs.iter().enumerate() {
        let seq = i as u64 + 1;
        let (hits, path) = fresh.search_traced(v, 1, &all(), false);
        assert_eq!(path, SearchPath::Graph);
        if seq == 7 {
            assert_ne!(hits[0].seq, 7, "a deleted row is never found");
        } else if seq != 9 {
            found += usize::from(hits[0].seq == seq);
        }
    }
    assert!(found >= 1480, "self-recall after reload {found}/1498");
    assert_eq!(fresh.search(&changed, 1, &all(), false)[0].seq, 9);
    for (i, v) in added.iter().enumerate() {
        assert_eq!(fresh.search(v, 1, &all(), false)[0].seq, 5_000 + i as u64);
    }
    // The reloaded graph takes inserts: the tail goes into it and is found there.
    let (graph, from, tail) = fresh.graph_tail(usize::MAX).unwrap();
    NamespaceIndex::insert_tail(&graph, from, &tail, 32);
    assert!(fresh.graph_extended(&graph, from, 1521));
    assert_eq!(fresh.tail_len(), 0);
    for (i, v) in added.iter().enumerate() {
        let (hits, path) = fresh.search_traced(v, 1, &all(), false);
        assert_eq!((hits[0].seq, path), (5_000 + i as u64, SearchPath::Graph));
    }
    assert_eq!(fresh.search(&changed, 1, &all(), false)[0].seq, 9);
    // A filter is judged on the reordered rows.
    let half = fresh
        .compile(&Filter {
            role: Some(Role::Assistant),
            ..Default::default()
        })
        .unwrap();
    let hits = fresh.search(&vs[1], 5, &half, false);
    assert_eq!(hits[0].seq, 2, "row 2 is an assistant turn");
    assert_eq!(hits, fresh.search(&vs[1], 5, &half, true)[..hits.len()]);
}

/// A dump that does not fit is refused: another dimension, namespace or HNSW
/// shape at load (and the generation deleted); at restore, vectors of another
/// dimension or mostly stale positions leave the index as it was.
#[test]
fn a_dump_that_does_not_fit_is_refused() {
    use super::super::persist;
    let (idx, vs) = build(600, 500);
    let g = NamespaceIndex::rebuilt_from(&idx.snapshot());
    let (graph, seqs) = g.graph_for_dump().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = IndexConfig::default();
    let empty = |d: &std::path::Path| std::fs::read_dir(d).unwrap().next().is_none();
    persist::dump(dir.path(), "t", &graph, &seqs, 32, &cfg).unwrap();
    assert!(persist::load(dir.path(), "t", 16, &cfg).is_none());
    assert!(empty(dir.path()), "a refused generation is deleted");
    persist::dump(dir.path(), "t", &graph, &seqs, 32, &cfg).unwrap();
    assert!(persist::load(dir.path(), "other", 32, &cfg).is_none());
    assert!(empty(dir.path()));
    persist::dump(dir.path(), "t", &graph, &seqs, 32, &cfg).unwrap();
    let other_m = IndexConfig {
        m: 24,
        ..IndexConfig::default()
    };
    assert!(persist::load(dir.path(), "t", 32, &other_m).is_none());
    assert!(empty(dir.path()));

    // Restore into an index of another dimension.
    persist::dump(dir.path(), "t", &graph, &seqs, 32, &cfg).unwrap();
    let loaded = persist::load(dir.path(), "t", 32, &cfg).unwrap();
    let mut narrow = NamespaceIndex::new(16, cfg.clone());
    let v16: Vec<f32> = vs[0][..16].to_vec();
    narrow.push(1, &msg(0), &v16);
    assert!(narrow.restore(loaded.hnsw, loaded.seqs).is_err());
    assert!(!narrow.has_graph());
    assert_eq!(narrow.seqs(), [1]);

    // Restore where every stored vector changed since the dump.
    let loaded = persist::load(dir.path(), "t", 32, &cfg).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut changed = NamespaceIndex::new(32, cfg);
    for i in 0..600 {
        changed.push(i as u64 + 1, &msg(i), &unit(&mut rng, 32));
    }
    let before = changed.search(&vs[3], 5, &all(), false);
    assert!(changed.restore(loaded.hnsw, loaded.seqs).is_err());
    assert!(!changed.has_graph());
    assert_eq!(changed.search(&vs[3], 5, &all(), false), before);
}

/// Every row is scored as f32 query · its f16 vector, within 5e-4 of the f32
/// cosine, and the same score whether the row is scanned without a graph, is
/// in the graph's tail or in the graph: a namespace crossing the graph
/// threshold does not reorder its results.
#[test]
fn every_row_scores_against_its_f16_vector_with_or_without_a_graph() {
    use crate::simd::{dot, dot_f16, to_f16};
    let (idx, vs) = build(1000, 500);
    let mut g = NamespaceIndex::rebuilt_from(&idx.snapshot());
    assert!(g.has_graph() && !idx.has_graph());
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let late = unit(&mut rng, 32);
    g.push(9_999, &msg(0), &late);
    let q = unit(&mut rng, 32);
    let mut rounded = 0;
    for (i, v) in vs.iter().enumerate() {
        let got = g.similarity(&q, i as u64 + 1).unwrap();
        assert_eq!(
            got,
            dot_f16(&q, &to_f16(v)),
            "row {i} is scored from its f16 point"
        );
        assert_eq!(
            idx.similarity(&q, i as u64 + 1).unwrap(),
            got,
            "row {i} scores the same without a graph"
        );
        assert!((got - dot(&q, v)).abs() < 5e-4);
        rounded += usize::from(got != dot(&q, v));
    }
    assert!(
        rounded > 500,
        "only {rounded} of 1000 scores differ from f32: vectors are not f16"
    );
    let in_tail = g.similarity(&q, 9_999).unwrap();
    assert_eq!(in_tail, dot_f16(&q, &to_f16(&late)), "the tail is f16");
    let (graph, from, tail) = g.graph_tail(usize::MAX).unwrap();
    NamespaceIndex::insert_tail(&graph, from, &tail, 32);
    assert!(g.graph_extended(&graph, from, from + 1));
    assert_eq!(g.tail_len(), 0);
    assert_eq!(g.vectors_held(), 0, "the row is read from its graph point");
    assert_eq!(
        g.similarity(&q, 9_999).unwrap(),
        in_tail,
        "the same score once in the graph"
    );
}
