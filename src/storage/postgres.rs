//! The PostgreSQL backend (`--store postgres://…`): the same state as the sled
//! backend, one table per sled tree (`migrations/0001_init.sql`), so several
//! memoryd processes can share one database.
//!
//! - **Transactions.** A commit is one transaction: it locks its namespace's
//!   registry row (`SELECT … FOR UPDATE`), allocates rows from the `record_rows`
//!   sequence and change-log seqs from the row's `last_seq`, writes records,
//!   changes and audit entries (the chain's head row is locked too), and is
//!   acknowledged after `COMMIT` returns: PostgreSQL's WAL makes it durable.
//! - **Runtime.** The store runs its queries on a small tokio runtime of its own,
//!   so it works whichever runtime (or none) its caller is on, like sled on the
//!   blocking pool.
//! - **Schema.** Created and upgraded by sqlx migrations embedded in the binary
//!   (`_sqlx_migrations` records what ran).
//!
//! - **Several nodes.** The store is [`RecordStore::shared`]: every commit
//!   sends `NOTIFY memoryd_changes` with `{"namespace", "seq"}` (delivered at
//!   COMMIT, only a wake-up: a node re-reads the change log from its last seq,
//!   and a notice lost while disconnected is covered by polling); background jobs
//!   take `pg_try_advisory_xact_lock` for one run, so one node runs each.
//!
//! Queries are runtime `sqlx::query` calls (no database is needed to build).
//! - **Search.** With pgvector 0.8 or later the store ranks message and summary
//!   vectors itself ([`RecordStore::ranks_vectors`], `pg_vectors.rs`: exact scans
//!   and a partial HNSW index per large namespace), so a node keeps only BM25
//!   and filter fields in memory ([`crate::search::store::StoreIndex`]). Each
//!   node loads those on open and follows the change log after that.

use std::collections::BTreeMap;
use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

#[path = "pg_vectors.rs"]
mod vectors;

use super::codec::{corrupt, encode_json, encode_message, encode_summary, parse_id};
use super::sha256_hex;
use super::{
    AuditDraft, AuditEntry, Change, ChangeKind, Commit, Committed, ContextPut, Mutation,
    NamespaceCounts, NamespaceRecord, Record, RecordKind, RecordStore, Retention, RowId,
    StoreCheck, StoredRecord,
};
use crate::core::context::{ContextEntry, ContextVersion};
use crate::core::error::{Error, Result};
use crate::core::types::{Message, Summary, to_micros};
use crate::embed::ModelInfo;

/// Connections per process: reads run in parallel; commits of different
/// namespaces overlap until they append to the audit chain, whose head row
/// serializes them.
const POOL_SIZE: u32 = 10;

/// The `LISTEN`/`NOTIFY` channel of commits.
const CHANNEL: &str = "memoryd_changes";

