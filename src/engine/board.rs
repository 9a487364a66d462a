//! The blackboard ([`crate::core::board`]): problems, proposals, votes and
//! resolutions as versioned documents beside the context entries, written
//! through the one commit point (so each is durable, in the change log with a
//! `board.*` kind, and searchable as `kind: "board"`).
//!
//! A vote is a JSON Merge Patch of `{"votes": {agent: ±1}}` applied inside the
//! store's transaction, so concurrent votes on one proposal never lose each
//! other; a resolution is a compare-and-set on the problem's version, so two
//! agents cannot resolve one problem differently.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Engine, validate};
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::board::{
    BoardItem, NewProblem, NewProposal, NewVote, PROBLEM_KEY_PREFIX, Problem, ProblemDetail,
    ProblemStatus, Proposal, Resolution, Resolve, problem_key, problem_text, proposal_key,
    proposals_prefix, rank_proposals,
};
use crate::core::context::{ContextEntry, ContextOp};
use crate::core::error::{Error, Result};
use crate::core::types::to_micros;
use crate::storage::{ChangeKind, ContextPut, Mutation};

/// Longest problem title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// One page of [`Engine::board_problems`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProblemPage {
    /// Problems, oldest first.
    pub problems: Vec<Problem>,
    /// The id to pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A problem document's value.
#[derive(Serialize, Deserialize)]
struct ProblemDoc {
    title: String,
    body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_id: Option<String>,
    status: ProblemStatus,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolution: Option<Resolution>,
}

/// A proposal document's value.
#[derive(Serialize, Deserialize)]
struct ProposalDoc {
    body: String,
    confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_id: Option<String>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    votes: std::collections::BTreeMap<String, i8>,
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        tree: "context",
        message: format!("board document {key}: {e}"),
    }
}

/// The problem stored in `entry`.
pub(crate) fn problem_of(entry: &ContextEntry) -> Result<Problem> {
    let id = entry
        .key
        .strip_prefix(PROBLEM_KEY_PREFIX)
        .ok_or_else(|| corrupt(&entry.key, "not a problem key"))?;
    let doc: ProblemDoc =
        serde_json::from_value(entry.value.clone()).map_err(|e| corrupt(&entry.key, e))?;
    Ok(Problem {
        id: id.to_owned(),
        namespace: entry.namespace.clone(),
        title: doc.title,
        body: doc.body,
        agent_id: doc.agent_id,
        status: doc.status,
        version: entry.version,
        created_at: doc.created_at,
        resolution: doc.resolution,
    })
}

/// The proposal stored in `entry`.
pub(crate) fn proposal_of(entry: &ContextEntry) -> Result<Proposal> {
    let (problem_id, id) = crate::core::board::parse_proposal_key(&entry.key)
        .ok_or_else(|| corrupt(&entry.key, "not a proposal key"))?;
    let doc: ProposalDoc =
        serde_json::from_value(entry.value.clone()).map_err(|e| corrupt(&entry.key, e))?;
    Ok(Proposal {
        id: id.to_owned(),
        problem_id: problem_id.to_owned(),
        namespace: entry.namespace.clone(),
        body: doc.body,
        confidence: doc.confidence,
        agent_id: doc.agent_id,
        created_at: doc.created_at,
        score: doc.votes.values().map(|&v| i64::from(v)).sum(),
        votes: doc.votes,
        version: entry.version,
    })
}

/// The board item stored in `entry` (a problem or a proposal).
pub(crate) fn item_of(entry: &ContextEntry) -> Result<BoardItem> {
    if entry.key.starts_with(PROBLEM_KEY_PREFIX) {
        problem_of(entry).map(BoardItem::Problem)
    } else {
        proposal_of(entry).map(BoardItem::Proposal)
    }
}

/// Board ids are UUIDs; anything else names nothing.
fn check_id(what: &'static str, id: &str) -> Result<()> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| Error::NotFound {
            what,
            id: id.to_owned(),
        })
}

impl Engine {
    /// The author of a write: `given`, else the caller's agent; checked as a
    /// label. A caller bound to an agent cannot name another
    /// ([`Error::Forbidden`], see `write::stamp`).
    pub(crate) fn author(&self, access: &Access, given: Option<String>) -> Result<Option<String>> {
        let agent = super::write::stamp(access, given)?;
        if let Some(a) = &agent {
            let max = self.inner.config.limits.max_label_bytes;
            if a.is_empty() || a.len() > max {
                return Err(Error::invalid(
                    "agent_id",
                    format!("must be 1 to {max} bytes"),
                ));
            }
            validate::label("agent_id", a)?;
        }
        Ok(agent)
    }

