//! The in-memory side of one namespace, and [`Inner::apply`]: the one place a
//! committed change reaches it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use uuid::Uuid;

use super::Inner;
use crate::core::access::NamespaceName;
use crate::core::board::{BOARD_KEY_PREFIX, PROBLEM_KEY_PREFIX, parse_proposal_key, problem_text};
use crate::core::context::ContextEntry;
use crate::core::types::{HitKind, Message, NamespaceInfo};
use crate::policy::ShortTerm;
use crate::search::store::StoreIndex;
use crate::search::{InProcessIndex, IndexDoc, SearchIndex};
use crate::storage::{Committed, Mutation, NamespaceRecord, Record, RowId, StoredRecord};

/// One namespace as the engine serves it. Everything here is derived from the
/// store and rebuilt on open.
pub(crate) struct NamespaceState {
    pub(crate) name: NamespaceName,
    /// The search side (vector + lexical).
    pub(crate) index: Box<dyn SearchIndex>,
    /// Ring buffer and unsummarized queue.
    pub(crate) short_term: Mutex<ShortTerm>,
    /// Registry entry as last committed.
    pub(crate) record: Mutex<Option<NamespaceRecord>>,
    /// Every message with a row at or below this is summarized.
    pub(crate) summarized_upto: AtomicU64,
    /// One summarization at a time per namespace.
    pub(crate) summarizing: tokio::sync::Mutex<()>,
    /// Serializes commits, so the index replays the store's order.
    pub(crate) writer: Arc<tokio::sync::Mutex<()>>,
    /// Set, under `writer`, when the namespace is deleted.
    pub(crate) deleted: AtomicBool,
    /// Index rows of the live context entries and board documents.
    pub(crate) entries: Mutex<EntryRows>,
    /// Highest message or summary row indexed (0: none): on a shared store the
    /// follower reads the rows other nodes wrote after it (`engine/follow.rs`).
    pub(crate) max_row: AtomicU64,
    /// Set when this node may have missed other nodes' changes (a catch-up
    /// failed): the follower then reconciles everything.
    pub(crate) resync: AtomicBool,
}

/// Index rows of a namespace's searchable context entries and board documents.
/// They have no store row (they are keyed by name), so the engine numbers them
/// from [`ENTRY_ROW_BASE`], above every store row (sled's ids would need 2^62
/// writes to reach it). Rebuilt on open.
#[derive(Default)]
pub(crate) struct EntryRows {
    by_key: HashMap<String, RowId>,
    by_row: HashMap<RowId, String>,
    /// Version of each indexed entry.
    versions: HashMap<String, u64>,
    next: u64,
    /// Proposal id → its problem's id.
    pub(crate) proposals: HashMap<String, String>,
    /// Ids of resolved problems: proposals and votes on them are refused under
    /// the namespace's writer lock, so none lands after a resolution.
    pub(crate) resolved: std::collections::HashSet<String>,
}

/// First index row of context entries and board documents.
pub(crate) const ENTRY_ROW_BASE: RowId = 1 << 62;

impl EntryRows {
    /// Whether `key` is indexed.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The key indexed at `row`.
    pub(crate) fn key(&self, row: RowId) -> Option<&str> {
        self.by_row.get(&row).map(String::as_str)
    }

    /// The version indexed under `key`.
    pub(crate) fn version(&self, key: &str) -> Option<u64> {
        self.versions.get(key).copied()
    }

    /// Every indexed key.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.by_key.keys().cloned().collect()
    }
}

/// Records a problem document's resolution.
fn note_resolution(e: &mut EntryRows, entry: &ContextEntry) {
    if let Some(id) = entry.key.strip_prefix(PROBLEM_KEY_PREFIX)
        && entry.value.get("status").and_then(|s| s.as_str()) == Some("resolved")
    {
        e.resolved.insert(id.to_owned());
    }
}

