//! The MCP front end: rmcp's own client over streamable HTTP against the axum
//! app in process (tools, errors, access, resources), and the official Python
//! SDK (`mcp` on PyPI, a client no one here wrote) against the real binary over
//! both transports: streamable HTTP (both of its connection modes) and stdio
//! (on a data directory, and as a proxy to a running server with a token).

use std::process::Command;

use memoryd::server::{self, AppState, ServerConfig};
use memoryd::{Access, NamespacePattern, NewKey, Redaction, Scope};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::common::{open, repo_path, rt};
use crate::server::Server;

/// The venv with the official Python clients (`scripts/py-clients.sh`), made
/// once per test binary.
pub fn py_clients() -> std::path::PathBuf {
    static PY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_path("scripts/py-clients.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/py-clients.sh runs");
        assert!(out.status.success(), "scripts/py-clients.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        std::path::PathBuf::from(stdout.lines().last().expect("a python path").trim())
    })
    .clone()
}

/// Runs a client script; returns its JSON summary (panics with its output on failure).
pub fn run_py(script: &str, args: &[&str]) -> Value {
    let out = Command::new(py_clients())
        .arg(repo_path(script))
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{script}: no JSON summary ({e}):\n{stdout}\n{stderr}"))
}

fn text_of(r: &rmcp::model::CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn rmcp_client_over_streamable_http_sees_tools_errors_access_and_resources() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    rt().block_on(async {
        let full = Access::full();
        let key = |ns: &str, scopes: Vec<Scope>| {
            let e = e.clone();
            let ns = ns.to_owned();
            async move {
                e.create_key(
                    &Access::full(),
                    NewKey {
                        name: "mcp".into(),
                        namespaces: vec![ns],
                        scopes,
                        agent_id: None,
                        expires_at: None,
                        redact: Redaction::default(),
                    },
                )
                .await
                .unwrap()
                .token
            }
        };
        let writer = key("proj-*", vec![Scope::Read, Scope::Write]).await;
        let reader = key("proj-a", vec![Scope::Read]).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = server::router(
            AppState::ready(e.clone()),
            &ServerConfig {
                anonymous: false,
                ..ServerConfig::default()
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let url = format!("http://{addr}/mcp");
        let connect = |token: Option<String>| {
            let mut c = StreamableHttpClientTransportConfig::with_uri(url.clone());
            if let Some(t) = token {
                c = c.auth_header(t);
            }
            ().serve(StreamableHttpClientTransport::from_config(c))
        };
        // No token once keys exist: refused before any tool runs.
        assert!(connect(None).await.is_err(), "an unauthenticated client connected");
        let client = connect(Some(writer.clone())).await.unwrap();
        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        for want in [
            "remember", "recall", "recent", "summarize", "summaries", "forget", "context_get",
            "context_set", "context_list", "context_history", "board_post", "board_show",
            "find_agents", "send_to_agent", "read_inbox", "ack_inbox",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let recall = tools.iter().find(|t| t.name == "recall").unwrap();
        assert_eq!(recall.input_schema["required"], json!(["namespace", "query"]));
        assert!(recall.description.as_deref().unwrap_or("").contains("top-k"));

        let call = |name: &'static str, a: Value| {
            let mut p = CallToolRequestParams::new(name);
            p.arguments = Some(args(a));
            p
        };
        let r = client
            .call_tool(call("remember", json!({"namespace": "proj-a", "messages": [
                {"role": "user", "content": "The staging database lives on port 5433", "name": "ana"},
                {"role": "assistant", "content": "Noted: staging DB on 5433."}
            ]})))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
        assert_eq!(r.structured_content.as_ref().unwrap()["ids"].as_array().unwrap().len(), 2);
        let r = client
            .call_tool(call("recall", json!({"namespace": "proj-a", "query": "which port is the staging database on", "k": 1})))
            .await
            .unwrap();
        assert!(text_of(&r).contains("5433"), "{}", text_of(&r));
        assert_eq!(r.structured_content.unwrap()["hits"].as_array().unwrap().len(), 1);
        // Shared context with compare-and-set.
        let r = client
            .call_tool(call("context_set", json!({"namespace": "proj-a", "key": "plan", "value": {"step": 1}, "expected_version": 0})))
            .await
            .unwrap();
        assert_eq!(r.structured_content.unwrap()["version"], json!(1));
        let r = client
            .call_tool(call("context_set", json!({"namespace": "proj-a", "key": "plan", "value": {"step": 2}, "expected_version": 0})))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert!(text_of(&r).contains("precondition_failed"), "{}", text_of(&r));
        // Bad arguments and engine errors are tool errors the model can read.
        for (bad, says) in [
            (json!({"namespace": "proj-a"}), "query"),
            (json!({"namespace": "proj-a", "query": "x", "k": 0}), "k"),
            (json!({"namespace": "proj-a", "query": "x", "mode": "fuzzy"}), "mode"),
            (json!({"namespace": "no spaces", "query": "x"}), "namespace"),
        ] {
            let r = client.call_tool(call("recall", bad.clone())).await.unwrap();
            assert_eq!(r.is_error, Some(true), "{bad}");
            assert!(text_of(&r).contains(says), "{bad}: {}", text_of(&r));
        }
        // The key's access holds: outside its patterns, and without `delete`.
        let r = client
            .call_tool(call("remember", json!({"namespace": "other", "messages": [{"content": "x"}]})))
            .await
            .unwrap();
        assert!(text_of(&r).contains("forbidden"), "{}", text_of(&r));
        let r = client.call_tool(call("forget", json!({"namespace": "proj-a"}))).await.unwrap();
        assert!(text_of(&r).contains("forbidden"), "{}", text_of(&r));
        assert_eq!(e.recent(&full, "proj-a", 10).await.unwrap().len(), 2, "nothing was deleted");
        // Resources: one per namespace the key can read.
        let res = client.list_all_resources().await.unwrap();
        let uris: Vec<&str> = res.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(uris, ["memoryd://namespaces/proj-a"]);
        let read = client
            .read_resource(ReadResourceRequestParams::new("memoryd://namespaces/proj-a"))
            .await
            .unwrap();
        let body = serde_json::to_string(&read).unwrap();
        assert!(body.contains("5433"), "{body}");
        client.cancel().await.unwrap();
        // A read-only key cannot remember.
        let ro = connect(Some(reader)).await.unwrap();
        let r = ro
            .call_tool(call("remember", json!({"namespace": "proj-a", "messages": [{"content": "x"}]})))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert!(text_of(&r).contains("write"), "{}", text_of(&r));
        ro.cancel().await.unwrap();
        let _ = NamespacePattern::parse("*");
    });
}

/// The official Python SDK over streamable HTTP (its default connection,
/// `server/discover` at 2026-07-28, and the `initialize` handshake) and over
/// stdio (on a data directory, and proxying to the server with a key).
#[test]
fn the_official_python_mcp_client_works_over_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = format!("{}/mcp", server.base);
    for mode in ["auto", "legacy"] {
        let ns = format!("py-http-{mode}");
        let s = run_py(
            "tests/py/mcp_client.py",
            &["--http", &url, "--mode", mode, "--namespace", &ns],
        );
        assert_eq!(s["ok"], json!(true), "{s}");
        let want = if mode == "auto" {
            "discover"
        } else {
            "initialize"
        };
        assert_eq!(s["connect"], json!(want), "{s}");
        if mode == "auto" {
            // subscriptions/listen: a write to the namespace arrives as an event.
            assert_eq!(s["listen"]["event"], json!("ResourceUpdated"), "{s}");
        }
        for case in s["bad_arguments"].as_array().unwrap() {
            assert_eq!(case["surfaced_as"], json!("tool_result_is_error"), "{s}");
        }
    }
    // stdio on its own data directory.
    let own = tempfile::tempdir().unwrap();
    let bin = crate::server::binary();
    let bin = bin.to_str().unwrap();
    let models = repo_path("models");
    let s = run_py(
        "tests/py/mcp_client.py",
        &[
            "--namespace",
            "py-stdio",
            "--stdio",
            "--",
            bin,
            "mcp",
            "--data-dir",
            own.path().to_str().unwrap(),
            "--models-dir",
            models.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (s["ok"].clone(), s["transport"].clone()),
        (json!(true), json!("stdio")),
        "{s}"
    );
    assert_eq!(s["listen"]["event"], json!("ResourceUpdated"), "{s}");
    // stdio proxying to the running server, with a key.
    let out = Command::new(bin)
        .args([
            "keys",
            "create",
            "--server",
            &server.base,
            "--name",
            "py",
            "--namespaces",
            "py-*",
            "--scopes",
            "read,write",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("the key is printed as JSON");
    let token = created["token"]
        .as_str()
        .expect("with its token")
        .to_owned();
    let s = run_py(
        "tests/py/mcp_client.py",
        &[
            "--namespace",
            "py-proxy",
            "--stdio",
            "--",
            bin,
            "mcp",
            "--server",
            &server.base,
            "--token",
            &token,
        ],
    );
    assert_eq!(s["ok"], json!(true), "{s}");
    // What the proxy stored is in the server's store.
    let (status, body) = server.get("/v1/namespaces");
    assert_eq!(status, 401, "keys exist now: {body}");
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/namespaces/py-proxy/search", server.base))
        .bearer_auth(&token)
        .json(&json!({"query": "deploy key rotation", "k": 1}))
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert!(
        v["hits"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Tuesday"),
        "{v}"
    );
}
