//! The storage seam: [`RecordStore`] is every durable thing the engine keeps
//! (messages, summaries, their vectors, the namespace registry, the change log, a
//! compare-and-set key space), behind an async trait so that an embedded store
//! (sled, [`SledStore`]) and a shared database can both sit behind it. No backend
//! type crosses it: errors arrive as backend-neutral [`Error`] kinds.
//!
//! # The commit point
//! Every mutation is one [`Commit`]: its records **and** one change-log entry per
//! record affected, written in one transaction, made durable before
//! [`RecordStore::commit`] returns (an acknowledged write survives `kill -9`). The
//! change log is per namespace, with a gap-free, commit-ordered `u64` sequence
//! (1, 2, 3, …); [`RecordStore::changes`] reads it. The engine serializes commits
//! of one namespace, so a backend may rely on that for ordering but must still
//! allocate the sequence inside the transaction.

pub mod codec;
mod postgres;
mod sled_store;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::access::NamespaceName;
use crate::core::context::{ContextEntry, ContextOp, ContextVersion};
use crate::core::error::{Error, Result};
use crate::core::types::{Message, Summary};
use crate::embed::ModelInfo;

pub use postgres::PgStore;
pub use sled_store::SledStore;

/// A record's key in the store: unique across the store, assigned by the store at
/// commit, increasing in commit order within a namespace. Indexes refer to
/// records by it.
pub type RowId = u64;

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A message.
    Message(Message),
    /// A summary.
    Summary(Summary),
}

impl Record {
    /// The record's namespace.
    pub fn namespace(&self) -> &str {
        match self {
            Record::Message(m) => &m.namespace,
            Record::Summary(s) => &s.namespace,
        }
    }

    /// The record's id.
    pub fn id(&self) -> &str {
        match self {
            Record::Message(m) => &m.id,
            Record::Summary(s) => &s.id,
        }
    }
}

/// Which records a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Messages.
    Message,
    /// Summaries.
    Summary,
}

/// A record with its row and unit vector `[dim]`, as [`RecordStore::scan`] reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Its row.
    pub row: RowId,
    /// The record.
    pub record: Record,
    /// Its embedding.
    pub vector: Vec<f32>,
}

/// A namespace's registry entry. Namespaces exist on their own (an empty one is
/// listed); the first write to an unknown name creates one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamespaceRecord {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The namespace it inherits from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Free-form JSON metadata.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The newest change-log seq of the namespace (0: none yet).
    pub last_seq: u64,
    /// Every message with a row at or below this is summarized (0: none).
    #[serde(skip)]
    pub summarized_upto: RowId,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ChangeKind {
    /// The namespace was created (explicitly or by its first write).
    #[serde(rename = "namespace.created")]
    NamespaceCreated,
    /// The namespace and everything in it was deleted.
    #[serde(rename = "namespace.deleted")]
    NamespaceDeleted,
    /// The namespace's parent or metadata changed.
    #[serde(rename = "namespace.updated")]
    NamespaceUpdated,
    /// A message was stored.
    #[serde(rename = "message.added")]
    MessageAdded,
    /// A message was deleted (by a caller, or evicted after being summarized).
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    /// A summary was written.
    #[serde(rename = "summary.created")]
    SummaryCreated,
    /// A context entry got a new version (set or patched); `ids` is `[key,
    /// version]` (the version in decimal).
    #[serde(rename = "context.set")]
    ContextSet,
    /// A context entry was deleted (by a caller or by expiry); `ids` is `[key,
    /// version]` (the tombstone's version).
    #[serde(rename = "context.deleted")]
    ContextDeleted,
    /// A problem was posted to the blackboard; `ids` is `[problem id]`.
    #[serde(rename = "board.problem.created")]
    BoardProblemCreated,
    /// A proposal was made; `ids` is `[proposal id, problem id]`.
    #[serde(rename = "board.proposal.created")]
    BoardProposalCreated,
    /// A vote was cast or replaced; `ids` is `[proposal id, problem id]`.
    #[serde(rename = "board.voted")]
    BoardVoted,
    /// A problem was resolved; `ids` is `[problem id, proposal id]`.
    #[serde(rename = "board.resolved")]
    BoardResolved,
    /// Audit log only (never in a namespace's change log): an API key was
    /// created; `target` is `[key id, key name]`, `namespace` empty.
    #[serde(rename = "key.created")]
    KeyCreated,
    /// Audit log only: an API key was revoked; `target` is `[key id, key name]`.
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    /// Audit log only, with `--audit-reads`: a context entry (or listing, or
    /// history) was read; `target` is `[key]` (`[]` for a listing).
    #[serde(rename = "context.read")]
    ContextRead,
    /// An agent registered (or re-registered with a new card) in the registry
    /// namespace; `ids` is `[agent id]`.
    #[serde(rename = "agent.registered")]
    AgentRegistered,
    /// A registered agent was heard from again after being unhealthy or gone;
    /// `ids` is `[agent id]`.
    #[serde(rename = "agent.healthy")]
    AgentHealthy,
    /// A registered agent missed its heartbeat timeout; `ids` is `[agent id]`.
    #[serde(rename = "agent.unhealthy")]
    AgentUnhealthy,
    /// A registered agent missed its gone timeout; `ids` is `[agent id]`.
    #[serde(rename = "agent.gone")]
    AgentGone,
    /// An agent was deregistered; `ids` is `[agent id]`.
    #[serde(rename = "agent.deregistered")]
    AgentDeregistered,
    /// An inbox consumer acknowledged direct messages; `ids` is `[consumer,
    /// upto]`.
    #[serde(rename = "inbox.acked")]
    InboxAcked,
    /// A front end's document was written ([`crate::Engine::document_put`]);
    /// `ids` is `[collection, id]`.
    #[serde(rename = "document.put")]
    DocumentPut,
}

