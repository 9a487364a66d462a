//! Unit tests of `search::lexical` (BM25, its two forms, the shared dictionary's
//! references).

use super::*;
use crate::core::types::Role;
use chrono::TimeZone;

fn msg(session: &str, text: &str) -> Message {
    Message {
        id: String::new(),
        namespace: "ns".into(),
        role: Role::User,
        content: text.into(),
        name: Some("Ann".into()),
        agent_id: None,
        session_id: Some(session.into()),
        exchange_id: None,
        timestamp: Utc.with_ymd_and_hms(2023, 5, 8, 13, 56, 0).unwrap(),
        metadata: Default::default(),
    }
}

/// The text of word indexes `ws` over a fixed vocabulary of 12 (what the
/// property tests draw documents and queries from).
fn words(ws: &[usize]) -> String {
    const WORDS: [&str; 12] = [
        "puppy", "garden", "violin", "paint", "river", "camera", "rocket", "lemon", "castle",
        "guitar", "forest", "pencil",
    ];
    ws.iter().map(|&w| WORDS[w]).collect::<Vec<_>>().join(" ")
}

#[test]
fn analyzer_lowercases_drops_stop_words_and_stems() {
    assert_eq!(
        Analyzer::english().terms("Caroline went to the LGBTQ support-groups!"),
        ["carolin", "went", "lgbtq", "support", "group"]
    );
    assert!(Analyzer::english().terms("it is what it is").is_empty());
}

proptest::proptest! {
    /// `top` (dense accumulator, chunked selection, lazy filter) equals the
    /// brute-force ranking: every live, admitted document with a positive
    /// score, best first, ties older first, cut at n.
    #[test]
    fn top_equals_brute_force_ranking(
        docs in proptest::collection::vec(proptest::collection::vec(0usize..12, 1..8), 1..120),
        deleted in proptest::collection::vec(proptest::bool::weighted(0.1), 120),
        query in proptest::collection::vec(0usize..12, 1..5),
        modulus in 1u64..5,
        n in 1usize..30,
    ) {
        // Once reading term lists (a small index), once with postings.
        let mut with_postings = LexicalIndex::new();
        with_postings.postings = Some(HashMap::new());
        for idx in [LexicalIndex::new(), with_postings] {
            let mut idx = idx;
            for (i, ws) in docs.iter().enumerate() {
                idx.push_message(i as u64, &msg("s", &words(ws)));
            }
            for (i, &gone) in deleted.iter().take(docs.len()).enumerate() {
                if gone {
                    idx.remove(i as u64);
                }
            }
            let q = idx.query(&words(&query), Bm25Params::default());
            let accept = |seq: u64| seq % modulus != 1;
            let mut expected: Vec<(u64, f32)> = (0..docs.len() as u64)
                .filter(|&seq| idx.by_seq.contains_key(&seq) && accept(seq))
                .filter(|&seq| idx.docs[idx.by_seq[&seq] as usize].alive)
                .map(|seq| (seq, idx.score(&q, seq)))
                .filter(|&(_, s)| s > 0.0)
                .collect();
            expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            expected.truncate(n);
            proptest::prop_assert_eq!(idx.top(&q, n, accept), expected);
        }
    }
}

proptest::proptest! {
    /// Postings decode to what was appended: ascending positions from any
    /// gap (one to five bytes, from 1 to 2^32 - 1) and every frequency 1..=255.
    #[test]
    fn postings_round_trip(
        entries in proptest::collection::vec(
            (
                proptest::prop_oneof![1u32..64, 64u32..1 << 14, 1u32 << 14..1 << 28, 1u32 << 28..=u32::MAX],
                proptest::prop_oneof![proptest::strategy::Just(1u8), 2u8..=255],
            ),
            0..200,
        ),
        first in proptest::prop_oneof![0u32..64, 0u32..=u32::MAX],
    ) {
        let mut bytes = PostingBytes::new();
        let mut docs = Vec::new();
        let (mut last, mut doc) = (0u32, first);
        for &(gap, tf) in &entries {
            put_posting(&mut bytes, doc - last, tf);
            docs.push((doc, u32::from(tf)));
            last = doc;
            doc = doc.saturating_add(gap);
            if doc == last {
                break;
            }
        }
        let decoded: Vec<(u32, u32)> = Postings { bytes: &bytes, at: 0, doc: 0 }.collect();
        proptest::prop_assert_eq!(decoded, docs);
    }
}

#[test]
fn a_frequency_past_255_counts_255_and_the_length_counts_all() {
    let mut idx = LexicalIndex::new();
    idx.push_text(1, &"echo ".repeat(300));
    idx.push_text(
        2,
        &format!("{}{}", "echo ".repeat(255), "delta ".repeat(45)),
    );
    idx.push_text(
        3,
        &format!("{}{}", "echo ".repeat(254), "delta ".repeat(46)),
    );
    let q = idx.query("echo", Bm25Params::default());
    assert_eq!(idx.doc_len(1), 300);
    // All are 300 terms long; the first two count "echo" 255 times, the
    // third 254 (so the cap is 255, not lower).
    assert_eq!(idx.score(&q, 1), idx.score(&q, 2));
    assert!(idx.score(&q, 3) < idx.score(&q, 2));
    assert_eq!(
        idx.top(&q, 3, |_| true),
        [
            (1, idx.score(&q, 1)),
            (2, idx.score(&q, 2)),
            (3, idx.score(&q, 3))
        ]
    );
}