/// Whether an entry is indexed for search: context entries, board documents
/// and agent registrations; not other `~` documents (inbox acknowledgements,
/// front-end documents such as A2A tasks).
pub(crate) fn searchable(key: &str) -> bool {
    !key.starts_with('~')
        || key.starts_with(BOARD_KEY_PREFIX)
        || key.starts_with(crate::core::agents::AGENT_KEY_PREFIX)
}

/// The kind and search text of a context entry or board document.
pub(crate) fn entry_text(entry: &ContextEntry) -> (HitKind, String) {
    if entry.key.starts_with(BOARD_KEY_PREFIX) {
        let field = |f: &str| entry.value.get(f).and_then(|v| v.as_str()).unwrap_or("");
        let text = if entry.key.starts_with(PROBLEM_KEY_PREFIX) {
            problem_text(field("title"), field("body"))
        } else {
            field("body").to_owned()
        };
        (HitKind::Board, text)
    } else if entry.key.starts_with(crate::core::agents::AGENT_KEY_PREFIX) {
        (
            HitKind::Agent,
            crate::core::agents::card_text(&entry.value["card"]),
        )
    } else {
        (HitKind::Context, entry.search_text())
    }
}

impl NamespaceState {
    /// Records stored messages in short-term memory, under one lock (a summary
    /// window never splits a batch).
    pub(crate) fn remember<'a>(
        &self,
        messages: impl IntoIterator<Item = (RowId, &'a Message)>,
        capacity: usize,
    ) {
        let upto = self.summarized_upto.load(Ordering::Acquire);
        let mut st = self.short_term.lock();
        for (row, m) in messages {
            // 0 is "nothing summarized" (rows of stores written before rows
            // started at 1 may be 0).
            st.push(row, inserted_ms(&m.id), capacity, upto == 0 || row > upto);
        }
    }

    /// Indexes stored records of this namespace (in row order) and remembers
    /// its messages in short-term memory; returns how many were messages. Used by
    /// open and by the follower.
    pub(crate) fn index_stored(&self, records: &[&StoredRecord], capacity: usize) -> usize {
        let docs: Vec<IndexDoc<'_>> = records
            .iter()
            .map(|stored| match &stored.record {
                Record::Message(m) => IndexDoc::Message {
                    row: stored.row,
                    message: m,
                    vector: &stored.vector,
                },
                Record::Summary(s) => IndexDoc::Summary {
                    row: stored.row,
                    summary: s,
                    vector: &stored.vector,
                },
            })
            .collect();
        self.index.insert(&docs);
        if let Some(last) = records.last() {
            self.saw_row(last.row);
        }
        let messages: Vec<_> = records
            .iter()
            .filter_map(|stored| match &stored.record {
                Record::Message(m) => Some((stored.row, m)),
                Record::Summary(_) => None,
            })
            .collect();
        let n = messages.len();
        self.remember(messages, capacity);
        n
    }

    /// Notes that rows up to `row` are indexed.
    pub(crate) fn saw_row(&self, row: RowId) {
        self.max_row.fetch_max(row, Ordering::AcqRel);
    }

    /// The last change-log seq applied to this side (0: none).
    pub(crate) fn applied_seq(&self) -> u64 {
        self.record.lock().as_ref().map_or(0, |r| r.last_seq)
    }

    /// Name, counts and registry fields.
    pub(crate) fn info(&self) -> NamespaceInfo {
        let counts = self.index.counts();
        let record = self.record.lock();
        NamespaceInfo {
            name: self.name.to_string(),
            messages: counts.messages,
            summaries: counts.summaries,
            created_at: record.as_ref().map(|r| r.created_at),
            parent: record.as_ref().and_then(|r| r.parent.clone()),
            metadata: record
                .as_ref()
                .map(|r| r.metadata.clone())
                .unwrap_or_default(),
            last_seq: record.as_ref().map_or(0, |r| r.last_seq),
        }
    }

    /// Rows of one kind, oldest first.
    pub(crate) fn rows(&self, kind: HitKind) -> Vec<RowId> {
        self.index.rows(kind)
    }

