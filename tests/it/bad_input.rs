//! The bad-input catalogue: every malformed request gets its documented status
//! and stable error code, stores nothing, and the server keeps serving.
//!
//! Unknown JSON fields are rejected (422 `invalid_value`), not ignored: a typo
//! such as `"metdata"` would otherwise drop data silently.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::rt;
use crate::http::{Api, api};

/// One bad request and the answer it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    uri: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    uri: impl Into<String>,
    body: Value,
    status: u16,
    code: &'static str,
) -> Case {
    let body = serde_json::to_vec(&body).unwrap();
    raw(
        name,
        method,
        uri,
        &body,
        Some("application/json"),
        status,
        code,
    )
}

fn raw(
    name: &'static str,
    method: &'static str,
    uri: impl Into<String>,
    body: &[u8],
    content_type: Option<&'static str>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        uri: uri.into(),
        body: body.to_vec(),
        content_type,
        status,
        code,
    }
}

const ADD: &str = "/v1/namespaces/n/messages";
const SEARCH: &str = "/v1/namespaces/n/search";

fn one(message: Value) -> Value {
    json!({"messages": [message]})
}

fn text(content: impl Into<Value>) -> Value {
    one(json!({"role": "user", "content": content.into()}))
}

/// `{"a": {"a": ... 1 ...}}`, `depth` objects deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn catalogue() -> Vec<Case> {
    let deep_metadata = |depth: usize| {
        format!(
            r#"{{"messages":[{{"role":"user","content":"x","metadata":{}}}]}}"#,
            nested(depth)
        )
        .into_bytes()
    };
    let ten_thousand: Vec<Value> = (0..10_000)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    vec![
        // Malformed bodies.
        raw(
            "truncated JSON",
            "POST",
            ADD,
            br#"{"messages": ["#,
            Some("application/json"),
            400,
            "malformed_json",
        ),
        raw(
            "not JSON",
            "POST",
            ADD,
            b"hello",
            Some("application/json"),
            400,
            "malformed_json",
        ),
        raw(
            "empty body",
            "POST",
            ADD,
            b"",
            Some("application/json"),
            400,
            "malformed_json",
        ),
        raw(
            "trailing garbage",
            "POST",
            ADD,
            br#"{"messages":[{"role":"user","content":"x"}]} x"#,
            Some("application/json"),
            400,
            "malformed_json",
        ),
        raw(
            "invalid UTF-8",
            "POST",
            ADD,
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
            Some("application/json"),
            400,
            "malformed_json",
        ),
        raw(
            "lone surrogate escape",
            "POST",
            ADD,
            br#"{"messages":[{"role":"user","content":"\ud800"}]}"#,
            Some("application/json"),
            400,
            "malformed_json",
        ),
        // Wrong types.
        case(
            "messages is a string",
            "POST",
            ADD,
            json!({"messages": "hi"}),
            422,
            "invalid_value",
        ),
        case(
            "content is a number",
            "POST",
            ADD,
            text(42),
            422,
            "invalid_value",
        ),
        case(
            "unknown role",
            "POST",
            ADD,
            one(json!({"role": "wizard", "content": "x"})),
            422,
            "invalid_value",
        ),
        case(
            "metadata is an array",
            "POST",
            ADD,
            one(json!({"role": "user", "content": "x", "metadata": [1]})),
            422,
            "invalid_value",
        ),
        // Missing and unknown fields.
        case(
            "no messages field",
            "POST",
            ADD,
            json!({}),
            422,
            "invalid_value",
        ),
        case(
            "message without content",
            "POST",
            ADD,
            one(json!({"role": "user"})),
            422,
            "invalid_value",
        ),
        case(
            "message without role",
            "POST",
            ADD,
            one(json!({"content": "x"})),
            422,
            "invalid_value",
        ),
        case(
            "unknown top-level field",
            "POST",
            ADD,
            json!({"messages": [{"role": "user", "content": "x"}], "extra": 1}),
            422,
            "invalid_value",
        ),
        case(
            "unknown message field",
            "POST",
            ADD,
            one(json!({"role": "user", "content": "x", "metdata": {}})),
            422,
            "invalid_value",
        ),
        case(
            "no messages",
            "POST",
            ADD,
            json!({"messages": []}),
            422,
            "invalid_value",
        ),
        // Content.
        case("empty content", "POST", ADD, text(""), 422, "invalid_value"),
        case(
            "whitespace-only content",
            "POST",
            ADD,
            text(" \n\t "),
            422,
            "invalid_value",
        ),
        case(
            "content over 64 KiB",
            "POST",
            ADD,
            text("x".repeat(64 * 1024 + 1)),
            413,
            "too_large",
        ),
        case(
            "NUL in content",
            "POST",
            ADD,
            text("a\u{0}b"),
            422,
            "invalid_value",
        ),
        case(
            "control character in name",
            "POST",
            ADD,
            one(json!({"role": "user", "name": "Ana\u{7}", "content": "x"})),
            422,
            "invalid_value",
        ),
        case(
            "empty name",
            "POST",
            ADD,
            one(json!({"role": "user", "name": "", "content": "x"})),
            422,
            "invalid_value",
        ),
        // Size limits.
        raw(
            "body over 1 MiB",
            "POST",
            ADD,
            serde_json::to_vec(&text("x".repeat(1024 * 1024)))
                .unwrap()
                .as_slice(),
            Some("application/json"),
            413,
            "body_too_large",
        ),
        case(
            "10,000 messages in one request",
            "POST",
            ADD,
            json!({"messages": ten_thousand}),
            413,
            "too_large",
        ),
        raw(
            "metadata nested 1,000 deep",
            "POST",
            ADD,
            &deep_metadata(1_000),
            Some("application/json"),
            422,
            "invalid_value",
        ),
        raw(
            "metadata nested 40 deep",
            "POST",
            ADD,
            &deep_metadata(40),
            Some("application/json"),
            422,
            "invalid_value",
        ),
        case(
            "metadata over 16 KiB",
            "POST",
            ADD,
            one(
                json!({"role": "user", "content": "x", "metadata": {"blob": "y".repeat(17 * 1024)}}),
            ),
            413,
            "too_large",
        ),
        // Timestamps.
        case(
            "timestamp in words",
            "POST",
            ADD,
            one(json!({"role": "user", "content": "x", "timestamp": "yesterday"})),
            422,
            "invalid_value",
        ),
        case(
            "timestamp month 13",
            "POST",
            ADD,
            one(json!({"role": "user", "content": "x", "timestamp": "2024-13-01T00:00:00Z"})),
            422,
            "invalid_value",
        ),
        case(
            "timestamp without zone",
            "POST",
            ADD,
            one(json!({"role": "user", "content": "x", "timestamp": "2024-01-01T00:00:00"})),
            422,
            "invalid_value",
        ),
        case(
            "filter date not RFC 3339",
            "POST",
            SEARCH,
            json!({"query": "x", "filter": {"from": "01/02/2024"}}),
            422,
            "invalid_value",
        ),
        case(
            "inverted time range",
            "POST",
            SEARCH,
            json!({"query": "x", "filter": {"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}}),
            422,
            "invalid_value",
        ),
        // k.
        case(
            "k = 0",
            "POST",
            SEARCH,
            json!({"query": "x", "k": 0}),
            422,
            "invalid_value",
        ),
        case(
            "k negative",
            "POST",
            SEARCH,
            json!({"query": "x", "k": -1}),
            422,
            "invalid_value",
        ),
        case(
            "k over 1,000",
            "POST",
            SEARCH,
            json!({"query": "x", "k": 1001}),
            422,
            "invalid_value",
        ),
        case(
            "k huge",
            "POST",
            SEARCH,
            json!({"query": "x", "k": u64::MAX}),
            422,
            "invalid_value",
        ),
        raw(
            "k beyond u64",
            "POST",
            SEARCH,
            br#"{"query":"x","k":1e30}"#,
            Some("application/json"),
            422,
            "invalid_value",
        ),
        case(
            "k fractional",
            "POST",
            SEARCH,
            json!({"query": "x", "k": 2.5}),
            422,
            "invalid_value",
        ),
        case(
            "k a string",
            "POST",
            SEARCH,
            json!({"query": "x", "k": "ten"}),
            422,
            "invalid_value",
        ),
        // Search shape.
        case(
            "neither query nor vector",
            "POST",
            SEARCH,
            json!({}),
            422,
            "invalid_value",
        ),
        case(
            "both query and vector",
            "POST",
            SEARCH,
            json!({"query": "x", "vector": [1.0]}),
            422,
            "invalid_value",
        ),
        case(
            "vector of the wrong dimension",
            "POST",
            SEARCH,
            json!({"vector": [1.0, 2.0]}),
            422,
            "invalid_value",
        ),
        case(
            "zero vector",
            "POST",
            SEARCH,
            json!({"vector": vec![0.0; 384]}),
            422,
            "invalid_value",
        ),
        case(
            "unknown mode",
            "POST",
            SEARCH,
            json!({"query": "x", "mode": "fuzzy"}),
            422,
            "invalid_value",
        ),
        case(
            "empty query",
            "POST",
            SEARCH,
            json!({"query": "  "}),
            422,
            "invalid_value",
        ),
        // Namespaces.
        case(
            "namespace with an encoded slash",
            "POST",
            "/v1/namespaces/a%2Fb/messages",
            text("x"),
            422,
            "invalid_namespace",
        ),
        case(
            "namespace ..",
            "POST",
            "/v1/namespaces/../messages",
            text("x"),
            422,
            "invalid_namespace",
        ),
        case(
            "namespace of 200 characters",
            "POST",
            format!("/v1/namespaces/{}/messages", "x".repeat(200)),
            text("x"),
            422,
            "invalid_namespace",
        ),
        case(
            "namespace with a space",
            "POST",
            "/v1/namespaces/a%20b/search",
            json!({"query": "x"}),
            422,
            "invalid_namespace",
        ),
        case(
            "empty namespace",
            "POST",
            "/v1/namespaces//messages",
            text("x"),
            422,
            "invalid_namespace",
        ),
        // Ids.
        raw(
            "unknown id",
            "GET",
            "/v1/messages/01a1fea3-7a63-7049-8622-0ac502833d5a",
            b"",
            None,
            404,
            "not_found",
        ),
        raw(
            "malformed id",
            "GET",
            "/v1/messages/nope",
            b"",
            None,
            404,
            "not_found",
        ),
        raw(
            "delete of an unknown id",
            "DELETE",
            "/v1/messages/01a1fea3-7a63-7049-8622-0ac502833d5a",
            b"",
            None,
            404,
            "not_found",
        ),
        // Query strings.
        raw(
            "recent limit 0",
            "GET",
            "/v1/namespaces/n/recent?limit=0",
            b"",
            None,
            422,
            "invalid_value",
        ),
        raw(
            "recent limit not a number",
            "GET",
            "/v1/namespaces/n/recent?limit=abc",
            b"",
            None,
            422,
            "invalid_value",
        ),
        raw(
            "list cursor not a cursor",
            "GET",
            "/v1/namespaces/n/messages?after=zzz",
            b"",
            None,
            422,
            "invalid_value",
        ),
        raw(
            "list limit 0",
            "GET",
            "/v1/namespaces/n/messages?limit=0",
            b"",
            None,
            422,
            "invalid_value",
        ),
        // Other routes.
        case(
            "interaction without a response",
            "POST",
            "/v1/namespaces/n/interactions",
            json!({"user_message": "hi"}),
            422,
            "invalid_value",
        ),
        case(
            "embedding of nothing",
            "POST",
            "/v1/embeddings",
            json!({"input": []}),
            422,
            "invalid_value",
        ),
        // Shared context.
        case(
            "context key starting with a dash",
            "PUT",
            "/v1/namespaces/n/context/-key",
            json!({"value": 1}),
            422,
            "invalid_value",
        ),
        case(
            "context key of 257 characters",
            "PUT",
            format!("/v1/namespaces/n/context/{}", "k".repeat(257)),
            json!({"value": 1}),
            422,
            "invalid_value",
        ),
        case(
            "context key with a space",
            "PUT",
            "/v1/namespaces/n/context/a%20b",
            json!({"value": 1}),
            422,
            "invalid_value",
        ),
        case(
            "context value over 64 KiB",
            "PUT",
            "/v1/namespaces/n/context/big",
            json!({"value": "v".repeat(70_000)}),
            413,
            "too_large",
        ),
        raw(
            "context value nested 40 deep",
            "PUT",
            "/v1/namespaces/n/context/deep",
            format!(r#"{{"value":{}}}"#, nested(40)).as_bytes(),
            Some("application/json"),
            422,
            "invalid_value",
        ),
        case(
            "context without a value",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"agent_id": "a"}),
            422,
            "invalid_value",
        ),
        case(
            "context expected_version not a number",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"value": 1, "expected_version": "three"}),
            422,
            "invalid_value",
        ),
        case(
            "context expected_version negative",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"value": 1, "expected_version": -1}),
            422,
            "invalid_value",
        ),
        case(
            "context compare-and-set against an absent key",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"value": 1, "expected_version": 3}),
            412,
            "precondition_failed",
        ),
        case(
            "context patch compare-and-set against an absent key",
            "PATCH",
            "/v1/namespaces/n/context/k",
            json!({"value": {"a": 1}, "expected_version": 1}),
            412,
            "precondition_failed",
        ),
        case(
            "context ttl_s 0",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"value": 1, "ttl_s": 0}),
            422,
            "invalid_value",
        ),
        case(
            "context expires_at in the past",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"value": 1, "expires_at": "2001-01-01T00:00:00Z"}),
            422,
            "invalid_value",
        ),
        case(
            "context unknown field",
            "PUT",
            "/v1/namespaces/n/context/k",
            json!({"value": 1, "ttl": 5}),
            422,
            "invalid_value",
        ),
        raw(
            "context delete of an absent key",
            "DELETE",
            "/v1/namespaces/n/context/k",
            b"",
            None,
            404,
            "not_found",
        ),
        raw(
            "context history limit 0",
            "GET",
            "/v1/namespaces/n/context/k/history?limit=0",
            b"",
            None,
            422,
            "invalid_value",
        ),
        raw(
            "context list limit over 1000",
            "GET",
            "/v1/namespaces/n/context?limit=5000",
            b"",
            None,
            422,
            "invalid_value",
        ),
        raw(
            "context list of the board's reserved keys",
            "GET",
            "/v1/namespaces/n/context?prefix=~board:",
            b"",
            None,
            422,
            "invalid_value",
        ),
        case(
            "resolve naming a malformed proposal",
            "POST",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a/resolve",
            json!({"proposal_id": "../x"}),
            422,
            "invalid_value",
        ),
        // Namespaces.
        case(
            "namespace with an absent parent",
            "PUT",
            "/v1/namespaces/child",
            json!({"parent": "missing"}),
            404,
            "not_found",
        ),
        case(
            "namespace parent not a name",
            "PUT",
            "/v1/namespaces/child",
            json!({"parent": "a/b"}),
            422,
            "invalid_namespace",
        ),
        // Blackboard.
        case(
            "problem without a title",
            "POST",
            "/v1/namespaces/n/board/problems",
            json!({"body": "b"}),
            422,
            "invalid_value",
        ),
        case(
            "problem with a blank title",
            "POST",
            "/v1/namespaces/n/board/problems",
            json!({"title": "  "}),
            422,
            "invalid_value",
        ),
        case(
            "problem title over 1024 bytes",
            "POST",
            "/v1/namespaces/n/board/problems",
            json!({"title": "t".repeat(1025)}),
            413,
            "too_large",
        ),
        case(
            "problem body with NUL",
            "POST",
            "/v1/namespaces/n/board/problems",
            json!({"title": "t", "body": "a\u{0}b"}),
            422,
            "invalid_value",
        ),
        case(
            "problem unknown field",
            "POST",
            "/v1/namespaces/n/board/problems",
            json!({"title": "t", "priority": 1}),
            422,
            "invalid_value",
        ),
        case(
            "proposal confidence above 1",
            "POST",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a/proposals",
            json!({"body": "x", "confidence": 1.5}),
            422,
            "invalid_value",
        ),
        case(
            "proposal confidence negative",
            "POST",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a/proposals",
            json!({"body": "x", "confidence": -0.1}),
            422,
            "invalid_value",
        ),
        case(
            "proposal without a confidence",
            "POST",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a/proposals",
            json!({"body": "x"}),
            422,
            "invalid_value",
        ),
        case(
            "proposal to an unknown problem",
            "POST",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a/proposals",
            json!({"body": "x", "confidence": 0.5}),
            404,
            "not_found",
        ),
        case(
            "proposal to a malformed problem id",
            "POST",
            "/v1/namespaces/n/board/problems/not-an-id/proposals",
            json!({"body": "x", "confidence": 0.5}),
            404,
            "not_found",
        ),
        case(
            "vote of +2",
            "POST",
            "/v1/namespaces/n/board/proposals/01a1fea3-7a63-7049-8622-0ac502833d5a/votes",
            json!({"agent_id": "a", "value": 2}),
            422,
            "invalid_value",
        ),
        case(
            "vote of 0.5",
            "POST",
            "/v1/namespaces/n/board/proposals/01a1fea3-7a63-7049-8622-0ac502833d5a/votes",
            json!({"agent_id": "a", "value": 0.5}),
            422,
            "invalid_value",
        ),
        case(
            "vote without an agent",
            "POST",
            "/v1/namespaces/n/board/proposals/01a1fea3-7a63-7049-8622-0ac502833d5a/votes",
            json!({"value": 1}),
            422,
            "invalid_value",
        ),
        case(
            "vote on an unknown proposal",
            "POST",
            "/v1/namespaces/n/board/proposals/01a1fea3-7a63-7049-8622-0ac502833d5a/votes",
            json!({"agent_id": "a", "value": 1}),
            404,
            "not_found",
        ),
        case(
            "resolve an unknown problem",
            "POST",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a/resolve",
            json!({"proposal_id": "01a1fea3-7a63-7049-8622-0ac502833d5b"}),
            404,
            "not_found",
        ),
        raw(
            "problems with an unknown status",
            "GET",
            "/v1/namespaces/n/board/problems?status=closed",
            b"",
            None,
            422,
            "invalid_value",
        ),
        raw(
            "unknown problem",
            "GET",
            "/v1/namespaces/n/board/problems/01a1fea3-7a63-7049-8622-0ac502833d5a",
            b"",
            None,
            404,
            "not_found",
        ),
        // Search over kinds and namespaces.
        case(
            "search with an unknown scope",
            "POST",
            SEARCH,
            json!({"query": "q", "scope": "everywhere"}),
            422,
            "invalid_value",
        ),
        case(
            "search with an unknown kind",
            "POST",
            SEARCH,
            json!({"query": "q", "kinds": ["notes"]}),
            422,
            "invalid_value",
        ),
        // Content types and methods.
        raw(
            "text/plain body",
            "POST",
            ADD,
            &serde_json::to_vec(&text("x")).unwrap(),
            Some("text/plain"),
            415,
            "unsupported_media_type",
        ),
        raw(
            "no content type",
            "POST",
            ADD,
            &serde_json::to_vec(&text("x")).unwrap(),
            None,
            415,
            "unsupported_media_type",
        ),
        raw(
            "PUT on search",
            "PUT",
            SEARCH,
            b"",
            None,
            405,
            "method_not_allowed",
        ),
        raw(
            "GET on search",
            "GET",
            SEARCH,
            b"",
            None,
            405,
            "method_not_allowed",
        ),
        raw(
            "DELETE on messages",
            "DELETE",
            ADD,
            b"",
            None,
            405,
            "method_not_allowed",
        ),
        raw(
            "unknown route",
            "GET",
            "/v2/anything",
            b"",
            None,
            404,
            "route_not_found",
        ),
    ]
}

