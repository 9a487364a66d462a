//! The sled backend's offline consistency check (`memoryd check`).

use super::SledStore;
use crate::core::error::{Error, Result};
use crate::storage::StoreCheck;
use crate::storage::codec::{
    decode_message, decode_namespace, decode_summary, decode_vector, parse_id,
};

impl SledStore {
    /// Cross-checks the trees: every message and summary decodes, has a vector
    /// of `dim` floats and an id entry pointing back at it; every vector and id
    /// entry has its record; no id is stored twice; every namespace record
    /// decodes, and a deleted one has no records left. Reads the whole store.
    pub(super) fn check_sync(&self, dim: usize) -> Result<StoreCheck> {
        let mut report = StoreCheck::default();
        let mut owners: std::collections::HashMap<[u8; 8], [u8; 16]> =
            std::collections::HashMap::new();
        let problem = |report: &mut StoreCheck, p: String| {
            if report.problems.len() < StoreCheck::MAX_PROBLEMS {
                report.problems.push(p);
            }
        };
        for (tree, name) in [(&self.messages, "messages"), (&self.summaries, "summaries")] {
            for kv in tree.iter() {
                let (k, v) = kv.map_err(Error::storage)?;
                let Ok(key) = <[u8; 8]>::try_from(k.as_ref()) else {
                    problem(&mut report, format!("{name}: key of {} bytes", k.len()));
                    continue;
                };
                let seq = u64::from_be_bytes(key);
                let decoded = if name == "messages" {
                    report.messages += 1;
                    decode_message(&v).map(|m| (m.id, m.namespace))
                } else {
                    report.summaries += 1;
                    decode_summary(&v).map(|s| (s.id, s.namespace))
                };
                let id = match decoded.and_then(|(id, ns)| Ok((parse_id(&id)?, ns))) {
                    Ok((id, ns)) => {
                        let counts = report.namespaces.entry(ns).or_default();
                        if name == "messages" {
                            counts.messages += 1;
                        } else {
                            counts.summaries += 1;
                        }
                        *id.as_bytes()
                    }
                    Err(e) => {
                        problem(&mut report, format!("{name} seq {seq}: {e}"));
                        continue;
                    }
                };
                if owners.insert(key, id).is_some() {
                    problem(
                        &mut report,
                        format!("seq {seq} is both a message and a summary"),
                    );
                }
                match self.vectors.get(key).map_err(Error::storage)? {
                    None => problem(&mut report, format!("{name} seq {seq}: no vector")),
                    Some(b) => {
                        if let Err(e) = decode_vector(&b, dim) {
                            problem(&mut report, format!("{name} seq {seq}: {e}"));
                        }
                    }
                }
                match self.ids.get(id).map_err(Error::storage)? {
                    Some(s) if s.as_ref() == key => {}
                    Some(_) => problem(
                        &mut report,
                        format!("{name} seq {seq}: its id entry points at another seq"),
                    ),
                    None => problem(&mut report, format!("{name} seq {seq}: no id entry")),
                }
            }
        }
        for kv in self.vectors.iter() {
            let (k, _) = kv.map_err(Error::storage)?;
            report.vectors += 1;
            if <[u8; 8]>::try_from(k.as_ref()).map_or(true, |key| !owners.contains_key(&key)) {
                problem(&mut report, format!("vector {k:?} has no record"));
            }
        }
        for kv in self.ids.iter() {
            let (k, v) = kv.map_err(Error::storage)?;
            report.ids += 1;
            let owner = <[u8; 8]>::try_from(v.as_ref())
                .ok()
                .and_then(|key| owners.get(&key));
            if owner.is_none_or(|id| id[..] != k[..]) {
                problem(
                    &mut report,
                    format!("id entry {k:?} points at no record with that id"),
                );
            }
        }
        for kv in self.namespaces.iter() {
            let (k, v) = kv.map_err(Error::storage)?;
            let name = String::from_utf8_lossy(&k).into_owned();
            match decode_namespace(&name, &v) {
                Err(e) => problem(&mut report, format!("namespace {name}: {e}")),
                Ok(ns) if ns.deleted && report.namespaces.contains_key(&name) => problem(
                    &mut report,
                    format!("namespace {name}: deleted but records remain"),
                ),
                Ok(_) => {}
            }
        }
        Ok(report)
    }
}
