//! Following other nodes' writes on a shared store (PostgreSQL with several
//! memoryd nodes, [`RecordStore::shared`]).
//!
//! Every node keeps its own in-memory side (indexes, short-term rings, the
//! registry copy, API keys) and the store is the truth. A node learns of other
//! nodes' commits from the store's notices (`LISTEN`/`NOTIFY` carrying only the
//! namespace) and, for notices lost while disconnected, by polling the registry
//! every [`EngineConfig::follow_interval`](super::EngineConfig::follow_interval).
//! It then reads the namespace's change log after the last seq it applied and
//! brings the namespace up to it ([`Inner::follow_locked`]):
//!
//! - **records added**: the namespace's rows above the highest it indexed, read
//!   in row order (rows increase in commit order within a namespace, so this is
//!   exactly what it lacks);
//! - **records deleted**: its indexed rows that the store no longer has;
//! - **context entries and board documents**: each entry whose version differs
//!   from the indexed one is re-indexed (with its stored vector), entries gone
//!   are dropped;
//! - **registry fields** (parent, metadata, the summarization watermark);
//! - **namespace deleted**: the side is emptied in place and follows the name's
//!   next life, or is dropped when the name is not live.
//!
//! Each step is idempotent, so a step repeated after a crash or a race does no
//! harm. It runs under the namespace's writer lock, and a local commit catches
//! up before it builds its mutation and again with what was committed between
//! that and its own transaction (`write.rs`), so each node's side replays the
//! store's order. When that cannot be guaranteed (the log was pruned past what
//! this node applied, or a catch-up failed), the side is rebuilt from the store
//! and swapped in. Events need none of this: they are read from the store's
//! change log, so a notice only wakes this node's subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Inner;
use super::state::{self, NamespaceState};
use crate::core::access::NamespaceName;
use crate::core::error::{Error, Result};
use crate::core::types::HitKind;
use crate::storage::{ChangeKind, NamespaceRecord, RowId, StoredRecord, blocking};

/// Change-log entries read per page while catching up.
const PAGE: usize = 1024;

/// Records read per page while catching up.
const RECORD_PAGE: usize = 4096;

/// What [`Inner::follow_locked`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Followed {
    /// The side was already at the store's seq.
    Nothing,
    /// Changes were applied.
    Applied,
    /// The namespace is not live (another node deleted it): its side was
    /// dropped.
    Deleted,
    /// The side cannot replay the log (pruned past it, or marked for resync)
    /// and rebuilding was not allowed here: the follower rebuilds it.
    Deferred,
}

/// What the changes after the applied seq touched.
#[derive(Default, Debug)]
struct Touched {
    added: bool,
    deleted: bool,
    entries: bool,
    registry: bool,
    /// A `namespace.deleted` was read: the side is emptied first, and only the
    /// changes after the last one matter.
    namespace_deleted: bool,
    /// Something was deleted: cached event data may hold its text.
    forget: bool,
}

impl Touched {
    fn note(&mut self, kind: ChangeKind) {
        use ChangeKind::*;
        match kind {
            MessageAdded => self.added = true,
            MessageDeleted => {
                self.deleted = true;
                self.forget = true;
            }
            ContextDeleted => {
                self.entries = true;
                self.forget = true;
            }
            SummaryCreated => {
                self.added = true;
                self.registry = true;
            }
            NamespaceCreated | NamespaceUpdated => self.registry = true,
            NamespaceDeleted => {
                *self = Touched {
                    added: true,
                    entries: true,
                    registry: true,
                    namespace_deleted: true,
                    forget: true,
                    ..Touched::default()
                }
            }
            // Context entries, board documents, registrations, acknowledgements,
            // front-end documents: all live in the context store.
            _ => self.entries = true,
        }
    }
}

