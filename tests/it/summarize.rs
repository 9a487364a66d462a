//! Long-term memory: triggers, the summary record, search by kind, retention,
//! the chat-endpoint summarizer and its fallback.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use memoryd::summarize::LlmConfig;
use memoryd::{
    Access, Engine, EngineConfig, HitKind, NewMessage, Role, SearchRequest, SummarizeConfig,
};
use serde_json::{Value, json};

use crate::common::{config, embedder, rt};

fn turns(n: usize) -> Vec<NewMessage> {
    let topics = [
        "pottery class",
        "camping trip",
        "adoption agency",
        "charity run",
        "violin lessons",
        "new puppy",
    ];
    (0..n)
        .map(|i| {
            let who = if i % 2 == 0 { "Caroline" } else { "Melanie" };
            NewMessage::new(
                Role::User,
                format!(
                    "Turn {i}: I keep thinking about the {}. It was great!",
                    topics[i % topics.len()]
                ),
            )
            .with_name(who)
            .with_timestamp(
                chrono::DateTime::from_timestamp(1_683_500_000 + 60 * i as i64, 0).unwrap(),
            )
        })
        .collect()
}

fn cfg(dir: &std::path::Path, f: impl FnOnce(&mut SummarizeConfig)) -> EngineConfig {
    let mut c = config(dir);
    c.summarize.enabled = true;
    c.summarize.tick = Duration::from_millis(20);
    f(&mut c.summarize);
    c
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 10 s");
}

#[test]
fn count_trigger_writes_summaries_exactly_once_and_they_persist() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = cfg(dir.path(), |s| s.every = 50);
    let (ids, first) = rt.block_on(async {
        let e = Engine::open_with_embedder(c.clone(), embedder()).unwrap();
        let stored = e
            .add_batch(&Access::full(), "conv", turns(120))
            .await
            .unwrap();
        let ids: Vec<String> = stored.iter().map(|m| m.id.clone()).collect();
        wait_for(|| e.stats().summaries == 2).await;
        assert_eq!(e.unsummarized(&Access::full(), "conv"), 20);
        // Forcing summarizes the remaining 20 (below the count trigger).
        let forced = e.summarize(&Access::full(), "conv").await.unwrap();
        assert_eq!(forced.len(), 1);
        assert_eq!(forced[0].source_ids, ids[100..]);
        assert!(
            e.summarize(&Access::full(), "conv")
                .await
                .unwrap()
                .is_empty(),
            "nothing left to summarize"
        );
        let all = e.summaries(&Access::full(), "conv").await.unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].created_at >= all[1].created_at, "newest first");
        (ids, all)
    });
    // Every message summarized exactly once, in order, with its time span.
    let mut covered: Vec<String> = first
        .iter()
        .rev()
        .flat_map(|s| s.source_ids.clone())
        .collect();
    assert_eq!(covered, ids);
    covered.dedup();
    assert_eq!(covered.len(), 120);
    let oldest = first.last().unwrap();
    assert_eq!(
        oldest.from,
        chrono::DateTime::from_timestamp(1_683_500_000, 0).unwrap()
    );
    assert_eq!(
        oldest.to,
        chrono::DateTime::from_timestamp(1_683_500_000 + 60 * 49, 0).unwrap()
    );
    assert_eq!(oldest.summarizer, "extractive-mmr/1");
    assert!(
        oldest
            .text
            .starts_with("2023-05-07 22:53 to 2023-05-07 23:42 UTC."),
        "{}",
        oldest.text
    );
    assert!(
        oldest.text.contains("Caroline: ") && oldest.text.contains("Melanie: "),
        "{}",
        oldest.text
    );
    // It embeds whole: fewer tokens than max_seq_length (256) means no truncation.
    let e = embedder();
    let tokens = e.embed(&[oldest.text.as_str()]).unwrap().tokens[0];
    assert!(tokens < 256, "summary is {tokens} tokens");

    rt.block_on(async {
        let e = Engine::open_with_embedder(c, embedder()).unwrap();
        assert_eq!(e.summaries(&Access::full(), "conv").await.unwrap(), first);
        assert_eq!(e.unsummarized(&Access::full(), "conv"), 0);
        let hits = e
            .search(
                &Access::full(),
                "conv",
                SearchRequest::text("camping trip", 5).with_kinds(vec![HitKind::Summary]),
            )
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 3);
        assert!(
            hits.iter()
                .all(|h| h.kind == HitKind::Summary && h.summary.is_some() && h.message.is_none())
        );
        let msgs = e
            .search(
                &Access::full(),
                "conv",
                SearchRequest::text("camping trip", 200).with_kinds(vec![HitKind::Message]),
            )
            .await
            .unwrap()
            .hits;
        assert_eq!(
            msgs.len(),
            120,
            "summarized messages stay searchable by default"
        );
        let both = e
            .search(
                &Access::full(),
                "conv",
                SearchRequest::text("camping trip", 200),
            )
            .await
            .unwrap()
            .hits;
        assert_eq!(both.len(), 123);
        assert_eq!(
            e.delete_namespace(&Access::full(), "conv").await.unwrap(),
            120
        );
        assert!(
            e.summaries(&Access::full(), "conv")
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn time_trigger_summarizes_a_small_window() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e =
            Engine::open_with_embedder(cfg(dir.path(), |s| s.after = Duration::ZERO), embedder())
                .unwrap();
        e.add_batch(&Access::full(), "quiet", turns(3))
            .await
            .unwrap();
        wait_for(|| e.stats().summaries == 1).await;
        assert_eq!(
            e.summaries(&Access::full(), "quiet").await.unwrap()[0]
                .source_ids
                .len(),
            3
        );
    });
}

