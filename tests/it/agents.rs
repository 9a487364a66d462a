//! The agent registry, discovery, mailboxes and topics through the library API,
//! with the real model (discovery ranks cards by meaning).

use std::time::Duration;

use memoryd::{
    Access, AgentFilter, AgentStatus, ChangeKind, Engine, Error, InboxAck, NamespacePattern,
    NewMail, Scope,
};
use serde_json::{Value, json};

use crate::common::{config, embedder, rt};

fn open_with(dir: &std::path::Path, timeout_ms: u64, gone_ms: u64) -> Engine {
    let mut c = config(dir);
    c.agent_timeout = Duration::from_millis(timeout_ms);
    c.agent_gone_after = Duration::from_millis(gone_ms);
    c.summarize.tick = Duration::from_millis(50);
    Engine::open_with_embedder(c, embedder()).unwrap()
}

fn open(dir: &std::path::Path) -> Engine {
    open_with(dir, 120_000, 1_200_000)
}

pub fn card(name: &str, description: &str, skills: &[(&str, &str, &[&str])]) -> Value {
    json!({
        "name": name,
        "description": description,
        "version": "1.0.0",
        "supportedInterfaces": [{"url": format!("http://127.0.0.1:9/{name}"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills.iter().map(|(id, d, tags)| json!({"id": id, "name": id, "description": d, "tags": tags})).collect::<Vec<_>>(),
    })
}

fn team() -> Vec<(&'static str, Value)> {
    vec![
        (
            "analyst",
            card(
                "analyst",
                "Crunches spreadsheets and sales figures; produces totals, trends and charts.",
                &[(
                    "data_analysis",
                    "Analyse tabular data such as CSV exports of revenue",
                    &["data", "csv"],
                )],
            ),
        ),
        (
            "translator",
            card(
                "translator",
                "Translates documents between English, French and German.",
                &[(
                    "translation",
                    "Translate text into another language",
                    &["language"],
                )],
            ),
        ),
        (
            "reviewer",
            card(
                "reviewer",
                "Reviews pull requests for bugs and style problems in Rust and Python code.",
                &[(
                    "code_review",
                    "Find defects in source code changes",
                    &["code"],
                )],
            ),
        ),
        (
            "planner",
            card(
                "planner",
                "Plans trips: flights, hotels and itineraries within a budget.",
                &[("travel", "Book and plan travel", &["travel"])],
            ),
        ),
        (
            "paralegal",
            card(
                "paralegal",
                "Summarises contracts and flags risky clauses.",
                &[("contracts", "Read legal agreements", &["legal"])],
            ),
        ),
    ]
}

fn mail(from: &str, kind: &str, payload: Value, priority: Option<u8>) -> NewMail {
    NewMail {
        from: Some(from.into()),
        kind: kind.into(),
        payload,
        correlation_id: None,
        priority,
        ttl_s: None,
    }
}

#[test]
fn agents_are_found_by_skill_tag_and_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let a = Access::full();
    rt().block_on(async {
        for (id, c) in team() {
            let rec = e.register_agent(&a, id, c).await.unwrap();
            assert_eq!(rec.status, AgentStatus::Healthy);
        }
        let by = |skill: Option<&str>, tag: Option<&str>| AgentFilter {
            skill: skill.map(Into::into),
            tag: tag.map(Into::into),
            status: None,
        };
        let ids = |p: memoryd::AgentPage| p.agents.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            ids(e
                .agents(&a, &by(Some("translation"), None), None, 10)
                .await
                .unwrap()),
            ["translator"]
        );
        assert_eq!(
            ids(e
                .agents(&a, &by(None, Some("CSV")), None, 10)
                .await
                .unwrap()),
            ["analyst"]
        );
        assert_eq!(
            ids(e
                .agents(&a, &AgentFilter::default(), None, 10)
                .await
                .unwrap())
            .len(),
            5
        );
        // Pages: two at a time, by id.
        let p1 = e
            .agents(&a, &AgentFilter::default(), None, 2)
            .await
            .unwrap();
        assert_eq!(ids(p1.clone()), ["analyst", "paralegal"]);
        let p2 = e
            .agents(&a, &AgentFilter::default(), p1.next.as_deref(), 2)
            .await
            .unwrap();
        assert_eq!(ids(p2), ["planner", "reviewer"]);
        for (q, want) in [
            ("who can analyse a CSV of sales", "analyst"),
            ("put this letter into French", "translator"),
            ("check my patch for mistakes", "reviewer"),
            ("I need a hotel in Lisbon next week", "planner"),
            ("is this NDA safe to sign", "paralegal"),
        ] {
            let hits = e
                .discover_agents(&a, q, 3, &AgentFilter::default())
                .await
                .unwrap();
            assert_eq!(
                hits[0].agent.id,
                want,
                "{q}: {:?}",
                hits.iter()
                    .map(|h| (&h.agent.id, h.score))
                    .collect::<Vec<_>>()
            );
        }
        // A filter applies after ranking.
        let hits = e
            .discover_agents(
                &a,
                "who can analyse a CSV of sales",
                3,
                &by(None, Some("legal")),
            )
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].agent.id, "paralegal");
        // Registrations are change-log entries of the registry namespace.
        let log = e.changes(&a, "agents", 0, 100).await.unwrap();
        assert_eq!(
            log.iter()
                .filter(|c| c.kind == ChangeKind::AgentRegistered)
                .count(),
            5
        );
        // Deregistration removes it from listings and discovery.
        e.deregister_agent(&a, "analyst").await.unwrap();
        let hits = e
            .discover_agents(
                &a,
                "who can analyse a CSV of sales",
                5,
                &AgentFilter::default(),
            )
            .await
            .unwrap();
        assert!(hits.iter().all(|h| h.agent.id != "analyst"));
        assert!(matches!(
            e.agent(&a, "analyst").await,
            Err(Error::NotFound { .. })
        ));
    });
    // Registrations survive a restart.
    drop(e);
    let e = open(dir.path());
    rt().block_on(async {
        let page = e
            .agents(&Access::full(), &AgentFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(page.agents.len(), 4);
    });
}

