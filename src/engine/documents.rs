//! Front-end documents: JSON values a protocol front end keeps beside a
//! namespace's memory (the A2A front end's tasks), durable and versioned like
//! context entries and written through the one commit point (`document.put` in
//! the change log, in the audit chain), but never embedded, searched, listed
//! with context entries or returned by context reads. Stored under
//! `~doc:<collection>:<id>`.

use chrono::Utc;
use serde_json::Value;

use super::Engine;
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::context::{ContextEntry, ContextOp};
use crate::core::error::{Error, Result};
use crate::core::types::to_micros;
use crate::storage::{ChangeKind, ContextPut, Mutation};

/// Longest collection name or document id, in bytes.
pub const MAX_DOCUMENT_ID_BYTES: usize = 128;

fn check(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= MAX_DOCUMENT_ID_BYTES
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("use 1-{MAX_DOCUMENT_ID_BYTES} characters from [A-Za-z0-9._-]"),
        ))
    }
}

fn key(collection: &str, id: &str) -> String {
    format!("~doc:{collection}:{id}")
}

impl Engine {
    /// Writes document `id` of `collection` in `namespace` (created if new) as
    /// a new version; durable when this returns.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad collection or id; [`Error::Forbidden`]
    /// without `write`; [`Error::TooLarge`] over the context value limit.
    pub async fn document_put(
        &self,
        access: &Access,
        namespace: &str,
        collection: &str,
        id: &str,
        value: Value,
    ) -> Result<ContextEntry> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        check("collection", collection)?;
        check("id", id)?;
        let put = ContextPut {
            key: key(collection, id),
            op: ContextOp::Set,
            value,
            expected_version: None,
            agent_id: access.agent_id.clone(),
            expires_at: None,
            at: to_micros(Utc::now()),
            max_value_bytes: self.inner.config.limits.max_context_value_bytes,
            keep_versions: Some(4),
            expire_version: None,
            vector: None,
            change: Some((
                ChangeKind::DocumentPut,
                vec![collection.to_owned(), id.to_owned()],
            )),
        };
        let (_, committed) = self
            .inner
            .commit(access, &ns, true, move |_| Ok(Mutation::PutContext(put)))
            .await?;
        committed
            .context
            .ok_or_else(|| Error::Storage("the store returned no document".into()))
    }

    /// Document `id` of `collection` in `namespace`.
    ///
    /// # Errors
    /// [`Error::NotFound`] (what `document`); [`Error::Forbidden`] without `read`.
    pub async fn document_get(
        &self,
        access: &Access,
        namespace: &str,
        collection: &str,
        id: &str,
    ) -> Result<ContextEntry> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        check("collection", collection)?;
        check("id", id)?;
        let entry = self
            .inner
            .store
            .context_get(ns.as_str(), &key(collection, id))
            .await?
            .filter(|e| !e.deleted)
            .ok_or_else(|| Error::NotFound {
                what: "document",
                id: id.to_owned(),
            })?;
        Self::redacted(access, entry)
    }

    /// Documents of `collection` in `namespace` by id, after `after`, at most
    /// `limit` (1..=`max_k`); each entry's `key` is `~doc:<collection>:<id>`.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `read`; [`Error::InvalidInput`].
    pub async fn documents(
        &self,
        access: &Access,
        namespace: &str,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContextEntry>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        check("collection", collection)?;
        self.check_limit(limit)?;
        if let Some(a) = after {
            check("after", a)?;
        }
        let after = after.map(|a| key(collection, a));
        let entries = self
            .inner
            .store
            .context_list(
                ns.as_str(),
                &format!("~doc:{collection}:"),
                after.as_deref(),
                limit,
                Utc::now(),
            )
            .await?;
        Self::redacted(access, entries)
    }
}