    fn check_text(&self, field: &str, text: &str, required: bool) -> Result<()> {
        if required && text.trim().is_empty() {
            return Err(Error::invalid(
                field,
                "must contain a non-whitespace character",
            ));
        }
        if text.len() > self.inner.config.limits.max_content_bytes {
            return Err(Error::too_large(field, "longer than the content limit"));
        }
        validate::content(field, text)
    }

    /// Writes one board document through the commit point.
    #[allow(clippy::too_many_arguments)]
    async fn board_put(
        &self,
        access: &Access,
        ns: &NamespaceName,
        key: String,
        op: ContextOp,
        value: Value,
        expected_version: Option<u64>,
        agent_id: Option<String>,
        text: Option<String>,
        change: (ChangeKind, Vec<String>),
        open_problem: Option<String>,
    ) -> Result<ContextEntry> {
        let vector = match text {
            Some(t) => Some(self.inner.embed.embed(vec![t]).await?.data),
            None => None,
        };
        let put = ContextPut {
            key,
            op,
            value,
            expected_version,
            agent_id,
            expires_at: None,
            at: to_micros(Utc::now()),
            max_value_bytes: self.inner.config.limits.max_context_value_bytes,
            keep_versions: self.inner.config.context_history_versions,
            expire_version: None,
            vector,
            change: Some(change),
        };
        // Only a new problem may create the namespace; the rest need its problem.
        let creates = open_problem.is_none() && put.expected_version == Some(0);
        let (_, committed) = self
            .inner
            .commit(access, ns, creates, move |state| {
                // Checked under the namespace's writer lock: no proposal or vote
                // lands after the problem's resolution.
                if let Some(p) = open_problem
                    && state.entries.lock().resolved.contains(&p)
                {
                    return Err(Error::Conflict(format!(
                        "problem {p} is resolved; it takes no more proposals or votes"
                    )));
                }
                Ok(Mutation::PutContext(put))
            })
            .await?;
        committed
            .context
            .ok_or_else(|| Error::Storage("the store returned no board document".into()))
    }

    async fn board_entry(
        &self,
        ns: &NamespaceName,
        what: &'static str,
        id: &str,
        key: &str,
    ) -> Result<ContextEntry> {
        self.inner
            .store
            .context_get(ns.as_str(), key)
            .await?
            .filter(|e| !e.deleted)
            .ok_or_else(|| Error::NotFound {
                what,
                id: id.to_owned(),
            })
    }

