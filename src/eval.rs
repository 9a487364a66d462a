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

use crate::engine::Engine;
use crate::error::Result;
use crate::locomo::Sample;
use crate::types::SearchRequest;

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

/// Ingests every sample into namespace `<prefix>-<sample_id>` and asks every
/// question with evidence for the top `k_max` turns.
///
/// # Errors
/// Engine errors (storage, embedding).
pub async fn run_locomo(
    engine: &Engine,
    samples: &[Sample],
    prefix: &str,
    k_max: usize,
) -> Result<LocomoReport> {
    let started = Instant::now();
    let mut turns = 0usize;
    for s in samples {
        let ns = format!("{prefix}-{}", s.sample_id);
        let msgs = s.messages();
        turns += msgs.len();
        for chunk in msgs.chunks(engine.config().limits.max_messages_per_request.min(512)) {
            engine.add_batch(&ns, chunk.to_vec()).await?;
        }
    }
    let ingest_turns_per_s = turns as f64 / started.elapsed().as_secs_f64();

    let mut overall = Acc::default();
    let mut excl = Acc::default();
    let mut by_cat: BTreeMap<u8, Acc> = BTreeMap::new();
    let mut latencies = Vec::new();
    for s in samples {
        let ns = format!("{prefix}-{}", s.sample_id);
        for q in s.questions.iter().filter(|q| !q.evidence.is_empty()) {
            let res = engine
                .search(&ns, SearchRequest::text(q.question.clone(), k_max))
                .await?;
            latencies.push(res.took_ms);
            let ranked: Vec<String> = res
                .hits
                .iter()
                .filter_map(|h| {
                    h.message
                        .metadata
                        .get("dia_id")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                })
                .collect();
            let r = recall_at(&ranked, &q.evidence);
            overall.add(r);
            if q.category != 5 {
                excl.add(r);
            }
            by_cat.entry(q.category).or_default().add(r);
        }
    }
    Ok(LocomoReport {
        questions: overall.n,
        overall: overall.recall(),
        excluding_adversarial: excl.recall(),
        by_category: by_cat
            .into_iter()
            .map(|(c, a)| (c.to_string(), a.recall()))
            .collect(),
        ingest_turns_per_s,
        search_ms: Percentiles::of(&mut latencies),
    })
}

/// Loads `path` and runs [`run_locomo`].
///
/// # Errors
/// As [`crate::locomo::load`] and [`run_locomo`].
pub async fn run_locomo_file(engine: &Engine, path: &Path, k_max: usize) -> Result<LocomoReport> {
    let samples = crate::locomo::load(path)?;
    run_locomo(engine, &samples, "locomo", k_max).await
}

impl LocomoReport {
    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<24} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
            "questions", "n", "R@1", "R@5", "R@10", "R@20"
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
        out.push_str(&format!(
            "ingest {:.1} turns/s; search p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms\n",
            self.ingest_turns_per_s, self.search_ms.p50, self.search_ms.p95, self.search_ms.p99
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

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
    }
}
