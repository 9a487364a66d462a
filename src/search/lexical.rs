//! The lexical channel: Okapi BM25 over one namespace's messages and summaries.
//!
//! Each namespace has its own [`LexicalIndex`] with its own term statistics (document
//! frequencies, average length): a namespace is one conversation or user, and
//! statistics pooled across tenants would skew their rankings and leak which words
//! other tenants use. Only the terms' text is shared: an index keys its terms by
//! their id in the process-wide [`dictionary`](super::dictionary), so a term that
//! 10,000 namespaces use is held once, not 10,000 times. Like the vector index it
//! lives in memory and is rebuilt from the store on open, so it is exactly as
//! durable as the store's records and never disagrees with them after a crash.
//!
//! Why not tantivy: its statistics are index-wide, so per-namespace BM25 would need
//! one tantivy index (directory, writer, commit cycle) per namespace, a second durable
//! store to keep consistent with sled on every write and crash, and hybrid fusion
//! scores arbitrary documents (the dense channel's candidates and their neighbouring
//! turns), which tantivy only offers through per-document explanations. The index
//! itself is a few hundred lines; tokenization comes from maintained crates
//! (`stop-words`: NLTK's English list; `rust-stemmers`: Snowball English, the
//! stemmer tantivy uses).
//!
//! A document is the message's embedding text (`"<name or role>: <content>"`) plus
//! its date as words (`"8 May 2023"`), so questions that name a day or month match
//! what was said then. Messages are chained to their predecessor and successor in the
//! same session (insertion order), which hybrid search uses to let a hit lift its
//! neighbouring turns.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rust_stemmers::{Algorithm, Stemmer};
use smallvec::SmallVec;

use super::dictionary;

use crate::core::params::Bm25Params;
use crate::core::types::{Message, Summary};

/// Lower-cases, splits on every non-alphanumeric character, drops English stop
/// words (NLTK's list) and stems (Snowball English).
pub struct Analyzer {
    stop: HashSet<&'static str>,
    stemmer: Stemmer,
}

static ENGLISH: LazyLock<Analyzer> = LazyLock::new(|| Analyzer {
    stop: stop_words::lookup("en")
        .unwrap_or_default()
        .iter()
        .copied()
        .collect(),
    stemmer: Stemmer::create(Algorithm::English),
});

impl Analyzer {
    /// The English analyzer (shared, built once).
    pub fn english() -> &'static Analyzer {
        &ENGLISH
    }

    /// Terms of `text` in order, repeats kept. `"Caroline went to the LGBTQ support
    /// groups"` → `["carolin", "went", "lgbtq", "support", "group"]`.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            let lower = word.to_lowercase();
            if self.stop.contains(lower.as_str()) {
                continue;
            }
            out.push(self.stemmer.stem(&lower).into_owned());
        }
        out
    }
}

/// The date of `t` as words, e.g. `"8 May 2023"`.
fn date_words(t: &DateTime<Utc>) -> String {
    t.format("%-d %B %Y").to_string()
}

/// The text a message is indexed under: its embedding text and its date.
pub fn message_text(m: &Message) -> String {
    format!("{} {}", m.embedding_text(), date_words(&m.timestamp))
}

/// The text a summary is indexed under: its text and the dates it covers.
pub fn summary_text(s: &Summary) -> String {
    format!("{} {} {}", s.text, date_words(&s.from), date_words(&s.to))
}

const NONE: u32 = u32::MAX;

/// One term's postings (`put_posting`'s bytes): up to 16 bytes inline, in the
/// 24 bytes a `Vec` header takes anyway. Most terms of a natural-language
/// vocabulary are rare (one to a few postings of a byte or two each), so most
/// need no allocation of their own.
type PostingBytes = SmallVec<[u8; 16]>;
const _: () = assert!(std::mem::size_of::<PostingBytes>() == 24);

