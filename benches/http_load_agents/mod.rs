//! `http_load -- agents`: the agent-network figures on one server over loopback.
//!
//! 1. Registers 1,000 agents (synthetic cards: 40 specialities × 25 variants).
//! 2. Discovery: `GET /v1/agents/search?q=…&k=5` at concurrency 1 (p50/p95/p99).
//! 3. Direct messages, one sender and one recipient: send (`POST …/inbox`,
//!    acknowledged when durable) p50, and send → delivered: from just before
//!    the POST to the recipient's SSE subscription on `inbox:<id>` parsing the
//!    `message.added` event.
//! 4. 100 simulated agents at once, each every `--period-ms` (default 2000):
//!    send a message to a random peer, read its inbox, ack what it read, and
//!    recall context (search of a LoCoMo namespace); latency per operation.
//!
//! The design goals it reports against (message latency < 100 ms, context
//! retrieval < 50 ms, 100+ concurrent agents) come from the agent-network
//! design memoryd serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DOMAINS: [(&str, &str, &str); 40] = [
    (
        "data_analysis",
        "Analyses CSV exports and spreadsheets of sales and revenue",
        "csv",
    ),
    (
        "translation",
        "Translates documents between English, French, German and Spanish",
        "language",
    ),
    (
        "code_review",
        "Reviews pull requests for bugs and style problems",
        "code",
    ),
    (
        "travel",
        "Plans trips: flights, hotels and itineraries within a budget",
        "travel",
    ),
    (
        "legal",
        "Summarises contracts and flags risky clauses",
        "legal",
    ),
    (
        "support_l1",
        "Answers first-line customer support tickets",
        "support",
    ),
    (
        "support_l2",
        "Investigates escalated technical support cases",
        "support",
    ),
    (
        "billing",
        "Explains invoices, refunds and payment failures",
        "billing",
    ),
    (
        "scheduling",
        "Finds meeting slots across calendars and time zones",
        "calendar",
    ),
    (
        "research",
        "Searches papers and the web and writes literature summaries",
        "research",
    ),
    (
        "writing",
        "Drafts blog posts, reports and release notes",
        "writing",
    ),
    ("seo", "Optimises web pages for search engines", "marketing"),
    (
        "social_media",
        "Plans and writes social media campaigns",
        "marketing",
    ),
    ("recruiting", "Screens CVs and schedules interviews", "hr"),
    (
        "onboarding",
        "Walks new employees through accounts and policies",
        "hr",
    ),
    (
        "security_audit",
        "Scans infrastructure for vulnerabilities and misconfigurations",
        "security",
    ),
    (
        "incident_response",
        "Triages production incidents and pages on-call engineers",
        "ops",
    ),
    (
        "deployment",
        "Builds, tests and deploys services to Kubernetes",
        "ops",
    ),
    (
        "database_tuning",
        "Tunes slow SQL queries and indexes",
        "database",
    ),
    (
        "forecasting",
        "Forecasts demand and inventory from historical data",
        "data",
    ),
    (
        "image_generation",
        "Creates illustrations and product images from descriptions",
        "images",
    ),
    (
        "transcription",
        "Transcribes audio recordings and meetings",
        "audio",
    ),
    (
        "medical_triage",
        "Asks symptom questions and suggests the right care level",
        "health",
    ),
    ("nutrition", "Plans meals for diets and allergies", "health"),
    ("fitness", "Designs workout plans", "health"),
    (
        "tax",
        "Prepares tax returns and explains deductions",
        "finance",
    ),
    (
        "investing",
        "Analyses portfolios and market news",
        "finance",
    ),
    (
        "real_estate",
        "Compares properties, rents and mortgages",
        "housing",
    ),
    (
        "procurement",
        "Compares supplier quotes and drafts purchase orders",
        "purchasing",
    ),
    (
        "logistics",
        "Plans shipments, routes and delivery windows",
        "logistics",
    ),
    (
        "tutoring_math",
        "Tutors algebra and calculus step by step",
        "education",
    ),
    (
        "tutoring_language",
        "Teaches vocabulary and grammar with exercises",
        "education",
    ),
    (
        "ux_research",
        "Runs usability interviews and synthesises findings",
        "design",
    ),
    (
        "ui_design",
        "Designs screens and component libraries",
        "design",
    ),
    (
        "qa_testing",
        "Writes and runs end-to-end test plans",
        "testing",
    ),
    (
        "documentation",
        "Writes API references and tutorials",
        "writing",
    ),
    (
        "sales_outreach",
        "Writes cold e-mails and follows up with leads",
        "sales",
    ),
    (
        "crm_hygiene",
        "Deduplicates and enriches CRM contacts",
        "sales",
    ),
    (
        "event_planning",
        "Organises conferences, venues and catering",
        "events",
    ),
    (
        "compliance",
        "Checks processes against GDPR and SOC 2 controls",
        "compliance",
    ),
];

