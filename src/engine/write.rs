//! The write path: validate → embed (model thread, bounded queue, by priority) →
//! [`Inner::commit`] (records + change log in one storage transaction, durable) →
//! [`Inner::apply`] (index, short-term memory) in one place.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use uuid::Uuid;

use super::{Engine, Inner, validate};
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::error::{Error, Result};
use crate::core::types::{Interaction, Message, NewMessage, Role, Summary, to_micros};
use crate::embed::{Embeddings, l2_normalize};
use crate::engine::state::NamespaceState;
use crate::storage::codec::parse_id;
use crate::storage::{Commit, Committed, Mutation, Record, RowId, blocking};
use crate::summarize::SummaryInput;

impl Engine {
    /// Stores one message; returns it with its id and timestamp filled in.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without the `write`
    /// scope on `namespace`, [`Error::InvalidInput`], [`Error::TooLarge`],
    /// [`Error::Overloaded`], [`Error::Storage`].
    pub async fn add(
        &self,
        access: &Access,
        namespace: &str,
        message: NewMessage,
    ) -> Result<Message> {
        let mut out = self.add_batch(access, namespace, vec![message]).await?;
        Ok(out.remove(0))
    }

    /// Stores messages in one model call, one transaction and one flush; returns
    /// them in input order. All or nothing.
    ///
    /// # Errors
    /// As [`Engine::add`]; [`Error::InvalidInput`] for an empty batch.
    #[tracing::instrument(name = "engine.add_batch", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), messages = messages.len()))]
    pub async fn add_batch(
        &self,
        access: &Access,
        namespace: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        let built = self.build_messages(access, &ns, messages)?;
        self.store_messages(access, &ns, built).await
    }

