//! Retrieval evaluation on LongMemEval_S (Wu et al., "LongMemEval: Benchmarking
//! Chat Assistants on Long-Term Interactive Memory", ICLR 2025) through the
//! public engine API, with the benchmark's own retrieval protocol.
//!
//! Every haystack turn (user and assistant) of a question is stored in the
//! question's own namespace with its session id (as `session_id`), its
//! session's date (as the timestamp, one second per turn so order is kept)
//! and `metadata.turn = "<session index>:<turn index>"`; the question is then
//! asked for the top `k_max` messages. Metrics:
//! - **turn recall_all@k** (k = 5, 10): 1 when every user turn marked
//!   `has_answer` is in the top k, else 0; over questions with such turns;
//! - **session recall_any@5**: 1 when any of `answer_session_ids` is among the
//!   first 5 distinct sessions of the ranking.
//!
//! Abstention questions (`question_id` ending in `_abs`) are skipped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Percentiles;
use crate::core::access::Access;
use crate::core::error::{Error, Result};
use crate::core::params::HybridParams;
use crate::core::types::{HitKind, NewMessage, Role, SearchMode, SearchRequest};
use crate::engine::Engine;

/// One turn of a haystack session.
#[derive(Debug, Clone, Deserialize)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Whether the turn holds (part of) the answer.
    #[serde(default)]
    pub has_answer: bool,
}

/// One LongMemEval question with its haystack.
#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    /// Id; `_abs` at the end marks an abstention question.
    pub question_id: String,
    /// temporal-reasoning, multi-session, single-session-user, ….
    pub question_type: String,
    /// The question asked.
    pub question: String,
    /// Ids of the haystack's sessions, in order.
    pub haystack_session_ids: Vec<String>,
    /// Each session's date, `2023/05/20 (Sat) 02:21`.
    pub haystack_dates: Vec<String>,
    /// The sessions' turns.
    pub haystack_sessions: Vec<Vec<Turn>>,
    /// Sessions holding the answer.
    pub answer_session_ids: Vec<String>,
}

impl Question {
    /// Whether it is an abstention question (skipped).
    pub fn is_abstention(&self) -> bool {
        self.question_id.ends_with("_abs")
    }

    /// `"s:t"` of the user turns that hold the answer.
    pub fn evidence(&self) -> Vec<String> {
        self.haystack_sessions
            .iter()
            .enumerate()
            .flat_map(|(s, turns)| {
                turns
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.has_answer && t.role == "user")
                    .map(move |(t, _)| format!("{s}:{t}"))
            })
            .collect()
    }

    /// The haystack as messages (turns without text are skipped).
    pub fn messages(&self) -> Vec<NewMessage> {
        let mut out = Vec::new();
        for (s, turns) in self.haystack_sessions.iter().enumerate() {
            let start = self
                .haystack_dates
                .get(s)
                .and_then(|d| parse_date(d))
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            for (t, turn) in turns.iter().enumerate() {
                if turn.content.trim().is_empty() {
                    continue;
                }
                let role = if turn.role == "assistant" {
                    Role::Assistant
                } else {
                    Role::User
                };
                let mut m = NewMessage::new(role, turn.content.replace('\0', ""));
                m.timestamp = Some(start + chrono::Duration::seconds(t as i64));
                m.session_id = self.haystack_session_ids.get(s).cloned();
                m.metadata
                    .insert("turn".into(), serde_json::Value::String(format!("{s}:{t}")));
                out.push(m);
            }
        }
        out
    }
}

/// `2023/05/20 (Sat) 02:21` as UTC.
fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let mut parts = text.split_whitespace();
    let date = parts.next()?;
    let time = parts.last()?;
    NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y/%m/%d %H:%M")
        .ok()
        .map(|n| n.and_utc())
}

