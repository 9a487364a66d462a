//! An agent turn as agent developers write it, against a running `memoryd serve`:
//! 1. search memoryd for context relevant to the user's message,
//! 2. build the prompt from it (your LLM call goes here),
//! 3. store the new exchange so later turns can find it.
//!
//! Run `cargo run --release -- serve` in one terminal, then
//! `cargo run --release --example agent_loop` in another
//! (`MEMORYD_URL` overrides `http://127.0.0.1:7070`).

use serde_json::{Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("MEMORYD_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let http = reqwest::blocking::Client::new();
    let ns = "user-ana";

    let turns = [
        "I just adopted a greyhound called Pixel!",
        "Any tips for my trip to Lisbon in May?",
        "What should I pack for my dog when we travel?",
    ];
    for user_message in turns {
        // 1. Context: the top-3 most similar past messages.
        let found: Value = http
            .post(format!("{base}/v1/namespaces/{ns}/search"))
            .json(&json!({"query": user_message, "k": 3}))
            .send()?
            .error_for_status()?
            .json()?;
        let context: Vec<String> = found["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                format!(
                    "- ({:.2}) {}",
                    h["score"].as_f64().unwrap_or(0.0),
                    h["message"]["content"].as_str().unwrap_or("")
                )
            })
            .collect();

        // 2. The prompt your model would see.
        let prompt = format!(
            "Relevant memory:\n{}\n\nUser: {user_message}\nAssistant:",
            context.join("\n")
        );
        println!("{prompt}\n");
        let agent_response = format!("(your LLM's answer to: {user_message})");

        // 3. Remember the exchange (durable when 201 comes back).
        http.post(format!("{base}/v1/namespaces/{ns}/interactions"))
            .json(&json!({
                "agent_id": "travel-helper",
                "user_name": "Ana",
                "user_message": user_message,
                "agent_response": agent_response,
            }))
            .send()?
            .error_for_status()?;
    }
    Ok(())
}