    /// Posts a problem (status `open`, version 1).
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`]; [`Error::Forbidden`] without `write`;
    /// [`Error::InvalidInput`] for an empty title or a bad `agent_id`;
    /// [`Error::TooLarge`] for a title over [`MAX_TITLE_BYTES`] or a body over
    /// the content limit; [`Error::Overloaded`].
    #[tracing::instrument(name = "engine.board_post", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn board_post(
        &self,
        access: &Access,
        namespace: &str,
        problem: NewProblem,
    ) -> Result<Problem> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        self.check_text("title", &problem.title, true)?;
        if problem.title.len() > MAX_TITLE_BYTES {
            return Err(Error::too_large(
                "title",
                format!("longer than {MAX_TITLE_BYTES} bytes"),
            ));
        }
        self.check_text("body", &problem.body, false)?;
        let agent_id = self.author(access, problem.agent_id)?;
        let id = uuid::Uuid::now_v7().to_string();
        let doc = ProblemDoc {
            title: problem.title,
            body: problem.body,
            agent_id: agent_id.clone(),
            status: ProblemStatus::Open,
            created_at: to_micros(Utc::now()),
            resolution: None,
        };
        let text = problem_text(&doc.title, &doc.body);
        let value = serde_json::to_value(&doc).map_err(|e| Error::Storage(e.to_string()))?;
        let entry = self
            .board_put(
                access,
                &ns,
                problem_key(&id),
                ContextOp::Set,
                value,
                Some(0),
                agent_id,
                Some(text),
                (ChangeKind::BoardProblemCreated, vec![id]),
                None,
            )
            .await?;
        Self::redacted(access, problem_of(&entry)?)
    }

    /// Proposes a solution to an open problem.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown problem; [`Error::Conflict`] when it is
    /// resolved; [`Error::InvalidInput`] for an empty body or a confidence
    /// outside [0, 1]; [`Error::Forbidden`] without `write`.
    #[tracing::instrument(name = "engine.board_propose", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn board_propose(
        &self,
        access: &Access,
        namespace: &str,
        problem_id: &str,
        proposal: NewProposal,
    ) -> Result<Proposal> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        check_id("problem", problem_id)?;
        self.check_text("body", &proposal.body, true)?;
        if !(0.0..=1.0).contains(&proposal.confidence) {
            return Err(Error::invalid("confidence", "must be a number from 0 to 1"));
        }
        let agent_id = self.author(access, proposal.agent_id)?;
        let problem = problem_of(
            &self
                .board_entry(&ns, "problem", problem_id, &problem_key(problem_id))
                .await?,
        )?;
        if problem.status == ProblemStatus::Resolved {
            return Err(Error::Conflict(format!(
                "problem {problem_id} is resolved; it takes no more proposals"
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let doc = ProposalDoc {
            body: proposal.body,
            confidence: proposal.confidence,
            agent_id: agent_id.clone(),
            created_at: to_micros(Utc::now()),
            votes: Default::default(),
        };
        let text = doc.body.clone();
        let value = serde_json::to_value(&doc).map_err(|e| Error::Storage(e.to_string()))?;
        let entry = self
            .board_put(
                access,
                &ns,
                proposal_key(problem_id, &id),
                ContextOp::Set,
                value,
                Some(0),
                agent_id,
                Some(text),
                (
                    ChangeKind::BoardProposalCreated,
                    vec![id, problem_id.to_owned()],
                ),
                Some(problem_id.to_owned()),
            )
            .await?;
        Self::redacted(access, proposal_of(&entry)?)
    }

    /// Casts (or replaces) an agent's vote on a proposal: `+1` or `-1`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown proposal; [`Error::InvalidInput`] for
    /// another value or no agent (neither `agent_id` nor the caller's);
    /// [`Error::Conflict`] when its problem is resolved; [`Error::Forbidden`].
    #[tracing::instrument(name = "engine.board_vote", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn board_vote(
        &self,
        access: &Access,
        namespace: &str,
        proposal_id: &str,
        vote: NewVote,
    ) -> Result<Proposal> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        check_id("proposal", proposal_id)?;
        if vote.value != 1 && vote.value != -1 {
            return Err(Error::invalid("value", "must be 1 or -1"));
        }
        let Some(agent) = self.author(access, vote.agent_id)? else {
            return Err(Error::invalid(
                "agent_id",
                "a vote needs the voter's agent id (one vote per agent)",
            ));
        };
        let not_found = || Error::NotFound {
            what: "proposal",
            id: proposal_id.to_owned(),
        };
        let problem_id = self
            .inner
            .namespace(&ns)
            .and_then(|s| s.entries.lock().proposals.get(proposal_id).cloned())
            .ok_or_else(not_found)?;
        let key = proposal_key(&problem_id, proposal_id);
        self.board_entry(&ns, "proposal", proposal_id, &key).await?;
        let problem = problem_of(
            &self
                .board_entry(&ns, "problem", &problem_id, &problem_key(&problem_id))
                .await?,
        )?;
        if problem.status == ProblemStatus::Resolved {
            return Err(Error::Conflict(format!(
                "problem {problem_id} is resolved; it takes no more votes"
            )));
        }
        let entry = self
            .board_put(
                access,
                &ns,
                key,
                ContextOp::Patch,
                json!({"votes": {agent.clone(): vote.value}}),
                None,
                Some(agent),
                None,
                (
                    ChangeKind::BoardVoted,
                    vec![proposal_id.to_owned(), problem_id.clone()],
                ),
                Some(problem_id),
            )
            .await?;
        Self::redacted(access, proposal_of(&entry)?)
    }

    /// Resolves an open problem with one of its proposals, compare-and-set on
    /// the problem's version (`expected_version`, else the version read).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown problem or proposal;
    /// [`Error::InvalidInput`] for a proposal of another problem;
    /// [`Error::Conflict`] when the problem is already resolved;
    /// [`Error::PreconditionFailed`] when `expected_version` is not its version;
    /// [`Error::Forbidden`].
    #[tracing::instrument(name = "engine.board_resolve", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn board_resolve(
        &self,
        access: &Access,
        namespace: &str,
        problem_id: &str,
        resolve: Resolve,
    ) -> Result<Problem> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Write)?;
        check_id("problem", problem_id)?;
        if uuid::Uuid::parse_str(&resolve.proposal_id).is_err() {
            return Err(Error::invalid("proposal_id", "not a proposal id"));
        }
        let agent_id = self.author(access, resolve.agent_id)?;
        let entry = self
            .board_entry(&ns, "problem", problem_id, &problem_key(problem_id))
            .await?;
        let problem = problem_of(&entry)?;
        let owner = self.inner.namespace(&ns).and_then(|s| {
            s.entries
                .lock()
                .proposals
                .get(&resolve.proposal_id)
                .cloned()
        });
        match owner {
            None => {
                return Err(Error::NotFound {
                    what: "proposal",
                    id: resolve.proposal_id,
                });
            }
            Some(p) if p != problem_id => {
                return Err(Error::invalid(
                    "proposal_id",
                    format!("is a proposal of problem {p}, not of {problem_id}"),
                ));
            }
            Some(_) => {}
        }
        if problem.status == ProblemStatus::Resolved {
            return Err(Error::Conflict(format!(
                "problem {problem_id} is already resolved"
            )));
        }
        let expected = resolve.expected_version.unwrap_or(entry.version);
        let mut doc: ProblemDoc =
            serde_json::from_value(entry.value.clone()).map_err(|e| corrupt(&entry.key, e))?;
        doc.status = ProblemStatus::Resolved;
        doc.resolution = Some(Resolution {
            proposal_id: resolve.proposal_id.clone(),
            agent_id: agent_id.clone(),
            at: to_micros(Utc::now()),
        });
        let value = serde_json::to_value(&doc).map_err(|e| Error::Storage(e.to_string()))?;
        let written = self
            .board_put(
                access,
                &ns,
                problem_key(problem_id),
                ContextOp::Set,
                value,
                Some(expected),
                agent_id,
                None,
                (
                    ChangeKind::BoardResolved,
                    vec![problem_id.to_owned(), resolve.proposal_id],
                ),
                None,
            )
            .await;
        match written {
            Ok(e) => Self::redacted(access, problem_of(&e)?),
            // Lost a race: say why in the board's terms when it was a resolution.
            Err(Error::PreconditionFailed { .. }) if resolve.expected_version.is_none() => {
                Err(Error::Conflict(format!(
                    "problem {problem_id} changed while it was being resolved (another agent resolved it)"
                )))
            }
            Err(e) => Self::redact_written(access, Err(e)),
        }
    }

    /// Problems of a namespace, oldest first, optionally only those with
    /// `status`, `limit` (1..=`max_k`) at a time after the problem `after`.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without `read`,
    /// [`Error::InvalidInput`] for `limit` or a malformed `after`.
    #[tracing::instrument(name = "engine.board_problems", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref(), limit))]
    pub async fn board_problems(
        &self,
        access: &Access,
        namespace: &str,
        status: Option<ProblemStatus>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ProblemPage> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        self.check_limit(limit)?;
        if let Some(a) = after {
            uuid::Uuid::parse_str(a)
                .map_err(|_| Error::invalid("after", "not an id returned by a previous page"))?;
        }
        let now = Utc::now();
        let mut cursor = after.map(problem_key);
        let mut problems = Vec::new();
        loop {
            let page = self
                .inner
                .store
                .context_list(ns.as_str(), PROBLEM_KEY_PREFIX, cursor.as_deref(), 256, now)
                .await?;
            let done = page.len() < 256;
            cursor = page.last().map(|e| e.key.clone());
            for e in &page {
                let p = problem_of(e)?;
                if status.is_none_or(|s| s == p.status) {
                    problems.push(p);
                    if problems.len() > limit {
                        break;
                    }
                }
            }
            if done || problems.len() > limit {
                break;
            }
        }
        let next = (problems.len() > limit).then(|| {
            problems.truncate(limit);
            problems.last().map(|p| p.id.clone())
        });
        Ok(ProblemPage {
            problems: Self::redacted(access, problems)?,
            next: next.flatten(),
        })
    }

    /// A problem with its proposals, best first (vote total, then confidence,
    /// then time).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Forbidden`] without `read`.
    #[tracing::instrument(name = "engine.board_problem", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn board_problem(
        &self,
        access: &Access,
        namespace: &str,
        problem_id: &str,
    ) -> Result<ProblemDetail> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        check_id("problem", problem_id)?;
        let problem = problem_of(
            &self
                .board_entry(&ns, "problem", problem_id, &problem_key(problem_id))
                .await?,
        )?;
        let prefix = proposals_prefix(problem_id);
        let now = Utc::now();
        let mut proposals = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .inner
                .store
                .context_list(ns.as_str(), &prefix, cursor.as_deref(), 256, now)
                .await?;
            let done = page.len() < 256;
            cursor = page.last().map(|e| e.key.clone());
            for e in &page {
                proposals.push(proposal_of(e)?);
            }
            if done {
                break;
            }
        }
        rank_proposals(&mut proposals);
        Self::redacted(access, ProblemDetail { problem, proposals })
    }
}
