//! The read path: embed the query (query lane, LRU cache) → rank in the search
//! index (off the runtime) → fetch the records from the store, in chunks, until
//! `k` pass the filters.

use std::sync::Arc;
use std::time::Instant;

use super::state::{ENTRY_ROW_BASE, NamespaceState};
use super::{Engine, Inner};
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::board::{BOARD_KEY_PREFIX, BoardItem};
use crate::core::context::ContextEntry;
use crate::core::error::{Error, Result};
use crate::core::types::{
    Filter, Hit, HitKind, Message, NamespaceInfo, Query, SearchMode, SearchRequest, SearchResults,
    SearchScope, Summary,
};
use crate::embed::{Embeddings, l2_normalize};
use crate::search::vector::Scored;
use crate::search::{RankQuery, Ranked, merge};
use crate::storage::codec::parse_id;
use crate::storage::{Change, Record, StoreCheck, blocking};

/// Counts describing the engine's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Model id.
    pub model: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Stored messages across namespaces.
    pub messages: usize,
    /// Summaries across namespaces.
    pub summaries: usize,
    /// Namespaces with at least one message.
    pub namespaces: usize,
    /// Namespaces searched through an HNSW graph.
    pub graph_namespaces: usize,
    /// Rows written after their namespace's graph last grew, searched by an exact
    /// scan until the maintenance thread inserts them (0 when caught up).
    pub graph_tail_rows: usize,
    /// Graphs reloaded from their dumps since the engine opened (reloads run in
    /// the background after open; the rest, if any namespace needed one, are
    /// built in the background).
    pub graphs_reloaded: usize,
    /// Namespaces whose graph dump is still being reloaded (each served by an
    /// exact scan meanwhile: correct, slower).
    pub graphs_reloading: usize,
    /// Embedding requests waiting or running.
    pub embed_queue_depth: usize,
    /// Bytes the store occupies on disk.
    pub disk_bytes: u64,
}