#[derive(Debug, Clone)]
struct Doc {
    seq: u64,
    /// Where its (term, frequency) entries start in [`LexicalIndex::fwd_terms`]
    /// and [`LexicalIndex::fwd_tf`]; they end where the next document's start.
    start: usize,
    /// Terms in the document (BM25's document length).
    len: u32,
    /// Session chain (interned session id) or NONE for summaries.
    chain: u32,
    prev: u32,
    next: u32,
    alive: bool,
}

/// Appends one posting: the gap to the term's previous document shifted left
/// by one, its low bit set when the frequency is 1 (most are), otherwise a
/// frequency byte after it, as LEB128 (7 bits a byte, low bits first): one
/// byte when the gap is under 64 and the frequency 1 (most postings of a common
/// term), at most six.
fn put_posting(out: &mut PostingBytes, gap: u32, tf: u8) {
    // Gaps are document positions, < 2^32; u64 keeps the shift lossless.
    let mut v = (u64::from(gap) << 1) | u64::from(tf == 1);
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    if tf != 1 {
        out.push(tf);
    }
}

/// The postings of one term, decoded in order: (document position, frequency).
struct Postings<'a> {
    bytes: &'a [u8],
    at: usize,
    doc: u64,
}

impl Iterator for Postings<'_> {
    type Item = (u32, u32);

    #[inline]
    fn next(&mut self) -> Option<(u32, u32)> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
        }
        self.doc += v >> 1;
        let tf = if v & 1 == 1 {
            1
        } else {
            let tf = *self.bytes.get(self.at)?;
            self.at += 1;
            u32::from(tf)
        };
        Some((self.doc as u32, tf))
    }
}

/// A query analyzed against one namespace: (dictionary id, idf) of its distinct
/// terms that occur in the namespace. Valid for the index that made it while
/// that index is unchanged (the engine ranks under one read lock).
#[derive(Debug, Clone, Default)]
pub struct LexicalQuery {
    /// (dictionary id, idf), in the query's order: scores sum in this order.
    terms: Vec<(u32, f32)>,
    /// Position in `terms` by dictionary id: a document's term list is
    /// matched against it term by term.
    by_id: IdSet,
    avg_len: f32,
    params: Bm25Params,
}

impl LexicalQuery {
    /// True when no query term occurs in the namespace (every score is 0).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// A set of dictionary ids, each with a value: sorted pairs behind a 256-bit
/// mask of `id mod 256` (ids are dense small numbers), so the test for an id
/// not in a short set (most terms of most documents) is one load and a bit
/// test; the binary search runs only on a mask hit.
#[derive(Debug, Clone, Default)]
struct IdSet {
    mask: [u64; 4],
    sorted: Vec<(u32, u32)>,
}

impl IdSet {
    fn new(pairs: impl IntoIterator<Item = (u32, u32)>) -> IdSet {
        let mut sorted: Vec<(u32, u32)> = pairs.into_iter().collect();
        sorted.sort_unstable();
        let mut mask = [0u64; 4];
        for &(id, _) in &sorted {
            mask[(id as usize >> 6) & 3] |= 1 << (id & 63);
        }
        IdSet { mask, sorted }
    }

