//! The A2A front end: the official Python SDK (`a2a-sdk` on PyPI) as the
//! client against the real binary (card resolution, SendMessage storing,
//! recall returning it, GetTask, ListTasks, streaming, errors), then the
//! JSON-RPC edges by hand: versions, malformed requests, access, and tasks
//! surviving a kill -9.

use serde_json::{Value, json};

use crate::mcp::run_py;
use crate::server::Server;

fn rpc(base: &str, token: Option<&str>, version: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{base}/a2a"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(v) = version {
        r = r.header("A2A-Version", v);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

fn send(base: &str, token: Option<&str>, ctx: &str, parts: Value) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {"message": {
        "messageId": uuid::Uuid::now_v7().to_string(), "contextId": ctx, "role": "ROLE_USER", "parts": parts,
        "metadata": {"sender": {"name": "tester"}}
    }}});
    rpc(base, token, Some("1.0"), &body.to_string())
}

fn key(base: &str, admin: Option<&str>, namespaces: &str, scopes: &str) -> String {
    let mut cmd = std::process::Command::new(crate::server::binary());
    cmd.args([
        "keys",
        "create",
        "--server",
        base,
        "--name",
        "a2a",
        "--namespaces",
        namespaces,
        "--scopes",
        scopes,
    ]);
    if let Some(t) = admin {
        cmd.args(["--token", t]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

#[test]
fn the_official_python_a2a_client_stores_recalls_and_gets_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let s = run_py("tests/py/a2a_client.py", &["--url", &server.base]);
    assert_eq!(s["ok"], json!(true), "{s}");
    assert_eq!(s["sdk_transport"], json!("JsonRpcTransport"), "{s}");
    assert_eq!(
        s["errors"]["get_task_unknown"]["code"],
        json!(-32001),
        "{s}"
    );
    assert_eq!(
        s["errors"]["cancel_completed"]["code"],
        json!(-32002),
        "{s}"
    );
    assert_eq!(
        s["streaming"]["events"],
        json!(["task", "artifact_update", "status_update"]),
        "{s}"
    );
    // What the SDK sent is memory: searchable over the ordinary API.
    let (status, hits) = server.post(
        "/v1/namespaces/py-a2a/search",
        json!({"query": "invoice due date", "k": 1}),
    );
    assert_eq!(status, 200);
    assert!(
        hits["hits"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("5th"),
        "{hits}"
    );
    assert_eq!(hits["hits"][0]["message"]["name"], json!("py-a2a-client"));
    // Keys: with one, the card names the bearer scheme and the SDK sends it.
    let token = key(&server.base, None, "py-*", "read,write");
    let (_, card) = server.get("/.well-known/agent-card.json");
    assert!(card["securitySchemes"]["bearer"].is_object(), "{card}");
    let s = run_py(
        "tests/py/a2a_client.py",
        &["--url", &server.base, "--token", &token],
    );
    assert_eq!(s["ok"], json!(true), "{s}");
}

#[test]
fn json_rpc_edges_versions_access_and_durable_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let base = server.base.clone();
    let (_, card) = server.get("/.well-known/agent-card.json");
    assert_eq!(
        card["supportedInterfaces"][0]["url"],
        json!(format!("{base}/a2a"))
    );
    memoryd::core::agents::validate_card(&card).unwrap();
    let get = r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"x/y"}}"#;
    // No A2A-Version: a 0.3 client, told which header to send.
    let (status, v) = rpc(&base, None, None, get);
    assert_eq!(status, 200);
    assert_eq!(v["error"]["code"], json!(-32009), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("A2A-Version: 1.0")
    );
    for (body, code) in [
        ("{not json", -32700),
        ("[1, 2]", -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#, -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}"#,
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"nope":1}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{"pageSize":0}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[]}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","contextId":"bad name!","role":"ROLE_USER","parts":[{"text":"x"}]}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"url":"https://example.org/a.pdf"}]}}}"#,
            -32005,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"data":{"skill":"dance"}}]}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"CreateTaskPushNotificationConfig","params":{}}"#,
            -32003,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}"#,
            -32004,
        ),
        (get, -32001),
    ] {
        let (status, v) = rpc(&base, None, Some("1.0"), body);
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (200, json!(code)),
            "{body}: {v}"
        );
    }
    // Remember, recall, share context; recall finds what was remembered.
    let (_, v) = send(
        &base,
        None,
        "team",
        json!([{"text": "The release train leaves every second Thursday"}]),
    );
    let remembered = v["result"]["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["result"]["task"]["status"]["state"],
        json!("TASK_STATE_COMPLETED")
    );
    let (_, v) = send(
        &base,
        None,
        "team",
        json!([{"data": {"skill": "recall", "query": "when does the release train leave", "k": 2.0}}]),
    );
    let text = v["result"]["task"]["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("second Thursday"), "{v}");
    let (_, v) = send(
        &base,
        None,
        "team",
        json!([{"data": {"skill": "share-context", "key": "plan", "value": {"owner": "ana"}, "expected_version": 0}}]),
    );
    assert_eq!(
        v["result"]["task"]["artifacts"][0]["parts"][1]["data"]["version"],
        json!(1),
        "{v}"
    );
    let (_, v) = send(
        &base,
        None,
        "team",
        json!([{"data": {"skill": "share-context", "key": "plan", "value": {"owner": "bo"}, "expected_version": 0}}]),
    );
    assert_eq!(
        v["error"]["code"],
        json!(-32602),
        "a stale compare-and-set is refused: {v}"
    );
    // Tasks are durable: after kill -9 GetTask and ListTasks still find them.
    server.signal("-9");
    let server = Server::start(dir.path());
    let base = server.base.clone();
    let (_, v) = rpc(
        &base,
        None,
        Some("1.0"),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": remembered}})
            .to_string(),
    );
    assert_eq!(v["result"]["id"], json!(remembered), "{v}");
    assert_eq!(
        v["result"]["history"][0]["parts"][0]["text"],
        json!("The release train leaves every second Thursday")
    );
    let (_, v) = rpc(
        &base,
        None,
        Some("1.0"),
        r#"{"jsonrpc":"2.0","id":3,"method":"ListTasks","params":{"contextId":"team","pageSize":2}}"#,
    );
    assert_eq!(v["result"]["totalSize"], json!(3), "{v}");
    assert_eq!(v["result"]["tasks"].as_array().unwrap().len(), 2);
    let token = v["result"]["nextPageToken"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    let (_, v) = rpc(&base, None, Some("1.0"), &json!({"jsonrpc": "2.0", "id": 4, "method": "ListTasks", "params": {"contextId": "team", "pageSize": 2, "pageToken": token}}).to_string());
    assert_eq!(v["result"]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["result"]["tasks"][0]["id"],
        json!(remembered),
        "oldest last: {v}"
    );
    assert_eq!(v["result"]["nextPageToken"], json!(""));
    // With keys: no token is 401; another namespace's task is not found; a
    // read-only key can recall (answered, not kept) but not remember.
    let admin = key(&base, None, "*", "admin");
    let reader = key(&base, Some(&admin), "team", "read");
    let other = key(&base, Some(&admin), "elsewhere", "read,write");
    let (status, _) = rpc(&base, None, Some("1.0"), get);
    assert_eq!(status, 401);
    let (_, v) = rpc(
        &base,
        Some(&other),
        Some("1.0"),
        &json!({"jsonrpc": "2.0", "id": 5, "method": "GetTask", "params": {"id": remembered}})
            .to_string(),
    );
    assert_eq!(v["error"]["code"], json!(-32001), "{v}");
    let (_, v) = send(
        &base,
        Some(&reader),
        "team",
        json!([{"data": {"skill": "recall", "query": "release train"}}]),
    );
    assert!(
        v["result"]["task"]["artifacts"][0]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Thursday"),
        "{v}"
    );
    let (status, v) = send(
        &base,
        Some(&reader),
        "team",
        json!([{"text": "sneaky write"}]),
    );
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (403, json!(-32600)),
        "{v}"
    );
    let (_, v) = rpc(
        &base,
        Some(&reader),
        Some("1.0"),
        r#"{"jsonrpc":"2.0","id":3,"method":"ListTasks","params":{"contextId":"team"}}"#,
    );
    assert_eq!(
        v["result"]["totalSize"],
        json!(3),
        "the read-only recall was not kept: {v}"
    );
}