#[test]
fn ranks_by_bm25_and_uses_dates() {
    let mut idx = LexicalIndex::new();
    idx.push_message(1, &msg("s", "I adopted a puppy named Rex"));
    idx.push_message(2, &msg("s", "The weather is lovely today"));
    idx.push_message(3, &msg("s", "Rex chewed my shoes again, bad puppy"));
    let q = idx.query("puppies", Bm25Params::default());
    let top = idx.top(&q, 10, |_| true);
    assert_eq!(top.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 3]);
    assert!((idx.score(&q, 1) - top[0].1).abs() < 1e-6);
    assert_eq!(idx.score(&q, 2), 0.0);
    // Every document carries its date.
    let q = idx.query("What happened on 8 May?", Bm25Params::default());
    assert_eq!(idx.top(&q, 10, |_| true).len(), 3);
    // `accept` filters.
    let q = idx.query("puppy", Bm25Params::default());
    assert_eq!(idx.top(&q, 10, |s| s != 1), [(3, idx.score(&q, 3))]);
}

#[test]
fn deletes_update_statistics_and_neighbours() {
    let mut idx = LexicalIndex::new();
    idx.push_message(1, &msg("a", "alpha"));
    idx.push_message(2, &msg("b", "beta"));
    idx.push_message(3, &msg("a", "gamma"));
    idx.push_message(4, &msg("a", "delta"));
    assert_eq!(idx.neighbors(3), [Some(1), Some(4)]);
    assert_eq!(idx.neighbors(2), [None, None]);
    assert!(idx.remove(3));
    assert!(!idx.remove(3));
    assert_eq!(idx.neighbors(1), [None, Some(4)]);
    assert_eq!(idx.neighbors(4), [Some(1), None]);
    let q = idx.query("gamma", Bm25Params::default());
    assert!(q.is_empty());
    assert!(idx.top(&q, 10, |_| true).is_empty());
}

/// References held in the dictionary to the analyzed form of `word` (one
/// per document containing it, in every index).
fn references(word: &str) -> u32 {
    let term = &Analyzer::english().terms(word)[0];
    dictionary::shared().read().references(term)
}

#[test]
fn indexes_share_a_term_and_the_last_one_dropped_releases_it() {
    // Words no other test uses: the dictionary is process-wide.
    let mut a = LexicalIndex::new();
    a.push_text(1, "quibblefrond marrowgast");
    let mut b = LexicalIndex::new();
    b.push_text(1, "quibblefrond quibblefrond");
    b.push_text(2, "quibblefrond");
    assert_eq!(
        [references("quibblefrond"), references("marrowgast")],
        [3, 1]
    );
    // Statistics stay per index: a has one document with the term, b two.
    let (qa, qb) = (
        a.query("quibblefrond", Bm25Params::default()),
        b.query("quibblefrond", Bm25Params::default()),
    );
    assert_eq!(a.top(&qa, 10, |_| true).len(), 1);
    assert_eq!(b.top(&qb, 10, |_| true).len(), 2);
    drop(a);
    assert_eq!(
        [references("quibblefrond"), references("marrowgast")],
        [2, 0]
    );
    // b still finds its documents after a's terms went.
    let qb = b.query("quibblefrond marrowgast", Bm25Params::default());
    assert_eq!(b.top(&qb, 10, |_| true).len(), 2);
    drop(b);
    assert_eq!(references("quibblefrond"), 0);
}

#[test]
fn compaction_gives_back_the_tombstones_terms() {
    let mut idx = LexicalIndex::new();
    for i in 0..400u64 {
        idx.push_text(i, "gorplewick ubiquathorn");
    }
    for i in 400..1000u64 {
        idx.push_text(i, "ubiquathorn");
    }
    assert_eq!(
        [references("gorplewick"), references("ubiquathorn")],
        [400, 1000]
    );
    // Compaction runs at the 501st delete (tombstones past 256 and past
    // the live documents), when no live document has "gorplewick" left.
    for i in 0..700u64 {
        assert!(idx.remove(i));
    }
    assert!(idx.docs.len() < 1000, "compacted");
    assert_eq!(references("gorplewick"), 0, "given back at compaction");
    // The 499 left by compaction; the 199 tombstones since still hold theirs.
    assert_eq!(references("ubiquathorn"), 499);
    let q = idx.query("ubiquathorn", Bm25Params::default());
    assert_eq!(idx.top(&q, 1000, |_| true).len(), 300);
    assert!(idx.query("gorplewick", Bm25Params::default()).is_empty());
}

