//! The blackboard and searchable shared context through the library API:
//! problems, proposals ranked by votes, compare-and-set resolution, the change
//! log, restart, search by `kind`, and `scope: inherit`. The hash embedder
//! stands in for the model; searches that must find words use `lexical` mode.

use std::sync::Arc;
use std::time::Duration;

use memoryd::embed::HashEmbedder;
use memoryd::{
    Access, ChangeKind, ContextWrite, Engine, EngineConfig, HitKind, NamespacePattern, NewMessage,
    NewProblem, NewProposal, NewVote, ProblemStatus, Resolve, Role, Scope, SearchMode,
    SearchRequest, SearchScope, SledStore,
};
use serde_json::json;

use crate::common::rt;

fn open(dir: &std::path::Path) -> Engine {
    let mut config = EngineConfig::with_data_dir(dir);
    config.summarize.enabled = false;
    // No background sweep during a test: expiry is seen by the reads themselves.
    config.summarize.tick = Duration::from_secs(3600);
    let store = SledStore::open(dir).unwrap();
    Engine::open_with_store(config, Arc::new(HashEmbedder::new(16)), Arc::new(store)).unwrap()
}

fn problem(title: &str, body: &str) -> NewProblem {
    NewProblem {
        title: title.into(),
        body: body.into(),
        agent_id: None,
    }
}

fn proposal(body: &str, confidence: f64) -> NewProposal {
    NewProposal {
        body: body.into(),
        confidence,
        agent_id: None,
    }
}

fn vote(agent: &str, value: i64) -> NewVote {
    NewVote {
        agent_id: Some(agent.into()),
        value,
    }
}

fn lexical(query: &str, kinds: Vec<HitKind>) -> SearchRequest {
    SearchRequest::text(query, 10)
        .with_mode(SearchMode::Lexical)
        .with_kinds(kinds)
}

#[test]
fn proposals_rank_by_votes_then_confidence_and_every_step_is_in_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full().with_agent("triage");
        // Votes and the resolution name their agents: a caller not bound to one.
        let desk = Access::full();
        let ns = "debug-42";
        let p = e
            .board_post(&me, ns, problem("Flaky test", "test_upload fails 1 in 5"))
            .await
            .unwrap();
        assert_eq!(
            (p.status, p.version, p.agent_id.as_deref()),
            (ProblemStatus::Open, 1, Some("triage"))
        );
        let race = e
            .board_propose(&me, ns, &p.id, proposal("a race in the uploader", 0.6))
            .await
            .unwrap();
        let timeout = e
            .board_propose(&me, ns, &p.id, proposal("the timeout is too short", 0.9))
            .await
            .unwrap();
        let dns = e
            .board_propose(&me, ns, &p.id, proposal("DNS", 0.2))
            .await
            .unwrap();
        // Before any vote: confidence decides.
        let d = e.board_problem(&me, ns, &p.id).await.unwrap();
        let order: Vec<&str> = d.proposals.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, [&timeout.id, &race.id, &dns.id]);
        // Votes outweigh confidence; a re-vote replaces the agent's vote.
        e.board_vote(&desk, ns, &race.id, vote("a", 1))
            .await
            .unwrap();
        e.board_vote(&desk, ns, &race.id, vote("b", 1))
            .await
            .unwrap();
        e.board_vote(&desk, ns, &timeout.id, vote("c", 1))
            .await
            .unwrap();
        e.board_vote(&desk, ns, &dns.id, vote("a", -1))
            .await
            .unwrap();
        let v = e
            .board_vote(&desk, ns, &race.id, vote("b", -1))
            .await
            .unwrap();
        assert_eq!((v.score, v.votes.len()), (0, 2), "b's vote was replaced");
        let v = e
            .board_vote(&desk, ns, &race.id, vote("b", 1))
            .await
            .unwrap();
        assert_eq!(v.score, 2);
        let d = e.board_problem(&me, ns, &p.id).await.unwrap();
        let order: Vec<&str> = d.proposals.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, [&race.id, &timeout.id, &dns.id]);
        assert_eq!(d.proposals[2].score, -1);

        let resolved = e
            .board_resolve(
                &desk,
                ns,
                &p.id,
                Resolve {
                    proposal_id: race.id.clone(),
                    agent_id: Some("lead".into()),
                    expected_version: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(resolved.status, ProblemStatus::Resolved);
        assert_eq!(resolved.version, 2);
        let r = resolved.resolution.unwrap();
        assert_eq!(
            (r.proposal_id.as_str(), r.agent_id.as_deref()),
            (race.id.as_str(), Some("lead"))
        );

        let kinds: Vec<ChangeKind> = e
            .changes(&me, ns, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.kind)
            .collect();
        use ChangeKind::*;
        assert_eq!(
            kinds,
            [
                NamespaceCreated,
                BoardProblemCreated,
                BoardProposalCreated,
                BoardProposalCreated,
                BoardProposalCreated,
                BoardVoted,
                BoardVoted,
                BoardVoted,
                BoardVoted,
                BoardVoted,
                BoardVoted,
                BoardResolved
            ]
        );
        let last = e.changes(&me, ns, 11, 1).await.unwrap().remove(0);
        assert_eq!(last.ids, [p.id.clone(), race.id.clone()]);
        // Board documents are not context entries.
        let page = e.context_list(&me, ns, "", None, 100).await.unwrap();
        assert!(page.entries.is_empty(), "{page:?}");
    });
}

