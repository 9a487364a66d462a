//! Persistence on sled.
//!
//! One data directory, five trees. Every value starts with a format-version
//! byte ([`FORMAT_VERSION`]); bodies are postcard unless noted.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `"engine"` | [`EngineMeta`]: model id, dimension, normalization |
//! | `messages` | seq (u64 big-endian) | a message record |
//! | `vectors` | seq (u64 big-endian) | `dim` × f32 little-endian (raw, not postcard) |
//! | `ids` | message UUID (16 bytes) | seq (u64 big-endian) |
//! | `namespaces` | namespace name (UTF-8) | a namespace record (summarization watermark) |
//! | `summaries` | seq (u64 big-endian) | a summary record (its vector is in `vectors`) |
//!
//! The seq is sled's monotonic `generate_id`, so iterating `messages` yields
//! insertion order. A message, its vector and its id entry are written in one
//! transaction; [`Store::insert`] and [`Store::delete`] return only after
//! `flush` (fsync), which is the durability contract: an acknowledged write
//! survives `kill -9` and power loss (to the extent the disk honours fsync).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use uuid::Uuid;

use crate::embed::ModelInfo;
use crate::error::{Error, Result};
use crate::types::{Message, Role, Summary};

/// Version byte at the start of every persisted value.
pub const FORMAT_VERSION: u8 = 1;

/// Engine-wide facts recorded in the data directory on first open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineMeta {
    /// Model id (e.g. `all-MiniLM-L6-v2`).
    pub model_id: String,
    /// sha256 of the weights file: the identity of the vector space.
    pub weights_sha256: String,
    /// Embedding dimension.
    pub dim: u32,
    /// Whether stored vectors are L2-normalized (always true today).
    pub normalized: bool,
    /// When the directory was created, microseconds since the Unix epoch.
    pub created_micros: i64,
}

/// Per-namespace state that is not derived from its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// When the namespace was created, microseconds since the Unix epoch.
    pub created_micros: i64,
    /// Every message of the namespace with a seq at or below this is summarized
    /// (0: none). Moves forward in the same transaction that writes a summary.
    pub summarized_upto: u64,
}

/// Decodes a namespace record.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid record.
pub fn decode_namespace(bytes: &[u8]) -> Result<NamespaceRecord> {
    postcard::from_bytes(versioned("namespaces", bytes)?)
        .map_err(|e| corrupt("namespaces", e.to_string()))
}

#[derive(Serialize, Deserialize)]
struct SummaryRecord {
    id: [u8; 16],
    namespace: String,
    text: String,
    source_ids: Vec<[u8; 16]>,
    from_micros: i64,
    to_micros: i64,
    created_micros: i64,
    summarizer: String,
}

fn uuid_bytes(field: &str, s: &str) -> Result<[u8; 16]> {
    Uuid::parse_str(s)
        .map(|u| *u.as_bytes())
        .map_err(|_| Error::invalid(field, "not a UUID"))
}

/// Encodes a summary into its persisted form.
///
/// # Errors
/// [`Error::InvalidInput`] when an id is not a UUID.
pub fn encode_summary(s: &Summary) -> Result<Vec<u8>> {
    Ok(encode(&SummaryRecord {
        id: uuid_bytes("id", &s.id)?,
        namespace: s.namespace.clone(),
        text: s.text.clone(),
        source_ids: s
            .source_ids
            .iter()
            .map(|i| uuid_bytes("source_ids", i))
            .collect::<Result<_>>()?,
        from_micros: micros(s.from),
        to_micros: micros(s.to),
        created_micros: micros(s.created_at),
        summarizer: s.summarizer.clone(),
    }))
}

/// Decodes a persisted summary. Never panics on arbitrary bytes.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid record.
pub fn decode_summary(bytes: &[u8]) -> Result<Summary> {
    const T: &str = "summaries";
    let r: SummaryRecord =
        postcard::from_bytes(versioned(T, bytes)?).map_err(|e| corrupt(T, e.to_string()))?;
    Ok(Summary {
        id: Uuid::from_bytes(r.id).to_string(),
        namespace: r.namespace,
        text: r.text,
        source_ids: r
            .source_ids
            .into_iter()
            .map(|b| Uuid::from_bytes(b).to_string())
            .collect(),
        from: from_micros(T, r.from_micros)?,
        to: from_micros(T, r.to_micros)?,
        created_at: from_micros(T, r.created_micros)?,
        summarizer: r.summarizer,
    })
}

