//! Events: the change log read back with each change's data, for live
//! subscribers (SSE, long-poll) and consumers that resume after a crash.
//!
//! Events are only ever read from the persisted change log; the engine's
//! change counter ([`Engine::wait_for_commit`]) is just a wake-up. So a
//! subscriber that reads "after seq N, then wait, then after the last seq it
//! saw" gets every event of the namespace exactly once and in commit order,
//! however far behind it falls and across restarts of either side.
//!
//! Consumer cursors (`Engine::consumer_ack`) persist how far a named consumer
//! has acknowledged, in the store's compare-and-set key space
//! (`consumer/<namespace>/<name>`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::Engine;
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::board::proposal_key;
use crate::core::error::{Error, Result};
use crate::storage::codec::parse_id;
use crate::storage::{Change, ChangeKind, Record};

/// One committed change with its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// `<namespace>:<seq>`: unique, and what SSE's `Last-Event-ID` resumes from.
    pub id: String,
    /// The namespace.
    pub namespace: String,
    /// Its change-log sequence number (gap-free per namespace, from 1).
    pub seq: u64,
    /// What happened (`message.added`, `context.set`, …).
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// Who made it (agent id or key id), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The record as of the event: the message or summary added; the context
    /// version written (`{key, version, op, value, agent_id, at, expires_at}`); the
    /// board problem or proposal (as it is now); the namespace's registry entry.
    /// For deletions, `{"id": …}` or `{"key": …, "version": …}`. `null` when the
    /// record is gone since (deleted, or its history pruned).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Which events to return.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only these types (empty: all).
    pub types: Vec<ChangeKind>,
    /// Only context events whose key starts with this (other types are left out
    /// when it is set).
    pub key_prefix: Option<String>,
}

impl EventFilter {
    fn admits(&self, c: &Change) -> bool {
        if !self.types.is_empty() && !self.types.contains(&c.kind) {
            return false;
        }
        match &self.key_prefix {
            None => true,
            Some(p) => {
                matches!(c.kind, ChangeKind::ContextSet | ChangeKind::ContextDeleted)
                    && c.ids.first().is_some_and(|k| k.starts_with(p.as_str()))
            }
        }
    }
}

/// One page of [`Engine::events`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// Events, oldest first (after the filter).
    pub events: Vec<Event>,
    /// The seq to pass as `after` next: the last change read, whether or not
    /// the filter kept it (so filtered pages still advance).
    pub next: u64,
    /// Set when the changes right after `after` are gone (older than the change
    /// log's retention): the oldest seq still available. The page starts there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<u64>,
}

fn consumer_key(ns: &NamespaceName, name: &str) -> String {
    format!("consumer/{ns}/{name}")
}

/// Checks a consumer name: like a namespace name (`[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`).
fn check_consumer(name: &str) -> Result<()> {
    crate::core::access::validate_namespace(name).map_err(|_| {
        Error::invalid(
            "consumer",
            "1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit",
        )
    })
}

