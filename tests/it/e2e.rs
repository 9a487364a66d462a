//! The real binary on a free loopback port: store, search, restart, search again.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::repo_path;
use crate::server::Server;

#[test]
fn binary_serves_restarts_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let queries = ["what did Caroline paint?", "who has a dog?", "hiking plans"];
    let server = Server::start(dir.path());
    let (s, v) = server.post(
        "/v1/namespaces/e2e/messages",
        json!({"messages": [
            {"role": "user", "name": "Caroline", "content": "I painted a lake at sunrise last week."},
            {"role": "assistant", "name": "Mel", "content": "Our dog Luna loves the park."},
            {"role": "user", "name": "Caroline", "content": "Let's go hiking in the mountains in June."}
        ]}),
    );
    assert_eq!(s, 201, "{v}");
    let hits = |server: &Server| -> Vec<Value> {
        queries
            .iter()
            .map(|q| {
                server
                    .post("/v1/namespaces/e2e/search", json!({"query": q, "k": 3}))
                    .1["hits"]
                    .clone()
            })
            .collect()
    };
    let before = hits(&server);
    assert!(
        before[0][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("painted")
    );
    server.signal("-TERM");

    // Graceful restart: same hits (ids, order, scores).
    let server = Server::start(dir.path());
    let after = hits(&server);
    assert_eq!(before, after);

    // An acknowledged write survives SIGKILL.
    let (s, v) = server.post(
        "/v1/namespaces/e2e/messages",
        json!({"messages": [{"role": "user", "content": "my passport number ends in 4471"}]}),
    );
    assert_eq!(s, 201);
    let id = v["ids"][0].as_str().unwrap().to_string();
    server.signal("-KILL");
    let server = Server::start(dir.path());
    let (s, v) = server.get(&format!("/v1/messages/{id}"));
    assert_eq!(s, 200, "{v}");
    let (_, v) = server.post(
        "/v1/namespaces/e2e/search",
        json!({"query": "passport number", "k": 1}),
    );
    assert_eq!(v["hits"][0]["id"], id.as_str());
    assert_eq!(server.get("/health").1["messages"], 4);
}

/// SIGKILL while summaries are being written: afterwards every acknowledged
/// message is covered by exactly one summary once the rest is summarized.
#[test]
fn kill_during_summarization_leaves_no_duplicate_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    for cycle in 0..4 {
        let server = Server::start_with(
            dir.path(),
            &["--summarize-every", "3", "--summarize-tick-ms", "2"],
        );
        for b in 0..8 {
            let msgs: Vec<Value> = (0..3)
                .map(|i| json!({"role": "user", "name": "Ana", "content": format!("cycle {cycle} batch {b} line {i}: we talked about trains and maps.")}))
                .collect();
            let (s, v) = server.post("/v1/namespaces/crash/messages", json!({"messages": msgs}));
            assert_eq!(s, 201, "{v}");
            acknowledged.extend(
                v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_string()),
            );
        }
        // Kill at a varying moment while the background summarizer works.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(u64::from(nanos % 150)));
        server.signal("-KILL");
    }
    let server = Server::start_with(dir.path(), &["--no-background-summarize"]);
    let (s, v) = server.post("/v1/namespaces/crash/summarize", json!({}));
    assert_eq!(s, 200, "{v}");
    let (_, v) = server.get("/v1/namespaces/crash/summaries");
    let mut covered = Vec::new();
    for summary in v["summaries"].as_array().unwrap() {
        covered.extend(
            summary["source_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string()),
        );
    }
    let unique: std::collections::HashSet<_> = covered.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        covered.len(),
        "a message was summarized twice"
    );
    let expected: std::collections::HashSet<_> = acknowledged.iter().cloned().collect();
    assert_eq!(
        unique, expected,
        "every acknowledged message is summarized once"
    );
    assert_eq!(server.get("/health").1["messages"], acknowledged.len());
}