impl ChangeKind {
    /// The event type name (`message.added`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::NamespaceCreated => "namespace.created",
            ChangeKind::NamespaceDeleted => "namespace.deleted",
            ChangeKind::NamespaceUpdated => "namespace.updated",
            ChangeKind::MessageAdded => "message.added",
            ChangeKind::MessageDeleted => "message.deleted",
            ChangeKind::SummaryCreated => "summary.created",
            ChangeKind::ContextSet => "context.set",
            ChangeKind::ContextDeleted => "context.deleted",
            ChangeKind::BoardProblemCreated => "board.problem.created",
            ChangeKind::BoardProposalCreated => "board.proposal.created",
            ChangeKind::BoardVoted => "board.voted",
            ChangeKind::BoardResolved => "board.resolved",
            ChangeKind::KeyCreated => "key.created",
            ChangeKind::KeyRevoked => "key.revoked",
            ChangeKind::ContextRead => "context.read",
            ChangeKind::AgentRegistered => "agent.registered",
            ChangeKind::AgentHealthy => "agent.healthy",
            ChangeKind::AgentUnhealthy => "agent.unhealthy",
            ChangeKind::AgentGone => "agent.gone",
            ChangeKind::AgentDeregistered => "agent.deregistered",
            ChangeKind::InboxAcked => "inbox.acked",
            ChangeKind::DocumentPut => "document.put",
        }
    }
}

