//! The HTTP API driven in-process (`tower::ServiceExt::oneshot`, no socket).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use memoryd::server::{self, AppState, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{config, embedder, repo_path, rt};

pub(crate) struct Api {
    pub(crate) app: Router,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) fn api_with(cfg: impl FnOnce(&mut memoryd::EngineConfig), server: ServerConfig) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    cfg(&mut c);
    let engine = memoryd::Engine::open_with_embedder(c, embedder()).unwrap();
    Api {
        app: server::router(AppState::ready(engine), &server),
        _dir: dir,
    }
}

pub(crate) fn api() -> Api {
    api_with(|_| {}, ServerConfig::default())
}

impl Api {
    pub(crate) async fn raw(
        &self,
        method: &str,
        uri: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value, headers)
    }

    pub(crate) async fn json(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .raw(
                method,
                uri,
                serde_json::to_vec(&body).unwrap(),
                Some("application/json"),
            )
            .await;
        (s, v)
    }

    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.raw("GET", uri, Vec::new(), None).await;
        (s, v)
    }

    pub(crate) async fn delete(&self, uri: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.raw("DELETE", uri, Vec::new(), None).await;
        (s, v)
    }
}

#[track_caller]
pub(crate) fn assert_error(got: (StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

#[test]
fn store_search_recent_get_delete_roundtrip() {
    rt().block_on(async {
        let api = api();
        let (s, v) = api.get("/health").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({"status": "ok", "model": "all-MiniLM-L6-v2", "dim": 384, "messages": 0}));

        let (s, v) = api
            .json("POST", "/v1/namespaces/conv-1/messages", json!({"messages": [
                {"role": "user", "name": "Caroline", "content": "I went to an LGBTQ support group yesterday.", "timestamp": "2023-05-08T13:56:00Z", "session_id": "s1", "metadata": {"dia_id": "D1:3"}},
                {"role": "assistant", "name": "Melanie", "content": "We adopted a dog named Luna!", "timestamp": "2023-05-08T13:57:00Z", "agent_id": "a1"}
            ]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let ids: Vec<String> = serde_json::from_value(v["ids"].clone()).unwrap();
        assert_eq!(ids.len(), 2);

        let (s, v) = api.json("POST", "/v1/namespaces/conv-1/search", json!({"query": "What pet does Melanie have?", "k": 1})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["hits"][0]["id"], ids[1].as_str());
        assert_eq!(v["hits"][0]["kind"], "message");
        assert_eq!(v["hits"][0]["message"]["name"], "Melanie");
        assert!(v["hits"][0]["score"].as_f64().unwrap() > 0.3);
        assert!(v["took_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(v["hits"].as_array().unwrap().len(), 1);

        let (_, v) = api
            .json("POST", "/v1/namespaces/conv-1/search", json!({"query": "pet", "filter": {"metadata": {"dia_id": "D1:3"}, "from": "2023-05-08T00:00:00Z", "to": "2023-05-09T00:00:00Z"}}))
            .await;
        assert_eq!(v["hits"].as_array().unwrap().len(), 1);
        assert_eq!(v["hits"][0]["id"], ids[0].as_str());

        let (s, v) = api.get("/v1/namespaces/conv-1/recent?limit=1").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["messages"][0]["id"], ids[1].as_str());
        let (_, v) = api.get("/v1/namespaces/conv-1/recent").await;
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);

        let (s, v) = api.get("/v1/namespaces").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({"namespaces": [{"name": "conv-1", "messages": 2, "summaries": 0}]}));

        let (s, v) = api.get(&format!("/v1/messages/{}", ids[0])).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["content"], "I went to an LGBTQ support group yesterday.");
        assert_eq!(v["timestamp"], "2023-05-08T13:56:00Z");
        assert_eq!(v["session_id"], "s1");

        let (s, _) = api.delete(&format!("/v1/messages/{}", ids[0])).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_error(api.get(&format!("/v1/messages/{}", ids[0])).await, 404, "not_found");
        assert_error(api.delete(&format!("/v1/messages/{}", ids[0])).await, 404, "not_found");

        // Long-term memory over HTTP: force a summary, list it, search by kind.
        let (s, v) = api.json("POST", "/v1/namespaces/conv-1/summarize", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["ids"].as_array().unwrap().len(), 1);
        let (_, again) = api.json("POST", "/v1/namespaces/conv-1/summarize", json!({})).await;
        assert_eq!(again["ids"], json!([]));
        let (s, list) = api.get("/v1/namespaces/conv-1/summaries").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list["summaries"][0]["id"], v["ids"][0]);
        assert_eq!(list["summaries"][0]["source_ids"], json!([ids[1]]));
        let (_, found) = api.json("POST", "/v1/namespaces/conv-1/search", json!({"query": "dog", "kinds": ["summary"]})).await;
        assert_eq!(found["hits"][0]["kind"], "summary");
        assert_eq!(found["hits"][0]["summary"]["id"], v["ids"][0]);
        assert!(found["hits"][0].get("message").is_none());
        assert_error(api.json("POST", "/v1/namespaces/conv-1/search", json!({"query": "dog", "kinds": ["memo"]})).await, 422, "invalid_value");
        // Ranking modes: lexical returns only turns sharing a word with the query.
        for mode in ["hybrid", "dense", "lexical"] {
            let (s, v) = api.json("POST", "/v1/namespaces/conv-1/search", json!({"query": "dog", "kinds": ["message"], "mode": mode})).await;
            assert_eq!(s, StatusCode::OK, "{mode}: {v}");
            let hits = v["hits"].as_array().unwrap();
            assert!(hits[0]["message"]["content"].as_str().unwrap().contains("dog"), "{mode}: {v}");
            if mode == "lexical" {
                assert!(hits.iter().all(|h| h["message"]["content"].as_str().unwrap().contains("dog")), "{v}");
            }
        }
        assert_error(api.json("POST", "/v1/namespaces/conv-1/search", json!({"query": "dog", "mode": "fuzzy"})).await, 422, "invalid_value");
        assert_error(api.json("POST", "/v1/namespaces/conv-1/search", json!({"vector": vec![0.1f32; 384], "mode": "lexical"})).await, 422, "invalid_value");

        let (s, _) = api.delete("/v1/namespaces/conv-1").await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, v) = api.json("POST", "/v1/namespaces/conv-1/search", json!({"query": "pet"})).await;
        assert_eq!(v["hits"], json!([]));
        let (_, v) = api.get("/health").await;
        assert_eq!(v["messages"], 0);
    });
}

