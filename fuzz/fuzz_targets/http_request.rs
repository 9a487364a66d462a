//! Request decoding: arbitrary method, route, content type and body bytes sent to
//! the real router over a real engine (a tiny deterministic embedder stands in for
//! the model). Every answer must be a well-formed response that is not a server
//! error, and error bodies must carry a stable code.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use memoryd::server::{self, AppState, ServerConfig};
use memoryd::{Embedder, Embeddings, Engine, EngineConfig, ModelInfo};
use tower::ServiceExt;

/// 16-dimensional vectors from byte hashes: cheap, deterministic, never zero.
struct HashEmbedder(ModelInfo);

impl Embedder for HashEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn embed(&self, texts: &[&str]) -> memoryd::Result<Embeddings> {
        let dim = self.0.dim;
        let mut data = Vec::with_capacity(texts.len() * dim);
        for t in texts {
            let mut row = vec![1e-3f32; dim];
            for (i, b) in t.bytes().enumerate() {
                row[(i * 7 + usize::from(b)) % dim] += f32::from(b) / 255.0;
            }
            memoryd::embed::l2_normalize(&mut row);
            data.extend(row);
        }
        Ok(Embeddings {
            data,
            dim,
            tokens: texts.iter().map(|t| t.len().min(256)).collect(),
        })
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        // tmpfs when there is one: every acknowledged write is fsynced.
        let dir = tempfile::Builder::new()
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" })
            .unwrap();
        let mut config = EngineConfig::with_data_dir(dir.path());
        config.summarize.enabled = false;
        config.limits.max_messages_per_request = 64;
        let embedder = Arc::new(HashEmbedder(ModelInfo {
            id: "fuzz-hash".into(),
            dim: 16,
            max_seq_length: 256,
            weights_sha256: "0".repeat(64),
        }));
        let engine = Engine::open_with_embedder(config, embedder).unwrap();
        let server_config = ServerConfig { max_body_bytes: 64 * 1024, ..ServerConfig::default() };
        Harness {
            rt: tokio::runtime::Builder::new_current_thread().build().unwrap(),
            app: server::router(AppState::ready(engine), &server_config),
            _dir: dir,
        }
    })
}

const ROUTES: [(&str, &str); 12] = [
    ("POST", "/v1/namespaces/{}/messages"),
    ("GET", "/v1/namespaces/{}/messages"),
    ("POST", "/v1/namespaces/{}/interactions"),
    ("POST", "/v1/namespaces/{}/search"),
    ("GET", "/v1/namespaces/{}/recent"),
    ("POST", "/v1/namespaces/{}/summarize"),
    ("GET", "/v1/namespaces/{}/summaries"),
    ("DELETE", "/v1/namespaces/{}"),
    ("GET", "/v1/messages/{}"),
    ("DELETE", "/v1/messages/{}"),
    ("POST", "/v1/embeddings"),
    ("PUT", "/v1/namespaces/{}/search"),
];

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

/// Percent-encodes everything but unreserved characters, so any bytes form a valid URI.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                char::from(*b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let h = harness();
    let (method, route) = ROUTES[usize::from(data[0]) % ROUTES.len()];
    let content_type = CONTENT_TYPES[usize::from(data[1]) % CONTENT_TYPES.len()];
    // The path parameter (namespace or id) and the query string come from the input
    // too, up to a separator byte; the rest is the body.
    let rest = &data[2..];
    let (param, rest) = match rest.iter().position(|b| *b == 0xff) {
        Some(i) if i <= 200 => (&rest[..i], &rest[i + 1..]),
        _ => (&b"ns"[..], rest),
    };
    let (query, body) = match rest.iter().position(|b| *b == 0xfe) {
        Some(i) if i <= 64 => (Some(&rest[..i]), &rest[i + 1..]),
        _ => (None, rest),
    };
    let mut uri = route.replace("{}", &encode(param));
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(&String::from_utf8_lossy(q).replace(|c: char| !c.is_ascii_graphic() || c == '#', "_"));
    }
    let mut req = Request::builder().method(method).uri(&uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let (status, bytes) = h.rt.block_on(async {
        let resp = h.app.clone().oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    });
    assert!(!status.is_server_error(), "{method} {uri} -> {status}: {}", String::from_utf8_lossy(&bytes));
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("error bodies are JSON");
        assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    }
});