/// Two agents resolving at once: exactly one resolution sticks, whether the
/// loser sees the problem resolved or loses the compare-and-set on its version
/// (which `a_stale_expected_version_on_an_open_problem_is_412` pins down).
#[test]
fn two_agents_cannot_resolve_one_problem_differently() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        let ns = "vote";
        let p = e
            .board_post(&me, ns, problem("Pick a fix", ""))
            .await
            .unwrap();
        let a = e
            .board_propose(&me, ns, &p.id, proposal("fix A", 0.5))
            .await
            .unwrap();
        let b = e
            .board_propose(&me, ns, &p.id, proposal("fix B", 0.5))
            .await
            .unwrap();
        let resolve = |proposal: &str, agent: &str| {
            let (e, id, proposal, agent) = (
                e.clone(),
                p.id.clone(),
                proposal.to_owned(),
                agent.to_owned(),
            );
            tokio::spawn(async move {
                e.board_resolve(
                    &Access::full(),
                    "vote",
                    &id,
                    Resolve {
                        proposal_id: proposal,
                        agent_id: Some(agent),
                        expected_version: None,
                    },
                )
                .await
            })
        };
        let (ra, rb) = (resolve(&a.id, "alice"), resolve(&b.id, "bob"));
        let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
        assert!(ra.is_ok() != rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
        let loser = ra.as_ref().err().or(rb.as_ref().err()).unwrap();
        assert_eq!(loser.code(), "conflict", "{loser}");
        let winner = ra.as_ref().ok().or(rb.as_ref().ok()).unwrap();
        let d = e.board_problem(&me, ns, &p.id).await.unwrap();
        assert_eq!(d.problem.resolution, winner.resolution);
        assert_eq!(d.problem.version, 2);
        // A resolved problem takes nothing more (a second resolution, even with
        // its old version, is a conflict).
        let err = e
            .board_resolve(
                &me,
                ns,
                &p.id,
                Resolve {
                    proposal_id: a.id.clone(),
                    agent_id: None,
                    expected_version: Some(1),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "already resolved: {err}");
        let err = e
            .board_propose(&me, ns, &p.id, proposal("late", 0.1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
        let err = e
            .board_vote(&me, ns, &a.id, vote("x", 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
        let open = e
            .board_problems(&me, ns, Some(ProblemStatus::Open), None, 10)
            .await
            .unwrap();
        assert!(open.problems.is_empty());
        let resolved = e
            .board_problems(&me, ns, Some(ProblemStatus::Resolved), None, 10)
            .await
            .unwrap();
        assert_eq!(resolved.problems.len(), 1);
    });
}

#[test]
fn a_stale_expected_version_on_an_open_problem_is_412() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        let p = e.board_post(&me, "n", problem("t", "")).await.unwrap();
        let a = e
            .board_propose(&me, "n", &p.id, proposal("x", 0.5))
            .await
            .unwrap();
        let err = e
            .board_resolve(
                &me,
                "n",
                &p.id,
                Resolve {
                    proposal_id: a.id,
                    agent_id: None,
                    expected_version: Some(7),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "precondition_failed");
        let d = e.board_problem(&me, "n", &p.id).await.unwrap();
        assert_eq!(
            (d.problem.status, d.problem.version),
            (ProblemStatus::Open, 1)
        );
    });
}

#[test]
fn bad_board_input_is_rejected_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        let ns = "n";
        let p = e.board_post(&me, ns, problem("t", "")).await.unwrap();
        let q = e.board_post(&me, ns, problem("other", "")).await.unwrap();
        let a = e
            .board_propose(&me, ns, &p.id, proposal("x", 0.5))
            .await
            .unwrap();
        let before = e.changes(&me, ns, 0, 1000).await.unwrap().len();
        let unknown = uuid::Uuid::now_v7().to_string();
        let cases: Vec<(&str, memoryd::Error)> = vec![
            (
                "empty title",
                e.board_post(&me, ns, problem("  ", "b")).await.unwrap_err(),
            ),
            (
                "long title",
                e.board_post(&me, ns, problem(&"t".repeat(2000), ""))
                    .await
                    .unwrap_err(),
            ),
            (
                "nul in body",
                e.board_post(&me, ns, problem("t", "a\0b"))
                    .await
                    .unwrap_err(),
            ),
            (
                "confidence > 1",
                e.board_propose(&me, ns, &p.id, proposal("x", 1.5))
                    .await
                    .unwrap_err(),
            ),
            (
                "confidence NaN",
                e.board_propose(&me, ns, &p.id, proposal("x", f64::NAN))
                    .await
                    .unwrap_err(),
            ),
            (
                "empty proposal",
                e.board_propose(&me, ns, &p.id, proposal("", 0.5))
                    .await
                    .unwrap_err(),
            ),
            (
                "unknown problem",
                e.board_propose(&me, ns, &unknown, proposal("x", 0.5))
                    .await
                    .unwrap_err(),
            ),
            (
                "malformed problem id",
                e.board_problem(&me, ns, "../etc").await.unwrap_err(),
            ),
            (
                "vote 2",
                e.board_vote(&me, ns, &a.id, vote("v", 2))
                    .await
                    .unwrap_err(),
            ),
            (
                "vote 0",
                e.board_vote(&me, ns, &a.id, vote("v", 0))
                    .await
                    .unwrap_err(),
            ),
            (
                "vote without agent",
                e.board_vote(
                    &me,
                    ns,
                    &a.id,
                    NewVote {
                        agent_id: None,
                        value: 1,
                    },
                )
                .await
                .unwrap_err(),
            ),
            (
                "unknown proposal",
                e.board_vote(&me, ns, &unknown, vote("v", 1))
                    .await
                    .unwrap_err(),
            ),
            (
                "proposal of another problem",
                e.board_resolve(
                    &me,
                    ns,
                    &q.id,
                    Resolve {
                        proposal_id: a.id.clone(),
                        agent_id: None,
                        expected_version: None,
                    },
                )
                .await
                .unwrap_err(),
            ),
            (
                "read-only caller",
                e.board_post(
                    &Access::new(vec![NamespacePattern::parse("*").unwrap()], &[Scope::Read]),
                    ns,
                    problem("t", ""),
                )
                .await
                .unwrap_err(),
            ),
        ];
        let expected = [
            "invalid_value",
            "too_large",
            "invalid_value",
            "invalid_value",
            "invalid_value",
            "invalid_value",
            "not_found",
            "not_found",
            "invalid_value",
            "invalid_value",
            "invalid_value",
            "not_found",
            "invalid_value",
            "forbidden",
        ];
        for ((what, err), code) in cases.iter().zip(expected) {
            assert_eq!(err.code(), code, "{what}: {err}");
        }
        assert_eq!(e.changes(&me, ns, 0, 1000).await.unwrap().len(), before);
    });
}

