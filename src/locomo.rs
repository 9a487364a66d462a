//! Loader for LoCoMo (Maharana et al., ACL 2024), the long-term conversational
//! memory benchmark in `../shared/data/locomo/locomo10.json`.
//!
//! Each sample is one conversation (sessions of turns) plus questions whose
//! `evidence` names the turns (`dia_id`, `D<session>:<turn>`) that answer them.
//! Evidence ids are normalized as the data README prescribes: split on `[;, ]`,
//! accept `D:?<s>:<t>`, strip leading zeros, drop ids that name no turn.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

use crate::core::error::{Error, Result};
use crate::core::types::{NewMessage, Role};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Normalized `D<session>:<turn>`.
    pub dia_id: String,
    /// Session number (1-based).
    pub session: u32,
    /// Speaker's name.
    pub speaker: String,
    /// Text, plus `" [shares <blip_caption>]"` when the turn shares an image.
    pub text: String,
    /// The session's date-time.
    pub timestamp: DateTime<Utc>,
}

/// One question with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The question text.
    pub question: String,
    /// 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial.
    pub category: u8,
    /// Normalized evidence dia_ids that name a turn of the conversation (may be empty).
    pub evidence: Vec<String>,
}

/// One conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// E.g. `conv-26`.
    pub sample_id: String,
    /// Turns in order.
    pub turns: Vec<Turn>,
    /// Questions.
    pub questions: Vec<Question>,
    /// The dataset's reference summary per session number.
    pub session_summaries: Vec<(u32, String)>,
}

impl Sample {
    /// The turns as messages: `name` = speaker, content = text, timestamp = the
    /// session's date-time, metadata `{"dia_id", "session"}`. The first speaker
    /// is `user`, the second `assistant` (LoCoMo has two humans; the role only
    /// matters to filters).
    pub fn messages(&self) -> Vec<NewMessage> {
        let first = self.turns.first().map(|t| t.speaker.clone());
        self.turns
            .iter()
            .map(|t| {
                let role = if Some(&t.speaker) == first.as_ref() {
                    Role::User
                } else {
                    Role::Assistant
                };
                let mut meta = Map::new();
                meta.insert("dia_id".into(), json!(t.dia_id));
                meta.insert("session".into(), json!(t.session));
                NewMessage::new(role, t.text.clone())
                    .with_name(t.speaker.clone())
                    .with_timestamp(t.timestamp)
                    .with_session(format!("session_{}", t.session))
                    .with_metadata(meta)
            })
            .collect()
    }
}

/// Parses LoCoMo's `"1:56 pm on 8 May, 2023"` as UTC.
pub fn parse_date_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%I:%M %P on %d %B, %Y")
        .or_else(|_| NaiveDateTime::parse_from_str(s.trim(), "%I:%M %p on %d %B, %Y"))
        .ok()
        .map(|n| n.and_utc())
}

/// Normalizes one raw evidence string into zero or more `D<s>:<t>` ids.
pub fn normalize_evidence(raw: &str) -> Vec<String> {
    raw.split([';', ',', ' '])
        .filter_map(|part| {
            let p = part.trim().strip_prefix('D')?;
            let p = p.strip_prefix(':').unwrap_or(p);
            let (s, t) = p.split_once(':')?;
            let s: u32 = s.trim().parse().ok()?;
            let t: u32 = t.trim().parse().ok()?;
            Some(format!("D{s}:{t}"))
        })
        .collect()
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("locomo", msg)
}

/// Loads a LoCoMo file.
///
/// # Errors
/// [`Error::Io`] when unreadable; [`Error::InvalidInput`] when it is not LoCoMo's shape.
pub fn load(path: &Path) -> Result<Vec<Sample>> {
    let data: Value = serde_json::from_slice(&std::fs::read(path)?)
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let samples = data
        .as_array()
        .ok_or_else(|| bad("expected a list of samples"))?;
    samples.iter().map(parse_sample).collect()
}

fn parse_sample(v: &Value) -> Result<Sample> {
    let sample_id = v["sample_id"]
        .as_str()
        .ok_or_else(|| bad("sample without sample_id"))?
        .to_string();
    let conv = v["conversation"]
        .as_object()
        .ok_or_else(|| bad("sample without conversation"))?;
    let mut sessions: Vec<(u32, &Vec<Value>)> = conv
        .iter()
        .filter_map(|(k, v)| {
            let n: u32 = k.strip_prefix("session_")?.parse().ok()?;
            Some((n, v.as_array()?))
        })
        .collect();
    sessions.sort_by_key(|(n, _)| *n);
    let mut turns = Vec::new();
    for (n, list) in sessions {
        let when = conv
            .get(&format!("session_{n}_date_time"))
            .and_then(Value::as_str)
            .and_then(parse_date_time)
            .ok_or_else(|| {
                bad(format!(
                    "{sample_id}: session_{n} has no parsable date_time"
                ))
            })?;
        for t in list {
            let raw_id = t["dia_id"].as_str().unwrap_or_default();
            let Some(dia_id) = normalize_evidence(raw_id).into_iter().next() else {
                continue;
            };
            let mut text = t["text"].as_str().unwrap_or_default().to_string();
            if let Some(c) = t.get("blip_caption").and_then(Value::as_str) {
                text.push_str(&format!(" [shares {c}]"));
            }
            turns.push(Turn {
                dia_id,
                session: n,
                speaker: t["speaker"].as_str().unwrap_or("unknown").to_string(),
                text,
                timestamp: when,
            });
        }
    }
    let known: HashSet<&str> = turns.iter().map(|t| t.dia_id.as_str()).collect();
    let questions = v["qa"]
        .as_array()
        .map(|qa| {
            qa.iter()
                .map(|q| {
                    let mut evidence: Vec<String> = q["evidence"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .flat_map(normalize_evidence)
                        .filter(|id| known.contains(id.as_str()))
                        .collect();
                    let mut seen = HashSet::new();
                    evidence.retain(|e| seen.insert(e.clone()));
                    Question {
                        question: q["question"].as_str().unwrap_or_default().to_string(),
                        category: q["category"].as_u64().unwrap_or(0) as u8,
                        evidence,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut session_summaries: Vec<(u32, String)> = v["session_summary"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let n: u32 = k
                .strip_prefix("session_")?
                .strip_suffix("_summary")?
                .parse()
                .ok()?;
            Some((n, v.as_str()?.to_string()))
        })
        .collect();
    session_summaries.sort_by_key(|(n, _)| *n);
    Ok(Sample {
        sample_id,
        turns,
        questions,
        session_summaries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_quirks() {
        assert_eq!(normalize_evidence("D8:6; D9:17"), ["D8:6", "D9:17"]);
        assert_eq!(
            normalize_evidence("D9:1 D4:4 D4:6"),
            ["D9:1", "D4:4", "D4:6"]
        );
        assert_eq!(normalize_evidence("D:11:26"), ["D11:26"]);
        assert_eq!(normalize_evidence("D30:05"), ["D30:5"]);
        assert!(normalize_evidence("D").is_empty());
    }

    #[test]
    fn date_times() {
        let t = parse_date_time("1:56 pm on 8 May, 2023").unwrap();
        assert_eq!(t.to_rfc3339(), "2023-05-08T13:56:00+00:00");
        let t = parse_date_time("11:05 am on 4 August, 2023").unwrap();
        assert_eq!(t.to_rfc3339(), "2023-08-04T11:05:00+00:00");
    }
}
