//! Read-time redaction: what an API key created with `--redact pii` or
//! `--redact-fields` sees instead of personal data. Stored data is never
//! changed; the mask is applied to what the engine returns to that caller.
//!
//! What is masked (the security section of the shared-memory design memoryd
//! follows: personal data must not flow to agents that do not need it):
//! - with `pii`: e-mail addresses → `[email]` (not `name@2x.png` asset names),
//!   payment-card numbers (13–19 digits whole or in the printed layouts
//!   4-4-4-4, 4-6-5, 4-6-4, spaces or dashes, **Luhn-checked**) → `[card]`,
//!   phone numbers → `[phone]` (7–15 digits as ITU-T E.164 allows, and one of:
//!   a leading `+`; a parenthesized area code with ≥ 10 digits; dots only as
//!   `415.555.0100`; ≥ 10 digits in groups of up to 4 or two groups; a bare run
//!   shaped like a North American or trunk-prefixed national number). Runs glued
//!   to letters, `:`, `-`, `.`, `/` (ids, times, versions, paths), ISO dates,
//!   IP addresses and epoch timestamps are left alone. Applied to message
//!   content, summary text, every string (and member name) inside a context
//!   value, board titles and bodies;
//! - with `fields`: the listed metadata fields (at any depth of a record's
//!   `metadata`) → `"[redacted]"`, whatever their type.
//!
//! Detection is pattern-based: it catches the usual written forms, not every
//! way a person can spell a number (see the tests for what is covered).

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields whose string value is text a person wrote (messages, summaries,
/// board documents).
const TEXT_FIELDS: &[&str] = &["content", "text", "title", "body"];

/// A redaction policy (part of an API key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Redaction {
    /// Mask e-mail addresses, phone numbers and payment-card numbers.
    #[serde(default)]
    pub pii: bool,
    /// Metadata fields whose values are replaced by `"[redacted]"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Redaction {
    /// Whether the policy masks anything.
    pub fn is_active(&self) -> bool {
        self.pii || !self.fields.is_empty()
    }

    /// `text` with personal data masked (unchanged without `pii`).
    pub fn mask_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.pii {
            mask_pii(text)
        } else {
            Cow::Borrowed(text)
        }
    }

    /// Masks a record's JSON in place: text fields (`content`, `text`, `title`,
    /// `body`) and every string inside a `value` (context entries and versions)
    /// or a `payload` (direct messages)
    /// with [`Redaction::mask_text`], and the listed fields inside `metadata`.
    /// Applies at any depth, so search hits, pages and event data are covered.
    pub fn apply(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match (k.as_str(), &mut *child) {
                        (f, Value::String(s)) if TEXT_FIELDS.contains(&f) => {
                            if let Cow::Owned(m) = self.mask_text(s) {
                                *s = m;
                            }
                        }
                        // Context values; a direct message's payload.
                        ("value" | "payload", _) => self.mask_all_strings(child),
                        ("metadata", Value::Object(meta)) => self.mask_fields(meta),
                        _ => self.apply(child),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.apply(i)),
            _ => {}
        }
    }

    fn mask_all_strings(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(m) = self.mask_text(s) {
                    *s = m;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.mask_all_strings(i)),
            Value::Object(map) => {
                // Member names can hold personal data too (`{"ann@example.com": …}`).
                if self.pii && map.keys().any(|k| matches!(mask_pii(k), Cow::Owned(_))) {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(mask_pii(&k).into_owned(), v);
                    }
                }
                map.values_mut().for_each(|i| self.mask_all_strings(i));
            }
            _ => {}
        }
    }

    /// Replaces the listed fields of a metadata object (at any depth, through
    /// arrays too) with `"[redacted]"`.
    pub fn mask_metadata(&self, meta: &mut serde_json::Map<String, Value>) {
        for (k, v) in meta.iter_mut() {
            if self.fields.iter().any(|f| f == k) {
                *v = Value::String("[redacted]".into());
            } else {
                self.mask_fields_in(v);
            }
        }
    }

    fn mask_fields_in(&self, v: &mut Value) {
        match v {
            Value::Object(inner) => self.mask_metadata(inner),
            Value::Array(items) => items.iter_mut().for_each(|i| self.mask_fields_in(i)),
            _ => {}
        }
    }

    fn mask_fields(&self, meta: &mut serde_json::Map<String, Value>) {
        self.mask_metadata(meta)
    }
}

fn email_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"[\p{L}\p{N}._%+-]+@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?",
            r"(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)*\.(\p{L}{2,})"
        ))
        .expect("valid regex")
    })
}

/// File suffixes that follow `@` in asset names (`logo@2x.png`), not e-mail domains.
const FILE_SUFFIXES: &[&str] = &["png", "jpg", "jpeg", "gif", "svg", "webp", "pdf"];

