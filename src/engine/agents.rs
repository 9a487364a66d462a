//! The agent registry, discovery, direct messages (mailboxes) and topics
//! ([`crate::core::agents`]).
//!
//! A registration is a versioned document in [`REGISTRY_NAMESPACE`], written
//! through the one commit point with an `agent.*` change kind and embedded by its
//! card's text, so discovery is an ordinary hybrid search of that namespace
//! restricted to `kind: agent`.
//!
//! **Heartbeats are not writes.** A heartbeat updates this process's
//! `agent_seen` map; only a change of health is written (`agent.healthy`,
//! `agent.unhealthy`, `agent.gone`, by the heartbeat or by [`AgentHealthJob`]),
//! so a thousand agents beating every 30 s cost no fsyncs and no history. After
//! a restart every registered agent gets one timeout to beat again before it is
//! judged unhealthy.
//!
//! A direct message is a stored message in the recipient's inbox namespace with
//! its envelope in the `mail` metadata member: durable once acknowledged to the
//! sender, searchable, and streamed as `message.added` to inbox subscribers. A
//! consumer's acknowledgements (`upto` plus ids above it) are a document in the
//! inbox, replaced by compare-and-set, so a crash between delivery and ack
//! delivers the message again and an acked message is never delivered again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Engine, Inner, validate};
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::agents::{
    AGENT_KEY_PREFIX, AckState, AgentDoc, AgentFilter, AgentMatch, AgentPage, AgentRecord,
    AgentStatus, CONSUMER_KEY_PREFIX, Envelope, InboxAck, InboxPage, MAIL_METADATA, MAX_PRIORITY,
    Mail, NewMail, REGISTRY_NAMESPACE, agent_key, card_text, envelope_of, inbox_namespace,
    topic_namespace, validate_agent_id, validate_card, validate_topic,
};
use crate::core::context::{ContextEntry, ContextOp};
use crate::core::error::{Error, Result};
use crate::core::types::{HitKind, Message, NewMessage, Role, SearchRequest, to_micros};
use crate::policy::Job;
use crate::storage::codec::parse_id;
use crate::storage::{ChangeKind, ContextPut, Mutation, Record, RowId};

/// Longest `ttl_s` of a direct message: one year.
pub const MAX_MAIL_TTL_S: u64 = 365 * 24 * 3600;

/// Compare-and-set attempts of an acknowledgement before 409.
const ACK_ATTEMPTS: usize = 64;

fn corrupt(key: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        tree: "context",
        message: format!("agent document {key}: {e}"),
    }
}

/// The registered agent stored in `entry` (status as last recorded).
pub(crate) fn record_of(entry: &ContextEntry) -> Result<AgentRecord> {
    let id = entry
        .key
        .strip_prefix(AGENT_KEY_PREFIX)
        .ok_or_else(|| corrupt(&entry.key, "not an agent key"))?;
    let doc: AgentDoc =
        serde_json::from_value(entry.value.clone()).map_err(|e| corrupt(&entry.key, e))?;
    Ok(AgentRecord {
        id: id.to_owned(),
        card: doc.card,
        status: doc.status,
        registered_at: doc.registered_at,
        last_seen: doc.last_seen,
        version: entry.version,
    })
}

fn registry() -> NamespaceName {
    NamespaceName::parse(REGISTRY_NAMESPACE).expect("the registry's name is valid")
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        what: "agent",
        id: id.chars().take(100).collect(),
    }
}

/// A key bound to an agent reads and acknowledges only its own inbox (unless
/// it is an admin key).
fn own_inbox(access: &Access, id: &str) -> Result<()> {
    match access.agent_id.as_deref() {
        Some(me) if me != id && !access.has(Scope::Admin) => Err(Error::Forbidden(format!(
            "this caller acts as agent {me:?} and cannot read the inbox of {id:?}"
        ))),
        _ => Ok(()),
    }
}

fn check_consumer(consumer: &str) -> Result<()> {
    validate_agent_id(consumer).map_err(|_| {
        Error::invalid(
            "consumer",
            "use 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit",
        )
    })
}