#[derive(Serialize, Deserialize)]
struct MessageRecord {
    id: [u8; 16],
    namespace: String,
    role: u8,
    name: Option<String>,
    content: String,
    timestamp_micros: i64,
    agent_id: Option<String>,
    session_id: Option<String>,
    exchange_id: Option<[u8; 16]>,
    /// JSON text: postcard is not self-describing, so arbitrary JSON rides as text.
    metadata_json: String,
}

fn corrupt(tree: &'static str, message: impl Into<String>) -> Error {
    Error::Corrupt {
        tree,
        message: message.into(),
    }
}

fn versioned<'a>(tree: &'static str, bytes: &'a [u8]) -> Result<&'a [u8]> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => Ok(body),
        Some((v, _)) => Err(corrupt(tree, format!("unknown format version {v}"))),
        None => Err(corrupt(tree, "empty value")),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serializing our own plain structs into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).expect("postcard encodes plain structs"));
    out
}

fn micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn from_micros(tree: &'static str, us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt(tree, "timestamp out of range"))
}

/// Parses a message id (UUID text).
///
/// # Errors
/// [`Error::NotFound`] when `id` is not a UUID (no message can have it).
pub fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| Error::NotFound {
        what: "message",
        id: id.chars().take(100).collect(),
    })
}

/// Encodes a message into its persisted form.
///
/// # Errors
/// [`Error::InvalidInput`] when the message id or exchange id is not a UUID.
pub fn encode_message(m: &Message) -> Result<Vec<u8>> {
    let id = Uuid::parse_str(&m.id).map_err(|_| Error::invalid("id", "not a UUID"))?;
    let exchange_id = m
        .exchange_id
        .as_deref()
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| Error::invalid("exchange_id", "not a UUID"))?;
    Ok(encode(&MessageRecord {
        id: *id.as_bytes(),
        namespace: m.namespace.clone(),
        role: m.role.to_u8(),
        name: m.name.clone(),
        content: m.content.clone(),
        timestamp_micros: micros(m.timestamp),
        agent_id: m.agent_id.clone(),
        session_id: m.session_id.clone(),
        exchange_id: exchange_id.map(|u| *u.as_bytes()),
        metadata_json: serde_json::Value::Object(m.metadata.clone()).to_string(),
    }))
}

/// Decodes a persisted message. Never panics on arbitrary bytes.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid record.
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    const T: &str = "messages";
    let r: MessageRecord =
        postcard::from_bytes(versioned(T, bytes)?).map_err(|e| corrupt(T, e.to_string()))?;
    let metadata = match serde_json::from_str(&r.metadata_json) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(corrupt(T, "metadata is not a JSON object")),
    };
    Ok(Message {
        id: Uuid::from_bytes(r.id).to_string(),
        namespace: r.namespace,
        role: Role::from_u8(r.role).ok_or_else(|| corrupt(T, "unknown role"))?,
        name: r.name,
        content: r.content,
        timestamp: from_micros(T, r.timestamp_micros)?,
        agent_id: r.agent_id,
        session_id: r.session_id,
        exchange_id: r.exchange_id.map(|b| Uuid::from_bytes(b).to_string()),
        metadata,
    })
}

/// Encodes a vector: version byte, then f32 little-endian.
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + v.len() * 4);
    out.push(FORMAT_VERSION);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decodes a vector of `dim` values. Never panics on arbitrary bytes.
