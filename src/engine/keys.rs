//! API keys: create, list, revoke, and authenticate a request's token into an
//! [`Access`]; read-time redaction and audited reads.
//!
//! Keys live in the store (only the SHA-256 of each token) and in memory, by
//! id; every key write goes to the store first, with its audit entry in the same
//! transaction. Token format and comparison: [`crate::core::keys`].

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Engine, validate};
use crate::core::access::{Access, NamespaceName, NamespacePattern, ParentOf};
use crate::core::error::{Error, Result};
use crate::core::keys::{
    ApiKey, CreatedKey, NewKey, StoredKey, digests_equal, generate_token, token_id, token_sha256,
};
use crate::storage::{AuditDraft, ChangeKind};

/// Why a request's token was refused. `as_str` is the `reason` label of
/// `memoryd_auth_failures_total`; every variant becomes
/// [`Error::Unauthorized`] (401 `unauthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token, where one is required.
    Missing,
    /// Not a memoryd token, no such key, or the secret does not match (one
    /// answer for all three: a caller learns nothing about which ids exist).
    Invalid,
    /// The key was revoked.
    Revoked,
    /// The key expired.
    Expired,
}

impl AuthFailure {
    /// `missing`, `invalid`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
        }
    }
}

impl From<AuthFailure> for Error {
    fn from(f: AuthFailure) -> Error {
        Error::Unauthorized(
            match f {
                AuthFailure::Missing => {
                    "this server requires an API key: send `Authorization: Bearer <token>`"
                }
                AuthFailure::Invalid => "the API key is not valid",
                AuthFailure::Revoked => "the API key was revoked",
                AuthFailure::Expired => "the API key has expired",
            }
            .to_owned(),
        )
    }
}

impl Engine {
    /// Whether any API key exists (live, expired or revoked). Once one does, a
    /// server requires a token on every request, even on loopback: revoking
    /// every key never reopens anonymous access.
    pub fn auth_required(&self) -> bool {
        !self.inner.keys.read().is_empty()
    }

