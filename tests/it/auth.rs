//! API keys over HTTP: every route × {no token, another namespace's key, a key
//! missing the route's scope, revoked, expired, good}, asserting the status,
//! that no data of the protected namespace leaked into the answer and that
//! nothing changed (the audit chain's length, which every mutation extends,
//! and the namespace's change log); plus redaction, agent stamping, the
//! loopback rule, and a property test that a key never reads a namespace
//! outside its patterns. The model is the hash embedder: these tests are about
//! access, not ranking.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use memoryd::embed::HashEmbedder;
use memoryd::server::{self, AppState, ServerConfig};
use memoryd::{Access, AuditQuery, Engine, EngineConfig, NewKey, Redaction, Scope};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::rt;

/// Text stored in the protected namespace: must never appear in a refused answer.
const SECRET: &str = "SECRET-A lighthouse keeper";

fn engine(dir: &std::path::Path) -> Engine {
    let mut c = EngineConfig::with_data_dir(dir);
    c.summarize.enabled = false;
    Engine::open_with_embedder(c, Arc::new(HashEmbedder::new(16))).unwrap()
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&b).unwrap())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn key(e: &Engine, name: &str, ns: &[&str], scopes: &[Scope]) -> String {
    e.create_key(
        &Access::full(),
        NewKey {
            name: name.into(),
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.to_vec(),
            agent_id: None,
            expires_at: None,
            redact: Redaction::default(),
        },
    )
    .await
    .unwrap()
    .token
}

/// What a route needs.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Needs {
    /// This scope on `team-a`.
    Ns(Scope),
    /// This scope on this namespace (the registry `agents`, an inbox, a topic).
    At(&'static str, Scope),
    /// `admin` on `*`.
    Global,
    /// Any valid key (the embeddings endpoint touches no memory).
    AnyKey,
}

struct Route {
    method: &'static str,
    uri: String,
    body: Option<Value>,
    needs: Needs,
    /// Success status with the good key.
    ok: u16,
    /// A key of another namespace gets 404 (id-addressed routes: no leak of
    /// whether the id exists) instead of 403.
    hides: bool,
}

fn route(
    method: &'static str,
    uri: impl Into<String>,
    body: Option<Value>,
    needs: Needs,
    ok: u16,
) -> Route {
    Route {
        method,
        uri: uri.into(),
        body,
        needs,
        ok,
        hides: false,
    }
}

async fn audit_len(e: &Engine) -> usize {
    e.audit(&Access::full(), &AuditQuery::default(), 1000)
        .await
        .unwrap()
        .entries
        .len()
}

