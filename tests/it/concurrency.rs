//! Many tasks adding, deleting and searching one namespace at once: the final
//! state equals a serial replay of the acknowledged operations, in the order
//! they were acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use memoryd::{Access, Engine, ErrorKind, NewMessage, Role, SearchMode, SearchRequest};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{open, rt};

const NS: &str = "shared";
const TASKS: u64 = 8;
const OPS_PER_TASK: usize = 30;

/// An acknowledged operation with its effect.
#[derive(Debug, Clone)]
enum Op {
    Add(Vec<(String, String)>),
    Delete(String),
}

fn message(text: String) -> NewMessage {
    NewMessage::new(Role::User, text).with_timestamp("2024-03-01T12:00:00Z".parse().unwrap())
}

const TOPICS: &[&str] = &[
    "the garden needs watering before the heat wave",
    "our flight to Lisbon leaves at seven",
    "the quarterly report is due on Friday",
    "my sister adopted a grey kitten",
    "the bakery on Elm street sells rye bread",
    "we should repaint the fence in spring",
];

async fn task(engine: Engine, t: u64, log: Arc<Mutex<Vec<Op>>>, live: Arc<Mutex<Vec<String>>>) {
    let mut rng = StdRng::seed_from_u64(t);
    for i in 0..OPS_PER_TASK {
        match rng.random_range(0..10) {
            0..=4 => {
                let n = rng.random_range(1..=3);
                let texts: Vec<String> = (0..n)
                    .map(|j| {
                        let topic = TOPICS[rng.random_range(0..TOPICS.len())];
                        format!("task {t} op {i} part {j}: {topic}")
                    })
                    .collect();
                let stored = engine
                    .add_batch(
                        &Access::full(),
                        NS,
                        texts.iter().cloned().map(message).collect(),
                    )
                    .await
                    .expect("add");
                let added: Vec<(String, String)> =
                    stored.into_iter().map(|m| (m.id, m.content)).collect();
                // Record under the log lock so the log order is the acknowledgment order.
                let mut log = log.lock();
                live.lock().extend(added.iter().map(|(id, _)| id.clone()));
                log.push(Op::Add(added));
            }
            5..=7 => {
                let victim = {
                    let l = live.lock();
                    if l.is_empty() {
                        continue;
                    }
                    l[rng.random_range(0..l.len())].clone()
                };
                match engine.delete(&Access::full(), &victim).await {
                    Ok(()) => {
                        let mut log = log.lock();
                        live.lock().retain(|x| *x != victim);
                        log.push(Op::Delete(victim));
                    }
                    // Another task deleted it first: no effect, nothing to replay.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => panic!("delete: {e}"),
                }
            }
            _ => {
                let topic = TOPICS[rng.random_range(0..TOPICS.len())];
                let r = engine
                    .search(&Access::full(), NS, SearchRequest::text(topic, 5))
                    .await
                    .expect("search");
                for h in r.hits {
                    // Whatever a search returns is readable at that moment or deleted since.
                    match engine.get(&Access::full(), &h.id).await {
                        Ok(m) => assert_eq!(m.content, h.text()),
                        Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound),
                    }
                }
            }
        }
    }
}

async fn listing(engine: &Engine) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = engine
            .list(&Access::full(), NS, after.as_deref(), 100)
            .await
            .unwrap();
        out.extend(page.messages.into_iter().map(|m| (m.id, m.content)));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// Every message's score for `query`, by content (ids differ between engines).
async fn ranking(
    engine: &Engine,
    query: &str,
    mode: SearchMode,
    k: usize,
) -> BTreeMap<String, f32> {
    engine
        .search(
            &Access::full(),
            NS,
            SearchRequest::text(query, k).with_mode(mode),
        )
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.text().into_owned(), h.score))
        .collect()
}

#[track_caller]
fn assert_same(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, what: &str) {
    let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).collect();
    let missing: Vec<_> = want.iter().filter(|(k, _)| !got.contains_key(*k)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && got == want,
        "{what}: not in the serial replay {extra:?}; missing {missing:?}"
    );
}

#[test]
fn concurrent_adds_deletes_and_searches_equal_a_serial_replay() {
    let dir = tempfile::tempdir().unwrap();
    let replay_dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let engine = open(dir.path());
        let log = Arc::new(Mutex::new(Vec::new()));
        let live = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| tokio::spawn(task(engine.clone(), t, log.clone(), live.clone())))
            .collect();
        for t in tasks {
            t.await.expect("no task panicked");
        }
        let log = log.lock().clone();
        assert!(log.iter().any(|o| matches!(o, Op::Delete(_))));

        // Serial replay of the log, as a model.
        let mut expected = BTreeMap::new();
        for op in &log {
            match op {
                Op::Add(added) => {
                    for (id, text) in added {
                        assert!(expected.insert(id.clone(), text.clone()).is_none());
                    }
                }
                Op::Delete(id) => {
                    assert!(expected.remove(id).is_some(), "a delete acknowledged twice");
                }
            }
        }
        assert_same(&listing(&engine).await, &expected, "the concurrent engine");
        assert_eq!(engine.stats().messages, expected.len());
        let report = engine.check(&Access::full()).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.store.messages, expected.len());

        // Serial replay in a second engine: same contents, same scores.
        let replay = open(replay_dir.path());
        let mut ids = BTreeMap::new();
        for op in &log {
            match op {
                Op::Add(added) => {
                    let stored = replay
                        .add_batch(
                            &Access::full(),
                            NS,
                            added.iter().map(|(_, t)| message(t.clone())).collect(),
                        )
                        .await
                        .unwrap();
                    for ((old, _), new) in added.iter().zip(stored) {
                        ids.insert(old.clone(), new.id);
                    }
                }
                Op::Delete(old) => replay.delete(&Access::full(), &ids[old]).await.unwrap(),
            }
        }
        let replayed: BTreeSet<String> = listing(&replay).await.into_values().collect();
        let concurrent: BTreeSet<String> = expected.values().cloned().collect();
        assert_eq!(replayed, concurrent);
        let all = expected.len();
        for query in ["kitten", "flight to Lisbon", "report due Friday"] {
            for mode in [SearchMode::Dense, SearchMode::Lexical] {
                let a = ranking(&engine, query, mode, all).await;
                let b = ranking(&replay, query, mode, all).await;
                assert_eq!(
                    a.keys().collect::<Vec<_>>(),
                    b.keys().collect::<Vec<_>>(),
                    "{query} {mode:?}"
                );
                for (text, score) in &a {
                    assert!(
                        (score - b[text]).abs() < 1e-4,
                        "{query} {mode:?} {text}: {score} vs {}",
                        b[text]
                    );
                }
            }
        }

        // And the concurrent engine's state is what a restart reads back.
        drop(engine);
        let reopened = open(dir.path());
        assert_same(&listing(&reopened).await, &expected, "the reopened engine");
    });
}
