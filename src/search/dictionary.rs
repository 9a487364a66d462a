//! The term dictionary every namespace's BM25 index shares (issue 19).
//!
//! A namespace's [`LexicalIndex`](super::lexical::LexicalIndex) refers to each
//! term by its id here instead of holding the term's text (its postings, document
//! frequencies and lengths stay its own: BM25 statistics are never pooled across
//! namespaces): 10,000 namespaces that all say "yesterday" hold the string once.
//! Before it, each namespace's own map of strings was most of what a small
//! namespace cost on its own (`cargo bench --bench memory`, README "What a message
//! costs in memory").
//!
//! Each id is reference-counted (a lexical index holds one reference per document
//! containing the term) and freed, its number reused, when the last reference goes,
//! so deleting a namespace gives back the terms only it used: the dictionary is as
//! large as the union of the live indexes' vocabularies, however many namespaces
//! came and went.
//!
//! One lock guards it. An index takes it once per document it adds (to find or
//! create the document's distinct terms and count them), once per query (to look
//! the query's terms up, shared), at compaction and when it is dropped (to give its
//! references back, counted per term before the lock is taken, so it is held for
//! the distinct terms, not every document's). Each holds it well under a
//! microsecond a term.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::RwLock;

/// Analyzed terms → ids, reference-counted.
#[derive(Debug, Default)]
pub struct Dictionary {
    ids: HashMap<Arc<str>, u32>,
    /// Per id: its term, `None` while the id is free.
    terms: Vec<Option<Arc<str>>>,
    /// Per id: how many references are held (a lexical index holds one per
    /// document containing the term).
    refs: Vec<u32>,
    /// Freed ids, reused before new ones.
    free: Vec<u32>,
}

static SHARED: LazyLock<RwLock<Dictionary>> = LazyLock::new(Default::default);

/// The process-wide dictionary the lexical indexes share.
pub(crate) fn shared() -> &'static RwLock<Dictionary> {
    &SHARED
}

impl Dictionary {
    /// The ids of `terms`, in order, creating those not there yet. Each id is
    /// counted once more for each time it is given: the caller now holds it and
    /// must [`release`] it as often.
    ///
    /// [`release`]: Dictionary::release
    pub(crate) fn intern<S: AsRef<str>>(&mut self, terms: &[S]) -> Vec<u32> {
        terms
            .iter()
            .map(|t| {
                let t = t.as_ref();
                let id = match self.ids.get(t) {
                    Some(&id) => id,
                    None => self.create(t),
                };
                let refs = &mut self.refs[id as usize];
                *refs = refs
                    .checked_add(1)
                    .expect("fewer than 2^32 references to a term");
                id
            })
            .collect()
    }

    fn create(&mut self, term: &str) -> u32 {
        let term: Arc<str> = term.into();
        let id = match self.free.pop() {
            Some(id) => {
                self.terms[id as usize] = Some(term.clone());
                id
            }
            None => {
                let id = u32::try_from(self.terms.len()).expect("fewer than 2^32 distinct terms");
                self.terms.push(Some(term.clone()));
                self.refs.push(0);
                id
            }
        };
        self.ids.insert(term, id);
        id
    }

    /// The id of `term`, if a reference to it is held.
    pub fn get(&self, term: &str) -> Option<u32> {
        self.ids.get(term).copied()
    }

    /// Lets go of `n` references to `id` for each `(id, n)`; an id nobody holds
    /// any more is freed. Releasing more than is held is a caller's bug (debug
    /// builds panic; release builds free the id).
    pub(crate) fn release(&mut self, ids: impl IntoIterator<Item = (u32, u32)>) {
        for (id, n) in ids {
            let Some(refs) = self.refs.get_mut(id as usize).filter(|r| **r > 0) else {
                debug_assert!(false, "released term id {id} is not held");
                continue;
            };
            debug_assert!(*refs >= n, "term id {id}: {n} released, {refs} held");
            *refs = refs.saturating_sub(n);
            if *refs == 0
                && let Some(term) = self.terms[id as usize].take()
            {
                self.ids.remove(&term);
                self.free.push(id);
            }
        }
    }

    /// Distinct terms some index holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no index holds any term.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// References held to `term` (0 when it is not there).
    pub fn references(&self, term: &str) -> u32 {
        self.get(term).map_or(0, |id| self.refs[id as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_reference_and_frees_the_term_with_the_last() {
        let mut d = Dictionary::default();
        let a = d.intern(&["cat", "dog"]);
        assert_eq!(d.len(), 2);
        let b = d.intern(&["cat"]);
        assert_eq!(a[0], b[0]);
        assert_eq!([d.references("cat"), d.references("dog")], [2, 1]);

        d.release(a.iter().map(|&id| (id, 1)));
        assert_eq!([d.references("cat"), d.references("dog")], [1, 0]);
        assert_eq!(d.get("dog"), None, "nobody holds it any more");
        assert_eq!(d.len(), 1);
        // Its id is reused for the next new term.
        let c = d.intern(&["emu"]);
        assert_eq!(c[0], a[1]);
        assert_eq!(d.get("emu"), Some(a[1]));

        d.release([(b[0], 1), (c[0], 1)]);
        assert!(d.is_empty());
        assert_eq!(d.references("cat"), 0);
    }
}