    /// The value of `id`, if it is in the set.
    #[inline]
    fn get(&self, id: u32) -> Option<u32> {
        if self.mask[(id as usize >> 6) & 3] & (1 << (id & 63)) == 0 {
            return None;
        }
        let i = self.sorted.binary_search_by_key(&id, |&(k, _)| k).ok()?;
        Some(self.sorted[i].1)
    }
}

/// One term's postings in a namespace that keeps them.
#[derive(Debug, Clone, Default)]
struct TermPostings {
    /// Documents ascending (`put_posting`).
    bytes: PostingBytes,
    /// The last document in `bytes` (the base of the next gap).
    last_doc: u32,
    /// Live documents containing the term.
    df: u32,
}

/// Documents, live and tombstoned, from which a namespace keeps postings (so a
/// namespace with tombstones not compacted yet may keep them with fewer live
/// documents). Below it a query reads every live document's term list instead,
/// once for the statistics and once for the scores: at 1,023 documents of ~12
/// distinct terms that is ~12k entries each time, ~78 µs for a LoCoMo
/// question's top 50 against ~9 µs with postings (`cargo bench --bench index
/// -- lexical_top50`), and a small namespace holds no state per term at all.
/// Per term, postings cost ~60 bytes (map entry, inline bytes, statistics): in
/// namespaces of 100 LoCoMo-like messages that was most of what each added,
/// 495 bytes a message for BM25 against 183 without (`cargo bench --bench
/// memory`, `MEMORYD_MEMORY_PARTS=many`).
const POSTINGS_FROM: usize = 1024;

/// BM25 over one namespace, append-only with tombstones.
///
/// Every document keeps a forward list of its distinct terms (`t` × 5 bytes:
/// the term's id in the shared [`dictionary`] and its frequency; sorted, for
/// scoring a given document, deletes and compaction), a 40-byte record and its
/// entry in the seq map. Past [`POSTINGS_FROM`] documents the index also keeps
/// postings per term, delta- and varint-coded (most often one byte a posting,
/// at most six; the layout of `put_posting`; inline up to 16 bytes), with the
/// term's document frequency. The terms' text is in the dictionary, once for
/// every namespace; each forward-list entry holds one reference to its term
/// there, given back when the entry goes (compaction) or the index is dropped.
/// A term repeated more than 255 times in one document counts 255 times (its
/// length still counts every term).
#[derive(Debug, Default)]
pub struct LexicalIndex {
    /// Dictionary id → postings; `None` below [`POSTINGS_FROM`] documents.
    postings: Option<HashMap<u32, TermPostings>>,
    docs: Vec<Doc>,
    /// Every document's distinct terms (dictionary ids, ascending), one document
    /// after another.
    fwd_terms: Vec<u32>,
    /// The frequency of each entry of `fwd_terms` (saturating at 255).
    fwd_tf: Vec<u8>,
    by_seq: HashMap<u64, u32>,
    live: usize,
    live_len: u64,
    /// Session id (None: messages without one) → chain id.
    chains: HashMap<Option<String>, u32>,
    /// Per chain: its last document.
    tails: Vec<u32>,
}

impl LexicalIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live documents.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no live document is left.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Indexes a message, chained after the previous message of its session.
    pub fn push_message(&mut self, seq: u64, m: &Message) {
        let chain = match self.chains.get(&m.session_id) {
            Some(&c) => c,
            None => {
                let c = self.tails.len() as u32;
                self.chains.insert(m.session_id.clone(), c);
                self.tails.push(NONE);
                c
            }
        };
        let terms = Analyzer::english().terms(&message_text(m));
        self.push(seq, &terms, chain);
    }

    /// Indexes a summary (summaries have no neighbours).
    pub fn push_summary(&mut self, seq: u64, s: &Summary) {
        let terms = Analyzer::english().terms(&summary_text(s));
        self.push(seq, &terms, NONE);
    }

    /// Indexes any other text (context entries, board documents): no neighbours.
    pub fn push_text(&mut self, seq: u64, text: &str) {
        let terms = Analyzer::english().terms(text);
        self.push(seq, &terms, NONE);
    }

    fn push(&mut self, seq: u64, terms: &[String], chain: u32) {
        // Distinct terms with their frequencies.
        let mut sorted: Vec<&str> = terms.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut distinct: Vec<&str> = Vec::new();
        let mut freq: Vec<u32> = Vec::new();
        for t in sorted {
            if distinct.last() == Some(&t) {
                *freq.last_mut().expect("one per distinct term") += 1;
            } else {
                distinct.push(t);
                freq.push(1);
            }
        }
        let ids = dictionary::shared().write().intern(&distinct);
        let mut tf: Vec<(u32, u8)> = ids
            .into_iter()
            .zip(freq)
            .map(|(id, f)| (id, u8::try_from(f).unwrap_or(u8::MAX)))
            .collect();
        tf.sort_unstable();
        self.push_doc(seq, tf.into_iter(), terms.len() as u32, chain);
    }