impl Engine {
    /// Events of `namespace` with seq above `after`, oldest first: up to `limit`
    /// changes are read (1..=`max_k`) and those the filter admits returned with
    /// their data.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without `read`,
    /// [`Error::InvalidInput`] for `limit`, [`Error::Storage`].
    #[tracing::instrument(name = "engine.events", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn events(
        &self,
        access: &Access,
        namespace: &str,
        after: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventPage> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        self.check_limit(limit)?;
        let changes = self.inner.store.changes(ns.as_str(), after, limit).await?;
        let reset = changes
            .first()
            .filter(|c| c.seq > after.saturating_add(1))
            .map(|c| c.seq);
        let next = changes.last().map_or(after, |c| c.seq);
        let mut events = Vec::with_capacity(changes.len());
        for c in changes {
            if !filter.admits(&c) {
                continue;
            }
            events.push(self.event(&ns, c).await?);
        }
        Ok(EventPage {
            events: Self::redacted(access, events)?,
            next,
            reset,
        })
    }

    /// A number that changes whenever anything commits (any namespace); pass it to
    /// [`Engine::wait_for_commit`].
    pub fn commit_counter(&self) -> u64 {
        *self.inner.commits.borrow()
    }

    /// Waits until something commits after `seen` (a [`Engine::commit_counter`]
    /// value) or `timeout` passes; returns the new counter. A wake-up only: read
    /// the change log to see what changed.
    pub async fn wait_for_commit(&self, seen: u64, timeout: Duration) -> u64 {
        let mut rx = self.inner.commits.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&v| v != seen)).await;
        *rx.borrow()
    }

    /// Records that consumer `name` of `namespace` has processed every event up
    /// to `acked` (it may move back, to replay).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name or an `acked` beyond the
    /// namespace's last seq; [`Error::Forbidden`] without `read`; [`Error::Storage`].
    #[tracing::instrument(name = "engine.consumer_ack", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn consumer_ack(
        &self,
        access: &Access,
        namespace: &str,
        name: &str,
        acked: u64,
    ) -> Result<u64> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        check_consumer(name)?;
        let last = self
            .inner
            .namespace(&ns)
            .and_then(|s| s.record.lock().as_ref().map(|r| r.last_seq))
            .unwrap_or(0);
        if acked > last {
            return Err(Error::invalid(
                "acked",
                format!("the namespace's last event is {last}"),
            ));
        }
        let key = consumer_key(&ns, name);
        loop {
            let current = self.inner.store.get_key(&key).await?;
            let new = acked.to_be_bytes().to_vec();
            if self
                .inner
                .store
                .compare_and_set(&key, current, Some(new))
                .await?
                .is_ok()
            {
                return Ok(acked);
            }
        }
    }

    /// The seq consumer `name` of `namespace` acknowledged last (0: none yet).
    ///
    /// # Errors
    /// As [`Engine::consumer_ack`].
    #[tracing::instrument(name = "engine.consumer_acked", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn consumer_acked(
        &self,
        access: &Access,
        namespace: &str,
        name: &str,
    ) -> Result<u64> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        check_consumer(name)?;
        Ok(
            match self.inner.store.get_key(&consumer_key(&ns, name)).await? {
                Some(b) if b.len() == 8 => u64::from_be_bytes(b.try_into().expect("8 bytes")),
                Some(_) => {
                    return Err(Error::Corrupt {
                        tree: "kv",
                        message: format!("consumer cursor {name:?} is not a u64"),
                    });
                }
                None => 0,
            },
        )
    }

    /// A change with its data, as an [`Event`].
    async fn event(&self, ns: &NamespaceName, c: Change) -> Result<Event> {
        let data = self.event_data(ns, &c).await?;
        Ok(Event {
            id: format!("{}:{}", c.namespace, c.seq),
            namespace: c.namespace,
            seq: c.seq,
            kind: c.kind,
            at: c.at,
            actor: c.actor,
            data,
        })
    }

    async fn event_data(&self, ns: &NamespaceName, c: &Change) -> Result<Value> {
        // Board items and namespace entries are read as they are now; the rest
        // never changes once committed and is cached.
        let immutable = matches!(
            c.kind,
            ChangeKind::MessageAdded
                | ChangeKind::MessageDeleted
                | ChangeKind::SummaryCreated
                | ChangeKind::ContextSet
                | ChangeKind::ContextDeleted
        );
        let key = (c.namespace.clone(), c.seq);
        if immutable && let Some(v) = self.inner.event_data.lock().get(&key) {
            return Ok(v.clone());
        }
        let v = self.build_event_data(ns, c).await?;
        if immutable && !v.is_null() {
            self.inner.event_data.lock().put(key, v.clone());
        }
        Ok(v)
    }

    async fn build_event_data(&self, ns: &NamespaceName, c: &Change) -> Result<Value> {
        let first = c.ids.first().map(String::as_str).unwrap_or_default();
        let record = |id: &str| {
            let id = id.to_owned();
            async move {
                let Ok(uuid) = parse_id(&id) else {
                    return Ok(None);
                };
                let Some(row) = self.inner.store.row_of(&uuid).await? else {
                    return Ok(None);
                };
                Ok::<_, Error>(
                    self.inner
                        .store
                        .records(&[row])
                        .await?
                        .pop()
                        .map(|(_, r)| r),
                )
            }
        };
        Ok(match c.kind {
            ChangeKind::MessageAdded | ChangeKind::SummaryCreated => match record(first).await? {
                Some(Record::Message(m)) => serde_json::to_value(m).unwrap_or(Value::Null),
                Some(Record::Summary(s)) => serde_json::to_value(s).unwrap_or(Value::Null),
                None => Value::Null,
            },
            ChangeKind::MessageDeleted => json!({"id": first}),
            ChangeKind::ContextSet | ChangeKind::ContextDeleted => {
                let version: Option<u64> = c.ids.get(1).and_then(|v| v.parse().ok());
                let found = match version {
                    Some(v) => self
                        .inner
                        .store
                        .context_history(ns.as_str(), first, v.saturating_sub(1), 1)
                        .await?
                        .into_iter()
                        .find(|h| h.version == v),
                    None => None,
                };
                match found {
                    Some(h) if c.kind == ChangeKind::ContextSet => json!({
                        "key": first,
                        "version": h.version,
                        "op": h.op,
                        "value": h.value,
                        "agent_id": h.agent_id,
                        "at": h.at,
                        "expires_at": h.expires_at,
                    }),
                    _ if c.kind == ChangeKind::ContextDeleted => {
                        json!({"key": first, "version": version})
                    }
                    _ => Value::Null,
                }
            }
            ChangeKind::BoardProblemCreated | ChangeKind::BoardResolved => {
                match self
                    .board_problem(&Access::full(), ns.as_str(), first)
                    .await
                {
                    Ok(d) => serde_json::to_value(d.problem).unwrap_or(Value::Null),
                    Err(Error::NotFound { .. }) => Value::Null,
                    Err(e) => return Err(e),
                }
            }
            ChangeKind::BoardProposalCreated | ChangeKind::BoardVoted => {
                let problem = c.ids.get(1).map(String::as_str).unwrap_or_default();
                let key = proposal_key(problem, first);
                match self.inner.store.context_get(ns.as_str(), &key).await? {
                    Some(e) if !e.deleted => {
                        serde_json::to_value(super::board::proposal_of(&e)?).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                }
            }
            ChangeKind::NamespaceCreated | ChangeKind::NamespaceUpdated => {
                match self.inner.namespace(ns) {
                    Some(s) => serde_json::to_value(s.info()).unwrap_or(Value::Null),
                    None => Value::Null,
                }
            }
            ChangeKind::NamespaceDeleted => json!({"name": ns.as_str()}),
            ChangeKind::AgentRegistered
            | ChangeKind::AgentHealthy
            | ChangeKind::AgentUnhealthy
            | ChangeKind::AgentGone
            | ChangeKind::AgentDeregistered
            | ChangeKind::InboxAcked => {
                super::agents::event_data(self, ns.as_str(), c.kind, &c.ids).await?
            }
            ChangeKind::DocumentPut => json!({"collection": first, "id": c.ids.get(1)}),
            // Audit-only kinds never reach a namespace's change log.
            ChangeKind::KeyCreated | ChangeKind::KeyRevoked | ChangeKind::ContextRead => {
                Value::Null
            }
        })
    }
}

