//! Read-time redaction: what an API key created with `--redact pii` or
//! `--redact-fields` sees instead of personal data. Stored data is never
//! changed; the mask is applied to what the engine returns to that caller.
//!
//! What is masked (the security section of the shared-memory design memoryd
//! follows: personal data must not flow to agents that do not need it):
//! - with `pii`: e-mail addresses → `[email]`, payment-card numbers (13–19
//!   digits, spaces or dashes allowed, **Luhn-checked**) → `[card]`, phone
//!   numbers → `[phone]` (7–15 digits as ITU-T E.164 allows; a leading `+`, a
//!   parenthesized area code, at least 10 digits, or the `555-0100` shape; ISO
//!   dates and times are left alone) — in message content, summary text, every
//!   string inside a context value, board titles and bodies;
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
                        ("value", _) => self.mask_all_strings(child),
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
            Value::Object(map) => map.values_mut().for_each(|i| self.mask_all_strings(i)),
            _ => {}
        }
    }

    fn mask_fields(&self, meta: &mut serde_json::Map<String, Value>) {
        for (k, v) in meta.iter_mut() {
            if self.fields.iter().any(|f| f == k) {
                *v = Value::String("[redacted]".into());
            } else if let Value::Object(inner) = v {
                self.mask_fields(inner);
            }
        }
    }
}

fn email_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}")
            .expect("valid regex")
    })
}

/// Digit runs that may be a card or a phone number, and ISO dates/times (first
/// in the alternation so they are consumed whole and left alone).
fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?P<date>\b[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?)",
            r"|(?P<num>(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]+(?:[ .-][0-9]+)*)"
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

/// What a digit run is: a card, a phone number, or neither.
fn classify(run: &str) -> Option<&'static str> {
    let digits: Vec<u8> = run.bytes().filter(u8::is_ascii_digit).collect();
    let n = digits.len();
    if (13..=19).contains(&n) && luhn(&digits) {
        return Some("[card]");
    }
    if !(7..=15).contains(&n) {
        return None;
    }
    let plus = run.starts_with('+');
    let paren = run.contains('(');
    // 555-0100 / 555 0100 / 555.0100: the local-number shape.
    let local = {
        let groups: Vec<&str> = run.split([' ', '.', '-']).collect();
        groups.len() == 2 && groups[0].len() == 3 && groups[1].len() == 4
    };
    (plus || paren || n >= 10 || local).then_some("[phone]")
}

/// `text` with e-mail addresses, card numbers and phone numbers masked.
pub fn mask_pii(text: &str) -> Cow<'_, str> {
    let after_email = email_re().replace_all(text, "[email]");
    let masked = number_re().replace_all(&after_email, |c: &regex::Captures<'_>| {
        match c.name("num") {
            Some(m) => classify(m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| m.as_str().to_owned()),
            None => c[0].to_owned(),
        }
    });
    match (&after_email, &masked) {
        (Cow::Borrowed(_), Cow::Borrowed(_)) => Cow::Borrowed(text),
        _ => Cow::Owned(masked.into_owned()),
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
            ("ext 555-0100", "ext [phone]"),
            ("07700900123", "[phone]"),
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
