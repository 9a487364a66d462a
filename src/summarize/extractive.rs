//! Extractive summaries: the most central and least redundant sentences.
//!
//! Each message is split into sentences, each embedded with its speaker
//! (`"<speaker>: <sentence>"`) by the engine's own model. Sentences are picked by
//! maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998) against the
//! window's embedding centroid — relevance `cos(s, centroid)`, redundancy the
//! highest `cos(s, picked)`, score `λ·rel − (1−λ)·red` with λ = 0.7 — until the
//! token budget is spent. The picks are printed in their original order with
//! speaker attribution after a time-span header, so the summary embeds without
//! truncation.

use super::{BoxFuture, Summarizer, SummaryInput, SummaryText, time_span};
use crate::core::error::Result;
use crate::simd::dot;

/// The default summarizer (see the module docs).
#[derive(Debug, Clone)]
pub struct Extractive {
    /// MMR trade-off between relevance (1.0) and novelty (0.0). Default 0.7.
    pub lambda: f32,
    /// Sentences considered per window (longest windows are cut). Default 256.
    pub max_sentences: usize,
    /// Stop after this many sentences (default: only the token budget limits).
    pub max_picks: Option<usize>,
    /// Sentences with fewer words are not picked ("Yes, sir.", "Hi!") unless
    /// nothing longer exists. Default 4.
    pub min_words: usize,
}

impl Default for Extractive {
    fn default() -> Self {
        Extractive {
            lambda: 0.7,
            max_sentences: 256,
            max_picks: None,
            min_words: 4,
        }
    }
}

struct Unit {
    message: usize,
    speaker: String,
    text: String,
}

/// Splits text into sentences at `.`, `!` or `?` followed by white space (and at line breaks).
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (i, &(pos, c)) in chars.iter().enumerate() {
            let next_is_space = chars.get(i + 1).is_none_or(|(_, n)| n.is_whitespace());
            if matches!(c, '.' | '!' | '?') && next_is_space {
                let end = pos + c.len_utf8();
                let s = line[start..end].trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                start = end;
            }
        }
        let s = line[start..].trim();
        if !s.is_empty() {
            out.push(s.to_string());
        }
    }
    out
}

impl Summarizer for Extractive {
    fn name(&self) -> String {
        "extractive-mmr/1".into()
    }

    fn summarize<'a>(&'a self, input: SummaryInput<'a>) -> BoxFuture<'a, Result<SummaryText>> {
        Box::pin(async move {
            let header = time_span(input.messages);
            let mut units: Vec<Unit> = Vec::new();
            for (i, m) in input.messages.iter().enumerate() {
                let speaker = m
                    .name
                    .clone()
                    .unwrap_or_else(|| m.role.as_str().to_string());
                for s in sentences(&m.content) {
                    units.push(Unit {
                        message: i,
                        speaker: speaker.clone(),
                        text: s,
                    });
                }
            }
            if units
                .iter()
                .any(|u| u.text.split_whitespace().count() >= self.min_words)
            {
                units.retain(|u| u.text.split_whitespace().count() >= self.min_words);
            }
            units.truncate(self.max_sentences);
            if units.is_empty() {
                return Ok(SummaryText {
                    text: header,
                    summarizer: self.name(),
                });
            }
            let mut texts: Vec<String> = units
                .iter()
                .map(|u| format!("{}: {}", u.speaker, u.text))
                .collect();
            texts.push(header.clone());
            let emb = input.embed.embed(texts).await?;
            let n = units.len();
            let header_tokens = emb.tokens[n].saturating_sub(2);
            // [CLS] + header + sentences + [SEP] must fit; a unit's own count
            // includes its speaker prefix and 2 special tokens, an upper bound
            // on what it adds once consecutive same-speaker prefixes are merged.
            let budget = input.max_tokens.saturating_sub(2 + header_tokens);
            let mut centroid = vec![0f32; emb.dim];
            for r in 0..n {
                for (c, x) in centroid.iter_mut().zip(emb.row(r)) {
                    *c += x;
                }
            }
            crate::embed::l2_normalize(&mut centroid);
            let relevance: Vec<f32> = (0..n).map(|r| dot(emb.row(r), &centroid)).collect();
            let mut picked: Vec<usize> = Vec::new();
            let mut redundancy = vec![f32::MIN; n];
            let mut used = 0usize;
            let mut available: Vec<bool> = vec![true; n];
            while self.max_picks.is_none_or(|m| picked.len() < m) {
                let mut best: Option<(usize, f32)> = None;
                for r in (0..n).filter(|&r| available[r]) {
                    let red = if picked.is_empty() {
                        0.0
                    } else {
                        redundancy[r]
                    };
                    let score = self.lambda * relevance[r] - (1.0 - self.lambda) * red;
                    if best.is_none_or(|(_, b)| score > b) {
                        best = Some((r, score));
                    }
                }
                let Some((r, _)) = best else { break };
                available[r] = false;
                let cost = emb.tokens[r].saturating_sub(2);
                if used + cost > budget {
                    continue; // too long; a shorter one may still fit
                }
                used += cost;
                picked.push(r);
                for (o, red) in redundancy.iter_mut().enumerate() {
                    *red = red.max(dot(emb.row(o), emb.row(r)));
                }
            }
            picked.sort_unstable();
            let mut out = header;
            let mut last: Option<(usize, &str)> = None;
            for r in picked {
                let u = &units[r];
                let same_speaker = last.is_some_and(|(m, s)| s == u.speaker && m + 1 >= u.message);
                if same_speaker {
                    out.push(' ');
                } else {
                    out.push_str(&format!(" {}: ", u.speaker));
                }
                out.push_str(&u.text);
                last = Some((u.message, &u.speaker));
            }
            Ok(SummaryText {
                text: out,
                summarizer: self.name(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences() {
        assert_eq!(
            sentences("Hi Mel! How are you? I went to 3.5 meetups.\nNew line"),
            [
                "Hi Mel!",
                "How are you?",
                "I went to 3.5 meetups.",
                "New line"
            ]
        );
        assert_eq!(sentences("no end"), ["no end"]);
        assert!(sentences("  ").is_empty());
    }
}