/// One page of [`Engine::list`].
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct MessagePage {
    /// Messages, oldest first.
    pub messages: Vec<Message>,
    /// Cursor of the next page (opaque); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What [`Engine::check`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckReport {
    /// The store's own cross-check.
    pub store: StoreCheck,
    /// Messages in the vector indexes.
    pub indexed_messages: usize,
    /// Summaries in the vector indexes.
    pub indexed_summaries: usize,
    /// Every inconsistency (the store's and index-versus-store); empty when sound.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when nothing is inconsistent.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Engine {
    /// The top-k records most relevant to the query in `namespace` (and its
    /// ancestors with [`SearchScope::Inherit`]), best first: messages,
    /// summaries and context entries unless `kinds` says otherwise (board
    /// problems and proposals when it names `board`). An unknown namespace
    /// yields no hits.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`]; [`Error::Forbidden`] without `read`;
    /// [`Error::InvalidInput`] for `k` outside `1..=max_k`, an empty time range,
    /// or a query vector of the wrong dimension, zero norm or non-finite values;
    /// [`Error::Overloaded`].
    #[tracing::instrument(name = "engine.search", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), k = request.k))]
    pub async fn search(
        &self,
        access: &Access,
        namespace: &str,
        request: SearchRequest,
    ) -> Result<SearchResults> {
        let started = Instant::now();
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        let max_k = self.inner.config.limits.max_k;
        if request.k == 0 || request.k > max_k {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {max_k}"),
            ));
        }
        request.filter.validate()?;
        let params = request.hybrid.unwrap_or(self.inner.config.hybrid);
        params.validate()?;
        let (text, vector) = match request.query {
            Query::Text(text) => {
                if text.trim().is_empty() {
                    return Err(Error::invalid(
                        "query",
                        "must contain a non-whitespace character",
                    ));
                }
                if text.len() > self.inner.config.limits.max_content_bytes {
                    return Err(Error::too_large("query", "longer than the content limit"));
                }
                let vector = match request.mode {
                    SearchMode::Lexical => None,
                    _ => Some(self.query_vector(&text).await?),
                };
                (Some(text), vector)
            }
            Query::Vector(mut v) => {
                if request.mode == SearchMode::Lexical {
                    return Err(Error::invalid("mode", "lexical search needs a text query"));
                }
                if v.len() != self.inner.info.dim {
                    return Err(Error::invalid(
                        "vector",
                        format!(
                            "has {} values; the model's dimension is {}",
                            v.len(),
                            self.inner.info.dim
                        ),
                    ));
                }
                if !v.iter().all(|x| x.is_finite()) || l2_normalize(&mut v) == 0.0 {
                    return Err(Error::invalid("vector", "must be finite and non-zero"));
                }
                (None, Some(Arc::from(v)))
            }
        };
        let states: Vec<Arc<NamespaceState>> = match request.scope {
            SearchScope::Own => self.inner.namespace(&ns).into_iter().collect(),
            // Up to the first ancestor the caller cannot read.
            SearchScope::Inherit => self
                .chain(&ns)
                .into_iter()
                .take_while(|level| access.check(level, Scope::Read).is_ok())
                .filter_map(|level| self.inner.namespace(&level))
                .collect(),
        };
        let kinds = if request.kinds.is_empty() {
            HitKind::DEFAULT.to_vec()
        } else {
            request.kinds
        };
        let hits = self
            .inner
            .search(
                states,
                text,
                vector,
                request.mode,
                params,
                request.k,
                request.filter,
                kinds,
            )
            .await?;
        let took = started.elapsed();
        metrics::histogram!("memoryd_search_duration_seconds", "mode" => request.mode.as_str())
            .record(took.as_secs_f64());
        Ok(SearchResults {
            hits: Self::redacted(access, hits)?,
            took_ms: took.as_secs_f64() * 1e3,
        })
    }

    /// The unit embedding `[dim]` of a query text, from the LRU cache when it was
    /// asked before.
    async fn query_vector(&self, text: &str) -> Result<Arc<[f32]>> {
        if let Some(cache) = &self.inner.query_cache
            && let Some(v) = cache.lock().get(text)
        {
            metrics::counter!("memoryd_query_cache_hits_total").increment(1);
            return Ok(v.clone());
        }
        let e = self.inner.query_embed.embed(vec![text.to_owned()]).await?;
        let v: Arc<[f32]> = Arc::from(e.data);
        if let Some(cache) = &self.inner.query_cache {
            cache.lock().put(text.to_owned(), v.clone());
        }
        Ok(v)
    }

    /// The `n` most recently added messages of `namespace` (from its short-term
    /// buffer, so at most `short_term_capacity`), newest first.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without `read`,
    /// [`Error::Storage`].
    #[tracing::instrument(name = "engine.recent", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), n))]
    pub async fn recent(&self, access: &Access, namespace: &str, n: usize) -> Result<Vec<Message>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        let Some(state) = self.inner.namespace(&ns) else {
            return Ok(Vec::new());
        };
        let rows = state.short_term.lock().recent(n);
        Self::redacted(access, messages_of(self.inner.store.records(&rows).await?))
    }

    /// A namespace's stored messages in insertion order, `limit` at a time:
    /// pass the returned [`MessagePage::next`] as `after` to continue (`None` for
    /// the first page). Lists everything, not only the short-term buffer. An
    /// unknown namespace yields an empty page.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`]; [`Error::Forbidden`] without `read`;
    /// [`Error::InvalidInput`] for `limit` outside `1..=max_k` or a malformed
    /// cursor; [`Error::Storage`].
    #[tracing::instrument(name = "engine.list", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn list(
        &self,
        access: &Access,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MessagePage> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        self.check_limit(limit)?;
        // "No cursor" is not a row (rows of older stores start at 0).
        let after: Option<u64> = after
            .map(|c| {
                c.parse().map_err(|_| {
                    Error::invalid("after", "not a cursor returned by a previous page")
                })
            })
            .transpose()?;
        let Some(state) = self.inner.namespace(&ns) else {
            return Ok(MessagePage::default());
        };
        // Rows are increasing in insertion order.
        let rows = state.rows(HitKind::Message);
        let start = after.map_or(0, |a| rows.partition_point(|&s| s <= a));
        let page = &rows[start..rows.len().min(start + limit)];
        // Deleted since the index was read: skipped.
        let messages = messages_of(self.inner.store.records(page).await?);
        let next = (start + limit < rows.len())
            .then(|| page.last().map(|s| s.to_string()))
            .flatten();
        Ok(MessagePage {
            messages: Self::redacted(access, messages)?,
            next,
        })
    }

    /// Change-log entries of `namespace` with seq above `after`, oldest first, at
    /// most `limit` (1..=`max_k`). What event streams and other nodes tail.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without `read`,
    /// [`Error::InvalidInput`] for `limit`, [`Error::Storage`].
    #[tracing::instrument(name = "engine.changes", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn changes(
        &self,
        access: &Access,
        namespace: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        self.check_limit(limit)?;
        self.inner.store.changes(ns.as_str(), after, limit).await
    }

    /// Cross-checks the store with itself and with the in-memory indexes (vector
    /// and BM25): the operator's `memoryd check`. Reads every record. On an
    /// engine that is being written to, a write landing during the check can show
    /// as a count mismatch; run it on a quiet engine.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without `admin`; [`Error::Storage`] when the store
    /// cannot be read.
    #[tracing::instrument(name = "engine.check", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn check(&self, access: &Access) -> Result<CheckReport> {
        access.check_admin()?;
        let store = self.inner.store.check(self.inner.info.dim).await?;
        let mut problems = store.problems.clone();
        let mut indexed_messages = 0;
        let mut indexed_summaries = 0;
        let map = self.inner.namespaces.read().clone();
        for (name, ns) in map.iter() {
            let c = ns.index.counts();
            indexed_messages += c.messages;
            indexed_summaries += c.summaries;
            let stored = store
                .namespaces
                .get(name.as_str())
                .copied()
                .unwrap_or_default();
            if (stored.messages, stored.summaries) != (c.messages, c.summaries) {
                problems.push(format!(
                    "namespace {name}: the store has {} messages and {} summaries, the vector index {} and {}",
                    stored.messages, stored.summaries, c.messages, c.summaries
                ));
            }
            if c.lexical_documents != c.messages + c.summaries + c.entries {
                problems.push(format!(
                    "namespace {name}: the BM25 index has {} documents, the vector index {}",
                    c.lexical_documents,
                    c.messages + c.summaries + c.entries
                ));
            }
        }
        let now = chrono::Utc::now();
        for (name, ns) in map.iter() {
            // Every live entry must be indexed (an expired one may still be,
            // until the sweep deletes it).
            let live = self.inner.store.context_indexed(name.as_str(), now).await?;
            let missing = {
                let rows = ns.entries.lock();
                live.iter().filter(|(e, _)| !rows.has(&e.key)).count()
            };
            if missing > 0 {
                problems.push(format!(
                    "namespace {name}: {missing} of {} live context entries and board documents are not indexed",
                    live.len()
                ));
            }
        }
        for name in store.namespaces.keys() {
            if !map.keys().any(|n| n.as_str() == name) {
                problems.push(format!("namespace {name}: stored but not indexed"));
            }
        }
        Ok(CheckReport {
            store,
            indexed_messages,
            indexed_summaries,
            problems,
        })
    }

    /// One message by id.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown (or malformed) id, or one in a
    /// namespace the caller's access does not cover; [`Error::Forbidden`] without
    /// `read` there.
    #[tracing::instrument(name = "engine.get", level = "debug", skip_all, fields(key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn get(&self, access: &Access, id: &str) -> Result<Message> {
        let not_found = || Error::NotFound {
            what: "message",
            id: id.to_owned(),
        };
        let uuid = parse_id(id)?;
        let row = self
            .inner
            .store
            .row_of(&uuid)
            .await?
            .ok_or_else(not_found)?;
        let Some(message) = messages_of(self.inner.store.records(&[row]).await?).pop() else {
            return Err(not_found());
        };
        if !access.covers(&message.namespace) {
            return Err(not_found());
        }
        access.check(&NamespaceName::parse(&message.namespace)?, Scope::Read)?;
        Self::redacted(access, message)
    }

    /// The namespaces the caller's access covers, by name, with their counts and
    /// registry fields (empty ones included).
    pub fn namespaces(&self, access: &Access) -> Vec<NamespaceInfo> {
        // Copied out first: judging `name/**` patterns reads the registry again.
        let all: Vec<Arc<NamespaceState>> =
            self.inner.namespaces.read().values().cloned().collect();
        all.into_iter()
            .filter(|ns| access.check(&ns.name, Scope::Read).is_ok())
            .map(|ns| {
                let mut info = ns.info();
                if let Some(r) = &access.redaction {
                    r.mask_metadata(&mut info.metadata);
                }
                info
            })
            .filter(|i| i.created_at.is_some() || i.messages + i.summaries > 0)
            .collect()
    }

    /// Embeds texts with the engine's model: `[texts.len(), dim]`, unit length.
    /// Touches no memory, so it takes no access.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no input or an empty text, [`Error::TooLarge`]
    /// over `max_embed_inputs`, [`Error::Overloaded`].
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings> {
        let limits = &self.inner.config.limits;
        if texts.is_empty() {
            return Err(Error::invalid("input", "send at least one text"));
        }
        if texts.len() > limits.max_embed_inputs {
            return Err(Error::too_large(
                "input",
                format!(
                    "{} texts; the limit is {}",
                    texts.len(),
                    limits.max_embed_inputs
                ),
            ));
        }
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(Error::invalid(format!("input[{i}]"), "must not be empty"));
        }
        if let Some(i) = texts
            .iter()
            .position(|t| t.len() > limits.max_content_bytes)
        {
            return Err(Error::too_large(
                format!("input[{i}]"),
                "longer than the content limit",
            ));
        }
        self.inner.embed.embed(texts).await
    }

    /// The summaries of `namespace`, newest first.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without `read`,
    /// [`Error::Storage`].
    #[tracing::instrument(name = "engine.summaries", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn summaries(&self, access: &Access, namespace: &str) -> Result<Vec<Summary>> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        let Some(state) = self.inner.namespace(&ns) else {
            return Ok(Vec::new());
        };
        let mut rows = state.rows(HitKind::Summary);
        rows.reverse();
        let summaries: Vec<Summary> = self
            .inner
            .store
            .records(&rows)
            .await?
            .into_iter()
            .filter_map(|(_, r)| match r {
                Record::Summary(s) => Some(s),
                Record::Message(_) => None,
            })
            .collect();
        Self::redacted(access, summaries)
    }

    /// Messages of `namespace` not yet covered by a summary (0 for one the
    /// caller cannot read).
    pub fn unsummarized(&self, access: &Access, namespace: &str) -> usize {
        NamespaceName::parse(namespace)
            .ok()
            .filter(|ns| access.check(ns, Scope::Read).is_ok())
            .and_then(|ns| self.inner.namespace(&ns))
            .map_or(0, |ns| ns.short_term.lock().unsummarized())
    }

    /// Counts for `/health`, `/metrics` and `memoryd stats` (engine-wide; no
    /// record content).
    pub fn stats(&self) -> Stats {
        let map = self.inner.namespaces.read();
        let mut messages = 0;
        let mut summaries = 0;
        let mut namespaces = 0;
        let mut graphs = 0;
        let mut tail = 0;
        for ns in map.values() {
            let c = ns.index.counts();
            messages += c.messages;
            summaries += c.summaries;
            namespaces += usize::from(c.messages + c.summaries > 0);
            graphs += usize::from(c.graph);
            tail += c.graph_tail;
        }
        Stats {
            model: self.inner.info.id.clone(),
            dim: self.inner.info.dim,
            messages,
            summaries,
            namespaces,
            graph_namespaces: graphs,
            graph_tail_rows: tail,
            graphs_reloaded: self
                .inner
                .graphs_reloaded
                .load(std::sync::atomic::Ordering::Relaxed),
            graphs_reloading: self
                .inner
                .reloads_pending
                .load(std::sync::atomic::Ordering::Acquire),
            embed_queue_depth: self.inner.embed.depth(),
            disk_bytes: self.inner.store.size_on_disk(),
        }
    }

    /// Returns once no graph dump is being reloaded ([`Stats::graphs_reloading`]
    /// is 0; [`Stats::graphs_reloaded`] is final then). Open returns before the
    /// reloads end (each namespace is served by an exact scan until its graph
    /// is in); this waits for them: ~1.5 s at 100k vectors, ~14 s at 1M on two
    /// cores (README, "One node at scale"). Polls a counter every 50 ms.
    pub async fn wait_graph_reloads(&self) {
        while self
            .inner
            .reloads_pending
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Flushes the store (every acknowledged write already is; this is for shutdown).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn flush(&self) -> Result<()> {
        self.inner.store.flush().await
    }
}

