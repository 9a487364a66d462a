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
    assert!((hits[0].score - 1.0).abs() < 1e-5);
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