/// Loads a LongMemEval JSON file (a list of questions), gzip-compressed when
/// its name ends in `.gz`.
///
/// # Errors
/// [`Error::Io`] for an unreadable file, [`Error::InvalidInput`] for bad JSON.
pub fn load(path: &Path) -> Result<Vec<Question>> {
    let bytes = std::fs::read(path).map_err(Error::Io)?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .map_err(Error::Io)?;
        out
    } else {
        String::from_utf8(bytes).map_err(|e| Error::invalid("file", e.to_string()))?
    };
    serde_json::from_str(&text).map_err(|e| Error::invalid("file", e.to_string()))
}

/// One question's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmeOutcome {
    /// Its type.
    pub question_type: String,
    /// Turn recall_all@5 and @10 (`None`: no user-side evidence turn).
    pub turn_all: Option<[f64; 2]>,
    /// Session recall_any@5.
    pub session_any5: f64,
}

/// Means over a set of questions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LmeRecall {
    /// Questions.
    pub questions: usize,
    /// Questions with user-side evidence turns (the turn metrics' base).
    pub with_turn_evidence: usize,
    /// Turn recall_all@5.
    pub turn_all5: f64,
    /// Turn recall_all@10.
    pub turn_all10: f64,
    /// Session recall_any@5.
    pub session_any5: f64,
}

impl LmeRecall {
    fn of<'a>(outcomes: impl Iterator<Item = &'a LmeOutcome>) -> LmeRecall {
        let mut r = LmeRecall::default();
        for o in outcomes {
            r.questions += 1;
            r.session_any5 += o.session_any5;
            if let Some([a5, a10]) = o.turn_all {
                r.with_turn_evidence += 1;
                r.turn_all5 += a5;
                r.turn_all10 += a10;
            }
        }
        r.session_any5 /= r.questions.max(1) as f64;
        r.turn_all5 /= r.with_turn_evidence.max(1) as f64;
        r.turn_all10 /= r.with_turn_evidence.max(1) as f64;
        r
    }
}

/// One mode's results.
#[derive(Debug, Clone, Serialize)]
pub struct LmeReport {
    /// Ranking mode.
    pub mode: SearchMode,
    /// Over all questions asked.
    pub overall: LmeRecall,
    /// By question type.
    pub by_type: BTreeMap<String, LmeRecall>,
    /// Engine-side search latency (`took_ms`).
    pub search_ms: Percentiles,
}

impl LmeReport {
    /// Aggregates outcomes; `latencies` (ms) are sorted in place.
    pub fn new(mode: SearchMode, outcomes: &[LmeOutcome], latencies: &mut [f64]) -> LmeReport {
        let mut types: BTreeMap<String, Vec<&LmeOutcome>> = BTreeMap::new();
        for o in outcomes {
            types.entry(o.question_type.clone()).or_default().push(o);
        }
        LmeReport {
            mode,
            overall: LmeRecall::of(outcomes.iter()),
            by_type: types
                .into_iter()
                .map(|(t, os)| (t, LmeRecall::of(os.into_iter())))
                .collect(),
            search_ms: Percentiles::of(latencies),
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>4} {:>9} {:>10} {:>10}\n",
            format!("mode {}", self.mode.as_str()),
            "n",
            "turn@5",
            "turn@10",
            "session@5"
        );
        let line = |name: &str, r: &LmeRecall| {
            format!(
                "{:<28} {:>4} {:>9.3} {:>10.3} {:>10.3}\n",
                name, r.questions, r.turn_all5, r.turn_all10, r.session_any5
            )
        };
        out.push_str(&line("overall", &self.overall));
        for (t, r) in &self.by_type {
            out.push_str(&line(&format!("  {t}"), r));
        }
        out.push_str(&format!(
            "search p50 {:.2} ms, p95 {:.2} ms\n",
            self.search_ms.p50, self.search_ms.p95
        ));
        out
    }
}

