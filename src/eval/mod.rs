//! Retrieval evaluation on LoCoMo through the public engine API.
//!
//! Each conversation is ingested into its own namespace (one message per turn,
//! `name` = speaker, content = text plus `" [shares <blip_caption>]"`,
//! timestamp = the session's date-time); every question with evidence is asked
//! against its own conversation. R@k is the fraction of a question's evidence
//! turns found in the top k, averaged over questions (the LoCoMo paper's
//! "recall accuracy").

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::core::access::Access;
use crate::core::error::{Error, Result};
use crate::core::params::HybridParams;
use crate::core::types::{HitKind, SearchMode, SearchRequest, SearchScope};
use crate::engine::Engine;
use crate::locomo::Sample;

pub mod longmemeval;

/// The cut-offs reported.
pub const KS: [usize; 4] = [1, 5, 10, 20];

/// Mean R@1/5/10/20 over a set of questions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recall {
    /// Questions averaged.
    pub questions: usize,
    /// R@1.
    #[serde(rename = "r@1")]
    pub r1: f64,
    /// R@5.
    #[serde(rename = "r@5")]
    pub r5: f64,
    /// R@10.
    #[serde(rename = "r@10")]
    pub r10: f64,
    /// R@20.
    #[serde(rename = "r@20")]
    pub r20: f64,
}

#[derive(Default)]
struct Acc {
    n: usize,
    sums: [f64; 4],
}

impl Acc {
    fn add(&mut self, r: [f64; 4]) {
        self.n += 1;
        for (s, v) in self.sums.iter_mut().zip(r) {
            *s += v;
        }
    }

