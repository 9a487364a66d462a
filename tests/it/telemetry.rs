//! Traces reach an OTLP collector: the real `memoryd serve --otlp-endpoint`
//! exports to an in-process HTTP receiver that records what it is sent (OTLP
//! over HTTP/protobuf: span names, attribute keys and string values are plain
//! UTF-8 inside the protobuf bytes, so the test reads them without a decoder).
//! Also drives `memoryd keys create --server` (the first key over loopback).

use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::server::{Server, binary};

/// Requests received: `(path, body)`.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP receiver: answers every request 200 and keeps
/// `(path, body)`.
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head_end, len) = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    break (Some(i + 4), len);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + len {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..start]).into_owned();
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            sink.lock().unwrap().push((path, buf[start..].to_vec()));
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (addr, got)
}

#[test]
fn requests_and_engine_operations_are_exported_as_otlp_spans() {
    let (collector, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--otlp-endpoint", &collector]);
    // The first key, over the loopback server that has none yet.
    let out = Command::new(binary())
        .args([
            "keys",
            "create",
            "--name",
            "tracer",
            "--namespaces",
            "otel-ns",
            "--scopes",
            "read,write",
        ])
        .args(["--agent-id", "agent-7", "--server", &server.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{}/v1/namespaces/otel-ns/messages", server.base))
        .bearer_auth(&token)
        .json(&json!({"messages": [{"role": "user", "content": "the lighthouse keeper"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{}/v1/namespaces/otel-ns/search", server.base))
        .bearer_auth(&token)
        .json(&json!({"query": "lighthouse", "k": 3}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Without the token: refused (and the first key closed the open server).
    let r = client
        .get(format!("{}/v1/namespaces/otel-ns/recent", server.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // SIGTERM: graceful shutdown flushes the last batch.
    server.signal("-TERM");
    let got = got.lock().unwrap();
    assert!(!got.is_empty(), "nothing was exported");
    assert!(
        got.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
    let has = |s: &str| all.windows(s.len()).any(|w| w == s.as_bytes());
    for want in [
        "memoryd",                           // service.name
        "POST /v1/namespaces/{ns}/messages", // request span
        "POST /v1/namespaces/{ns}/search",
        "engine.add_batch", // engine spans
        "engine.search",
        "otel-ns",       // namespace attribute
        key_id.as_str(), // key_id attribute
        "agent-7",       // agent_id attribute
        "http.response.status_code",
    ] {
        assert!(has(want), "no {want:?} in the exported spans");
    }
    assert!(!has(&token), "the token was exported");
}