#[test]
fn context_entries_and_board_items_are_searchable_and_follow_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        let ns = "team";
        e.add(
            &me,
            ns,
            NewMessage::new(Role::User, "we met about the budget"),
        )
        .await
        .unwrap();
        e.context_set(
            &me,
            ns,
            "research:findings",
            json!({"summary": "the launch moves to March", "sources": 3}),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        let hits = e
            .search(&me, ns, lexical("launch march", vec![]))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(
            (hits[0].kind, hits[0].id.as_str()),
            (HitKind::Context, "research:findings")
        );
        let entry = hits[0].context.as_ref().unwrap();
        assert_eq!((entry.version, entry.namespace.as_str()), (1, ns));
        // The key's words are searchable too.
        let hits = e
            .search(&me, ns, lexical("findings", vec![]))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 1);
        // kinds: messages only leaves it out.
        let hits = e
            .search(&me, ns, lexical("launch march", vec![HitKind::Message]))
            .await
            .unwrap()
            .hits;
        assert!(hits.is_empty(), "{hits:?}");
        // An update replaces its document: the old words no longer find it.
        e.context_patch(
            &me,
            ns,
            "research:findings",
            json!({"summary": "the launch moves to April"}),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        let hits = e
            .search(&me, ns, lexical("march", vec![]))
            .await
            .unwrap()
            .hits;
        assert!(hits.is_empty(), "{hits:?}");
        let hits = e
            .search(&me, ns, lexical("april", vec![]))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits[0].context.as_ref().unwrap().version, 2);

        // Board items only when asked for.
        let p = e
            .board_post(&me, ns, problem("Budget overrun", "the cloud bill doubled"))
            .await
            .unwrap();
        e.board_propose(
            &me,
            ns,
            &p.id,
            proposal("move batch jobs to spot instances", 0.7),
        )
        .await
        .unwrap();
        let hits = e
            .search(&me, ns, lexical("cloud bill", vec![]))
            .await
            .unwrap()
            .hits;
        assert!(
            hits.is_empty(),
            "board items are not in the default kinds: {hits:?}"
        );
        let hits = e
            .search(
                &me,
                ns,
                lexical("cloud bill spot instances", vec![HitKind::Board]),
            )
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert!(
            hits.iter()
                .all(|h| h.kind == HitKind::Board && h.board.is_some())
        );
        assert!(hits.iter().any(|h| h.id == p.id));

        // Deleted and expired entries drop out.
        e.context_delete(&me, ns, "research:findings", None)
            .await
            .unwrap();
        let hits = e
            .search(&me, ns, lexical("april", vec![]))
            .await
            .unwrap()
            .hits;
        assert!(hits.is_empty(), "{hits:?}");
        e.context_set(
            &me,
            ns,
            "deadline",
            json!("friday afternoon"),
            ContextWrite {
                ttl_s: Some(1),
                ..ContextWrite::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            e.search(&me, ns, lexical("friday", vec![]))
                .await
                .unwrap()
                .hits
                .len(),
            1
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let hits = e
            .search(&me, ns, lexical("friday", vec![]))
            .await
            .unwrap()
            .hits;
        assert!(hits.is_empty(), "expired: {hits:?}");
        assert!(e.check(&me).await.unwrap().is_ok());
    });
}

