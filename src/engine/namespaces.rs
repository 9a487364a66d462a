//! The namespace registry as a hierarchy: create, update (parent, metadata),
//! inspect, delete (recursively), and the ancestor chain that context reads fall
//! through (like Python's `ChainMap`).
//!
//! Chains are acyclic and at most [`MAX_DEPTH`] namespaces long (a namespace and
//! 15 ancestors). Topology changes take one engine-wide lock, so two concurrent
//! re-parentings cannot close a cycle between them.

use serde::Serialize;

use super::Engine;
use crate::core::access::{Access, NamespaceName, Scope};
use crate::core::error::{Error, Result};
use crate::core::types::NamespaceInfo;
use crate::storage::{Mutation, NamespaceUpdate};

/// Longest chain: a namespace and its ancestors.
pub const MAX_DEPTH: usize = 16;

/// A namespace with its children, as `GET /v1/namespaces/{ns}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NamespaceDetail {
    /// Name, counts, parent, metadata.
    #[serde(flatten)]
    pub info: NamespaceInfo,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Newest change-log seq.
    pub last_seq: u64,
    /// Names of the namespaces whose parent it is, by name (those the caller
    /// can see).
    pub children: Vec<String>,
}

impl Engine {
    /// Creates an empty namespace (a registry entry with `parent` and
    /// `metadata`); returns it. Creating one that exists changes nothing and
    /// returns it as it is.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] (for `namespace` or `parent`),
    /// [`Error::Forbidden`] without `admin` on `namespace` (or, for a new one, on its parent through a `name/**` pattern), [`Error::NotFound`]
    /// for an unknown parent, [`Error::Conflict`] for a cycle or a chain deeper
    /// than [`MAX_DEPTH`], [`Error::Storage`].
    #[tracing::instrument(name = "engine.create_namespace", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn create_namespace(
        &self,
        access: &Access,
        namespace: &str,
        parent: Option<&str>,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<NamespaceInfo> {
        self.write_namespace(access, namespace, parent, metadata, false)
            .await
    }

    /// Creates `namespace` or, when it exists, sets its parent (`None` clears
    /// it) and replaces its metadata; records `namespace.updated` when something
    /// changed. Returns it.
    ///
    /// # Errors
    /// As [`Engine::create_namespace`].
    #[tracing::instrument(name = "engine.put_namespace", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn put_namespace(
        &self,
        access: &Access,
        namespace: &str,
        parent: Option<&str>,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<NamespaceInfo> {
        self.write_namespace(access, namespace, parent, metadata, true)
            .await
    }

