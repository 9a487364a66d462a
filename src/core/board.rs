//! The blackboard: agents post problems, propose solutions with a confidence,
//! vote on proposals, and one of them resolves the problem with a proposal.
//!
//! Problems and proposals are versioned documents stored beside context entries
//! (under keys no caller can write, see [`BOARD_KEY_PREFIX`]), so they share the
//! context store's compare-and-set, history, change log and search indexing;
//! their change-log kinds are their own (`board.*`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every board document's key starts with this. Context keys must start with a
/// letter or digit, so no context write can reach a board document.
pub const BOARD_KEY_PREFIX: &str = "~board:";

/// Key of a problem document.
pub(crate) fn problem_key(id: &str) -> String {
    format!("{BOARD_KEY_PREFIX}problem:{id}")
}

/// Prefix of every problem document's key.
pub(crate) const PROBLEM_KEY_PREFIX: &str = "~board:problem:";

/// Prefix of the keys of a problem's proposals.
pub(crate) fn proposals_prefix(problem_id: &str) -> String {
    format!("{BOARD_KEY_PREFIX}proposal:{problem_id}:")
}

/// Key of a proposal document (under its problem, so a problem's proposals are
/// one key range).
pub(crate) fn proposal_key(problem_id: &str, id: &str) -> String {
    format!("{}{id}", proposals_prefix(problem_id))
}

/// `(problem id, proposal id)` of a proposal key.
pub(crate) fn parse_proposal_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(BOARD_KEY_PREFIX)?
        .strip_prefix("proposal:")?
        .split_once(':')
}

/// Whether a problem is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProblemStatus {
    /// Proposals and votes are accepted.
    Open,
    /// A proposal was chosen; the problem takes no more proposals or votes.
    Resolved,
}

/// How a problem was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resolution {
    /// The chosen proposal.
    pub proposal_id: String,
    /// Who resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A problem on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Unique id (UUID v7).
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// A short title.
    pub title: String,
    /// The details.
    pub body: String,
    /// Who posted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// `open` or `resolved`.
    pub status: ProblemStatus,
    /// Version of the problem document (1 when posted; resolving makes a new
    /// one). `expected_version` of a resolve is compared with it.
    pub version: u64,
    /// When it was posted.
    pub created_at: DateTime<Utc>,
    /// Set when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// A proposed solution to a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Proposal {
    /// Unique id (UUID v7).
    pub id: String,
    /// The problem it answers.
    pub problem_id: String,
    /// Its namespace.
    pub namespace: String,
    /// The proposal.
    pub body: String,
    /// The proposer's confidence, in [0, 1].
    pub confidence: f64,
    /// Who proposed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
    /// One vote per agent: `+1` or `-1` (re-voting replaces).
    pub votes: BTreeMap<String, i8>,
    /// Sum of `votes`.
    pub score: i64,
    /// Version of the proposal document (one more per vote).
    pub version: u64,
}

/// A problem with its proposals, ranked by vote total, then confidence, then
/// time (older first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProblemDetail {
    /// The problem.
    #[serde(flatten)]
    pub problem: Problem,
    /// Its proposals, best first.
    pub proposals: Vec<Proposal>,
}

/// A board document as search returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BoardItem {
    /// A problem.
    Problem(Problem),
    /// A proposal.
    Proposal(Proposal),
}

impl BoardItem {
    /// The text search indexes for it: a problem's title and body, a
    /// proposal's body.
    pub fn search_text(&self) -> String {
        match self {
            BoardItem::Problem(p) => problem_text(&p.title, &p.body),
            BoardItem::Proposal(p) => p.body.clone(),
        }
    }
}

pub(crate) fn problem_text(title: &str, body: &str) -> String {
    format!("{title}\n{body}")
}

/// `POST …/board/problems` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProblem {
    /// A short title, 1..=1024 bytes.
    pub title: String,
    /// The details (may be empty; the content limit applies).
    #[serde(default)]
    pub body: String,
    /// Who posts it (defaults to the caller's agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST …/board/problems/{id}/proposals` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProposal {
    /// The proposal (non-empty; the content limit applies).
    pub body: String,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Who proposes it (defaults to the caller's agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST …/board/proposals/{id}/votes` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVote {
    /// The voter (defaults to the caller's agent; one of the two is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// `+1` or `-1`.
    pub value: i64,
}

/// `POST …/board/problems/{id}/resolve` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// The chosen proposal (one of the problem's).
    pub proposal_id: String,
    /// Who resolves it (defaults to the caller's agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Compare-and-set on the problem's version (`If-Match` over HTTP); without
    /// it the version the engine reads is used, so two racing resolutions still
    /// cannot both win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// Orders proposals best first: vote total, then confidence, then time, then id.
pub(crate) fn rank_proposals(proposals: &mut [Proposal]) {
    proposals.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(b.confidence.total_cmp(&a.confidence))
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_keys_round_trip() {
        let k = proposal_key("p1", "x9");
        assert!(k.starts_with(BOARD_KEY_PREFIX));
        assert_eq!(parse_proposal_key(&k), Some(("p1", "x9")));
        assert_eq!(parse_proposal_key(&problem_key("p1")), None);
        assert!(crate::core::context::validate_key(&k).is_err());
    }

    #[test]
    fn proposals_rank_by_votes_then_confidence_then_time() {
        let t = |s| DateTime::from_timestamp(s, 0).expect("time");
        let p = |id: &str, score, confidence, at| Proposal {
            id: id.into(),
            problem_id: "p".into(),
            namespace: "n".into(),
            body: String::new(),
            confidence,
            agent_id: None,
            created_at: t(at),
            votes: BTreeMap::new(),
            score,
            version: 1,
        };
        let mut v = vec![
            p("old-sure", 1, 0.9, 1),
            p("voted", 2, 0.1, 5),
            p("new-sure", 1, 0.9, 2),
            p("unsure", 1, 0.5, 0),
        ];
        rank_proposals(&mut v);
        let ids: Vec<&str> = v.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["voted", "old-sure", "new-sure", "unsure"]);
    }
}