impl Inner {
    /// The health at `now` of an agent recorded as last heard at `recorded`
    /// with `recorded_status` (this process's heartbeat counts if newer). An
    /// agent recorded healthy is never judged from before the engine opened
    /// (one timeout of grace after a restart); one already unhealthy or gone
    /// stays so until it beats again.
    fn health(
        &self,
        id: &str,
        recorded: DateTime<Utc>,
        recorded_status: AgentStatus,
        now: DateTime<Utc>,
    ) -> (DateTime<Utc>, AgentStatus) {
        let beat = self.agent_seen.lock().get(id).copied();
        let heard = beat.map_or(recorded, |t| t.max(recorded));
        // A heartbeat (this process's since it opened, or one another node
        // shared through the store) is judged as is; with none, a restart gives
        // a healthy agent one timeout to beat again.
        let judged_from = if beat.is_some() || recorded_status != AgentStatus::Healthy {
            heard
        } else {
            heard.max(self.opened_at)
        };
        let silent = (now - judged_from).to_std().unwrap_or_default();
        let status = if silent >= self.config.agent_gone_after {
            AgentStatus::Gone
        } else if silent >= self.config.agent_timeout {
            AgentStatus::Unhealthy
        } else {
            AgentStatus::Healthy
        };
        (heard, status)
    }

    /// The agent with its health now.
    fn live_record(&self, mut rec: AgentRecord, now: DateTime<Utc>) -> AgentRecord {
        let (heard, status) = self.health(&rec.id, rec.last_seen, rec.status, now);
        rec.last_seen = heard;
        rec.status = status;
        rec
    }

    async fn agent_entry(&self, id: &str) -> Result<Option<ContextEntry>> {
        Ok(self
            .store
            .context_get(REGISTRY_NAMESPACE, &agent_key(id))
            .await?
            .filter(|e| !e.deleted))
    }

    /// Writes a registration document (`None`: its tombstone) with `kind`.
    async fn put_agent(
        self: &std::sync::Arc<Self>,
        access: &Access,
        id: &str,
        doc: Option<&AgentDoc>,
        expected_version: Option<u64>,
        kind: ChangeKind,
        embed: bool,
    ) -> Result<ContextEntry> {
        let op = if doc.is_some() {
            ContextOp::Set
        } else {
            ContextOp::Delete
        };
        let value = match doc {
            Some(d) => serde_json::to_value(d).map_err(|e| Error::Storage(e.to_string()))?,
            None => Value::Null,
        };
        let vector = match (embed, doc) {
            (true, Some(d)) => Some(self.embed.embed(vec![card_text(&d.card)]).await?.data),
            _ => None,
        };
        let put = ContextPut {
            key: agent_key(id),
            op,
            value,
            expected_version,
            agent_id: access.agent_id.clone(),
            expires_at: None,
            at: to_micros(Utc::now()),
            max_value_bytes: self
                .config
                .limits
                .max_context_value_bytes
                .max(crate::core::agents::MAX_CARD_BYTES + 1024),
            // Status changes would otherwise pile up versions forever.
            keep_versions: Some(8),
            expire_version: None,
            vector,
            change: Some((kind, vec![id.to_owned()])),
        };
        let creates = op == ContextOp::Set;
        let (_, committed) = self
            .commit(access, &registry(), creates, move |_| {
                Ok(Mutation::PutContext(put))
            })
            .await?;
        committed
            .context
            .ok_or_else(|| Error::Storage("the store returned no agent document".into()))
    }