    /// Like [`Engine::add_batch`] with embeddings computed elsewhere by this
    /// engine's model (an import, a migration): `embeddings` is `[messages.len(), dim]`
    /// row-major. Vectors are L2-normalized before storage. Mixing in vectors of
    /// another model silently ruins search: only use vectors from [`Engine::embed`]
    /// or the same model.
    ///
    /// # Errors
    /// As [`Engine::add_batch`]; [`Error::InvalidInput`] when `embeddings` has the
    /// wrong length or a row that is not finite and non-zero.
    #[tracing::instrument(name = "engine.add_batch_with_embeddings", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), messages = messages.len()))]
    pub async fn add_batch_with_embeddings(
        &self,
        access: &Access,
        namespace: &str,
        messages: Vec<NewMessage>,
        embeddings: Vec<f32>,
    ) -> Result<Vec<Message>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        let dim = self.inner.info.dim;
        if embeddings.len() != messages.len() * dim {
            return Err(Error::invalid(
                "embeddings",
                format!(
                    "expected {} values ({} messages x {dim})",
                    messages.len() * dim,
                    messages.len()
                ),
            ));
        }
        if let Some(i) = embeddings
            .chunks_exact(dim)
            .position(|r| !r.iter().all(|x| x.is_finite()) || r.iter().all(|x| *x == 0.0))
        {
            return Err(Error::invalid(
                format!("embeddings[{i}]"),
                "must be finite and non-zero",
            ));
        }
        let built = self.build_messages(access, &ns, messages)?;
        let tokens = vec![0; built.len()];
        let embeddings = Embeddings {
            data: embeddings,
            dim,
            tokens,
        };
        self.persist(access, &ns, built, embeddings).await
    }

    fn build_messages(
        &self,
        access: &Access,
        ns: &NamespaceName,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let limits = &self.inner.config.limits;
        if messages.is_empty() {
            return Err(Error::invalid("messages", "send at least one message"));
        }
        if messages.len() > limits.max_messages_per_request {
            return Err(Error::too_large(
                "messages",
                format!(
                    "{} messages in one request; the limit is {}: split the batch",
                    messages.len(),
                    limits.max_messages_per_request
                ),
            ));
        }
        for (i, m) in messages.iter().enumerate() {
            validate::message(limits, i, m)?;
        }
        let now = to_micros(Utc::now());
        let mut messages = messages;
        for m in &mut messages {
            m.agent_id = stamp(access, m.agent_id.take())?;
        }
        Ok(messages
            .into_iter()
            .map(|m| Message {
                id: Uuid::now_v7().to_string(),
                namespace: ns.to_string(),
                role: m.role,
                name: m.name,
                content: m.content,
                timestamp: m.timestamp.map(to_micros).unwrap_or(now),
                agent_id: m.agent_id,
                session_id: m.session_id,
                exchange_id: None,
                metadata: m.metadata,
            })
            .collect())
    }

    /// Stores a user message and the agent's response sharing one `exchange_id`
    /// (the design's `add_interaction(agent_id, user_msg, agent_response, metadata)`).
    /// Returns `[user message, agent message]`.
    ///
    /// # Errors
    /// As [`Engine::add_batch`].
    #[tracing::instrument(name = "engine.add_interaction", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn add_interaction(
        &self,
        access: &Access,
        namespace: &str,
        it: Interaction,
    ) -> Result<Vec<Message>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        let exchange = Uuid::now_v7().to_string();
        let agent_id = stamp(access, it.agent_id)?;
        let ts = to_micros(it.timestamp.unwrap_or_else(Utc::now));
        let mut user = NewMessage::new(Role::User, it.user_message);
        user.name = it.user_name;
        user.timestamp = Some(ts);
        user.agent_id = agent_id.clone();
        user.session_id = it.session_id.clone();
        user.metadata = it.metadata.clone();
        let mut agent = NewMessage::new(Role::Assistant, it.agent_response);
        agent.name = agent_id.clone();
        agent.timestamp = Some(ts);
        agent.agent_id = agent_id;
        agent.session_id = it.session_id;
        agent.metadata = it.metadata;
        let mut built = self.build_messages(access, &ns, vec![user, agent])?;
        for m in &mut built {
            m.exchange_id = Some(exchange.clone());
        }
        self.store_messages(access, &ns, built).await
    }

    async fn store_messages(
        &self,
        access: &Access,
        ns: &NamespaceName,
        messages: Vec<Message>,
    ) -> Result<Vec<Message>> {
        let texts = messages.iter().map(Message::embedding_text).collect();
        let embeddings = self.inner.embed.embed(texts).await?;
        self.persist(access, ns, messages, embeddings).await
    }

    async fn persist(
        &self,
        access: &Access,
        ns: &NamespaceName,
        messages: Vec<Message>,
        embeddings: Embeddings,
    ) -> Result<Vec<Message>> {
        let items: Vec<(Message, Vec<f32>)> = messages
            .into_iter()
            .zip(embeddings.rows())
            .map(|(m, row)| {
                let mut v = row.to_vec();
                l2_normalize(&mut v);
                (m, v)
            })
            .collect();
        let (mutation, _) = self
            .inner
            .commit(access, ns, true, move |_| Ok(Mutation::AddMessages(items)))
            .await?;
        match mutation {
            Mutation::AddMessages(items) => Ok(items.into_iter().map(|(m, _)| m).collect()),
            _ => unreachable!("commit returns the mutation it was given"),
        }
    }

    /// Deletes one message from the store, the index and the short-term buffer.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id or one in a namespace the caller
    /// cannot see; [`Error::Forbidden`] without the `delete` scope there.
    #[tracing::instrument(name = "engine.delete", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn delete(&self, access: &Access, id: &str) -> Result<()> {
        let not_found = || Error::NotFound {
            what: "message",
            id: id.chars().take(100).collect(),
        };
        let uuid = parse_id(id)?;
        let row = self
            .inner
            .store
            .row_of(&uuid)
            .await?
            .ok_or_else(not_found)?;
        let Some((_, Record::Message(message))) =
            self.inner.store.records(&[row]).await?.into_iter().next()
        else {
            return Err(not_found());
        };
        if !access.covers(&message.namespace) {
            return Err(not_found());
        }
        let ns = NamespaceName::parse(&message.namespace)?;
        access.check(&ns, Scope::Delete)?;
        self.inner
            .commit(access, &ns, false, move |_| {
                Ok(Mutation::DeleteMessages(vec![(row, uuid)]))
            })
            .await?;
        Ok(())
    }

    /// Deletes one namespace's records, context and registry entry (children
    /// are the caller's business); returns the messages deleted.
    pub(crate) async fn delete_one_namespace(
        &self,
        access: &Access,
        ns: &NamespaceName,
    ) -> Result<usize> {
        access.check(ns, Scope::Delete)?;
        let ns = ns.clone();
        if self.inner.namespace(&ns).is_none() {
            return Ok(0);
        }
        match self
            .inner
            .commit(access, &ns, false, |state| {
                Ok(Mutation::DeleteNamespace {
                    messages: state.rows(crate::core::types::HitKind::Message),
                    summaries: state.rows(crate::core::types::HitKind::Summary),
                })
            })
            .await
        {
            Ok((_, committed)) => Ok(committed.rows.len()),
            Err(Error::NotFound { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Summarizes every unsummarized message of `namespace` now (in windows of
    /// `summarize.every`), whatever the triggers say. Returns the new summaries,
    /// oldest first (none when nothing is pending).
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without `write`,
    /// [`Error::Overloaded`], [`Error::Storage`].
    #[tracing::instrument(name = "engine.summarize", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn summarize(&self, access: &Access, namespace: &str) -> Result<Vec<Summary>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        let made = self.inner.summarize_due(&ns, true).await?;
        Self::redacted(access, made)
    }
}

impl Inner {
    /// The commit point: every mutation goes through here.
    ///
    /// Under the namespace's writer lock, `build` turns the current state into a
    /// [`Mutation`]; the store writes it with its change-log entries in one
    /// transaction (durable on return); [`Inner::apply`] updates the in-memory
    /// side. It all runs in a task of its own, so a caller that goes away (a
    /// dropped HTTP request) cannot leave a committed change unapplied. `creates`:
    /// the mutation may create the namespace (a write into a namespace deleted
    /// while it waited goes into the new one); otherwise a missing namespace is
    /// [`Error::NotFound`].
    ///
    /// Returns the mutation (records as written) and what the store committed.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        access: &Access,
        ns: &NamespaceName,
        creates: bool,
        build: impl FnOnce(&NamespaceState) -> Result<Mutation> + Send + 'static,
    ) -> Result<(Mutation, Committed)> {
        let inner = self.clone();
        let ns = ns.clone();
        let actor = access.agent_id.clone().or_else(|| access.key_id.clone());
        let key_id = access.key_id.clone();
        let task = tokio::spawn(async move {
            let shared = inner.store.shared();
            let (mut not_live, mut looked_up) = (false, false);
            let state = loop {
                let state = if creates {
                    inner.namespace_or_create(&ns)
                } else {
                    match inner.namespace(&ns) {
                        Some(state) => state,
                        // Another node may have created it moments ago.
                        None if shared && !looked_up => {
                            looked_up = true;
                            inner.follow(&ns).await?;
                            continue;
                        }
                        None => {
                            return Err(Error::NotFound {
                                what: "namespace",
                                id: ns.to_string(),
                            });
                        }
                    }
                };
                let guard = state.writer.clone().lock_owned().await;
                if state.deleted.load(Ordering::Acquire) {
                    // Deleted or replaced (rebuilt) while this waited: look again.
                    continue;
                }
                if !shared || not_live {
                    break (state, guard);
                }
                // Build from a side that has what other nodes committed (a vote
                // must see a resolution made elsewhere).
                match inner.follow_locked(&state, None, None, false).await {
                    // Not live: dropped; a creating commit makes it anew, on an
                    // empty side.
                    Ok(super::follow::Followed::Deleted) => not_live = true,
                    Ok(_) => break (state, guard),
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "catching up with other nodes failed; the follower will rebuild");
                        state.resync.store(true, Ordering::Release);
                        break (state, guard);
                    }
                }
            };
            let (state, guard) = state;
            let commit = Commit {
                namespace: ns.clone(),
                mutation: build(&state)?,
                actor,
                key_id,
            };
            let committed = inner.store.commit(&commit).await?;
            // On a shared store, first apply what other nodes committed to this
            // namespace before this commit, so the side replays the store's order.
            if let Some(first) = committed.changes.first()
                && inner.store.shared()
                && first.seq > state.applied_seq() + 1
            {
                let own_rows = match &commit.mutation {
                    Mutation::AddMessages(_) | Mutation::AddSummary { .. } => {
                        committed.rows.first().copied()
                    }
                    _ => None,
                };
                match inner
                    .follow_locked(&state, Some(first.seq - 1), own_rows, false)
                    .await
                {
                    Ok(super::follow::Followed::Deleted) => {
                        // Deleted again since this commit: nothing to apply to.
                        inner.commits.send_modify(|n| *n = n.wrapping_add(1));
                        drop(guard);
                        return Ok((commit.mutation, committed));
                    }
                    // Deferred: marked for a rebuild, which reads this commit
                    // back from the store.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "catching up with other nodes failed; the follower will rebuild");
                        state.resync.store(true, Ordering::Release);
                    }
                }
            }
            let applier = inner.clone();
            let st = state.clone();
            let (mutation, committed) = blocking(move || {
                applier.apply(&st, &commit.mutation, &committed);
                Ok((commit.mutation, committed))
            })
            .await?;
            // Wake event subscribers once the change is durable and applied.
            if !committed.changes.is_empty() {
                // One audit entry per change, written in the same transaction.
                metrics::counter!("memoryd_audit_entries_total")
                    .increment(committed.changes.len() as u64);
                inner.commits.send_modify(|n| *n = n.wrapping_add(1));
            }
            drop(guard);
            inner.maintain(&state);
            Ok((mutation, committed))
        });
        task.await
            .map_err(|e| Error::Io(std::io::Error::other(format!("commit task failed: {e}"))))?
    }

    /// Starts the search side's maintenance (a graph build) on its own thread
    /// when it asks for it.
    pub(crate) fn maintain(&self, ns: &Arc<NamespaceState>) {
        if !ns.index.needs_maintenance() {
            return;
        }
        let target = ns.clone();
        let spawned = std::thread::Builder::new()
            .name("memoryd-index-build".into())
            .spawn(move || target.index.maintain());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an index build thread");
        }
    }

    /// Summarizes the windows of `name` that are due (all pending ones when `force`).
    pub(crate) async fn summarize_due(
        self: &Arc<Self>,
        name: &NamespaceName,
        force: bool,
    ) -> Result<Vec<Summary>> {
        let Some(mut ns) = self.namespace(name) else {
            return Ok(Vec::new());
        };
        let cfg = &self.config.summarize;
        let due = |ns: &NamespaceState| {
            ns.short_term.lock().due_window(
                cfg.every,
                cfg.after,
                Utc::now().timestamp_millis(),
                force,
            )
        };
        // On a shared store another node may have just summarized this window:
        // catch up with the namespace first (which may replace its side).
        if self.store.shared() && due(&ns).is_some() {
            self.follow(name).await?;
            match self.namespace(name) {
                Some(current) => ns = current,
                None => return Ok(Vec::new()),
            }
        }
        let _one_at_a_time = ns.summarizing.lock().await;
        let mut out = Vec::new();
        while let Some(window) = due(&ns) {
            match self.summarize_window(&ns, window).await? {
                Some(summary) => out.push(summary),
                None if ns.deleted.load(Ordering::Acquire) => break,
                None => {}
            }
        }
        Ok(out)
    }

    async fn summarize_window(
        self: &Arc<Self>,
        ns: &Arc<NamespaceState>,
        window: Vec<RowId>,
    ) -> Result<Option<Summary>> {
        let upto = *window.last().expect("a window is not empty");
        let records = self.store.records(&window).await?;
        let (rows, msgs): (Vec<RowId>, Vec<Message>) = records
            .into_iter()
            .filter_map(|(row, r)| match r {
                Record::Message(m) => Some((row, m)),
                Record::Summary(_) => None,
            })
            .unzip();
        if msgs.is_empty() {
            // Every message of the window was deleted meanwhile.
            ns.short_term.lock().summarized(upto);
            return Ok(None);
        }
        let written = self
            .summarizer
            .summarize(SummaryInput {
                messages: &msgs,
                embed: &self.background_embed,
                max_tokens: self.info.max_seq_length,
            })
            .await?;
        let mut vector = self
            .background_embed
            .embed(vec![written.text.clone()])
            .await?
            .data;
        l2_normalize(&mut vector);
        let summary = Summary {
            id: Uuid::now_v7().to_string(),
            namespace: ns.name.to_string(),
            text: written.text,
            source_ids: msgs.iter().map(|m| m.id.clone()).collect(),
            from: msgs
                .iter()
                .map(|m| m.timestamp)
                .min()
                .unwrap_or_else(Utc::now),
            to: msgs
                .iter()
                .map(|m| m.timestamp)
                .max()
                .unwrap_or_else(Utc::now),
            created_at: to_micros(Utc::now()),
            summarizer: written.summarizer,
        };
        // Mailboxes keep their messages until acknowledged and expired, not summarized.
        let mailbox =
            ns.name.as_str().starts_with("inbox:") || ns.name.as_str().starts_with("topic:");
        let evict: Vec<(RowId, Uuid)> = if self.config.summarize.evict_summarized && !mailbox {
            rows.iter()
                .zip(&summary.source_ids)
                .map(|(&row, id)| Ok((row, parse_id(id)?)))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let result = self
            .commit(&Access::full(), &ns.name, false, move |_| {
                Ok(Mutation::AddSummary {
                    summary,
                    vector,
                    upto,
                    evict,
                })
            })
            .await;
        match result {
            Ok((Mutation::AddSummary { summary, .. }, _)) => {
                tracing::debug!(namespace = %ns.name, sources = rows.len(), "summary written");
                Ok(Some(summary))
            }
            Ok(_) => unreachable!("commit returns the mutation it was given"),
            // Deleted meanwhile, or a source message deleted between read and commit.
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The agent a write is made as: `given`, else the caller's own agent. A caller
/// bound to an agent (an API key created with `--agent-id`) cannot write as
/// another.
///
/// # Errors
/// [`Error::Forbidden`] when `given` names an agent other than the caller's.
pub(crate) fn stamp(access: &Access, given: Option<String>) -> Result<Option<String>> {
    match (&access.agent_id, given) {
        (Some(own), Some(g)) if *own != g => Err(Error::Forbidden(format!(
            "this caller acts as agent {own:?} and cannot write as {:?}",
            g.chars().take(64).collect::<String>()
        ))),
        (own, given) => Ok(given.or_else(|| own.clone())),
    }
}