#[test]
fn searchable_entries_and_the_board_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let me = Access::full();
    let (pid, aid) = rt().block_on(async {
        let e = open(dir.path());
        e.context_set(
            &me,
            "n",
            "plan",
            json!({"step": "migrate the billing tables"}),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        let p = e
            .board_post(&me, "n", problem("Slow queries", ""))
            .await
            .unwrap();
        let a = e
            .board_propose(&me, "n", &p.id, proposal("add an index", 0.8))
            .await
            .unwrap();
        e.flush().await.unwrap();
        (p.id, a.id)
    });
    rt().block_on(async {
        let e = open(dir.path());
        let hits = e
            .search(&me, "n", lexical("billing tables", vec![]))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].id, "plan");
        let hits = e
            .search(&me, "n", lexical("index", vec![HitKind::Board]))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits[0].id, aid);
        // The proposal → problem map is rebuilt: a vote finds it.
        let v = e.board_vote(&me, "n", &aid, vote("z", 1)).await.unwrap();
        assert_eq!((v.score, v.problem_id.as_str()), (1, pid.as_str()));
        assert!(e.check(&me).await.unwrap().is_ok());
    });
}

#[test]
fn inherit_searches_the_ancestors_the_caller_can_read() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        e.create_namespace(&me, "org", None, Default::default())
            .await
            .unwrap();
        e.create_namespace(&me, "team", Some("org"), Default::default())
            .await
            .unwrap();
        e.create_namespace(&me, "agent", Some("team"), Default::default())
            .await
            .unwrap();
        e.add(
            &me,
            "org",
            NewMessage::new(Role::User, "the refund policy is 30 days"),
        )
        .await
        .unwrap();
        e.context_set(
            &me,
            "team",
            "refund:exceptions",
            json!("enterprise customers get 60 days"),
            ContextWrite::default(),
        )
        .await
        .unwrap();
        e.add(
            &me,
            "agent",
            NewMessage::new(Role::User, "customer asks about a refund"),
        )
        .await
        .unwrap();
        let own = e
            .search(&me, "agent", lexical("refund days", vec![]))
            .await
            .unwrap()
            .hits;
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].namespace, "agent");
        let all = e
            .search(
                &me,
                "agent",
                lexical("refund days", vec![]).with_scope(SearchScope::Inherit),
            )
            .await
            .unwrap()
            .hits;
        let mut found: Vec<&str> = all.iter().map(|h| h.namespace.as_str()).collect();
        found.sort();
        assert_eq!(found, ["agent", "org", "team"], "{all:?}");
        // The walk stops at the first ancestor the caller cannot read.
        let limited = Access::new(
            vec![
                NamespacePattern::parse("agent").unwrap(),
                NamespacePattern::parse("org").unwrap(),
            ],
            &[Scope::Read],
        );
        let hits = e
            .search(
                &limited,
                "agent",
                lexical("refund days", vec![]).with_scope(SearchScope::Inherit),
            )
            .await
            .unwrap()
            .hits;
        let found: Vec<&str> = hits.iter().map(|h| h.namespace.as_str()).collect();
        assert_eq!(found, ["agent"], "{hits:?}");
    });
}

