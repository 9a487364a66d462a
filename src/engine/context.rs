//! Shared context entries: versioned, compare-and-set, with history and expiry
//! ([`crate::core::context`]). Every write goes through the commit point as a
//! [`Mutation::PutContext`]; the store checks the precondition inside the
//! transaction, so two agents racing on one key cannot both win.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Engine, Inner, validate};
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::context::{
    ContextEntry, ContextOp, ContextVersion, ContextWrite, context_text, validate_key,
};
use crate::core::error::{Error, Result};
use crate::core::types::to_micros;
use crate::storage::{ContextPut, Mutation};

/// Attempts of a write without a caller's precondition that keeps losing races
/// (each attempt re-reads the key; another write committed in between).
const MAX_ATTEMPTS: u32 = 64;

/// One page of [`Engine::context_list`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ContextPage {
    /// Live entries, by key.
    pub entries: Vec<ContextEntry>,
    /// The key to pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Engine {
    /// Sets `key` in `namespace` to `value` (any JSON), as a new version.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`]; [`Error::InvalidInput`] for a bad key, TTL or
    /// a value nested deeper than `max_context_depth`; [`Error::TooLarge`] over
    /// `max_context_value_bytes`; [`Error::Forbidden`] without `write`;
    /// [`Error::PreconditionFailed`] when `opts.expected_version` does not match
    /// (nothing written; the error carries the current entry); the embedding
    /// queue's errors ([`Error::Overloaded`], [`Error::ModelFailed`]) for the
    /// value's search text; [`Error::Conflict`] when, without a precondition, the
    /// key changed under 64 attempts in a row.
    #[tracing::instrument(name = "engine.context_set", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn context_set(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
        value: Value,
        opts: ContextWrite,
    ) -> Result<ContextEntry> {
        let written = self
            .context_write(access, namespace, key, ContextOp::Set, value, opts)
            .await;
        Self::redact_written(access, written)
    }

    /// Merges `patch` into the value of `key` (JSON Merge Patch, RFC 7396: objects
    /// merge, `null` removes a member, anything else replaces), as a new version.
    /// Patching an absent key patches `null`.
    ///
    /// # Errors
    /// As [`Engine::context_set`] (the size limit applies to the merged value).
    #[tracing::instrument(name = "engine.context_patch", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn context_patch(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
        patch: Value,
        opts: ContextWrite,
    ) -> Result<ContextEntry> {
        let written = self
            .context_write(access, namespace, key, ContextOp::Patch, patch, opts)
            .await;
        Self::redact_written(access, written)
    }

    /// Deletes `key`: a new version that is a tombstone (reads answer not found;
    /// history keeps it). Returns the tombstone.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the key is absent, deleted or expired;
    /// [`Error::Forbidden`] without `delete`; [`Error::PreconditionFailed`].
    #[tracing::instrument(name = "engine.context_delete", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn context_delete(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<ContextEntry> {
        let opts = ContextWrite {
            expected_version,
            ..ContextWrite::default()
        };
        let written = self
            .context_write(access, namespace, key, ContextOp::Delete, Value::Null, opts)
            .await;
        Self::redact_written(access, written)
    }

    async fn context_write(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
        op: ContextOp,
        value: Value,
        opts: ContextWrite,
    ) -> Result<ContextEntry> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(
            &ns,
            if op == ContextOp::Delete {
                Scope::Delete
            } else {
                Scope::Write
            },
        )?;
        validate_key(key)?;
        let limits = &self.inner.config.limits;
        let depth = validate::value_depth(&value);
        if depth > limits.max_context_depth {
            return Err(Error::invalid(
                "value",
                format!(
                    "nests {depth} levels deep; the limit is {}",
                    limits.max_context_depth
                ),
            ));
        }
        let bytes = serde_json::to_vec(&value).map_or(usize::MAX, |b| b.len());
        if bytes > limits.max_context_value_bytes {
            return Err(Error::too_large(
                "value",
                format!(
                    "{bytes} bytes as JSON; the limit is {}",
                    limits.max_context_value_bytes
                ),
            ));
        }
        check_strings(&value)?;
        let agent_id = self.author(access, opts.agent_id)?;
        let at = to_micros(Utc::now());
        let expires_at = match (opts.expires_at, opts.ttl_s) {
            (Some(t), _) => Some(to_micros(t)),
            (None, Some(0)) => return Err(Error::invalid("ttl_s", "must be at least 1")),
            (None, Some(s)) => Some(
                at + chrono::Duration::seconds(
                    i64::try_from(s).map_err(|_| Error::invalid("ttl_s", "too large"))?,
                ),
            ),
            (None, None) => None,
        };
        if expires_at.is_some_and(|t| t <= at) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let mut put = ContextPut {
            key: key.to_owned(),
            op,
            value,
            expected_version: opts.expected_version,
            agent_id,
            expires_at,
            at,
            max_value_bytes: limits.max_context_value_bytes,
            keep_versions: self.inner.config.context_history_versions,
            expire_version: None,
            vector: None,
            change: None,
        };
        // The entry is searchable: a write that changes its text brings the new
        // text's vector. A patch's result depends on the version it merges
        // into, so it is embedded against the version read and committed with
        // that version as its precondition; without a caller's precondition a
        // patch that loses a race is merged and embedded again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let caller_cas = opts.expected_version.is_some();
            if op != ContextOp::Delete {
                let current = self
                    .inner
                    .store
                    .context_get(ns.as_str(), key)
                    .await?
                    .filter(|e| e.is_live(at));
                if op == ContextOp::Patch
                    && let Some(expected) = opts.expected_version
                {
                    let effective = current.as_ref().map_or(0, |c| c.version);
                    if effective != expected {
                        // What the store would answer; checked here so a merge is
                        // never embedded against a version it will not apply to.
                        return Err(Error::PreconditionFailed {
                            message: format!(
                                "context key {key:?} is at version {effective}, not {expected}{}",
                                if effective == 0 {
                                    " (it does not exist)"
                                } else {
                                    ""
                                }
                            ),
                            current_version: current.as_ref().map(|c| c.version),
                            current: current.as_ref().and_then(|c| serde_json::to_value(c).ok()),
                        });
                    }
                }
                let (new_value, pin) = match op {
                    ContextOp::Patch => {
                        let mut v = current.as_ref().map_or(Value::Null, |c| c.value.clone());
                        json_patch::merge(&mut v, &put.value);
                        (v, true)
                    }
                    _ => (put.value.clone(), false),
                };
                let text = context_text(key, &new_value);
                let read_version = current.as_ref().map_or(0, |c| c.version);
                // The stored vector is reused only for a write that lands on the
                // version read (the caller's pin is that version, or ours below).
                let unchanged = current.as_ref().is_some_and(|c| c.search_text() == text)
                    && (!caller_cas || opts.expected_version == Some(read_version));
                put.vector = if unchanged {
                    None
                } else {
                    let e = self.inner.embed.embed(vec![text]).await?;
                    Some(e.data)
                };
                // A write that keeps the stored vector (same text) or merges into
                // what was read must land on exactly the version read: pinned
                // unless the caller pinned it already.
                if (pin || unchanged) && !caller_cas {
                    put.expected_version = Some(read_version);
                }
            }
            let p = put.clone();
            let result = self
                .inner
                .commit(access, &ns, op != ContextOp::Delete, move |_| {
                    Ok(Mutation::PutContext(p))
                })
                .await;
            let committed = match result {
                Ok((_, committed)) => committed,
                Err(Error::PreconditionFailed { .. })
                    if put.expected_version.is_some() && !caller_cas =>
                {
                    // Lost a race against another write of the key: read again.
                    if attempts >= MAX_ATTEMPTS {
                        return Err(Error::Conflict(format!(
                            "context key {key:?} changed under {MAX_ATTEMPTS} attempts in a row; retry"
                        )));
                    }
                    put.expected_version = None;
                    continue;
                }
                // The namespace does not exist, so neither does the key.
                Err(Error::NotFound {
                    what: "namespace", ..
                }) => {
                    return Err(Error::NotFound {
                        what: "context key",
                        id: key.to_owned(),
                    });
                }
                Err(e) => return Err(e),
            };
            return committed
                .context
                .ok_or_else(|| Error::Storage("the store returned no context entry".into()));
        }
    }

    /// The live value of `key` (not deleted, not expired).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Forbidden`] without `read`;
    /// [`Error::InvalidInput`] for a bad key.
    #[tracing::instrument(name = "engine.context_get", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn context_get(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
    ) -> Result<ContextEntry> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        validate_key(key)?;
        self.audit_read(access, &ns, vec![key.to_owned()]).await?;
        let entry = self
            .inner
            .store
            .context_get(ns.as_str(), key)
            .await?
            .filter(|e| e.is_live(Utc::now()))
            .ok_or_else(|| Error::NotFound {
                what: "context key",
                id: key.to_owned(),
            })?;
        Self::redacted(access, entry)
    }

    /// `key` as seen from `namespace` through its ancestors, like Python's
    /// `ChainMap`: the nearest live definition wins (its `namespace` says where
    /// it came from); a child's tombstone hides the parents' entries; an expired
    /// entry is absent and the lookup goes on. The walk stops at the first
    /// ancestor the caller cannot read, so inheritance never reveals what its
    /// access does not cover.
    ///
    /// # Errors
    /// As [`Engine::context_get`].
    #[tracing::instrument(name = "engine.context_lookup", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn context_lookup(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
    ) -> Result<ContextEntry> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        validate_key(key)?;
        self.audit_read(access, &ns, vec![key.to_owned()]).await?;
        let now = Utc::now();
        for level in self.chain(&ns) {
            if access.check(&level, Scope::Read).is_err() {
                break;
            }
            match self.inner.store.context_get(level.as_str(), key).await? {
                Some(e) if e.deleted => break,
                Some(e) if e.is_live(now) => return Self::redacted(access, e),
                _ => {}
            }
        }
        Err(Error::NotFound {
            what: "context key",
            id: key.to_owned(),
        })
    }

    /// Live entries of `namespace` whose key starts with `prefix`, by key, `limit`
    /// (1..=`max_k`) at a time after the key `after`.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`], [`Error::InvalidInput`]
    /// for `limit` or a malformed prefix/cursor.
    #[tracing::instrument(name = "engine.context_list", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn context_list(
        &self,
        access: &Access,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ContextPage> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        self.check_limit(limit)?;
        if !prefix.is_empty()
            && (prefix.contains(|c: char| c.is_control() || c == '/') || prefix.starts_with('~'))
        {
            return Err(Error::invalid("prefix", "not a key prefix"));
        }
        if let Some(a) = after {
            validate_key(a)
                .map_err(|_| Error::invalid("after", "not a key returned by a previous page"))?;
        }
        let mut entries = self
            .inner
            .store
            .context_list(ns.as_str(), prefix, after, limit + 1, Utc::now())
            .await?;
        let next = (entries.len() > limit).then(|| {
            entries.truncate(limit);
            entries.last().map(|e| e.key.clone())
        });
        self.audit_read(access, &ns, Vec::new()).await?;
        Ok(ContextPage {
            entries: Self::redacted(access, entries)?,
            next: next.flatten(),
        })
    }

    /// Versions of `key` after version `after`, oldest first (deletes and expiries
    /// included), `limit` (1..=`max_k`) at a time.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`], [`Error::InvalidInput`].
    #[tracing::instrument(name = "engine.context_history", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn context_history(
        &self,
        access: &Access,
        namespace: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ContextVersion>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        validate_key(key)?;
        self.check_limit(limit)?;
        self.audit_read(access, &ns, vec![key.to_owned()]).await?;
        let versions = self
            .inner
            .store
            .context_history(ns.as_str(), key, after, limit)
            .await?;
        Self::redacted(access, versions)
    }
}