    async fn write_namespace(
        &self,
        access: &Access,
        namespace: &str,
        parent: Option<&str>,
        metadata: serde_json::Map<String, serde_json::Value>,
        update: bool,
    ) -> Result<NamespaceInfo> {
        let ns = NamespaceName::parse(namespace)?;
        let parent = parent.map(NamespaceName::parse).transpose()?;
        for (k, v) in &metadata {
            crate::engine::validate::content("metadata", k)?;
            crate::engine::validate::json_strings("metadata", v)?;
        }
        let _topology = self.inner.topology.lock().await;
        match &parent {
            // A new namespace may be created under a parent the caller's
            // `root/**` pattern covers, when its name starts with `root` (it is
            // covered once it exists; the prefix keeps a subtree admin from
            // claiming names other keys' patterns may cover); an existing one must
            // be covered already (no adopting another's namespace).
            Some(p)
                if !self.exists(&ns)
                    && access.has(Scope::Admin)
                    && access.covers_child_of(p, &ns) => {}
            _ => access.check(&ns, Scope::Admin)?,
        }
        if let Some(p) = &parent {
            access.check(p, Scope::Read)?;
            if !self.exists(p) {
                return Err(Error::NotFound {
                    what: "namespace",
                    id: p.to_string(),
                });
            }
            // The chain above the new parent must not contain `ns` and must
            // leave room for it (and its own descendants, when it has any).
            let above = self.chain(p);
            if above.contains(&ns) {
                return Err(Error::Conflict(format!(
                    "making {p} the parent of {ns} would close a cycle ({})",
                    above
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" → ")
                )));
            }
            if above.len() + 1 + self.height(&ns) > MAX_DEPTH {
                return Err(Error::Conflict(format!(
                    "the chain would be deeper than {MAX_DEPTH} namespaces"
                )));
            }
        }
        let update = update.then(|| NamespaceUpdate {
            parent: parent.clone(),
            metadata: Some(metadata.clone()),
        });
        self.inner
            .commit(access, &ns, true, move |_| {
                Ok(Mutation::CreateNamespace {
                    parent,
                    metadata,
                    update,
                })
            })
            .await?;
        self.inner.namespace(&ns).map(|s| s.info()).ok_or_else(|| {
            Error::Conflict(format!("namespace {ns} was deleted while being written"))
        })
    }

    /// One namespace with its children.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown one, [`Error::Forbidden`] without `read`.
    #[tracing::instrument(name = "engine.namespace", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn namespace(&self, access: &Access, namespace: &str) -> Result<NamespaceDetail> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Read)?;
        let state = self
            .inner
            .namespace(&ns)
            .filter(|s| self.exists(&s.name))
            .ok_or_else(|| Error::NotFound {
                what: "namespace",
                id: ns.to_string(),
            })?;
        let mut info = state.info();
        if let Some(r) = &access.redaction {
            r.mask_metadata(&mut info.metadata);
        }
        Ok(NamespaceDetail {
            created_at: info.created_at,
            last_seq: info.last_seq,
            children: self
                .children(&ns)
                .into_iter()
                .filter(|c| access.covers(c.as_str()))
                .map(|c| c.to_string())
                .collect(),
            info,
        })
    }

    /// Deletes a namespace; with `recursive`, its descendants first (deepest
    /// first). Returns the messages deleted.
    ///
    /// # Errors
    /// [`Error::Conflict`] when it has children and `recursive` is false;
    /// [`Error::Forbidden`] without `delete` on any namespace deleted.
    #[tracing::instrument(name = "engine.delete_namespace_tree", level = "debug", skip_all, fields(namespace, key_id = access.key_id.as_deref(), agent_id = access.agent_id.as_deref()))]
    pub async fn delete_namespace_tree(
        &self,
        access: &Access,
        namespace: &str,
        recursive: bool,
    ) -> Result<usize> {
        let ns = NamespaceName::parse(namespace)?;
        access.check(&ns, Scope::Delete)?;
        let _topology = self.inner.topology.lock().await;
        let mut order = vec![ns.clone()];
        let mut i = 0;
        while i < order.len() {
            let kids = self.children(&order[i]);
            if !kids.is_empty() && !recursive {
                // Only the children the caller can see are named.
                let seen: Vec<&str> = kids
                    .iter()
                    .filter(|c| access.covers(c.as_str()))
                    .map(|c| c.as_str())
                    .collect();
                let hidden = kids.len() - seen.len();
                let mut list = seen.join(", ");
                if hidden > 0 {
                    let sep = if seen.is_empty() { "" } else { ", " };
                    list = format!("{list}{sep}{hidden} not visible to this caller");
                }
                return Err(Error::Conflict(format!(
                    "namespace {ns} has children ({list}); delete them first or pass recursive"
                )));
            }
            order.extend(kids);
            i += 1;
        }
        for n in &order {
            if access.check(n, Scope::Delete).is_err() {
                return Err(Error::Forbidden(format!(
                    "deleting {ns} recursively needs `delete` on every namespace below it"
                )));
            }
        }
        let mut deleted = 0;
        for n in order.iter().rev() {
            deleted += self.delete_one_namespace(access, n).await?;
        }
        Ok(deleted)
    }

    /// Deletes every message, summary and context entry of a namespace and its
    /// registry entry; returns how many messages were deleted (0 for an unknown
    /// one).
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`], [`Error::Forbidden`] without the `delete`
    /// scope, [`Error::Conflict`] when it has children (see
    /// [`Engine::delete_namespace_tree`]), [`Error::Storage`].
    pub async fn delete_namespace(&self, access: &Access, namespace: &str) -> Result<usize> {
        self.delete_namespace_tree(access, namespace, false).await
    }

    /// `ns` and its ancestors, nearest first (stops at [`MAX_DEPTH`] or a name
    /// with no registry entry).
    pub(crate) fn chain(&self, ns: &NamespaceName) -> Vec<NamespaceName> {
        let mut out = vec![ns.clone()];
        while out.len() < MAX_DEPTH + 1 {
            let Some(parent) = self
                .inner
                .namespace(out.last().expect("not empty"))
                .and_then(|s| s.record.lock().as_ref().and_then(|r| r.parent.clone()))
                .and_then(|p| NamespaceName::parse(&p).ok())
            else {
                break;
            };
            if out.contains(&parent) {
                break;
            }
            out.push(parent);
        }
        out
    }

    fn exists(&self, ns: &NamespaceName) -> bool {
        self.inner
            .namespace(ns)
            .is_some_and(|s| s.record.lock().is_some())
    }

    pub(crate) fn children(&self, ns: &NamespaceName) -> Vec<NamespaceName> {
        self.inner
            .namespaces
            .read()
            .values()
            .filter(|s| {
                s.record.lock().as_ref().and_then(|r| r.parent.as_deref()) == Some(ns.as_str())
            })
            .map(|s| s.name.clone())
            .collect()
    }

    /// Levels below `ns` (0 for a leaf).
    fn height(&self, ns: &NamespaceName) -> usize {
        let mut level = vec![ns.clone()];
        let mut h = 0;
        while h <= MAX_DEPTH {
            let next: Vec<NamespaceName> = level.iter().flat_map(|n| self.children(n)).collect();
            if next.is_empty() {
                break;
            }
            level = next;
            h += 1;
        }
        h
    }
}