    /// Appends a document with its distinct `terms` (dictionary id ascending,
    /// frequency), whose references it takes over.
    fn push_doc(&mut self, seq: u64, terms: impl Iterator<Item = (u32, u8)>, len: u32, chain: u32) {
        let doc = self.docs.len() as u32;
        let start = self.fwd_terms.len();
        for (t, f) in terms {
            if let Some(postings) = &mut self.postings {
                postings.entry(t).or_default().add(doc, f);
            }
            self.fwd_terms.push(t);
            self.fwd_tf.push(f);
        }
        let mut prev = NONE;
        if chain != NONE {
            prev = self.tails[chain as usize];
            if prev != NONE {
                self.docs[prev as usize].next = doc;
            }
            self.tails[chain as usize] = doc;
        }
        self.docs.push(Doc {
            seq,
            start,
            len,
            chain,
            prev,
            next: NONE,
            alive: true,
        });
        self.by_seq.insert(seq, doc);
        self.live += 1;
        self.live_len += u64::from(len);
        if self.postings.is_none() && self.docs.len() >= POSTINGS_FROM {
            self.build_postings();
        }
    }

    /// Postings of the live documents, from their term lists.
    fn build_postings(&mut self) {
        let mut postings: HashMap<u32, TermPostings> = HashMap::new();
        for (doc, d) in self.docs.iter().enumerate() {
            if d.alive {
                let (terms, tfs) = self.doc_terms(doc as u32);
                for (&t, &f) in terms.iter().zip(tfs) {
                    postings.entry(t).or_default().add(doc as u32, f);
                }
            }
        }
        self.postings = Some(postings);
    }

    /// The range of `doc`'s entries in `fwd_terms` and `fwd_tf`.
    fn fwd_range(&self, doc: u32) -> std::ops::Range<usize> {
        let start = self.docs[doc as usize].start;
        let end = self
            .docs
            .get(doc as usize + 1)
            .map_or(self.fwd_terms.len(), |d| d.start);
        start..end
    }

    /// `doc`'s distinct terms (ascending) and their frequencies.
    fn doc_terms(&self, doc: u32) -> (&[u32], &[u8]) {
        let range = self.fwd_range(doc);
        (&self.fwd_terms[range.clone()], &self.fwd_tf[range])
    }