const QUERIES: [&str; 8] = [
    "who can analyse a CSV of sales",
    "I need this contract checked for risky clauses",
    "translate the manual into German",
    "our site is down, who handles incidents",
    "book a hotel in Lisbon next week",
    "find a time for a meeting across three time zones",
    "who writes release notes",
    "the SQL report query takes a minute",
];

fn pct(v: &mut [f64]) -> (f64, f64, f64) {
    let p = memoryd::eval::Percentiles::of(v);
    (p.p50, p.p95, p.p99)
}

fn print(name: &str, v: &mut [f64]) {
    let n = v.len();
    let (p50, p95, p99) = pct(v);
    println!("| {name} | {n} | {p50:.2} | {p95:.2} | {p99:.2} |");
}

fn card(i: usize) -> Value {
    let (skill, desc, tag) = DOMAINS[i % DOMAINS.len()];
    json!({
        "name": format!("{skill} agent {i}"),
        "description": format!("{desc} (instance {i})."),
        "version": "1.0.0",
        "supportedInterfaces": [{"url": format!("http://10.0.{}.{}:9000/a2a", i / 250, i % 250), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": skill, "name": skill.replace('_', " "), "description": desc, "tags": [tag]}],
    })
}

/// Runs the scenario against `base` (a fresh server with the LoCoMo namespace `load`).
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    seconds: u64,
    period_ms: u64,
    questions: Arc<Vec<String>>,
) {
    let started = Instant::now();
    for chunk in (0..1000usize).collect::<Vec<_>>().chunks(50) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (client, base) = (client.clone(), base.to_owned());
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/v1/agents"))
                    .json(&json!({"id": format!("agent-{i}"), "card": card(i)}))
                    .send()
                    .await
                    .expect("register");
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
            }));
        }
        for t in tasks {
            t.await.expect("register task");
        }
    }
    println!(
        "registered 1,000 agents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("| operation | n | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|");

    // Discovery at concurrency 1: repeated queries (their embeddings come from
    // the query cache) and queries made unique by a suffix (embedded each time).
    let mut hits_ok = 0usize;
    let mut n = 0usize;
    for unique in [false, true] {
        let mut lat = Vec::new();
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut i = 0;
        while Instant::now() < until {
            let q = if unique {
                format!("{} (request {i})", QUERIES[i % QUERIES.len()])
            } else {
                QUERIES[i % QUERIES.len()].to_owned()
            };
            let want = [
                "data_analysis",
                "legal",
                "translation",
                "incident_response",
                "travel",
                "scheduling",
                "writing",
                "database_tuning",
            ][i % QUERIES.len()];
            i += 1;
            let t = Instant::now();
            let r = client
                .get(format!("{base}/v1/agents/search"))
                .query(&[("q", q.as_str()), ("k", "5")])
                .send()
                .await
                .expect("search");
            let v: Value = r.json().await.expect("hits");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            n += 1;
            if v[0]["agent"]["card"]["skills"][0]["id"] == json!(want) {
                hits_ok += 1;
            }
        }
        let name = if unique {
            "discover, new query text (embedded)"
        } else {
            "discover, repeated queries (cached embedding)"
        };
        print(&format!("{name}, 1,000 agents, k 5"), &mut lat);
    }

    // Direct messages: send, and send -> delivered over SSE.
    let recipient = "agent-1";
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let sse = {
        let client = client.clone();
        let url = format!("{base}/v1/namespaces/inbox:{recipient}/events?types=message.added");
        tokio::spawn(async move {
            let mut resp = client
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await
                .expect("sse");
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                        let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                        if let Some(p) = v["data"]["content"].as_str() {
                            let _ = tx.send((p.to_owned(), Instant::now()));
                        }
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut send_ms, mut deliver_ms) = (Vec::new(), Vec::new());
    for k in 0..200 {
        let payload = format!("ping {k}: {}", questions[k % questions.len()]);
        let t = Instant::now();
        let r = client
            .post(format!("{base}/v1/agents/{recipient}/inbox"))
            .json(&json!({"from": "agent-0", "type": "ping", "payload": payload}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 201);
        send_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(Some((p, at))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            if p == payload {
                deliver_ms.push((at - t).as_secs_f64() * 1e3);
                break;
            }
        }
    }
    sse.abort();
    print("inbox send (durable)", &mut send_ms);
    print("inbox send -> delivered (SSE)", &mut deliver_ms);

    // 100 agents at once.
    let ops = ["send", "read inbox", "ack", "recall (search)"];
    let mut tasks = Vec::new();
    let until = Instant::now() + Duration::from_secs(seconds.max(10));
    for a in 0..100usize {
        let (client, base, questions) = (client.clone(), base.to_owned(), questions.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<Vec<f64>> = vec![Vec::new(); 4];
            let mut errors = 0usize;
            let me = format!("agent-{}", 100 + a);
            let mut k = a;
            // Spread the agents' starts over one period.
            tokio::time::sleep(Duration::from_millis(period_ms * a as u64 / 100)).await;
            while Instant::now() < until {
                let cycle = Instant::now();
                k = (k * 7 + 13) % 1000;
                let peer = format!("agent-{}", 100 + (k % 100));
                let q = &questions[k % questions.len()];
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/agents/{peer}/inbox"))
                    .json(&json!({"from": me, "type": "task", "payload": q, "priority": (k % 11) as u8}))
                    .send()
                    .await;
                if !matches!(&r, Ok(r) if r.status() == 201) { errors += 1; }
                lat[0].push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                let page: Value = match client.get(format!("{base}/v1/agents/{me}/inbox?limit=20")).send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => { errors += 1; Value::Null }
                };
                lat[1].push(t.elapsed().as_secs_f64() * 1e3);
                let ids: Vec<Value> = page["messages"].as_array().map(|m| m.iter().map(|m| m["id"].clone()).collect()).unwrap_or_default();
                if !ids.is_empty() {
                    let t = Instant::now();
                    let r = client.post(format!("{base}/v1/agents/{me}/inbox/ack")).json(&json!({"ids": ids})).send().await;
                    if !matches!(&r, Ok(r) if r.status() == 200) { errors += 1; }
                    lat[2].push(t.elapsed().as_secs_f64() * 1e3);
                }
                let t = Instant::now();
                let r = client.post(format!("{base}/v1/namespaces/load/search")).json(&json!({"query": q, "k": 5})).send().await;
                if !matches!(&r, Ok(r) if r.status() == 200) { errors += 1; }
                if let Ok(r) = r { let _ = r.bytes().await; }
                lat[3].push(t.elapsed().as_secs_f64() * 1e3);
                if let Some(rest) = Duration::from_millis(period_ms).checked_sub(cycle.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
            (lat, errors)
        }));
    }
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("agent");
        errors += e;
        for (i, l) in lat.into_iter().enumerate() {
            all[i].extend(l);
        }
    }
    for (i, op) in ops.iter().enumerate() {
        print(
            &format!("100 agents, one cycle per {period_ms} ms: {op}"),
            &mut all[i],
        );
    }
    println!(
        "discovery top-1 had the asked-for skill in {hits_ok} of {n} queries; errors under the 100-agent load: {errors}"
    );
}