    /// Records a change of health, unless the document moved on meanwhile.
    async fn record_health(
        self: &std::sync::Arc<Self>,
        entry: &ContextEntry,
        heard: DateTime<Utc>,
        status: AgentStatus,
    ) -> Result<Option<ContextEntry>> {
        let rec = record_of(entry)?;
        let doc = AgentDoc {
            card: rec.card,
            registered_at: rec.registered_at,
            last_seen: heard,
            status,
        };
        let kind = match status {
            AgentStatus::Healthy => ChangeKind::AgentHealthy,
            AgentStatus::Unhealthy => ChangeKind::AgentUnhealthy,
            AgentStatus::Gone => ChangeKind::AgentGone,
        };
        match self
            .put_agent(
                &Access::full(),
                &rec.id,
                Some(&doc),
                Some(entry.version),
                kind,
                false,
            )
            .await
        {
            Ok(e) => Ok(Some(e)),
            // Re-registered or deregistered meanwhile: that write decided.
            Err(Error::PreconditionFailed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes every change of health since the last sweep.
    async fn sweep_agents(self: &std::sync::Arc<Self>, now: DateTime<Utc>) -> Result<usize> {
        if self.namespace(&registry()).is_none() {
            return Ok(0);
        }
        let mut changed = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .context_list(
                    REGISTRY_NAMESPACE,
                    AGENT_KEY_PREFIX,
                    after.as_deref(),
                    256,
                    now,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for entry in &page {
                let rec = record_of(entry)?;
                let (heard, status) = self.health(&rec.id, rec.last_seen, rec.status, now);
                if status != rec.status && self.record_health(entry, heard, status).await?.is_some()
                {
                    changed += 1;
                }
            }
            if page.len() < 256 {
                break;
            }
        }
        Ok(changed)
    }

    /// Deletes direct messages whose time to live has passed.
    async fn expire_mail(self: &std::sync::Arc<Self>, now: DateTime<Utc>) -> Result<usize> {
        let inboxes: Vec<_> = self
            .namespaces
            .read()
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("inbox:") || n.as_str().starts_with("topic:"))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let mut deleted = 0;
        for (ns, state) in inboxes {
            let rows = state.rows(HitKind::Message);
            let mut expired = Vec::new();
            for chunk in rows.chunks(512) {
                for (row, rec) in self.store.records(chunk).await? {
                    if let Record::Message(m) = rec
                        && envelope_of(&m.metadata)
                            .and_then(|e| e.expires_at)
                            .is_some_and(|t| t <= now)
                    {
                        expired.push((row, parse_id(&m.id)?));
                    }
                }
            }
            if expired.is_empty() {
                continue;
            }
            deleted += expired.len();
            self.commit(&Access::full(), &ns, false, move |_| {
                Ok(Mutation::DeleteMessages(expired))
            })
            .await?;
        }
        Ok(deleted)
    }
}

/// A stored direct message as delivered (`None`: not a direct message). Only
/// messages whose envelope names the agent the message was stamped with, and
/// whose priority is in range, count: a plain message write with a forged
/// `mail` member is not mail.
fn mail_of(row: RowId, m: &Message) -> Option<Mail> {
    let e = envelope_of(&m.metadata)?;
    if m.agent_id.as_deref() != Some(e.from.as_str()) || e.priority > MAX_PRIORITY {
        return None;
    }
    let payload = if e.json {
        serde_json::from_str(&m.content).unwrap_or_else(|_| Value::String(m.content.clone()))
    } else {
        Value::String(m.content.clone())
    };
    Some(Mail {
        id: m.id.clone(),
        seq: row,
        from: e.from,
        kind: e.kind,
        payload,
        correlation_id: e.correlation_id,
        priority: e.priority,
        sent_at: m.timestamp,
        expires_at: e.expires_at,
    })
}

impl Engine {
    /// Registers (or re-registers, replacing the card) an agent under `id`.
    /// Emits `agent.registered`; the agent is `healthy` from now.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad id or card ([`validate_card`] names the
    /// member); [`Error::TooLarge`]; [`Error::Forbidden`] without `write` on the
    /// registry namespace, or when the caller acts as another agent.
    #[tracing::instrument(name = "engine.register_agent", level = "debug", skip_all, fields(agent = id, key_id = access.key_id.as_deref()))]
    pub async fn register_agent(
        &self,
        access: &Access,
        id: &str,
        card: Value,
    ) -> Result<AgentRecord> {
        validate_agent_id(id)?;
        access.check(&registry(), Scope::Write)?;
        super::write::stamp(access, Some(id.to_owned()))?;
        validate_card(&card)?;
        // Replacing another agent's card (its endpoint URL) is as strong as
        // deregistering it: only the agent itself, or a key with `delete`.
        if access.agent_id.as_deref() != Some(id)
            && !access.has(Scope::Delete)
            && self.inner.agent_entry(id).await?.is_some()
        {
            return Err(Error::Forbidden(format!(
                "agent {id:?} is registered; only it (a key bound to it) or a key with `delete` may replace its card"
            )));
        }
        let now = to_micros(Utc::now());
        let doc = AgentDoc {
            card,
            registered_at: now,
            last_seen: now,
            status: AgentStatus::Healthy,
        };
        let entry = self
            .inner
            .put_agent(
                access,
                id,
                Some(&doc),
                None,
                ChangeKind::AgentRegistered,
                true,
            )
            .await?;
        self.inner.agent_seen.lock().insert(id.to_owned(), now);
        Self::redacted(access, record_of(&entry)?)
    }

    /// One registered agent, with its health now.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Forbidden`] without `read` on the registry.
    pub async fn agent(&self, access: &Access, id: &str) -> Result<AgentRecord> {
        validate_agent_id(id)?;
        access.check(&registry(), Scope::Read)?;
        let entry = self
            .inner
            .agent_entry(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let rec = self.inner.live_record(record_of(&entry)?, Utc::now());
        Self::redacted(access, rec)
    }

    /// Records a heartbeat: the agent is `healthy` again (written as
    /// `agent.healthy` when it was not).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an agent that is not registered;
    /// [`Error::Forbidden`] without `write` on the registry or as another agent.
    pub async fn agent_heartbeat(&self, access: &Access, id: &str) -> Result<AgentRecord> {
        validate_agent_id(id)?;
        access.check(&registry(), Scope::Write)?;
        super::write::stamp(access, Some(id.to_owned()))?;
        let entry = self
            .inner
            .agent_entry(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let now = to_micros(Utc::now());
        self.inner.agent_seen.lock().insert(id.to_owned(), now);
        // Other nodes judge this agent too (one of them runs the health job).
        if self.inner.store.shared() {
            self.inner.store.heartbeat(id, now).await?;
        }
        let rec = record_of(&entry)?;
        let entry = if rec.status != AgentStatus::Healthy {
            self.inner
                .record_health(&entry, now, AgentStatus::Healthy)
                .await?
                .unwrap_or(entry)
        } else {
            entry
        };
        let rec = self.inner.live_record(record_of(&entry)?, now);
        Self::redacted(access, rec)
    }

    /// Removes an agent from the registry (`agent.deregistered`). Its inbox
    /// stays (delete the namespace `inbox:<id>` to drop it).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Forbidden`] without `delete` on the
    /// registry (an agent's own key with `write` may deregister itself).
    pub async fn deregister_agent(&self, access: &Access, id: &str) -> Result<()> {
        validate_agent_id(id)?;
        let own = access.agent_id.as_deref() == Some(id);
        access.check(&registry(), if own { Scope::Write } else { Scope::Delete })?;
        self.inner
            .agent_entry(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.inner
            .put_agent(access, id, None, None, ChangeKind::AgentDeregistered, false)
            .await?;
        self.inner.agent_seen.lock().remove(id);
        Ok(())
    }

    /// Registered agents by id, `limit` at a time (pass [`AgentPage::next`] as
    /// `after`), those passing `filter`, each with its health now.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `read` on the registry;
    /// [`Error::InvalidInput`] for `limit` outside `1..=max_k` or a bad `after`.
    pub async fn agents(
        &self,
        access: &Access,
        filter: &AgentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AgentPage> {
        access.check(&registry(), Scope::Read)?;
        self.check_limit(limit)?;
        if let Some(a) = after {
            validate_agent_id(a).map_err(|_| Error::invalid("after", "not an agent id"))?;
        }
        let now = Utc::now();
        let mut out = Vec::new();
        let mut cursor = after.map(agent_key);
        let mut more = false;
        'pages: loop {
            let page = self
                .inner
                .store
                .context_list(
                    REGISTRY_NAMESPACE,
                    AGENT_KEY_PREFIX,
                    cursor.as_deref(),
                    256,
                    now,
                )
                .await?;
            let full = page.len() == 256;
            for entry in &page {
                cursor = Some(entry.key.clone());
                let rec = self.inner.live_record(record_of(entry)?, now);
                if filter.admits(&rec) {
                    if out.len() == limit {
                        more = true;
                        break 'pages;
                    }
                    out.push(rec);
                }
            }
            if !full {
                break;
            }
        }
        let next = if more {
            out.last().map(|a| a.id.clone())
        } else {
            None
        };
        Ok(AgentPage {
            agents: Self::redacted(access, out)?,
            next,
        })
    }

    /// Semantic discovery: the `k` registered agents whose cards best match
    /// `query` (hybrid search over each card's name, description and skills,
    /// as message search ranks messages), those passing `filter`, best first.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `read` on the registry; as [`Engine::search`].
    pub async fn discover_agents(
        &self,
        access: &Access,
        query: &str,
        k: usize,
        filter: &AgentFilter,
    ) -> Result<Vec<AgentMatch>> {
        access.check(&registry(), Scope::Read)?;
        self.check_limit(k)?;
        if self.inner.namespace(&registry()).is_none() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        // Filters are judged after ranking: widen the pool until k pass.
        let mut want = if filter == &AgentFilter::default() {
            k
        } else {
            (k * 4).max(32)
        };
        loop {
            let want_capped = want.min(self.inner.config.limits.max_k);
            let hits = self
                .search(
                    access,
                    REGISTRY_NAMESPACE,
                    SearchRequest::text(query, want_capped).with_kinds(vec![HitKind::Agent]),
                )
                .await?
                .hits;
            let got = hits.len();
            let out: Vec<AgentMatch> = hits
                .into_iter()
                .filter_map(|h| {
                    let agent = self.inner.live_record(h.agent?, now);
                    filter.admits(&agent).then_some(AgentMatch {
                        agent,
                        score: h.score,
                    })
                })
                .take(k)
                .collect();
            if out.len() == k || got < want_capped || want_capped == self.inner.config.limits.max_k
            {
                return Ok(out);
            }
            want *= 4;
        }
    }

    /// Sends a direct message to agent `to`'s inbox (namespace `inbox:<to>`,
    /// created by the first message). Durable when this returns.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `to` is not registered; [`Error::Forbidden`]
    /// without `write` on the inbox, or when `from` names another agent than the
    /// caller's; [`Error::InvalidInput`] for a missing `from`, an empty `type`,
    /// a priority over 10, a `ttl_s` of 0 or over a year; [`Error::TooLarge`]
    /// for a payload over the content limit.
    #[tracing::instrument(name = "engine.send_mail", level = "debug", skip_all, fields(to, key_id = access.key_id.as_deref()))]
    pub async fn send_mail(&self, access: &Access, to: &str, mail: NewMail) -> Result<Mail> {
        validate_agent_id(to)?;
        let ns = inbox_namespace(to);
        access.check(&NamespaceName::parse(&ns)?, Scope::Write)?;
        let message = self.mail_message(access, mail)?;
        if self.inner.agent_entry(to).await?.is_none() {
            return Err(not_found(to));
        }
        self.store_mail(access, &ns, message).await
    }

    /// Publishes a message on `topic` (namespace `topic:<topic>`); subscribers
    /// read that namespace's events (`message.added`, the message as data).
    ///
    /// # Errors
    /// As [`Engine::send_mail`], without the registration check.
    pub async fn publish(&self, access: &Access, topic: &str, mail: NewMail) -> Result<Mail> {
        validate_topic(topic)?;
        let ns = topic_namespace(topic);
        access.check(&NamespaceName::parse(&ns)?, Scope::Write)?;
        let message = self.mail_message(access, mail)?;
        self.store_mail(access, &ns, message).await
    }

    fn mail_message(&self, access: &Access, mail: NewMail) -> Result<NewMessage> {
        let from = super::write::stamp(access, mail.from)?
            .ok_or_else(|| Error::invalid("from", "is required (the sender's agent id)"))?;
        validate_agent_id(&from)
            .map_err(|_| Error::invalid("from", "must be an agent id ([A-Za-z0-9._-], 1-64)"))?;
        if mail.kind.trim().is_empty() || mail.kind.len() > 64 {
            return Err(Error::invalid("type", "must be 1 to 64 bytes"));
        }
        validate::label("type", &mail.kind)?;
        if let Some(c) = &mail.correlation_id {
            if c.is_empty() || c.len() > self.inner.config.limits.max_label_bytes {
                return Err(Error::invalid(
                    "correlation_id",
                    format!(
                        "must be 1 to {} bytes",
                        self.inner.config.limits.max_label_bytes
                    ),
                ));
            }
            validate::label("correlation_id", c)?;
        }
        let priority = mail.priority.unwrap_or(5);
        if priority > MAX_PRIORITY {
            return Err(Error::invalid("priority", "must be from 0 to 10"));
        }
        let now = to_micros(Utc::now());
        let expires_at = match mail.ttl_s {
            None => None,
            Some(0) => return Err(Error::invalid("ttl_s", "must be at least 1")),
            Some(s) if s > MAX_MAIL_TTL_S => {
                return Err(Error::invalid(
                    "ttl_s",
                    "must be at most one year (31536000)",
                ));
            }
            Some(s) => Some(now + chrono::Duration::seconds(s as i64)),
        };
        let (content, json) = match &mail.payload {
            Value::String(s) => (s.clone(), false),
            Value::Null => return Err(Error::invalid("payload", "is required")),
            other => (other.to_string(), true),
        };
        if content.len() > self.inner.config.limits.max_content_bytes {
            return Err(Error::too_large(
                "payload",
                format!(
                    "at most {} bytes (as text or compact JSON)",
                    self.inner.config.limits.max_content_bytes
                ),
            ));
        }
        let envelope = Envelope {
            from: from.clone(),
            kind: mail.kind,
            json,
            correlation_id: mail.correlation_id,
            priority,
            expires_at,
        };
        let mut metadata = Map::new();
        metadata.insert(
            MAIL_METADATA.to_owned(),
            serde_json::to_value(envelope).map_err(|e| Error::Storage(e.to_string()))?,
        );
        Ok(NewMessage {
            role: Role::User,
            name: Some(from.clone()),
            content,
            timestamp: Some(now),
            agent_id: Some(from),
            session_id: None,
            metadata,
        })
    }

    async fn store_mail(&self, access: &Access, ns: &str, message: NewMessage) -> Result<Mail> {
        let stored = self.add(access, ns, message).await?;
        let row = self
            .inner
            .store
            .row_of(&parse_id(&stored.id)?)
            .await?
            .ok_or_else(|| Error::Storage("a stored message has no row".into()))?;
        mail_of(row, &stored)
            .ok_or_else(|| Error::Storage("a stored message lost its envelope".into()))
    }

    async fn consumer_state(&self, ns: &str, consumer: &str) -> Result<(AckState, Option<u64>)> {
        let key = format!("{CONSUMER_KEY_PREFIX}{consumer}");
        match self.inner.store.context_get(ns, &key).await? {
            Some(e) if !e.deleted => {
                let state: AckState =
                    serde_json::from_value(e.value.clone()).map_err(|err| corrupt(&key, err))?;
                Ok((state, Some(e.version)))
            }
            // A tombstone reads as absent to compare-and-set.
            Some(_) | None => Ok((AckState::default(), Some(0))),
        }
    }

    /// Agent `id`'s unacknowledged, unexpired direct messages for `consumer`:
    /// highest priority first, then oldest first, at most `limit`. Reading does
    /// not acknowledge: a consumer that dies before [`Engine::inbox_ack`] gets
    /// the same messages again.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `read` on `inbox:<id>`;
    /// [`Error::InvalidInput`] for a bad id, consumer or limit.
    pub async fn inbox(
        &self,
        access: &Access,
        id: &str,
        consumer: &str,
        limit: usize,
    ) -> Result<InboxPage> {
        validate_agent_id(id)?;
        check_consumer(consumer)?;
        self.check_limit(limit)?;
        let ns = NamespaceName::parse(&inbox_namespace(id))?;
        access.check(&ns, Scope::Read)?;
        own_inbox(access, id)?;
        let Some(state) = self.inner.namespace(&ns) else {
            return Ok(InboxPage::default());
        };
        let (acks, _) = self.consumer_state(ns.as_str(), consumer).await?;
        let acked: BTreeSet<u64> = acks.acked.iter().copied().collect();
        let rows: Vec<RowId> = state
            .rows(HitKind::Message)
            .into_iter()
            .filter(|r| *r > acks.upto && !acked.contains(r))
            .collect();
        let now = Utc::now();
        let mut pending = Vec::new();
        for chunk in rows.chunks(512) {
            for (row, rec) in self.inner.store.records(chunk).await? {
                if let Record::Message(m) = rec
                    && let Some(mail) = mail_of(row, &m)
                    && mail.expires_at.is_none_or(|t| t > now)
                {
                    pending.push(mail);
                }
            }
        }
        pending.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
        let total = pending.len();
        pending.truncate(limit);
        // The payload is masked like message content (`payload` is a text field
        // of the redaction).
        Ok(InboxPage {
            messages: Self::redacted(access, pending)?,
            pending: total,
        })
    }

    /// Acknowledges direct messages for `consumer`: every one at or below
    /// `ack.upto` and each of `ack.ids` (ids of messages in this inbox). An
    /// acknowledged message is never delivered to this consumer again.
    /// Emits `inbox.acked`.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `read` on `inbox:<id>`; [`Error::InvalidInput`]
    /// for an empty ack or an id of a message not in this inbox;
    /// [`Error::Conflict`] after 64 lost races with other acks.
    pub async fn inbox_ack(
        &self,
        access: &Access,
        id: &str,
        consumer: &str,
        ack: InboxAck,
    ) -> Result<AckState> {
        validate_agent_id(id)?;
        check_consumer(consumer)?;
        let ns = NamespaceName::parse(&inbox_namespace(id))?;
        access.check(&ns, Scope::Read)?;
        own_inbox(access, id)?;
        if ack.upto.is_none() && ack.ids.is_empty() {
            return Err(Error::invalid("upto", "give upto, ids or both"));
        }
        let newest = self
            .inner
            .namespace(&ns)
            .and_then(|s| s.rows(HitKind::Message).last().copied())
            .unwrap_or(0);
        if ack.upto.is_some_and(|u| u > newest) {
            return Err(Error::invalid(
                "upto",
                format!("beyond the newest message of this inbox (seq {newest})"),
            ));
        }
        if ack.ids.len() > self.inner.config.limits.max_k {
            return Err(Error::too_large(
                "ids",
                format!("at most {}", self.inner.config.limits.max_k),
            ));
        }
        let mut rows = Vec::with_capacity(ack.ids.len());
        for mid in &ack.ids {
            let bad = || {
                Error::invalid(
                    "ids",
                    format!(
                        "{:?} is not a message of this inbox",
                        mid.chars().take(64).collect::<String>()
                    ),
                )
            };
            let uuid = parse_id(mid).map_err(|_| bad())?;
            let row = self.inner.store.row_of(&uuid).await?.ok_or_else(bad)?;
            match self.inner.store.records(&[row]).await?.pop() {
                Some((_, Record::Message(m))) if m.namespace == ns.as_str() => rows.push(row),
                _ => return Err(bad()),
            }
        }
        let key = format!("{CONSUMER_KEY_PREFIX}{consumer}");
        for _ in 0..ACK_ATTEMPTS {
            let (mut st, version) = self.consumer_state(ns.as_str(), consumer).await?;
            let before = st.clone();
            if let Some(u) = ack.upto {
                st.upto = st.upto.max(u);
            }
            let mut acked: BTreeSet<u64> = st.acked.iter().copied().collect();
            acked.extend(rows.iter().copied());
            // Compact: slide `upto` over acknowledged messages and over
            // messages that are not mail (never delivered, so never acked),
            // stopping at the first unacknowledged direct message.
            if let Some(state) = self.inner.namespace(&ns) {
                let above: Vec<RowId> = state
                    .rows(HitKind::Message)
                    .into_iter()
                    .filter(|r| *r > st.upto)
                    .collect();
                'compact: for chunk in above.chunks(256) {
                    let unacked: Vec<RowId> = chunk
                        .iter()
                        .copied()
                        .filter(|r| !acked.contains(r))
                        .collect();
                    let mail: BTreeSet<RowId> = self
                        .inner
                        .store
                        .records(&unacked)
                        .await?
                        .into_iter()
                        .filter_map(|(row, rec)| match rec {
                            Record::Message(m) if mail_of(row, &m).is_some() => Some(row),
                            _ => None,
                        })
                        .collect();
                    for &r in chunk {
                        if mail.contains(&r) {
                            break 'compact;
                        }
                        st.upto = r;
                    }
                }
            }
            acked.retain(|r| *r > st.upto);
            st.acked = acked.into_iter().collect();
            if st == before && version.is_some_and(|v| v > 0) {
                return Ok(st);
            }
            let put = ContextPut {
                key: key.clone(),
                op: ContextOp::Set,
                value: serde_json::to_value(&st).map_err(|e| Error::Storage(e.to_string()))?,
                expected_version: version,
                agent_id: access.agent_id.clone(),
                expires_at: None,
                at: to_micros(Utc::now()),
                max_value_bytes: usize::MAX,
                keep_versions: Some(2),
                expire_version: None,
                vector: None,
                change: Some((
                    ChangeKind::InboxAcked,
                    vec![consumer.to_owned(), st.upto.to_string()],
                )),
            };
            match self
                .inner
                .commit(&Access::full(), &ns, true, move |_| {
                    Ok(Mutation::PutContext(put))
                })
                .await
            {
                Ok(_) => return Ok(st),
                Err(Error::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "acknowledgements of consumer {consumer:?} kept racing; try again"
        )))
    }
}

/// Writes agents' changes of health (`agent.unhealthy`, `agent.gone`).
pub(crate) struct AgentHealthJob;

impl Job<Inner> for AgentHealthJob {
    fn name(&self) -> &'static str {
        "agent health"
    }

    fn run<'a>(&'a self, inner: &'a std::sync::Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if inner.store.shared() {
                inner.merge_heartbeats().await?;
            }
            let n = inner.sweep_agents(Utc::now()).await?;
            if n > 0 {
                tracing::debug!(changed = n, "agent health recorded");
            }
            Ok(())
        })
    }
}