/// `memoryd embed`: one JSON array per input line, in input order, matching the model.
#[test]
fn cli_embed_prints_one_vector_per_line() {
    let out = Command::new(crate::server::binary())
        .args(["embed", "hello", "a second, longer text"])
        .arg("--models-dir")
        .arg(repo_path("models"))
        .env("MEMORYD_LOG", "warn")
        .env("MEMORYD_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<f32>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let reference: Value = serde_json::from_slice(
        &std::fs::read(crate::common::repo_path(
            "tests/fixtures/minilm-reference.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let hello: Vec<f32> =
        serde_json::from_value(reference["items"][0]["embedding"].clone()).unwrap();
    assert_eq!(reference["items"][0]["text"], "hello");
    let cos: f32 = lines[0].iter().zip(&hello).map(|(a, b)| a * b).sum();
    assert!(cos > 0.9999, "cosine {cos}");
    assert!(lines[1].iter().zip(&hello).map(|(a, b)| a * b).sum::<f32>() < 0.9);
}

/// `memoryd ingest` streams a JSON Lines file in batches: a bad line stops it
/// with the line number and where to resume, the batches before it stay stored,
/// and resuming from that line stores the rest (nothing twice).
#[test]
fn cli_ingest_reports_where_to_resume_after_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(crate::server::binary())
            .args(args)
            .arg("--models-dir")
            .arg(repo_path("models"))
            .env("MEMORYD_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .env("MEMORYD_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap()
    };
    let ingest = |file: &std::path::Path| {
        run(&[
            "ingest",
            file.to_str().unwrap(),
            "--namespace",
            "n",
            "--batch",
            "3",
        ])
    };
    let line =
        |i: usize| format!(r#"{{"role":"user","content":"turn number {i} about gardening"}}"#);
    // Batches of 3: lines 1-3 are stored; line 4 is read but not yet written when
    // line 6 fails (line 5 is blank), so the resume point is line 4.
    let mut lines: Vec<String> = (1..=4).map(line).collect();
    lines.push(String::new()); // line 5
    lines.push("{not json".into()); // line 6
    lines.extend((7..=8).map(line));
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = ingest(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad line must fail the ingest");
    assert!(
        err.contains(":6: not a message") && err.contains("3 messages stored; resume from line 4"),
        "{err}"
    );
    let count = || -> usize {
        let out = run(&["recent", "--namespace", "n", "--limit", "100"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(
        count(),
        3,
        "the batch before the bad line is stored, no more"
    );
    // Resume from line 4 with the bad line dropped: lines 4, 7 and 8, the file
    // without a final newline.
    let rest = dir.path().join("rest.jsonl");
    let tail = [lines[3].as_str(), lines[6].as_str(), lines[7].as_str()];
    std::fs::write(&rest, tail.join("\n")).unwrap();
    let out = ingest(&rest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stored 3 messages"), "{err}");
    assert_eq!(count(), 6);
}

/// `memoryd context set|get|history` over one data directory: versions grow, a
/// stale `--expected-version` fails with a non-zero exit and changes nothing,
/// and `get` reads through the parent chain.
#[test]
fn cli_context_sets_reads_and_refuses_a_stale_version() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(crate::server::binary())
            .args(args)
            .arg("--models-dir")
            .arg(repo_path("models"))
            .env("MEMORYD_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .env("MEMORYD_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let json = |out: &std::process::Output| -> Vec<Value> {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let v1 = json(&run(&[
        "context",
        "set",
        "plan",
        r#"{"step":1}"#,
        "--namespace",
        "t",
        "--agent-id",
        "writer",
    ]));
    assert_eq!(
        (v1[0]["version"].as_u64(), v1[0]["agent_id"].as_str()),
        (Some(1), Some("writer"))
    );
    let stale = run(&[
        "context",
        "set",
        "plan",
        "2",
        "--namespace",
        "t",
        "--expected-version",
        "7",
    ]);
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("precondition failed"));
    json(&run(&[
        "context",
        "set",
        "plan",
        "plain words",
        "--namespace",
        "t",
        "--expected-version",
        "1",
    ]));
    let history = json(&run(&["context", "history", "plan", "--namespace", "t"]));
    let values: Vec<&Value> = history.iter().map(|v| &v["value"]).collect();
    assert_eq!(
        values,
        [
            &serde_json::json!({"step": 1}),
            &serde_json::json!("plain words")
        ]
    );
    let got = json(&run(&["context", "get", "plan", "--namespace", "t"]));
    assert_eq!(got[0]["version"], 2);
}

/// `memoryd board`: post, propose, vote (a negative vote is a value, not a
/// flag), resolve, show: each a separate process on one data directory.
#[test]
fn cli_board_posts_votes_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> Vec<Value> {
        let out = Command::new(crate::server::binary())
            .args(args)
            .args(["--namespace", "dbg"])
            .arg("--models-dir")
            .arg(repo_path("models"))
            .env("MEMORYD_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .env("MEMORYD_DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let p = run(&[
        "board",
        "post",
        "Build is red",
        "--body",
        "linker error on CI",
    ]);
    let pid = p[0]["id"].as_str().unwrap().to_owned();
    let a = run(&[
        "board",
        "propose",
        &pid,
        "pin the toolchain",
        "--confidence",
        "0.4",
    ]);
    let b = run(&[
        "board",
        "propose",
        &pid,
        "clear the cache",
        "--confidence",
        "0.7",
    ]);
    let (aid, bid) = (a[0]["id"].as_str().unwrap(), b[0]["id"].as_str().unwrap());
    run(&["board", "vote", aid, "1", "--agent-id", "x"]);
    let v = run(&["board", "vote", bid, "-1", "--agent-id", "x"]);
    assert_eq!(v[0]["score"], -1);
    let shown = run(&["board", "show", &pid]);
    assert_eq!(shown[0]["proposals"][0]["id"], aid, "{shown:?}");
    let r = run(&["board", "resolve", &pid, aid, "--expected-version", "1"]);
    assert_eq!(r[0]["status"], "resolved");
    let listed = run(&["board", "list", "--status", "resolved"]);
    assert_eq!(listed.len(), 1);
}
