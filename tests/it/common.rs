use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use memoryd::{Embedder, Engine, EngineConfig, ModelConfig, load_embedder};

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `../shared/...` beside the repository.
pub fn shared_path(rel: &str) -> PathBuf {
    repo_path("../shared").join(rel)
}

pub fn model_config() -> ModelConfig {
    ModelConfig {
        models_dir: repo_path("models"),
        ..ModelConfig::default()
    }
}

/// The default model, loaded once per test binary.
pub fn embedder() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    E.get_or_init(|| load_embedder(&model_config()).expect("model resolves and loads"))
        .clone()
}

/// Defaults, but no background summarization: tests of other areas should not
/// race summaries (tests/it/summarize.rs turns it on).
pub fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig {
        model: model_config(),
        ..EngineConfig::with_data_dir(dir)
    };
    c.summarize.enabled = false;
    c
}

pub fn open(dir: &std::path::Path) -> Engine {
    Engine::open_with_embedder(config(dir), embedder()).expect("engine opens")
}

/// A two-worker runtime, like the server's on this 2-core machine.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