#[test]
fn every_route_refuses_every_bad_credential_and_changes_nothing() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let full = Access::full();
        // The protected namespace and another one, each with data.
        let mut ids = Vec::new();
        for ns in ["team-a", "team-b"] {
            let m = e
                .add(
                    &full,
                    ns,
                    memoryd::NewMessage::new(memoryd::Role::User, format!("{SECRET} in {ns}")),
                )
                .await
                .unwrap();
            ids.push(m.id);
            e.context_set(&full, ns, "k", json!({"note": SECRET}), Default::default())
                .await
                .unwrap();
        }
        let problem = e
            .board_post(
                &full,
                "team-a",
                memoryd::NewProblem {
                    title: format!("{SECRET} problem"),
                    body: String::new(),
                    agent_id: Some("lead".into()),
                },
            )
            .await
            .unwrap();
        let proposal = e
            .board_propose(
                &full,
                "team-a",
                &problem.id,
                memoryd::NewProposal {
                    body: format!("{SECRET} fix"),
                    confidence: 0.5,
                    agent_id: Some("dev".into()),
                },
            )
            .await
            .unwrap();
        let spare = e
            .create_key(
                &full,
                NewKey {
                    name: "spare".into(),
                    namespaces: vec!["x".into()],
                    scopes: vec![Scope::Read],
                    agent_id: None,
                    expires_at: None,
                    redact: Redaction::default(),
                },
            )
            .await
            .unwrap();

        e.register_agent(
            &full,
            "scout",
            crate::agents::card("scout", "Finds sources", &[("search", "Web search", &["web"])]),
        )
        .await
        .unwrap();
        let a = "/v1/namespaces/team-a";
        let (p, q) = (&problem.id, &proposal.id);
        use Needs::*;
        use Scope::*;
        let mut routes = vec![
            route("GET", "/v1/namespaces", None, Ns(Read), 200),
            route("GET", a, None, Ns(Read), 200),
            route(
                "PUT",
                a,
                Some(json!({"metadata": {"team": "a"}})),
                Ns(Admin),
                200,
            ),
            route(
                "POST",
                format!("{a}/messages"),
                Some(json!({"messages": [{"role": "user", "content": "hello"}]})),
                Ns(Write),
                201,
            ),
            route("GET", format!("{a}/messages"), None, Ns(Read), 200),
            route(
                "POST",
                format!("{a}/interactions"),
                Some(json!({"user_message": "q", "agent_response": "r"})),
                Ns(Write),
                201,
            ),
            route(
                "POST",
                format!("{a}/search"),
                Some(json!({"query": "lighthouse", "k": 5})),
                Ns(Read),
                200,
            ),
            route("GET", format!("{a}/recent"), None, Ns(Read), 200),
            route("POST", format!("{a}/summarize"), None, Ns(Write), 200),
            route("GET", format!("{a}/summaries"), None, Ns(Read), 200),
            Route {
                hides: true,
                ..route(
                    "GET",
                    format!("/v1/messages/{}", ids[0]),
                    None,
                    Ns(Read),
                    200,
                )
            },
            route(
                "POST",
                "/v1/embeddings",
                Some(json!({"input": "hi"})),
                AnyKey,
                200,
            ),
            route(
                "PUT",
                format!("{a}/context/k2"),
                Some(json!({"value": {"v": 1}})),
                Ns(Write),
                201,
            ),
            route(
                "PATCH",
                format!("{a}/context/k"),
                Some(json!({"value": {"more": 1}})),
                Ns(Write),
                200,
            ),
            route("GET", format!("{a}/context/k"), None, Ns(Read), 200),
            route("GET", format!("{a}/context"), None, Ns(Read), 200),
            route("GET", format!("{a}/context/k/history"), None, Ns(Read), 200),
            route(
                "POST",
                format!("{a}/board/problems"),
                Some(json!({"title": "t", "agent_id": "lead"})),
                Ns(Write),
                201,
            ),
            route("GET", format!("{a}/board/problems"), None, Ns(Read), 200),
            route(
                "GET",
                format!("{a}/board/problems/{p}"),
                None,
                Ns(Read),
                200,
            ),
            route(
                "POST",
                format!("{a}/board/problems/{p}/proposals"),
                Some(json!({"body": "b", "confidence": 0.9, "agent_id": "dev2"})),
                Ns(Write),
                201,
            ),
            route(
                "POST",
                format!("{a}/board/proposals/{q}/votes"),
                Some(json!({"value": 1, "agent_id": "rev"})),
                Ns(Write),
                200,
            ),
            route(
                "POST",
                format!("{a}/board/problems/{p}/resolve"),
                Some(json!({"proposal_id": q, "agent_id": "lead"})),
                Ns(Write),
                200,
            ),
            route("GET", format!("{a}/events"), None, Ns(Read), 200),
            route(
                "PUT",
                format!("{a}/consumers/c1"),
                Some(json!({"acked": 1})),
                Ns(Read),
                200,
            ),
            route("GET", format!("{a}/consumers/c1"), None, Ns(Read), 200),
            route(
                "POST",
                "/v1/agents",
                Some(json!({"id": "newcomer", "card": crate::agents::card("scout", "Finds sources", &[("search", "Web search", &["web"])])})),
                At("agents", Write),
                201,
            ),
            route("GET", "/v1/agents", None, At("agents", Read), 200),
            route("GET", "/v1/agents/search?q=sources", None, At("agents", Read), 200),
            route("GET", "/v1/agents/scout", None, At("agents", Read), 200),
            route("PUT", "/v1/agents/scout/heartbeat", None, At("agents", Write), 200),
            route(
                "POST",
                "/v1/agents/scout/inbox",
                Some(json!({"from": "lead", "type": "task", "payload": "look"})),
                At("inbox:scout", Write),
                201,
            ),
            route("GET", "/v1/agents/scout/inbox", None, At("inbox:scout", Read), 200),
            route(
                "POST",
                "/v1/agents/scout/inbox/ack",
                Some(json!({"upto": 1})),
                At("inbox:scout", Read),
                200,
            ),
            route(
                "POST",
                "/v1/topics/news/publish",
                Some(json!({"from": "lead", "type": "notice", "payload": "hi"})),
                At("topic:news", Write),
                201,
            ),
            route("DELETE", "/v1/agents/scout", None, At("agents", Delete), 204),
            route("GET", "/v1/audit", None, Global, 200),
            route("GET", "/v1/keys", None, Global, 200),
            route(
                "POST",
                "/v1/keys",
                Some(json!({"name": "n", "namespaces": ["z"], "scopes": ["read"]})),
                Global,
                201,
            ),
            route(
                "DELETE",
                format!("/v1/keys/{}", spare.key.id),
                None,
                Global,
                200,
            ),
            route("GET", "/metrics", None, Global, 200),
            route("DELETE", format!("{a}/context/k2"), None, Ns(Delete), 200),
            Route {
                hides: true,
                ..route(
                    "DELETE",
                    format!("/v1/messages/{}", ids[0]),
                    None,
                    Ns(Delete),
                    204,
                )
            },
            route("DELETE", a, None, Ns(Delete), 204),
        ];
        // Every operation the OpenAPI document lists under /v1 must have a row
        // here (an undocumented route would escape this check; the committed
        // document is itself checked against the code in http.rs).
        let documented: Value = serde_json::from_str(&server::openapi_json()).unwrap();
        let mut doc_ops: Vec<String> = documented["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| format!("{} {path}", m.to_uppercase()))
            })
            .filter(|op| op.contains("/v1/"))
            .collect();
        doc_ops.sort();
        doc_ops.dedup();
        let templated = |r: &Route| {
            let mut u = r.uri.replace("team-a", "{ns}");
            for (id, name) in [
                (&ids[0], "{id}"),
                (p, "{id}"),
                (q, "{id}"),
                (&spare.key.id, "{id}"),
            ] {
                u = u.replace(id.as_str(), name);
            }
            u = u
                .replace("/context/k2", "/context/{key}")
                .replace("/context/k/", "/context/{key}/");
            if u.ends_with("/context/k") {
                u = u.replace("/context/k", "/context/{key}");
            }
            u = u
                .replace("/consumers/c1", "/consumers/{name}")
                .replace("/agents/scout", "/agents/{id}")
                .replace("/topics/news", "/topics/{topic}");
            if let Some((path, _query)) = u.split_once('?') {
                u = path.to_owned();
            }
            format!("{} {u}", r.method)
        };
        let mut covered: Vec<String> = routes
            .iter()
            .map(templated)
            .filter(|op| op.contains("/v1/"))
            .collect();
        covered.sort();
        covered.dedup();
        assert_eq!(
            covered, doc_ops,
            "every documented /v1 operation is in the matrix"
        );

        // The credentials.
        let other_ns = key(&e, "other", &["team-b"], &[Read, Write, Delete, Admin]).await;
        let revoked = key(&e, "revoked", &["*"], &[Admin]).await;
        let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
        e.revoke_key(&full, &revoked_id).await.unwrap();
        let expiring = e
            .create_key(
                &full,
                NewKey {
                    name: "expiring".into(),
                    namespaces: vec!["*".into()],
                    scopes: vec![Admin],
                    agent_id: None,
                    expires_at: Some(chrono::Utc::now() + chrono::Duration::milliseconds(300)),
                    redact: Redaction::default(),
                },
            )
            .await
            .unwrap()
            .token;
        tokio::time::sleep(Duration::from_millis(400)).await;

        let app = server::router(AppState::ready(e.clone()), &ServerConfig::default());
        for r in &mut routes {
            let (good, lacking) = match r.needs {
                Ns(s) => {
                    let without: Vec<Scope> = [Read, Write, Delete]
                        .into_iter()
                        .filter(|x| *x != s)
                        .collect();
                    (
                        key(&e, "good", &["team-a"], &[s]).await,
                        Some(key(&e, "lacking", &["team-a"], &without).await),
                    )
                }
                At(ns, s) => {
                    let without: Vec<Scope> = [Read, Write, Delete]
                        .into_iter()
                        .filter(|x| *x != s)
                        .collect();
                    (
                        key(&e, "good", &[ns], &[s]).await,
                        Some(key(&e, "lacking", &[ns], &without).await),
                    )
                }
                Global => (
                    key(&e, "good", &["*"], &[Admin]).await,
                    Some(key(&e, "lacking", &["*"], &[Read, Write, Delete]).await),
                ),
                AnyKey => (key(&e, "good", &["team-b"], &[Read]).await, None),
            };
            let mut cases: Vec<(&str, Option<&str>, u16)> = vec![
                ("no token", None, 401),
                ("revoked", Some(&revoked), 401),
                ("expired", Some(&expiring), 401),
                ("malformed", Some("mdk_not-a-token"), 401),
            ];
            match r.needs {
                Ns(_) | At(..) => cases.push((
                    "other namespace",
                    Some(&other_ns),
                    if r.hides { 404 } else { 403 },
                )),
                Global => cases.push(("namespace-bound admin", Some(&other_ns), 403)),
                AnyKey => {}
            }
            if let Some(l) = &lacking {
                cases.push(("missing scope", Some(l), 403));
            }
            // The namespace listing answers 200 with only what the key may read.
            let listing = r.uri == "/v1/namespaces";
            for (case, token, want) in cases {
                let before = (
                    audit_len(&e).await,
                    e.changes(&full, "team-a", 0, 1000)
                        .await
                        .map(|c| c.len())
                        .ok(),
                );
                let (status, body) = call(&app, r.method, &r.uri, token, r.body.clone()).await;
                let want = if listing && want == 403 { 200 } else { want };
                assert_eq!(
                    status.as_u16(),
                    want,
                    "{} {} with {case}: {body}",
                    r.method,
                    r.uri
                );
                assert!(
                    !body.contains("SECRET"),
                    "{} {} with {case} leaked: {body}",
                    r.method,
                    r.uri
                );
                if listing {
                    assert!(!body.contains("team-a"), "{case} sees team-a: {body}");
                } else if want != 200 {
                    let code =
                        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].clone();
                    let expected = match want {
                        401 => "unauthorized",
                        403 => "forbidden",
                        _ => "not_found",
                    };
                    assert_eq!(code, expected, "{} {} with {case}", r.method, r.uri);
                }
                let after = (
                    audit_len(&e).await,
                    e.changes(&full, "team-a", 0, 1000)
                        .await
                        .map(|c| c.len())
                        .ok(),
                );
                assert_eq!(
                    before, after,
                    "{} {} with {case} changed something",
                    r.method, r.uri
                );
            }
            let (status, body) = call(&app, r.method, &r.uri, Some(&good), r.body.clone()).await;
            assert_eq!(
                status.as_u16(),
                r.ok,
                "{} {} with the good key: {body}",
                r.method,
                r.uri
            );
        }
    });
}

