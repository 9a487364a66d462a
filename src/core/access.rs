//! Who is calling: [`Access`] (namespaces and scopes a caller may use) and the
//! validated [`NamespaceName`].
//!
//! Every engine operation takes the caller's `&Access` and checks it before doing
//! anything (the shape Qdrant gives its `Access` parameter). Front ends build it
//! from what authenticated the request ([`crate::Engine::authenticate`] for an
//! API key); the library's own callers and a loopback server without keys pass
//! [`Access::full`].

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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
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

    /// Parses `read`, `write`, `delete` or `admin`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `scopes`) for anything else.
    pub fn parse(s: &str) -> Result<Scope> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "delete" => Ok(Scope::Delete),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::invalid(
                "scopes",
                format!(
                    "{:?} is not a scope; use read, write, delete or admin",
                    other.chars().take(50).collect::<String>()
                ),
            )),
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

/// A namespace pattern of an API key or [`Access`]:
///
/// - `name`: exactly that namespace;
/// - a glob with `*` (any run of name characters, possibly empty) anywhere:
///   `tenant-7-*`, `*-scratch`, `team-*-notes`; `*` (or `**`) alone is every
///   namespace;
/// - `name/**`: that namespace and every namespace below it in the parent
///   hierarchy (children, grandchildren, …), judged when the request is made, so
///   re-parenting a namespace moves it in or out of the pattern. Needs the
///   engine's hierarchy, which [`crate::Engine::bind`] and
///   [`crate::Engine::authenticate`] attach; an [`Access`] without it matches
///   only `name` itself (it errs closed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespacePattern(Pattern);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pattern {
    All,
    Exact(String),
    Glob(String),
    Subtree(String),
}

impl NamespacePattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `namespaces`) when the text is not a
    /// namespace name, a glob whose non-`*` characters are namespace characters,
    /// or `name/**`.
    pub fn parse(p: &str) -> Result<NamespacePattern> {
        let bad = || {
            Error::invalid(
                "namespaces",
                format!(
                    "{:?} is not a namespace name, a `*` glob (`tenant-7-*`) or `name/**`",
                    p.chars().take(200).collect::<String>()
                ),
            )
        };
        if p == "*" || p == "**" {
            return Ok(NamespacePattern(Pattern::All));
        }
        if let Some(name) = p.strip_suffix("/**") {
            return NamespaceName::parse(name)
                .map(|n| NamespacePattern(Pattern::Subtree(n.0)))
                .map_err(|_| bad());
        }
        if p.contains('*') {
            let ok = p.len() <= MAX_NAMESPACE_LEN
                && !p.contains("**")
                && p.bytes()
                    .all(|b| b == b'*' || b.is_ascii_alphanumeric() || b"._:-".contains(&b));
            return if ok {
                Ok(NamespacePattern(Pattern::Glob(p.to_owned())))
            } else {
                Err(bad())
            };
        }
        NamespaceName::parse(p)
            .map(|n| NamespacePattern(Pattern::Exact(n.0)))
            .map_err(|_| bad())
    }

    /// Whether `ns` matches by name alone (a `name/**` pattern matches `name`
    /// here; its descendants need the hierarchy, see [`Access::covers`]).
    pub fn matches(&self, ns: &str) -> bool {
        match &self.0 {
            Pattern::All => true,
            Pattern::Exact(n) | Pattern::Subtree(n) => n == ns,
            Pattern::Glob(g) => glob_match(g.as_bytes(), ns.as_bytes()),
        }
    }

    fn subtree(&self) -> Option<&str> {
        match &self.0 {
            Pattern::Subtree(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Pattern::All => f.write_str("*"),
            Pattern::Exact(n) | Pattern::Glob(n) => f.write_str(n),
            Pattern::Subtree(n) => write!(f, "{n}/**"),
        }
    }
}

/// `*` matches any run of bytes (iterative wildcard matching with one
/// backtrack point: linear in practice, O(len(glob)·len(name)) at worst).
fn glob_match(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, n));
            g += 1;
        } else if g < glob.len() && glob[g] == name[n] {
            g += 1;
            n += 1;
        } else if let Some((sg, sn)) = star {
            g = sg + 1;
            n = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// The parent of a namespace by name (`None` at a root or for an unknown
/// name): how [`Access`] judges `name/**` patterns. The engine supplies it.
pub type ParentOf = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The caller of an engine operation: which namespaces and scopes it may use,
/// who it is (for the change log's `actor` and the audit log's `key_id`), and
/// what its reads mask ([`crate::core::redact::Redaction`]).
#[derive(Clone)]
pub struct Access {
    /// The API key's id, when a key authenticated the caller.
    pub key_id: Option<String>,
    /// The agent the caller acts as, recorded as the actor of its changes. When
    /// set, a write naming another agent is refused ([`Error::Forbidden`]).
    pub agent_id: Option<String>,
    /// Masking applied to everything this caller reads (`None`: none).
    pub redaction: Option<std::sync::Arc<crate::core::redact::Redaction>>,
    namespaces: Vec<NamespacePattern>,
    scopes: u8,
    parents: Option<ParentOf>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("key_id", &self.key_id)
            .field("agent_id", &self.agent_id)
            .field("namespaces", &self.namespaces)
            .field("scopes", &self.scope_names())
            .field("redaction", &self.redaction)
            .finish()
    }
}

impl Access {
    /// Every namespace, every scope: the library's own callers, the CLI on its
    /// own data directory, and a loopback server with no API keys.
    pub fn full() -> Access {
        Access {
            key_id: None,
            agent_id: None,
            redaction: None,
            namespaces: vec![NamespacePattern(Pattern::All)],
            scopes: Scope::Read.bit()
                | Scope::Write.bit()
                | Scope::Delete.bit()
                | Scope::Admin.bit(),
            parents: None,
        }
    }

