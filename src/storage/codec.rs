//! Record encodings shared by the storage backends that store bytes.
//!
//! Every value starts with a format-version byte ([`FORMAT_VERSION`]; namespace
//! records and change-log entries have their own, [`NAMESPACE_FORMAT_VERSION`]);
//! bodies are postcard unless noted. Decoders never panic on arbitrary bytes
//! (fuzzed by `fuzz/fuzz_targets/store_record.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::error::{Error, Result};
use crate::core::types::{Message, Role, Summary};
use crate::storage::{Change, ChangeKind, NamespaceRecord};

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

pub(crate) fn corrupt(tree: &'static str, message: impl Into<String>) -> Error {
    Error::Corrupt {
        tree,
        message: message.into(),
    }
}

pub(crate) fn versioned<'a>(tree: &'static str, bytes: &'a [u8]) -> Result<&'a [u8]> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => Ok(body),
        Some((v, _)) => Err(corrupt(tree, format!("unknown format version {v}"))),
        None => Err(corrupt(tree, "empty value")),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serializing our own plain structs into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).expect("postcard encodes plain structs"));
    out
}

pub(crate) fn micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

pub(crate) fn from_micros(tree: &'static str, us: i64) -> Result<DateTime<Utc>> {
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

/// Version byte of namespace records: 1 was `{created, summarized_upto}`; 2 adds
/// the registry fields and the change-log sequence. Both decode.
pub const NAMESPACE_FORMAT_VERSION: u8 = 2;

#[derive(Serialize, Deserialize)]
struct NamespaceRecordV1 {
    created_micros: i64,
    summarized_upto: u64,
}

#[derive(Serialize, Deserialize)]
struct NamespaceRecordV2 {
    created_micros: i64,
    summarized_upto: u64,
    last_seq: u64,
    parent: Option<String>,
    metadata_json: String,
    /// A deleted namespace keeps its record (hidden) so that its change-log
    /// sequence continues if the name is used again.
    deleted: bool,
}

/// A namespace record as stored: the registry entry and whether it is deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNamespace {
    /// The registry entry.
    pub record: NamespaceRecord,
    /// Deleted (hidden; kept for its sequence).
    pub deleted: bool,
}

/// Encodes a namespace record (format 2).
pub fn encode_namespace(ns: &StoredNamespace) -> Vec<u8> {
    let r = &ns.record;
    let body = NamespaceRecordV2 {
        created_micros: micros(r.created_at),
        summarized_upto: r.summarized_upto,
        last_seq: r.last_seq,
        parent: r.parent.clone(),
        metadata_json: serde_json::Value::Object(r.metadata.clone()).to_string(),
        deleted: ns.deleted,
    };
    let mut out = vec![NAMESPACE_FORMAT_VERSION];
    out.extend(postcard::to_allocvec(&body).expect("postcard encodes plain structs"));
    out
}

/// Decodes a namespace record of format 1 or 2, named `name`.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid record.
pub fn decode_namespace(name: &str, bytes: &[u8]) -> Result<StoredNamespace> {
    const T: &str = "namespaces";
    let err = |e: postcard::Error| corrupt(T, e.to_string());
    match bytes.split_first() {
        Some((1, body)) => {
            let v1: NamespaceRecordV1 = postcard::from_bytes(body).map_err(err)?;
            Ok(StoredNamespace {
                record: NamespaceRecord {
                    name: name.to_owned(),
                    created_at: from_micros(T, v1.created_micros)?,
                    parent: None,
                    metadata: serde_json::Map::new(),
                    last_seq: 0,
                    summarized_upto: v1.summarized_upto,
                },
                deleted: false,
            })
        }
        Some((&NAMESPACE_FORMAT_VERSION, body)) => {
            let v2: NamespaceRecordV2 = postcard::from_bytes(body).map_err(err)?;
            let metadata = match serde_json::from_str(&v2.metadata_json) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => return Err(corrupt(T, "metadata is not a JSON object")),
            };
            Ok(StoredNamespace {
                record: NamespaceRecord {
                    name: name.to_owned(),
                    created_at: from_micros(T, v2.created_micros)?,
                    parent: v2.parent,
                    metadata,
                    last_seq: v2.last_seq,
                    summarized_upto: v2.summarized_upto,
                },
                deleted: v2.deleted,
            })
        }
        Some((v, _)) => Err(corrupt(T, format!("unknown format version {v}"))),
        None => Err(corrupt(T, "empty value")),
    }
}

#[derive(Serialize, Deserialize)]
struct ChangeRecord {
    kind: u8,
    ids: Vec<String>,
    at_micros: i64,
    actor: Option<String>,
}

