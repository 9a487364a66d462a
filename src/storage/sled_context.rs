//! Context entries in the sled backend: key layout, the compare-and-set write
//! applied inside a commit's transaction, and the reads.

use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{SledStore, TxResult, abort};
use crate::core::context::{ContextEntry, ContextVersion};
use crate::core::error::{Error, Result};
use crate::storage::codec::decode_json;
use crate::storage::{ChangeKind, ContextPut};

/// `<namespace> 0x00`: every context key of a namespace starts with it.
pub(super) fn prefix(ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k
}

/// `<namespace> 0x00 <key>`: the key of an entry in the `context` tree.
pub(super) fn key(ns: &str, name: &str) -> Vec<u8> {
    let mut k = prefix(ns);
    k.extend_from_slice(name.as_bytes());
    k
}

/// `<namespace> 0x00 <key> 0x00 <version>`: a version in `context_history`.
pub(super) fn history_key(ns: &str, name: &str, version: u64) -> Vec<u8> {
    let mut k = key(ns, name);
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Applies a context write to the key's current state inside the transaction:
/// checks the precondition, computes the new value (merge patch included) and
/// its size, and returns the new state, its history version and the change kind.
/// `<expiry µs> <namespace> 0x00 <key>`: an entry in `context_expiry`, which
/// the expiry sweep reads in time order instead of scanning every entry.
pub(super) fn expiry_key(at: DateTime<Utc>, ns: &str, name: &str) -> Vec<u8> {
    let mut k = (at.timestamp_micros().max(0) as u64).to_be_bytes().to_vec();
    k.extend(key(ns, name));
    k
}

/// Applies a context write to the key's current state inside the transaction
/// ([`crate::storage::apply_context_put`]) and keeps `context_expiry` in step
/// with it.
pub(super) fn put(
    ns: &str,
    put: &ContextPut,
    context: &TransactionalTree,
    expiry: &TransactionalTree,
) -> TxResult<(ContextEntry, ContextVersion, ChangeKind)> {
    let current: Option<ContextEntry> = match context.get(key(ns, &put.key))? {
        Some(b) => Some(decode_json("context", &b).map_err(ConflictableTransactionError::Abort)?),
        None => None,
    };
    let (entry, version, kind) = match crate::storage::apply_context_put(ns, put, current.as_ref())
    {
        Ok(applied) => applied,
        Err(e) => return abort(e),
    };
    if let Some(t) = current.as_ref().and_then(|c| c.expires_at) {
        expiry.remove(expiry_key(t, ns, &put.key))?;
    }
    if let Some(t) = entry.expires_at {
        expiry.insert(expiry_key(t, ns, &put.key), &[][..])?;
    }
    Ok((entry, version, kind))
}

impl SledStore {
    /// `stop`: the first key not to list (board documents sort after every
    /// context key, since `~` sorts after letters and digits).
    pub(super) fn context_list_sync(
        &self,
        start: &[u8],
        after: Option<&[u8]>,
        stop: Option<&[u8]>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<ContextEntry>> {
        let mut out = Vec::new();
        for kv in self.context.scan_prefix(start) {
            let (k, v) = kv.map_err(Error::storage)?;
            if stop.is_some_and(|s| k.as_ref() >= s) {
                break;
            }
            if after.is_some_and(|a| k.as_ref() <= a) {
                continue;
            }
            let entry: ContextEntry = decode_json("context", &v)?;
            if entry.is_live(now) {
                out.push(entry);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn context_history_sync(
        &self,
        ns: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ContextVersion>> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.context_history
            .range(history_key(ns, key, start)..=history_key(ns, key, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (_, v) = kv.map_err(Error::storage)?;
                decode_json("context_history", &v)
            })
            .collect()
    }

    /// Entries whose expiry is at or before `now` and that are still not
    /// deleted: read from `context_expiry` in time order, so a sweep costs what
    /// has expired, not what is stored.
    pub(super) fn context_expired_sync(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ContextEntry>> {
        let end = (now.timestamp_micros().max(0) as u64).saturating_add(1);
        let mut out = Vec::new();
        for k in self
            .context_expiry
            .range(..end.to_be_bytes().to_vec())
            .keys()
        {
            let k = k.map_err(Error::storage)?;
            let Some(b) = self.context.get(&k[8..]).map_err(Error::storage)? else {
                continue;
            };
            let entry: ContextEntry = decode_json("context", &b)?;
            if !entry.deleted && !entry.is_live(now) {
                out.push(entry);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Live entries of a namespace with their stored vectors.
    pub(super) fn context_indexed_sync(
        &self,
        ns: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ContextEntry, Option<Vec<f32>>)>> {
        let mut out = Vec::new();
        for kv in self.context.scan_prefix(prefix(ns)) {
            let (k, v) = kv.map_err(Error::storage)?;
            let entry: ContextEntry = decode_json("context", &v)?;
            if !entry.is_live(now) {
                continue;
            }
            let vector = match self.context_vectors.get(&k).map_err(Error::storage)? {
                // A version byte, then the floats; the engine checks the dimension.
                Some(b) => Some(crate::storage::codec::decode_vector(
                    &b,
                    b.len().saturating_sub(1) / 4,
                )?),
                None => None,
            };
            out.push((entry, vector));
        }
        Ok(out)
    }

    /// The `context_expiry` keys of a namespace's entries (for its deletion).
    pub(super) fn expiry_keys(&self, ns: &str) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for kv in self.context.scan_prefix(prefix(ns)) {
            let (_, v) = kv.map_err(Error::storage)?;
            let entry: ContextEntry = decode_json("context", &v)?;
            if let Some(t) = entry.expires_at {
                out.push(expiry_key(t, ns, &entry.key));
            }
        }
        Ok(out)
    }
}
