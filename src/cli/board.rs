//! `memoryd board …`: the blackboard from the command line, over the engine API
//! like every front end. Output is one JSON object per line.

use anyhow::Result;
use clap::Subcommand;
use memoryd::{Access, Engine, NewProblem, NewProposal, NewVote, ProblemStatus, Resolve};

#[derive(Subcommand)]
pub enum BoardCommand {
    /// Post a problem (status open).
    Post {
        /// One line.
        title: String,
        /// The details.
        #[arg(long, default_value = "")]
        body: String,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Who posts it.
        #[arg(long)]
        agent_id: Option<String>,
    },
    /// Propose a solution to problem ID.
    Propose {
        /// The problem's id.
        problem_id: String,
        /// The proposal.
        body: String,
        /// Confidence, 0 to 1.
        #[arg(long, default_value_t = 0.5)]
        confidence: f64,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Who proposes it.
        #[arg(long)]
        agent_id: Option<String>,
    },
    /// Vote +1 or -1 on proposal ID (one vote per agent; re-voting replaces).
    Vote {
        /// The proposal's id.
        proposal_id: String,
        /// `1` or `-1`.
        #[arg(allow_hyphen_values = true)]
        value: i64,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// The voter.
        #[arg(long)]
        agent_id: String,
    },
    /// Resolve problem ID with one of its proposals.
    Resolve {
        /// The problem's id.
        problem_id: String,
        /// The chosen proposal's id.
        proposal_id: String,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Compare-and-set on the problem's version.
        #[arg(long)]
        expected_version: Option<u64>,
        /// Who resolves it.
        #[arg(long)]
        agent_id: Option<String>,
    },
    /// Problem ID with its proposals, best first.
    Show {
        /// The problem's id.
        problem_id: String,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
    },
    /// Problems of the namespace, oldest first.
    List {
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Only `open` or `resolved` ones.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

pub async fn run(engine: &Engine, command: BoardCommand) -> Result<()> {
    // The CLI opens the data directory itself: it is its owner.
    let me = Access::full();
    match command {
        BoardCommand::Post {
            title,
            body,
            namespace,
            agent_id,
        } => {
            let p = NewProblem {
                title,
                body,
                agent_id,
            };
            line(&engine.board_post(&me, &namespace, p).await?)?;
        }
        BoardCommand::Propose {
            problem_id,
            body,
            confidence,
            namespace,
            agent_id,
        } => {
            let p = NewProposal {
                body,
                confidence,
                agent_id,
            };
            line(
                &engine
                    .board_propose(&me, &namespace, &problem_id, p)
                    .await?,
            )?;
        }
        BoardCommand::Vote {
            proposal_id,
            value,
            namespace,
            agent_id,
        } => {
            let v = NewVote {
                agent_id: Some(agent_id),
                value,
            };
            line(&engine.board_vote(&me, &namespace, &proposal_id, v).await?)?;
        }
        BoardCommand::Resolve {
            problem_id,
            proposal_id,
            namespace,
            expected_version,
            agent_id,
        } => {
            let r = Resolve {
                proposal_id,
                agent_id,
                expected_version,
            };
            line(
                &engine
                    .board_resolve(&me, &namespace, &problem_id, r)
                    .await?,
            )?;
        }
        BoardCommand::Show {
            problem_id,
            namespace,
        } => line(&engine.board_problem(&me, &namespace, &problem_id).await?)?,
        BoardCommand::List {
            namespace,
            status,
            limit,
        } => {
            let status = status
                .map(|s| serde_json::from_value::<ProblemStatus>(serde_json::Value::String(s)))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--status must be open or resolved"))?;
            let page = engine
                .board_problems(&me, &namespace, status, None, limit)
                .await?;
            for p in &page.problems {
                line(p)?;
            }
        }
    }
    Ok(())
}

/// Prints one JSON line.
fn line<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}