#[test]
fn without_keys_loopback_is_open_and_a_first_key_closes_it() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let open = server::router(AppState::ready(e.clone()), &ServerConfig::default());
        let closed = server::router(
            AppState::ready(e.clone()),
            &ServerConfig {
                anonymous: false,
                ..ServerConfig::default()
            },
        );
        assert_eq!(
            call(&open, "GET", "/v1/namespaces", None, None).await.0,
            200
        );
        assert_eq!(
            call(&closed, "GET", "/v1/namespaces", None, None).await.0,
            401
        );
        // A first key over the open (loopback) server: from then on a token is needed.
        let (s, body) = call(
            &open,
            "POST",
            "/v1/keys",
            None,
            Some(json!({"name": "admin", "namespaces": ["*"], "scopes": ["admin"]})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        let token = created["token"].as_str().unwrap();
        assert!(token.starts_with("mdk_"));
        let (s, body) = call(&open, "GET", "/v1/namespaces", None, None).await;
        assert_eq!(s, 401, "{body}");
        assert_eq!(
            call(&open, "GET", "/v1/namespaces", Some(token), None)
                .await
                .0,
            200
        );
        // The token is never listed, nor its hash.
        let (s, listed) = call(&open, "GET", "/v1/keys", Some(token), None).await;
        assert_eq!(s, 200, "{listed}");
        assert!(listed.contains(created["id"].as_str().unwrap()), "{listed}");
        assert!(
            !listed.contains(token) && !listed.contains(&memoryd::keys::token_sha256(token)),
            "{listed}"
        );
        // Revoking every key does not reopen the server.
        let id = created["id"].as_str().unwrap();
        assert_eq!(
            call(
                &open,
                "DELETE",
                &format!("/v1/keys/{id}"),
                Some(token),
                None
            )
            .await
            .0,
            200
        );
        assert_eq!(
            call(&open, "GET", "/v1/namespaces", None, None).await.0,
            401
        );
        assert_eq!(
            call(&open, "GET", "/v1/namespaces", Some(token), None)
                .await
                .0,
            401
        );
        // Health stays public.
        assert_eq!(call(&open, "GET", "/health", None, None).await.0, 200);
    });
}

