//! The embedded backend: one sled database in `<data_dir>/sled`.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `"engine"` | [`EngineMeta`]: model id, weights sha256, dimension |
//! | `messages` | row (u64 big-endian) | a message record |
//! | `summaries` | row (u64 big-endian) | a summary record |
//! | `vectors` | row (u64 big-endian) | `dim` × f32 little-endian (raw, not postcard) |
//! | `ids` | record UUID (16 bytes) | row (u64 big-endian) |
//! | `namespaces` | namespace name (UTF-8) | a namespace record (registry entry, watermark, last change seq) |
//! | `changes` | namespace name, `0x00`, seq (u64 big-endian) | a change-log entry |
//! | `context` | namespace name, `0x00`, key | the key's current state (JSON) |
//! | `context_history` | namespace name, `0x00`, key, `0x00`, version (u64 big-endian) | one version (JSON) |
//! | `context_vectors` | namespace name, `0x00`, key | the current version's search vector (as in `vectors`, with a format byte) |
//! | `context_expiry` | expiry (µs since the epoch, u64 big-endian), namespace name, `0x00`, key | empty: the entries that expire, in time order |
//! | `audit` | seq (u64 big-endian); and `"head"` | an audit entry (JSON); the head: `{seq, hash}` of the last one |
//! | `kv` | any UTF-8 key | bytes (the compare-and-set key space) |
//! | `keys` | key id (16 hex digits) | an API key with its token's SHA-256 (JSON), never the token |
//!
//! Rows come from sled's monotonic `generate_id`, so iterating `messages` yields
//! insertion order. A commit is one sled transaction over every tree it touches,
//! then `flush` (fsync) before it returns: an acknowledged write survives
//! `kill -9` and power loss (to the extent the disk honours fsync). sled runs on
//! the blocking pool, never on the async runtime.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

use super::codec::{
    EngineMeta, StoredNamespace, corrupt, decode_change, decode_json, decode_message, decode_meta,
    decode_namespace, decode_summary, decode_vector, encode, encode_change, encode_json,
    encode_namespace, encode_vector, micros, parse_id,
};
use super::sha256_hex;
use super::{
    AUDIT_GENESIS, AuditDraft, AuditEntry, Change, ChangeKind, Commit, Committed, NamespaceRecord,
    Record, RecordKind, RecordStore, Retention, RowId, StoreCheck, StoredRecord, blocking,
};
use crate::core::context::{ContextEntry, ContextVersion};
use crate::core::error::{Error, Result};
use crate::embed::ModelInfo;

/// Key of the audit chain's head in the `audit` tree.
const AUDIT_HEAD: &[u8] = b"head";

/// The last audit entry's seq and hash.
#[derive(serde::Serialize, serde::Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
}

/// Chains `drafts` (each with the SHA-256 of the record it wrote, if any) onto
/// the audit log inside a transaction: the head is read, each entry gets the
/// next seq and `hash = SHA-256(prev_hash ‖ entry)`, the head is rewritten.
fn append_audit(
    audit: &TransactionalTree,
    now: DateTime<Utc>,
    drafts: Vec<(AuditDraft, Option<String>)>,
) -> TxResult<()> {
    if drafts.is_empty() {
        return Ok(());
    }
    let mut head: AuditHead = match audit.get(AUDIT_HEAD)? {
        Some(b) => decode_json("audit", &b).map_err(ConflictableTransactionError::Abort)?,
        // No head but entries: never start the chain over them.
        None if audit.get(1u64.to_be_bytes())?.is_some() => {
            return Err(ConflictableTransactionError::Abort(corrupt(
                "audit",
                "the chain's head is missing",
            )));
        }
        None => AuditHead {
            seq: 0,
            hash: AUDIT_GENESIS.to_owned(),
        },
    };
    for (d, value_sha256) in drafts {
        let entry = AuditEntry::chained(head.seq, &head.hash, now, d, value_sha256);
        audit.insert(&entry.seq.to_be_bytes()[..], encode_json(&entry))?;
        head = AuditHead {
            seq: entry.seq,
            hash: entry.hash,
        };
    }
    audit.insert(AUDIT_HEAD, encode_json(&head))?;
    Ok(())
}