#[test]
fn interactions_and_embeddings() {
    rt().block_on(async {
        let api = api();
        let (s, v) = api
            .json("POST", "/v1/namespaces/u/interactions", json!({"agent_id": "helper", "user_message": "Book me a table for two on Friday", "agent_response": "Done: Friday, 8 pm, two people.", "session_id": "s", "metadata": {"channel": "web"}}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let ids = v["ids"].as_array().unwrap();
        assert_eq!(ids.len(), 2);
        let (_, user) = api.get(&format!("/v1/messages/{}", ids[0].as_str().unwrap())).await;
        let (_, agent) = api.get(&format!("/v1/messages/{}", ids[1].as_str().unwrap())).await;
        assert_eq!(user["role"], "user");
        assert_eq!(agent["role"], "assistant");
        assert_eq!(user["exchange_id"], agent["exchange_id"]);
        assert_eq!(agent["metadata"]["channel"], "web");

        let (s, v) = api.json("POST", "/v1/embeddings", json!({"input": ["hello", "a longer sentence here"], "model": "text-embedding-3-small"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "all-MiniLM-L6-v2");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["object"], "embedding");
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 384);
        assert_eq!(v["usage"]["prompt_tokens"], 3 + 6);
        assert_eq!(v["usage"]["total_tokens"], v["usage"]["prompt_tokens"]);
        let (_, one) = api.json("POST", "/v1/embeddings", json!({"input": "hello"})).await;
        assert_eq!(one["data"][0]["embedding"], v["data"][0]["embedding"]);
        assert_error(api.json("POST", "/v1/embeddings", json!({"input": []})).await, 422, "invalid_value");
        assert_error(api.json("POST", "/v1/embeddings", json!({"input": [""]})).await, 422, "invalid_value");
        assert_error(api.json("POST", "/v1/embeddings", json!({"input": [1, 2]})).await, 422, "invalid_value");
        assert_error(api.json("POST", "/v1/embeddings", json!({"input": "x", "encoding_format": "base64"})).await, 422, "invalid_value");
    });
}

#[test]
fn loading_state_answers_503() {
    rt().block_on(async {
        let app = server::router(AppState::loading(), &ServerConfig::default());
        let api = Api {
            app,
            _dir: tempfile::tempdir().unwrap(),
        };
        let (s, v) = api.get("/health").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["status"], "loading");
        let (s, v, h) = api
            .raw(
                "POST",
                "/v1/namespaces/n/search",
                br#"{"query":"x"}"#.to_vec(),
                Some("application/json"),
            )
            .await;
        assert_error((s, v), 503, "model_loading");
        assert!(h.contains_key("retry-after"));
    });
}

#[test]
fn overload_answers_429_with_retry_after() {
    rt().block_on(async {
        let api = api_with(|c| c.embed_queue_capacity = 1, ServerConfig::default());
        let texts: Vec<String> = (0..64)
            .map(|i| {
                format!("a fairly long sentence number {i} to keep the model busy for a while")
            })
            .collect();
        let reqs = (0..12).map(|_| {
            api.raw(
                "POST",
                "/v1/embeddings",
                serde_json::to_vec(&json!({"input": texts})).unwrap(),
                Some("application/json"),
            )
        });
        let results = futures::future::join_all(reqs).await;
        let rejected: Vec<_> = results
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        let ok = results
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::OK)
            .count();
        assert!(!rejected.is_empty(), "a full queue must answer 429");
        assert!(ok >= 1);
        for (_, v, h) in rejected {
            assert_eq!(v["error"]["code"], "overloaded");
            assert_eq!(h["retry-after"], "1");
        }
    });
}

