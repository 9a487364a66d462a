//! Mutations encoded outside the sled transaction (its closure may run more
//! than once, so everything that allocates rows or reads other trees happens
//! here, before it).

use super::{SledStore, context};
use crate::core::error::{Error, Result};
use crate::storage::codec::{encode_message, encode_summary, encode_vector, parse_id};
use crate::storage::{Commit, ContextPut, Mutation, RowId};

/// A message encoded for the transaction: row, record, vector, id bytes, id text.
pub(super) type EncodedMessage = ([u8; 8], Vec<u8>, Vec<u8>, [u8; 16], String);

/// A namespace update: new parent, new metadata (if given).
pub(super) type EncodedUpdate = (
    Option<String>,
    Option<serde_json::Map<String, serde_json::Value>>,
);

/// A mutation encoded outside the transaction (the closure may run more than once).
pub(super) enum Encoded {
    Create {
        parent: Option<String>,
        metadata: serde_json::Map<String, serde_json::Value>,
        update: Option<EncodedUpdate>,
    },
    Add(Vec<EncodedMessage>),
    Delete(Vec<([u8; 8], [u8; 16], String)>),
    Summary {
        row: [u8; 8],
        record: Vec<u8>,
        vector: Vec<u8>,
        id: [u8; 16],
        ids: Vec<String>,
        upto: RowId,
        evict: Vec<([u8; 8], [u8; 16], String)>,
    },
    DropNamespace {
        messages: Vec<[u8; 8]>,
        summaries: Vec<[u8; 8]>,
        /// Keys of the namespace's context entries and history versions.
        context: Vec<sled::IVec>,
        history: Vec<sled::IVec>,
        expiry: Vec<Vec<u8>>,
    },
    Context(ContextPut),
}

impl SledStore {
    pub(super) fn encode_commit(&self, commit: &Commit) -> Result<Encoded> {
        let gen_row = || -> Result<[u8; 8]> {
            // From 1: a watermark of 0 then always means "nothing summarized".
            Ok((self.db.generate_id().map_err(Error::storage)? + 1).to_be_bytes())
        };
        Ok(match &commit.mutation {
            Mutation::CreateNamespace {
                parent,
                metadata,
                update,
            } => Encoded::Create {
                parent: parent.as_ref().map(|p| p.as_str().to_owned()),
                metadata: metadata.clone(),
                update: update.as_ref().map(|u| {
                    (
                        u.parent.as_ref().map(|p| p.as_str().to_owned()),
                        u.metadata.clone(),
                    )
                }),
            },
            Mutation::AddMessages(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (m, v) in items {
                    out.push((
                        gen_row()?,
                        encode_message(m)?,
                        encode_vector(v),
                        *parse_id(&m.id)?.as_bytes(),
                        m.id.clone(),
                    ));
                }
                Encoded::Add(out)
            }
            Mutation::DeleteMessages(items) => Encoded::Delete(
                items
                    .iter()
                    .map(|(row, id)| (row.to_be_bytes(), *id.as_bytes(), id.to_string()))
                    .collect(),
            ),
            Mutation::AddSummary {
                summary,
                vector,
                upto,
                evict,
            } => {
                let mut ids = vec![summary.id.clone()];
                ids.extend(summary.source_ids.iter().cloned());
                Encoded::Summary {
                    row: gen_row()?,
                    record: encode_summary(summary)?,
                    vector: encode_vector(vector),
                    id: *parse_id(&summary.id)?.as_bytes(),
                    ids,
                    upto: *upto,
                    evict: evict
                        .iter()
                        .map(|(row, id)| (row.to_be_bytes(), *id.as_bytes(), id.to_string()))
                        .collect(),
                }
            }
            Mutation::DeleteNamespace {
                messages,
                summaries,
            } => {
                // Commits of a namespace are serialized by the engine, so the keys
                // read here are all there are when the transaction runs.
                let prefix = context::prefix(commit.namespace.as_str());
                let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>> {
                    tree.scan_prefix(&prefix)
                        .keys()
                        .map(|k| k.map_err(Error::storage))
                        .collect()
                };
                Encoded::DropNamespace {
                    messages: messages.iter().map(|r| r.to_be_bytes()).collect(),
                    summaries: summaries.iter().map(|r| r.to_be_bytes()).collect(),
                    context: keys(&self.context)?,
                    history: keys(&self.context_history)?,
                    expiry: self.expiry_keys(commit.namespace.as_str())?,
                }
            }
            Mutation::PutContext(put) => Encoded::Context(put.clone()),
        })
    }
}
