//! The agent registry and mailboxes: agents announce themselves with an A2A
//! Agent Card, find each other by skill, tag or meaning, and send each other
//! direct messages that persist until acknowledged.
//!
//! Everything here is ordinary memory, so it shares the one write path:
//! - a registration is a versioned document in the registry namespace
//!   [`REGISTRY_NAMESPACE`] under a key no caller can write
//!   ([`AGENT_KEY_PREFIX`]), embedded by its card's name, description and skills
//!   (searchable as `kind: "agent"`), with change kinds `agent.*`;
//! - an agent's inbox is the namespace [`inbox_namespace`]`(id)`; a direct
//!   message is a stored message there (searchable like any other) whose
//!   metadata member `mail` carries the envelope ([`MAIL_METADATA`]); a
//!   consumer's acknowledgements are a document under [`CONSUMER_KEY_PREFIX`];
//! - a topic is the namespace [`topic_namespace`]`(topic)`; publishing stores a
//!   message there and subscribers read that namespace's event stream.
//!
//! Card validation follows the A2A v1.0 Agent Card (`AgentCard` in the A2A
//! specification, section 4.4): the required members and their types, plus our
//! own size limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::core::error::{Error, Result};

/// The namespace holding the registry. Access to the registry is access to this
/// namespace: `read` to list and discover, `write` to register and heartbeat,
/// `delete` to deregister another agent.
pub const REGISTRY_NAMESPACE: &str = "agents";

/// Every registration's key starts with this (context keys must start with a
/// letter or digit, so no context write reaches one).
pub const AGENT_KEY_PREFIX: &str = "~agent:";

/// Every inbox consumer's acknowledgement document's key starts with this.
pub const CONSUMER_KEY_PREFIX: &str = "~inbox:";

/// The metadata member of a stored message that carries a direct message's
/// envelope (`from`, `type`, `priority`, …).
pub const MAIL_METADATA: &str = "mail";

/// Longest agent id, in bytes.
pub const MAX_AGENT_ID_BYTES: usize = 64;

/// Largest Agent Card, as compact JSON bytes.
pub const MAX_CARD_BYTES: usize = 64 * 1024;

/// Most skills on one card.
pub const MAX_SKILLS: usize = 128;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 64;

/// Highest priority of a direct message (0 is the lowest; the default is 5).
pub const MAX_PRIORITY: u8 = 10;

/// Key of an agent's registration document.
pub(crate) fn agent_key(id: &str) -> String {
    format!("{AGENT_KEY_PREFIX}{id}")
}

/// The namespace of an agent's inbox: `inbox:<id>`.
pub fn inbox_namespace(id: &str) -> String {
    format!("inbox:{id}")
}

/// The namespace of a topic: `topic:<name>`.
pub fn topic_namespace(topic: &str) -> String {
    format!("topic:{topic}")
}

fn check_name(field: &str, v: &str, max: usize) -> Result<()> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("use 1-{max} characters from [A-Za-z0-9._-], starting with a letter or digit"),
        ))
    }
}

/// Checks an agent id: 1–64 bytes of `[A-Za-z0-9._-]`, starting with a letter
/// or digit (so `inbox:<id>` is a namespace name).
///
/// # Errors
/// [`Error::InvalidInput`] (field `agent_id`).
pub fn validate_agent_id(id: &str) -> Result<()> {
    check_name("agent_id", id, MAX_AGENT_ID_BYTES)
}

/// Checks a topic name (same alphabet as an agent id).
///
/// # Errors
/// [`Error::InvalidInput`] (field `topic`).
pub fn validate_topic(topic: &str) -> Result<()> {
    check_name("topic", topic, MAX_TOPIC_BYTES)
}

/// A registered agent's health, judged from its last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Heard from within the agent timeout.
    Healthy,
    /// Not heard from within the agent timeout.
    Unhealthy,
    /// Not heard from within the gone timeout (still registered until it
    /// deregisters or is deregistered).
    Gone,
}