/// ISO dates (and times) first in the alternation, so they are consumed whole
/// and left alone; then runs of digit groups, optionally parenthesized, joined
/// by one space, dot or dash, with an optional leading `+`.
fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?)",
            r"|(?P<num>\+?\(?[0-9]+\)?(?:[ .-]\(?[0-9]+\)?)*)"
        ))
        .expect("valid regex")
    })
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Digit-group lengths of `run`, split at spaces, dots and dashes.
fn groups(run: &str) -> Vec<usize> {
    run.split([' ', '.', '-'])
        .map(|g| g.bytes().filter(u8::is_ascii_digit).count())
        .collect()
}

/// What a digit run is: a card, a phone number, or neither.
fn classify(run: &str) -> Option<&'static str> {
    let digits: Vec<u8> = run.bytes().filter(u8::is_ascii_digit).collect();
    let n = digits.len();
    let plus = run.starts_with('+');
    let paren = run.contains('(');
    let dot = run.contains('.');
    let g = groups(run);
    // Cards: 13–19 digits, Luhn-valid, written whole or in the printed layouts
    // (4-4-4-4[-1..4], Amex 4-6-5, Diners 4-6-4), spaces or dashes only.
    let card_layout = g.len() == 1
        || g[..g.len() - 1].iter().all(|&l| l == 4) && (1..=4).contains(&g[g.len() - 1])
        || g == [4, 6, 5]
        || g == [4, 6, 4];
    if (13..=19).contains(&n) && !plus && !paren && !dot && card_layout && luhn(&digits) {
        return Some("[card]");
    }
    if !(7..=15).contains(&n) {
        return None;
    }
    let phone = if plus {
        true
    } else if dot {
        // 415.555.0100 (not 192.168.1.100, not 3.14159).
        g == [3, 3, 4]
    } else if paren {
        n >= 10
    } else if g.len() == 1 {
        // A bare run: a North American number (area codes start 2–9), with its
        // country code 1, or a national number with trunk prefix 0 — not epoch
        // seconds (1732647700) or other counters.
        let first = digits[0];
        (n == 10 && first >= b'2')
            || (n == 11 && first == b'1' && digits[1] >= b'2')
            || (first == b'0' && (10..=11).contains(&n))
    } else {
        // Groups of up to 4 digits (a long group only in two-part numbers such
        // as 07700 900123), at least 10 digits (not 100-1000, not ISBNs).
        // Three or more 4-digit groups read as (part of) a card, not a phone.
        n >= 10
            && (g.iter().all(|&l| l <= 4) || g.len() == 2)
            && !(g.len() >= 3 && g.iter().all(|&l| l == 4))
    };
    phone.then_some("[phone]")
}

/// Masks the digit runs in `run` (one match of [`number_re`]): the longest
/// space-separated stretch that is a card or phone number wins, from the left
/// (so a card followed by its CVV, or two numbers in a row, are each found).
fn mask_run(run: &str, out: &mut String) {
    let chunks: Vec<&str> = run.split(' ').collect();
    let is_date = |c: &str| {
        let b = c.as_bytes();
        b.len() == 10 && b[4] == b'-' && b[7] == b'-'
    };
    let mut i = 0;
    while i < chunks.len() {
        if i > 0 {
            out.push(' ');
        }
        let found = (i + 1..=chunks.len()).rev().find_map(|j| {
            if chunks[i..j].iter().any(|c| is_date(c)) {
                return None;
            }
            classify(&chunks[i..j].join(" ")).map(|label| (j, label))
        });
        match found {
            Some((j, label)) => {
                out.push_str(label);
                i = j;
            }
            None => {
                out.push_str(chunks[i]);
                i += 1;
            }
        }
    }
}

/// `text` with e-mail addresses, card numbers and phone numbers masked.
pub fn mask_pii(text: &str) -> Cow<'_, str> {
    let after_email = email_re().replace_all(text, |c: &regex::Captures<'_>| {
        let tld = c[1].to_lowercase();
        if FILE_SUFFIXES.contains(&tld.as_str()) {
            c[0].to_owned()
        } else {
            "[email]".to_owned()
        }
    });
    let src: &str = &after_email;
    let mut out = String::with_capacity(src.len());
    let mut last = 0;
    let mut changed = false;
    for c in number_re().captures_iter(src) {
        let Some(m) = c.name("num") else { continue };
        // Part of a word, an id, a version, a time or a path: left alone.
        let before = src[..m.start()].chars().next_back();
        let after = src[m.end()..].chars().next();
        let glued = |ch: Option<char>| {
            ch.is_some_and(|ch| ch.is_alphanumeric() || ":-./_@#$€£%".contains(ch))
        };
        if glued(before) || after.is_some_and(|ch| ch.is_alphanumeric() || ":/_@%".contains(ch)) {
            continue;
        }
        let mut masked = String::new();
        mask_run(m.as_str(), &mut masked);
        if masked != m.as_str() {
            out.push_str(&src[last..m.start()]);
            out.push_str(&masked);
            last = m.end();
            changed = true;
        }
    }
    if !changed {
        return match after_email {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(s) => Cow::Owned(s),
        };
    }
    out.push_str(&src[last..]);
    Cow::Owned(out)
}