/// One change-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// Gap-free, commit-ordered sequence within the namespace, from 1.
    pub seq: u64,
    /// The namespace.
    pub namespace: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Ids of the records concerned (a message's or summary's id; a summary's
    /// entry also lists its source messages after its own id). Empty for
    /// namespace changes.
    pub ids: Vec<String>,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// Who made it: the caller's agent id or key id; `None` for the library's own
    /// callers and background jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// One atomic mutation of a namespace.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Create the namespace if it does not exist; when it does, set the fields
    /// given (`update`) and record `namespace.updated` if anything changed (a
    /// no-op, with no change-log entry, otherwise).
    CreateNamespace {
        /// Its parent, if any.
        parent: Option<NamespaceName>,
        /// Metadata.
        metadata: serde_json::Map<String, serde_json::Value>,
        /// On an existing namespace: replace the parent (`Some(None)` clears it)
        /// and the metadata (`Some`), or leave them (`None`).
        update: Option<NamespaceUpdate>,
    },
    /// Store messages with their unit vectors `[dim]`.
    AddMessages(Vec<(Message, Vec<f32>)>),
    /// Delete messages. Fails with [`Error::NotFound`] (nothing written) when one
    /// is gone.
    DeleteMessages(Vec<(RowId, Uuid)>),
    /// Store a summary, move the summarization watermark to `upto`, and delete the
    /// `evict`ed source messages, at once.
    AddSummary {
        /// The summary.
        summary: Summary,
        /// Its unit vector.
        vector: Vec<f32>,
        /// New watermark; must be above the current one, else
        /// [`Error::Conflict`] and nothing is written.
        upto: RowId,
        /// Source messages to delete with it (retention).
        evict: Vec<(RowId, Uuid)>,
    },
    /// Delete the namespace: its records (the message and summary rows as the
    /// caller's index knows them; a backend that can find them itself may ignore
    /// the lists) and its registry entry. Its change log stays (to retention) and
    /// its sequence continues if the name is used again. [`Committed::rows`]
    /// lists the message rows that were deleted.
    DeleteNamespace {
        /// Message rows.
        messages: Vec<RowId>,
        /// Summary rows.
        summaries: Vec<RowId>,
    },
    /// Write a version of a context entry, compare-and-set on the key's version:
    /// the store checks `expected_version` against the current one (a key that is
    /// absent, deleted or expired at `at` has version 0) inside the transaction and
    /// fails with [`Error::PreconditionFailed`] (nothing written) when it differs.
    PutContext(ContextPut),
}

/// New registry fields of an existing namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceUpdate {
    /// The new parent (`None`: no parent).
    pub parent: Option<NamespaceName>,
    /// The new metadata (`None`: unchanged).
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A context write, as [`Mutation::PutContext`] carries it.
#[derive(Debug, Clone)]
pub struct ContextPut {
    /// The key (validated).
    pub key: String,
    /// Set, patch or delete.
    pub op: ContextOp,
    /// Set: the new value; patch: the JSON Merge Patch; delete: ignored.
    pub value: serde_json::Value,
    /// Compare-and-set precondition.
    pub expected_version: Option<u64>,
    /// The version's author.
    pub agent_id: Option<String>,
    /// Expiry of the new version.
    pub expires_at: Option<DateTime<Utc>>,
    /// The write's time (expiry is judged against it).
    pub at: DateTime<Utc>,
    /// Largest value after the write, as compact JSON bytes ([`Error::TooLarge`]).
    pub max_value_bytes: usize,
    /// Versions kept per key (older ones dropped as new ones land); `None` keeps all.
    pub keep_versions: Option<u64>,
    /// Expiry sweep: delete the entry only if it is still this version, not
    /// deleted, and expired at `at` (else [`Error::PreconditionFailed`]);
    /// `expected_version` is then ignored.
    pub expire_version: Option<u64>,
    /// The unit vector `[dim]` of the new version's search text: `Some`
    /// replaces the stored one, `None` keeps it; a delete drops it.
    pub vector: Option<Vec<f32>>,
    /// The change-log entry to record instead of `context.set`/`context.deleted`
    /// (board documents): its kind and ids.
    pub change: Option<(ChangeKind, Vec<String>)>,
}