impl AgentStatus {
    /// `healthy`, `unhealthy` or `gone`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Healthy => "healthy",
            AgentStatus::Unhealthy => "unhealthy",
            AgentStatus::Gone => "gone",
        }
    }

    /// Parses [`AgentStatus::as_str`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `status`).
    pub fn parse(s: &str) -> Result<AgentStatus> {
        match s {
            "healthy" => Ok(AgentStatus::Healthy),
            "unhealthy" => Ok(AgentStatus::Unhealthy),
            "gone" => Ok(AgentStatus::Gone),
            _ => Err(Error::invalid(
                "status",
                "must be healthy, unhealthy or gone",
            )),
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRecord {
    /// The agent id it registered under.
    pub id: String,
    /// Its A2A Agent Card, as registered.
    #[schema(value_type = Object)]
    pub card: Value,
    /// Its health now (on search hits from a general search: as last recorded).
    pub status: AgentStatus,
    /// When it (last) registered.
    pub registered_at: DateTime<Utc>,
    /// Its last heartbeat (or registration).
    pub last_seen: DateTime<Utc>,
    /// The registration document's version (one more per registration or
    /// status change).
    pub version: u64,
}

/// The stored registration document's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentDoc {
    pub card: Value,
    pub registered_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub status: AgentStatus,
}

/// Which agents a listing or discovery returns; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentFilter {
    /// A skill id or name on the card (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// A tag of one of the card's skills (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The agent's health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
}

impl AgentFilter {
    /// Whether `agent` passes.
    pub fn admits(&self, agent: &AgentRecord) -> bool {
        let skills = agent
            .card
            .get("skills")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let eq = |v: Option<&Value>, want: &str| {
            v.and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(want))
        };
        self.status.is_none_or(|s| s == agent.status)
            && self.skill.as_deref().is_none_or(|want| {
                skills
                    .iter()
                    .any(|s| eq(s.get("id"), want) || eq(s.get("name"), want))
            })
            && self.tag.as_deref().is_none_or(|want| {
                skills.iter().any(|s| {
                    s.get("tags")
                        .and_then(Value::as_array)
                        .is_some_and(|t| t.iter().any(|t| eq(Some(t), want)))
                })
            })
    }
}

/// One page of registered agents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentPage {
    /// Agents, by id.
    pub agents: Vec<AgentRecord>,
    /// The id to pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One discovery result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentMatch {
    /// The agent.
    pub agent: AgentRecord,
    /// The hybrid score of its card against the query (higher is better).
    pub score: f32,
}

/// A direct message to send to an agent's inbox, or a message to publish on a
/// topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMail {
    /// The sender's agent id. A key bound to an agent may only send as that
    /// agent; absent, it is the key's agent (or required when the key has none).
    #[serde(default)]
    pub from: Option<String>,
    /// What kind of message this is, for the recipient (`task`, `reply`, …):
    /// 1–64 characters.
    #[serde(rename = "type")]
    pub kind: String,
    /// The message itself: any JSON value (a string is stored as the
    /// message's text; anything else as its compact JSON).
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Ties a reply to its request.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// 0 (lowest) to 10; default 5. Higher is delivered first.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Seconds until the message expires undelivered (then dropped).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// A direct message as delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Mail {
    /// The stored message's id (also searchable in the inbox namespace).
    pub id: String,
    /// Its position in the inbox (increasing in arrival order): what
    /// `ack {upto}` takes.
    pub seq: u64,
    /// The sender.
    pub from: String,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload, as sent.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The request this answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// 0..=10.
    pub priority: u8,
    /// When it was stored.
    pub sent_at: DateTime<Utc>,
    /// When it expires, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The envelope stored in a message's `mail` metadata member. The payload is
/// the message's content (one copy, so the content limit, search and redaction
/// apply to it): the text itself, or compact JSON when `json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub from: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Unacknowledged direct messages, highest priority first, then oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InboxPage {
    /// The messages.
    pub messages: Vec<Mail>,
    /// Unacknowledged, unexpired messages in the inbox in all (this page included).
    pub pending: usize,
}

/// What an acknowledgement covers: every message at or below `upto`, and each
/// of `ids`. Give `upto` only when every message below it was handled (with
/// priorities, a batch is not in `seq` order: ack its ids).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxAck {
    /// Acknowledge every message with `seq` at or below this.
    #[serde(default)]
    pub upto: Option<u64>,
    /// Acknowledge these messages (ids as delivered).
    #[serde(default)]
    pub ids: Vec<String>,
}

/// A consumer's acknowledgements after an ack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AckState {
    /// Every message at or below this seq is acknowledged.
    pub upto: u64,
    /// Messages above `upto` acknowledged one by one.
    pub acked: Vec<u64>,
}

fn field_str<'a>(v: &'a Value, path: &str, field: &str, max: usize) -> Result<&'a str> {
    let s = v
        .get(field)
        .ok_or_else(|| Error::invalid(format!("{path}{field}"), "is required"))?
        .as_str()
        .ok_or_else(|| Error::invalid(format!("{path}{field}"), "must be a string"))?;
    if s.trim().is_empty() {
        return Err(Error::invalid(
            format!("{path}{field}"),
            "must not be empty",
        ));
    }
    if s.len() > max {
        return Err(Error::too_large(
            format!("{path}{field}"),
            format!("longer than {max} bytes"),
        ));
    }
    Ok(s)
}