/// Where a stream over a namespace and its descendants is: the last seq read
/// per namespace. Written `ns:seq,child:seq` (namespace names hold no `,`), which
/// is what SSE carries as the event id of such a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCursor(pub std::collections::BTreeMap<String, u64>);

impl EventCursor {
    /// Parses `ns:seq,child:seq` (empty: nothing read yet).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `cursor`) for anything else.
    pub fn parse(text: &str) -> Result<EventCursor> {
        let bad = || {
            Error::invalid(
                "cursor",
                "must be `<namespace>:<seq>` pairs separated by commas",
            )
        };
        let mut map = std::collections::BTreeMap::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (ns, seq) = part.rsplit_once(':').ok_or_else(bad)?;
            NamespaceName::parse(ns).map_err(|_| bad())?;
            map.insert(ns.to_owned(), seq.parse().map_err(|_| bad())?);
        }
        Ok(EventCursor(map))
    }
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(n, s)| format!("{n}:{s}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// One page of [`Engine::events_below`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreePage {
    /// Events, in commit time order across namespaces (per namespace, seq order).
    pub events: Vec<Event>,
    /// The cursor to continue from.
    pub cursor: EventCursor,
    /// Namespaces whose changes right after the cursor are gone (retention), with
    /// the oldest seq still available.
    pub resets: Vec<(String, u64)>,
    /// Whether any change was read (filtered or not): false means caught up.
    pub advanced: bool,
}

