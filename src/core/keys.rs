//! API keys: what a key may do ([`ApiKey`]), how one is asked for
//! ([`NewKey`]), and the token format.
//!
//! A token is `mdk_<id>_<secret>`: `id` is 16 hex digits (64 random bits, also
//! the key's public id), `secret` is 64 hex digits (256 random bits from the
//! operating system's generator). It is shown once, when the key is created;
//! the store keeps only its SHA-256. A request's token is found by its `id` and
//! accepted when the SHA-256 of the whole token equals the stored one, compared
//! in constant time (`subtle`). The `id` prefix is the GitHub/Stripe token
//! layout: lookup without a table scan, and a leaked token names its key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::access::Scope;
use crate::core::error::{Error, Result};
use crate::core::redact::Redaction;

/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "mdk_";

/// An API key as listed (never its token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// Public id: 16 hex digits, the middle part of the token. Recorded as
    /// `key_id` in the audit log.
    pub id: String,
    /// A name for people (`ci`, `researcher`).
    pub name: String,
    /// Namespace patterns: names, `*` globs, `name/**` subtrees.
    pub namespaces: Vec<String>,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// The agent every write through this key is made as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// What reads through this key mask.
    #[serde(default)]
    pub redact: Redaction,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working (none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked (none: it was not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether it authenticates at `now` (not revoked, not expired).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// An API key as stored: the key and the SHA-256 (hex) of its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The key.
    pub key: ApiKey,
    /// SHA-256 of the whole token, lowercase hex.
    pub token_sha256: String,
}

/// What `POST /v1/keys` and `memoryd keys create` ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A name for people, 1–128 bytes.
    pub name: String,
    /// Namespace patterns (at least one): `team-a`, `tenant-7-*`, `team-a/**`, `*`.
    pub namespaces: Vec<String>,
    /// Scopes (at least one): `read`, `write`, `delete`, `admin`.
    pub scopes: Vec<Scope>,
    /// Stamp this agent on every write made with the key; a write naming
    /// another agent is refused.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Expiry (RFC 3339, in the future). Default: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Read-time masking.
    #[serde(default)]
    pub redact: Redaction,
}

/// A key just created, with its token (shown once, never again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The bearer token: `Authorization: Bearer <token>`. Store it now; only its
    /// hash is kept.
    pub token: String,
}

/// A new token for a new key: `(id, token, sha256 hex of token)`.
///
/// # Errors
/// [`Error::Storage`] when the operating system's random generator fails.
pub fn generate_token() -> Result<(String, String, String)> {
    let mut bytes = [0u8; 40];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Storage(format!("no random numbers from the OS: {e}")))?;
    let id = hex::encode(&bytes[..8]);
    let token = format!("{TOKEN_PREFIX}{id}_{}", hex::encode(&bytes[8..]));
    let digest = token_sha256(&token);
    Ok((id, token, digest))
}

/// SHA-256 (lowercase hex) of a token.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The key id inside a token, when the token has the `mdk_<16 hex>_<64 hex>` shape.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexdigits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexdigits(id, 16) && hexdigits(secret, 64)).then_some(id)
}

/// Whether two SHA-256 hex digests are equal, in time independent of where
/// they differ.
pub fn digests_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Parses a duration such as `30d`, `12h`, `90m`, `45s` or `2w`.
///
/// # Errors
/// [`Error::InvalidInput`] (field `expires`) for anything else or zero.
pub fn parse_duration(text: &str) -> Result<chrono::Duration> {
    let bad = || {
        Error::invalid(
            "expires",
            format!("{text:?} is not a duration like 30d, 12h, 90m, 45s or 2w"),
        )
    };
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .filter(|s| *s > 0 && *s <= 100 * 365 * 86_400)
        .map(chrono::Duration::seconds)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape_and_hash() {
        let (id, token, digest) = generate_token().unwrap();
        assert_eq!(token_id(&token), Some(id.as_str()));
        assert_eq!(token.len(), 4 + 16 + 1 + 64);
        assert_eq!(digest, token_sha256(&token));
        assert!(digests_equal(&digest, &token_sha256(&token)));
        let (_, other, _) = generate_token().unwrap();
        assert_ne!(token, other);
        assert!(!digests_equal(&digest, &token_sha256(&other)));
        for bad in [
            "",
            "mdk_",
            "mdk_abc_def",
            "Bearer x",
            &token[..token.len() - 1],
        ] {
            assert_eq!(token_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_duration("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_duration("2w").unwrap(), chrono::Duration::weeks(2));
        for bad in ["", "d", "0d", "30", "30y", "-1d", "1.5h", "99999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