fn string_array(v: &Value, path: &str, field: &str, required: bool) -> Result<()> {
    match v.get(field) {
        None if !required => Ok(()),
        None => Err(Error::invalid(format!("{path}{field}"), "is required")),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(Error::invalid(
            format!("{path}{field}"),
            "must be an array of strings",
        )),
    }
}

/// Checks that `url` is an absolute `http`, `https` or `grpc` URL with a host.
fn check_url(field: &str, url: &str) -> Result<()> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https" | "grpc" | "grpcs") && u.has_host() => {
            Ok(())
        }
        Ok(_) => Err(Error::invalid(
            field,
            "must be an absolute http(s) or grpc URL with a host",
        )),
        Err(e) => Err(Error::invalid(field, format!("not a URL: {e}"))),
    }
}

/// Validates an A2A v1.0 Agent Card: an object with `name`, `description`,
/// `version` (non-empty strings), `supportedInterfaces` (a non-empty array of
/// `{url, protocolBinding, protocolVersion}` with absolute URLs),
/// `capabilities` (an object), `defaultInputModes` / `defaultOutputModes`
/// (arrays of media types), `skills` (an array, at most [`MAX_SKILLS`], each
/// `{id, name, description, tags}`), optional `provider.url`,
/// `documentationUrl` and `iconUrl` (absolute URLs); at most
/// [`MAX_CARD_BYTES`] as compact JSON.
///
/// # Errors
/// [`Error::InvalidInput`] naming the first offending member (`card.skills[2].id`);
/// [`Error::TooLarge`] over the size limits.
pub fn validate_card(card: &Value) -> Result<()> {
    let size = serde_json::to_vec(card)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_CARD_BYTES {
        return Err(Error::too_large(
            "card",
            format!("{size} bytes of JSON; at most {MAX_CARD_BYTES}"),
        ));
    }
    if !card.is_object() {
        return Err(Error::invalid("card", "must be an A2A Agent Card object"));
    }
    let p = "card.";
    field_str(card, p, "name", 256)?;
    field_str(card, p, "description", 8 * 1024)?;
    field_str(card, p, "version", 64)?;
    let interfaces = card
        .get("supportedInterfaces")
        .ok_or_else(|| {
            Error::invalid(
                "card.supportedInterfaces",
                "is required (A2A v1.0: [{url, protocolBinding, protocolVersion}])",
            )
        })?
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= 16)
        .ok_or_else(|| {
            Error::invalid(
                "card.supportedInterfaces",
                "must be an array of 1 to 16 interfaces",
            )
        })?;
    for (i, itf) in interfaces.iter().enumerate() {
        let path = format!("card.supportedInterfaces[{i}].");
        let url = field_str(itf, &path, "url", 2048)?;
        check_url(&format!("{path}url"), url)?;
        field_str(itf, &path, "protocolBinding", 64)?;
        field_str(itf, &path, "protocolVersion", 32)?;
    }
    if !card.get("capabilities").is_some_and(Value::is_object) {
        return Err(Error::invalid(
            "card.capabilities",
            "is required and must be an object",
        ));
    }
    string_array(card, p, "defaultInputModes", true)?;
    string_array(card, p, "defaultOutputModes", true)?;
    let skills = card
        .get("skills")
        .ok_or_else(|| Error::invalid("card.skills", "is required"))?
        .as_array()
        .ok_or_else(|| Error::invalid("card.skills", "must be an array"))?;
    if skills.len() > MAX_SKILLS {
        return Err(Error::too_large(
            "card.skills",
            format!("{} skills; at most {MAX_SKILLS}", skills.len()),
        ));
    }
    for (i, s) in skills.iter().enumerate() {
        let path = format!("card.skills[{i}].");
        if !s.is_object() {
            return Err(Error::invalid(
                format!("card.skills[{i}]"),
                "must be an object",
            ));
        }
        field_str(s, &path, "id", 256)?;
        field_str(s, &path, "name", 256)?;
        field_str(s, &path, "description", 4096)?;
        string_array(s, &path, "tags", true)?;
        string_array(s, &path, "examples", false)?;
        string_array(s, &path, "inputModes", false)?;
        string_array(s, &path, "outputModes", false)?;
    }
    if let Some(provider) = card.get("provider") {
        let url = field_str(provider, "card.provider.", "url", 2048)?;
        check_url("card.provider.url", url)?;
        field_str(provider, "card.provider.", "organization", 256)?;
    }
    for f in ["documentationUrl", "iconUrl"] {
        if let Some(u) = card.get(f) {
            let u = u
                .as_str()
                .ok_or_else(|| Error::invalid(format!("card.{f}"), "must be a string"))?;
            check_url(&format!("card.{f}"), u)?;
        }
    }
    Ok(())
}