#[test]
fn keys_survive_a_restart_and_only_their_hash_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let token = rt().block_on(async {
        let e = engine(dir.path());
        let t = key(&e, "k", &["team-a"], &[Scope::Read]).await;
        e.flush().await.unwrap();
        t
    });
    // The token's secret is nowhere on disk.
    let secret = token.rsplit('_').next().unwrap().to_owned();
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the token",
            entry.display()
        );
    }
    let e = engine(dir.path());
    let access = e.authenticate(&token).unwrap();
    assert!(access.covers("team-a") && !access.covers("team-b"));
    assert_eq!(access.key_id.as_deref(), token.split('_').nth(1));
    let mut wrong = token.clone();
    wrong.pop();
    wrong.push(if token.ends_with('0') { '1' } else { '0' });
    assert_eq!(
        e.authenticate(&wrong).unwrap_err(),
        memoryd::engine::AuthFailure::Invalid
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_key_bound_to_an_agent_stamps_its_writes_and_cannot_write_as_another() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let created = e
            .create_key(&Access::full(), NewKey {
                name: "researcher".into(),
                namespaces: vec!["team-a".into()],
                scopes: vec![Scope::Read, Scope::Write],
                agent_id: Some("researcher-1".into()),
                expires_at: None,
                redact: Redaction::default(),
            })
            .await
            .unwrap();
        let app = server::router(AppState::ready(e.clone()), &ServerConfig::default());
        let t = Some(created.token.as_str());
        let (s, body) = call(&app, "POST", "/v1/namespaces/team-a/messages", t, Some(json!({"messages": [{"role": "assistant", "content": "found it"}]}))).await;
        assert_eq!(s, 201, "{body}");
        let (s, body) = call(&app, "POST", "/v1/namespaces/team-a/messages", t, Some(json!({"messages": [{"role": "assistant", "content": "x", "agent_id": "writer-1"}]}))).await;
        assert_eq!(s, 403, "{body}");
        let (s, body) = call(&app, "PUT", "/v1/namespaces/team-a/context/plan", t, Some(json!({"value": 1, "agent_id": "writer-1"}))).await;
        assert_eq!(s, 403, "{body}");
        let (s, body) = call(&app, "POST", "/v1/namespaces/team-a/board/problems", t, Some(json!({"title": "t"}))).await;
        assert_eq!(s, 201, "{body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["agent_id"], "researcher-1");
        let pid = problem["id"].as_str().unwrap();
        let (s, body) = call(&app, "POST", &format!("/v1/namespaces/team-a/board/problems/{pid}/proposals"), t, Some(json!({"body": "b", "confidence": 0.5, "agent_id": "writer-1"}))).await;
        assert_eq!(s, 403, "{body}");
        let (s, body) = call(&app, "POST", &format!("/v1/namespaces/team-a/board/problems/{pid}/proposals"), t, Some(json!({"body": "b", "confidence": 0.5}))).await;
        assert_eq!(s, 201, "{body}");
        let proposal: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(proposal["agent_id"], "researcher-1");
        let qid = proposal["id"].as_str().unwrap();
        let (s, body) = call(&app, "POST", &format!("/v1/namespaces/team-a/board/proposals/{qid}/votes"), t, Some(json!({"value": 1, "agent_id": "writer-1"}))).await;
        assert_eq!(s, 403, "{body}");
        let (s, body) = call(&app, "POST", &format!("/v1/namespaces/team-a/board/proposals/{qid}/votes"), t, Some(json!({"value": 1}))).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"researcher-1\":1"), "{body}");
        let (s, body) = call(&app, "POST", "/v1/namespaces/team-a/interactions", t, Some(json!({"user_message": "q", "agent_response": "r", "agent_id": "writer-1"}))).await;
        assert_eq!(s, 403, "{body}");
        let (s, body) = call(&app, "PUT", "/v1/namespaces/team-a/context/plan", t, Some(json!({"value": 1}))).await;
        assert_eq!(s, 201, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["agent_id"], "researcher-1");
        let full = Access::full();
        let page = e.list(&full, "team-a", None, 10).await.unwrap();
        assert_eq!(page.messages.len(), 1, "the refused writes stored nothing");
        assert_eq!(page.messages[0].agent_id.as_deref(), Some("researcher-1"));
        let entry = e.context_get(&full, "team-a", "plan").await.unwrap();
        assert_eq!((entry.version, entry.agent_id.as_deref()), (1, Some("researcher-1")));
        // Change log and audit name the agent and the key.
        let changes = e.changes(&full, "team-a", 0, 100).await.unwrap();
        assert!(changes.iter().all(|c| c.actor.as_deref() == Some("researcher-1")), "{changes:?}");
        let audit = e
            .audit(&full, &AuditQuery { namespace: Some("team-a".into()), ..Default::default() }, 100)
            .await
            .unwrap();
        assert_eq!(audit.entries.len(), changes.len());
        for entry in &audit.entries {
            assert_eq!(entry.key_id, created.key.id);
            assert_eq!(entry.agent_id.as_deref(), Some("researcher-1"));
        }
        // Key creation is audited too, as `local` (the library's full access).
        let keys = e
            .audit(&full, &AuditQuery { action: Some(memoryd::ChangeKind::KeyCreated), ..Default::default() }, 100)
            .await
            .unwrap();
        assert_eq!(keys.entries.len(), 1);
        assert_eq!(keys.entries[0].key_id, "local");
        assert_eq!(keys.entries[0].target, vec![created.key.id.clone(), "researcher".to_owned()]);
        assert!(e.audit_verify(&full).await.unwrap().first_bad.is_none());
    });
}