fn kind_to_u8(k: ChangeKind) -> u8 {
    match k {
        ChangeKind::NamespaceCreated => 1,
        ChangeKind::NamespaceDeleted => 2,
        ChangeKind::MessageAdded => 3,
        ChangeKind::MessageDeleted => 4,
        ChangeKind::SummaryCreated => 5,
        ChangeKind::ContextSet => 6,
        ChangeKind::ContextDeleted => 7,
        ChangeKind::NamespaceUpdated => 8,
        ChangeKind::BoardProblemCreated => 9,
        ChangeKind::BoardProposalCreated => 10,
        ChangeKind::BoardVoted => 11,
        ChangeKind::BoardResolved => 12,
        ChangeKind::KeyCreated => 13,
        ChangeKind::KeyRevoked => 14,
        ChangeKind::ContextRead => 15,
        ChangeKind::AgentRegistered => 16,
        ChangeKind::AgentHealthy => 17,
        ChangeKind::AgentUnhealthy => 18,
        ChangeKind::AgentGone => 19,
        ChangeKind::AgentDeregistered => 20,
        ChangeKind::InboxAcked => 21,
        ChangeKind::DocumentPut => 22,
    }
}

fn kind_from_u8(b: u8) -> Option<ChangeKind> {
    Some(match b {
        1 => ChangeKind::NamespaceCreated,
        2 => ChangeKind::NamespaceDeleted,
        3 => ChangeKind::MessageAdded,
        4 => ChangeKind::MessageDeleted,
        5 => ChangeKind::SummaryCreated,
        6 => ChangeKind::ContextSet,
        7 => ChangeKind::ContextDeleted,
        8 => ChangeKind::NamespaceUpdated,
        9 => ChangeKind::BoardProblemCreated,
        10 => ChangeKind::BoardProposalCreated,
        11 => ChangeKind::BoardVoted,
        12 => ChangeKind::BoardResolved,
        13 => ChangeKind::KeyCreated,
        14 => ChangeKind::KeyRevoked,
        15 => ChangeKind::ContextRead,
        16 => ChangeKind::AgentRegistered,
        17 => ChangeKind::AgentHealthy,
        18 => ChangeKind::AgentUnhealthy,
        19 => ChangeKind::AgentGone,
        20 => ChangeKind::AgentDeregistered,
        21 => ChangeKind::InboxAcked,
        22 => ChangeKind::DocumentPut,
        _ => return None,
    })
}

/// Encodes a change-log entry (its namespace and seq are the key).
pub fn encode_change(c: &Change) -> Vec<u8> {
    encode(&ChangeRecord {
        kind: kind_to_u8(c.kind),
        ids: c.ids.clone(),
        at_micros: micros(c.at),
        actor: c.actor.clone(),
    })
}

/// Decodes a change-log entry of `namespace` at `seq`.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid entry.
pub fn decode_change(namespace: &str, seq: u64, bytes: &[u8]) -> Result<Change> {
    const T: &str = "changes";
    let r: ChangeRecord =
        postcard::from_bytes(versioned(T, bytes)?).map_err(|e| corrupt(T, e.to_string()))?;
    Ok(Change {
        seq,
        namespace: namespace.to_owned(),
        kind: kind_from_u8(r.kind).ok_or_else(|| corrupt(T, "unknown change kind"))?,
        ids: r.ids,
        at: from_micros(T, r.at_micros)?,
        actor: r.actor,
    })
}

/// Encodes a value as its version byte and JSON (context entries and versions
/// hold arbitrary JSON, which postcard cannot carry).
pub fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend(serde_json::to_vec(value).expect("plain structs and JSON values serialize"));
    out
}

/// Decodes what [`encode_json`] wrote.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes are not a valid record.
pub fn decode_json<T: serde::de::DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(versioned(tree, bytes)?).map_err(|e| corrupt(tree, e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Message {
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
    fn unknown_version_is_corrupt() {
        let mut b = encode_message(&sample()).unwrap();
        b[0] = 99;
        assert_eq!(decode_message(&b).unwrap_err().code(), "corrupt_record");
    }

    /// Data directories written before the registry (format 1: `{created,
    /// summarized_upto}`) still open: the bytes below are what that version wrote.
    #[test]
    fn namespace_records_of_format_1_still_decode() {
        let v1 = encode(&NamespaceRecordV1 {
            created_micros: 1_700_000_000_000_000,
            summarized_upto: 42,
        });
        assert_eq!(v1[0], 1);
        let ns = decode_namespace("conv", &v1).unwrap();
        assert_eq!(ns.record.summarized_upto, 42);
        assert_eq!(ns.record.last_seq, 0);
        assert_eq!(ns.record.name, "conv");
        assert!(!ns.deleted);
        let again = decode_namespace("conv", &encode_namespace(&ns)).unwrap();
        assert_eq!(again, ns);
    }

    #[test]
    fn change_roundtrip() {
        let c = Change {
            seq: 7,
            namespace: "n".into(),
            kind: ChangeKind::SummaryCreated,
            ids: vec!["a".into(), "b".into()],
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: Some("agent-1".into()),
        };
        assert_eq!(decode_change("n", 7, &encode_change(&c)).unwrap(), c);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_message(&bytes);
            let _ = decode_vector(&bytes, 4);
            let _ = decode_meta(&bytes);
            let _ = decode_summary(&bytes);
            let _ = decode_namespace("n", &bytes);
            let _ = decode_change("n", 1, &bytes);
        }

        #[test]
        fn truncated_records_are_errors(cut in 0usize..60) {
            let b = encode_message(&sample()).unwrap();
            let cut = cut.min(b.len() - 1);
            prop_assert!(decode_message(&b[..cut]).is_err());
        }
    }
}
