//! Input validation shared by the write paths: limits, labels, metadata shape.
//! Pure functions over the request; no I/O.

use crate::core::error::{Error, Result};
use crate::core::types::NewMessage;
use crate::engine::config::Limits;

/// Checks one message of a request (index `i`) against `limits`.
///
/// # Errors
/// [`Error::InvalidInput`] or [`Error::TooLarge`] naming the field.
pub(crate) fn message(limits: &Limits, i: usize, m: &NewMessage) -> Result<()> {
    let field = |f: &str| format!("messages[{i}].{f}");
    if m.content.trim().is_empty() {
        return Err(Error::invalid(
            field("content"),
            "must contain a non-whitespace character",
        ));
    }
    if m.content.len() > limits.max_content_bytes {
        return Err(Error::too_large(
            field("content"),
            format!(
                "{} bytes; the limit is {}",
                m.content.len(),
                limits.max_content_bytes
            ),
        ));
    }
    content(&field("content"), &m.content)?;
    for (name, v) in [
        ("name", &m.name),
        ("agent_id", &m.agent_id),
        ("session_id", &m.session_id),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.len() > limits.max_label_bytes {
                return Err(Error::invalid(
                    field(name),
                    format!("must be 1 to {} bytes", limits.max_label_bytes),
                ));
            }
            label(&field(name), v)?;
        }
    }
    for (k, v) in &m.metadata {
        content(&field("metadata"), k)?;
        json_strings(&field("metadata"), v)?;
    }
    let depth = json_depth(&m.metadata);
    if depth > limits.max_metadata_depth {
        return Err(Error::invalid(
            field("metadata"),
            format!(
                "nests {depth} levels deep; the limit is {}",
                limits.max_metadata_depth
            ),
        ));
    }
    if !m.metadata.is_empty() {
        let bytes = serde_json::to_vec(&m.metadata).map_or(usize::MAX, |b| b.len());
        if bytes > limits.max_metadata_bytes {
            return Err(Error::too_large(
                field("metadata"),
                format!(
                    "{bytes} bytes as JSON; the limit is {}",
                    limits.max_metadata_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Content is stored verbatim, control characters included (real chat data
/// carries stray ones: a public long-term chat-memory benchmark has a turn with
/// U+0002), except NUL, which PostgreSQL's text type cannot hold and C-string
/// consumers truncate at.
pub(crate) fn content(field: &str, text: &str) -> Result<()> {
    match text.find('\0') {
        None => Ok(()),
        Some(at) => Err(Error::invalid(
            field,
            format!(
                "contains the NUL character (U+0000) at byte {at}; every other character is stored verbatim"
            ),
        )),
    }
}

/// Every string in a JSON value (object keys included) passes [`content`]: no NUL,
/// which neither store can keep in every place (PostgreSQL's `jsonb` refuses it).
pub(crate) fn json_strings(field: &str, v: &serde_json::Value) -> Result<()> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => content(field, s)?,
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    content(field, k)?;
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Labels (names, agent and session ids) are identifiers: NUL and the other C0
/// control characters except tab, line feed and carriage return are refused, as
/// they are invisible in logs and UIs and almost always a client's encoding bug.
pub(crate) fn label(field: &str, text: &str) -> Result<()> {
    match text
        .char_indices()
        .find(|(_, c)| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r' | '\x7f'))
    {
        None => Ok(()),
        Some((at, c)) => Err(Error::invalid(
            field,
            format!(
                "contains the control character U+{:04X} at byte {at}; only tab, line feed and carriage return are allowed",
                c as u32
            ),
        )),
    }
}

/// Nesting depth of any JSON value: scalars 0, `{"a": 1}` and `[1]` 1.
pub(crate) fn value_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(o) => json_depth(o).max(1),
        serde_json::Value::Array(a) => {
            let mut wrapper = serde_json::Map::new();
            wrapper.insert(String::new(), serde_json::Value::Array(a.clone()));
            json_depth(&wrapper).saturating_sub(1).max(1)
        }
        _ => 0,
    }
}

/// Nesting depth of a JSON object's values: `{}` and `{"a": 1}` are 1,
/// `{"a": [1]}` is 2. Iterative, so any depth is measured without recursion.
pub(crate) fn json_depth(object: &serde_json::Map<String, serde_json::Value>) -> usize {
    if object.is_empty() {
        return 0;
    }
    let mut deepest = 1;
    let mut stack: Vec<(&serde_json::Value, usize)> = object.values().map(|v| (v, 1)).collect();
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keeps_controls_but_not_nul() {
        assert!(content("c", "a\u{2}b\u{1b}[0m\x07").is_ok());
        let err = content("c", "ab\0").unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        assert!(err.to_string().contains("byte 2"), "{err}");
        assert!(label("l", "a\u{2}").is_err());
        assert!(label("l", "a\tb").is_ok());
    }
}