#[test]
fn a_redacting_key_sees_masked_pii_everywhere_and_the_store_keeps_it() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let full = Access::full();
        let mut m = memoryd::NewMessage::new(
            memoryd::Role::User,
            "I am ann@example.com, call +1 415 555 0100, card 4111 1111 1111 1111",
        );
        m.metadata =
            serde_json::from_value(json!({"customer_id": "C-77", "channel": "chat"})).unwrap();
        let stored = e.add(&full, "support", m).await.unwrap();
        e.context_set(
            &full,
            "support",
            "contact",
            json!({"email": "ann@example.com", "n": 3}),
            Default::default(),
        )
        .await
        .unwrap();
        let created = e
            .create_key(
                &full,
                NewKey {
                    name: "l1".into(),
                    namespaces: vec!["support".into()],
                    scopes: vec![Scope::Read],
                    agent_id: None,
                    expires_at: None,
                    redact: Redaction {
                        pii: true,
                        fields: vec!["customer_id".into()],
                    },
                },
            )
            .await
            .unwrap();
        let app = server::router(AppState::ready(e.clone()), &ServerConfig::default());
        let t = Some(created.token.as_str());
        let masked = "I am [email], call [phone], card [card]";
        for (method, uri, body) in [
            ("GET", format!("/v1/messages/{}", stored.id), None),
            ("GET", "/v1/namespaces/support/recent".to_owned(), None),
            ("GET", "/v1/namespaces/support/messages".to_owned(), None),
            (
                "POST",
                "/v1/namespaces/support/search".to_owned(),
                Some(json!({"query": "ann@example.com", "k": 5})),
            ),
            ("GET", "/v1/namespaces/support/events".to_owned(), None),
        ] {
            let (s, body) = call(&app, method, &uri, t, body).await;
            assert_eq!(s, 200, "{uri}: {body}");
            assert!(body.contains(masked), "{uri}: {body}");
            assert!(
                !body.contains("ann@example.com")
                    && !body.contains("555 0100")
                    && !body.contains("4111"),
                "{uri}: {body}"
            );
            assert!(
                !body.contains("C-77") && body.contains("[redacted]"),
                "{uri}: {body}"
            );
            assert!(
                body.contains("\"channel\":\"chat\""),
                "{uri}: unlisted fields stay: {body}"
            );
        }
        for uri in [
            "/v1/namespaces/support/context/contact",
            "/v1/namespaces/support/context",
            "/v1/namespaces/support/context/contact/history",
        ] {
            let (s, body) = call(&app, "GET", uri, t, None).await;
            assert_eq!(s, 200, "{uri}: {body}");
            assert!(
                body.contains("[email]") && !body.contains("ann@example.com"),
                "{uri}: {body}"
            );
        }
        // Summaries, board items, namespace metadata, tree events, the
        // context entry without inheritance.
        e.summarize(&full, "support").await.unwrap();
        let problem = e
            .board_post(
                &full,
                "support",
                memoryd::NewProblem {
                    title: "refund for ann@example.com".into(),
                    body: "card 4111 1111 1111 1111 was charged twice".into(),
                    agent_id: None,
                },
            )
            .await
            .unwrap();
        let mut meta = serde_json::Map::new();
        meta.insert("customer_id".into(), json!("C-77"));
        e.put_namespace(&full, "support", None, meta).await.unwrap();
        for uri in [
            "/v1/namespaces/support/summaries".to_owned(),
            format!("/v1/namespaces/support/board/problems/{}", problem.id),
            "/v1/namespaces/support/board/problems".to_owned(),
            "/v1/namespaces/support".to_owned(),
            "/v1/namespaces/support/events?descendants=true".to_owned(),
            "/v1/namespaces/support/context/contact?inherit=false".to_owned(),
        ] {
            let (s, body) = call(&app, "GET", &uri, t, None).await;
            assert_eq!(s, 200, "{uri}: {body}");
            assert!(
                !body.contains("ann@example.com")
                    && !body.contains("4111")
                    && !body.contains("C-77"),
                "{uri}: {body}"
            );
        }
        // A failed precondition's current entry is masked too (a read+write key).
        let rw = e
            .create_key(
                &full,
                NewKey {
                    name: "l2".into(),
                    namespaces: vec!["support".into()],
                    scopes: vec![Scope::Read, Scope::Write],
                    agent_id: None,
                    expires_at: None,
                    redact: Redaction {
                        pii: true,
                        fields: vec![],
                    },
                },
            )
            .await
            .unwrap();
        let (s, body) = call(
            &app,
            "PUT",
            "/v1/namespaces/support/context/contact",
            Some(&rw.token),
            Some(json!({"value": 1, "expected_version": 99})),
        )
        .await;
        assert_eq!(s, 412, "{body}");
        assert!(
            body.contains("[email]") && !body.contains("ann@example.com"),
            "{body}"
        );
        // A write-only key reads nothing through a write: no current entry, no
        // merged value.
        let wo = key(&e, "writer", &["support"], &[Scope::Write]).await;
        let (s, body) = call(
            &app,
            "PUT",
            "/v1/namespaces/support/context/contact",
            Some(&wo),
            Some(json!({"value": 1, "expected_version": 99})),
        )
        .await;
        assert_eq!(s, 412, "{body}");
        assert!(
            !body.contains("ann@example.com") && !body.contains("[email]"),
            "{body}"
        );
        let (s, body) = call(
            &app,
            "PATCH",
            "/v1/namespaces/support/context/contact",
            Some(&wo),
            Some(json!({"value": {"n": 4}})),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["version"].clone(), v["value"].clone()),
            (json!(2), Value::Null),
            "{body}"
        );
        // The store is unchanged: full access reads the original.
        let original = e.get(&full, &stored.id).await.unwrap();
        assert!(original.content.contains("ann@example.com"));
        assert_eq!(original.metadata["customer_id"], "C-77");
    });
}