    /// The caller a token stands for: the key's namespaces and scopes, its id
    /// (the audit log's `key_id`), its agent (stamped on its writes), its
    /// redaction, and the hierarchy for `name/**` patterns.
    ///
    /// # Errors
    /// [`AuthFailure`]: `Invalid` for anything that is not a live key's token
    /// (wrong shape, unknown id, wrong secret: the SHA-256 digests are compared
    /// in constant time), `Revoked`, `Expired`.
    pub fn authenticate(&self, token: &str) -> std::result::Result<Access, AuthFailure> {
        let id = token_id(token).ok_or(AuthFailure::Invalid)?;
        let keys = self.inner.keys.read();
        let stored = keys.get(id).ok_or(AuthFailure::Invalid)?;
        if !digests_equal(&token_sha256(token), &stored.token_sha256) {
            return Err(AuthFailure::Invalid);
        }
        let key = &stored.key;
        if key.revoked_at.is_some() {
            return Err(AuthFailure::Revoked);
        }
        if key.expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(AuthFailure::Expired);
        }
        Ok(self.key_access(key))
    }

    /// Whether `access` still stands: true unless it came from a key that has
    /// since been revoked or has expired. Long-lived work (event streams)
    /// checks it as it goes.
    pub fn still_authorized(&self, access: &Access) -> bool {
        let Some(id) = &access.key_id else {
            return true;
        };
        self.inner
            .keys
            .read()
            .get(id)
            .is_some_and(|k| k.key.is_live(Utc::now()))
    }

    fn key_access(&self, key: &ApiKey) -> Access {
        // Patterns were validated when the key was made; one that no longer parses
        // (a stricter future rule) is dropped: it errs closed.
        let patterns = key
            .namespaces
            .iter()
            .filter_map(|p| NamespacePattern::parse(p).ok())
            .collect();
        let mut access = self.bind(Access::new(patterns, &key.scopes));
        access.key_id = Some(key.id.clone());
        access.agent_id = key.agent_id.clone();
        access.redaction = key.redact.is_active().then(|| Arc::new(key.redact.clone()));
        access
    }

    /// `access` with this engine's namespace hierarchy attached, so its
    /// `name/**` patterns cover the namespace's descendants (see
    /// [`NamespacePattern`]). [`Engine::authenticate`] does this itself.
    pub fn bind(&self, access: Access) -> Access {
        let inner = Arc::downgrade(&self.inner);
        let parents: ParentOf = Arc::new(move |name: &str| {
            let inner = inner.upgrade()?;
            let ns = NamespaceName::parse(name).ok()?;
            let state = inner.namespace(&ns)?;
            state.record.lock().as_ref()?.parent.clone()
        });
        access.with_parents(parents)
    }

    /// Creates an API key and returns it with its token (the only time the
    /// token exists outside the caller: the store keeps its SHA-256). Audited
    /// as `key.created`.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `admin` on `*`; [`Error::InvalidInput`] for
    /// an empty or over-long name, no or bad namespace patterns, no scopes, a bad
    /// `agent_id` or redacted field name, an expiry not in the future;
    /// [`Error::Storage`].
    #[tracing::instrument(name = "engine.create_key", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn create_key(&self, access: &Access, new: NewKey) -> Result<CreatedKey> {
        access.check_admin()?;
        let max = self.inner.config.limits.max_label_bytes;
        let label = |field: &str, text: &str| -> Result<()> {
            if text.trim().is_empty() || text.len() > max {
                return Err(Error::invalid(field, format!("must be 1 to {max} bytes")));
            }
            validate::label(field, text)
        };
        label("name", &new.name)?;
        if new.namespaces.is_empty() {
            return Err(Error::invalid(
                "namespaces",
                "give at least one pattern (`team-a`, `tenant-7-*`, `team-a/**`, `*`)",
            ));
        }
        let namespaces = new
            .namespaces
            .iter()
            .map(|p| NamespacePattern::parse(p.trim()).map(|p| p.to_string()))
            .collect::<Result<Vec<_>>>()?;
        if new.scopes.is_empty() {
            return Err(Error::invalid(
                "scopes",
                "give at least one of read, write, delete, admin",
            ));
        }
        let mut scopes = new.scopes.clone();
        scopes.sort_by_key(|s| s.as_str());
        scopes.dedup();
        if let Some(a) = &new.agent_id {
            label("agent_id", a)?;
        }
        for f in &new.redact.fields {
            label("redact.fields", f)?;
        }
        let now = Utc::now();
        if new.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let (id, token, token_sha256) = generate_token()?;
        let key = ApiKey {
            id,
            name: new.name,
            namespaces,
            scopes,
            agent_id: new.agent_id,
            redact: new.redact,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
        };
        let stored = StoredKey {
            key: key.clone(),
            token_sha256,
        };
        self.write_key(access, stored, ChangeKind::KeyCreated)
            .await?;
        metrics::counter!("memoryd_audit_entries_total").increment(1);
        Ok(CreatedKey { key, token })
    }

    /// Every API key (never tokens), by id.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `admin` on `*`.
    pub fn keys(&self, access: &Access) -> Result<Vec<ApiKey>> {
        access.check_admin()?;
        let mut keys: Vec<ApiKey> = self
            .inner
            .keys
            .read()
            .values()
            .map(|k| k.key.clone())
            .collect();
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Revokes a key: from now on its token is refused (401). Revoking a revoked
    /// key changes nothing and returns it as it is. Audited as `key.revoked`.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `admin` on `*`; [`Error::NotFound`];
    /// [`Error::Storage`].
    #[tracing::instrument(name = "engine.revoke_key", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn revoke_key(&self, access: &Access, id: &str) -> Result<ApiKey> {
        access.check_admin()?;
        let mut stored =
            self.inner
                .keys
                .read()
                .get(id)
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    what: "key",
                    id: id.chars().take(64).collect(),
                })?;
        if stored.key.revoked_at.is_some() {
            return Ok(stored.key);
        }
        stored.key.revoked_at = Some(Utc::now());
        let key = stored.key.clone();
        self.write_key(access, stored, ChangeKind::KeyRevoked)
            .await?;
        metrics::counter!("memoryd_audit_entries_total").increment(1);
        Ok(key)
    }

    async fn write_key(
        &self,
        access: &Access,
        stored: StoredKey,
        action: ChangeKind,
    ) -> Result<()> {
        let draft = AuditDraft {
            key_id: access.key_id.clone().unwrap_or_else(|| "local".to_owned()),
            agent_id: access.agent_id.clone(),
            action,
            namespace: String::new(),
            target: vec![stored.key.id.clone(), stored.key.name.clone()],
        };
        self.inner.store.put_api_key(&stored, draft).await?;
        self.inner
            .keys
            .write()
            .insert(stored.key.id.clone(), stored);
        Ok(())
    }

    /// `value` as `access` may see it: unchanged; with its redaction applied
    /// ([`crate::core::redact::Redaction::apply`] over its JSON form); or, for a
    /// caller without the `read` scope (a write's answer),
    /// [`crate::core::redact::withhold`]: ids and versions, no text.
    pub(crate) fn redacted<T: Serialize + DeserializeOwned>(
        access: &Access,
        value: T,
    ) -> Result<T> {
        let withhold = !access.has(crate::core::access::Scope::Read);
        if access.redaction.is_none() && !withhold {
            return Ok(value);
        }
        let mut json =
            serde_json::to_value(&value).map_err(|e| Error::Storage(format!("redaction: {e}")))?;
        Self::redact_json(access, &mut json);
        serde_json::from_value(json).map_err(|e| Error::Storage(format!("redaction: {e}")))
    }

    /// [`Engine::redacted`] on JSON (e.g. a failed precondition's `current`).
    pub(crate) fn redact_json(access: &Access, json: &mut serde_json::Value) {
        if !access.has(crate::core::access::Scope::Read) {
            crate::core::redact::withhold(json);
        } else if let Some(r) = &access.redaction {
            r.apply(json);
        }
    }

    /// A write's answer as the caller may see it ([`Engine::redacted`]), and a
    /// failed precondition's `current` record likewise.
    pub(crate) fn redact_written<T: Serialize + DeserializeOwned>(
        access: &Access,
        written: Result<T>,
    ) -> Result<T> {
        match written {
            Ok(v) => Self::redacted(access, v),
            Err(Error::PreconditionFailed {
                message,
                current_version,
                mut current,
            }) => {
                if let Some(c) = &mut current {
                    Self::redact_json(access, c);
                }
                Err(Error::PreconditionFailed {
                    message,
                    current_version,
                    current,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// With `audit_reads` on, records a context read in the audit log
    /// (`context.read`, target `[key]` or `[]` for a listing). A read whose
    /// audit entry cannot be written fails.
    pub(crate) async fn audit_read(
        &self,
        access: &Access,
        ns: &NamespaceName,
        target: Vec<String>,
    ) -> Result<()> {
        if !self.inner.config.audit_reads {
            return Ok(());
        }
        self.inner
            .store
            .audit_append(vec![AuditDraft {
                key_id: access.key_id.clone().unwrap_or_else(|| "local".to_owned()),
                agent_id: access.agent_id.clone(),
                action: ChangeKind::ContextRead,
                namespace: ns.to_string(),
                target,
            }])
            .await?;
        metrics::counter!("memoryd_audit_entries_total").increment(1);
        Ok(())
    }
}
