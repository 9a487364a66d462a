//! The MCP tools: one method each over the public engine API, results as text
//! for a model plus `structuredContent`.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use serde_json::{Map, Value, json};

use super::MemoryMcp;
use super::args::*;
use crate::core::agents::{AgentFilter, InboxAck, NewMail};
use crate::core::board::{NewProblem, NewProposal, NewVote, Resolve};
use crate::core::context::ContextWrite;
use crate::core::error::Error;
use crate::core::types::{
    Filter, HitKind, Interaction, NewMessage, Role, SearchMode, SearchRequest, SearchScope,
};

// ---- rendering ----

fn ok(text: String, data: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(data);
    r
}

pub(super) fn failed(e: Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("{e} [{}]", e.code()))])
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn parse_enum<T: serde::de::DeserializeOwned>(
    field: &str,
    v: &str,
    allowed: &str,
) -> Result<T, Error> {
    serde_json::from_value(Value::String(v.to_owned()))
        .map_err(|_| Error::invalid(field, format!("must be one of {allowed}")))
}

pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn render_hits(hits: &[crate::core::types::Hit]) -> String {
    if hits.is_empty() {
        return "No matching memories.".into();
    }
    let mut out = String::new();
    for (i, h) in hits.iter().enumerate() {
        let who = match (&h.message, h.kind) {
            (Some(m), _) => {
                let name = m
                    .name
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default();
                format!(
                    "{}{name}, {}",
                    m.role.as_str(),
                    m.timestamp.format("%Y-%m-%d %H:%M")
                )
            }
            (None, HitKind::Summary) => "summary".into(),
            (None, HitKind::Context) => format!("context {}", h.id),
            (None, HitKind::Board) => "board".into(),
            (None, HitKind::Agent) => format!("agent {}", h.id),
            (None, HitKind::Message) => "message".into(),
        };
        out.push_str(&format!(
            "{}. [{:.3}] ({who}) {}\n   id: {}\n",
            i + 1,
            h.score,
            clip(&h.text(), 600),
            h.id
        ));
    }
    out
}