#[test]
fn a_silent_agent_turns_unhealthy_then_gone_and_a_heartbeat_revives_it() {
    let dir = tempfile::tempdir().unwrap();
    // Margins wide enough for a loaded CI machine (a stall longer than the
    // timeout would be a real silence).
    let e = open_with(dir.path(), 800, 2400);
    let a = Access::full();
    rt().block_on(async {
        let (id, c) = team().remove(0);
        e.register_agent(&a, id, c).await.unwrap();
        // Beating keeps it healthy past the timeout.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            e.agent_heartbeat(&a, id).await.unwrap();
        }
        assert_eq!(e.agent(&a, id).await.unwrap().status, AgentStatus::Healthy);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            e.agent(&a, id).await.unwrap().status,
            AgentStatus::Unhealthy
        );
        let unhealthy = AgentFilter {
            status: Some(AgentStatus::Unhealthy),
            ..Default::default()
        };
        assert_eq!(
            e.agents(&a, &unhealthy, None, 10)
                .await
                .unwrap()
                .agents
                .len(),
            1
        );
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert_eq!(e.agent(&a, id).await.unwrap().status, AgentStatus::Gone);
        // The background job recorded each change of health once.
        let kinds = |log: Vec<memoryd::Change>| log.into_iter().map(|c| c.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(e.changes(&a, "agents", 0, 100).await.unwrap()),
            [
                ChangeKind::NamespaceCreated,
                ChangeKind::AgentRegistered,
                ChangeKind::AgentUnhealthy,
                ChangeKind::AgentGone
            ]
        );
        let rec = e.agent_heartbeat(&a, id).await.unwrap();
        assert_eq!(rec.status, AgentStatus::Healthy);
        // Recorded right after the gone (a stall past the timeout later may
        // legitimately add agent.unhealthy again).
        assert_eq!(
            kinds(e.changes(&a, "agents", 0, 100).await.unwrap()).get(4),
            Some(&ChangeKind::AgentHealthy)
        );
        assert!(matches!(
            e.agent_heartbeat(&a, "nobody").await,
            Err(Error::NotFound { .. })
        ));
    });
}

