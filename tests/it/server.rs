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
        Server::start_with_env(data_dir, extra, &[])
    }

    pub fn start_with_env(
        data_dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
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
            .envs(env.iter().copied())
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

/// An attacker on the same host opens many connections that each send half a
/// request header and then nothing (and some that send nothing at all). With a header-read timeout of 1 s and at
/// most 64 connections: a well-behaved client is still served (within a few
/// header timeouts), every half-open connection is closed by the server, and so
/// is an idle kept-alive one.
#[test]
fn half_open_and_idle_connections_are_closed_and_others_still_served() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--header-read-timeout-s", "1", "--max-connections", "64"],
    );
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut half_open = Vec::new();
    for _ in 0..300 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        half_open.push(s);
    }
    // And connections that send nothing at all.
    for _ in 0..50 {
        half_open.push(std::net::TcpStream::connect(&addr).unwrap());
    }
    // More connections than the server takes at once, all stalled: a good client
    // still gets its answer once the stalled ones time out.
    let started = Instant::now();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/health", server.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "served only after {waited:?}"
    );
    // Every half-open connection is closed by the server: a read returns EOF
    // or an error (reset), possibly after a 408, never blocks until our timeout.
    let mut still_open = 0;
    for s in &mut half_open {
        if still_open > 0 {
            break; // One is enough to fail; do not wait 10 s for each of the rest.
        }
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                // Our own read timeout: the server left it open.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    still_open += 1;
                    break;
                }
                // Reset by the server.
                Err(_) => break,
            }
        }
    }
    assert_eq!(
        still_open,
        0,
        "of {} half-open connections",
        half_open.len()
    );
    let mut probe = std::net::TcpStream::connect(&addr).unwrap();
    probe
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match probe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the idle kept-alive connection was not closed")
            }
            Err(_) => break,
        }
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // Answered, then kept alive idle, then closed by the header timeout (1 s).
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A request whose body stalls is answered (an error) and closed after the
/// body-read timeout instead of holding its connection and request permit.
#[test]
fn a_stalled_request_body_is_cut_off() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--body-read-timeout-s", "1"]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(
        b"POST /v1/namespaces/n/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\": [",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("a stalled body held the connection for 10 s")
            }
            Err(_) => break,
        }
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let head = String::from_utf8_lossy(&got);
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 4"), "{head}");
    let (_, health) = server.get("/health");
    assert_eq!(health["messages"], 0, "nothing stored");
}

/// Security errs closed: with no API keys, `serve` refuses a non-loopback
/// address unless told `--insecure-no-auth`.
#[test]
fn serving_a_non_loopback_address_without_auth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(crate::server::binary())
        .args(["serve", "--bind", &format!("0.0.0.0:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--models-dir")
        .arg(repo_path("models"))
        .env("MEMORYD_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
    // With the flag it starts and serves (here reached through loopback).
    let mut child = Command::new(crate::server::binary())
        .args([
            "serve",
            "--bind",
            &format!("0.0.0.0:{port}"),
            "--insecure-no-auth",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--models-dir")
        .arg(repo_path("models"))
        .env("MEMORYD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let healthy = loop {
        if let Ok(r) = reqwest::blocking::get(format!("http://127.0.0.1:{port}/health"))
            && r.status() == 200
        {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "memoryd --insecure-no-auth did not serve");
}