impl Engine {
    /// Checks a page size against `1..=max_k`.
    pub(crate) fn check_limit(&self, limit: usize) -> Result<()> {
        let max = self.inner.config.limits.max_k;
        if limit == 0 || limit > max {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {max}"),
            ));
        }
        Ok(())
    }
}

fn messages_of(records: Vec<(u64, Record)>) -> Vec<Message> {
    records
        .into_iter()
        .filter_map(|(_, r)| match r {
            Record::Message(m) => Some(m),
            Record::Summary(_) => None,
        })
        .collect()
}

impl Inner {
    /// Ranks `states` (one namespace, or a namespace and its ancestors, nearest
    /// first), merges the rankings ([`crate::search::merge`]) and reads the
    /// records of the best, in chunks, until `k` pass the filters.
    #[allow(clippy::too_many_arguments)]
    async fn search(
        self: &Arc<Self>,
        states: Vec<Arc<NamespaceState>>,
        text: Option<String>,
        vector: Option<Arc<[f32]>>,
        mode: SearchMode,
        params: crate::core::params::HybridParams,
        k: usize,
        filter: Filter,
        kinds: Vec<HitKind>,
    ) -> Result<Vec<Hit>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let needs_metadata = !filter.metadata.is_empty();
        let mut fetch = if needs_metadata { k * 4 } else { k };
        let filter = Arc::new(filter);
        let kinds = Arc::new(kinds);
        let text: Option<Arc<str>> = text.map(Arc::from);
        let states = Arc::new(states);
        let now = chrono::Utc::now();
        loop {
            let (st, f, kd, t, v) = (
                states.clone(),
                filter.clone(),
                kinds.clone(),
                text.clone(),
                vector.clone(),
            );
            let ranked: Vec<Option<Ranked>> = blocking(move || {
                let q = RankQuery {
                    text: t.as_deref(),
                    vector: v.as_deref(),
                    mode,
                    params,
                };
                st.iter()
                    .map(|s| s.index.rank(&q, k, fetch, &f, &kd))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
            let lists: Vec<(usize, Ranked)> = ranked
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| r.map(|r| (i, r)))
                .collect();
            if lists.is_empty() {
                return Ok(Vec::new());
            }
            let exhausted = lists.iter().all(|(_, r)| r.exhausted);
            let live = lists.iter().map(|(_, r)| r.live).max().unwrap_or(0);
            let merged: Vec<(usize, Scored)> = if lists.len() == 1 {
                let (i, r) = &lists[0];
                r.candidates.iter().map(|s| (*i, *s)).collect()
            } else {
                let only: Vec<Ranked> = lists.iter().map(|(_, r)| r.clone()).collect();
                merge(&only, params.lexical_weight)
                    .into_iter()
                    .map(|(j, s)| (lists[j].0, s))
                    .collect()
            };
            let mut hits = Vec::with_capacity(k);
            // Read candidates in chunks: most searches need only the first k.
            'candidates: for chunk in merged.chunks(k.max(8)) {
                let rows: Vec<u64> = chunk
                    .iter()
                    .map(|(_, s)| s.seq)
                    .filter(|&r| r < ENTRY_ROW_BASE)
                    .collect();
                let mut records: std::collections::HashMap<u64, Record> =
                    self.store.records(&rows).await?.into_iter().collect();
                for &(i, scored) in chunk {
                    let ns = &states[i];
                    let hit = if scored.seq >= ENTRY_ROW_BASE {
                        // Deleted or rewritten since the index was read: skipped.
                        let key = ns.entries.lock().key(scored.seq).map(str::to_owned);
                        let Some(key) = key else { continue };
                        let Some(entry) = self
                            .store
                            .context_get(ns.name.as_str(), &key)
                            .await?
                            .filter(|e| e.is_live(now))
                        else {
                            continue;
                        };
                        match entry_hit(entry, scored.score) {
                            Ok(hit) => hit,
                            Err(e) => {
                                tracing::warn!(namespace = %ns.name, error = %e, "unreadable board document skipped");
                                continue;
                            }
                        }
                    } else {
                        // Deleted since the index was read: skipped.
                        let Some(record) = records.remove(&scored.seq) else {
                            continue;
                        };
                        match record {
                            Record::Summary(summary) => Hit {
                                id: summary.id.clone(),
                                kind: HitKind::Summary,
                                namespace: summary.namespace.clone(),
                                score: scored.score,
                                message: None,
                                summary: Some(summary),
                                context: None,
                                board: None,
                                agent: None,
                            },
                            Record::Message(message) => {
                                if needs_metadata
                                    && !filter
                                        .metadata
                                        .iter()
                                        .all(|(key, v)| message.metadata.get(key) == Some(v))
                                {
                                    continue;
                                }
                                Hit {
                                    id: message.id.clone(),
                                    kind: HitKind::Message,
                                    namespace: message.namespace.clone(),
                                    score: scored.score,
                                    message: Some(message),
                                    summary: None,
                                    context: None,
                                    board: None,
                                    agent: None,
                                }
                            }
                        }
                    };
                    hits.push(hit);
                    if hits.len() == k {
                        break 'candidates;
                    }
                }
            }
            if hits.len() == k || exhausted {
                return Ok(hits);
            }
            fetch = (fetch * 4).min(live);
        }
    }
}

