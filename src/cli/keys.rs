//! `memoryd keys create|list|revoke`: API keys, over the engine API on the data
//! directory (the server stopped: sled allows one process), or over HTTP with
//! `--server URL` against a running server (with an admin token, or none on a
//! loopback server that has no key yet — how the first key is made while it
//! runs).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use memoryd::{Access, ApiKey, CreatedKey, Engine, NewKey, Redaction, Scope};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; its token is printed once (only its SHA-256 is stored).
    Create {
        /// A name for people (`ci`, `researcher`).
        #[arg(long)]
        name: String,
        /// Namespace patterns, comma-separated: names, `*` globs (`tenant-7-*`), `NAME/**` subtrees.
        #[arg(long, value_delimiter = ',', required = true)]
        namespaces: Vec<String>,
        /// Scopes, comma-separated: read, write, delete, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Stamp this agent on every write made with the key.
        #[arg(long)]
        agent_id: Option<String>,
        /// Expire after this long: 30d, 12h, 90m, 2w.
        #[arg(long)]
        expires: Option<String>,
        /// Mask personal data in what the key reads: `pii` (e-mails, phone and card numbers).
        #[arg(long, value_parser = ["pii"])]
        redact: Option<String>,
        /// Metadata fields masked in what the key reads, comma-separated.
        #[arg(long, value_delimiter = ',')]
        redact_fields: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List keys (never tokens).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a key by id: its token is refused from then on.
    Revoke {
        /// The key id (16 hex digits, as `keys list` shows).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Where the keys live.
#[derive(Args, Clone)]
pub struct Remote {
    /// A running memoryd (e.g. http://127.0.0.1:7070) instead of the data directory.
    #[arg(long, env = "MEMORYD_SERVER")]
    server: Option<String>,
    /// Admin token for --server (prefer the environment variable).
    #[arg(long, env = "MEMORYD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl KeysCommand {
    /// The server to talk to, if the command names one.
    pub fn remote(&self) -> &Remote {
        match self {
            KeysCommand::Create { remote, .. }
            | KeysCommand::List { remote }
            | KeysCommand::Revoke { remote, .. } => remote,
        }
    }

    /// Whether the command goes to a server (it then needs no engine).
    pub fn is_remote(&self) -> bool {
        self.remote().server.is_some()
    }
}

fn new_key(command: &KeysCommand) -> Result<Option<NewKey>> {
    let KeysCommand::Create {
        name,
        namespaces,
        scopes,
        agent_id,
        expires,
        redact,
        redact_fields,
        ..
    } = command
    else {
        return Ok(None);
    };
    let scopes = scopes
        .iter()
        .map(|s| Scope::parse(s.trim()))
        .collect::<memoryd::Result<Vec<_>>>()?;
    let expires_at = expires
        .as_deref()
        .map(memoryd::keys::parse_duration)
        .transpose()?
        .map(|d| chrono::Utc::now() + d);
    Ok(Some(NewKey {
        name: name.clone(),
        namespaces: namespaces.iter().map(|n| n.trim().to_owned()).collect(),
        scopes,
        agent_id: agent_id.clone(),
        expires_at,
        redact: Redaction {
            pii: redact.is_some(),
            fields: redact_fields.clone(),
        },
    }))
}

fn print_created(created: &CreatedKey) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(created)?);
    eprintln!(
        "Store the token now: it is not shown again. Use it as `Authorization: Bearer <token>`."
    );
    Ok(())
}

fn print_keys(keys: &[ApiKey]) -> Result<()> {
    for k in keys {
        println!("{}", serde_json::to_string(k)?);
    }
    Ok(())
}

/// Runs a command on an open engine (the data directory's owner: full access).
pub async fn run(engine: &Engine, command: KeysCommand) -> Result<()> {
    let me = Access::full();
    match &command {
        KeysCommand::Create { .. } => {
            let new = new_key(&command)?.expect("a create command");
            print_created(&engine.create_key(&me, new).await?)
        }
        KeysCommand::List { .. } => print_keys(&engine.keys(&me)?),
        KeysCommand::Revoke { id, .. } => {
            println!(
                "{}",
                serde_json::to_string(&engine.revoke_key(&me, id).await?)?
            );
            Ok(())
        }
    }
}

/// Runs a command against a running server over HTTP.
pub async fn run_remote(command: KeysCommand) -> Result<()> {
    let remote = command.remote().clone();
    let base = remote
        .server
        .as_deref()
        .expect("remote command")
        .trim_end_matches('/')
        .to_owned();
    let client = reqwest::Client::new();
    let with_token = |r: reqwest::RequestBuilder| match &remote.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let resp = match &command {
        KeysCommand::Create { .. } => {
            let new = new_key(&command)?.expect("a create command");
            with_token(client.post(format!("{base}/v1/keys")).json(&new))
        }
        KeysCommand::List { .. } => with_token(client.get(format!("{base}/v1/keys"))),
        KeysCommand::Revoke { id, .. } => with_token(client.delete(format!("{base}/v1/keys/{id}"))),
    }
    .send()
    .await
    .with_context(|| format!("reaching {base}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("reading the answer")?;
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["error"]["message"].as_str().unwrap_or("error")
        );
    }
    match &command {
        KeysCommand::Create { .. } => print_created(&serde_json::from_value(body)?),
        KeysCommand::List { .. } => print_keys(&serde_json::from_value::<Vec<ApiKey>>(
            body["keys"].clone(),
        )?),
        KeysCommand::Revoke { .. } => {
            println!("{body}");
            Ok(())
        }
    }
}