impl Engine {
    /// Events of `namespace` and every namespace below it in the hierarchy
    /// (those the caller can read; new ones join as they appear; a namespace
    /// deleted since leaves the tree, so events it committed after the cursor
    /// and its `namespace.deleted` are not in this stream), after
    /// `cursor`: up to `limit` changes are read from each namespace, merged by
    /// commit time, and the first `limit` taken, so each namespace's events stay
    /// in seq order and none is skipped.
    ///
    /// # Errors
    /// As [`Engine::events`].
    #[tracing::instrument(name = "engine.events_below", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn events_below(
        &self,
        access: &Access,
        namespace: &str,
        cursor: &EventCursor,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<TreePage> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        self.check_limit(limit)?;
        let mut tree = vec![ns.clone()];
        let mut members: std::collections::HashSet<NamespaceName> = tree.iter().cloned().collect();
        let mut i = 0;
        while i < tree.len() {
            let below: Vec<NamespaceName> = self
                .children(&tree[i])
                .into_iter()
                .filter(|c| access.check(c, Scope::Read).is_ok() && members.insert(c.clone()))
                .collect();
            tree.extend(below);
            i += 1;
        }
        // Each namespace's changes in seq order, keyed by a commit time made
        // monotone within the namespace (a clock stepping back cannot reorder a
        // namespace's own events), then merged.
        let mut all: Vec<(DateTime<Utc>, Change)> = Vec::new();
        let mut gaps = Vec::new();
        for n in &tree {
            let after = cursor.0.get(n.as_str()).copied().unwrap_or(0);
            let changes = self.inner.store.changes(n.as_str(), after, limit).await?;
            if let Some(first) = changes.first()
                && first.seq > after.saturating_add(1)
            {
                gaps.push((n.to_string(), first.seq));
            }
            let mut at = DateTime::<Utc>::MIN_UTC;
            for c in changes {
                at = at.max(c.at);
                all.push((at, c));
            }
        }
        all.sort_by(|(a, x), (b, y)| {
            a.cmp(b)
                .then_with(|| x.namespace.cmp(&y.namespace))
                .then(x.seq.cmp(&y.seq))
        });
        all.truncate(limit);
        // A reset only for namespaces whose first change is in this page (else it
        // would be reported again on the next one).
        let resets: Vec<(String, u64)> = gaps
            .into_iter()
            .filter(|(n, first)| {
                all.iter()
                    .any(|(_, c)| c.namespace == *n && c.seq == *first)
            })
            .collect();
        let all: Vec<Change> = all.into_iter().map(|(_, c)| c).collect();
        let mut next = cursor.clone();
        let advanced = !all.is_empty();
        let mut events = Vec::new();
        for c in all {
            next.0.insert(c.namespace.clone(), c.seq);
            if !filter.admits(&c) {
                continue;
            }
            let level = NamespaceName::parse(&c.namespace)?;
            events.push(self.event(&level, c).await?);
        }
        Ok(TreePage {
            events: Self::redacted(access, events)?,
            cursor: next,
            resets,
            advanced,
        })
    }
}