/// One entry of the audit log: a hash chain over every change, written in the
/// same transaction as the change. `hash = SHA-256(prev_hash ‖ the entry's JSON
/// without `hash`)` (hex), from a `prev_hash` of 64 zeros; editing, deleting or
/// reordering an entry breaks every hash after it
/// ([`crate::Engine::audit_verify`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Global, gap-free, from 1.
    pub seq: u64,
    /// When the change was committed.
    pub at: DateTime<Utc>,
    /// The API key that made it, or `local` (the library, the CLI, a server
    /// without keys).
    pub key_id: String,
    /// The agent it was made as, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// What happened (the change kind).
    pub action: ChangeKind,
    /// The namespace.
    pub namespace: String,
    /// The change's ids (message, summary or board ids; `[key, version]` for
    /// context).
    pub target: Vec<String>,
    /// SHA-256 (hex) of the bytes stored for the record written, when the change
    /// wrote one (messages, summaries, context versions, board documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_sha256: Option<String>,
    /// The previous entry's `hash`.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry must carry: SHA-256 over `prev_hash` and the entry's
    /// canonical JSON with `hash` empty.
    pub fn expected_hash(&self) -> String {
        use sha2::Digest;
        let mut body = self.clone();
        body.hash = String::new();
        let mut h = sha2::Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(serde_json::to_vec(&body).unwrap_or_default());
        hex::encode(h.finalize())
    }
}

/// An audit entry before the store chains it (assigns `seq`, `at`,
/// `prev_hash`, `hash`): what [`RecordStore::put_api_key`] and
/// [`RecordStore::audit_append`] record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    /// The API key that acted, or `local`.
    pub key_id: String,
    /// The agent it acted as.
    pub agent_id: Option<String>,
    /// What happened.
    pub action: ChangeKind,
    /// The namespace (empty for engine-wide actions such as keys).
    pub namespace: String,
    /// What it acted on.
    pub target: Vec<String>,
}

/// `prev_hash` of the first audit entry.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A mutation with its namespace and author.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The namespace written.
    pub namespace: NamespaceName,
    /// What to write.
    pub mutation: Mutation,
    /// Recorded as every change-log entry's actor.
    pub actor: Option<String>,
    /// The API key that made it (`None`: `local`), recorded in the audit log.
    pub key_id: Option<String>,
}

/// What a commit wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    /// Rows assigned to the records added, in input order (messages; or the one
    /// summary); for a namespace deletion, the message rows deleted.
    pub rows: Vec<RowId>,
    /// The change-log entries written, in seq order.
    pub changes: Vec<Change>,
    /// For a context write: the entry as written.
    pub context: Option<ContextEntry>,
}

/// What [`RecordStore::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreCheck {
    /// Message records.
    pub messages: usize,
    /// Summary records.
    pub summaries: usize,
    /// Vectors (one per message and summary when consistent).
    pub vectors: usize,
    /// Id entries (one per message and summary when consistent).
    pub ids: usize,
    /// Messages and summaries per namespace, as the records say.
    pub namespaces: std::collections::BTreeMap<String, NamespaceCounts>,
    /// Inconsistencies, at most [`StoreCheck::MAX_PROBLEMS`]; empty when the store is sound.
    pub problems: Vec<String>,
}

/// Record counts of one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceCounts {
    /// Message records.
    pub messages: usize,
    /// Summary records.
    pub summaries: usize,
}

impl StoreCheck {
    /// Most problems listed in one report.
    pub const MAX_PROBLEMS: usize = 100;
}

/// How long the change log keeps entries. An entry goes when it is older than
/// `max_age` **or** more than `max_entries` newer entries of its namespace
/// exist, whichever comes first; the newest entry of a namespace always stays
/// (it carries the sequence forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Oldest entry kept. Default 7 days: long enough for a consumer to be down
    /// over a weekend and replay what it missed.
    pub max_age: std::time::Duration,
    /// Most entries kept per namespace. Default 1,000,000 (~100 bytes each).
    pub max_entries: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: std::time::Duration::from_secs(7 * 24 * 3600),
            max_entries: 1_000_000,
        }
    }
}