#[test]
fn eviction_removes_summarized_messages() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let c = cfg(dir.path(), |s| {
            s.enabled = false;
            s.evict_summarized = true;
        });
        let e = Engine::open_with_embedder(c, embedder()).unwrap();
        let stored = e.add_batch(&Access::full(), "ev", turns(10)).await.unwrap();
        let made = e.summarize(&Access::full(), "ev").await.unwrap();
        assert_eq!(made.len(), 1);
        assert!(matches!(
            e.get(&Access::full(), &stored[0].id).await,
            Err(memoryd::Error::NotFound { .. })
        ));
        assert!(
            e.recent(&Access::full(), "ev", 10)
                .await
                .unwrap()
                .is_empty()
        );
        let hits = e
            .search(&Access::full(), "ev", SearchRequest::text("pottery", 20))
            .await
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, HitKind::Summary);
        assert_eq!(e.stats().messages, 0);
    });
}

/// A chat endpoint speaking OpenAI's protocol, on loopback.
async fn fake_llm(fail: bool) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| async move {
            if fail {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "boom"})));
            }
            let transcript = body["messages"][1]["content"].as_str().unwrap_or_default();
            let n = transcript.lines().count();
            assert_eq!(body["messages"][0]["role"], "system");
            let text = format!("Caroline and Melanie talked about hobbies over {n} turns.");
            (axum::http::StatusCode::OK, Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/v1"), task)
}

#[test]
fn chat_endpoint_summaries_and_fallback() {
    rt().block_on(async {
        for fail in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (url, server) = fake_llm(fail).await;
            let c = cfg(dir.path(), |s| {
                s.enabled = false;
                s.llm = Some(LlmConfig {
                    base_url: url,
                    model: "tiny".into(),
                    api_key: Some("secret".into()),
                    timeout: Duration::from_secs(5),
                });
            });
            assert!(
                !format!("{c:?}").contains("secret"),
                "api key must be redacted"
            );
            let e = Engine::open_with_embedder(c, embedder()).unwrap();
            e.add_batch(&Access::full(), "llm", turns(6)).await.unwrap();
            let made = e.summarize(&Access::full(), "llm").await.unwrap();
            assert_eq!(made.len(), 1);
            if fail {
                assert_eq!(made[0].summarizer, "extractive-mmr/1");
                assert!(made[0].text.contains("Caroline: "));
            } else {
                assert_eq!(made[0].summarizer, "openai-chat:tiny/1");
                assert!(
                    made[0]
                        .text
                        .ends_with("Caroline and Melanie talked about hobbies over 6 turns."),
                    "{}",
                    made[0].text
                );
            }
            server.abort();
        }
    });
}

#[test]
fn summaries_cover_each_message_once_under_concurrent_adds() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let e = Engine::open_with_embedder(cfg(dir.path(), |s| s.every = 7), embedder()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..4 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for chunk in turns(30).chunks(5) {
                    let mut chunk = chunk.to_vec();
                    for m in &mut chunk {
                        m.content = format!("task {t} says: {}", m.content);
                    }
                    ids.extend(
                        e.add_batch(&Access::full(), "busy", chunk)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|m| m.id),
                    );
                    let _ = e.summarize(&Access::full(), "busy").await.unwrap();
                }
                ids
            }));
        }
        let mut all = HashSet::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        e.summarize(&Access::full(), "busy").await.unwrap();
        let mut seen = HashSet::new();
        for s in e.summaries(&Access::full(), "busy").await.unwrap() {
            for id in s.source_ids {
                assert!(seen.insert(id), "a message was summarized twice");
            }
        }
        assert_eq!(seen, all);
    });
}
