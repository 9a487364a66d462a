//! The real binary on a free loopback port: store, search, restart, search again.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::repo_path;

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_memoryd"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--models-dir")
            .arg(repo_path("models"))
            .env("MEMORYD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("memoryd starts");
        let s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = reqwest::blocking::get(format!("{}/health", s.base))
                && r.status() == 200
            {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::blocking::get(format!("{}{path}", self.base)).unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn signal(mut self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not exit after {sig}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let before: Vec<Value> = queries
        .iter()
        .map(|q| {
            server
                .post("/v1/namespaces/e2e/search", json!({"query": q, "k": 3}))
                .1["hits"]
                .clone()
        })
        .collect();
    assert!(
        before[0][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("painted")
    );
    server.signal("-TERM");

    // Graceful restart: same hits (ids, order, scores).
    let server = Server::start(dir.path());
    let after: Vec<Value> = queries
        .iter()
        .map(|q| {
            server
                .post("/v1/namespaces/e2e/search", json!({"query": q, "k": 3}))
                .1["hits"]
                .clone()
        })
        .collect();
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