/// Past `max_in_flight` concurrent /v1 requests the server answers 429 at once
/// (no queue), while /health stays reachable.
#[test]
fn requests_over_the_in_flight_limit_are_shed_with_429() {
    rt().block_on(async {
        let api = api_with(
            |_| {},
            ServerConfig {
                max_in_flight: 2,
                ..ServerConfig::default()
            },
        );
        let texts: Vec<String> = (0..32)
            .map(|i| {
                format!("a fairly long sentence number {i} to keep the model busy for a while")
            })
            .collect();
        let body = serde_json::to_vec(&json!({"input": texts})).unwrap();
        let reqs = (0..10).map(|_| {
            api.raw(
                "POST",
                "/v1/embeddings",
                body.clone(),
                Some("application/json"),
            )
        });
        let health = async {
            // While the embeddings run, health answers.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            api.get("/health").await
        };
        let (results, (hs, _)) =
            futures::future::join(futures::future::join_all(reqs), health).await;
        assert_eq!(hs, StatusCode::OK);
        let ok = results
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::OK)
            .count();
        let shed: Vec<_> = results
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        assert_eq!(ok + shed.len(), results.len());
        assert!(ok >= 2, "the permitted requests complete");
        assert!(!shed.is_empty(), "requests past the limit are shed");
        for (_, v, h) in shed {
            assert_eq!(v["error"]["code"], "overloaded");
            assert_eq!(h["retry-after"], "1");
        }
    });
}

#[test]
fn metrics_and_openapi() {
    rt().block_on(async {
        let api = api();
        api.json("POST", "/v1/namespaces/m/messages", json!({"messages": [{"role": "user", "content": "hello"}]})).await;
        api.json("POST", "/v1/namespaces/m/search", json!({"query": "hello"})).await;
        let (s, v) = api.get("/metrics").await;
        assert_eq!(s, StatusCode::OK);
        let text = v.as_str().unwrap();
        for needle in [
            "memoryd_http_requests_total{route=\"/v1/namespaces/{ns}/search\",method=\"POST\",status=\"200\"}",
            "memoryd_http_request_duration_seconds_bucket",
            "memoryd_embed_batch_size_bucket",
            "memoryd_embed_queue_depth",
            "memoryd_index_vectors",
        ] {
            assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
        }
        let (s, v) = api.get("/openapi.json").await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["paths"]["/v1/namespaces/{ns}/search"]["post"].is_object());
    });
}