    /// Marks `seq` deleted; its terms stop counting in the statistics at once.
    /// Returns false when it was not live here. Compacts when tombstones outnumber
    /// live documents.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(doc) = self.by_seq.remove(&seq) else {
            return false;
        };
        let d = &mut self.docs[doc as usize];
        d.alive = false;
        self.live -= 1;
        self.live_len -= u64::from(d.len);
        let range = self.fwd_range(doc);
        if let Some(postings) = &mut self.postings {
            for t in &self.fwd_terms[range] {
                if let Some(p) = postings.get_mut(t) {
                    p.df -= 1;
                }
            }
        }
        let dead = self.docs.len() - self.live;
        if dead > 256 && dead > self.live {
            self.compact();
        }
        true
    }

    /// Drops tombstones: re-indexes the live documents in order (no re-analysis;
    /// postings are rebuilt, or not kept, by the live count). The tombstones'
    /// references to their terms are given back, so a term no live document uses
    /// any more leaves the dictionary when no other index holds it.
    fn compact(&mut self) {
        let mut old = std::mem::take(self);
        self.tails = vec![NONE; old.tails.len()];
        self.chains = std::mem::take(&mut old.chains);
        let mut dead_terms = Vec::new();
        for (doc, d) in old.docs.iter().enumerate() {
            let (terms, tfs) = old.doc_terms(doc as u32);
            if d.alive {
                self.push_doc(
                    d.seq,
                    terms.iter().copied().zip(tfs.iter().copied()),
                    d.len,
                    d.chain,
                );
            } else {
                dead_terms.extend_from_slice(terms);
            }
        }
        // The live documents' references moved to `self`; `old`'s drop gives
        // back the tombstones' ones.
        old.fwd_terms = dead_terms;
    }

    /// Analyzes `text` against this namespace's statistics.
    pub fn query(&self, text: &str, params: Bm25Params) -> LexicalQuery {
        let n = self.live as f32;
        let mut analyzed = Analyzer::english().terms(text);
        let mut seen = HashSet::new();
        analyzed.retain(|t| seen.insert(t.clone()));
        // Dictionary ids under one read lock. An id this index holds cannot be
        // freed or reused meanwhile (`&self`: nothing here is given back), and an
        // id it does not hold matches none of its documents.
        let ids: Vec<u32> = {
            let dict = dictionary::shared().read();
            analyzed.iter().filter_map(|t| dict.get(t)).collect()
        };
        let df: Vec<u32> = match &self.postings {
            Some(postings) => ids
                .iter()
                .map(|id| postings.get(id).map_or(0, |p| p.df))
                .collect(),
            // Without postings: one pass over every live document's term list,
            // however long the query.
            None => {
                let slots = IdSet::new(ids.iter().enumerate().map(|(i, &id)| (id, i as u32)));
                let mut df = vec![0u32; ids.len()];
                for doc in 0..self.docs.len() as u32 {
                    if self.docs[doc as usize].alive {
                        for &t in self.doc_terms(doc).0 {
                            if let Some(slot) = slots.get(t) {
                                df[slot as usize] += 1;
                            }
                        }
                    }
                }
                df
            }
        };
        let terms: Vec<(u32, f32)> = ids
            .into_iter()
            .zip(df)
            .filter(|&(_, df)| df > 0)
            .map(|(id, df)| {
                let df = df as f32;
                // Lucene's BM25 idf: always positive.
                (id, (1.0 + (n - df + 0.5) / (df + 0.5)).ln())
            })
            .collect();
        let by_id = IdSet::new(terms.iter().enumerate().map(|(i, &(id, _))| (id, i as u32)));
        LexicalQuery {
            terms,
            by_id,
            avg_len: if self.live == 0 {
                1.0
            } else {
                self.live_len as f32 / n
            },
            params,
        }
    }

    #[inline]
    fn term_score(q: &LexicalQuery, idf: f32, tf: u32, len: u32) -> f32 {
        let tf = tf as f32;
        let Bm25Params { k1, b } = q.params;
        idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len as f32 / q.avg_len))
    }

    /// BM25 score of the document `seq` (0 when it is unknown or matches no term).
    pub fn score(&self, q: &LexicalQuery, seq: u64) -> f32 {
        match self.by_seq.get(&seq) {
            Some(&doc) => self.doc_score(q, doc),
            None => 0.0,
        }
    }

    /// BM25 score of document `doc` from its term list: each of its terms looked
    /// up among the query's, the matches summed in the query's order (as the
    /// postings path sums them, so both give the same bits).
    fn doc_score(&self, q: &LexicalQuery, doc: u32) -> f32 {
        let len = self.docs[doc as usize].len;
        let (terms, tfs) = self.doc_terms(doc);
        let mut matched: SmallVec<[(u32, f32); 8]> = terms
            .iter()
            .zip(tfs)
            .filter_map(|(&t, &tf)| {
                let slot = q.by_id.get(t)?;
                let idf = q.terms[slot as usize].1;
                Some((slot, Self::term_score(q, idf, u32::from(tf), len)))
            })
            .collect();
        if matched.len() > 1 {
            matched.sort_unstable_by_key(|&(slot, _)| slot);
        }
        matched.iter().map(|&(_, score)| score).sum()
    }

    /// The `n` best live documents with a positive score that `accept` admits, best
    /// first (ties: older first), as (seq, BM25 score).
    pub fn top(&self, q: &LexicalQuery, n: usize, accept: impl Fn(u64) -> bool) -> Vec<(u64, f32)> {
        if n == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(u32, f32)> = match &self.postings {
            // Term-at-a-time accumulation into a dense array (every BM25 term
            // score is positive, so 0 means "not touched").
            Some(postings) => {
                let mut acc = vec![0f32; self.docs.len()];
                let mut touched: Vec<u32> = Vec::new();
                for &(t, idf) in &q.terms {
                    let Some(p) = postings.get(&t) else { continue };
                    for (doc, tf) in p.decode() {
                        let d = &self.docs[doc as usize];
                        if d.alive {
                            let a = &mut acc[doc as usize];
                            if *a == 0.0 {
                                touched.push(doc);
                            }
                            *a += Self::term_score(q, idf, tf, d.len);
                        }
                    }
                }
                touched.iter().map(|&d| (d, acc[d as usize])).collect()
            }
            // Small: every live document's term list.
            None => (0..self.docs.len() as u32)
                .filter(|&doc| self.docs[doc as usize].alive)
                .map(|doc| (doc, self.doc_score(q, doc)))
                .filter(|&(_, score)| score > 0.0)
                .collect(),
        };
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // Best first in chunks: `accept` (a filter, often a hash lookup) runs only
        // on documents that can still make the top n.
        let mut out = Vec::with_capacity(n.min(scored.len()));
        let mut rest = &mut scored[..];
        while out.len() < n && !rest.is_empty() {
            let take = (2 * (n - out.len())).min(rest.len());
            if take < rest.len() {
                rest.select_nth_unstable_by(take - 1, order);
            }
            let (chunk, tail) = rest.split_at_mut(take);
            chunk.sort_unstable_by(order);
            for &(doc, score) in chunk.iter() {
                let seq = self.docs[doc as usize].seq;
                if accept(seq) {
                    out.push((seq, score));
                    if out.len() == n {
                        break;
                    }
                }
            }
            rest = tail;
        }
        out
    }

    /// Analyzed terms in the document of `seq` (0 for unknown seqs).
    pub fn doc_len(&self, seq: u64) -> u32 {
        self.by_seq
            .get(&seq)
            .map_or(0, |&d| self.docs[d as usize].len)
    }

    /// The session of `seq` (an interned id, stable while the index lives) when it
    /// is a message with a session id; `None` for a message without one, a
    /// summary, any other text and an unknown seq.
    pub fn session(&self, seq: u64) -> Option<u32> {
        let &d = self.by_seq.get(&seq)?;
        let chain = self.docs[d as usize].chain;
        (chain != NONE && self.chains.get(&None) != Some(&chain)).then_some(chain)
    }

    /// The nearest live predecessor and successor of `seq` in its session
    /// (insertion order); `None` for summaries, ends of a session, unknown seqs.
    pub fn neighbors(&self, seq: u64) -> [Option<u64>; 2] {
        let Some(&doc) = self.by_seq.get(&seq) else {
            return [None, None];
        };
        let walk = |mut i: u32, step: fn(&Doc) -> u32| {
            while i != NONE {
                let d = &self.docs[i as usize];
                if d.alive {
                    return Some(d.seq);
                }
                i = step(d);
            }
            None
        };
        let d = &self.docs[doc as usize];
        [walk(d.prev, |d| d.prev), walk(d.next, |d| d.next)]
    }
}

impl TermPostings {
    /// Appends `doc` (after every document already here) with frequency `tf`.
    fn add(&mut self, doc: u32, tf: u8) {
        put_posting(&mut self.bytes, doc - self.last_doc, tf);
        self.last_doc = doc;
        self.df += 1;
    }

    /// The postings, decoded.
    fn decode(&self) -> Postings<'_> {
        Postings {
            bytes: &self.bytes,
            at: 0,
            doc: 0,
        }
    }
}

/// Gives back one reference to the dictionary per entry of `ids`, counted per
/// id first so that the shared lock is held for the distinct ids only (a large
/// namespace has millions of entries over tens of thousands of terms).
fn release_all(mut ids: Vec<u32>) {
    if ids.is_empty() {
        return;
    }
    ids.sort_unstable();
    let mut counted: Vec<(u32, u32)> = Vec::new();
    for id in ids {
        match counted.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => counted.push((id, 1)),
        }
    }
    dictionary::shared().write().release(counted);
}

impl Drop for LexicalIndex {
    /// Gives back every forward-list entry's reference to its term.
    fn drop(&mut self) {
        release_all(std::mem::take(&mut self.fwd_terms));
    }
}

#[cfg(test)]
#[path = "lexical_tests.rs"]
mod tests;