/// Sends the commit notice of `namespace` (`""`: API keys) inside `tx`:
/// PostgreSQL delivers it to listeners when the transaction commits, never
/// before and never for a rollback.
async fn notify(tx: &mut Transaction<'_, Postgres>, namespace: &str, seq: u64) -> Result<()> {
    let payload = serde_json::json!({ "namespace": namespace, "seq": seq }).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Forwards commit notices to `tx` (`(namespace, seq)`; `("", 0)` after every
/// (re)connect, when notices may have been missed) until the receiver is gone.
/// The listener holds one of the pool's connections (hence two more than the
/// eight queries use).
async fn listen(pool: PgPool, tx: tokio::sync::mpsc::Sender<(String, u64)>) {
    use sqlx::postgres::PgListener;
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = match listener.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for other nodes' commits; retrying in 1 s (polling meanwhile)");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if tx.send((String::new(), 0)).await.is_err() {
            return;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let v =
                        serde_json::from_str::<serde_json::Value>(n.payload()).unwrap_or_default();
                    let ns = v["namespace"].as_str().unwrap_or_default().to_owned();
                    let seq = v["seq"].as_u64().unwrap_or(0);
                    match tx.try_send((ns, seq)) {
                        Ok(()) => {}
                        // The follower is behind; it catches up by polling.
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                // The connection dropped; the next call reconnects and listens
                // again. What was sent meanwhile is lost: ask for a full poll.
                Ok(None) => {
                    if tx.send((String::new(), 0)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

fn db(e: sqlx::Error) -> Error {
    Error::storage(format!("postgres: {e}"))
}

fn json_col<T: serde::de::DeserializeOwned>(
    table: &'static str,
    v: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(v).map_err(|e| corrupt(table, e.to_string()))
}

/// The schema's migrations, embedded (`migrations/*.sql`).
fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "agent heartbeats".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0002_agent_heartbeats.sql").into_sql_str(),
            false,
        ),
    ])
}

/// The PostgreSQL-backed [`RecordStore`].
pub struct PgStore {
    pool: PgPool,
    /// pgvector is 0.8 or later ([`RecordStore::ranks_vectors`]).
    ranks_vectors: bool,
    /// `pg_database_size` of the database, refreshed every 30 s by a task on the
    /// store's runtime ([`RecordStore::size_on_disk`] must not block).
    size: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Never blocks, so the store may be dropped inside an async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`), creates or
    /// upgrades the schema (the `vector` extension must be installable there).
    /// Blocking: callable from any thread, inside a runtime or not.
    ///
    /// # Errors
    /// [`Error::Storage`] when the database cannot be reached or migrated.
    pub fn connect(url: &str) -> Result<PgStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("memoryd-pg")
            .enable_all()
            .build()
            .map_err(Error::Io)?;
        let handle = runtime.handle().clone();
        let url = url.to_owned();
        let connected = std::thread::scope(|s| {
            s.spawn(|| {
                handle.block_on(async move {
                    let pool = PgPoolOptions::new()
                        .max_connections(POOL_SIZE)
                        .acquire_timeout(std::time::Duration::from_secs(30))
                        .connect(&url)
                        .await
                        .map_err(db)?;
                    migrator()
                        .run(&pool)
                        .await
                        .map_err(|e| Error::storage(format!("postgres migration: {e}")))?;
                    // Iterative index scans (what fills a LIMIT from an HNSW
                    // index) came with pgvector 0.8.
                    let version: String = sqlx::query_scalar(
                        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                    )
                    .fetch_one(&pool)
                    .await
                    .map_err(db)?;
                    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
                    let ranks = (major, minor) >= (0, 8);
                    if !ranks {
                        tracing::warn!(
                            pgvector = %version,
                            "pgvector older than 0.8: searches rank in each node's memory"
                        );
                    }
                    Ok::<_, Error>((pool, ranks))
                })
            })
            .join()
            .unwrap_or_else(|_| Err(Error::storage("postgres connect panicked")))
        });
        let (pool, ranks_vectors) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                // Dropping a runtime inside an async context panics; this never blocks.
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let size = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        {
            let (pool, size) = (pool.clone(), size.clone());
            handle.spawn(async move {
                loop {
                    let bytes: std::result::Result<i64, _> =
                        sqlx::query_scalar("SELECT pg_database_size(current_database())")
                            .fetch_one(&pool)
                            .await;
                    if let Ok(b) = bytes {
                        size.store(b.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                }
            });
        }
        Ok(PgStore {
            pool,
            ranks_vectors,
            size,
            handle,
            runtime: Some(runtime),
        })
    }

    /// Runs `f` on the store's runtime.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.handle
            .spawn(f(self.pool.clone()))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(format!("postgres task failed: {e}"))))?
    }
}

fn role_text(m: &Message) -> String {
    serde_json::to_value(m.role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn message_from(row: &PgRow) -> Result<(RowId, Message, Vec<f32>)> {
    let role: String = row.try_get("role").map_err(db)?;
    let id: Uuid = row.try_get("id").map_err(db)?;
    // NULL when the query left the vector out (point reads of search hits).
    let embedding: Option<Vector> = row.try_get("embedding").map_err(db)?;
    let metadata: serde_json::Value = row.try_get("metadata").map_err(db)?;
    let message = Message {
        id: id.to_string(),
        namespace: row.try_get("namespace").map_err(db)?,
        role: json_col("messages", serde_json::Value::String(role))?,
        name: row.try_get("name").map_err(db)?,
        content: row.try_get("content").map_err(db)?,
        timestamp: row.try_get("at").map_err(db)?,
        agent_id: row.try_get("agent_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        exchange_id: row.try_get("exchange_id").map_err(db)?,
        metadata: json_col("messages", metadata)?,
    };
    let r: i64 = row.try_get("row_id").map_err(db)?;
    Ok((
        r as RowId,
        message,
        embedding.map(|v| v.to_vec()).unwrap_or_default(),
    ))
}

fn summary_from(row: &PgRow) -> Result<(RowId, Summary, Vec<f32>)> {
    let body: serde_json::Value = row.try_get("body").map_err(db)?;
    let embedding: Option<Vector> = row.try_get("embedding").map_err(db)?;
    let r: i64 = row.try_get("row_id").map_err(db)?;
    Ok((
        r as RowId,
        json_col("summaries", body)?,
        embedding.map(|v| v.to_vec()).unwrap_or_default(),
    ))
}

fn namespace_from(row: &PgRow) -> Result<(NamespaceRecord, bool)> {
    let metadata: serde_json::Value = row.try_get("metadata").map_err(db)?;
    let last_seq: i64 = row.try_get("last_seq").map_err(db)?;
    let upto: i64 = row.try_get("summarized_upto").map_err(db)?;
    Ok((
        NamespaceRecord {
            name: row.try_get("name").map_err(db)?,
            created_at: row.try_get("created_at").map_err(db)?,
            parent: row.try_get("parent").map_err(db)?,
            metadata: json_col("namespaces", metadata)?,
            last_seq: last_seq as u64,
            summarized_upto: upto as RowId,
        },
        row.try_get("deleted").map_err(db)?,
    ))
}

fn change_from(row: &PgRow) -> Result<Change> {
    let kind: String = row.try_get("kind").map_err(db)?;
    let ids: serde_json::Value = row.try_get("ids").map_err(db)?;
    let seq: i64 = row.try_get("seq").map_err(db)?;
    Ok(Change {
        seq: seq as u64,
        namespace: row.try_get("namespace").map_err(db)?,
        kind: json_col("changes", serde_json::Value::String(kind))?,
        ids: json_col("changes", ids)?,
        at: row.try_get("at").map_err(db)?,
        actor: row.try_get("actor").map_err(db)?,
    })
}

/// Chains `drafts` onto the audit log inside `tx` (the head row is locked), as
/// the sled backend does: each entry gets the next seq and
/// `hash = SHA-256(prev_hash ‖ entry)`.
async fn append_audit(
    tx: &mut Transaction<'_, Postgres>,
    now: DateTime<Utc>,
    drafts: Vec<(AuditDraft, Option<String>)>,
) -> Result<()> {
    if drafts.is_empty() {
        return Ok(());
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE only_row FOR UPDATE")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| corrupt("audit", "the chain's head is missing"))?;
    let mut seq = head.try_get::<i64, _>("seq").map_err(db)? as u64;
    let mut hash: String = head.try_get("hash").map_err(db)?;
    for (d, value_sha256) in drafts {
        let entry = AuditEntry::chained(seq, &hash, now, d, value_sha256);
        sqlx::query("INSERT INTO audit (seq, body) VALUES ($1, $2)")
            .bind(entry.seq as i64)
            .bind(serde_json::to_value(&entry).map_err(|e| Error::storage(e.to_string()))?)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        seq = entry.seq;
        hash = entry.hash;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE only_row")
        .bind(seq as i64)
        .bind(hash)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn next_row(tx: &mut Transaction<'_, Postgres>) -> Result<RowId> {
    let r: i64 = sqlx::query_scalar("SELECT nextval('record_rows')")
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    Ok(r as RowId)
}

/// Deletes one message by row and id; false when it is not there.
async fn delete_message(tx: &mut Transaction<'_, Postgres>, row: RowId, id: &Uuid) -> Result<bool> {
    let n = sqlx::query("DELETE FROM messages WHERE row_id = $1 AND id = $2")
        .bind(row as i64)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db)?
        .rows_affected();
    Ok(n == 1)
}

async fn put_context(
    tx: &mut Transaction<'_, Postgres>,
    ns: &str,
    put: &ContextPut,
) -> Result<(ContextEntry, ContextVersion, ChangeKind)> {
    let current: Option<ContextEntry> =
        sqlx::query("SELECT entry FROM context WHERE namespace = $1 AND key = $2 FOR UPDATE")
            .bind(ns)
            .bind(&put.key)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .map(|r| json_col("context", r.try_get("entry").map_err(db)?))
            .transpose()?;
    let (entry, version, kind) = super::apply_context_put(ns, put, current.as_ref())?;
    let vector = if entry.deleted {
        None
    } else {
        match &put.vector {
            Some(v) => Some(Vector::from(v.clone())),
            // An unchanged search text keeps the stored vector.
            None => sqlx::query_scalar::<_, Option<Vector>>(
                "SELECT embedding FROM context WHERE namespace = $1 AND key = $2",
            )
            .bind(ns)
            .bind(&put.key)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .flatten(),
        }
    };
    sqlx::query(
        "INSERT INTO context (namespace, key, entry, expires_at, deleted, embedding) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (namespace, key) DO UPDATE SET entry = EXCLUDED.entry, \
         expires_at = EXCLUDED.expires_at, deleted = EXCLUDED.deleted, embedding = EXCLUDED.embedding",
    )
    .bind(ns)
    .bind(&put.key)
    .bind(serde_json::to_value(&entry).map_err(|e| Error::storage(e.to_string()))?)
    .bind(entry.expires_at)
    .bind(entry.deleted)
    .bind(vector)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO context_history (namespace, key, version, body) VALUES ($1, $2, $3, $4)",
    )
    .bind(ns)
    .bind(&put.key)
    .bind(entry.version as i64)
    .bind(serde_json::to_value(&version).map_err(|e| Error::storage(e.to_string()))?)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if let Some(keep) = put.keep_versions
        && entry.version > keep
    {
        sqlx::query(
            "DELETE FROM context_history WHERE namespace = $1 AND key = $2 AND version = $3",
        )
        .bind(ns)
        .bind(&put.key)
        .bind((entry.version - keep) as i64)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok((entry, version, kind))
}

async fn commit_tx(pool: PgPool, commit: Commit) -> Result<Committed> {
    let name = commit.namespace.as_str().to_owned();
    let now = to_micros(Utc::now());
    let mut tx = pool.begin().await.map_err(db)?;
    // A row to lock even for a namespace never written: a tombstone at seq 0
    // (what "absent" means below), so two first writes queue instead of both
    // taking seq 1. Rolled back with the transaction when nothing is written.
    sqlx::query(
        "INSERT INTO namespaces (name, created_at, parent, metadata, last_seq, summarized_upto, deleted) \
         VALUES ($1, $2, NULL, '{}', 0, 0, true) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&name)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let stored = sqlx::query("SELECT * FROM namespaces WHERE name = $1 FOR UPDATE")
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .map(|r| namespace_from(&r))
        .transpose()?;
    let live = stored.as_ref().is_some_and(|(_, deleted)| !deleted);
    let mut entries: Vec<(ChangeKind, Vec<String>)> = Vec::new();
    let mut digests: Vec<(usize, String)> = Vec::new();
    let mut ns = match stored {
        Some((record, false)) => record,
        previous => {
            if matches!(
                commit.mutation,
                Mutation::DeleteMessages(_)
                    | Mutation::DeleteNamespace { .. }
                    | Mutation::AddSummary { .. }
            ) {
                return Err(Error::NotFound {
                    what: "namespace",
                    id: name,
                });
            }
            let (parent, metadata) = match &commit.mutation {
                Mutation::CreateNamespace {
                    parent, metadata, ..
                } => (
                    parent.as_ref().map(|p| p.as_str().to_owned()),
                    metadata.clone(),
                ),
                _ => (None, serde_json::Map::new()),
            };
            entries.push((ChangeKind::NamespaceCreated, Vec::new()));
            NamespaceRecord {
                name: name.clone(),
                created_at: now,
                parent,
                metadata,
                last_seq: previous.map_or(0, |(p, _)| p.last_seq),
                summarized_upto: 0,
            }
        }
    };
    let mut deleted = false;
    let mut rows = Vec::new();
    let mut written_context = None;
    match &commit.mutation {
        Mutation::CreateNamespace { update, .. } => {
            if live {
                let Some(update) = update else {
                    return Ok(Committed::default());
                };
                let parent = update.parent.as_ref().map(|p| p.as_str().to_owned());
                let mut changed = false;
                if ns.parent != parent {
                    ns.parent = parent;
                    changed = true;
                }
                if let Some(m) = &update.metadata
                    && ns.metadata != *m
                {
                    ns.metadata = m.clone();
                    changed = true;
                }
                if !changed {
                    return Ok(Committed::default());
                }
                entries.push((ChangeKind::NamespaceUpdated, Vec::new()));
            }
        }
        Mutation::AddMessages(items) => {
            for (m, v) in items {
                let row = next_row(&mut tx).await?;
                let id = parse_id(&m.id)?;
                sqlx::query(
                    "INSERT INTO messages (row_id, id, namespace, role, name, content, at, \
                     agent_id, session_id, exchange_id, metadata, embedding) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(row as i64)
                .bind(id)
                .bind(&name)
                .bind(role_text(m))
                .bind(&m.name)
                .bind(&m.content)
                .bind(m.timestamp)
                .bind(&m.agent_id)
                .bind(&m.session_id)
                .bind(&m.exchange_id)
                .bind(serde_json::Value::Object(m.metadata.clone()))
                .bind(Vector::from(v.clone()))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                rows.push(row);
                entries.push((ChangeKind::MessageAdded, vec![m.id.clone()]));
                digests.push((entries.len() - 1, sha256_hex(&encode_message(m)?)));
            }
        }
        Mutation::DeleteMessages(items) => {
            for (row, id) in items {
                if !delete_message(&mut tx, *row, id).await? {
                    return Err(Error::NotFound {
                        what: "message",
                        id: id.to_string(),
                    });
                }
                entries.push((ChangeKind::MessageDeleted, vec![id.to_string()]));
            }
        }
        Mutation::AddSummary {
            summary,
            vector,
            upto,
            evict,
        } => {
            if ns.summarized_upto >= *upto {
                return Err(Error::Conflict("this window was already summarized".into()));
            }
            ns.summarized_upto = *upto;
            let row = next_row(&mut tx).await?;
            sqlx::query(
                "INSERT INTO summaries (row_id, id, namespace, body, embedding) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(row as i64)
            .bind(parse_id(&summary.id)?)
            .bind(&name)
            .bind(serde_json::to_value(summary).map_err(|e| Error::storage(e.to_string()))?)
            .bind(Vector::from(vector.clone()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            rows.push(row);
            let mut ids = vec![summary.id.clone()];
            ids.extend(summary.source_ids.iter().cloned());
            entries.push((ChangeKind::SummaryCreated, ids));
            digests.push((entries.len() - 1, sha256_hex(&encode_summary(summary)?)));
            for (r, id) in evict {
                // Like sled: an evicted message already gone is not an error.
                delete_message(&mut tx, *r, id).await?;
                entries.push((ChangeKind::MessageDeleted, vec![id.to_string()]));
            }
        }
        Mutation::DeleteNamespace { .. } => {
            for table in ["context", "context_history", "summaries"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE namespace = $1"
                )))
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            let gone: Vec<i64> =
                sqlx::query_scalar("DELETE FROM messages WHERE namespace = $1 RETURNING row_id")
                    .bind(&name)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
            rows.extend(gone.into_iter().map(|r| r as RowId));
            rows.sort_unstable();
            deleted = true;
            ns.summarized_upto = 0;
            entries.push((ChangeKind::NamespaceDeleted, Vec::new()));
        }
        Mutation::PutContext(put) => {
            let (entry, _, kind) = put_context(&mut tx, &name, put).await?;
            digests.push((entries.len(), sha256_hex(&encode_json(&entry))));
            entries.push(match &put.change {
                Some((kind, ids)) => (*kind, ids.clone()),
                None => (kind, vec![put.key.clone(), entry.version.to_string()]),
            });
            written_context = Some(entry);
        }
    }
    let drafts = super::audit_drafts(
        &entries,
        &digests,
        commit.key_id.as_deref(),
        commit.actor.as_deref(),
        &name,
    );
    append_audit(&mut tx, now, drafts).await?;
    let mut written = Vec::with_capacity(entries.len());
    for (kind, ids) in entries {
        ns.last_seq += 1;
        let change = Change {
            seq: ns.last_seq,
            namespace: name.clone(),
            kind,
            ids,
            at: now,
            actor: commit.actor.clone(),
        };
        sqlx::query("INSERT INTO changes (namespace, seq, kind, ids, at, actor) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&name)
            .bind(change.seq as i64)
            .bind(change.kind.as_str())
            .bind(serde_json::to_value(&change.ids).map_err(|e| Error::storage(e.to_string()))?)
            .bind(change.at)
            .bind(&change.actor)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        written.push(change);
    }
    sqlx::query(
        "INSERT INTO namespaces (name, created_at, parent, metadata, last_seq, summarized_upto, deleted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (name) DO UPDATE SET created_at = EXCLUDED.created_at, parent = EXCLUDED.parent, \
         metadata = EXCLUDED.metadata, last_seq = EXCLUDED.last_seq, \
         summarized_upto = EXCLUDED.summarized_upto, deleted = EXCLUDED.deleted",
    )
    .bind(&name)
    .bind(ns.created_at)
    .bind(&ns.parent)
    .bind(serde_json::Value::Object(ns.metadata.clone()))
    .bind(ns.last_seq as i64)
    .bind(ns.summarized_upto as i64)
    .bind(deleted)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if !written.is_empty() {
        notify(&mut tx, &name, ns.last_seq).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Committed {
        rows,
        changes: written,
        context: written_context,
    })
}

#[async_trait]
impl RecordStore for PgStore {
    async fn check_or_init_meta(&self, info: &ModelInfo) -> Result<()> {
        let meta = serde_json::json!({
            "model_id": info.id,
            "weights_sha256": info.weights_sha256,
            "dim": info.dim,
            "normalized": true,
            "created_at": Utc::now(),
        });
        // The first node to open a new database records its model (two at once:
        // one insert wins); every node then checks against what is recorded.
        let stored: serde_json::Value = self
            .run(|pool| async move {
                sqlx::query(
                    "INSERT INTO memoryd_meta (key, value) VALUES ('engine', $1) ON CONFLICT DO NOTHING",
                )
                .bind(meta)
                .execute(&pool)
                .await
                .map_err(db)?;
                sqlx::query_scalar("SELECT value FROM memoryd_meta WHERE key = 'engine'")
                    .fetch_one(&pool)
                    .await
                    .map_err(db)
            })
            .await?;
        let dim = stored["dim"].as_u64().unwrap_or(0) as usize;
        if stored["weights_sha256"].as_str() != Some(info.weights_sha256.as_str())
            || dim != info.dim
        {
            return Err(Error::ModelMismatch {
                stored: stored["model_id"].as_str().unwrap_or_default().to_owned(),
                stored_dim: dim,
                current: info.id.clone(),
                current_dim: info.dim,
            });
        }
        Ok(())
    }

    async fn commit(&self, commit: &Commit) -> Result<Committed> {
        let commit = commit.clone();
        self.run(|pool| commit_tx(pool, commit)).await
    }

    async fn records(&self, rows: &[RowId]) -> Result<Vec<(RowId, Record)>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let order = rows.to_vec();
        self.run(|pool| async move {
            let mut found: std::collections::HashMap<RowId, Record> = Default::default();
            for row in sqlx::query(
                "SELECT row_id, id, namespace, role, name, content, at, agent_id, session_id, \
                 exchange_id, metadata, NULL::vector AS embedding FROM messages WHERE row_id = ANY($1)",
            )
                .bind(&ids)
                .fetch_all(&pool)
                .await
                .map_err(db)?
            {
                let (r, m, _) = message_from(&row)?;
                found.insert(r, Record::Message(m));
            }
            if found.len() < ids.len() {
                for row in sqlx::query(
                    "SELECT row_id, body, NULL::vector AS embedding FROM summaries WHERE row_id = ANY($1)",
                )
                    .bind(&ids)
                    .fetch_all(&pool)
                    .await
                    .map_err(db)?
                {
                    let (r, s, _) = summary_from(&row)?;
                    found.insert(r, Record::Summary(s));
                }
            }
            Ok(order
                .into_iter()
                .filter_map(|r| found.remove(&r).map(|rec| (r, rec)))
                .collect())
        })
        .await
    }

    async fn row_of(&self, id: &Uuid) -> Result<Option<RowId>> {
        let id = *id;
        self.run(|pool| async move {
            let r: Option<i64> = sqlx::query_scalar(
                "SELECT row_id FROM messages WHERE id = $1 UNION ALL SELECT row_id FROM summaries WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .map_err(db)?;
            Ok(r.map(|r| r as RowId))
        })
        .await
    }

    async fn scan(
        &self,
        kind: RecordKind,
        after: Option<RowId>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let after = after.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(|pool| async move {
            let sql = match kind {
                RecordKind::Message => {
                    "SELECT * FROM messages WHERE row_id > $1 ORDER BY row_id LIMIT $2"
                }
                RecordKind::Summary => {
                    "SELECT * FROM summaries WHERE row_id > $1 ORDER BY row_id LIMIT $2"
                }
            };
            let rows = sqlx::query(sql)
                .bind(after)
                .bind(limit)
                .fetch_all(&pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|row| match kind {
                    RecordKind::Message => message_from(row).map(|(r, m, v)| StoredRecord {
                        row: r,
                        record: Record::Message(m),
                        vector: v,
                    }),
                    RecordKind::Summary => summary_from(row).map(|(r, s, v)| StoredRecord {
                        row: r,
                        record: Record::Summary(s),
                        vector: v,
                    }),
                })
                .collect()
        })
        .await
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        self.run(|pool| async move {
            sqlx::query("SELECT * FROM namespaces WHERE NOT deleted ORDER BY name")
                .fetch_all(&pool)
                .await
                .map_err(db)?
                .iter()
                .map(|r| namespace_from(r).map(|(n, _)| n))
                .collect()
        })
        .await
    }

    async fn changes(&self, namespace: &str, after: u64, limit: usize) -> Result<Vec<Change>> {
        let ns = namespace.to_owned();
        let after = after.min(i64::MAX as u64) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(|pool| async move {
            sqlx::query(
                "SELECT * FROM changes WHERE namespace = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(ns)
            .bind(after)
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(db)?
            .iter()
            .map(change_from)
            .collect()
        })
        .await
    }

    async fn prune_changes(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize> {
        let cutoff =
            now - chrono::Duration::from_std(retention.max_age).unwrap_or(chrono::Duration::MAX);
        let keep = retention.max_entries.min(i64::MAX as u64) as i64;
        self.run(|pool| async move {
            // Like sled: per namespace, drop entries from the oldest up to the first
            // one to keep (within the newest `keep` and not older than the cutoff),
            // never the newest; one index probe per namespace plus what goes.
            let n = sqlx::query(
                "DELETE FROM changes c USING ( \
                     SELECT n.name, LEAST(n.last_seq, COALESCE(( \
                         SELECT k.seq FROM changes k WHERE k.namespace = n.name \
                         AND k.seq >= GREATEST(n.last_seq - ($2 - 1), 1) AND k.at >= $1 \
                         ORDER BY k.seq LIMIT 1), n.last_seq)) AS stop \
                     FROM namespaces n) s \
                 WHERE c.namespace = s.name AND c.seq < s.stop",
            )
            .bind(cutoff)
            .bind(keep)
            .execute(&pool)
            .await
            .map_err(db)?
            .rows_affected();
            Ok(n as usize)
        })
        .await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<std::result::Result<(), Option<Vec<u8>>>> {
        let key = key.to_owned();
        self.run(|pool| async move {
            let mut tx = pool.begin().await.map_err(db)?;
            // Serialize on the key, present or not.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(&key)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let current: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT value FROM kv WHERE key = $1 FOR UPDATE")
                    .bind(&key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if current != expected {
                return Ok(Err(current));
            }
            match new {
                Some(v) => sqlx::query(
                    "INSERT INTO kv (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                )
                .bind(&key)
                .bind(v),
                None => sqlx::query("DELETE FROM kv WHERE key = $1").bind(&key),
            }
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn get_key(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.run(|pool| async move {
            sqlx::query_scalar("SELECT value FROM kv WHERE key = $1")
                .bind(key)
                .fetch_optional(&pool)
                .await
                .map_err(db)
        })
        .await
    }

    async fn context_get(&self, namespace: &str, key: &str) -> Result<Option<ContextEntry>> {
        let (ns, key) = (namespace.to_owned(), key.to_owned());
        self.run(|pool| async move {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT entry FROM context WHERE namespace = $1 AND key = $2",
            )
            .bind(ns)
            .bind(key)
            .fetch_optional(&pool)
            .await
            .map_err(db)?
            .map(|v| json_col("context", v))
            .transpose()
        })
        .await
    }

    async fn context_list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<ContextEntry>> {
        let ns = namespace.to_owned();
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        let limit = limit.min(i64::MAX as usize) as i64;
        // Board documents (keys from `~`) only when the prefix asks for them.
        let boards = prefix.starts_with('~');
        self.run(|pool| async move {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT entry FROM context WHERE namespace = $1 AND starts_with(key, $2) \
                 AND ($3::text IS NULL OR key > $3) AND ($4 OR key < '~') \
                 AND NOT deleted AND (expires_at IS NULL OR expires_at > $5) \
                 ORDER BY key LIMIT $6",
            )
            .bind(ns)
            .bind(prefix)
            .bind(after)
            .bind(boards)
            .bind(now)
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(db)?
            .into_iter()
            .map(|v| json_col::<ContextEntry>("context", v))
            .filter(|e| e.as_ref().map_or(true, |e| e.is_live(now)))
            .collect()
        })
        .await
    }

    async fn context_indexed(
        &self,
        namespace: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ContextEntry, Option<Vec<f32>>)>> {
        let ns = namespace.to_owned();
        self.run(|pool| async move {
            let mut out = Vec::new();
            for row in sqlx::query(
                "SELECT entry, embedding FROM context WHERE namespace = $1 ORDER BY key",
            )
            .bind(ns)
            .fetch_all(&pool)
            .await
            .map_err(db)?
            {
                let entry: ContextEntry = json_col("context", row.try_get("entry").map_err(db)?)?;
                if !entry.is_live(now) {
                    continue;
                }
                let v: Option<Vector> = row.try_get("embedding").map_err(db)?;
                out.push((entry, v.map(|v| v.to_vec())));
            }
            Ok(out)
        })
        .await
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let after = after.min(i64::MAX as u64) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(|pool| async move {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT body FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(db)?
            .into_iter()
            .map(|v| json_col("audit", v))
            .collect()
        })
        .await
    }

    async fn audit_append(&self, drafts: Vec<AuditDraft>) -> Result<()> {
        self.run(|pool| async move {
            let mut tx = pool.begin().await.map_err(db)?;
            // Like sled: no flush of its own (the next commit's makes it durable).
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let now = to_micros(Utc::now());
            append_audit(
                &mut tx,
                now,
                drafts.into_iter().map(|d| (d, None)).collect(),
            )
            .await?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<crate::core::keys::StoredKey>> {
        self.run(|pool| async move {
            sqlx::query_scalar::<_, serde_json::Value>("SELECT body FROM api_keys ORDER BY id")
                .fetch_all(&pool)
                .await
                .map_err(db)?
                .into_iter()
                .map(|v| json_col("api_keys", v))
                .collect()
        })
        .await
    }

    async fn put_api_key(
        &self,
        key: &crate::core::keys::StoredKey,
        audit: AuditDraft,
    ) -> Result<()> {
        let id = key.key.id.clone();
        let body = serde_json::to_value(key).map_err(|e| Error::storage(e.to_string()))?;
        self.run(|pool| async move {
            let mut tx = pool.begin().await.map_err(db)?;
            sqlx::query(
                "INSERT INTO api_keys (id, body) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            )
            .bind(id)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            append_audit(&mut tx, to_micros(Utc::now()), vec![(audit, None)]).await?;
            // Other nodes reload their keys (a revocation takes effect there too).
            notify(&mut tx, "", 0).await?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn context_history(
        &self,
        namespace: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ContextVersion>> {
        let (ns, key) = (namespace.to_owned(), key.to_owned());
        let after = after.min(i64::MAX as u64) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(|pool| async move {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT body FROM context_history WHERE namespace = $1 AND key = $2 AND version > $3 \
                 ORDER BY version LIMIT $4",
            )
            .bind(ns)
            .bind(key)
            .bind(after)
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(db)?
            .into_iter()
            .map(|v| json_col("context_history", v))
            .collect()
        })
        .await
    }

    async fn context_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ContextEntry>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(|pool| async move {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT entry FROM context WHERE expires_at IS NOT NULL AND expires_at <= $1 \
                 AND NOT deleted ORDER BY expires_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(db)?
            .into_iter()
            .map(|v| json_col("context", v))
            .collect()
        })
        .await
    }

    async fn check(&self, dim: usize) -> Result<StoreCheck> {
        self.run(|pool| async move {
            let mut report = StoreCheck::default();
            let problem = |report: &mut StoreCheck, p: String| {
                if report.problems.len() < StoreCheck::MAX_PROBLEMS {
                    report.problems.push(p);
                }
            };
            let live: std::collections::HashSet<String> = sqlx::query_scalar::<_, String>(
                "SELECT name FROM namespaces WHERE NOT deleted",
            )
            .fetch_all(&pool)
            .await
            .map_err(db)?
            .into_iter()
            .collect();
            let mut counts: BTreeMap<String, NamespaceCounts> = BTreeMap::new();
            for (table, is_message) in [("messages", true), ("summaries", false)] {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT namespace, count(*) AS n, \
                     count(*) FILTER (WHERE vector_dims(embedding) <> $1) AS bad_dim \
                     FROM {table} GROUP BY namespace"
                )))
                .bind(dim as i32)
                .fetch_all(&pool)
                .await
                .map_err(db)?;
                for row in rows {
                    let ns: String = row.try_get("namespace").map_err(db)?;
                    let n = row.try_get::<i64, _>("n").map_err(db)? as usize;
                    let bad = row.try_get::<i64, _>("bad_dim").map_err(db)?;
                    if bad > 0 {
                        problem(&mut report, format!("{bad} {table} of {ns:?} have vectors of another dimension than {dim}"));
                    }
                    if !live.contains(&ns) {
                        problem(&mut report, format!("{n} {table} belong to {ns:?}, which is not a live namespace"));
                    }
                    let c = counts.entry(ns).or_default();
                    if is_message {
                        c.messages += n;
                        report.messages += n;
                    } else {
                        c.summaries += n;
                        report.summaries += n;
                    }
                }
            }
            report.vectors = report.messages + report.summaries;
            report.ids = report.vectors;
            let dup: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM messages m JOIN summaries s ON s.id = m.id",
            )
            .fetch_one(&pool)
            .await
            .map_err(db)?;
            if dup > 0 {
                problem(&mut report, format!("{dup} ids are both a message and a summary"));
            }
            report.namespaces = counts;
            Ok(report)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        // Every commit is durable when COMMIT returns.
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        // The whole database (tables, indexes, TOAST), as of the last refresh.
        self.size.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn shared(&self) -> bool {
        true
    }

    fn notices(&self) -> Option<tokio::sync::mpsc::Receiver<(String, u64)>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        self.handle.spawn(listen(self.pool.clone(), tx));
        Some(rx)
    }

    async fn scan_namespace(
        &self,
        namespace: &str,
        after: RowId,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let ns = namespace.to_owned();
        let after = after.min(i64::MAX as u64) as i64;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.run(|pool| async move {
            // Both tables in one snapshot: a message and a later summary committed
            // between two separate reads would otherwise leave the message out
            // below the highest row read.
            let mut tx = pool.begin().await.map_err(db)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let mut out = Vec::new();
            for row in sqlx::query(
                "SELECT * FROM messages WHERE namespace = $1 AND row_id > $2 ORDER BY row_id LIMIT $3",
            )
            .bind(&ns)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            {
                let (r, m, v) = message_from(&row)?;
                out.push(StoredRecord {
                    row: r,
                    record: Record::Message(m),
                    vector: v,
                });
            }
            for row in sqlx::query(
                "SELECT * FROM summaries WHERE namespace = $1 AND row_id > $2 ORDER BY row_id LIMIT $3",
            )
            .bind(&ns)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            {
                let (r, s, v) = summary_from(&row)?;
                out.push(StoredRecord {
                    row: r,
                    record: Record::Summary(s),
                    vector: v,
                });
            }
            tx.rollback().await.map_err(db)?;
            out.sort_by_key(|r| r.row);
            out.truncate(limit as usize);
            Ok(out)
        })
        .await
    }

    async fn namespace_rows(&self, namespace: &str) -> Result<Vec<RowId>> {
        let ns = namespace.to_owned();
        self.run(|pool| async move {
            let rows: Vec<i64> = sqlx::query_scalar(
                "SELECT row_id FROM messages WHERE namespace = $1 \
                 UNION ALL SELECT row_id FROM summaries WHERE namespace = $1 ORDER BY 1",
            )
            .bind(ns)
            .fetch_all(&pool)
            .await
            .map_err(db)?;
            Ok(rows.into_iter().map(|r| r as RowId).collect())
        })
        .await
    }

    async fn heartbeat(&self, agent: &str, at: DateTime<Utc>) -> Result<()> {
        let agent = agent.to_owned();
        self.run(|pool| async move {
            let mut tx = pool.begin().await.map_err(db)?;
            // A heartbeat lost in a crash costs nothing: no WAL flush wait.
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(
                "INSERT INTO agent_heartbeats (agent, at) VALUES ($1, $2) \
                 ON CONFLICT (agent) DO UPDATE SET at = GREATEST(agent_heartbeats.at, EXCLUDED.at)",
            )
            .bind(agent)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn heartbeats(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.run(|pool| async move {
            let rows: Vec<(String, DateTime<Utc>)> =
                sqlx::query_as("SELECT agent, at FROM agent_heartbeats")
                    .fetch_all(&pool)
                    .await
                    .map_err(db)?;
            Ok(rows)
        })
        .await
    }

    async fn namespace_record(&self, name: &str) -> Result<Option<NamespaceRecord>> {
        let name = name.to_owned();
        self.run(|pool| async move {
            sqlx::query("SELECT * FROM namespaces WHERE name = $1 AND NOT deleted")
                .bind(name)
                .fetch_optional(&pool)
                .await
                .map_err(db)?
                .map(|r| namespace_from(&r).map(|(n, _)| n))
                .transpose()
        })
        .await
    }

    fn ranks_vectors(&self) -> bool {
        self.ranks_vectors
    }

    async fn nearest(
        &self,
        namespace: &str,
        query: &[f32],
        n: usize,
        scan: super::VectorScan<'_>,
        tables: super::VectorTables,
    ) -> Result<Vec<(RowId, f32)>> {
        self.nearest_rows(namespace, query, n, scan, tables).await
    }

    async fn similarities(&self, query: &[f32], rows: &[RowId]) -> Result<Vec<(RowId, f32)>> {
        self.row_similarities(query, rows).await
    }

    async fn build_vector_index(
        &self,
        namespace: &str,
        dim: usize,
        m: usize,
        ef_construction: usize,
    ) -> Result<bool> {
        self.build_namespace_index(namespace, dim, m, ef_construction)
            .await
    }

    async fn try_job_lock(&self, name: &str) -> Result<Option<super::JobLock>> {
        let key = format!("memoryd:{name}");
        let (granted_tx, granted_rx) = tokio::sync::oneshot::channel::<Result<bool>>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let pool = self.pool.clone();
        // The transaction lives in a task on the store's runtime; the lock is
        // PostgreSQL's and goes with the transaction (on release, or when this
        // node's connection dies).
        self.handle.spawn(async move {
            let locked = async {
                let mut tx = pool.begin().await.map_err(db)?;
                let got: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                Ok::<_, Error>((tx, got))
            };
            match locked.await {
                Ok((tx, got)) => {
                    let _ = granted_tx.send(Ok(got));
                    if got {
                        // Resolves when the guard is dropped.
                        let _ = release_rx.await;
                    }
                    let _ = tx.rollback().await;
                }
                Err(e) => {
                    let _ = granted_tx.send(Err(e));
                }
            }
        });
        match granted_rx.await {
            Ok(Ok(true)) => Ok(Some(super::JobLock::new(Box::new(release_tx)))),
            Ok(Ok(false)) => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::storage("the job lock task ended early")),
        }
    }
}
