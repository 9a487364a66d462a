//! `memoryd context …`: shared context entries from the command line, over the
//! engine API like every front end. Values are JSON (a bare word that is not JSON
//! is taken as a string); output is one JSON object per line.

use anyhow::Result;
use clap::Subcommand;
use memoryd::{Access, ContextWrite, Engine};

#[derive(Subcommand)]
pub enum ContextCommand {
    /// The value of KEY as seen from the namespace (through its parents unless --no-inherit).
    Get {
        /// The key.
        key: String,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Read only this namespace, not its ancestors.
        #[arg(long)]
        no_inherit: bool,
    },
    /// Set KEY to VALUE (JSON) as a new version.
    Set {
        /// The key.
        key: String,
        /// The value, as JSON (`'{"a":1}'`, `42`, `'"text"'`); other text is stored as a string.
        value: String,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Compare-and-set: only if the current version is this (0: only if absent).
        #[arg(long)]
        expected_version: Option<u64>,
        /// The version's author.
        #[arg(long)]
        agent_id: Option<String>,
        /// Expire this many seconds after the write.
        #[arg(long)]
        ttl_s: Option<u64>,
    },
    /// Every version of KEY, oldest first.
    History {
        /// The key.
        key: String,
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Live entries of the namespace, by key.
    List {
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

pub async fn run(engine: &Engine, command: ContextCommand) -> Result<()> {
    // The CLI opens the data directory itself: it is its owner.
    let me = Access::full();
    match command {
        ContextCommand::Get {
            key,
            namespace,
            no_inherit,
        } => {
            let entry = if no_inherit {
                engine.context_get(&me, &namespace, &key).await?
            } else {
                engine.context_lookup(&me, &namespace, &key).await?
            };
            println!("{}", serde_json::to_string(&entry)?);
        }
        ContextCommand::Set {
            key,
            value,
            namespace,
            expected_version,
            agent_id,
            ttl_s,
        } => {
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            let opts = ContextWrite {
                expected_version,
                agent_id,
                ttl_s,
                expires_at: None,
            };
            let entry = engine
                .context_set(&me, &namespace, &key, value, opts)
                .await?;
            println!("{}", serde_json::to_string(&entry)?);
        }
        ContextCommand::History {
            key,
            namespace,
            limit,
        } => {
            for v in engine
                .context_history(&me, &namespace, &key, 0, limit)
                .await?
            {
                println!("{}", serde_json::to_string(&v)?);
            }
        }
        ContextCommand::List {
            namespace,
            prefix,
            limit,
        } => {
            let page = engine
                .context_list(&me, &namespace, &prefix, None, limit)
                .await?;
            for e in page.entries {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
    }
    Ok(())
}