/// The text a card is embedded and BM25-indexed by: its name, description, and
/// each skill's name, description, tags and examples, one per line.
pub fn card_text(card: &Value) -> String {
    let mut out = String::new();
    let mut push = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            out.push_str(s);
            out.push('\n');
        }
    };
    push(card.get("name"));
    push(card.get("description"));
    for s in card
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        push(s.get("name"));
        push(s.get("description"));
        for list in ["tags", "examples"] {
            for t in s.get(list).and_then(Value::as_array).into_iter().flatten() {
                push(Some(t));
            }
        }
    }
    out
}

/// The envelope in a stored message's metadata, if it is a direct message.
pub(crate) fn envelope_of(metadata: &Map<String, Value>) -> Option<Envelope> {
    serde_json::from_value(metadata.get(MAIL_METADATA)?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn card() -> Value {
        json!({
            "name": "Sales analyst",
            "description": "Analyses CSV exports of sales data",
            "version": "1.0.0",
            "supportedInterfaces": [{"url": "http://127.0.0.1:9000/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["application/json"],
            "skills": [{"id": "csv", "name": "CSV analysis", "description": "Totals, trends", "tags": ["data_analysis", "csv"]}]
        })
    }

    #[test]
    fn a_complete_card_passes_and_each_missing_member_is_named() {
        validate_card(&card()).unwrap();
        for (path, member) in [
            ("", "name"),
            ("", "description"),
            ("", "version"),
            ("", "supportedInterfaces"),
            ("", "capabilities"),
            ("", "defaultInputModes"),
            ("", "skills"),
        ] {
            let mut c = card();
            c.as_object_mut().unwrap().remove(member);
            let err = validate_card(&c).unwrap_err().to_string();
            assert!(
                err.contains(&format!("card.{path}{member}")),
                "{member}: {err}"
            );
        }
        let mut c = card();
        c["skills"][0].as_object_mut().unwrap().remove("tags");
        let err = validate_card(&c).unwrap_err().to_string();
        assert!(err.contains("card.skills[0].tags"), "{err}");
    }

    #[test]
    fn relative_or_foreign_urls_and_oversized_cards_are_refused() {
        for bad in ["/a2a", "ftp://x/a2a", "not a url", "http://"] {
            let mut c = card();
            c["supportedInterfaces"][0]["url"] = json!(bad);
            let err = validate_card(&c).unwrap_err().to_string();
            assert!(err.contains("supportedInterfaces[0].url"), "{bad}: {err}");
        }
        let mut c = card();
        c["description"] = json!("x".repeat(MAX_CARD_BYTES));
        assert!(matches!(validate_card(&c), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn filters_match_skill_ids_names_and_tags_case_insensitively() {
        let a = AgentRecord {
            id: "a".into(),
            card: card(),
            status: AgentStatus::Healthy,
            registered_at: Utc::now(),
            last_seen: Utc::now(),
            version: 1,
        };
        let f = |skill: Option<&str>, tag: Option<&str>, status| AgentFilter {
            skill: skill.map(Into::into),
            tag: tag.map(Into::into),
            status,
        };
        assert!(f(Some("CSV"), None, None).admits(&a));
        assert!(f(Some("csv analysis"), Some("DATA_ANALYSIS"), None).admits(&a));
        assert!(!f(Some("translation"), None, None).admits(&a));
        assert!(!f(None, Some("pdf"), None).admits(&a));
        assert!(!f(None, None, Some(AgentStatus::Gone)).admits(&a));
        assert!(f(None, None, Some(AgentStatus::Healthy)).admits(&a));
    }

    #[test]
    fn ids_and_topics_fit_namespace_names() {
        validate_agent_id("analyst-1.eu_west").unwrap();
        for bad in ["", "-x", "a:b", "a/b", &"x".repeat(65)] {
            assert!(validate_agent_id(bad).is_err(), "{bad}");
        }
        crate::core::access::NamespaceName::parse(&inbox_namespace(&"x".repeat(64))).unwrap();
        crate::core::access::NamespaceName::parse(&topic_namespace(&"y".repeat(64))).unwrap();
    }
}