/// The sled-backed [`RecordStore`]. Cheap to clone (sled handles are shared).
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    messages: sled::Tree,
    vectors: sled::Tree,
    ids: sled::Tree,
    namespaces: sled::Tree,
    summaries: sled::Tree,
    changes: sled::Tree,
    context: sled::Tree,
    context_history: sled::Tree,
    context_expiry: sled::Tree,
    context_vectors: sled::Tree,
    audit: sled::Tree,
    kv: sled::Tree,
    keys: sled::Tree,
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::storage(e),
    }
}

fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn change_key(ns: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 9);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn row_key(k: &[u8], tree: &'static str) -> Result<RowId> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| corrupt(tree, "key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(b))
}

/// Point reads done on the caller's thread instead of the blocking pool.
const INLINE_READS: usize = 32;

/// sled's page cache, bytes. sled's default (1 GiB) filled with every page the
/// open-time scan touched, so a restarted server with 100k messages held ~350 MiB
/// of store pages it never read again (the indexes hold what searches need; a hit
/// is one point read). Measured with `cargo bench --bench scale` (README, "One
/// node at scale").
const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl SledStore {
    /// Opens (or creates) the store in `<dir>/sled`.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot open the directory (e.g. another
    /// process holds it).
    pub fn open(dir: &std::path::Path) -> Result<SledStore> {
        std::fs::create_dir_all(dir)?;
        let config = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(SLED_CACHE_BYTES)
            .mode(sled::Mode::HighThroughput);
        // sled releases its file lock from a background thread after the last handle
        // drops, so reopening a directory in the same process can briefly find it
        // locked. Wait up to 2 s for that; a directory held by another live process
        // still fails (after the wait).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(Error::storage)?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(Error::storage);
        Ok(SledStore {
            meta: tree("meta")?,
            messages: tree("messages")?,
            vectors: tree("vectors")?,
            ids: tree("ids")?,
            namespaces: tree("namespaces")?,
            summaries: tree("summaries")?,
            changes: tree("changes")?,
            context: tree("context")?,
            context_history: tree("context_history")?,
            context_expiry: tree("context_expiry")?,
            context_vectors: tree("context_vectors")?,
            audit: tree("audit")?,
            kv: tree("kv")?,
            keys: tree("keys")?,
            db,
        })
    }

    fn flush_sync(&self) -> Result<()> {
        self.db.flush().map_err(Error::storage)?;
        Ok(())
    }

    fn commit_sync(
        &self,
        name: &str,
        actor: Option<String>,
        key_id: Option<String>,
        enc: Encoded,
    ) -> Result<Committed> {
        let now = crate::core::types::to_micros(Utc::now());
        let committed = (
            &self.messages,
            &self.vectors,
            &self.ids,
            &self.namespaces,
            &self.summaries,
            &self.changes,
            &self.context,
            &self.context_history,
            &self.context_expiry,
            &self.context_vectors,
            &self.audit,
        )
            .transaction(
                |(
                    messages,
                    vectors,
                    ids,
                    namespaces,
                    summaries,
                    changes,
                    context,
                    history,
                    expiry,
                    context_vectors,
                    audit,
                )|
                 -> TxResult<Committed> {
                    let stored = match namespaces.get(name.as_bytes())? {
                        Some(b) => Some(
                            decode_namespace(name, &b)
                                .map_err(ConflictableTransactionError::Abort)?,
                        ),
                        None => None,
                    };
                    let live = stored.as_ref().is_some_and(|s| !s.deleted);
                    let mut entries: Vec<(ChangeKind, Vec<String>)> = Vec::new();
                    // Entry index → SHA-256 of the record bytes it wrote.
                    let mut digests: Vec<(usize, String)> = Vec::new();
                    let mut ns = match stored {
                        Some(s) if !s.deleted => s,
                        previous => {
                            if matches!(
                                enc,
                                Encoded::Delete(_)
                                    | Encoded::DropNamespace { .. }
                                    | Encoded::Summary { .. }
                            ) {
                                return abort(Error::NotFound {
                                    what: "namespace",
                                    id: name.to_owned(),
                                });
                            }
                            let (parent, metadata) = match &enc {
                                Encoded::Create {
                                    parent, metadata, ..
                                } => (parent.clone(), metadata.clone()),
                                _ => (None, serde_json::Map::new()),
                            };
                            entries.push((ChangeKind::NamespaceCreated, Vec::new()));
                            StoredNamespace {
                                record: NamespaceRecord {
                                    name: name.to_owned(),
                                    created_at: now,
                                    parent,
                                    metadata,
                                    last_seq: previous.map_or(0, |p| p.record.last_seq),
                                    summarized_upto: 0,
                                },
                                deleted: false,
                            }
                        }
                    };
                    let mut rows = Vec::new();
                    let mut written_context = None;
                    match &enc {
                        Encoded::Create { update, .. } => {
                            if live {
                                let Some((parent, metadata)) = update else {
                                    return Ok(Committed::default());
                                };
                                let mut changed = false;
                                if ns.record.parent != *parent {
                                    ns.record.parent = parent.clone();
                                    changed = true;
                                }
                                if let Some(m) = metadata
                                    && ns.record.metadata != *m
                                {
                                    ns.record.metadata = m.clone();
                                    changed = true;
                                }
                                if !changed {
                                    return Ok(Committed::default());
                                }
                                entries.push((ChangeKind::NamespaceUpdated, Vec::new()));
                            }
                        }
                        Encoded::Add(items) => {
                            for (row, msg, vec, id, id_text) in items {
                                messages.insert(&row[..], msg.as_slice())?;
                                vectors.insert(&row[..], vec.as_slice())?;
                                ids.insert(&id[..], &row[..])?;
                                rows.push(u64::from_be_bytes(*row));
                                entries.push((ChangeKind::MessageAdded, vec![id_text.clone()]));
                                digests.push((entries.len() - 1, sha256_hex(msg)));
                            }
                        }
                        Encoded::Delete(items) => {
                            for (row, id, id_text) in items {
                                if ids.get(&id[..])?.as_deref() != Some(&row[..]) {
                                    return abort(Error::NotFound {
                                        what: "message",
                                        id: id_text.clone(),
                                    });
                                }
                                remove_record(messages, vectors, ids, row, id)?;
                                entries.push((ChangeKind::MessageDeleted, vec![id_text.clone()]));
                            }
                        }
                        Encoded::Summary {
                            row,
                            record,
                            vector,
                            id,
                            ids: change_ids,
                            upto,
                            evict,
                        } => {
                            if ns.record.summarized_upto >= *upto {
                                return abort(Error::Conflict(
                                    "this window was already summarized".into(),
                                ));
                            }
                            ns.record.summarized_upto = *upto;
                            summaries.insert(&row[..], record.as_slice())?;
                            vectors.insert(&row[..], vector.as_slice())?;
                            ids.insert(&id[..], &row[..])?;
                            rows.push(u64::from_be_bytes(*row));
                            entries.push((ChangeKind::SummaryCreated, change_ids.clone()));
                            digests.push((entries.len() - 1, sha256_hex(record)));
                            for (r, uid, id_text) in evict {
                                remove_record(messages, vectors, ids, r, uid)?;
                                entries.push((ChangeKind::MessageDeleted, vec![id_text.clone()]));
                            }
                        }
                        Encoded::Context(put) => {
                            let (entry, version, kind) = context::put(name, put, context, expiry)?;
                            history.insert(
                                context::history_key(name, &put.key, entry.version),
                                encode_json(&version),
                            )?;
                            if let Some(keep) = put.keep_versions
                                && entry.version > keep
                            {
                                history.remove(context::history_key(
                                    name,
                                    &put.key,
                                    entry.version - keep,
                                ))?;
                            }
                            let entry_key = context::key(name, &put.key);
                            if entry.deleted {
                                context_vectors.remove(entry_key.as_slice())?;
                            } else if let Some(v) = &put.vector {
                                context_vectors.insert(entry_key.as_slice(), encode_vector(v))?;
                            }
                            let bytes = encode_json(&entry);
                            digests.push((entries.len(), sha256_hex(&bytes)));
                            context.insert(entry_key, bytes)?;
                            entries.push(match &put.change {
                                Some((kind, ids)) => (*kind, ids.clone()),
                                None => (kind, vec![put.key.clone(), entry.version.to_string()]),
                            });
                            written_context = Some(entry);
                        }
                        Encoded::DropNamespace {
                            messages: m,
                            summaries: s,
                            context: c,
                            history: h,
                            expiry: x,
                        } => {
                            for k in x {
                                expiry.remove(k.as_slice())?;
                            }
                            for k in c {
                                context_vectors.remove(k)?;
                                context.remove(k)?;
                            }
                            for k in h {
                                history.remove(k)?;
                            }
                            for r in m {
                                if let Some(b) = messages.get(&r[..])? {
                                    let id = decode_message(&b)
                                        .and_then(|m| parse_id(&m.id))
                                        .map_err(ConflictableTransactionError::Abort)?;
                                    remove_record(messages, vectors, ids, r, id.as_bytes())?;
                                    rows.push(u64::from_be_bytes(*r));
                                }
                            }
                            for r in s {
                                if let Some(b) = summaries.get(&r[..])? {
                                    let id = decode_summary(&b)
                                        .and_then(|s| parse_id(&s.id))
                                        .map_err(ConflictableTransactionError::Abort)?;
                                    remove_record(summaries, vectors, ids, r, id.as_bytes())?;
                                }
                            }
                            ns.deleted = true;
                            ns.record.summarized_upto = 0;
                            entries.push((ChangeKind::NamespaceDeleted, Vec::new()));
                        }
                    }
                    let mut written = Vec::with_capacity(entries.len());
                    let drafts = super::audit_drafts(
                        &entries,
                        &digests,
                        key_id.as_deref(),
                        actor.as_deref(),
                        name,
                    );
                    append_audit(audit, now, drafts)?;
                    for (kind, ids) in entries {
                        ns.record.last_seq += 1;
                        let change = Change {
                            seq: ns.record.last_seq,
                            namespace: name.to_owned(),
                            kind,
                            ids,
                            at: now,
                            actor: actor.clone(),
                        };
                        changes.insert(change_key(name, change.seq), encode_change(&change))?;
                        written.push(change);
                    }
                    namespaces.insert(name.as_bytes(), encode_namespace(&ns))?;
                    Ok(Committed {
                        rows,
                        changes: written,
                        context: written_context,
                    })
                },
            )
            .map_err(tx_error)?;
        self.flush_sync()?;
        Ok(committed)
    }

    fn scan_sync(
        &self,
        kind: RecordKind,
        after: Option<RowId>,
        limit: usize,
        dim: Option<usize>,
    ) -> Result<Vec<StoredRecord>> {
        let (tree, name) = match kind {
            RecordKind::Message => (&self.messages, "messages"),
            RecordKind::Summary => (&self.summaries, "summaries"),
        };
        let iter = match after {
            Some(a) => match a.checked_add(1) {
                Some(start) => tree.range(start.to_be_bytes()..),
                None => return Ok(Vec::new()),
            },
            None => tree.iter(),
        };
        let mut out = Vec::new();
        for kv in iter.take(limit) {
            let (k, v) = kv.map_err(Error::storage)?;
            let row = row_key(&k, name)?;
            let record = match kind {
                RecordKind::Message => Record::Message(decode_message(&v)?),
                RecordKind::Summary => Record::Summary(decode_summary(&v)?),
            };
            let bytes = self
                .vectors
                .get(&k)
                .map_err(Error::storage)?
                .ok_or_else(|| corrupt("vectors", format!("no vector for {name} row {row}")))?;
            let vector = match dim {
                Some(d) => decode_vector(&bytes, d)?,
                None => decode_vector(&bytes, bytes.len().saturating_sub(1) / 4)?,
            };
            out.push(StoredRecord {
                row,
                record,
                vector,
            });
        }
        Ok(out)
    }

    fn records_sync(&self, rows: &[RowId]) -> Result<Vec<(RowId, Record)>> {
        let mut out = Vec::with_capacity(rows.len());
        for &row in rows {
            let key = row.to_be_bytes();
            if let Some(b) = self.messages.get(key).map_err(Error::storage)? {
                out.push((row, Record::Message(decode_message(&b)?)));
            } else if let Some(b) = self.summaries.get(key).map_err(Error::storage)? {
                out.push((row, Record::Summary(decode_summary(&b)?)));
            }
        }
        Ok(out)
    }

    fn prune_sync(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize> {
        let cutoff =
            now - chrono::Duration::from_std(retention.max_age).unwrap_or(chrono::Duration::MAX);
        let mut removed = 0;
        for kv in self.namespaces.iter() {
            let (k, v) = kv.map_err(Error::storage)?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let ns = decode_namespace(&name, &v)?;
            let last = ns.record.last_seq;
            let keep_from = last
                .saturating_sub(retention.max_entries.saturating_sub(1))
                .max(1);
            for entry in self
                .changes
                .range(change_key(&name, 1)..change_key(&name, last))
            {
                let (key, value) = entry.map_err(Error::storage)?;
                let seq = row_key(&key[key.len() - 8..], "changes")?;
                let change = decode_change(&name, seq, &value)?;
                if seq >= keep_from && change.at >= cutoff {
                    break;
                }
                self.changes.remove(&key).map_err(Error::storage)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.flush_sync()?;
        }
        Ok(removed)
    }
}

fn remove_record(
    records: &TransactionalTree,
    vectors: &TransactionalTree,
    ids: &TransactionalTree,
    row: &[u8; 8],
    id: &[u8; 16],
) -> TxResult<()> {
    records.remove(&row[..])?;
    vectors.remove(&row[..])?;
    ids.remove(&id[..])?;
    Ok(())
}

#[async_trait]
impl RecordStore for SledStore {
    async fn check_or_init_meta(&self, info: &ModelInfo) -> Result<()> {
        let store = self.clone();
        let info = info.clone();
        blocking(move || {
            if let Some(bytes) = store.meta.get("engine").map_err(Error::storage)? {
                let meta = decode_meta(&bytes)?;
                if meta.weights_sha256 != info.weights_sha256 || meta.dim as usize != info.dim {
                    return Err(Error::ModelMismatch {
                        stored: meta.model_id,
                        stored_dim: meta.dim as usize,
                        current: info.id.clone(),
                        current_dim: info.dim,
                    });
                }
                return Ok(());
            }
            let meta = EngineMeta {
                model_id: info.id.clone(),
                weights_sha256: info.weights_sha256.clone(),
                dim: info.dim as u32,
                normalized: true,
                created_micros: micros(Utc::now()),
            };
            store
                .meta
                .insert("engine", encode(&meta))
                .map_err(Error::storage)?;
            store.flush_sync()
        })
        .await
    }

    async fn commit(&self, commit: &Commit) -> Result<Committed> {
        let enc = self.encode_commit(commit)?;
        let store = self.clone();
        let name = commit.namespace.as_str().to_owned();
        let actor = commit.actor.clone();
        let key_id = commit.key_id.clone();
        blocking(move || store.commit_sync(&name, actor, key_id, enc)).await
    }

    async fn records(&self, rows: &[RowId]) -> Result<Vec<(RowId, Record)>> {
        // A search's page of hits (a few point reads, almost always from sled's
        // page cache: microseconds) is read in place; a hop to the blocking pool
        // would cost more than the reads. Larger reads go to the pool.
        if rows.len() <= INLINE_READS {
            return self.records_sync(rows);
        }
        let store = self.clone();
        let rows = rows.to_vec();
        blocking(move || store.records_sync(&rows)).await
    }

    async fn row_of(&self, id: &Uuid) -> Result<Option<RowId>> {
        match self.ids.get(id.as_bytes()).map_err(Error::storage)? {
            None => Ok(None),
            Some(v) => row_key(&v, "ids").map(Some),
        }
    }

    async fn scan(
        &self,
        kind: RecordKind,
        after: Option<RowId>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let store = self.clone();
        blocking(move || store.scan_sync(kind, after, limit, None)).await
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        let store = self.clone();
        blocking(move || {
            let mut out = Vec::new();
            for kv in store.namespaces.iter() {
                let (k, v) = kv.map_err(Error::storage)?;
                let ns = decode_namespace(&String::from_utf8_lossy(&k), &v)?;
                if !ns.deleted {
                    out.push(ns.record);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn changes(&self, namespace: &str, after: u64, limit: usize) -> Result<Vec<Change>> {
        let store = self.clone();
        let name = namespace.to_owned();
        blocking(move || {
            let Some(start) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for kv in store
                .changes
                .range(change_key(&name, start)..=change_key(&name, u64::MAX))
                .take(limit)
            {
                let (k, v) = kv.map_err(Error::storage)?;
                let seq = row_key(&k[k.len() - 8..], "changes")?;
                out.push(decode_change(&name, seq, &v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_changes(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize> {
        let store = self.clone();
        blocking(move || store.prune_sync(retention, now)).await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<std::result::Result<(), Option<Vec<u8>>>> {
        let store = self.clone();
        let key = key.to_owned();
        blocking(move || {
            let swapped = store
                .kv
                .compare_and_swap(key.as_bytes(), expected, new)
                .map_err(Error::storage)?;
            match swapped {
                Ok(()) => {
                    store.flush_sync()?;
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err(e.current.map(|v| v.to_vec()))),
            }
        })
        .await
    }

    async fn get_key(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .kv
            .get(key.as_bytes())
            .map_err(Error::storage)?
            .map(|v| v.to_vec()))
    }

    async fn context_get(&self, namespace: &str, key: &str) -> Result<Option<ContextEntry>> {
        self.context
            .get(context::key(namespace, key))
            .map_err(Error::storage)?
            .map(|b| decode_json("context", &b))
            .transpose()
    }

    async fn context_list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<ContextEntry>> {
        let store = self.clone();
        let start = context::key(namespace, prefix);
        let after = after.map(|a| context::key(namespace, a));
        let stop = (!prefix.starts_with('~')).then(|| context::key(namespace, "~"));
        blocking(move || {
            store.context_list_sync(&start, after.as_deref(), stop.as_deref(), limit, now)
        })
        .await
    }

    async fn audit_append(&self, drafts: Vec<AuditDraft>) -> Result<()> {
        let store = self.clone();
        blocking(move || {
            let now = crate::core::types::to_micros(Utc::now());
            store
                .audit
                .transaction(|audit| {
                    append_audit(
                        audit,
                        now,
                        drafts.iter().map(|d| (d.clone(), None)).collect(),
                    )
                })
                .map_err(tx_error)
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<crate::core::keys::StoredKey>> {
        let store = self.clone();
        blocking(move || {
            store
                .keys
                .iter()
                .map(|kv| {
                    let (_, v) = kv.map_err(Error::storage)?;
                    decode_json("keys", &v)
                })
                .collect()
        })
        .await
    }

    async fn put_api_key(
        &self,
        key: &crate::core::keys::StoredKey,
        audit: AuditDraft,
    ) -> Result<()> {
        let store = self.clone();
        let bytes = encode_json(key);
        let id = key.key.id.clone();
        blocking(move || {
            let now = crate::core::types::to_micros(Utc::now());
            (&store.keys, &store.audit)
                .transaction(|(keys, audit_tree)| {
                    keys.insert(id.as_bytes(), bytes.clone())?;
                    append_audit(audit_tree, now, vec![(audit.clone(), None)])
                })
                .map_err(tx_error)?;
            store.flush_sync()
        })
        .await
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let store = self.clone();
        blocking(move || {
            let Some(start) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            store
                .audit
                .range(start.to_be_bytes()..)
                .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.len() == 8))
                .take(limit)
                .map(|kv| {
                    let (_, v) = kv.map_err(Error::storage)?;
                    decode_json("audit", &v)
                })
                .collect()
        })
        .await
    }

    async fn context_indexed(
        &self,
        namespace: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ContextEntry, Option<Vec<f32>>)>> {
        let store = self.clone();
        let ns = namespace.to_owned();
        blocking(move || store.context_indexed_sync(&ns, now)).await
    }

    async fn context_history(
        &self,
        namespace: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ContextVersion>> {
        let store = self.clone();
        let (ns, key) = (namespace.to_owned(), key.to_owned());
        blocking(move || store.context_history_sync(&ns, &key, after, limit)).await
    }

    async fn context_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ContextEntry>> {
        let store = self.clone();
        blocking(move || store.context_expired_sync(now, limit)).await
    }

    async fn check(&self, dim: usize) -> Result<StoreCheck> {
        let store = self.clone();
        blocking(move || store.check_sync(dim)).await
    }

    async fn flush(&self) -> Result<()> {
        let store = self.clone();
        blocking(move || store.flush_sync()).await
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[path = "sled_check.rs"]
mod check;

#[path = "sled_context.rs"]
mod context;

#[path = "sled_encode.rs"]
mod encode;
use encode::Encoded;

#[cfg(test)]
#[path = "sled_tests.rs"]
mod tests;