/// Every durable thing the engine keeps. Implementations are `Send + Sync` and
/// cheap to share (`Arc<dyn RecordStore>`); every method may be called
/// concurrently, except that the engine never runs two commits of one namespace at
/// once.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Records the model's identity on first open; afterwards checks it.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`] when the store was written with another model.
    async fn check_or_init_meta(&self, info: &ModelInfo) -> Result<()>;

    /// Writes a mutation and its change-log entries in one transaction, durably.
    ///
    /// # Errors
    /// [`Error::NotFound`] (a message to delete is gone), [`Error::Conflict`] (a
    /// summary window already summarized), [`Error::Storage`]. On error nothing
    /// was written.
    async fn commit(&self, commit: &Commit) -> Result<Committed>;

    /// The records at `rows`, in the order given; rows that no longer exist are
    /// skipped (deleted since an index was read).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn records(&self, rows: &[RowId]) -> Result<Vec<(RowId, Record)>>;

    /// The row of the message or summary with this id.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn row_of(&self, id: &Uuid) -> Result<Option<RowId>>;

    /// Records of one kind with their vectors, in row order, after `after`, at
    /// most `limit` (a page of a full scan: loading indexes on open, exports).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn scan(
        &self,
        kind: RecordKind,
        after: Option<RowId>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>>;

    /// Every live namespace, by name.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn namespaces(&self) -> Result<Vec<NamespaceRecord>>;

    /// Change-log entries of `namespace` with seq above `after`, oldest first, at
    /// most `limit`.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn changes(&self, namespace: &str, after: u64, limit: usize) -> Result<Vec<Change>>;

    /// Drops change-log entries of every namespace beyond `retention`; returns how
    /// many went.
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn prune_changes(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize>;

    /// Compare-and-set on `key` in a key space of its own: writes `new` (`None`
    /// deletes) only if the current value equals `expected` (`None`: absent).
    /// Returns `Ok(Ok(()))` when written, `Ok(Err(current))` when the
    /// precondition failed.
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<std::result::Result<(), Option<Vec<u8>>>>;

    /// The value at `key` in the compare-and-set key space.
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn get_key(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// The current state of a context key (tombstones and expired entries
    /// included: the caller judges liveness).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn context_get(&self, namespace: &str, key: &str) -> Result<Option<ContextEntry>>;

    /// Live context entries of `namespace` (not deleted, not expired at `now`)
    /// whose key starts with `prefix`, keys after `after`, in key order, at most
    /// `limit`. Board documents ([`crate::core::board::BOARD_KEY_PREFIX`]) are
    /// listed only when `prefix` starts with that prefix.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn context_list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<ContextEntry>>;

    /// Every live entry of `namespace` at `now` (board documents included) with
    /// its stored vector (`None` when it has none, e.g. written before entries
    /// were searchable): what the search index is rebuilt from on open.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn context_indexed(
        &self,
        namespace: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ContextEntry, Option<Vec<f32>>)>>;

    /// Audit entries with seq above `after`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Appends entries to the audit chain (reads audited with
    /// `--audit-reads`), without a flush of its own: the next commit or the
    /// periodic flush makes them durable.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`] (a broken chain head).
    async fn audit_append(&self, drafts: Vec<AuditDraft>) -> Result<()>;

    /// Every API key (live, expired and revoked), in id order.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn api_keys(&self) -> Result<Vec<crate::core::keys::StoredKey>>;

    /// Writes an API key (new, or revoked) and its audit entry in one
    /// transaction, durably.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn put_api_key(
        &self,
        key: &crate::core::keys::StoredKey,
        audit: AuditDraft,
    ) -> Result<()>;

    /// Versions of a key above `after`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn context_history(
        &self,
        namespace: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ContextVersion>>;

    /// Entries (of any namespace) that expired by `now` and are not yet
    /// deleted, at most `limit`: what the expiry job deletes.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn context_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ContextEntry>>;

    /// Cross-checks the store's own consistency (an offline `fsck`); reads every
    /// record.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be read; inconsistencies are
    /// reported, not returned as errors.
    async fn check(&self, dim: usize) -> Result<StoreCheck>;

    /// Makes everything durable (every acknowledged commit already is).
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn flush(&self) -> Result<()>;

    /// Bytes the store occupies on disk (0 when unknown).
    fn size_on_disk(&self) -> u64;

    /// Whether other processes may write this store while this one runs (a
    /// database shared by several memoryd nodes). The engine then follows their
    /// writes from the change log (`engine/follow.rs`) and runs each background
    /// job under [`RecordStore::try_job_lock`]. Default: false, the store is this
    /// process's alone (sled holds a file lock).
    fn shared(&self) -> bool {
        false
    }

    /// Wake-ups from commits by any process: `(namespace, seq)` when a
    /// namespace's change log reached `seq`, or `("", 0)` for "anything may have
    /// changed" (API keys, or notices lost while reconnecting). Best effort: a
    /// notice can be lost, so a follower also polls [`RecordStore::namespaces`].
    /// Called once; `None` (the default) when the store has no notification
    /// channel.
    fn notices(&self) -> Option<tokio::sync::mpsc::Receiver<(String, u64)>> {
        None
    }

    /// Messages and summaries of `namespace` with their vectors, row above
    /// `after`, in row order, at most `limit`: what a follower reads to catch up
    /// with other processes' writes. The default pages through
    /// [`RecordStore::scan`] (every namespace's records; correct, slow): a shared
    /// store overrides it with an indexed read.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn scan_namespace(
        &self,
        namespace: &str,
        after: RowId,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        for kind in [RecordKind::Message, RecordKind::Summary] {
            let mut from = Some(after);
            loop {
                let page = self.scan(kind, from, 4096).await?;
                let Some(last) = page.last() else { break };
                from = Some(last.row);
                out.extend(
                    page.into_iter()
                        .filter(|r| r.record.namespace() == namespace),
                );
            }
        }
        out.sort_by_key(|r| r.row);
        out.truncate(limit);
        Ok(out)
    }

    /// Rows of every message and summary of `namespace`, ascending: what a
    /// follower compares its index with after other processes deleted records.
    /// The default reads through [`RecordStore::scan_namespace`].
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn namespace_rows(&self, namespace: &str) -> Result<Vec<RowId>> {
        Ok(self
            .scan_namespace(namespace, 0, usize::MAX)
            .await?
            .into_iter()
            .map(|r| r.row)
            .collect())
    }

    /// Records that `agent` was heard from at `at` where other processes see it
    /// (a shared store). Not a change: no change-log or audit entry, and it may be
    /// lost in a crash. Default: nothing (one process keeps heartbeats in memory).
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn heartbeat(&self, agent: &str, at: DateTime<Utc>) -> Result<()> {
        let _ = (agent, at);
        Ok(())
    }

    /// The last [`RecordStore::heartbeat`] of every agent. Default: none.
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn heartbeats(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        Ok(Vec::new())
    }

    /// The registry entry of one live namespace (`None`: absent or deleted).
    /// The default reads [`RecordStore::namespaces`].
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    async fn namespace_record(&self, name: &str) -> Result<Option<NamespaceRecord>> {
        Ok(self
            .namespaces()
            .await?
            .into_iter()
            .find(|r| r.name == name))
    }

    /// Takes the lock `name` for one run of a background job, unless another
    /// process holds it (then `Ok(None)`: skip this run). Released when the
    /// returned guard drops. Default: always granted (one process).
    ///
    /// # Errors
    /// [`Error::Storage`].
    async fn try_job_lock(&self, name: &str) -> Result<Option<JobLock>> {
        let _ = name;
        Ok(Some(JobLock::default()))
    }

    /// Whether this store ranks its own message and summary vectors
    /// ([`RecordStore::nearest`], [`RecordStore::similarities`]), so that a node
    /// need not hold them in memory ([`crate::search::store::StoreIndex`]).
    /// Default: false.
    fn ranks_vectors(&self) -> bool {
        false
    }

    /// The messages and summaries of `namespace` nearest to the unit vector
    /// `query` `[dim]`, as `(row, cosine similarity)`, best first: up to `n` of
    /// each table `tables` names (so a caller that keeps one kind still has its
    /// `n`). Summaries are always scanned exactly; `scan` says how messages are
    /// found.
    ///
    /// # Errors
    /// [`Error::Storage`]; the default (a store that does not rank vectors)
    /// always fails.
    async fn nearest(
        &self,
        namespace: &str,
        query: &[f32],
        n: usize,
        scan: VectorScan<'_>,
        tables: VectorTables,
    ) -> Result<Vec<(RowId, f32)>> {
        let _ = (namespace, query, n, scan, tables);
        Err(Error::storage("this store does not rank vectors"))
    }

    /// Cosine similarities of the messages and summaries at `rows` to the unit
    /// vector `query` `[dim]`; rows that no longer exist are left out.
    ///
    /// # Errors
    /// As [`RecordStore::nearest`].
    async fn similarities(&self, query: &[f32], rows: &[RowId]) -> Result<Vec<(RowId, f32)>> {
        let _ = (query, rows);
        Err(Error::storage("this store does not rank vectors"))
    }

    /// Builds the approximate index [`VectorScan::Approximate`] uses for
    /// `namespace` (HNSW with `m` and `ef_construction`, over `dim`-dimensional
    /// vectors) unless a valid one exists. Blocking for as long as the build
    /// takes; the store stays writable meanwhile. `Ok(false)`: another process
    /// is building it (try again later).
    ///
    /// # Errors
    /// As [`RecordStore::nearest`].
    async fn build_vector_index(
        &self,
        namespace: &str,
        dim: usize,
        m: usize,
        ef_construction: usize,
    ) -> Result<bool> {
        let _ = (namespace, dim, m, ef_construction);
        Err(Error::storage("this store does not rank vectors"))
    }
}