proptest::proptest! {
    /// An index that keeps postings (past `POSTINGS_FROM` documents) and one
    /// that reads term lists rank alike: the same documents and deletes in
    /// an index reading term lists, one keeping postings from the start and
    /// one that builds them halfway (as at `POSTINGS_FROM`) give the same
    /// scores and order.
    #[test]
    fn small_and_large_indexes_rank_alike(
        docs in proptest::collection::vec(proptest::collection::vec(0usize..12, 1..8), 1..60),
        deleted in proptest::collection::vec(proptest::bool::weighted(0.2), 60),
        query in proptest::collection::vec(0usize..12, 1..5),
    ) {
        let mut small = LexicalIndex::new();
        let mut large = LexicalIndex::new();
        large.postings = Some(HashMap::new());
        let mut built = LexicalIndex::new();
        for (i, ws) in docs.iter().enumerate() {
            if i == docs.len() / 2 {
                built.build_postings();
            }
            for idx in [&mut small, &mut large, &mut built] {
                idx.push_message(i as u64, &msg("s", &words(ws)));
            }
            if deleted[i] && i % 2 == 0 {
                // Some deletes before the postings are built.
                for idx in [&mut small, &mut large, &mut built] {
                    idx.remove(i as u64);
                }
            }
        }
        for (i, &gone) in deleted.iter().take(docs.len()).enumerate() {
            if gone && i % 2 == 1 {
                for idx in [&mut small, &mut large, &mut built] {
                    idx.remove(i as u64);
                }
            }
        }
        proptest::prop_assert!(small.postings.is_none());
        proptest::prop_assert!(large.postings.is_some() && built.postings.is_some());
        let q = words(&query);
        let (qs, ql, qb) = (
            small.query(&q, Bm25Params::default()),
            large.query(&q, Bm25Params::default()),
            built.query(&q, Bm25Params::default()),
        );
        let ts = small.top(&qs, 100, |_| true);
        proptest::prop_assert_eq!(&ts, &large.top(&ql, 100, |_| true));
        proptest::prop_assert_eq!(&ts, &built.top(&qb, 100, |_| true));
    }
}

#[test]
fn compaction_keeps_scores_and_chains() {
    let mut idx = LexicalIndex::new();
    for i in 0..2000u64 {
        idx.push_message(i, &msg("s", &format!("word{} common", i % 7)));
        // Postings from the 1,024th document on.
        assert_eq!(idx.postings.is_some(), i + 1 >= POSTINGS_FROM as u64);
    }
    let q0 = idx.query("word3 common", Bm25Params::default());
    let before = idx.score(&q0, 1997);
    // Compaction at the 1,001st delete (tombstones past the live 999), which
    // leaves too few documents for postings.
    for i in 0..1200u64 {
        assert!(idx.remove(i));
    }
    assert!(idx.docs.len() < 1000, "compacted");
    assert!(idx.postings.is_none());
    assert_eq!(idx.len(), 800);
    assert_eq!(idx.neighbors(1200), [None, Some(1201)]);
    assert_eq!(idx.neighbors(1999), [Some(1998), None]);
    let q = idx.query("word3 common", Bm25Params::default());
    let top = idx.top(&q, 2000, |_| true);
    assert_eq!(top.len(), 800);
    assert!(top.iter().take(114).all(|&(s, _)| s % 7 == 3));
    // Statistics now count 800 documents instead of 2000.
    assert!((idx.score(&q, 1997) - before).abs() > 1e-4);
    // Back past 1,024 documents, postings again; the chain goes on.
    for i in 2000..2300u64 {
        idx.push_message(i, &msg("s", &format!("word{} common", i % 7)));
    }
    assert!(idx.postings.is_some());
    assert_eq!(idx.neighbors(2000), [Some(1999), Some(2001)]);
    let q = idx.query("word3 common", Bm25Params::default());
    let top = idx.top(&q, 2000, |_| true);
    assert_eq!(top.len(), 1100);
    assert!(top.iter().take(157).all(|&(s, _)| s % 7 == 3));
    assert_eq!(top[0].1, idx.score(&q, top[0].0));
}

#[test]
fn sessions_group_messages_with_a_session_id_only() {
    let mut idx = LexicalIndex::new();
    idx.push_message(0, &msg("a", "one"));
    idx.push_message(1, &msg("b", "two"));
    idx.push_message(2, &msg("a", "three"));
    let mut loose = msg("x", "four");
    loose.session_id = None;
    idx.push_message(3, &loose);
    idx.push_message(4, &loose);
    idx.push_text(5, "an entry");
    assert_eq!(idx.session(0), idx.session(2));
    assert!(idx.session(0).is_some());
    assert_ne!(idx.session(0), idx.session(1));
    // Messages without a session id are chained as neighbours, but are no
    // session: the hybrid session weight treats each as its own.
    assert_eq!(idx.neighbors(4), [Some(3), None]);
    assert_eq!([idx.session(3), idx.session(4)], [None, None]);
    assert_eq!([idx.session(5), idx.session(99)], [None, None]);
    // Still after tombstones are compacted away.
    for i in 6..800u64 {
        idx.push_message(i, &msg("c", "filler"));
    }
    for i in 6..800u64 {
        assert!(idx.remove(i));
    }
    assert!(idx.docs.len() < 800, "compacted");
    assert_eq!(idx.session(0), idx.session(2));
    assert!(idx.session(0).is_some());
    assert_eq!(idx.session(3), None);
}