    /// Indexes (or re-indexes) a live context entry or board document with its
    /// unit vector `[dim]`, replacing what was indexed under its key.
    pub(crate) fn index_entry(&self, entry: &ContextEntry, vector: &[f32]) {
        let (kind, text) = entry_text(entry);
        let mut e = self.entries.lock();
        if let Some(old) = e.by_key.remove(&entry.key) {
            e.by_row.remove(&old);
            self.index.remove(&[old]);
        }
        let row = ENTRY_ROW_BASE + e.next;
        e.next += 1;
        e.by_key.insert(entry.key.clone(), row);
        e.by_row.insert(row, entry.key.clone());
        e.versions.insert(entry.key.clone(), entry.version);
        if let Some((problem, proposal)) = parse_proposal_key(&entry.key) {
            e.proposals.insert(proposal.to_owned(), problem.to_owned());
        }
        note_resolution(&mut e, entry);
        self.index.insert(&[IndexDoc::Entry {
            row,
            kind,
            text: &text,
            at: entry.updated_at,
            vector,
        }]);
    }

    /// Drops a key from the index (deleted or expired).
    pub(crate) fn unindex_entry(&self, key: &str) {
        let mut e = self.entries.lock();
        if let Some(old) = e.by_key.remove(key) {
            e.by_row.remove(&old);
            self.index.remove(&[old]);
        }
        e.versions.remove(key);
        if let Some((_, proposal)) = parse_proposal_key(key) {
            e.proposals.remove(proposal);
        }
    }
}

impl Inner {
    pub(crate) fn new_namespace(
        &self,
        name: &NamespaceName,
        record: Option<NamespaceRecord>,
    ) -> NamespaceState {
        let index: Box<dyn SearchIndex> =
            if self.store.ranks_vectors() && !self.config.in_memory_index {
                Box::new(StoreIndex::new(
                    name.as_str(),
                    self.info.dim,
                    self.config.index.clone(),
                    self.store.clone(),
                ))
            } else {
                Box::new(InProcessIndex::new(
                    name.as_str(),
                    self.info.dim,
                    self.config.index.clone(),
                    self.graph_root()
                        .map(|root| crate::search::persist::namespace_dir(&root, name.as_str())),
                ))
            };
        NamespaceState {
            name: name.clone(),
            index,
            short_term: Mutex::new(ShortTerm::default()),
            summarized_upto: AtomicU64::new(record.as_ref().map_or(0, |r| r.summarized_upto)),
            record: Mutex::new(record),
            summarizing: tokio::sync::Mutex::new(()),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            deleted: AtomicBool::new(false),
            entries: Mutex::new(EntryRows::default()),
            max_row: AtomicU64::new(0),
            resync: AtomicBool::new(false),
        }
    }

    /// Where graph dumps live (`<data_dir>/graphs`), when they are kept.
    pub(crate) fn graph_root(&self) -> Option<std::path::PathBuf> {
        self.config
            .persist_graphs
            .then(|| self.config.data_dir.join("graphs"))
    }

    pub(crate) fn namespace(&self, name: &NamespaceName) -> Option<Arc<NamespaceState>> {
        self.namespaces.read().get(name).cloned()
    }

    pub(crate) fn namespace_or_create(&self, name: &NamespaceName) -> Arc<NamespaceState> {
        if let Some(ns) = self.namespace(name) {
            return ns;
        }
        self.namespaces
            .write()
            .entry(name.clone())
            .or_insert_with(|| Arc::new(self.new_namespace(name, None)))
            .clone()
    }