/// Which records [`RecordStore::nearest`] ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorTables {
    /// Messages.
    pub messages: bool,
    /// Summaries.
    pub summaries: bool,
}

/// How [`RecordStore::nearest`] finds a namespace's nearest messages.
#[derive(Debug, Clone, Copy)]
pub enum VectorScan<'a> {
    /// Every message of the namespace, exactly.
    All,
    /// Only these rows, exactly (a filter's admitted rows; a few thousand at
    /// most, sent as one array).
    Rows(&'a [RowId]),
    /// The namespace's approximate index when a valid one exists (an exact scan
    /// otherwise), exploring `ef_search` candidates and continuing (iterative
    /// scan) until `n` rows are found.
    Approximate {
        /// Candidates explored (pgvector `hnsw.ef_search`, capped at its maximum
        /// of 1,000; iterative scans go on past it until `n` rows or pgvector's
        /// `hnsw.max_scan_tuples`, 20,000 by default).
        ef_search: usize,
    },
}

/// A held [`RecordStore::try_job_lock`]: released when dropped.
#[derive(Default)]
pub struct JobLock {
    /// What releases the lock when dropped (a backend's transaction holder);
    /// `None` for the default, process-local grant.
    release: Option<Box<dyn Send + Sync>>,
}

impl JobLock {
    /// A lock released by dropping `release`.
    pub fn new(release: Box<dyn Send + Sync>) -> JobLock {
        JobLock {
            release: Some(release),
        }
    }