/// A search hit for a context entry or board document. Entries carry no
/// message metadata, so a metadata filter never admits them (the index's filter
/// already keeps them out).
fn entry_hit(entry: ContextEntry, score: f32) -> Result<Hit> {
    let namespace = entry.namespace.clone();
    if entry.key.starts_with(BOARD_KEY_PREFIX) {
        let item = super::board::item_of(&entry)?;
        let id = match &item {
            BoardItem::Problem(p) => p.id.clone(),
            BoardItem::Proposal(p) => p.id.clone(),
        };
        Ok(Hit {
            id,
            kind: HitKind::Board,
            namespace,
            score,
            message: None,
            summary: None,
            context: None,
            board: Some(item),
            agent: None,
        })
    } else if entry.key.starts_with(crate::core::agents::AGENT_KEY_PREFIX) {
        let agent = super::agents::record_of(&entry)?;
        Ok(Hit {
            id: agent.id.clone(),
            kind: HitKind::Agent,
            namespace,
            score,
            message: None,
            summary: None,
            context: None,
            board: None,
            agent: Some(agent),
        })
    } else {
        Ok(Hit {
            id: entry.key.clone(),
            kind: HitKind::Context,
            namespace,
            score,
            message: None,
            summary: None,
            context: Some(entry),
            board: None,
            agent: None,
        })
    }
}
