//! Shared context: a versioned key-value store per namespace that agents set,
//! read, update with compare-and-set, and look back through (history).
//!
//! Every write makes a new version (1, 2, 3, … per key); a delete is a version too
//! (a tombstone), so `If-Match` and history keep working across it. An entry may
//! expire (`expires_at`): from then on it reads as absent, and the background-job
//! runner deletes it (a tombstone version whose agent is `None`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::core::error::{Error, Result};

/// Longest context key, in bytes.
pub const MAX_CONTEXT_KEY_LEN: usize = 256;

/// Checks a context key: `^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$` (no `/`, so
/// `…/context/{key}/history` stays unambiguous; `:` for structure such as
/// `research:findings`).
///
/// # Errors
/// [`Error::InvalidInput`] (`invalid_value`, field `key`).
pub fn validate_key(key: &str) -> Result<()> {
    let b = key.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_CONTEXT_KEY_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "key",
            format!(
                "{:?} is not a context key: 1-256 characters from [A-Za-z0-9._:-], starting with a letter or digit",
                key.chars().take(100).collect::<String>()
            ),
        ))
    }
}

/// What a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContextOp {
    /// The value was replaced.
    Set,
    /// The value was merged with a JSON Merge Patch (RFC 7396).
    Patch,
    /// The entry was deleted (a tombstone), by a caller or by expiry.
    Delete,
}

/// The current state of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContextEntry {
    /// The key.
    pub key: String,
    /// Its namespace.
    pub namespace: String,
    /// Version number, from 1, one more per write (deletes included).
    pub version: u64,
    /// The value (`null` on a tombstone).
    #[schema(value_type = Object)]
    pub value: Value,
    /// Who wrote this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
    /// When it stops being readable, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// True for a tombstone (deleted; reads answer 404).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl ContextEntry {
    /// Whether the entry reads as present at `now` (not deleted, not expired).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.deleted && self.expires_at.is_none_or(|t| t > now)
    }

    /// The text search indexes for this entry ([`context_text`]).
    pub fn search_text(&self) -> String {
        context_text(&self.key, &self.value)
    }
}

/// The text a context entry is embedded and BM25-indexed by: its key with `:`,
/// `.`, `_` and `-` read as spaces, then every object member name (in key
/// order) and string of its value, depth first, one per line. Numbers, booleans and `null` are left
/// out (they carry no words).
pub fn context_text(key: &str, value: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push('\n');
                out.push_str(s);
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => {
                for (k, v) in o {
                    out.push('\n');
                    out.push_str(k);
                    walk(v, out);
                }
            }
            _ => {}
        }
    }
    let mut out: String = key
        .chars()
        .map(|c| {
            if matches!(c, ':' | '.' | '_' | '-') {
                ' '
            } else {
                c
            }
        })
        .collect();
    walk(value, &mut out);
    out
}

/// One version in a key's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContextVersion {
    /// Version number.
    pub version: u64,
    /// What the write did.
    pub op: ContextOp,
    /// The value after it (`null` for a delete).
    #[schema(value_type = Object)]
    pub value: Value,
    /// Who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Expiry set by this version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Options of a context write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextWrite {
    /// Compare-and-set: write only if the key's current version is this (`0`:
    /// only if it does not exist, i.e. absent, deleted or expired).
    pub expected_version: Option<u64>,
    /// Recorded as the version's author (defaults to the caller's agent id).
    pub agent_id: Option<String>,
    /// Expire this many seconds after the write.
    pub ttl_s: Option<u64>,
    /// Expire at this time (wins over `ttl_s`).
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_has_the_key_member_names_and_strings() {
        let v = serde_json::json!({"title": "Q3 plan", "tags": ["a", 1, true], "n": 5});
        assert_eq!(
            context_text("research:findings", &v),
            "research findings\nn\ntags\na\ntitle\nQ3 plan"
        );
        assert_eq!(context_text("k", &serde_json::json!(42)), "k");
    }

    #[test]
    fn keys_are_validated() {
        for ok in ["a", "research:findings", "v1.2_x-y", &"k".repeat(256)] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":a", "a/b", "a b", "é", &"k".repeat(257)] {
            assert_eq!(
                validate_key(bad).unwrap_err().code(),
                "invalid_value",
                "{bad}"
            );
        }
    }
}
