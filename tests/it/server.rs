//! The real `memoryd serve` binary on a free loopback port, driven over HTTP.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::repo_path;

/// The `memoryd` binary under test: `MEMORYD_BIN` when set (to run a long test
/// against a copy while the tree is rebuilt), else the one cargo built.
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("MEMORYD_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_memoryd").into())
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data_dir: &std::path::Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &std::path::Path, extra: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(crate::server::binary())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--models-dir")
            .arg(repo_path("models"))
            .args(extra)
            .env("MEMORYD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("memoryd starts");
        let mut s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("memoryd exited during start-up: {status}");
            }
            if let Ok(r) = reqwest::blocking::get(format!("{}/health", s.base))
                && r.status() == 200
            {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::blocking::get(format!("{}{path}", self.base)).unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    pub fn signal(mut self, sig: &str) {
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