/// Loads every namespace's records on open from a shared store, namespace by
/// namespace in row order
/// ([`crate::storage::RecordStore::scan_namespace`]). The global row-order
/// scan sled's open uses could miss a row that another node committed behind
/// the scan's position (rows come from one sequence, but namespaces commit
/// independently); within one namespace rows are committed in row order, so this
/// read never leaves a hole. Returns the number of messages.
///
/// # Errors
/// [`Error::Storage`], [`Error::Corrupt`].
pub(crate) async fn load_each(inner: &Arc<Inner>) -> Result<usize> {
    let states: Vec<Arc<NamespaceState>> = inner.namespaces.read().values().cloned().collect();
    let mut count = 0;
    for ns in states {
        inner.follow_records(&ns, None).await?;
        count += ns.index.counts().messages;
    }
    Ok(count)
}

/// Starts this engine's follower thread (only for a shared store).
pub(crate) fn start(inner: &Arc<Inner>) {
    if !inner.store.shared() {
        return;
    }
    let notices = inner.store.notices();
    let weak = Arc::downgrade(inner);
    let interval = inner.config.follow_interval;
    let spawned = std::thread::Builder::new()
        .name("memoryd-follow".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                tracing::error!(
                    "cannot start the follower runtime; other nodes' writes are not followed"
                );
                return;
            };
            rt.block_on(run(weak, notices, interval));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the follower thread; other nodes' writes are not followed");
    }
}