    /// Whether a backend holds something for this lock (false for the
    /// process-local grant).
    pub fn is_backed(&self) -> bool {
        self.release.is_some()
    }
}

impl std::fmt::Debug for JobLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLock")
            .field("backed", &self.is_backed())
            .finish()
    }
}

/// SHA-256 of `bytes`, lowercase hex: an audit entry's `value_sha256` is this
/// of the record bytes the commit wrote (the record codec's, on every backend).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The audit drafts of a commit: one per change-log entry `(kind, ids)`, by the
/// commit's key (`"local"` without one) and actor, each with the digest of the
/// record it wrote when `digests` has one for its index.
pub(crate) fn audit_drafts(
    entries: &[(ChangeKind, Vec<String>)],
    digests: &[(usize, String)],
    key_id: Option<&str>,
    actor: Option<&str>,
    namespace: &str,
) -> Vec<(AuditDraft, Option<String>)> {
    entries
        .iter()
        .enumerate()
        .map(|(i, (kind, ids))| {
            let draft = AuditDraft {
                key_id: key_id.unwrap_or("local").to_owned(),
                agent_id: actor.map(str::to_owned),
                action: *kind,
                namespace: namespace.to_owned(),
                target: ids.clone(),
            };
            let digest = digests
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, d)| d.clone());
            (draft, digest)
        })
        .collect()
}