#[test]
fn audit_reads_records_context_reads_with_the_key() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EngineConfig::with_data_dir(dir.path());
        c.summarize.enabled = false;
        c.audit_reads = true;
        let e = Engine::open_with_embedder(c, Arc::new(HashEmbedder::new(16))).unwrap();
        let full = Access::full();
        e.context_set(&full, "ns", "k", json!(1), Default::default())
            .await
            .unwrap();
        let token = key(&e, "reader", &["ns"], &[Scope::Read]).await;
        let reader = e.authenticate(&token).unwrap();
        e.context_get(&reader, "ns", "k").await.unwrap();
        e.context_list(&reader, "ns", "", None, 10).await.unwrap();
        e.context_history(&reader, "ns", "k", 0, 10).await.unwrap();
        let reads = e
            .audit(
                &full,
                &AuditQuery {
                    action: Some(memoryd::ChangeKind::ContextRead),
                    ..Default::default()
                },
                100,
            )
            .await
            .unwrap();
        let targets: Vec<Vec<String>> = reads.entries.iter().map(|r| r.target.clone()).collect();
        assert_eq!(
            targets,
            vec![vec!["k".to_owned()], vec![], vec!["k".to_owned()]]
        );
        assert!(
            reads
                .entries
                .iter()
                .all(|r| r.key_id == reader.key_id.clone().unwrap() && r.namespace == "ns")
        );
        assert!(e.audit_verify(&full).await.unwrap().first_bad.is_none());
    });
}

