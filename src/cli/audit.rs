//! `memoryd audit …`: check the audit log's hash chain or export it, over the
//! engine API like every front end.

use std::io::Write;

use anyhow::{Result, bail};
use clap::Subcommand;
use memoryd::{Access, AuditQuery, Engine};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the chain: gap-free seqs, each prev_hash the previous hash, each hash recomputed.
    Verify,
    /// Every entry as JSON Lines, oldest first.
    Export,
}

pub async fn run(engine: &Engine, command: AuditCommand) -> Result<()> {
    // The CLI opens the data directory itself: it is its owner.
    let me = Access::full();
    match command {
        AuditCommand::Verify => {
            let report = engine.audit_verify(&me).await?;
            println!("{}", serde_json::to_string(&report)?);
            if let Some((seq, why)) = report.first_bad {
                bail!("the audit chain is broken at entry {seq}: {why}");
            }
        }
        AuditCommand::Export => {
            let mut out = std::io::stdout().lock();
            let mut query = AuditQuery::default();
            loop {
                let page = engine.audit(&me, &query, 1000).await?;
                for e in &page.entries {
                    writeln!(out, "{}", serde_json::to_string(e)?)?;
                }
                if page.entries.is_empty() || page.next == query.after {
                    break;
                }
                query.after = page.next;
            }
        }
    }
    Ok(())
}