#[test]
fn concurrent_votes_on_one_proposal_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        let p = e.board_post(&me, "v", problem("t", "")).await.unwrap();
        let a = e
            .board_propose(&me, "v", &p.id, proposal("x", 0.5))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (e, id) = (e.clone(), a.id.clone());
                tokio::spawn(async move {
                    let value = if i % 4 == 0 { -1 } else { 1 };
                    e.board_vote(
                        &Access::full(),
                        "v",
                        &id,
                        vote(&format!("agent-{i}"), value),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let d = e.board_problem(&me, "v", &p.id).await.unwrap();
        let got = &d.proposals[0];
        assert_eq!((got.votes.len(), got.score), (16, 12 - 4));
        assert_eq!(got.version, 17, "one version per vote");
    });
}

/// Concurrent writes of one key without a precondition: merge patches are
/// all applied, and whatever value wins, search finds the entry by that value's
/// words and not by a lost one's (the index follows the store).
#[test]
fn racing_context_writes_leave_the_index_agreeing_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = open(dir.path());
        let me = Access::full();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let e = e.clone();
                tokio::spawn(async move {
                    e.context_patch(
                        &Access::full(),
                        "race",
                        "notes",
                        json!({format!("m{i}"): format!("word{i}")}),
                        ContextWrite::default(),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let entry = e.context_get(&me, "race", "notes").await.unwrap();
        assert_eq!(entry.version, 8);
        assert_eq!(entry.value.as_object().unwrap().len(), 8, "{entry:?}");
        for i in 0..8 {
            let hits = e
                .search(&me, "race", lexical(&format!("word{i}"), vec![]))
                .await
                .unwrap()
                .hits;
            assert_eq!(hits.len(), 1, "word{i}");
        }
        assert!(e.check(&me).await.unwrap().is_ok());
    });
}

/// A hash embedder that takes 3 ms per call, like a small model: a write
/// that embeds is still embedding (or committing) while others read the key.
struct SlowEmbedder(HashEmbedder);

impl memoryd::Embedder for SlowEmbedder {
    fn info(&self) -> &memoryd::ModelInfo {
        self.0.info()
    }
    fn embed(&self, texts: &[&str]) -> memoryd::Result<memoryd::Embeddings> {
        std::thread::sleep(Duration::from_millis(3));
        self.0.embed(texts)
    }
}