#[test]
fn subtree_keys_follow_the_hierarchy_and_can_create_below_it() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let full = Access::full();
        let empty = serde_json::Map::new();
        e.create_namespace(&full, "org", None, empty.clone())
            .await
            .unwrap();
        e.create_namespace(&full, "team-a", Some("org"), empty.clone())
            .await
            .unwrap();
        e.create_namespace(&full, "team-b", Some("org"), empty.clone())
            .await
            .unwrap();
        let token = key(
            &e,
            "lead",
            &["team-a/**"],
            &[Scope::Read, Scope::Write, Scope::Admin],
        )
        .await;
        let lead = e.authenticate(&token).unwrap();
        // Creates a child of its subtree, which it then covers.
        e.create_namespace(&lead, "team-a-bot", Some("team-a"), empty.clone())
            .await
            .unwrap();
        e.add(
            &lead,
            "team-a-bot",
            memoryd::NewMessage::new(memoryd::Role::User, "hi"),
        )
        .await
        .unwrap();
        // Cannot adopt another namespace into its subtree, nor touch the parent.
        let err = e
            .put_namespace(&lead, "team-b", Some("team-a"), empty.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert_eq!(
            e.recent(&lead, "org", 5).await.unwrap_err().code(),
            "forbidden"
        );
        let names: Vec<String> = e.namespaces(&lead).into_iter().map(|n| n.name).collect();
        assert_eq!(names, vec!["team-a", "team-a-bot"]);
        // Moving a namespace out of the subtree takes it out of the key's reach.
        e.put_namespace(&full, "team-a-bot", Some("team-b"), empty.clone())
            .await
            .unwrap();
        assert_eq!(
            e.recent(&lead, "team-a-bot", 5).await.unwrap_err().code(),
            "forbidden"
        );
    });
}