async fn run(
    weak: std::sync::Weak<Inner>,
    mut notices: Option<tokio::sync::mpsc::Receiver<(String, u64)>>,
    interval: Duration,
) {
    // A full poll at least every `interval`, even under a steady stream of
    // notices (one may have been dropped), and after anything failed.
    let mut last_full = tokio::time::Instant::now();
    let mut full_due = true;
    loop {
        let mut names: HashMap<String, u64> = HashMap::new();
        let wait = interval.saturating_sub(last_full.elapsed());
        if !full_due {
            match notices.as_mut() {
                Some(rx) => match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some((name, seq))) => {
                        names.insert(name, seq);
                        while let Ok((name, seq)) = rx.try_recv() {
                            let at = names.entry(name).or_insert(seq);
                            *at = (*at).max(seq);
                        }
                    }
                    Ok(None) => notices = None,
                    Err(_) => {}
                },
                None => tokio::time::sleep(wait).await,
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        // Event subscribers read the store's log: wake them first.
        inner.commits.send_modify(|n| *n = n.wrapping_add(1));
        full_due |= names.remove("").is_some() || last_full.elapsed() >= interval;
        let result = if full_due {
            let r = inner.follow_all().await;
            last_full = tokio::time::Instant::now();
            r
        } else {
            let mut result = Ok(());
            for (name, seq) in names {
                let Ok(name) = NamespaceName::parse(&name) else {
                    continue;
                };
                // This node's own commits (and ones already followed) notify too.
                if inner.namespace(&name).is_some_and(|ns| {
                    seq != 0 && ns.applied_seq() >= seq && !ns.resync.load(Ordering::Acquire)
                }) {
                    continue;
                }
                if let Err(e) = inner.follow(&name).await {
                    result = Err(e);
                }
            }
            result
        };
        full_due = false;
        if let Err(e) = result {
            tracing::warn!(error = %e, "following other nodes' writes failed; retrying with a full poll");
            full_due = true;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Inner {
    /// Brings every namespace up to the store: new namespaces are loaded, those
    /// behind caught up, deleted ones dropped; API keys are reloaded.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be read.
    pub(crate) async fn follow_all(self: &Arc<Self>) -> Result<()> {
        let mut result = self.reload_keys().await;
        if let Err(e) = self.merge_heartbeats().await {
            result = Err(e);
        }
        let stored = self.store.namespaces().await?;
        let live: HashSet<&str> = stored.iter().map(|r| r.name.as_str()).collect();
        let mut behind = Vec::new();
        for record in &stored {
            let Ok(name) = NamespaceName::parse(&record.name) else {
                tracing::warn!(namespace = %record.name, "not a valid namespace name in the registry; skipped");
                continue;
            };
            match self.namespace(&name) {
                Some(ns)
                    if ns.applied_seq() >= record.last_seq
                        && !ns.resync.load(Ordering::Acquire) => {}
                _ => behind.push(name),
            }
        }
        let local: Vec<NamespaceName> = self.namespaces.read().keys().cloned().collect();
        behind.extend(local.into_iter().filter(|n| !live.contains(n.as_str())));
        for name in behind {
            if let Err(e) = self.follow(&name).await {
                result = Err(e);
            }
        }
        result
    }

    /// Takes the heartbeats other nodes received (a shared store keeps every
    /// node's), so this node judges agents' health from all of them.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub(crate) async fn merge_heartbeats(&self) -> Result<()> {
        let beats = self.store.heartbeats().await?;
        let mut seen = self.agent_seen.lock();
        for (agent, at) in beats {
            let t = seen.entry(agent).or_insert(at);
            *t = (*t).max(at);
        }
        Ok(())
    }

    /// Reloads the API keys from the store (another node created or revoked one).
    async fn reload_keys(&self) -> Result<()> {
        let stored = self.store.api_keys().await?;
        let mut keys = self.keys.write();
        for k in stored {
            // A revocation is never undone: a list read before this node revoked
            // a key must not bring it back.
            match keys.get(&k.key.id) {
                Some(mine) if mine.key.revoked_at.is_some() && k.key.revoked_at.is_none() => {}
                _ => {
                    keys.insert(k.key.id.clone(), k);
                }
            }
        }
        Ok(())
    }

    /// Brings one namespace up to the store's change log (creating its side when
    /// another node created it).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub(crate) async fn follow(self: &Arc<Self>, name: &NamespaceName) -> Result<()> {
        loop {
            let ns = match self.namespace(name) {
                Some(ns) => ns,
                None => {
                    let Some(record) = self.store.namespace_record(name.as_str()).await? else {
                        return Ok(());
                    };
                    // A side that has applied nothing: it follows the log from 1
                    // (or is rebuilt when the log was pruned).
                    let mut record = record;
                    record.last_seq = 0;
                    let fresh = Arc::new(self.new_namespace(name, Some(record)));
                    self.namespaces
                        .write()
                        .entry(name.clone())
                        .or_insert(fresh)
                        .clone()
                }
            };
            let guard = ns.writer.clone().lock_owned().await;
            if ns.deleted.load(Ordering::Acquire) {
                // Replaced meanwhile (deleted here, or rebuilt): look again.
                continue;
            }
            let followed = self.follow_locked(&ns, None, None, true).await;
            drop(guard);
            return match followed {
                Ok(Followed::Applied) => {
                    let current = self.namespace(name);
                    if let Some(ns) = current {
                        self.maintain(&ns);
                    }
                    Ok(())
                }
                Ok(Followed::Nothing | Followed::Deleted | Followed::Deferred) => Ok(()),
                Err(e) => {
                    ns.resync.store(true, Ordering::Release);
                    Err(e)
                }
            };
        }
    }

    /// Applies the changes other nodes committed to `ns` after the seq its side
    /// has applied, up to `upto` (all when `None`); rows from `below_row` up are
    /// left for later (a local commit's own rows, which it applies itself). When
    /// the side cannot replay the log (pruned past it, or marked for resync) it
    /// is rebuilt from the store and swapped in if `may_rebuild`, else
    /// [`Followed::Deferred`]. Call it under the namespace's writer lock.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`]; on error the side may be part way
    /// (every step is idempotent: the next call finishes it).
    pub(crate) async fn follow_locked(
        self: &Arc<Self>,
        ns: &Arc<NamespaceState>,
        upto: Option<u64>,
        below_row: Option<RowId>,
        may_rebuild: bool,
    ) -> Result<Followed> {
        let name = ns.name.as_str().to_owned();
        let applied = ns.applied_seq();
        let resync = ns.resync.load(Ordering::Acquire);
        let mut touched = Touched::default();
        let mut last = applied;
        let mut gap = false;
        'pages: loop {
            let page = self.store.changes(&name, last, PAGE).await?;
            let n = page.len();
            if let Some(first) = page.first()
                && first.seq != last + 1
            {
                // Pruned by retention before this node read it.
                gap = true;
            }
            for change in page {
                if upto.is_some_and(|u| change.seq > u) {
                    break 'pages;
                }
                touched.note(change.kind);
                last = change.seq;
            }
            if n < PAGE {
                break;
            }
        }
        if gap || resync {
            if !may_rebuild {
                ns.resync.store(true, Ordering::Release);
                return Ok(Followed::Deferred);
            }
            return self.rebuild(ns).await;
        }
        if last == applied {
            return Ok(Followed::Nothing);
        }
        if touched.forget {
            // Cached event data may hold deleted text.
            self.event_data.lock().clear();
        }
        if touched.namespace_deleted {
            // Whatever the side held belongs to an earlier life of the name.
            let st = ns.clone();
            blocking(move || {
                empty(&st);
                Ok(())
            })
            .await?;
        }
        if touched.added {
            self.follow_records(ns, below_row).await?;
        }
        if touched.deleted {
            let stored = self.store.namespace_rows(&name).await?;
            let st = ns.clone();
            blocking(move || {
                let mut gone = Vec::new();
                for kind in [HitKind::Message, HitKind::Summary] {
                    gone.extend(
                        st.rows(kind)
                            .into_iter()
                            .filter(|r| stored.binary_search(r).is_err()),
                    );
                }
                if !gone.is_empty() {
                    st.index.remove(&gone);
                    st.short_term.lock().remove(&gone);
                }
                Ok(())
            })
            .await?;
        }
        if touched.entries {
            self.follow_entries(ns).await?;
        }
        if touched.registry {
            match self.store.namespace_record(&name).await? {
                Some(record) => {
                    let upto = record.summarized_upto;
                    if touched.namespace_deleted
                        || upto > ns.summarized_upto.load(Ordering::Acquire)
                    {
                        ns.summarized_upto.store(upto, Ordering::Release);
                        ns.short_term.lock().summarized(upto);
                    }
                    let mut mine = ns.record.lock();
                    let seq = mine.as_ref().map_or(0, |r| r.last_seq);
                    *mine = Some(NamespaceRecord {
                        last_seq: seq,
                        ..record
                    });
                }
                None => {
                    // Not live (deleted again after the log was read).
                    self.discard_followed(ns);
                    return Ok(Followed::Deleted);
                }
            }
        }
        let mut record = ns.record.lock();
        match record.as_mut() {
            Some(r) => r.last_seq = r.last_seq.max(last),
            None => {
                // Never given its registry entry (its creation was pruned):
                // rebuild it next time.
                ns.resync.store(true, Ordering::Release);
            }
        }
        Ok(Followed::Applied)
    }

    /// Replaces `old`'s side with one loaded afresh from the store (the log
    /// cannot be replayed onto it). Under `old`'s writer lock: commits waiting
    /// for it see it deleted and move to the new side.
    async fn rebuild(self: &Arc<Self>, old: &Arc<NamespaceState>) -> Result<Followed> {
        let Some(record) = self.store.namespace_record(old.name.as_str()).await? else {
            self.discard_followed(old);
            return Ok(Followed::Deleted);
        };
        let fresh = Arc::new(self.new_namespace(&old.name, Some(record)));
        self.follow_records(&fresh, None).await?;
        self.follow_entries(&fresh).await?;
        let st = fresh.clone();
        blocking(move || {
            // Reuse the graph dump when it matches the store.
            st.index.restore();
            Ok(())
        })
        .await?;
        old.deleted.store(true, Ordering::Release);
        self.namespaces.write().insert(old.name.clone(), fresh);
        self.event_data.lock().clear();
        tracing::info!(namespace = %old.name, "rebuilt from the store (the change log could not be replayed)");
        Ok(Followed::Applied)
    }

    /// Indexes the namespace's rows above the highest it has, below `below_row`.
    async fn follow_records(
        self: &Arc<Self>,
        ns: &Arc<NamespaceState>,
        below_row: Option<RowId>,
    ) -> Result<()> {
        loop {
            let after = ns.max_row.load(Ordering::Acquire);
            let mut page = self
                .store
                .scan_namespace(ns.name.as_str(), after, RECORD_PAGE)
                .await?;
            let full = page.len() == RECORD_PAGE;
            let before = page.len();
            if let Some(b) = below_row {
                page.retain(|r| r.row < b);
            }
            let cut = page.len() < before;
            if page.is_empty() {
                return Ok(());
            }
            let dim = self.info.dim;
            if let Some(bad) = page.iter().find(|r| r.vector.len() != dim) {
                return Err(Error::Corrupt {
                    tree: "vectors",
                    message: format!(
                        "row {} has {} values, the model {dim}",
                        bad.row,
                        bad.vector.len()
                    ),
                });
            }
            let st = ns.clone();
            let capacity = self.config.short_term_capacity;
            blocking(move || {
                index_records(&st, &page, capacity);
                Ok(())
            })
            .await?;
            if !full || cut {
                return Ok(());
            }
        }
    }

    /// Re-indexes the entries whose version changed, drops those gone.
    async fn follow_entries(self: &Arc<Self>, ns: &Arc<NamespaceState>) -> Result<()> {
        let now = chrono::Utc::now();
        let mut entries = self.store.context_indexed(ns.name.as_str(), now).await?;
        entries.retain(|(e, _)| state::searchable(&e.key));
        let dim = self.info.dim;
        let st = ns.clone();
        blocking(move || {
            let live: HashSet<&str> = entries.iter().map(|(e, _)| e.key.as_str()).collect();
            let gone: Vec<String> = st
                .entries
                .lock()
                .keys()
                .into_iter()
                .filter(|k| !live.contains(k.as_str()))
                .collect();
            for key in gone {
                st.unindex_entry(&key);
            }
            for (entry, vector) in &entries {
                if st.entries.lock().version(&entry.key) == Some(entry.version) {
                    continue;
                }
                match vector {
                    Some(v) if v.len() == dim => st.index_entry(entry, v),
                    // Written without a vector (not searchable until re-written
                    // or re-opened, as on open).
                    _ => {}
                }
            }
            Ok(())
        })
        .await
    }

    /// Drops a namespace's side after another node deleted it (as
    /// [`Inner::apply`] does for a local deletion).
    fn discard_followed(&self, ns: &Arc<NamespaceState>) {
        self.event_data.lock().clear();
        ns.deleted.store(true, Ordering::Release);
        ns.index.discard();
        let mut map = self.namespaces.write();
        if map.get(&ns.name).is_some_and(|cur| Arc::ptr_eq(cur, ns)) {
            map.remove(&ns.name);
        }
    }
}

/// Empties a side in place: rows, entries, short-term memory, watermark.
fn empty(ns: &NamespaceState) {
    let mut rows = ns.rows(HitKind::Message);
    rows.extend(ns.rows(HitKind::Summary));
    ns.index.remove(&rows);
    // Rows of the name's next life may have been read above the old ones:
    // read again from the start (the store holds only live rows).
    ns.max_row.store(0, Ordering::Release);
    let keys = ns.entries.lock().keys();
    for key in keys {
        ns.unindex_entry(&key);
    }
    ns.entries.lock().resolved.clear();
    *ns.short_term.lock() = crate::policy::ShortTerm::default();
    ns.summarized_upto.store(0, Ordering::Release);
}

/// Inserts stored records (one namespace's, in row order) into its side.
fn index_records(ns: &NamespaceState, page: &[StoredRecord], capacity: usize) {
    let records: Vec<&StoredRecord> = page.iter().collect();
    let added = ns.index_stored(&records, capacity);
    metrics::counter!("memoryd_messages_followed_total").increment(added as u64);
}