async fn still_serving_and_empty(api: &Api, name: &str) {
    let (s, v) = api.get("/health").await;
    assert_eq!(s, StatusCode::OK, "{name}: {v}");
    assert_eq!(v["messages"], 0, "{name}: something was stored");
    let (_, v) = api.get("/v1/namespaces").await;
    assert_eq!(v, json!({"namespaces": []}), "{name}: a namespace appeared");
}

#[test]
fn every_bad_request_gets_its_code_stores_nothing_and_the_server_keeps_serving() {
    rt().block_on(async {
        let api = api();
        let cases = catalogue();
        assert!(cases.len() >= 30);
        let mut failures = Vec::new();
        for c in &cases {
            let (status, body, _) = api
                .raw(c.method, &c.uri, c.body.clone(), c.content_type)
                .await;
            let code = body["error"]["code"].as_str().unwrap_or_default();
            let message = body["error"]["message"].as_str().unwrap_or_default();
            if status.as_u16() != c.status || code != c.code || message.is_empty() {
                failures.push(format!(
                    "{}: expected {} {}, got {status} {body}",
                    c.name, c.status, c.code
                ));
            }
            still_serving_and_empty(&api, c.name).await;
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        // A good request right after all of them works.
        let (s, v) = api.json("POST", ADD, text("still here")).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (_, v) = api.get("/health").await;
        assert_eq!(v["messages"], 1);
    });
}

/// Text that is unusual but valid is stored exactly: tabs, newlines, emoji,
/// right-to-left scripts, combining marks, and the largest allowed content.
#[test]
fn unusual_but_valid_text_is_stored_verbatim() {
    rt().block_on(async {
        let api = api();
        let texts = [
            "tab\tand\nnew line\r\n".to_string(),
            "emoji 🦀🧠 and ZWJ 👩‍💻".to_string(),
            "שלום עולם مرحبا".to_string(),
            "e\u{301}te\u{301} combining".to_string(),
            "y".repeat(64 * 1024),
            // Control characters other than NUL are real chat data (a public
            // long-term chat-memory benchmark has a turn with U+0002): verbatim.
            "start of text \u{2} in a turn".to_string(),
            "\u{1b}[31mred\u{1b}[0m and a bell \u{7}".to_string(),
        ];
        for t in &texts {
            let (s, v) = api.json("POST", ADD, text(t.as_str())).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let id = v["ids"][0].as_str().unwrap();
            let (_, m) = api.get(&format!("/v1/messages/{id}")).await;
            assert_eq!(m["content"], t.as_str());
        }
    });
}

/// The bodies of GETs of `uris`.
async fn snapshot(api: &Api, uris: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for u in uris {
        out.push(api.get(u).await.1);
    }
    out
}

/// Bad input against existing state: cycles, compare-and-set against a deleted
/// key, a resolution with another problem's proposal, votes and proposals on a
/// resolved problem. Each gets its code and changes nothing.
#[test]
fn bad_input_against_existing_state_changes_nothing() {
    rt().block_on(async {
        let api = api();
        let ok = |got: (StatusCode, Value)| {
            assert!(got.0.is_success(), "{}", got.1);
            got.1
        };
        ok(api.json("PUT", "/v1/namespaces/a", json!({})).await);
        ok(api
            .json("PUT", "/v1/namespaces/b", json!({"parent": "a"}))
            .await);
        ok(api
            .json("PUT", "/v1/namespaces/a/context/k", json!({"value": 1}))
            .await);
        ok(api.delete("/v1/namespaces/a/context/k").await);
        let board = "/v1/namespaces/a/board";
        let p = ok(api
            .json("POST", &format!("{board}/problems"), json!({"title": "p"}))
            .await);
        let q = ok(api
            .json("POST", &format!("{board}/problems"), json!({"title": "q"}))
            .await);
        let (pid, qid) = (p["id"].as_str().unwrap(), q["id"].as_str().unwrap());
        let x = ok(api
            .json(
                "POST",
                &format!("{board}/problems/{pid}/proposals"),
                json!({"body": "x", "confidence": 0.5}),
            )
            .await);
        let xid = x["id"].as_str().unwrap();
        let uris = [
            "/v1/namespaces/a".to_owned(),
            "/v1/namespaces/b".to_owned(),
            "/v1/namespaces/a/context/k/history".to_owned(),
            format!("{board}/problems/{pid}"),
            format!("{board}/problems/{qid}"),
        ];
        let before = snapshot(&api, &uris).await;
        let cases: Vec<(&str, (StatusCode, Value), u16, &str)> = vec![
            (
                "a cycle",
                api.json("PUT", "/v1/namespaces/a", json!({"parent": "b"}))
                    .await,
                409,
                "conflict",
            ),
            (
                "its own parent",
                api.json("PUT", "/v1/namespaces/a", json!({"parent": "a"}))
                    .await,
                409,
                "conflict",
            ),
            (
                "compare-and-set against a deleted key",
                api.json(
                    "PUT",
                    "/v1/namespaces/a/context/k",
                    json!({"value": 2, "expected_version": 2}),
                )
                .await,
                412,
                "precondition_failed",
            ),
            (
                "delete of a deleted key",
                api.delete("/v1/namespaces/a/context/k").await,
                404,
                "not_found",
            ),
            (
                "resolve with another problem's proposal",
                api.json(
                    "POST",
                    &format!("{board}/problems/{qid}/resolve"),
                    json!({"proposal_id": xid}),
                )
                .await,
                422,
                "invalid_value",
            ),
            (
                "vote of -3 on a real proposal",
                api.json(
                    "POST",
                    &format!("{board}/proposals/{xid}/votes"),
                    json!({"agent_id": "v", "value": -3}),
                )
                .await,
                422,
                "invalid_value",
            ),
            (
                "resolve with a stale If-Match version in the body",
                api.json(
                    "POST",
                    &format!("{board}/problems/{pid}/resolve"),
                    json!({"proposal_id": xid, "expected_version": 9}),
                )
                .await,
                412,
                "precondition_failed",
            ),
        ];
        for (name, got, status, code) in cases {
            assert_eq!(got.0.as_u16(), status, "{name}: {}", got.1);
            assert_eq!(got.1["error"]["code"], code, "{name}: {}", got.1);
        }
        assert_eq!(
            snapshot(&api, &uris).await,
            before,
            "a bad request changed something"
        );
        // After a resolution: proposals and votes are refused.
        ok(api
            .json(
                "POST",
                &format!("{board}/problems/{pid}/resolve"),
                json!({"proposal_id": xid}),
            )
            .await);
        let resolved = snapshot(&api, &uris).await;
        let late = api
            .json(
                "POST",
                &format!("{board}/problems/{pid}/proposals"),
                json!({"body": "y", "confidence": 0.1}),
            )
            .await;
        assert_eq!(
            (late.0.as_u16(), late.1["error"]["code"].as_str()),
            (409, Some("conflict"))
        );
        let late = api
            .json(
                "POST",
                &format!("{board}/proposals/{xid}/votes"),
                json!({"agent_id": "v", "value": 1}),
            )
            .await;
        assert_eq!(
            (late.0.as_u16(), late.1["error"]["code"].as_str()),
            (409, Some("conflict"))
        );
        assert_eq!(snapshot(&api, &uris).await, resolved);
    });
}