/// A write whose text equals the current one reuses the stored vector; it must
/// then land on exactly the version it read. Each round: a key holds "alpha";
/// one agent sets "beta" (embedding, then committing) while 24 others set
/// "alpha" again at 0.25 ms steps, so some read "alpha" just before "beta"
/// commits. Whatever value wins, search must find the key by that value's word
/// and not by the other's.
#[test]
fn a_same_text_write_racing_a_new_text_leaves_the_index_agreeing_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::with_data_dir(dir.path());
    config.summarize.enabled = false;
    config.summarize.tick = Duration::from_secs(3600);
    let store = SledStore::open(dir.path()).unwrap();
    let e = Engine::open_with_store(
        config,
        Arc::new(SlowEmbedder(HashEmbedder::new(16))),
        Arc::new(store),
    )
    .unwrap();
    let me = Access::full();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut stale = Vec::new();
        for round in 0..12 {
            let key = format!("k{round}");
            // One namespace per round: each search ranks one key.
            let ns = format!("race{round}");
            e.context_set(
                &me,
                &ns,
                &key,
                json!({"s": "alpha"}),
                ContextWrite::default(),
            )
            .await
            .unwrap();
            let mut tasks = Vec::new();
            let (e2, k2, n2) = (e.clone(), key.clone(), ns.clone());
            tasks.push(tokio::spawn(async move {
                e2.context_set(
                    &Access::full(),
                    &n2,
                    &k2,
                    json!({"s": "beta"}),
                    ContextWrite::default(),
                )
                .await
                .unwrap();
            }));
            for i in 0..24u64 {
                let (e2, k2, n2) = (e.clone(), key.clone(), ns.clone());
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(250 * i)).await;
                    e2.context_set(
                        &Access::full(),
                        &n2,
                        &k2,
                        json!({"s": "alpha"}),
                        ContextWrite::default(),
                    )
                    .await
                    .unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let now = e.context_get(&me, &ns, &key).await.unwrap();
            let word = now.value["s"].as_str().unwrap().to_owned();
            let found = |w: &'static str| {
                let (e, me, key, ns) = (e.clone(), me.clone(), key.clone(), ns.clone());
                async move {
                    e.search(&me, &ns, lexical(w, vec![HitKind::Context]))
                        .await
                        .unwrap()
                        .hits
                        .iter()
                        .any(|h| h.id == key)
                }
            };
            let (alpha, beta) = (found("alpha").await, found("beta").await);
            if (alpha, beta) != (word == "alpha", word == "beta") {
                stale.push(format!(
                    "round {round}: value {word}, found by alpha {alpha}, by beta {beta}"
                ));
            }
        }
        assert!(stale.is_empty(), "{stale:#?}");
        assert!(e.check(&me).await.unwrap().is_ok());
    });
}

/// An entry stored without a vector (as a store written before entries were
/// searchable holds them) is embedded on open and searchable.
#[test]
fn entries_stored_without_a_vector_are_embedded_on_open() {
    use memoryd::ContextOp;
    use memoryd::storage::{Commit, ContextPut, Mutation};
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = SledStore::open(dir.path()).unwrap();
        let put = ContextPut {
            key: "legacy".into(),
            op: ContextOp::Set,
            value: json!({"note": "written by an older memoryd"}),
            expected_version: None,
            agent_id: None,
            expires_at: None,
            at: chrono::Utc::now(),
            max_value_bytes: 1 << 16,
            keep_versions: None,
            expire_version: None,
            vector: None,
            change: None,
        };
        memoryd::RecordStore::commit(
            &store,
            &Commit {
                namespace: memoryd::NamespaceName::parse("old").unwrap(),
                mutation: Mutation::PutContext(put),
                actor: None,
                key_id: None,
            },
        )
        .await
        .unwrap();
        memoryd::RecordStore::flush(&store).await.unwrap();
    });
    let e = open(dir.path());
    rt().block_on(async {
        let hits = e
            .search(&Access::full(), "old", lexical("older memoryd", vec![]))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].id, "legacy");
        assert!(e.check(&Access::full()).await.unwrap().is_ok());
    });
}