#[tool_router(vis = "pub(super)")]
impl MemoryMcp {
    /// Store messages (or one user/agent exchange) in long-term memory.
    #[tool(
        description = "Remember: store conversation messages (or one user/agent exchange) in a namespace's long-term memory. Each is embedded and becomes searchable with `recall` at once. Returns the new message ids.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn remember(
        &self,
        Parameters(a): Parameters<RememberArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let stored = match (a.messages, a.interaction) {
                (Some(ms), None) => {
                    let mut batch = Vec::with_capacity(ms.len());
                    for m in ms {
                        let role = match m.role.as_deref() {
                            None => Role::User,
                            Some(r) => parse_enum("role", r, "user, assistant, system, tool")?,
                        };
                        let timestamp = m
                            .timestamp
                            .as_deref()
                            .map(|t| {
                                chrono::DateTime::parse_from_rfc3339(t)
                                    .map(|t| t.with_timezone(&chrono::Utc))
                                    .map_err(|_| Error::invalid("timestamp", "must be RFC 3339"))
                            })
                            .transpose()?;
                        batch.push(NewMessage {
                            role,
                            name: m.name,
                            content: m.content,
                            timestamp,
                            agent_id: None,
                            session_id: m.session_id,
                            metadata: m.metadata.unwrap_or_default(),
                        });
                    }
                    e.add_batch(&acc, &a.namespace, batch).await?
                }
                (None, Some(it)) => {
                    e.add_interaction(
                        &acc,
                        &a.namespace,
                        Interaction {
                            agent_id: None,
                            user_message: it.user_message,
                            agent_response: it.agent_response,
                            session_id: it.session_id,
                            user_name: it.user_name,
                            timestamp: None,
                            metadata: Map::new(),
                        },
                    )
                    .await?
                }
                _ => {
                    return Err(Error::invalid(
                        "messages",
                        "give either `messages` or `interaction`",
                    ));
                }
            };
            let ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
            Ok(ok(
                format!(
                    "Remembered {} message(s) in {}: {}",
                    ids.len(),
                    a.namespace,
                    ids.join(", ")
                ),
                json!({"namespace": a.namespace, "ids": ids}),
            ))
        })
        .await
    }

    /// Search memory.
    #[tool(
        description = "Recall: search a namespace's memory for what is relevant to a query (hybrid of meaning and words by default) and return the top-k messages, summaries and shared-context entries, best first, with scores and ids.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn recall(
        &self,
        Parameters(a): Parameters<RecallArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let mut req = SearchRequest::text(a.query, a.k.unwrap_or(5));
            if let Some(m) = a.mode.as_deref() {
                req.mode = parse_enum::<SearchMode>("mode", m, "hybrid, dense, lexical")?;
            }
            if let Some(s) = a.scope.as_deref() {
                req.scope = parse_enum::<SearchScope>("scope", s, "self, inherit")?;
            }
            if let Some(kinds) = a.kinds {
                req.kinds = kinds
                    .iter()
                    .map(|k| parse_enum::<HitKind>("kinds", k, "message, summary, context, board"))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(f) = a.filter {
                req.filter = serde_json::from_value::<Filter>(f)
                    .map_err(|err| Error::invalid("filter", err.to_string()))?;
            }
            let res = e.search(&acc, &a.namespace, req).await?;
            Ok(ok(render_hits(&res.hits), to_value(&res)))
        })
        .await
    }

    /// The newest messages.
    #[tool(
        description = "Recent: the newest messages of a namespace (its short-term memory), oldest first.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn recent(
        &self,
        Parameters(a): Parameters<RecentArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let n = a.n.unwrap_or(10);
            if n == 0 || n > e.config().limits.max_k {
                return Err(Error::invalid(
                    "n",
                    format!("must be 1 to {}", e.config().limits.max_k),
                ));
            }
            let msgs = e.recent(&acc, &a.namespace, n).await?;
            let text = if msgs.is_empty() {
                "No messages yet.".to_owned()
            } else {
                msgs.iter()
                    .map(|m| {
                        format!(
                            "[{}] {}{}: {}",
                            m.timestamp.format("%Y-%m-%d %H:%M"),
                            m.role.as_str(),
                            m.name
                                .as_deref()
                                .map(|n| format!(" ({n})"))
                                .unwrap_or_default(),
                            clip(&m.content, 600)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, json!({"messages": msgs})))
        })
        .await
    }

    /// Summarize now.
    #[tool(
        description = "Summarize: fold the namespace's not-yet-summarized messages into a long-term summary now (memoryd also does this in the background). Returns the summaries written.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn summarize(
        &self,
        Parameters(a): Parameters<NamespaceArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let made = e.summarize(&acc, &a.namespace).await?;
            let text = if made.is_empty() {
                "Nothing to summarize.".to_owned()
            } else {
                made.iter()
                    .map(|s| s.text.clone())
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            Ok(ok(text, json!({"summaries": made})))
        })
        .await
    }

    /// Long-term summaries.
    #[tool(
        description = "Summaries: a namespace's long-term summaries, oldest first (each covers a window of older messages).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn summaries(
        &self,
        Parameters(a): Parameters<NamespaceArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let all = e.summaries(&acc, &a.namespace).await?;
            let text = if all.is_empty() {
                "No summaries yet.".to_owned()
            } else {
                all.iter()
                    .map(|s| {
                        format!(
                            "[{} – {}] {}",
                            s.from.format("%Y-%m-%d"),
                            s.to.format("%Y-%m-%d"),
                            s.text
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            Ok(ok(text, json!({"summaries": all})))
        })
        .await
    }

    /// Delete a message or a namespace.
    #[tool(
        description = "Forget: delete one message by id, or a whole namespace with everything in it (needs the delete scope). Cannot be undone.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn forget(
        &self,
        Parameters(a): Parameters<ForgetArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            match (a.id, a.namespace) {
                (Some(id), None) => {
                    e.delete(&acc, &id).await?;
                    Ok(ok(format!("Forgot message {id}."), json!({"deleted": id})))
                }
                (None, Some(ns)) => {
                    let n = e.delete_namespace(&acc, &ns).await?;
                    Ok(ok(
                        format!("Deleted namespace {ns} ({n} messages)."),
                        json!({"namespace": ns, "messages": n}),
                    ))
                }
                _ => Err(Error::invalid("id", "give either `id` or `namespace`")),
            }
        })
        .await
    }

    /// Read a shared context entry.
    #[tool(
        description = "Context get: read a shared context entry (a versioned JSON value other agents can see and change).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn context_get(
        &self,
        Parameters(a): Parameters<ContextKeyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let entry = e.context_get(&acc, &a.namespace, &a.key).await?;
            Ok(ok(
                format!(
                    "{} = {} (version {})",
                    entry.key, entry.value, entry.version
                ),
                to_value(&entry),
            ))
        })
        .await
    }

    /// Write a shared context entry.
    #[tool(
        description = "Context set: write a shared context entry as a new version. With `expected_version` it is compare-and-set: it fails (and tells the current version) if someone else wrote since you read it — read again, merge, retry.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn context_set(
        &self,
        Parameters(a): Parameters<ContextSetArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let opts = ContextWrite {
                expected_version: a.expected_version,
                ttl_s: a.ttl_s,
                ..Default::default()
            };
            let entry = e
                .context_set(&acc, &a.namespace, &a.key, a.value, opts)
                .await?;
            Ok(ok(
                format!("{} is now version {}.", entry.key, entry.version),
                to_value(&entry),
            ))
        })
        .await
    }

    /// List shared context entries.
    #[tool(
        description = "Context list: the shared context entries of a namespace (optionally under a key prefix), by key.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn context_list(
        &self,
        Parameters(a): Parameters<ContextListArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let page = e
                .context_list(
                    &acc,
                    &a.namespace,
                    a.prefix.as_deref().unwrap_or(""),
                    None,
                    a.limit.unwrap_or(100),
                )
                .await?;
            let text = if page.entries.is_empty() {
                "No entries.".to_owned()
            } else {
                page.entries
                    .iter()
                    .map(|en| {
                        format!(
                            "{} = {} (v{})",
                            en.key,
                            clip(&en.value.to_string(), 300),
                            en.version
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, to_value(&page)))
        })
        .await
    }

    /// A shared context entry's history.
    #[tool(
        description = "Context history: every kept version of a shared context entry, oldest first, with who wrote it and when.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn context_history(
        &self,
        Parameters(a): Parameters<ContextKeyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let versions = e
                .context_history(&acc, &a.namespace, &a.key, 0, 100)
                .await?;
            let text = versions
                .iter()
                .map(|v| {
                    format!(
                        "v{} {} by {}: {}",
                        v.version,
                        v.at.format("%Y-%m-%d %H:%M:%S"),
                        v.agent_id.as_deref().unwrap_or("?"),
                        clip(&v.value.to_string(), 300)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(ok(text, json!({"versions": versions})))
        })
        .await
    }

    /// Post a problem.
    #[tool(
        description = "Board post: put a problem on the namespace's blackboard for agents to propose solutions and vote on.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn board_post(
        &self,
        Parameters(a): Parameters<BoardPostArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_post(
                    &acc,
                    &a.namespace,
                    NewProblem {
                        title: a.title,
                        body: a.body.unwrap_or_default(),
                        agent_id: None,
                    },
                )
                .await?;
            Ok(ok(
                format!("Posted problem {}: {}", p.id, p.title),
                to_value(&p),
            ))
        })
        .await
    }

    /// Propose a solution.
    #[tool(
        description = "Board propose: propose a solution to an open problem, with your confidence (0 to 1).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn board_propose(
        &self,
        Parameters(a): Parameters<BoardProposeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_propose(
                    &acc,
                    &a.namespace,
                    &a.problem_id,
                    NewProposal {
                        body: a.body,
                        confidence: a.confidence,
                        agent_id: None,
                    },
                )
                .await?;
            Ok(ok(format!("Proposed {}.", p.id), to_value(&p)))
        })
        .await
    }

    /// Vote on a proposal.
    #[tool(
        description = "Board vote: vote +1 or -1 on a proposal (one vote per agent; voting again replaces your vote).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn board_vote(
        &self,
        Parameters(a): Parameters<BoardVoteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_vote(
                    &acc,
                    &a.namespace,
                    &a.proposal_id,
                    NewVote {
                        agent_id: a.agent_id,
                        value: a.value,
                    },
                )
                .await?;
            Ok(ok(
                format!("Proposal {} now has score {}.", p.id, p.score),
                to_value(&p),
            ))
        })
        .await
    }

    /// Resolve a problem.
    #[tool(
        description = "Board resolve: close a problem by choosing one of its proposals (compare-and-set: only one resolution wins).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn board_resolve(
        &self,
        Parameters(a): Parameters<BoardResolveArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_resolve(
                    &acc,
                    &a.namespace,
                    &a.problem_id,
                    Resolve {
                        proposal_id: a.proposal_id,
                        expected_version: None,
                        agent_id: None,
                    },
                )
                .await?;
            Ok(ok(format!("Resolved problem {}.", p.id), to_value(&p)))
        })
        .await
    }

    /// Show the blackboard.
    #[tool(
        description = "Board show: one problem with its proposals ranked by votes, or (without problem_id) the open problems.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn board_show(
        &self,
        Parameters(a): Parameters<BoardShowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            match a.problem_id {
                Some(id) => {
                    let d = e.board_problem(&acc, &a.namespace, &id).await?;
                    let mut text = format!(
                        "{} [{:?}]: {}\n{}\n",
                        d.problem.id, d.problem.status, d.problem.title, d.problem.body
                    );
                    for (i, p) in d.proposals.iter().enumerate() {
                        text.push_str(&format!(
                            "{}. {} (score {}, confidence {:.2}) id {}\n",
                            i + 1,
                            clip(&p.body, 400),
                            p.score,
                            p.confidence,
                            p.id
                        ));
                    }
                    Ok(ok(text, to_value(&d)))
                }
                None => {
                    let page = e
                        .board_problems(
                            &acc,
                            &a.namespace,
                            Some(crate::core::board::ProblemStatus::Open),
                            None,
                            100,
                        )
                        .await?;
                    let text = if page.problems.is_empty() {
                        "No open problems.".to_owned()
                    } else {
                        page.problems
                            .iter()
                            .map(|p| format!("{}: {}", p.id, p.title))
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    Ok(ok(text, to_value(&page)))
                }
            }
        })
        .await
    }

    /// Find agents.
    #[tool(
        description = "Find agents: the registered agents whose Agent Card best matches what you need done (by meaning and words), with their ids, skills and health. Send them work with `send_to_agent`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_agents(
        &self,
        Parameters(a): Parameters<FindAgentsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let filter = AgentFilter {
                status: a
                    .healthy_only
                    .unwrap_or(true)
                    .then_some(crate::core::agents::AgentStatus::Healthy),
                ..Default::default()
            };
            let found = e
                .discover_agents(&acc, &a.query, a.k.unwrap_or(5), &filter)
                .await?;
            let text = if found.is_empty() {
                "No matching agents.".to_owned()
            } else {
                found
                    .iter()
                    .map(|m| {
                        format!(
                            "{} [{:.3}] ({}): {}",
                            m.agent.id,
                            m.score,
                            m.agent.status.as_str(),
                            clip(m.agent.card["description"].as_str().unwrap_or(""), 300)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, json!({"agents": found})))
        })
        .await
    }

    /// Send a direct message.
    #[tool(
        description = "Send to agent: put a durable direct message in another agent's inbox (kept until it acknowledges). For a request/response, set a correlation_id and expect the reply in your own inbox.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn send_to_agent(
        &self,
        Parameters(a): Parameters<SendArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let mail = e
                .send_mail(
                    &acc,
                    &a.to,
                    NewMail {
                        from: a.from,
                        kind: a.kind,
                        payload: a.payload,
                        correlation_id: a.correlation_id,
                        priority: a.priority,
                        ttl_s: a.ttl_s,
                    },
                )
                .await?;
            Ok(ok(
                format!("Sent {} to {}.", mail.id, a.to),
                to_value(&mail),
            ))
        })
        .await
    }

    /// Read an inbox.
    #[tool(
        description = "Read inbox: your unacknowledged direct messages, highest priority first, then oldest. Reading does not remove them: call `ack_inbox` with the ids you handled.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_inbox(
        &self,
        Parameters(a): Parameters<InboxArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let consumer = a.consumer.as_deref().unwrap_or("default");
            let page = e
                .inbox(&acc, &a.agent_id, consumer, a.limit.unwrap_or(20))
                .await?;
            let text = if page.messages.is_empty() {
                "Inbox empty.".to_owned()
            } else {
                page.messages
                    .iter()
                    .map(|m| {
                        format!(
                            "{} from {} [{} p{}]{}: {}",
                            m.id,
                            m.from,
                            m.kind,
                            m.priority,
                            m.correlation_id
                                .as_deref()
                                .map(|c| format!(" re {c}"))
                                .unwrap_or_default(),
                            clip(&m.payload.to_string(), 600)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, to_value(&page)))
        })
        .await
    }

    /// Acknowledge direct messages.
    #[tool(
        description = "Ack inbox: acknowledge direct messages you handled (by id); they are not delivered to you again.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ack_inbox(
        &self,
        Parameters(a): Parameters<AckArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let consumer = a.consumer.as_deref().unwrap_or("default");
            let st = e
                .inbox_ack(
                    &acc,
                    &a.agent_id,
                    consumer,
                    InboxAck {
                        upto: None,
                        ids: a.ids,
                    },
                )
                .await?;
            Ok(ok(
                format!("Acknowledged up to {}.", st.upto),
                to_value(&st),
            ))
        })
        .await
    }
}
