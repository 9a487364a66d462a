//! The engine linked directly: store a short conversation, then ask for context.
//!
//! Run: `cargo run --release --example library`

use memoryd::{Access, Engine, EngineConfig, Filter, NewMessage, Role, SearchRequest};

#[tokio::main]
async fn main() -> memoryd::Result<()> {
    let dir = tempfile::tempdir()?;
    // Blocking (loads the model): do it before serving requests.
    let engine = Engine::open(EngineConfig::with_data_dir(dir.path()))?;

    let turns = [
        (
            "Caroline",
            "I went to a LGBTQ support group yesterday and it was so powerful.",
        ),
        (
            "Melanie",
            "I'm so proud of you! I painted a lake at sunrise last week.",
        ),
        (
            "Caroline",
            "I'm looking into adoption agencies, I want to give a kid a loving home.",
        ),
        (
            "Melanie",
            "We took the kids camping in the mountains, they loved it.",
        ),
    ];
    let batch = turns
        .iter()
        .map(|(who, text)| NewMessage::new(Role::User, *text).with_name(*who))
        .collect();
    engine.add_batch(&Access::full(), "conv-26", batch).await?; // durable when it returns

    let results = engine
        .search(
            &Access::full(),
            "conv-26",
            SearchRequest::text("What is Caroline planning for her family?", 2),
        )
        .await?;
    println!("top-2 in {:.2} ms:", results.took_ms);
    for hit in &results.hits {
        // Hits are messages or (after 50 messages) summaries; `text()` covers both.
        println!("  {:.3}  {:?}: {}", hit.score, hit.kind, hit.text());
    }

    let only_melanie = Filter {
        name: Some("Melanie".into()),
        ..Filter::default()
    };
    let results = engine
        .search(
            &Access::full(),
            "conv-26",
            SearchRequest::text("outdoor trips", 1).with_filter(only_melanie),
        )
        .await?;
    println!("Melanie, outdoors: {}", results.hits[0].text());

    for m in engine.recent(&Access::full(), "conv-26", 2).await? {
        println!("recent: {}", m.content);
    }
    Ok(())
}
