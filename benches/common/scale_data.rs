//! The scale benches' data (issue 19): LoCoMo turns with varied speakers and
//! dates, and their real-model vectors cached on disk (`scale`, `memory`).

use std::path::PathBuf;
use std::time::Instant;

use memoryd::{NewMessage, Role};

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().expect(name))
        .unwrap_or(default)
}

pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("MEMORYD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/memoryd")
        });
    base.join("scale")
}

pub const NAMES: &[&str] = &[
    "Caroline", "Melanie", "Jon", "Gina", "John", "Maria", "Joanna", "Nate", "Tim", "Audrey",
    "Andrew", "James", "Deborah", "Jolene", "Evan", "Sam", "Calvin", "Dave", "Priya", "Kenji",
];

/// Turn `i`: a LoCoMo turn with a speaker and a day of its own.
pub fn turn(turns: &[String], i: usize) -> (String, String, chrono::DateTime<chrono::Utc>) {
    let base = &turns[i % turns.len()];
    let text = base.split_once(": ").map_or(base.as_str(), |(_, t)| t);
    let name = NAMES[(i / turns.len() + i * 7) % NAMES.len()];
    let day = chrono::DateTime::from_timestamp(1_600_000_000 + (i as i64) * 600, 0).unwrap();
    (format!("{name}: {text}"), name.to_owned(), day)
}

pub fn message(turns: &[String], i: usize) -> NewMessage {
    let (text, name, at) = turn(turns, i);
    let mut m = NewMessage::new(
        if i.is_multiple_of(2) {
            Role::User
        } else {
            Role::Assistant
        },
        text,
    );
    m.name = Some(name);
    m.session_id = Some(format!("session-{}", i / 20));
    m.timestamp = Some(at);
    m
}

/// Real-model vectors of turns `0..n` `[n · dim]`, cached on disk.
pub fn vectors(turns: &[String], n: usize) -> Vec<f32> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let embedder = super::embedder();
    let dim = embedder.info().dim;
    let path = dir.join(format!("vectors-{}-{dim}-{n}.f32", embedder.info().id));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == n * dim * 4
    {
        return bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
    }
    let started = Instant::now();
    let mut out = Vec::with_capacity(n * dim);
    let texts: Vec<String> = (0..n).map(|i| turn(turns, i).0).collect();
    for (b, chunk) in texts.chunks(64).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
        out.extend_from_slice(&embedder.embed(&refs).unwrap().data);
        if b % 100 == 0 {
            eprintln!(
                "embedding for the cache: {}/{n} ({:.0} turns/s)",
                out.len() / dim,
                (out.len() / dim) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let bytes: Vec<u8> = out.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&path, bytes).unwrap();
    out
}

/// Vectors cached by default: 100k to load plus 2,048 for the ingest phase.
pub const POOL: usize = 102_048;

/// Vectors of turns `0..n` `[n · dim]`: the first [`POOL`] from the real model
/// (cached), and past them (1M messages would take ~2 h of embedding) a cached
/// vector of the same LoCoMo text under another speaker, perturbed by seeded
/// uniform noise (±0.022 per dimension, norm ~0.25) and renormalized: cosine
/// ~0.97 to it, about what the model gives the same words under another name.
pub fn vectors_for(turns: &[String], n: usize) -> Vec<f32> {
    let mut out = vectors(turns, POOL);
    let dim = out.len() / POOL;
    let per_text = POOL / turns.len();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        // splitmix64, then a uniform draw in [-0.022, 0.022).
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.044
    };
    out.reserve(n.saturating_sub(POOL) * dim);
    for i in POOL..n {
        let j = i % turns.len() + turns.len() * ((i / turns.len()) % per_text);
        let mut v: Vec<f32> = out[j * dim..(j + 1) * dim]
            .iter()
            .map(|x| x + noise())
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        out.extend_from_slice(&v);
    }
    out.truncate(n.max(POOL) * dim);
    out
}