/// Deletes direct messages and topic messages past their `ttl_s`; at most
/// every 10 s (a sweep reads every message of every inbox and topic).
pub(crate) struct MailExpiryJob {
    pub(crate) last: parking_lot::Mutex<Option<std::time::Instant>>,
}

impl Job<Inner> for MailExpiryJob {
    fn name(&self) -> &'static str {
        "mail expiry"
    }

    fn run<'a>(&'a self, inner: &'a std::sync::Arc<Inner>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            {
                let mut last = self.last.lock();
                if last.is_some_and(|t| t.elapsed().as_secs() < 10) {
                    return Ok(());
                }
                *last = Some(std::time::Instant::now());
            }
            let n = inner.expire_mail(Utc::now()).await?;
            if n > 0 {
                tracing::debug!(deleted = n, "expired direct messages deleted");
            }
            Ok(())
        })
    }
}

/// The data of an `agent.*` or `inbox.acked` event.
pub(crate) async fn event_data(
    engine: &Engine,
    ns: &str,
    kind: ChangeKind,
    ids: &[String],
) -> Result<Value> {
    let first = ids.first().map(String::as_str).unwrap_or_default();
    Ok(match kind {
        ChangeKind::InboxAcked => json!({
            "consumer": first,
            "upto": ids.get(1).and_then(|u| u.parse::<u64>().ok()),
        }),
        ChangeKind::AgentDeregistered => json!({"id": first}),
        _ => match engine
            .inner
            .store
            .context_get(ns, &agent_key(first))
            .await?
        {
            Some(e) if !e.deleted => serde_json::to_value(record_of(&e)?).unwrap_or(Value::Null),
            _ => json!({"id": first}),
        },
    })
}