    /// Applies a committed mutation to the in-memory side: index, short-term
    /// memory, summary watermark, registry. The only code that changes them after
    /// open; called under the namespace's writer lock, in commit order.
    pub(crate) fn apply(&self, ns: &NamespaceState, mutation: &Mutation, committed: &Committed) {
        if let Some(last) = committed.changes.last() {
            let mut record = ns.record.lock();
            match record.as_mut() {
                Some(r) => r.last_seq = last.seq,
                None => {
                    *record = Some(NamespaceRecord {
                        name: ns.name.to_string(),
                        created_at: last.at,
                        parent: None,
                        metadata: serde_json::Map::new(),
                        last_seq: last.seq,
                        summarized_upto: 0,
                    })
                }
            }
        }
        match mutation {
            Mutation::CreateNamespace {
                parent,
                metadata,
                update,
            } => {
                use crate::storage::ChangeKind;
                let kind = committed.changes.first().map(|c| c.kind);
                if let Some(r) = ns.record.lock().as_mut() {
                    match (kind, update) {
                        (Some(ChangeKind::NamespaceCreated), _) => {
                            r.parent = parent.as_ref().map(|p| p.to_string());
                            r.metadata = metadata.clone();
                        }
                        (Some(ChangeKind::NamespaceUpdated), Some(u)) => {
                            r.parent = u.parent.as_ref().map(|p| p.to_string());
                            if let Some(m) = &u.metadata {
                                r.metadata = m.clone();
                            }
                        }
                        _ => {}
                    }
                }
            }
            Mutation::AddMessages(items) => {
                let docs: Vec<IndexDoc<'_>> = items
                    .iter()
                    .zip(&committed.rows)
                    .map(|((message, vector), &row)| IndexDoc::Message {
                        row,
                        message,
                        vector,
                    })
                    .collect();
                ns.index.insert(&docs);
                if let Some(&row) = committed.rows.last() {
                    ns.saw_row(row);
                }
                ns.remember(
                    committed
                        .rows
                        .iter()
                        .copied()
                        .zip(items.iter().map(|(m, _)| m)),
                    self.config.short_term_capacity,
                );
                metrics::counter!("memoryd_messages_added_total").increment(items.len() as u64);
            }
            Mutation::DeleteMessages(items) => {
                // Cached event data may hold the deleted text.
                self.event_data.lock().clear();
                let rows: Vec<RowId> = items.iter().map(|(r, _)| *r).collect();
                ns.index.remove(&rows);
                ns.short_term.lock().remove(&rows);
                metrics::counter!("memoryd_messages_deleted_total").increment(rows.len() as u64);
            }
            Mutation::AddSummary {
                summary,
                vector,
                upto,
                evict,
            } => {
                if let Some(&row) = committed.rows.first() {
                    ns.index.insert(&[IndexDoc::Summary {
                        row,
                        summary,
                        vector,
                    }]);
                    ns.saw_row(row);
                }
                let evicted: Vec<RowId> = evict.iter().map(|(r, _)| *r).collect();
                if !evicted.is_empty() {
                    self.event_data.lock().clear();
                }
                ns.index.remove(&evicted);
                ns.summarized_upto.store(*upto, Ordering::Release);
                let mut st = ns.short_term.lock();
                st.remove(&evicted);
                st.summarized(*upto);
                metrics::counter!("memoryd_summaries_total").increment(1);
            }
            // A new text brings a new vector; a write that keeps the text (a
            // vote, a resolution) keeps the indexed one.
            Mutation::PutContext(put) => match &committed.context {
                Some(entry) if entry.deleted => {
                    self.event_data.lock().clear();
                    ns.unindex_entry(&entry.key)
                }
                Some(entry) => match &put.vector {
                    Some(v) => ns.index_entry(entry, v),
                    None => note_resolution(&mut ns.entries.lock(), entry),
                },
                None => {}
            },
            Mutation::DeleteNamespace { .. } => {
                self.event_data.lock().clear();
                ns.deleted.store(true, Ordering::Release);
                ns.index.discard();
                self.namespaces.write().remove(&ns.name);
            }
        }
    }
}

/// Insertion time of a message from its UUID v7 id (ms since the epoch).
pub(crate) fn inserted_ms(id: &str) -> i64 {
    Uuid::parse_str(id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or(0)
}
