//! The audit log ([`crate::storage::AuditEntry`]): a hash chain over every
//! change, written by the store in the change's own transaction; read and
//! verified here for every backend alike.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use crate::core::access::Access;
use crate::core::error::Result;
use crate::storage::{AUDIT_GENESIS, AuditEntry, ChangeKind};

/// Which audit entries to return ([`Engine::audit`]); every field narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only changes made as this agent.
    pub agent_id: Option<String>,
    /// Only this action.
    pub action: Option<ChangeKind>,
    /// Only entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub to: Option<DateTime<Utc>>,
    /// Entries with seq above this.
    pub after: u64,
}

/// One page of [`Engine::audit`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Matching entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` to continue (the last seq examined).
    pub next: u64,
}

/// What [`Engine::audit_verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditReport {
    /// Entries examined.
    pub entries: u64,
    /// The first entry that breaks the chain, and how; `None` when it is intact.
    pub first_bad: Option<(u64, String)>,
}

impl Engine {
    /// Audit entries matching `query`, oldest first, at most `limit` (1..=`max_k`).
    ///
    /// # Errors
    /// [`crate::Error::Forbidden`] without `admin` on `*`, or, when `query`
    /// names a namespace, without `admin` on that namespace;
    /// [`crate::Error::InvalidInput`] for `limit`; [`crate::Error::Storage`].
    #[tracing::instrument(name = "engine.audit", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn audit(
        &self,
        access: &Access,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<AuditPage> {
        match &query.namespace {
            Some(ns) => access.check(
                &crate::core::access::NamespaceName::parse(ns)?,
                crate::core::access::Scope::Admin,
            )?,
            None => access.check_admin()?,
        }
        self.check_limit(limit)?;
        let mut entries = Vec::new();
        let mut next = query.after;
        loop {
            let page = self.inner.store.audit(next, 1000).await?;
            if page.is_empty() {
                break;
            }
            let done = page.len() < 1000;
            for e in page {
                next = e.seq;
                let keep = query.namespace.as_ref().is_none_or(|n| *n == e.namespace)
                    && query
                        .agent_id
                        .as_ref()
                        .is_none_or(|a| e.agent_id.as_ref() == Some(a))
                    && query.action.is_none_or(|a| a == e.action)
                    && query.from.is_none_or(|t| e.at >= t)
                    && query.to.is_none_or(|t| e.at < t);
                if keep {
                    entries.push(e);
                    if entries.len() == limit {
                        return Ok(AuditPage { entries, next });
                    }
                }
            }
            if done {
                break;
            }
        }
        Ok(AuditPage { entries, next })
    }

    /// Walks the whole audit chain: seqs gap-free from 1, each `prev_hash` the
    /// previous `hash`, each `hash` recomputed. Reports the first break.
    ///
    /// # Errors
    /// [`crate::Error::Forbidden`] without `admin`; [`crate::Error::Storage`];
    /// [`crate::Error::Corrupt`] when an entry cannot be decoded at all.
    #[tracing::instrument(name = "engine.audit_verify", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn audit_verify(&self, access: &Access) -> Result<AuditReport> {
        access.check_admin()?;
        let mut report = AuditReport::default();
        let (mut seq, mut prev) = (0u64, AUDIT_GENESIS.to_owned());
        loop {
            let page = self.inner.store.audit(seq, 1000).await?;
            if page.is_empty() {
                return Ok(report);
            }
            for e in page {
                report.entries += 1;
                let problem = if e.seq != seq + 1 {
                    Some(format!("seq {} follows {seq}: entries are missing", e.seq))
                } else if e.prev_hash != prev {
                    Some("prev_hash is not the previous entry's hash".to_owned())
                } else if e.hash != e.expected_hash() {
                    Some("hash does not match the entry's contents".to_owned())
                } else {
                    None
                };
                if let Some(p) = problem {
                    report.first_bad = Some((e.seq, p));
                    return Ok(report);
                }
                seq = e.seq;
                prev = e.hash;
            }
        }
    }
}