/// `docs/openapi.json` is generated from the code; regenerate with
/// `cargo run --release -- openapi > docs/openapi.json`.
#[test]
fn committed_openapi_matches_the_code() {
    let committed = std::fs::read_to_string(repo_path("docs/openapi.json")).unwrap_or_default();
    // Not assert_eq!: the document is thousands of lines.
    assert!(
        committed.trim() == server::openapi_json().trim(),
        "docs/openapi.json is stale: run `cargo run --release -- openapi > docs/openapi.json`"
    );
}

/// A model whose forward pass panics: writes and text searches answer 503
/// `model_failed` instead of hanging, and `/health` turns 503.
#[test]
fn a_crashed_model_answers_503_and_health_says_so() {
    struct Panics(memoryd::ModelInfo);
    impl memoryd::Embedder for Panics {
        fn info(&self) -> &memoryd::ModelInfo {
            &self.0
        }
        fn embed(&self, _: &[&str]) -> memoryd::Result<memoryd::Embeddings> {
            panic!("forward pass exploded")
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.summarize.enabled = false;
    let info = memoryd::Embedder::info(&memoryd::embed::HashEmbedder::new(8)).clone();
    let engine = memoryd::Engine::open_with_embedder(c, std::sync::Arc::new(Panics(info))).unwrap();
    let api = Api {
        app: server::router(AppState::ready(engine), &ServerConfig::default()),
        _dir: dir,
    };
    rt().block_on(async {
        let (s, _) = api.get("/health").await;
        assert_eq!(s, StatusCode::OK);
        let body = json!({"messages": [{"role": "user", "content": "hello"}]});
        let (s, v) = api
            .json("POST", "/v1/namespaces/n/messages", body.clone())
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert_eq!(v["error"]["code"], "model_failed");
        let (s, v) = api.get("/health").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert_eq!(v["status"], "model_failed");
        let (s, v) = api.json("POST", "/v1/namespaces/n/messages", body).await;
        assert_eq!(
            (s, &v["error"]["code"]),
            (StatusCode::SERVICE_UNAVAILABLE, &json!("model_failed"))
        );
        let (_, v) = api.get("/v1/namespaces").await;
        assert_eq!(v, json!({"namespaces": []}), "nothing was stored");
    });
}

/// Shared context over HTTP: versions as ETags, If-Match compare-and-set with the
/// current entry in the 412 body, merge patch, history, listing, tombstones.
#[test]
fn context_entries_over_http() {
    rt().block_on(async {
        let api = api();
        let url = "/v1/namespaces/task-1/context/research:findings";
        let put = |v: Value| json!({"value": v, "agent_id": "researcher"});
        let (s, v, h) = api
            .raw(
                "PUT",
                url,
                serde_json::to_vec(&put(json!({"n": 1}))).unwrap(),
                Some("application/json"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(h["etag"], "\"1\"");
        assert_eq!(
            (v["version"].as_u64(), v["agent_id"].as_str()),
            (Some(1), Some("researcher"))
        );
        // A stale If-Match loses with the current entry in the body.
        let req = Request::builder()
            .method("PUT")
            .uri(url)
            .header("content-type", "application/json")
            .header("if-match", "\"0\"")
            .body(Body::from(
                serde_json::to_vec(&put(json!({"n": 9}))).unwrap(),
            ))
            .unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["error"]["code"], "precondition_failed");
        assert_eq!(body["error"]["current"]["value"], json!({"n": 1}));
        assert_eq!(body["error"]["current"]["version"], 1);
        let (s, v) = api
            .json(
                "PATCH",
                url,
                json!({"value": {"m": 2}, "expected_version": 1}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["value"], json!({"n": 1, "m": 2}));
        let (s, v, h) = api.raw("GET", url, Vec::new(), None).await;
        assert_eq!(
            (s, &h["etag"]),
            (
                StatusCode::OK,
                &"\"2\"".parse::<axum::http::HeaderValue>().unwrap()
            )
        );
        assert_eq!(v["version"], 2);
        let (s, v) = api
            .get("/v1/namespaces/task-1/context?prefix=research:")
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["entries"].as_array().unwrap().len(), 1);
        let (s, v) = api
            .json("DELETE", &format!("{url}?expected_version=2"), Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["deleted"], true);
        let (s, v) = api.get(url).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (_, v) = api.get(&format!("{url}/history")).await;
        let ops: Vec<&str> = v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["set", "patch", "delete"]);
        // Bad input: a 4xx with a stable code, nothing stored.
        for (method, uri, body, status, code) in [
            (
                "PUT",
                "/v1/namespaces/task-1/context/a%2Fb",
                json!({"value": 1}),
                422,
                "invalid_value",
            ),
            (
                "PUT",
                "/v1/namespaces/task-1/context/k",
                json!({"value": 1, "typo": 2}),
                422,
                "invalid_value",
            ),
            (
                "PUT",
                "/v1/namespaces/task-1/context/k",
                json!({"value": "x".repeat(70_000)}),
                413,
                "too_large",
            ),
            (
                "PUT",
                "/v1/namespaces/task-1/context/k",
                json!({"value": 1, "ttl_s": 0}),
                422,
                "invalid_value",
            ),
            (
                "PUT",
                url,
                json!({"value": 1, "expected_version": 3}),
                412,
                "precondition_failed",
            ),
            (
                "PATCH",
                "/v1/namespaces/bad%20ns/context/k",
                json!({"value": 1}),
                422,
                "invalid_namespace",
            ),
            (
                "DELETE",
                "/v1/namespaces/task-1/context/never",
                Value::Null,
                404,
                "not_found",
            ),
        ] {
            let (s, v) = api.json(method, uri, body).await;
            assert_eq!(
                (s.as_u16(), v["error"]["code"].as_str()),
                (status, Some(code)),
                "{method} {uri}: {v}"
            );
        }
        let (_, v) = api.get("/v1/namespaces/task-1/context").await;
        assert!(v["entries"].as_array().unwrap().is_empty(), "{v}");
    });
}

/// The hierarchy over HTTP: PUT creates and re-parents, GET shows children,
/// context reads fall through unless `inherit=false`, a cycle is 409, deleting a
/// parent needs `recursive=true`.
#[test]
fn namespace_hierarchy_over_http() {
    rt().block_on(async {
        let api = api();
        let (s, v) = api
            .json("PUT", "/v1/namespaces/l1", json!({"metadata": {"tier": 1}}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = api
            .json("PUT", "/v1/namespaces/l2", json!({"parent": "l1"}))
            .await;
        assert_eq!(
            (s, v["parent"].as_str()),
            (StatusCode::OK, Some("l1")),
            "{v}"
        );
        let (_, v) = api.get("/v1/namespaces/l1").await;
        assert_eq!(v["children"], json!(["l2"]));
        assert_eq!(v["metadata"]["tier"], 1);
        api.json(
            "PUT",
            "/v1/namespaces/l1/context/customer",
            json!({"value": "ACME"}),
        )
        .await;
        let (s, v) = api.get("/v1/namespaces/l2/context/customer").await;
        assert_eq!(
            (s, v["namespace"].as_str()),
            (StatusCode::OK, Some("l1")),
            "{v}"
        );
        let (s, _) = api
            .get("/v1/namespaces/l2/context/customer?inherit=false")
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = api
            .json("PUT", "/v1/namespaces/l1", json!({"parent": "l2"}))
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("conflict"))
        );
        let (s, v) = api
            .json("PUT", "/v1/namespaces/l3", json!({"parent": "missing"}))
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (s, v) = api.delete("/v1/namespaces/l1").await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("conflict"))
        );
        let (s, _) = api.delete("/v1/namespaces/l1?recursive=true").await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = api.get("/v1/namespaces/l2").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

/// The blackboard over HTTP: post, propose, vote, rank, resolve with If-Match,
/// and the board's errors with their stable codes.
#[test]
fn blackboard_over_http() {
    rt().block_on(async {
        let api = api();
        let base = "/v1/namespaces/bugs/board";
        let (s, p) = api
            .json(
                "POST",
                &format!("{base}/problems"),
                json!({"title": "Upload times out", "body": "large files fail after 30 s", "agent_id": "triage"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        assert_eq!((p["status"].as_str(), p["version"].as_u64()), (Some("open"), Some(1)));
        let pid = p["id"].as_str().unwrap().to_owned();
        let mut ids = Vec::new();
        for (body, confidence) in [("raise the proxy timeout", 0.8), ("stream the upload in chunks", 0.6)] {
            let (s, v) = api
                .json(
                    "POST",
                    &format!("{base}/problems/{pid}/proposals"),
                    json!({"body": body, "confidence": confidence, "agent_id": "fixer"}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        for agent in ["a", "b"] {
            let (s, v) = api
                .json(
                    "POST",
                    &format!("{base}/proposals/{}/votes", ids[1]),
                    json!({"agent_id": agent, "value": 1}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let (s, v, headers) = api.raw("GET", &format!("{base}/problems/{pid}"), Vec::new(), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(headers["etag"], "\"1\"");
        assert_eq!(v["proposals"][0]["id"], ids[1].as_str(), "votes rank first: {v}");
        assert_eq!(v["proposals"][0]["score"], 2);

        assert_error(
            api.json("POST", &format!("{base}/proposals/{}/votes", ids[0]), json!({"agent_id": "a", "value": 3}))
                .await,
            422,
            "invalid_value",
        );
        assert_error(
            api.json("POST", &format!("{base}/problems/{pid}/proposals"), json!({"body": "x", "confidence": 2}))
                .await,
            422,
            "invalid_value",
        );
        let unknown = uuid::Uuid::now_v7();
        assert_error(api.get(&format!("{base}/problems/{unknown}")).await, 404, "not_found");
        assert_error(
            api.json("POST", &format!("{base}/proposals/{unknown}/votes"), json!({"agent_id": "a", "value": 1}))
                .await,
            404,
            "not_found",
        );
        assert_error(
            api.json("POST", &format!("{base}/problems"), json!({"title": "t", "bogus": 1})).await,
            422,
            "invalid_value",
        );

        // Resolve with a stale If-Match: 412; with the current one: resolved.
        let resolve = |version: &str| {
            let body = serde_json::to_vec(&json!({"proposal_id": ids[1], "agent_id": "lead"})).unwrap();
            let uri = format!("{base}/problems/{pid}/resolve");
            let version = version.to_owned();
            let app = api.app.clone();
            async move {
                let req = Request::builder()
                    .method("POST")
                    .uri(uri)
                    .header("content-type", "application/json")
                    .header("if-match", version)
                    .body(Body::from(body))
                    .unwrap();
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status();
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice::<Value>(&bytes).unwrap())
            }
        };
        assert_error(resolve("\"5\"").await, 412, "precondition_failed");
        let (s, v) = resolve("\"1\"").await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("resolved")), "{v}");
        assert_error(resolve("\"2\"").await, 409, "conflict");
        let (_, v) = api.get(&format!("{base}/problems?status=open")).await;
        assert_eq!(v["problems"], json!([]), "{v}");
        let (_, v) = api.get(&format!("{base}/problems?status=resolved")).await;
        assert_eq!(v["problems"][0]["resolution"]["proposal_id"], ids[1].as_str());

        // Searchable as kind "board".
        let (s, v) = api
            .json(
                "POST",
                "/v1/namespaces/bugs/search",
                json!({"query": "upload timeout", "kinds": ["board"], "k": 5}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 3, "{v}");
        assert!(hits.iter().all(|h| h["kind"] == "board" && h["namespace"] == "bugs"), "{v}");
    });
}

/// Context entries come back from search (default kinds), and `scope: inherit`
/// reaches the parent's records, each hit naming its namespace.
#[test]
fn search_finds_context_and_inherits_over_http() {
    rt().block_on(async {
        let api = api();
        api.json("PUT", "/v1/namespaces/l1", json!({})).await;
        api.json("PUT", "/v1/namespaces/l2", json!({"parent": "l1"})).await;
        let (s, v) = api
            .json(
                "PUT",
                "/v1/namespaces/l1/context/customer:plan",
                json!({"value": {"plan": "enterprise", "note": "priority support with a four hour response time"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        api.json(
            "POST",
            "/v1/namespaces/l2/messages",
            json!({"messages": [{"role": "user", "content": "my printer is jammed again"}]}),
        )
        .await;
        let search = |scope: &str| {
            let body = json!({"query": "what response time does the customer's support plan promise?", "k": 5, "scope": scope});
            let api = &api;
            async move { api.json("POST", "/v1/namespaces/l2/search", body).await }
        };
        let (s, own) = search("self").await;
        assert_eq!(s, StatusCode::OK, "{own}");
        assert!(own["hits"].as_array().unwrap().iter().all(|h| h["namespace"] == "l2"), "{own}");
        let (s, all) = search("inherit").await;
        assert_eq!(s, StatusCode::OK, "{all}");
        let top = &all["hits"][0];
        assert_eq!((top["kind"].as_str(), top["namespace"].as_str()), (Some("context"), Some("l1")), "{all}");
        assert_eq!(top["context"]["key"], "customer:plan");
        assert_error(search("everywhere").await, 422, "invalid_value");
    });
}

/// Reads SSE frames from `body` until `n` events (lines `event:`/`id:`/`data:`
/// blocks with a data line) have arrived; keep-alive comments are skipped.
async fn sse_events(body: &mut Body, n: usize) -> Vec<(String, String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an SSE frame within 10 s")
            .expect("the stream is open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (String::new(), String::new(), None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let Some(d) = data {
                out.push((event, id, d));
            }
        }
    }
    out
}

/// Events over HTTP: an SSE stream replays the log then continues live with no
/// gap or duplicate; `Last-Event-ID` resumes; long-poll waits for the next
/// event; consumer cursors; the stream limit answers 429.
#[test]
fn events_stream_resume_long_poll_and_consumers() {
    rt().block_on(async {
        let api = api_with(
            |_| {},
            ServerConfig {
                max_streams: 1,
                ..ServerConfig::default()
            },
        );
        let add = |text: &str| {
            let body = json!({"messages": [{"role": "user", "content": text}]});
            let api = &api;
            async move {
                let (s, v) = api.json("POST", "/v1/namespaces/ev/messages", body).await;
                assert_eq!(s, StatusCode::CREATED, "{v}");
            }
        };
        for t in ["one", "two", "three"] {
            add(t).await;
        }
        let open = |last_event_id: Option<&str>| {
            let mut req = Request::builder()
                .uri("/v1/namespaces/ev/events")
                .header("accept", "text/event-stream");
            if let Some(id) = last_event_id {
                req = req.header("last-event-id", id);
            }
            api.app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        let resp = open(None).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut body = resp.into_body();
        let first = sse_events(&mut body, 4).await;
        let ids: Vec<&str> = first.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(ids, ["ev:1", "ev:2", "ev:3", "ev:4"]);
        assert_eq!(first[0].0, "namespace.created");
        assert_eq!(first[3].2["data"]["content"], "three");
        // Only one stream may be open: a second one is refused while this one lives.
        let refused = open(None).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // Live: writes after the replay arrive on the same stream, in order.
        add("four").await;
        add("five").await;
        let live = sse_events(&mut body, 2).await;
        let ids: Vec<&str> = live.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(ids, ["ev:5", "ev:6"]);
        assert_eq!(live[1].2["data"]["content"], "five");
        drop(body);

        // Resume after a disconnect: exactly what follows the last id seen.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let resp = open(Some("ev:4")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "the permit came back");
        let mut body = resp.into_body();
        let resumed = sse_events(&mut body, 2).await;
        assert_eq!(
            (resumed[0].1.as_str(), resumed[1].1.as_str()),
            ("ev:5", "ev:6")
        );
        drop(body);
        assert_error(
            {
                let (s, v, _) = api
                    .raw(
                        "GET",
                        "/v1/namespaces/ev/events?types=message.exploded",
                        Vec::new(),
                        None,
                    )
                    .await;
                (s, v)
            },
            422,
            "invalid_value",
        );

        // Long-poll: nothing after 6 yet; a write during the wait answers it.
        let poll = api.get("/v1/namespaces/ev/events?after=6&wait_s=5");
        let write = async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            add("six").await;
        };
        let ((s, page), ()) = tokio::join!(poll, write);
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["events"][0]["seq"], 7, "{page}");
        assert_eq!(page["next"], 7);
        let (_, page) = api.get("/v1/namespaces/ev/events?after=7").await;
        assert_eq!(
            (
                page["events"].as_array().unwrap().len(),
                page["next"].as_u64()
            ),
            (0, Some(7))
        );

        // Consumer cursors.
        let (s, v) = api
            .json(
                "PUT",
                "/v1/namespaces/ev/consumers/indexer",
                json!({"acked": 5}),
            )
            .await;
        assert_eq!((s, v["acked"].as_u64()), (StatusCode::OK, Some(5)), "{v}");
        let (_, page) = api.get("/v1/namespaces/ev/events?consumer=indexer").await;
        let seqs: Vec<u64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [6, 7]);
        assert_error(
            api.json(
                "PUT",
                "/v1/namespaces/ev/consumers/indexer",
                json!({"acked": 500}),
            )
            .await,
            422,
            "invalid_value",
        );
    });
}

/// `descendants=true` over HTTP: long-poll answers a cursor of every
/// namespace's position; SSE ids are that cursor, and `Last-Event-ID` resumes.
#[test]
fn events_of_descendants_over_http() {
    rt().block_on(async {
        let api = api();
        api.json("PUT", "/v1/namespaces/root", json!({})).await;
        api.json("PUT", "/v1/namespaces/leaf", json!({"parent": "root"}))
            .await;
        for ns in ["root", "leaf"] {
            let (s, v) = api
                .json(
                    "POST",
                    &format!("/v1/namespaces/{ns}/messages"),
                    json!({"messages": [{"role": "user", "content": format!("hello from {ns}")}]}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
        let (s, page) = api.get("/v1/namespaces/root/events?descendants=true").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["events"].as_array().unwrap().len(), 4, "{page}");
        assert_eq!(page["cursor"], "leaf:2,root:2");
        let (_, more) = api
            .get("/v1/namespaces/root/events?descendants=true&cursor=leaf:1,root:2")
            .await;
        assert_eq!(more["events"][0]["id"], "leaf:2", "{more}");
        assert_error(
            api.get("/v1/namespaces/root/events?descendants=true&after=3")
                .await,
            422,
            "invalid_value",
        );
        assert_error(
            api.get("/v1/namespaces/root/events?descendants=true&cursor=nope")
                .await,
            422,
            "invalid_value",
        );
        // SSE: ids are cursors; resuming from the first one yields the rest.
        let open = |last: Option<&str>| {
            let mut req = Request::builder()
                .uri("/v1/namespaces/root/events?descendants=true")
                .header("accept", "text/event-stream");
            if let Some(id) = last {
                req = req.header("last-event-id", id);
            }
            api.app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        let mut body = open(None).await.unwrap().into_body();
        let events = sse_events(&mut body, 4).await;
        assert_eq!(events[3].1, "leaf:2,root:2", "{events:?}");
        drop(body);
        let first = events[0].1.clone();
        let mut body = open(Some(&first)).await.unwrap().into_body();
        let rest = sse_events(&mut body, 3).await;
        let ids: Vec<&str> = rest.iter().map(|e| e.2["id"].as_str().unwrap()).collect();
        let all: Vec<&str> = events[1..]
            .iter()
            .map(|e| e.2["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, all);
    });
}

/// `GET /v1/audit`: the chain's entries with filters; a bad filter is a 422.
#[test]
fn audit_over_http() {
    rt().block_on(async {
        let api = api();
        api.json(
            "POST",
            "/v1/namespaces/au/messages",
            json!({"messages": [{"role": "user", "content": "audited", "agent_id": "x"}]}),
        )
        .await;
        let (s, v) = api.get("/v1/audit?namespace=au&action=message.added").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{v}");
        assert_eq!(entries[0]["hash"].as_str().unwrap().len(), 64);
        assert_error(
            api.get("/v1/audit?action=exploded").await,
            422,
            "invalid_value",
        );
        assert_error(api.get("/v1/audit?limit=0").await, 422, "invalid_value");
    });
}