/// What a caller without the `read` scope gets back from a write: the record's
/// ids, versions and times, but no text (`content`, `text`, `title`, `body`
/// become `""`), no `value` (`null`) and no `metadata` (`{}`) — a write-only key must
/// not read what others wrote through a merge patch's result, a vote's
/// proposal or a failed precondition's current entry.
pub fn withhold(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match (k.as_str(), &mut *child) {
                    (f, Value::String(s)) if TEXT_FIELDS.contains(&f) => s.clear(),
                    ("value" | "payload", _) => *child = Value::Null,
                    ("metadata", _) => *child = Value::Object(Default::default()),
                    _ => withhold(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(withhold),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> String {
        mask_pii(s).into_owned()
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(
            m("write to ann.lee+x@mail.example.co.uk now"),
            "write to [email] now"
        );
        assert_eq!(m("a@b.io, c_d@e-f.org"), "[email], [email]");
        assert_eq!(
            m("not an email: a@b or @handle"),
            "not an email: a@b or @handle"
        );
    }

    #[test]
    fn card_numbers_are_luhn_checked() {
        // Test numbers of the card networks (Luhn-valid).
        assert_eq!(m("card 4111 1111 1111 1111 ok"), "card [card] ok");
        assert_eq!(m("4012-8888-8888-1881"), "[card]");
        assert_eq!(m("378282246310005"), "[card]");
        // With its CVV or expiry after it.
        assert_eq!(m("4111 1111 1111 1111 123"), "[card] 123");
        assert_eq!(m("4111-1111-1111-1111 12 28"), "[card] 12 28");
        // One digit changed: not Luhn-valid, 16 digits: not a phone either.
        assert_eq!(m("4111 1111 1111 1112"), "4111 1111 1111 1112");
    }

    #[test]
    fn phone_numbers_are_masked() {
        for (input, want) in [
            ("call +1 415 555 0100", "call [phone]"),
            ("call (415) 555-0100.", "call [phone]."),
            ("415-555-0100", "[phone]"),
            ("415.555.0100", "[phone]"),
            ("+44 20 7946 0958", "[phone]"),
            ("+33 1 23 45 67 89", "[phone]"),
            ("07700900123", "[phone]"),
            ("07700 900123", "[phone]"),
            ("4155550100", "[phone]"),
            ("415-555-0100 415-555-0101", "[phone] [phone]"),
            ("tel: 415-555-0100", "tel: [phone]"),
        ] {
            assert_eq!(m(input), want, "{input}");
        }
    }

    #[test]
    fn dates_times_and_small_numbers_are_left_alone() {
        for s in [
            "on 2026-11-26 at 19:01",
            "2026-11-26T19:01:40Z",
            "order 1234 shipped 3 items",
            "version 1.2.3",
            "score 98.6",
            "room 12-34",
            "19:01 2026-11-26",
            "version 10 2026-11-26",
            "100-1000 ms",
            "HTTP 500 2023",
            "lat -122.4194",
            "192.168.1.100",
            "at 1732647700",
            "pi 3.14159265358979",
            "ISBN 978-3-16-148410-0",
            "id 550e8400-e29b-41d4-a716-446655440000",
            "v2.10.1234567",
            "$1234567890",
        ] {
            assert_eq!(m(s), s);
        }
    }

    #[test]
    fn records_mask_text_values_and_listed_metadata() {
        let r = Redaction {
            pii: true,
            fields: vec!["customer".into()],
        };
        let mut v = serde_json::json!({
            "hits": [{
                "id": "0190-1234-5678-9012",
                "message": {
                    "content": "mail me at a@b.io",
                    "timestamp": "2026-11-26T19:01:40Z",
                    "metadata": {"customer": {"n": 1}, "deep": {"customer": "x"}, "other": "a@b.io"}
                },
                "context": {"key": "k", "value": {"list": ["+1 415 555 0100", 5], "email": "c@d.org"}}
            }]
        });
        r.apply(&mut v);
        let hit = &v["hits"][0];
        assert_eq!(hit["id"], "0190-1234-5678-9012", "ids are not text");
        assert_eq!(hit["message"]["content"], "mail me at [email]");
        assert_eq!(hit["message"]["timestamp"], "2026-11-26T19:01:40Z");
        assert_eq!(hit["message"]["metadata"]["customer"], "[redacted]");
        assert_eq!(hit["message"]["metadata"]["deep"]["customer"], "[redacted]");
        assert_eq!(hit["message"]["metadata"]["other"], "a@b.io", "unlisted");
        assert_eq!(hit["context"]["value"]["list"][0], "[phone]");
        assert_eq!(hit["context"]["value"]["list"][1], 5);
        assert_eq!(hit["context"]["value"]["email"], "[email]");
        // Fields only: text untouched.
        let fields_only = Redaction {
            pii: false,
            fields: vec!["other".into()],
        };
        let mut v2 = serde_json::json!({"content": "a@b.io", "metadata": {"other": 1}});
        fields_only.apply(&mut v2);
        assert_eq!(
            v2,
            serde_json::json!({"content": "a@b.io", "metadata": {"other": "[redacted]"}})
        );
    }
}