#[test]
fn an_inbox_delivers_by_priority_then_age_until_acknowledged_also_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let a = Access::full();
    let (_, _, mid) = rt().block_on(async {
        let (id, c) = team().remove(0);
        e.register_agent(&a, id, c).await.unwrap();
        let low = e
            .send_mail(
                &a,
                "analyst",
                mail(
                    "writer",
                    "task",
                    json!("low: tidy the chart colours"),
                    Some(1),
                ),
            )
            .await
            .unwrap();
        let high = e
            .send_mail(
                &a,
                "analyst",
                mail(
                    "writer",
                    "task",
                    json!({"do": "Q3 revenue by region", "due": "today"}),
                    Some(9),
                ),
            )
            .await
            .unwrap();
        let mid = e
            .send_mail(
                &a,
                "analyst",
                mail("writer", "task", json!("mid: check the outliers"), None),
            )
            .await
            .unwrap();
        assert_eq!(mid.priority, 5);
        assert!(low.seq < high.seq && high.seq < mid.seq);
        let order =
            |p: memoryd::InboxPage| p.messages.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let page = e.inbox(&a, "analyst", "worker", 10).await.unwrap();
        assert_eq!(page.pending, 3);
        assert_eq!(
            page.messages[0].payload,
            json!({"do": "Q3 revenue by region", "due": "today"})
        );
        assert_eq!(
            order(page),
            [high.id.clone(), mid.id.clone(), low.id.clone()]
        );
        // Reading does not acknowledge.
        assert_eq!(
            e.inbox(&a, "analyst", "worker", 10).await.unwrap().pending,
            3
        );
        // Ack the high one by id: the others stay, in order.
        let st = e
            .inbox_ack(
                &a,
                "analyst",
                "worker",
                InboxAck {
                    upto: None,
                    ids: vec![high.id.clone()],
                },
            )
            .await
            .unwrap();
        assert_eq!(st.acked, [high.seq]);
        assert_eq!(
            order(e.inbox(&a, "analyst", "worker", 10).await.unwrap()),
            [mid.id.clone(), low.id.clone()]
        );
        // Acking the oldest slides `upto` over the already-acked one.
        let st = e
            .inbox_ack(
                &a,
                "analyst",
                "worker",
                InboxAck {
                    upto: None,
                    ids: vec![low.id.clone()],
                },
            )
            .await
            .unwrap();
        assert_eq!((st.upto, st.acked.as_slice()), (high.seq, &[][..]));
        // Another consumer of the same inbox has its own acknowledgements.
        assert_eq!(
            e.inbox(&a, "analyst", "auditor", 10).await.unwrap().pending,
            3
        );
        // A direct message is memory: searchable in the inbox namespace.
        let hits = e
            .search(
                &a,
                "inbox:analyst",
                memoryd::SearchRequest::text("revenue by region", 1),
            )
            .await
            .unwrap();
        assert_eq!(hits.hits[0].id, high.id);
        (low, high, mid)
    });
    drop(e);
    let e = open(dir.path());
    rt().block_on(async {
        let page = e.inbox(&a, "analyst", "worker", 10).await.unwrap();
        assert_eq!(
            page.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
            [&mid.id]
        );
        e.inbox_ack(
            &a,
            "analyst",
            "worker",
            InboxAck {
                upto: Some(mid.seq),
                ids: vec![],
            },
        )
        .await
        .unwrap();
        assert_eq!(
            e.inbox(&a, "analyst", "worker", 10).await.unwrap().pending,
            0
        );
        // An id from another inbox is refused, and nothing changes.
        e.register_agent(&a, "planner", team().remove(3).1)
            .await
            .unwrap();
        let other = e
            .send_mail(
                &a,
                "planner",
                mail("writer", "task", json!("book Lisbon"), None),
            )
            .await
            .unwrap();
        let err = e
            .inbox_ack(
                &a,
                "analyst",
                "auditor",
                InboxAck {
                    upto: None,
                    ids: vec![other.id],
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert_eq!(
            e.inbox(&a, "analyst", "auditor", 10).await.unwrap().pending,
            3
        );
    });
}

#[test]
fn expired_mail_is_never_delivered_and_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let a = Access::full();
    rt().block_on(async {
        e.register_agent(&a, "analyst", team().remove(0).1)
            .await
            .unwrap();
        let mut m = mail("writer", "ping", json!("are you there"), None);
        m.ttl_s = Some(1);
        let short = e.send_mail(&a, "analyst", m).await.unwrap();
        let kept = e
            .send_mail(&a, "analyst", mail("writer", "task", json!("stays"), None))
            .await
            .unwrap();
        assert!(short.expires_at.is_some());
        assert_eq!(
            e.inbox(&a, "analyst", "default", 10).await.unwrap().pending,
            2
        );
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let page = e.inbox(&a, "analyst", "default", 10).await.unwrap();
        assert_eq!(
            page.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
            [&kept.id]
        );
        // The background job deletes it from the store (its id no longer resolves).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while e.get(&a, &short.id).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "expired mail was not swept"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(e.get(&a, &kept.id).await.is_ok());
    });
}