/// Stores every question's haystack in namespace `<prefix>-<index>`, up to
/// `parallel` questions at once (so the embedding queue stays full). Returns
/// turns stored per second.
///
/// # Errors
/// Engine errors.
pub async fn ingest(
    engine: &Engine,
    questions: &[Question],
    prefix: &str,
    parallel: usize,
) -> Result<f64> {
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::new();
    let mut turns = 0usize;
    for (i, q) in questions.iter().enumerate() {
        if q.is_abstention() {
            continue;
        }
        let msgs = q.messages();
        let ns = format!("{prefix}-{i}");
        // Already stored (a re-run on the same --data-dir): asked as it is; an
        // interrupted ingest is deleted and done again.
        if super::already_ingested(engine, &ns, msgs.len()).await? {
            continue;
        }
        turns += msgs.len();
        let engine = engine.clone();
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            for chunk in msgs.chunks(128) {
                engine
                    .add_batch(&Access::full(), &ns, chunk.to_vec())
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
    }
    Ok(turns as f64 / started.elapsed().as_secs_f64())
}

/// Asks every (non-abstention) question against its namespace.
///
/// # Errors
/// Engine errors.
pub async fn ask(
    engine: &Engine,
    questions: &[Question],
    prefix: &str,
    k_max: usize,
    mode: SearchMode,
    params: Option<HybridParams>,
) -> Result<(Vec<LmeOutcome>, Vec<f64>)> {
    let mut outcomes = Vec::new();
    let mut latencies = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        if q.is_abstention() {
            continue;
        }
        let mut request = SearchRequest::text(q.question.clone(), k_max.max(10))
            .with_kinds(vec![HitKind::Message])
            .with_mode(mode);
        request.hybrid = params;
        let res = engine
            .search(&Access::full(), &format!("{prefix}-{i}"), request)
            .await?;
        latencies.push(res.took_ms);
        let ranked: Vec<(String, String)> = res
            .hits
            .iter()
            .filter_map(|h| {
                let m = h.as_message()?;
                Some((
                    m.metadata.get("turn")?.as_str()?.to_owned(),
                    m.session_id.clone().unwrap_or_default(),
                ))
            })
            .collect();
        let evidence = q.evidence();
        let all_in = |k: usize| {
            let top: Vec<&str> = ranked.iter().take(k).map(|(t, _)| t.as_str()).collect();
            f64::from(u8::from(evidence.iter().all(|e| top.contains(&e.as_str()))))
        };
        let mut sessions: Vec<&str> = Vec::new();
        for (_, s) in &ranked {
            if !sessions.contains(&s.as_str()) {
                sessions.push(s);
                if sessions.len() == 5 {
                    break;
                }
            }
        }
        let session_any5 = f64::from(u8::from(
            sessions
                .iter()
                .any(|s| q.answer_session_ids.iter().any(|a| a == s)),
        ));
        outcomes.push(LmeOutcome {
            question_type: q.question_type.clone(),
            turn_all: (!evidence.is_empty()).then(|| [all_in(5), all_in(10)]),
            session_any5,
        });
    }
    Ok((outcomes, latencies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Question {
        serde_json::from_value(serde_json::json!({
            "question_id": "q1", "question_type": "single-session-user", "question": "what?",
            "question_date": "2023/05/30 (Tue) 16:40", "answer": "x",
            "haystack_session_ids": ["s-a", "s-b"],
            "haystack_dates": ["2023/05/20 (Sat) 00:29", "2023/05/21 (Sun) 10:00"],
            "haystack_sessions": [
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "has_answer": true}],
                [{"role": "user", "content": "my dog is Rex", "has_answer": true}, {"role": "assistant", "content": "  "}]
            ],
            "answer_session_ids": ["s-b"]
        }))
        .unwrap()
    }

    #[test]
    fn evidence_is_the_user_turns_with_the_answer_and_turns_keep_their_place() {
        let q = question();
        assert_eq!(q.evidence(), vec!["1:0".to_owned()]);
        let m = q.messages();
        assert_eq!(m.len(), 3, "the blank turn is skipped");
        assert_eq!(m[2].session_id.as_deref(), Some("s-b"));
        assert_eq!(m[2].metadata["turn"], "1:0");
        assert_eq!(
            m[1].timestamp.unwrap().to_rfc3339(),
            "2023-05-20T00:29:01+00:00"
        );
        assert!(!q.is_abstention());
    }
}