impl AuditEntry {
    /// The entry after the chain's head `(prev_seq, prev_hash)` for `draft`,
    /// its hash computed ([`AuditEntry::expected_hash`]).
    pub(crate) fn chained(
        prev_seq: u64,
        prev_hash: &str,
        at: DateTime<Utc>,
        draft: AuditDraft,
        value_sha256: Option<String>,
    ) -> AuditEntry {
        let mut entry = AuditEntry {
            seq: prev_seq + 1,
            at,
            key_id: draft.key_id,
            agent_id: draft.agent_id,
            action: draft.action,
            namespace: draft.namespace,
            target: draft.target,
            value_sha256,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.expected_hash();
        entry
    }
}

/// The compare-and-set write of a context key, decided on the key's current
/// state (`None`: never written): checks the precondition (`expected_version`, or
/// `expire_version` for the expiry sweep), computes the new value (a JSON Merge
/// Patch, RFC 7396, for [`ContextOp::Patch`]) and its size, and returns the new
/// state, its history version and the change kind. Backend-neutral: each backend
/// reads the current state and writes the result inside its own transaction.
///
/// # Errors
/// [`Error::PreconditionFailed`] (stale version, or an expired entry that changed),
/// [`Error::NotFound`] (deleting what is not there), [`Error::TooLarge`] for a
/// value over `max_value_bytes`.
pub(crate) fn apply_context_put(
    ns: &str,
    put: &ContextPut,
    current: Option<&ContextEntry>,
) -> Result<(ContextEntry, ContextVersion, ChangeKind)> {
    let live = current.filter(|c| c.is_live(put.at));
    let effective = live.map_or(0, |c| c.version);
    if let Some(v) = put.expire_version {
        let still_expired =
            current.is_some_and(|c| c.version == v && !c.deleted && !c.is_live(put.at));
        if !still_expired {
            return Err(Error::PreconditionFailed {
                message: format!("context key {:?} changed since it expired", put.key),
                current_version: live.map(|c| c.version),
                current: None,
            });
        }
    } else if let Some(expected) = put.expected_version
        && expected != effective
    {
        return Err(Error::PreconditionFailed {
            message: format!(
                "context key {:?} is at version {effective}, not {expected}{}",
                put.key,
                if effective == 0 {
                    " (it does not exist)"
                } else {
                    ""
                }
            ),
            current_version: live.map(|c| c.version),
            current: live.and_then(|c| serde_json::to_value(c).ok()),
        });
    }
    let (value, kind) = match put.op {
        ContextOp::Set => (put.value.clone(), ChangeKind::ContextSet),
        ContextOp::Patch => {
            let mut v = live.map_or(serde_json::Value::Null, |c| c.value.clone());
            json_patch::merge(&mut v, &put.value);
            (v, ChangeKind::ContextSet)
        }
        ContextOp::Delete => {
            if live.is_none() && put.expire_version.is_none() {
                return Err(Error::NotFound {
                    what: "context key",
                    id: put.key.clone(),
                });
            }
            (serde_json::Value::Null, ChangeKind::ContextDeleted)
        }
    };
    let bytes = serde_json::to_vec(&value).map_or(usize::MAX, |b| b.len());
    if bytes > put.max_value_bytes {
        return Err(Error::too_large(
            "value",
            format!(
                "{bytes} bytes as JSON; the limit is {}",
                put.max_value_bytes
            ),
        ));
    }
    let deleted = put.op == ContextOp::Delete;
    let entry = ContextEntry {
        key: put.key.clone(),
        namespace: ns.to_owned(),
        version: current.map_or(0, |c| c.version) + 1,
        value: value.clone(),
        agent_id: put.agent_id.clone(),
        updated_at: put.at,
        expires_at: if deleted { None } else { put.expires_at },
        deleted,
    };
    let version = ContextVersion {
        version: entry.version,
        op: put.op,
        value,
        agent_id: put.agent_id.clone(),
        at: put.at,
        expires_at: entry.expires_at,
    };
    Ok((entry, version, kind))
}

/// Runs blocking store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("worker task failed: {e}"))))?
}