#[test]
fn keys_bound_to_an_agent_act_only_as_that_agent_and_bad_mail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let admin = Access::full();
    let all = || vec![NamespacePattern::parse("*").unwrap()];
    let writer = Access::new(all(), &[Scope::Read, Scope::Write]).with_agent("writer");
    let outsider = Access::new(
        vec![NamespacePattern::parse("agents").unwrap()],
        &[Scope::Read, Scope::Write],
    );
    rt().block_on(async {
        e.register_agent(&admin, "analyst", team().remove(0).1)
            .await
            .unwrap();
        // Registering or beating for another agent: 403.
        let err = e
            .register_agent(&writer, "analyst", team().remove(0).1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        assert!(matches!(
            e.agent_heartbeat(&writer, "analyst").await,
            Err(Error::Forbidden(_))
        ));
        // Sending as another agent: 403; without naming one, stamped.
        let err = e
            .send_mail(
                &writer,
                "analyst",
                mail("analyst", "task", json!("x"), None),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        let mut m = mail("writer", "task", json!("draft ready"), None);
        m.from = None;
        assert_eq!(
            e.send_mail(&writer, "analyst", m).await.unwrap().from,
            "writer"
        );
        // No write on the inbox: 403, even with write on the registry.
        let err = e
            .send_mail(&outsider, "analyst", mail("x", "task", json!("x"), None))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        // Nor may it read someone's inbox.
        assert!(matches!(
            e.inbox(&outsider, "analyst", "default", 10).await,
            Err(Error::Forbidden(_))
        ));
        // A deregistration of another agent needs `delete`.
        assert!(matches!(
            e.deregister_agent(&outsider, "analyst").await,
            Err(Error::Forbidden(_))
        ));
        // Bad mail: each a 4xx naming its field, nothing stored.
        for (m, field) in [
            (
                NewMail {
                    priority: Some(11),
                    ..mail("w", "task", json!("x"), None)
                },
                "priority",
            ),
            (
                NewMail {
                    ttl_s: Some(0),
                    ..mail("w", "task", json!("x"), None)
                },
                "ttl_s",
            ),
            (
                NewMail {
                    from: None,
                    ..mail("w", "task", json!("x"), None)
                },
                "from",
            ),
            (mail("w", "", json!("x"), None), "type"),
            (mail("w", "task", Value::Null, None), "payload"),
            (mail("bad id!", "task", json!("x"), None), "from"),
        ] {
            match e.send_mail(&admin, "analyst", m).await {
                Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let err = e
            .send_mail(&admin, "nobody", mail("w", "task", json!("x"), None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound { what: "agent", .. }),
            "{err}"
        );
        assert_eq!(
            e.inbox(&admin, "analyst", "default", 10)
                .await
                .unwrap()
                .pending,
            1
        );
        // A card missing a required member names it.
        let mut c = team().remove(1).1;
        c.as_object_mut().unwrap().remove("skills");
        match e.register_agent(&admin, "translator", c).await {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "card.skills"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_topic_message_reaches_subscribers_as_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let a = Access::full();
    rt().block_on(async {
        let sent = e
            .publish(
                &a,
                "broadcast",
                mail("ops", "notice", json!("deploy freeze at 17:00"), None),
            )
            .await
            .unwrap();
        let events = e
            .events(&a, "topic:broadcast", 0, 10, &Default::default())
            .await
            .unwrap();
        let added: Vec<_> = events
            .events
            .iter()
            .filter(|ev| ev.kind == ChangeKind::MessageAdded)
            .collect();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].data["id"], json!(sent.id));
        assert_eq!(added[0].data["metadata"]["mail"]["from"], json!("ops"));
        assert!(matches!(
            e.publish(&a, "bad/topic", mail("ops", "n", json!("x"), None))
                .await,
            Err(Error::InvalidInput { .. })
        ));
    });
}

/// Over HTTP with the real binary: the server is killed (-9) after delivering a
/// direct message and before the ack, so the message comes again after the
/// restart; once acknowledged it never comes again, also after another kill.
#[test]
fn a_recipient_killed_between_delivery_and_ack_gets_the_message_again_and_never_after_ack() {
    use crate::server::Server;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (s, _) = server.post(
        "/v1/agents",
        json!({"id": "analyst", "card": team().remove(0).1}),
    );
    assert_eq!(s, 201);
    let (s, sent) = server.post(
        "/v1/agents/analyst/inbox",
        json!({"from": "writer", "type": "task", "payload": "total Q3 sales", "correlation_id": "req-1", "priority": 7}),
    );
    assert_eq!(s, 201, "{sent}");
    let (s, page) = server.get("/v1/agents/analyst/inbox?consumer=worker");
    assert_eq!(s, 200);
    assert_eq!(page["messages"][0]["id"], sent["id"]);
    assert_eq!(page["messages"][0]["correlation_id"], json!("req-1"));
    server.signal("-9");

    let server = Server::start(dir.path());
    let (_, page) = server.get("/v1/agents/analyst/inbox?consumer=worker");
    assert_eq!(page["pending"], json!(1), "{page}");
    assert_eq!(page["messages"][0]["id"], sent["id"]);
    let (s, st) = server.post(
        "/v1/agents/analyst/inbox/ack?consumer=worker",
        json!({"ids": [sent["id"]]}),
    );
    assert_eq!(s, 200, "{st}");
    // The reply goes to the sender's inbox with the same correlation id.
    let (s, _) = server.post(
        "/v1/agents",
        json!({"id": "writer", "card": card("writer", "Writes reports", &[("writing", "Write prose", &["text"])])}),
    );
    assert_eq!(s, 201);
    let (s, _) = server.post(
        "/v1/agents/writer/inbox",
        json!({"from": "analyst", "type": "reply", "payload": {"total": 1234}, "correlation_id": "req-1"}),
    );
    assert_eq!(s, 201);
    server.signal("-9");

    let server = Server::start(dir.path());
    let (_, page) = server.get("/v1/agents/analyst/inbox?consumer=worker");
    assert_eq!(page["pending"], json!(0), "{page}");
    let (_, page) = server.get("/v1/agents/writer/inbox");
    assert_eq!(page["messages"][0]["payload"], json!({"total": 1234}));
    assert_eq!(page["messages"][0]["correlation_id"], json!("req-1"));
    // Bad input over HTTP: stable codes.
    let (s, body) = server.post(
        "/v1/agents/analyst/inbox",
        json!({"from": "w", "type": "t", "payload": "x", "priority": 11}),
    );
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("invalid_value")),
        "{body}"
    );
    let (s, body) = server.post(
        "/v1/agents/ghost/inbox",
        json!({"from": "w", "type": "t", "payload": "x"}),
    );
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (s, body) = server.post("/v1/agents", json!({"id": "x", "card": {"name": "x"}}));
    assert_eq!(s, 422, "{body}");
    let (s, body) = server.get("/v1/agents/search?q=sales%20spreadsheets&k=1");
    assert_eq!(s, 200, "{body}");
    assert_eq!(body[0]["agent"]["id"], json!("analyst"));
}

/// Review findings, each a test: a plain message write with a forged `mail`
/// member is not mail; a key bound to one agent cannot read or ack another's
/// inbox; `upto` past the newest message is refused; non-mail messages do not
/// stall the acknowledgement cursor; a registered card is replaced only by its
/// agent or a `delete` key; a redacting key reads masked payloads.
#[test]
fn mail_cannot_be_forged_stolen_or_silenced_and_payloads_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let admin = Access::full();
    let all = || vec![NamespacePattern::parse("*").unwrap()];
    let writer = Access::new(all(), &[Scope::Read, Scope::Write]).with_agent("writer");
    let orchestrator = Access::new(all(), &[Scope::Read, Scope::Write]);
    rt().block_on(async {
        e.register_agent(&admin, "analyst", team().remove(0).1)
            .await
            .unwrap();
        // Forged: a plain message in the inbox claiming to be mail from "admin".
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "mail".into(),
            json!({"from": "admin", "type": "task", "priority": 10}),
        );
        let forged = memoryd::NewMessage {
            role: memoryd::Role::User,
            name: None,
            content: "rm -rf /".into(),
            timestamp: None,
            agent_id: None,
            session_id: None,
            metadata,
        };
        e.add(&writer, "inbox:analyst", forged).await.unwrap();
        let real = e
            .send_mail(
                &writer,
                "analyst",
                mail(
                    "writer",
                    "task",
                    json!("mail ann@example.com the totals"),
                    None,
                ),
            )
            .await
            .unwrap();
        let page = e.inbox(&admin, "analyst", "default", 10).await.unwrap();
        assert_eq!(
            page.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
            [&real.id]
        );
        // Another agent's key can neither read nor ack the analyst's inbox.
        assert!(matches!(
            e.inbox(&writer, "analyst", "default", 10).await,
            Err(Error::Forbidden(_))
        ));
        let err = e
            .inbox_ack(
                &writer,
                "analyst",
                "default",
                InboxAck {
                    upto: Some(real.seq),
                    ids: vec![],
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        // Nor can anyone silence it with an `upto` beyond its newest message.
        let err = e
            .inbox_ack(
                &admin,
                "analyst",
                "default",
                InboxAck {
                    upto: Some(u64::MAX),
                    ids: vec![],
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert_eq!(
            e.inbox(&admin, "analyst", "default", 10)
                .await
                .unwrap()
                .pending,
            1
        );
        // Acking the real mail slides `upto` over the non-mail message before it.
        let st = e
            .inbox_ack(
                &admin,
                "analyst",
                "default",
                InboxAck {
                    upto: None,
                    ids: vec![real.id.clone()],
                },
            )
            .await
            .unwrap();
        assert_eq!((st.upto, st.acked.len()), (real.seq, 0));
        // A redacting reader sees the payload masked.
        let mut masked = Access::new(all(), &[Scope::Read]);
        masked.redaction = Some(std::sync::Arc::new(memoryd::Redaction {
            pii: true,
            ..Default::default()
        }));
        let page = e.inbox(&masked, "analyst", "other", 10).await.unwrap();
        assert_eq!(page.messages[0].payload, json!("mail [email] the totals"));
        // Replacing a registered card: not by another write key; by the agent or `delete`.
        let err = e
            .register_agent(&orchestrator, "analyst", team().remove(1).1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        let own = Access::new(all(), &[Scope::Write]).with_agent("analyst");
        e.register_agent(&own, "analyst", team().remove(0).1)
            .await
            .unwrap();
        // A new id is fine for a write key.
        e.register_agent(&orchestrator, "translator", team().remove(1).1)
            .await
            .unwrap();
    });
}

#[test]
fn an_agent_gone_before_a_restart_stays_gone_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), 150, 300);
    let a = Access::full();
    rt().block_on(async {
        e.register_agent(&a, "analyst", team().remove(0).1)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !e
            .changes(&a, "agents", 0, 100)
            .await
            .unwrap()
            .iter()
            .any(|c| c.kind == ChangeKind::AgentGone)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "agent.gone was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    drop(e);
    let e = open_with(dir.path(), 150, 300);
    rt().block_on(async {
        assert_eq!(
            e.agent(&a, "analyst").await.unwrap().status,
            AgentStatus::Gone
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let kinds: Vec<_> = e
            .changes(&a, "agents", 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.kind)
            .collect();
        assert!(!kinds.contains(&ChangeKind::AgentHealthy), "{kinds:?}");
    });
}