mod property {
    use super::*;
    use proptest::prelude::*;

    /// A namespace name from a small alphabet, so patterns and names collide often.
    fn name() -> impl Strategy<Value = String> {
        proptest::sample::select(vec![
            "a",
            "b",
            "ab",
            "a-1",
            "a-2",
            "b-1",
            "ba",
            "tenant-7-x",
            "tenant-70",
        ])
        .prop_map(str::to_owned)
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            name(),
            name().prop_map(|n| format!("{n}/**")),
            name().prop_map(|n| format!("{n}*")),
            name().prop_map(|n| format!("*{n}")),
            Just("a-*".to_owned()),
            Just("tenant-7-*".to_owned()),
        ]
    }

    /// The reference: does `ns` match `p`, given `parent_of`?
    fn model(p: &str, ns: &str, parent_of: &std::collections::HashMap<String, String>) -> bool {
        if let Some(root) = p.strip_suffix("/**") {
            let mut cur = Some(ns.to_owned());
            while let Some(c) = cur {
                if c == root {
                    return true;
                }
                cur = parent_of.get(&c).cloned();
            }
            return false;
        }
        match (p.strip_prefix('*'), p.strip_suffix('*')) {
            (Some(suffix), _) => ns.ends_with(suffix),
            (_, Some(prefix)) => ns.starts_with(prefix),
            _ => p == ns,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
        #[test]
        fn a_key_never_reads_a_namespace_outside_its_patterns(
            parents in proptest::collection::vec((name(), name()), 0..6),
            patterns in proptest::collection::vec(pattern(), 1..3),
        ) {
            rt().block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let e = engine(dir.path());
                let full = Access::full();
                let all = ["a", "b", "ab", "a-1", "a-2", "b-1", "ba", "tenant-7-x", "tenant-70"];
                for ns in all {
                    e.add(&full, ns, memoryd::NewMessage::new(memoryd::Role::User, format!("in {ns}"))).await.unwrap();
                    // Only some define `k`, so lookups walk up the chain.
                    if ns.len() % 2 == 0 {
                        e.context_set(&full, ns, "k", json!(ns), Default::default()).await.unwrap();
                    }
                }
                // Random re-parentings; those that would close a cycle are refused.
                let mut parent_of = std::collections::HashMap::new();
                for (child, parent) in parents {
                    if e.put_namespace(&full, &child, Some(&parent), serde_json::Map::new()).await.is_ok() {
                        parent_of.insert(child, parent);
                    }
                }
                let token = e.create_key(&full, NewKey {
                    name: "p".into(),
                    namespaces: patterns.clone(),
                    scopes: vec![Scope::Read],
                    agent_id: None,
                    expires_at: None,
                    redact: Redaction::default(),
                }).await.unwrap().token;
                let key = e.authenticate(&token).unwrap();
                let listed: Vec<String> = e.namespaces(&key).into_iter().map(|n| n.name).collect();
                for ns in all {
                    let allowed = patterns.iter().any(|p| model(p, ns, &parent_of));
                    let read = e.recent(&key, ns, 5).await;
                    prop_assert_eq!(read.is_ok(), allowed, "recent {} with {:?} (parents {:?})", ns, patterns, parent_of);
                    let searched = e
                        .search(&key, ns, memoryd::SearchRequest::text("in", 50).with_scope(memoryd::SearchScope::Inherit))
                        .await;
                    prop_assert_eq!(searched.is_ok(), allowed, "search {}", ns);
                    prop_assert_eq!(listed.contains(&ns.to_owned()), allowed, "listing {}", ns);
                    if let Ok(hits) = searched {
                        for h in hits.hits {
                            prop_assert!(patterns.iter().any(|p| model(p, &h.namespace, &parent_of)), "inherited hit from {}", h.namespace);
                        }
                    }
                    // A ChainMap lookup never answers from an uncovered ancestor.
                    match e.context_lookup(&key, ns, "k").await {
                        Ok(entry) => prop_assert!(allowed && patterns.iter().any(|p| model(p, &entry.namespace, &parent_of))),
                        Err(err) => prop_assert_eq!(err.code(), if allowed { "not_found" } else { "forbidden" }),
                    }
                }
                Ok(())
            })?;
        }
    }
}