    fn recall(&self) -> Recall {
        let d = self.n.max(1) as f64;
        Recall {
            questions: self.n,
            r1: self.sums[0] / d,
            r5: self.sums[1] / d,
            r10: self.sums[2] / d,
            r20: self.sums[3] / d,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (ms).
    pub fn of(samples: &mut [f64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| {
            samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

/// The result of [`run_locomo`].
#[derive(Debug, Clone, Serialize)]
pub struct LocomoReport {
    /// Ranking mode.
    pub mode: SearchMode,
    /// Questions with evidence that were asked.
    pub questions: usize,
    /// Over all questions.
    pub overall: Recall,
    /// Over categories 1-4.
    pub excluding_adversarial: Recall,
    /// Per category ("1" multi-hop, "2" temporal, "3" open-domain, "4" single-hop, "5" adversarial).
    pub by_category: BTreeMap<String, Recall>,
    /// Turns stored per second of wall time (embedding + durable writes).
    pub ingest_turns_per_s: f64,
    /// Search latency measured inside the engine (`took_ms`).
    pub search_ms: Percentiles,
}

/// R@k for each k in [`KS`] given the ranked dia_ids and the evidence.
pub fn recall_at(ranked: &[String], evidence: &[String]) -> [f64; 4] {
    KS.map(|k| {
        let top = &ranked[..k.min(ranked.len())];
        evidence.iter().filter(|e| top.contains(e)).count() as f64 / evidence.len() as f64
    })
}

/// One asked question's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Index of its conversation in the samples.
    pub sample: usize,
    /// LoCoMo category (1-5).
    pub category: u8,
    /// R@1/5/10/20.
    pub recall: [f64; 4],
}

/// Whether namespace `ns` already holds exactly `n` messages: a re-run on the same
/// `--data-dir`, asked as it is. A namespace holding any other number (an ingest
/// that was interrupted, or other data under that name) is deleted, so that it is
/// ingested afresh instead of holding every turn twice (duplicates would push
/// evidence out of the top k and lower every figure).
///
/// # Errors
/// Engine errors (storage).
pub async fn already_ingested(engine: &Engine, ns: &str, n: usize) -> Result<bool> {
    let all = Access::full();
    match engine.namespace(&all, ns).await {
        Ok(detail) if detail.info.messages == n => Ok(true),
        Ok(_) => {
            engine.delete_namespace_tree(&all, ns, true).await?;
            Ok(false)
        }
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Ingests every sample into namespace `<prefix>-<sample_id>` (one already holding
/// the sample's turns is kept: see [`already_ingested`]); returns turns per second
/// of wall time over what was ingested (0 when nothing was).
///
/// # Errors
/// Engine errors (storage, embedding).
pub async fn ingest_locomo(engine: &Engine, samples: &[Sample], prefix: &str) -> Result<f64> {
    let started = Instant::now();
    let mut turns = 0usize;
    for s in samples {
        let ns = format!("{prefix}-{}", s.sample_id);
        let msgs = s.messages();
        if already_ingested(engine, &ns, msgs.len()).await? {
            continue;
        }
        turns += msgs.len();
        for chunk in msgs.chunks(engine.config().limits.max_messages_per_request.min(512)) {
            engine
                .add_batch(&Access::full(), &ns, chunk.to_vec())
                .await?;
        }
    }
    if turns == 0 {
        return Ok(0.0);
    }
    Ok(turns as f64 / started.elapsed().as_secs_f64())
}

/// Ingests every sample split in two at the session boundary nearest its middle
/// turn: the earlier sessions into `<prefix>-<sample_id>-parent`, the later ones
/// into `<prefix>-<sample_id>`, created as its child. Asking the child with
/// [`SearchScope::Inherit`] must rank like the whole conversation in one
/// namespace: how the merge of per-namespace rankings is measured.
///
/// # Errors
/// Engine errors.
pub async fn ingest_locomo_split(engine: &Engine, samples: &[Sample], prefix: &str) -> Result<()> {
    let all = Access::full();
    for s in samples {
        let child = format!("{prefix}-{}", s.sample_id);
        let parent = format!("{child}-parent");
        let msgs = s.messages();
        let mid = s.turns.len() / 2;
        let split = (1..s.turns.len())
            .filter(|&i| s.turns[i].session != s.turns[i - 1].session)
            .min_by_key(|&i| i.abs_diff(mid))
            .unwrap_or(mid);
        engine
            .create_namespace(&all, &parent, None, Default::default())
            .await?;
        engine
            .create_namespace(&all, &child, Some(&parent), Default::default())
            .await?;
        let step = engine.config().limits.max_messages_per_request.min(512);
        for (ns, part) in [(&parent, &msgs[..split]), (&child, &msgs[split..])] {
            for chunk in part.chunks(step) {
                engine.add_batch(&all, ns, chunk.to_vec()).await?;
            }
        }
    }
    Ok(())
}

/// Asks every question with evidence against its own (already ingested)
/// conversation for the top `k_max` turns, ranked by `mode` with hybrid weights
/// `params` (`None`: the engine's). Returns the outcomes and the engine-side
/// latencies (ms).
///
/// # Errors
/// Engine errors.
pub async fn ask_locomo(
    engine: &Engine,
    samples: &[Sample],
    prefix: &str,
    k_max: usize,
    mode: SearchMode,
    params: Option<HybridParams>,
) -> Result<(Vec<Outcome>, Vec<f64>)> {
    ask_locomo_scoped(
        engine,
        samples,
        prefix,
        k_max,
        mode,
        params,
        SearchScope::Own,
    )
    .await
}

/// [`ask_locomo`] with a search scope ([`SearchScope::Inherit`] after
/// [`ingest_locomo_split`]).
///
/// # Errors
/// Engine errors.
pub async fn ask_locomo_scoped(
    engine: &Engine,
    samples: &[Sample],
    prefix: &str,
    k_max: usize,
    mode: SearchMode,
    params: Option<HybridParams>,
    scope: SearchScope,
) -> Result<(Vec<Outcome>, Vec<f64>)> {
    let mut outcomes = Vec::new();
    let mut latencies = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let ns = format!("{prefix}-{}", s.sample_id);
        for q in s.questions.iter().filter(|q| !q.evidence.is_empty()) {
            let mut request = SearchRequest::text(q.question.clone(), k_max)
                .with_kinds(vec![HitKind::Message])
                .with_mode(mode)
                .with_scope(scope);
            request.hybrid = params;
            let res = engine.search(&Access::full(), &ns, request).await?;
            latencies.push(res.took_ms);
            let ranked: Vec<String> = res
                .hits
                .iter()
                .filter_map(|h| {
                    h.as_message()?
                        .metadata
                        .get("dia_id")?
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            outcomes.push(Outcome {
                sample: i,
                category: q.category,
                recall: recall_at(&ranked, &q.evidence),
            });
        }
    }
    Ok((outcomes, latencies))
}

/// Recall overall, without category 5, and per category.
fn summarize(outcomes: &[Outcome]) -> (Recall, Recall, BTreeMap<String, Recall>) {
    let mut overall = Acc::default();
    let mut excl = Acc::default();
    let mut by_cat: BTreeMap<u8, Acc> = BTreeMap::new();
    for o in outcomes {
        overall.add(o.recall);
        if o.category != 5 {
            excl.add(o.recall);
        }
        by_cat.entry(o.category).or_default().add(o.recall);
    }
    (
        overall.recall(),
        excl.recall(),
        by_cat
            .into_iter()
            .map(|(c, a)| (c.to_string(), a.recall()))
            .collect(),
    )
}

/// Ingests every sample into namespace `<prefix>-<sample_id>` and asks every
/// question with evidence for the top `k_max` turns, ranked by `mode`.
///
/// # Errors
/// Engine errors (storage, embedding).
pub async fn run_locomo(
    engine: &Engine,
    samples: &[Sample],
    prefix: &str,
    k_max: usize,
    mode: SearchMode,
) -> Result<LocomoReport> {
    let ingest_turns_per_s = ingest_locomo(engine, samples, prefix).await?;
    let (outcomes, mut latencies) = ask_locomo(engine, samples, prefix, k_max, mode, None).await?;
    Ok(LocomoReport::new(
        mode,
        &outcomes,
        ingest_turns_per_s,
        &mut latencies,
    ))
}

/// Loads `path` and runs [`run_locomo`].
///
/// # Errors
/// As [`crate::locomo::load`] and [`run_locomo`].
pub async fn run_locomo_file(
    engine: &Engine,
    path: &Path,
    k_max: usize,
    mode: SearchMode,
) -> Result<LocomoReport> {
    let samples = crate::locomo::load(path)?;
    run_locomo(engine, &samples, "locomo", k_max, mode).await
}

/// The hybrid weights [`cross_validate`] chooses among (300 settings): lexical
/// weight 0.3-0.7, neighbour weight 0-0.8, session weight 0-1, BM25 b 0.4 or
/// 0.75 (k1 1.2; the other parameters at their defaults).
pub fn default_grid() -> Vec<HybridParams> {
    let mut grid = Vec::new();
    for b in [0.4, 0.75] {
        for lexical_weight in [0.3, 0.4, 0.5, 0.6, 0.7] {
            for neighbor_weight in [0.0, 0.2, 0.4, 0.5, 0.6, 0.8] {
                for session_weight in [0.0, 0.3, 0.5, 0.7, 1.0] {
                    grid.push(HybridParams {
                        lexical_weight,
                        neighbor_weight,
                        session_weight,
                        bm25: crate::core::params::Bm25Params { k1: 1.2, b },
                        ..HybridParams::default()
                    });
                }
            }
        }
    }
    grid
}

/// One fold of [`cross_validate`].
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// The held-out conversation.
    pub held_out: String,
    /// Lexical weight chosen on the other conversations.
    pub lexical_weight: f32,
    /// Neighbour weight chosen on the other conversations.
    pub neighbor_weight: f32,
    /// BM25 b chosen on the other conversations.
    pub b: f32,
    /// Session weight chosen on the other conversations.
    pub session_weight: f32,
}

/// Leave-one-conversation-out cross-validation of the hybrid weights.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    /// Weights evaluated.
    pub grid_size: usize,
    /// Held-out recall: each conversation ranked with the weights that maximized
    /// mean(R@5, R@10) on the other conversations.
    pub held_out: LocomoReport,
    /// The weights each fold chose.
    pub folds: Vec<Fold>,
    /// The best weights on all conversations (in-sample, for comparison).
    pub all_data: LocomoReport,
    /// Weights behind `all_data`.
    pub all_data_choice: Fold,
}

/// Leave-one-conversation-out cross-validation over `grid` (the samples must be
/// ingested under `prefix`): every question is answered under every weight
/// setting (query embeddings come from the engine's query cache after the
/// first), then for each conversation the setting that maximizes mean(R@5, R@10)
/// on the other nine is applied to it. Give the engine a query cache larger than
/// the number of questions, or every setting re-embeds every question.
///
/// # Errors
/// Engine errors.
pub async fn cross_validate(
    engine: &Engine,
    samples: &[Sample],
    prefix: &str,
    k_max: usize,
    grid: &[HybridParams],
) -> Result<CvReport> {
    let mut runs = Vec::with_capacity(grid.len());
    for p in grid {
        let (outcomes, latencies) =
            ask_locomo(engine, samples, prefix, k_max, SearchMode::Hybrid, Some(*p)).await?;
        runs.push((outcomes, latencies));
    }
    let objective = |outcomes: &[Outcome], keep: &dyn Fn(usize) -> bool| {
        let (mut sum, mut n) = (0.0, 0usize);
        for o in outcomes.iter().filter(|o| keep(o.sample)) {
            sum += o.recall[1] + o.recall[2];
            n += 1;
        }
        sum / n.max(1) as f64
    };
    let best = |keep: &dyn Fn(usize) -> bool| {
        (0..runs.len())
            .max_by(|&a, &b| {
                objective(&runs[a].0, keep)
                    .total_cmp(&objective(&runs[b].0, keep))
                    // Ties: the earlier grid point.
                    .then(b.cmp(&a))
            })
            .unwrap_or(0)
    };
    let fold = |i: usize, held_out: String| Fold {
        held_out,
        lexical_weight: grid[i].lexical_weight,
        neighbor_weight: grid[i].neighbor_weight,
        b: grid[i].bm25.b,
        session_weight: grid[i].session_weight,
    };
    let mut held = Vec::new();
    let mut held_latencies = Vec::new();
    let mut folds = Vec::new();
    for (c, s) in samples.iter().enumerate() {
        let i = best(&|sample| sample != c);
        let (outcomes, latencies) = &runs[i];
        for (o, l) in outcomes.iter().zip(latencies) {
            if o.sample == c {
                held.push(*o);
                held_latencies.push(*l);
            }
        }
        folds.push(fold(i, s.sample_id.clone()));
    }
    let all = best(&|_| true);
    let mut all_latencies = runs[all].1.clone();
    Ok(CvReport {
        grid_size: grid.len(),
        held_out: LocomoReport::new(SearchMode::Hybrid, &held, 0.0, &mut held_latencies),
        folds,
        all_data: LocomoReport::new(SearchMode::Hybrid, &runs[all].0, 0.0, &mut all_latencies),
        all_data_choice: fold(all, "none".into()),
    })
}

impl LocomoReport {
    /// Aggregates outcomes; `latencies` (ms) are sorted in place.
    pub fn new(
        mode: SearchMode,
        outcomes: &[Outcome],
        ingest_turns_per_s: f64,
        latencies: &mut [f64],
    ) -> LocomoReport {
        let (overall, excluding_adversarial, by_category) = summarize(outcomes);
        LocomoReport {
            mode,
            questions: overall.questions,
            overall,
            excluding_adversarial,
            by_category,
            ingest_turns_per_s,
            search_ms: Percentiles::of(latencies),
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<24} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
            format!("mode {}", self.mode.as_str()),
            "n",
            "R@1",
            "R@5",
            "R@10",
            "R@20"
        ));
        let row = |name: &str, r: &Recall| {
            format!(
                "{:<24} {:>6} {:>6.3} {:>6.3} {:>6.3} {:>6.3}\n",
                name, r.questions, r.r1, r.r5, r.r10, r.r20
            )
        };
        out.push_str(&row("overall", &self.overall));
        out.push_str(&row("excluding adversarial", &self.excluding_adversarial));
        let names = [
            "",
            "1 multi-hop",
            "2 temporal",
            "3 open-domain",
            "4 single-hop",
            "5 adversarial",
        ];
        for (c, r) in &self.by_category {
            let name = c
                .parse::<usize>()
                .ok()
                .and_then(|i| names.get(i))
                .copied()
                .unwrap_or(c);
            out.push_str(&row(name, r));
        }
        if self.ingest_turns_per_s > 0.0 {
            out.push_str(&format!("ingest {:.1} turns/s; ", self.ingest_turns_per_s));
        }
        out.push_str(&format!(
            "search p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms\n",
            self.search_ms.p50, self.search_ms.p95, self.search_ms.p99
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_evidence_in_top_k() {
        let ranked: Vec<String> = ["D1:1", "D1:2", "D1:3", "D1:4", "D1:5", "D2:1"]
            .map(String::from)
            .to_vec();
        let ev = ["D1:2", "D2:1"].map(String::from).to_vec();
        assert_eq!(recall_at(&ranked, &ev), [0.0, 0.5, 1.0, 1.0]);
    }

    /// Hand-checked: reference "the cat sat on the mat" (6 tokens), prediction
    /// "the cat lay on the mat" (6 tokens): 5 shared unigrams -> P = R = F1 = 5/6;
    /// bigrams: "the cat", "on the", "the mat" of 5 -> F1 = 3/5; LCS = 5 -> 5/6.
    #[test]
    fn rouge_on_a_hand_checked_pair() {
        let r = rouge(&[(
            vec!["the cat sat on the mat".into()],
            "the cat lay on the mat".into(),
        )]);
        assert!((r.rouge1 - 5.0 / 6.0).abs() < 1e-9);
        assert!((r.rouge2 - 3.0 / 5.0).abs() < 1e-9);
        assert!((r.rouge_l - 5.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
    }
}

/// Mean ROUGE F1 (rouge-score's tokenizer with Porter stemming, via `rougers`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rouge {
    /// Documents scored.
    pub documents: usize,
    /// ROUGE-1 F1.
    pub rouge1: f64,
    /// ROUGE-2 F1.
    pub rouge2: f64,
    /// ROUGE-L F1.
    pub rouge_l: f64,
}

/// Averages the best-of-references ROUGE-1/2/L F1 over `(references, prediction)` pairs.
pub fn rouge(pairs: &[(Vec<String>, String)]) -> Rouge {
    let scorer =
        rougers::RougeScorer::new(["rouge1", "rouge2", "rougeL"], true).expect("valid ROUGE types");
    let mut r = Rouge::default();
    for (refs, pred) in pairs {
        let Some(s) = scorer.score_multi(refs, pred) else {
            continue;
        };
        r.documents += 1;
        r.rouge1 += s.get(rougers::RougeType::N(1)).map_or(0.0, |x| x.fmeasure);
        r.rouge2 += s.get(rougers::RougeType::N(2)).map_or(0.0, |x| x.fmeasure);
        r.rouge_l += s.get(rougers::RougeType::L).map_or(0.0, |x| x.fmeasure);
    }
    let n = r.documents.max(1) as f64;
    r.rouge1 /= n;
    r.rouge2 /= n;
    r.rouge_l /= n;
    r
}

/// Summarization quality against human or dataset references.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryReport {
    /// DialogSum test: rows `(method, ROUGE)`; best of the three references.
    pub dialogsum: Vec<(String, Rouge)>,
    /// LoCoMo: each session against the dataset's `session_summary`.
    pub locomo: Vec<(String, Rouge)>,
}

/// The first `n` sentences, speaker-attributed, in order (the LEAD-n baseline).
pub fn lead(messages: &[crate::core::types::Message], n: usize) -> String {
    let mut out = Vec::new();
    for m in messages {
        let who = m.name.as_deref().unwrap_or(m.role.as_str());
        for s in crate::summarize::sentences(&m.content) {
            if out.len() == n {
                return out.join(" ");
            }
            out.push(format!("{who}: {s}"));
        }
    }
    out.join(" ")
}

fn dialogue_messages(dialogue: &str) -> Vec<crate::core::types::Message> {
    let t0 = chrono::DateTime::from_timestamp(0, 0).unwrap_or_default();
    dialogue
        .lines()
        .filter_map(|line| {
            let (who, text) = line.split_once(':')?;
            Some(crate::core::types::Message {
                id: String::new(),
                namespace: "eval".into(),
                role: crate::core::types::Role::User,
                name: Some(who.trim().to_string()),
                content: text.trim().to_string(),
                timestamp: t0,
                agent_id: None,
                session_id: None,
                exchange_id: None,
                metadata: Default::default(),
            })
        })
        .collect()
}

/// The summary body without the time-span header (the references have none).
fn body(text: &str, messages: &[crate::core::types::Message]) -> String {
    let header = crate::summarize::time_span(messages);
    text.strip_prefix(&header)
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// Scores LEAD-3 and the extractive summarizer (at its token budget, and cut at 3
/// sentences like LEAD-3) on DialogSum test (`limit` dialogues) and on LoCoMo sessions.
///
/// # Errors
/// I/O and parse errors of the files; embedding errors.
pub async fn run_summaries(
    embed: &crate::embed::EmbedQueue,
    dialogsum: &Path,
    locomo: Option<&Path>,
    limit: usize,
) -> Result<SummaryReport> {
    use crate::summarize::{Extractive, Summarizer, SummaryInput};
    let budget = embed.info().max_seq_length;
    let full = Extractive::default();
    let three = Extractive {
        max_picks: Some(3),
        ..Extractive::default()
    };
    let mut rows: [Vec<(Vec<String>, String)>; 3] = Default::default();
    let text = std::fs::read_to_string(dialogsum)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(limit) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| crate::Error::invalid("dialogsum", e.to_string()))?;
        let refs: Vec<String> = ["summary1", "summary2", "summary3", "summary"]
            .iter()
            .filter_map(|k| v[*k].as_str().map(str::to_owned))
            .collect();
        let msgs = dialogue_messages(v["dialogue"].as_str().unwrap_or_default());
        if msgs.is_empty() || refs.is_empty() {
            continue;
        }
        rows[0].push((refs.clone(), lead(&msgs, 3)));
        for (slot, s) in [(1usize, &three), (2, &full)] {
            let out = s
                .summarize(SummaryInput {
                    messages: &msgs,
                    embed,
                    max_tokens: budget,
                })
                .await?;
            rows[slot].push((refs.clone(), body(&out.text, &msgs)));
        }
    }
    let names = [
        "LEAD-3",
        "extractive (3 sentences)",
        "extractive (256-token budget)",
    ];
    let dialogsum_rows = names
        .iter()
        .zip(&rows)
        .map(|(n, r)| (n.to_string(), rouge(r)))
        .collect();

    let mut locomo_rows = Vec::new();
    if let Some(path) = locomo {
        let mut rows: [Vec<(Vec<String>, String)>; 2] = Default::default();
        for sample in crate::locomo::load(path)? {
            let all = sample.messages();
            for (session, reference) in &sample.session_summaries {
                let msgs: Vec<crate::core::types::Message> = all
                    .iter()
                    .zip(&sample.turns)
                    .filter(|(_, t)| t.session == *session)
                    .map(|(m, _)| crate::core::types::Message {
                        id: String::new(),
                        namespace: "eval".into(),
                        role: m.role,
                        name: m.name.clone(),
                        content: m.content.clone(),
                        timestamp: m.timestamp.unwrap_or_default(),
                        agent_id: None,
                        session_id: None,
                        exchange_id: None,
                        metadata: Default::default(),
                    })
                    .collect();
                if msgs.is_empty() {
                    continue;
                }
                rows[0].push((vec![reference.clone()], lead(&msgs, 3)));
                let out = full
                    .summarize(SummaryInput {
                        messages: &msgs,
                        embed,
                        max_tokens: budget,
                    })
                    .await?;
                rows[1].push((vec![reference.clone()], body(&out.text, &msgs)));
            }
        }
        locomo_rows = vec![
            ("LEAD-3".to_string(), rouge(&rows[0])),
            ("extractive (256-token budget)".to_string(), rouge(&rows[1])),
        ];
    }
    Ok(SummaryReport {
        dialogsum: dialogsum_rows,
        locomo: locomo_rows,
    })
}

impl SummaryReport {
    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (title, rows) in [
            ("DialogSum test (best of 3 references)", &self.dialogsum),
            ("LoCoMo sessions vs session_summary", &self.locomo),
        ] {
            if rows.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{title}\n{:<32} {:>5} {:>8} {:>8} {:>8}\n",
                "method", "n", "ROUGE-1", "ROUGE-2", "ROUGE-L"
            ));
            for (name, r) in rows {
                out.push_str(&format!(
                    "{:<32} {:>5} {:>8.4} {:>8.4} {:>8.4}\n",
                    name, r.documents, r.rouge1, r.rouge2, r.rouge_l
                ));
            }
        }
        out
    }
}