    /// Access limited to `namespaces` with `scopes`.
    pub fn new(namespaces: Vec<NamespacePattern>, scopes: &[Scope]) -> Access {
        Access {
            key_id: None,
            agent_id: None,
            redaction: None,
            namespaces,
            scopes: scopes.iter().fold(0, |acc, s| acc | s.bit()),
            parents: None,
        }
    }

    /// The same access, acting as `agent_id`.
    pub fn with_agent(mut self, agent_id: impl Into<String>) -> Access {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// The same access, judging `name/**` patterns with `parents`.
    pub fn with_parents(mut self, parents: ParentOf) -> Access {
        self.parents = Some(parents);
        self
    }

    /// The caller's namespace patterns.
    pub fn patterns(&self) -> &[NamespacePattern] {
        &self.namespaces
    }

    /// The caller's scopes by name.
    pub fn scope_names(&self) -> Vec<&'static str> {
        [Scope::Read, Scope::Write, Scope::Delete, Scope::Admin]
            .into_iter()
            .filter(|s| self.scopes & s.bit() != 0)
            .map(Scope::as_str)
            .collect()
    }

    /// Whether the caller holds `scope` (admin holds every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether `ns` is one of the caller's namespaces: a pattern matches its
    /// name, or a `name/**` pattern names it or one of its ancestors.
    pub fn covers(&self, ns: &str) -> bool {
        if self.namespaces.iter().any(|p| p.matches(ns)) {
            return true;
        }
        let (Some(parents), true) = (
            &self.parents,
            self.namespaces.iter().any(|p| p.subtree().is_some()),
        ) else {
            return false;
        };
        // Walk up (bounded: the hierarchy is acyclic and at most a few levels
        // deep, the bound guards against a resolver that is neither).
        let mut current = ns.to_owned();
        for _ in 0..64 {
            let Some(parent) = parents(&current) else {
                return false;
            };
            if self.namespaces.iter().any(|p| p.subtree() == Some(&parent)) {
                return true;
            }
            current = parent;
        }
        false
    }

    /// Whether the caller may create `child` under `parent` through a
    /// `root/**` pattern: `root` is `parent` or one of its ancestors, and
    /// `child`'s name starts with `root` (`team-a/**` may create `team-a-bot`
    /// under `team-a`, not `billing`).
    pub fn covers_child_of(&self, parent: &NamespaceName, child: &NamespaceName) -> bool {
        let named = |n: &str| {
            child.as_str().starts_with(n) && self.namespaces.iter().any(|p| p.subtree() == Some(n))
        };
        if named(parent.as_str()) {
            return true;
        }
        let Some(parents) = &self.parents else {
            return false;
        };
        let mut current = parent.as_str().to_owned();
        for _ in 0..64 {
            let Some(up) = parents(&current) else {
                return false;
            };
            if named(&up) {
                return true;
            }
            current = up;
        }
        false
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

    /// Checks an engine-wide operation (it needs `admin` on every namespace:
    /// the pattern `*`).
    ///
    /// # Errors
    /// [`Error::Forbidden`].
    pub fn check_admin(&self) -> Result<()> {
        if self.has(Scope::Admin) && self.covers_all() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this operation needs the `admin` scope on every namespace (`*`)".into(),
            ))
        }
    }

    fn covers_all(&self) -> bool {
        self.namespaces.iter().any(|p| p.0 == Pattern::All)
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
        assert!(NamespacePattern::parse("a/b").is_err());
        assert!(NamespacePattern::parse("a**").is_err());
        assert!(NamespacePattern::parse("/**").is_err());
        assert!(NamespacePattern::parse("a b*").is_err());
    }

    #[test]
    fn globs_match_anywhere() {
        let p = |s: &str| NamespacePattern::parse(s).unwrap();
        assert!(p("tenant-7-*").matches("tenant-7-x"));
        assert!(p("tenant-7-*").matches("tenant-7-"));
        assert!(!p("tenant-7-*").matches("tenant-70"));
        assert!(p("*-scratch").matches("a-scratch"));
        assert!(!p("*-scratch").matches("a-scratch2"));
        assert!(p("team-*-notes").matches("team-a-b-notes"));
        assert!(!p("team-*-notes").matches("team-notes"));
        assert!(p("a*b*c").matches("abc"));
        assert!(p("a*b*c").matches("axxbyyc"));
        assert!(!p("a*b*c").matches("axxbyy"));
        assert!(p("*").matches("anything"));
        assert_eq!(p("team/**").to_string(), "team/**");
        assert_eq!(p("**").to_string(), "*");
    }

    #[test]
    fn subtree_patterns_follow_the_hierarchy() {
        use std::sync::Arc;
        let ns = |s: &str| NamespaceName::parse(s).unwrap();
        // org <- team-a <- team-a-bot ; other
        let parents: ParentOf = Arc::new(|n: &str| match n {
            "team-a" => Some("org".into()),
            "team-a-bot" => Some("team-a".into()),
            _ => None,
        });
        let key = Access::new(
            vec![NamespacePattern::parse("team-a/**").unwrap()],
            &[Scope::Read],
        );
        // Without the hierarchy only the named namespace is covered.
        assert!(key.covers("team-a"));
        assert!(!key.covers("team-a-bot"));
        let key = key.with_parents(parents);
        assert!(key.check(&ns("team-a"), Scope::Read).is_ok());
        assert!(key.check(&ns("team-a-bot"), Scope::Read).is_ok());
        assert!(key.check(&ns("org"), Scope::Read).is_err());
        assert!(key.check(&ns("other"), Scope::Read).is_err());
    }
}