///
/// # Errors
/// [`Error::Corrupt`] on a wrong version or length.
pub fn decode_vector(bytes: &[u8], dim: usize) -> Result<Vec<f32>> {
    let body = versioned("vectors", bytes)?;
    if body.len() != dim * 4 {
        return Err(corrupt(
            "vectors",
            format!("expected {} bytes, found {}", dim * 4, body.len()),
        ));
    }
    Ok(body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Decodes engine metadata.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid record.
pub fn decode_meta(bytes: &[u8]) -> Result<EngineMeta> {
    postcard::from_bytes(versioned("meta", bytes)?).map_err(|e| corrupt("meta", e.to_string()))
}

/// One message ready to persist.
pub struct NewRecord<'a> {
    /// Its sequence number from [`Store::next_seq`].
    pub seq: u64,
    /// The message.
    pub message: &'a Message,
    /// Its embedding, `[dim]`.
    pub vector: &'a [f32],
}

/// What [`Store::check`] found.
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

/// The sled-backed store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    messages: sled::Tree,
    vectors: sled::Tree,
    ids: sled::Tree,
    namespaces: sled::Tree,
    summaries: sled::Tree,
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Storage(e),
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot open the directory (e.g. another
    /// process holds it).
    pub fn open(dir: &std::path::Path) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let config = sled::Config::new()
            .path(dir.join("sled"))
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
                other => break other?,
            }
        };
        Ok(Store {
            meta: db.open_tree("meta")?,
            messages: db.open_tree("messages")?,
            vectors: db.open_tree("vectors")?,
            ids: db.open_tree("ids")?,
            namespaces: db.open_tree("namespaces")?,
            summaries: db.open_tree("summaries")?,
            db,
        })
    }

    /// Records `info` on first open; afterwards checks that it matches.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`] when the directory was written with other weights
    /// or another dimension.
    pub fn check_or_init_meta(&self, info: &ModelInfo) -> Result<EngineMeta> {
        if let Some(bytes) = self.meta.get("engine")? {
            let meta = decode_meta(&bytes)?;
            if meta.weights_sha256 != info.weights_sha256 || meta.dim as usize != info.dim {
                return Err(Error::ModelMismatch {
                    stored: meta.model_id,
                    stored_dim: meta.dim as usize,
                    current: info.id.clone(),
                    current_dim: info.dim,
                });
            }
            return Ok(meta);
        }
        let meta = EngineMeta {
            model_id: info.id.clone(),
            weights_sha256: info.weights_sha256.clone(),
            dim: info.dim as u32,
            normalized: true,
            created_micros: micros(Utc::now()),
        };
        self.meta.insert("engine", encode(&meta))?;
        self.db.flush()?;
        Ok(meta)
    }

    /// A fresh sequence number, greater than every one handed out before
    /// (also across restarts).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn next_seq(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Writes `records` atomically (one transaction over all trees) and flushes.
    /// Creates the namespace records that do not exist yet.
    ///
    /// # Errors
    /// [`Error::Storage`]; on error nothing was written.
    pub fn insert(&self, records: &[NewRecord<'_>]) -> Result<()> {
        let mut encoded = Vec::with_capacity(records.len());
        for r in records {
            encoded.push((
                r.seq.to_be_bytes(),
                encode_message(r.message)?,
                encode_vector(r.vector),
                *parse_id(&r.message.id)?.as_bytes(),
                r.message.namespace.as_bytes(),
            ));
        }
        let ns_record = encode(&NamespaceRecord {
            created_micros: micros(Utc::now()),
            summarized_upto: 0,
        });
        (&self.messages, &self.vectors, &self.ids, &self.namespaces)
            .transaction(|(messages, vectors, ids, namespaces)| -> TxResult<()> {
                for (seq, msg, vec, id, ns) in &encoded {
                    messages.insert(&seq[..], msg.as_slice())?;
                    vectors.insert(&seq[..], vec.as_slice())?;
                    ids.insert(&id[..], &seq[..])?;
                    if namespaces.get(ns)?.is_none() {
                        namespaces.insert(*ns, ns_record.as_slice())?;
                    }
                }
                Ok(())
            })
            .map_err(tx_error)?;
        self.db.flush()?;
        Ok(())
    }

    /// Looks up a message's seq by id.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub fn seq_of(&self, id: &Uuid) -> Result<Option<u64>> {
        match self.ids.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt("ids", "seq is not 8 bytes"))?;
                Ok(Some(u64::from_be_bytes(b)))
            }
        }
    }

    /// Reads a message by seq.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub fn message(&self, seq: u64) -> Result<Option<Message>> {
        self.messages
            .get(seq.to_be_bytes())?
            .map(|b| decode_message(&b))
            .transpose()
    }

    /// Deletes messages (record, vector and id entry) atomically and flushes.
    ///
    /// # Errors
    /// [`Error::Storage`]; on error nothing was deleted.
    pub fn delete(&self, items: &[(u64, Uuid)]) -> Result<()> {
        self.delete_records(&self.messages, items)
    }

    /// Deletes records of `records` (messages or summaries) with their vectors and
    /// id entries, in one transaction, then flushes.
    fn delete_records(&self, records: &sled::Tree, items: &[(u64, Uuid)]) -> Result<()> {
        (records, &self.vectors, &self.ids)
            .transaction(|(records, vectors, ids)| -> TxResult<()> {
                for (seq, id) in items {
                    records.remove(&seq.to_be_bytes()[..])?;
                    vectors.remove(&seq.to_be_bytes()[..])?;
                    ids.remove(&id.as_bytes()[..])?;
                }
                Ok(())
            })
            .map_err(tx_error)?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes a namespace's record (its messages are deleted with [`Store::delete`]).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn remove_namespace(&self, ns: &str) -> Result<()> {
        self.namespaces.remove(ns.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Every stored message with its vector, in seq (insertion) order.
    pub fn scan(&self, dim: usize) -> impl Iterator<Item = Result<(u64, Message, Vec<f32>)>> + '_ {
        self.scan_records(&self.messages, "messages", dim, decode_message)
    }

    /// Every record of `tree` with its vector, in seq order.
    fn scan_records<'a, T: 'a>(
        &'a self,
        tree: &'a sled::Tree,
        name: &'static str,
        dim: usize,
        decode: fn(&[u8]) -> Result<T>,
    ) -> impl Iterator<Item = Result<(u64, T, Vec<f32>)>> + 'a {
        tree.iter().map(move |kv| {
            let (k, v) = kv?;
            let key: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| corrupt(name, "key is not 8 bytes"))?;
            let seq = u64::from_be_bytes(key);
            let record = decode(&v)?;
            let vector = self
                .vectors
                .get(k)?
                .ok_or_else(|| corrupt("vectors", format!("no vector for {name} seq {seq}")))?;
            Ok((seq, record, decode_vector(&vector, dim)?))
        })
    }

    /// Names of namespaces with a record.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn namespace_names(&self) -> Result<Vec<String>> {
        self.namespaces
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// The namespace's record, if it has one.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub fn namespace_record(&self, ns: &str) -> Result<Option<NamespaceRecord>> {
        self.namespaces
            .get(ns.as_bytes())?
            .map(|b| decode_namespace(&b))
            .transpose()
    }

    /// Writes a summary and moves the namespace's watermark to `upto`, in one
    /// transaction, then flushes: a crash leaves either both or neither, so no
    /// summary is written twice and no message is skipped. `evict` lists source
    /// messages deleted in the same transaction (retention).
    ///
    /// # Errors
    /// [`Error::Storage`]; on error nothing was written.
    pub fn insert_summary(
        &self,
        seq: u64,
        summary: &Summary,
        vector: &[f32],
        upto: u64,
        evict: &[(u64, Uuid)],
    ) -> Result<()> {
        let record = encode_summary(summary)?;
        let vector = encode_vector(vector);
        let id = *parse_id(&summary.id)?.as_bytes();
        let ns = summary.namespace.as_bytes();
        (
            &self.summaries,
            &self.vectors,
            &self.ids,
            &self.namespaces,
            &self.messages,
        )
            .transaction(
                |(summaries, vectors, ids, namespaces, messages)| -> TxResult<()> {
                    let mut state = match namespaces.get(ns)? {
                        Some(b) => {
                            decode_namespace(&b).map_err(ConflictableTransactionError::Abort)?
                        }
                        None => NamespaceRecord {
                            created_micros: micros(Utc::now()),
                            summarized_upto: 0,
                        },
                    };
                    if state.summarized_upto >= upto {
                        return Err(ConflictableTransactionError::Abort(Error::invalid(
                            "summarize",
                            "this window was already summarized",
                        )));
                    }
                    state.summarized_upto = upto;
                    summaries.insert(&seq.to_be_bytes()[..], record.as_slice())?;
                    vectors.insert(&seq.to_be_bytes()[..], vector.as_slice())?;
                    ids.insert(&id[..], &seq.to_be_bytes()[..])?;
                    namespaces.insert(ns, encode(&state))?;
                    for (s, uid) in evict {
                        messages.remove(&s.to_be_bytes()[..])?;
                        vectors.remove(&s.to_be_bytes()[..])?;
                        ids.remove(&uid.as_bytes()[..])?;
                    }
                    Ok(())
                },
            )
            .map_err(tx_error)?;
        self.db.flush()?;
        Ok(())
    }

    /// Reads a summary by seq.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Corrupt`].
    pub fn summary(&self, seq: u64) -> Result<Option<Summary>> {
        self.summaries
            .get(seq.to_be_bytes())?
            .map(|b| decode_summary(&b))
            .transpose()
    }

    /// Every summary with its vector, in seq order.
    pub fn scan_summaries(
        &self,
        dim: usize,
    ) -> impl Iterator<Item = Result<(u64, Summary, Vec<f32>)>> + '_ {
        self.scan_records(&self.summaries, "summaries", dim, decode_summary)
    }

    /// Deletes summaries (record, vector, id entry) atomically and flushes.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn delete_summaries(&self, items: &[(u64, Uuid)]) -> Result<()> {
        self.delete_records(&self.summaries, items)
    }

    /// Cross-checks the trees (an offline `fsck`): every message and summary
    /// decodes, has a vector of `dim` floats and an id entry pointing back at it;
    /// every vector and id entry has its record; no id is stored twice. Reads the
    /// whole store (O(records)).
    ///
    /// # Errors
    /// [`Error::Storage`] when sled cannot read; inconsistencies are reported in
    /// [`StoreCheck::problems`], not as errors.
    pub fn check(&self, dim: usize) -> Result<StoreCheck> {
        let mut report = StoreCheck::default();
        let mut owners: std::collections::HashMap<[u8; 8], [u8; 16]> =
            std::collections::HashMap::new();
        let problem = |report: &mut StoreCheck, p: String| {
            if report.problems.len() < StoreCheck::MAX_PROBLEMS {
                report.problems.push(p);
            }
        };
        for (tree, name) in [(&self.messages, "messages"), (&self.summaries, "summaries")] {
            for kv in tree.iter() {
                let (k, v) = kv?;
                let Ok(key) = <[u8; 8]>::try_from(k.as_ref()) else {
                    problem(&mut report, format!("{name}: key of {} bytes", k.len()));
                    continue;
                };
                let seq = u64::from_be_bytes(key);
                let decoded = if name == "messages" {
                    report.messages += 1;
                    decode_message(&v).map(|m| (m.id, m.namespace))
                } else {
                    report.summaries += 1;
                    decode_summary(&v).map(|s| (s.id, s.namespace))
                };
                let id = match decoded.and_then(|(id, ns)| Ok((parse_id(&id)?, ns))) {
                    Ok((id, ns)) => {
                        let counts = report.namespaces.entry(ns).or_default();
                        if name == "messages" {
                            counts.messages += 1;
                        } else {
                            counts.summaries += 1;
                        }
                        *id.as_bytes()
                    }
                    Err(e) => {
                        problem(&mut report, format!("{name} seq {seq}: {e}"));
                        continue;
                    }
                };
                if owners.insert(key, id).is_some() {
                    problem(
                        &mut report,
                        format!("seq {seq} is both a message and a summary"),
                    );
                }
                match self.vectors.get(key)? {
                    None => problem(&mut report, format!("{name} seq {seq}: no vector")),
                    Some(b) => {
                        if let Err(e) = decode_vector(&b, dim) {
                            problem(&mut report, format!("{name} seq {seq}: {e}"));
                        }
                    }
                }
                match self.ids.get(id)? {
                    Some(s) if s.as_ref() == key => {}
                    Some(_) => problem(
                        &mut report,
                        format!("{name} seq {seq}: its id entry points at another seq"),
                    ),
                    None => problem(&mut report, format!("{name} seq {seq}: no id entry")),
                }
            }
        }
        for kv in self.vectors.iter() {
            let (k, _) = kv?;
            report.vectors += 1;
            if <[u8; 8]>::try_from(k.as_ref()).map_or(true, |key| !owners.contains_key(&key)) {
                problem(&mut report, format!("vector {k:?} has no record"));
            }
        }
        for kv in self.ids.iter() {
            let (k, v) = kv?;
            report.ids += 1;
            let owner = <[u8; 8]>::try_from(v.as_ref())
                .ok()
                .and_then(|key| owners.get(&key));
            if owner.is_none_or(|id| id[..] != k[..]) {
                problem(
                    &mut report,
                    format!("id entry {k:?} points at no record with that id"),
                );
            }
        }
        Ok(report)
    }

    /// Flushes everything to disk.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            id: Uuid::now_v7().to_string(),
            namespace: "ns".into(),
            role: Role::Assistant,
            name: Some("Mel".into()),
            content: "hello\0 world".into(),
            timestamp: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            agent_id: Some("a".into()),
            session_id: None,
            exchange_id: Some(Uuid::now_v7().to_string()),
            metadata: serde_json::json!({"k": [1, {"x": null}]})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn message_roundtrip() {
        let m = sample();
        assert_eq!(decode_message(&encode_message(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn vector_roundtrip_and_length_check() {
        let v = vec![0.5f32, -1.25, 3.0];
        let b = encode_vector(&v);
        assert_eq!(decode_vector(&b, 3).unwrap(), v);
        assert!(decode_vector(&b, 4).is_err());
        assert!(decode_vector(&[2, 0, 0, 0, 0], 1).is_err());
    }

    #[test]
    fn check_finds_each_kind_of_inconsistency() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (sample(), sample());
        let v = [1.0f32, 0.0, 0.0];
        let records: Vec<NewRecord<'_>> = [(&a, 1u64), (&b, 2)]
            .into_iter()
            .map(|(m, seq)| NewRecord {
                seq,
                message: m,
                vector: &v,
            })
            .collect();
        store.insert(&records).unwrap();
        let sound = store.check(3).unwrap();
        assert!(sound.problems.is_empty(), "{:?}", sound.problems);
        assert_eq!((sound.messages, sound.vectors, sound.ids), (2, 2, 2));
        assert_eq!(sound.namespaces["ns"].messages, 2);
        // Wrong dimension, a lost vector, an id entry gone, a corrupt record.
        assert_eq!(store.check(4).unwrap().problems.len(), 2);
        store.vectors.remove(1u64.to_be_bytes()).unwrap();
        store
            .ids
            .remove(parse_id(&b.id).unwrap().as_bytes())
            .unwrap();
        store
            .messages
            .insert(3u64.to_be_bytes(), &[FORMAT_VERSION, 0xff][..])
            .unwrap();
        let broken = store.check(3).unwrap();
        let joined = broken.problems.join("\n");
        assert!(joined.contains("messages seq 1: no vector"), "{joined}");
        assert!(joined.contains("messages seq 2: no id entry"), "{joined}");
        assert!(joined.contains("messages seq 3"), "{joined}");
        assert_eq!(broken.problems.len(), 3, "{joined}");
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut b = encode_message(&sample()).unwrap();
        b[0] = 99;
        assert_eq!(decode_message(&b).unwrap_err().code(), "corrupt_record");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_message(&bytes);
            let _ = decode_vector(&bytes, 4);
            let _ = decode_meta(&bytes);
            let _ = decode_summary(&bytes);
            let _ = decode_namespace(&bytes);
        }

        #[test]
        fn truncated_records_are_errors(cut in 0usize..60) {
            let b = encode_message(&sample()).unwrap();
            let cut = cut.min(b.len() - 1);
            prop_assert!(decode_message(&b[..cut]).is_err());
        }
    }
}