/// Strings inside a context value follow the content rule: verbatim except NUL.
fn check_strings(v: &Value) -> Result<()> {
    validate::json_strings("value", v)
}

impl Inner {
    /// Deletes entries that expired by `now` (a tombstone version with no agent,
    /// compare-and-set on the expired version so a concurrent rewrite survives).
    /// Returns how many were deleted.
    pub(crate) async fn expire_context(
        self: &std::sync::Arc<Self>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let expired = self.store.context_expired(now, 256).await?;
        let mut deleted = 0;
        for entry in expired {
            let Ok(ns) = NamespaceName::parse(&entry.namespace) else {
                continue;
            };
            let put = ContextPut {
                key: entry.key.clone(),
                op: ContextOp::Delete,
                value: Value::Null,
                expected_version: None,
                agent_id: None,
                expires_at: None,
                at: now,
                max_value_bytes: usize::MAX,
                keep_versions: self.config.context_history_versions,
                // A rewrite since the scan makes it live again: then nothing happens.
                expire_version: Some(entry.version),
                vector: None,
                change: None,
            };
            match self
                .commit(&Access::full(), &ns, false, move |_| {
                    Ok(Mutation::PutContext(put))
                })
                .await
            {
                Ok(_) => deleted += 1,
                Err(Error::PreconditionFailed { .. } | Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}
