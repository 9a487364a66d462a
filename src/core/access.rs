//! Who is calling: [`Access`] (namespaces and scopes a caller may use) and the
//! validated [`NamespaceName`].
//!
//! Every engine operation takes the caller's `&Access` and checks it before doing
//! anything (the shape Qdrant gives its `Access` parameter). Front ends build it
//! from what authenticated the request; until API keys exist every front end
//! passes [`Access::full`].

use std::fmt;

use crate::core::error::{Error, Result};

/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// A namespace name that passed validation: 1–128 bytes of `[A-Za-z0-9._:-]`,
/// starting with a letter or digit. Checked once, where a request enters the
/// engine; everything past that point takes this type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceName(String);

impl NamespaceName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when it does not match
    /// `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
    pub fn parse(name: &str) -> Result<NamespaceName> {
        let bytes = name.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_NAMESPACE_LEN
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(NamespaceName(name.to_owned()))
        } else {
            Err(Error::InvalidNamespace(name.chars().take(200).collect()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NamespaceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks a namespace name (see [`NamespaceName::parse`]).
///
/// # Errors
/// [`Error::InvalidNamespace`].
pub fn validate_namespace(ns: &str) -> Result<()> {
    NamespaceName::parse(ns).map(|_| ())
}

/// What a caller may do. A scope does not imply another: `delete` without
/// `write` may delete but not add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Search, list, read records and summaries.
    Read,
    /// Add messages, trigger summaries.
    Write,
    /// Delete messages and namespaces.
    Delete,
    /// Everything, including engine-wide operations (check, keys).
    Admin,
}

impl Scope {
    /// The scope's name in key definitions (`read`, `write`, `delete`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Delete => 4,
            Scope::Admin => 8,
        }
    }
}

/// A namespace pattern: `name` (exactly that namespace), `prefix*` (every name
/// that starts with `prefix`) or `*` (every namespace). `**` is accepted as a
/// synonym of `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespacePattern(String);

impl NamespacePattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the part before a trailing `*` is not a valid
    /// namespace prefix or a `*` appears elsewhere.
    pub fn parse(p: &str) -> Result<NamespacePattern> {
        let p = if p == "**" { "*" } else { p };
        let body = p.strip_suffix('*').unwrap_or(p);
        let valid_body = body.is_empty() && p == "*"
            || (!body.contains('*') && NamespaceName::parse(body).is_ok());
        if !valid_body {
            return Err(Error::invalid(
                "namespaces",
                format!("{p:?} is not a namespace, `prefix*` or `*`"),
            ));
        }
        Ok(NamespacePattern(p.to_owned()))
    }

    /// Whether `ns` matches.
    pub fn matches(&self, ns: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => ns.starts_with(prefix),
            None => self.0 == ns,
        }
    }
}

/// The caller of an engine operation: which namespaces and scopes it may use,
/// and who it is (for the change log's `actor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The API key's id, when a key authenticated the caller.
    pub key_id: Option<String>,
    /// The agent the caller acts as, recorded as the actor of its changes.
    pub agent_id: Option<String>,
    namespaces: Vec<NamespacePattern>,
    scopes: u8,
}

impl Access {
    /// Every namespace, every scope: the library's own callers and, until API keys
    /// exist, every front end.
    pub fn full() -> Access {
        Access {
            key_id: None,
            agent_id: None,
            namespaces: vec![NamespacePattern("*".into())],
            scopes: Scope::Read.bit()
                | Scope::Write.bit()
                | Scope::Delete.bit()
                | Scope::Admin.bit(),
        }
    }

    /// Access limited to `namespaces` with `scopes`.
    pub fn new(namespaces: Vec<NamespacePattern>, scopes: &[Scope]) -> Access {
        Access {
            key_id: None,
            agent_id: None,
            namespaces,
            scopes: scopes.iter().fold(0, |acc, s| acc | s.bit()),
        }
    }

    /// The same access, acting as `agent_id`.
    pub fn with_agent(mut self, agent_id: impl Into<String>) -> Access {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Whether the caller holds `scope` (admin holds every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether `ns` is one of the caller's namespaces.
    pub fn covers(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|p| p.matches(ns))
    }

    /// Checks that the caller may use `scope` on `ns`.
    ///
    /// # Errors
    /// [`Error::Forbidden`] naming what is missing.
    pub fn check(&self, ns: &NamespaceName, scope: Scope) -> Result<()> {
        if !self.covers(ns.as_str()) {
            return Err(Error::Forbidden(format!(
                "this caller's access does not cover namespace {ns:?}"
            )));
        }
        if !self.has(scope) {
            return Err(Error::Forbidden(format!(
                "this caller lacks the `{}` scope",
                scope.as_str()
            )));
        }
        Ok(())
    }

    /// Checks an engine-wide operation (it needs `admin`).
    ///
    /// # Errors
    /// [`Error::Forbidden`].
    pub fn check_admin(&self) -> Result<()> {
        if self.has(Scope::Admin) && self.covers_all() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this operation needs the `admin` scope on every namespace".into(),
            ))
        }
    }

    fn covers_all(&self) -> bool {
        self.namespaces.iter().any(|p| p.0 == "*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["a", "user-42", "A.b_c:d-e", &"x".repeat(128)] {
            assert!(NamespaceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "..", "a b", "é", &"x".repeat(129)] {
            assert!(NamespaceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_checks_namespace_and_scope() {
        let ns = |s: &str| NamespaceName::parse(s).unwrap();
        let a = Access::new(
            vec![
                NamespacePattern::parse("team-a*").unwrap(),
                NamespacePattern::parse("shared").unwrap(),
            ],
            &[Scope::Read],
        );
        assert!(a.check(&ns("team-a"), Scope::Read).is_ok());
        assert!(a.check(&ns("team-a.x"), Scope::Read).is_ok());
        assert!(a.check(&ns("shared"), Scope::Read).is_ok());
        assert!(a.check(&ns("shared2"), Scope::Read).is_err());
        assert!(a.check(&ns("team-b"), Scope::Read).is_err());
        assert_eq!(
            a.check(&ns("team-a"), Scope::Write).unwrap_err().code(),
            "forbidden"
        );
        assert!(a.check_admin().is_err());
        assert!(Access::full().check(&ns("any"), Scope::Delete).is_ok());
        assert!(Access::full().check_admin().is_ok());
        assert!(NamespacePattern::parse("a*b").is_err());
        assert!(NamespacePattern::parse("a/**").is_err());
    }
}
