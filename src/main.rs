//! `memoryd`: the server and command line over the [`memoryd::Engine`].

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

#[path = "cli/audit.rs"]
mod audit_cli;
#[path = "cli/board.rs"]
mod board_cli;
#[path = "cli/context.rs"]
mod context_cli;
#[path = "cli/eval.rs"]
mod eval_cli;
#[path = "cli/keys.rs"]
mod keys_cli;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use memoryd::server::{self, AppState, ServerConfig};
use memoryd::summarize::LlmConfig;

/// mimalloc instead of the system allocator. An HNSW graph is millions of
/// small allocations (hnsw_rs holds each neighbour link in an `Arc` of 32
/// bytes, which glibc's malloc pads to 48); mimalloc's size classes carry no
/// per-allocation header. Measured with `cargo bench --bench scale` (README,
/// "One node at scale"). Feature `mimalloc` (default); without it the system
/// allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use memoryd::{
    Access, Engine, EngineConfig, HybridParams, IndexConfig, Limits, ModelConfig, NewMessage,
    SearchMode, SearchRequest, SummarizeConfig,
};

/// Semantic conversation memory for AI agents: local embeddings, persistent, millisecond search.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct EngineArgs {
    /// Data directory (created if missing).
    /// [default: memoryd-data]
    #[arg(long, global = true, env = "MEMORYD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Model name from models/manifest.toml.
    #[arg(long, global = true, env = "MEMORYD_MODEL", default_value = memoryd::embed::model::DEFAULT_MODEL)]
    model: String,
    /// A sentence-transformers folder (any BERT-family model) to use instead of resolving --model.
    #[arg(long, global = true, env = "MEMORYD_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Where models are unpacked as <name>/.
    #[arg(long, global = true, env = "MEMORYD_MODELS_DIR", default_value_os_t = ModelConfig::default().models_dir)]
    models_dir: PathBuf,
    /// Texts per forward pass of the model.
    #[arg(long, global = true, env = "MEMORYD_BATCH_SIZE", default_value_t = ModelConfig::default().batch_size)]
    batch_size: usize,
    /// Forward pass: auto (the optimized one when it supports the model), fast, or candle (reference).
    #[arg(long, global = true, env = "MEMORYD_BACKEND", default_value = "auto")]
    backend: memoryd::embed::Backend,
    /// Weights of the fast forward pass: f16 (half the memory traffic; f32
    /// arithmetic), f32, or auto (f16 where the CPU has a SIMD f16 kernel).
    #[arg(long, global = true, env = "MEMORYD_WEIGHTS", default_value = "auto")]
    weights: memoryd::embed::gemm::WeightFormat,
    /// Messages kept per namespace in the short-term buffer.
    #[arg(long, global = true, env = "MEMORYD_SHORT_TERM_CAPACITY", default_value_t = EngineConfig::default().short_term_capacity)]
    short_term_capacity: usize,
    /// Namespaces with this many vectors or more are searched through an HNSW graph.
    #[arg(long, global = true, env = "MEMORYD_EXACT_THRESHOLD", default_value_t = IndexConfig::default().exact_threshold)]
    exact_threshold: usize,
    /// HNSW M (links per node).
    #[arg(long, global = true, env = "MEMORYD_HNSW_M", default_value_t = IndexConfig::default().m)]
    hnsw_m: usize,
    /// HNSW ef_construction.
    #[arg(long, global = true, env = "MEMORYD_EF_CONSTRUCTION", default_value_t = IndexConfig::default().ef_construction)]
    ef_construction: usize,
    /// HNSW ef_search.
    #[arg(long, global = true, env = "MEMORYD_EF_SEARCH", default_value_t = IndexConfig::default().ef_search)]
    ef_search: usize,
    /// Threads that build HNSW graphs (0: all cores but one, so building never
    /// takes the core that embeds queries).
    #[arg(long, global = true, env = "MEMORYD_INDEX_THREADS", default_value_t = IndexConfig::default().build_threads)]
    index_threads: usize,
    /// Keep the state in PostgreSQL instead of the embedded store under
    /// --data-dir: a postgres://user@host:port/db URL (pgvector must be
    /// installable there). Graph dumps stay under --data-dir.
    #[arg(long, global = true, env = "MEMORYD_STORE", hide_env_values = true)]
    store: Option<String>,
    /// With --store shared by several nodes: seconds between polls of the
    /// registry for other nodes' writes whose notice was lost (notices are
    /// followed at once).
    #[arg(
        long,
        global = true,
        env = "MEMORYD_FOLLOW_INTERVAL_S",
        default_value_t = 5
    )]
    follow_interval_s: u64,
    /// With --store postgres://…: rank in this node's memory (vectors and HNSW
    /// graphs of every namespace held here, as with the embedded store) instead
    /// of in PostgreSQL with pgvector. Faster searches, RAM for every vector.
    #[arg(long, global = true, env = "MEMORYD_IN_MEMORY_INDEX")]
    in_memory_index: bool,
    /// Do not save HNSW graphs under <data-dir>/graphs (a restart then rebuilds
    /// them in the background, serving those namespaces by exact scan meanwhile).
    #[arg(long, global = true, env = "MEMORYD_NO_GRAPH_DUMPS")]
    no_graph_dumps: bool,
    /// Hybrid search: weight of the normalized BM25 score (0..=1; the rest is cosine).
    #[arg(long, global = true, env = "MEMORYD_LEXICAL_WEIGHT", default_value_t = HybridParams::default().lexical_weight)]
    lexical_weight: f32,
    /// Hybrid search: share of the best neighbouring turn's score added to a turn (0..=1).
    #[arg(long, global = true, env = "MEMORYD_NEIGHBOR_WEIGHT", default_value_t = HybridParams::default().neighbor_weight)]
    neighbor_weight: f32,
    /// Hybrid search: a turn borrows no neighbour score from a neighbour it is more than this
    /// many times longer than (0: off).
    #[arg(long, global = true, env = "MEMORYD_NEIGHBOR_LENGTH_RATIO", default_value_t = HybridParams::default().neighbor_length_ratio)]
    neighbor_length_ratio: f32,
    /// Hybrid search: a turn longer than this many analyzed terms borrows no neighbour
    /// score (0: no cap).
    #[arg(long, global = true, env = "MEMORYD_NEIGHBOR_MAX_TERMS", default_value_t = HybridParams::default().neighbor_max_terms)]
    neighbor_max_terms: u32,
    /// Hybrid search: weight of the best score in a turn's session, added to the turn (0..=2).
    #[arg(long, global = true, env = "MEMORYD_SESSION_WEIGHT", default_value_t = HybridParams::default().session_weight)]
    session_weight: f32,
    /// Hybrid search: candidates taken from each channel (dense and BM25) before fusion
    /// (at least k).
    #[arg(long, global = true, env = "MEMORYD_HYBRID_CANDIDATES", default_value_t = HybridParams::default().candidates)]
    hybrid_candidates: usize,
    /// Query embeddings cached (LRU by exact text); 0 disables the cache.
    #[arg(long, global = true, env = "MEMORYD_QUERY_CACHE", default_value_t = EngineConfig::default().query_cache_capacity)]
    query_cache: usize,
    /// Embedding requests that may wait before new ones are answered 429.
    #[arg(long, global = true, env = "MEMORYD_EMBED_QUEUE", default_value_t = EngineConfig::default().embed_queue_capacity)]
    embed_queue: usize,
    /// Writes and summaries are embedded in slices of about this many tokens; a
    /// search query waits for at most one slice (smaller: shorter waits during
    /// imports, slightly slower imports).
    #[arg(long, global = true, env = "MEMORYD_EMBED_SLICE_TOKENS", default_value_t = EngineConfig::default().embed_slice_tokens)]
    embed_slice_tokens: usize,
    /// Messages per add request.
    #[arg(long, global = true, env = "MEMORYD_MAX_MESSAGES_PER_REQUEST", default_value_t = Limits::default().max_messages_per_request)]
    max_messages_per_request: usize,
    /// Bytes per message content.
    #[arg(long, global = true, env = "MEMORYD_MAX_CONTENT_BYTES", default_value_t = Limits::default().max_content_bytes)]
    max_content_bytes: usize,
    /// Summarize once this many messages of a namespace are unsummarized.
    #[arg(long, global = true, env = "MEMORYD_SUMMARIZE_EVERY", default_value_t = SummarizeConfig::default().every)]
    summarize_every: usize,
    /// ... or once the oldest unsummarized message is this many seconds old.
    #[arg(long, global = true, env = "MEMORYD_SUMMARIZE_AFTER_S", default_value_t = SummarizeConfig::default().after.as_secs())]
    summarize_after_s: u64,
    /// How often the background summarizer checks its triggers, in milliseconds.
    #[arg(long, global = true, env = "MEMORYD_SUMMARIZE_TICK_MS", default_value_t = SummarizeConfig::default().tick.as_millis() as u64)]
    summarize_tick_ms: u64,
    /// Seconds without a heartbeat after which a registered agent is `unhealthy`.
    #[arg(long, global = true, env = "MEMORYD_AGENT_TIMEOUT_S", default_value_t = EngineConfig::default().agent_timeout.as_secs())]
    agent_timeout_s: u64,
    /// Seconds without a heartbeat after which a registered agent is `gone`
    /// [default: 10 × --agent-timeout-s].
    #[arg(long, global = true, env = "MEMORYD_AGENT_GONE_S")]
    agent_gone_s: Option<u64>,
    /// No background summarization (POST .../summarize still works).
    #[arg(long, global = true, env = "MEMORYD_NO_BACKGROUND_SUMMARIZE")]
    no_background_summarize: bool,
    /// Delete summarized messages (text and vectors) once their summary is written.
    #[arg(long, global = true, env = "MEMORYD_EVICT_SUMMARIZED")]
    evict_summarized: bool,
    /// OpenAI-compatible chat endpoint for abstractive summaries, e.g. http://127.0.0.1:11434/v1
    /// (extractive when unset, and as the fallback on any failure).
    #[arg(long, global = true, env = "MEMORYD_LLM_BASE_URL")]
    llm_base_url: Option<String>,
    /// Chat model name for --llm-base-url.
    #[arg(
        long,
        global = true,
        env = "MEMORYD_LLM_MODEL",
        default_value = "llama3.2"
    )]
    llm_model: String,
    /// Bearer token for --llm-base-url (prefer the environment variable; never logged).
    #[arg(
        long,
        global = true,
        env = "MEMORYD_LLM_API_KEY",
        hide_env_values = true
    )]
    llm_api_key: Option<String>,
    /// Timeout of one chat request, in seconds.
    #[arg(
        long,
        global = true,
        env = "MEMORYD_LLM_TIMEOUT_S",
        default_value_t = 30
    )]
    llm_timeout_s: u64,
}

impl EngineArgs {
    fn config(&self) -> EngineConfig {
        EngineConfig {
            data_dir: self.data_dir(),
            model: self.model_config(),
            index: IndexConfig {
                exact_threshold: self.exact_threshold,
                m: self.hnsw_m,
                ef_construction: self.ef_construction,
                ef_search: self.ef_search,
                build_threads: self.index_threads,
                ..IndexConfig::default()
            },
            store_url: self.store.clone(),
            follow_interval: Duration::from_secs(self.follow_interval_s.max(1)),
            in_memory_index: self.in_memory_index,
            short_term_capacity: self.short_term_capacity,
            embed_queue_capacity: self.embed_queue,
            embed_slice_tokens: self.embed_slice_tokens,
            limits: Limits {
                max_messages_per_request: self.max_messages_per_request,
                max_content_bytes: self.max_content_bytes,
                ..Limits::default()
            },
            summarize: SummarizeConfig {
                enabled: !self.no_background_summarize,
                every: self.summarize_every,
                after: Duration::from_secs(self.summarize_after_s),
                tick: Duration::from_millis(self.summarize_tick_ms.max(1)),
                evict_summarized: self.evict_summarized,
                llm: self.llm_base_url.clone().map(|base_url| LlmConfig {
                    base_url,
                    model: self.llm_model.clone(),
                    api_key: self.llm_api_key.clone(),
                    timeout: Duration::from_secs(self.llm_timeout_s),
                }),
            },
            hybrid: HybridParams {
                lexical_weight: self.lexical_weight,
                neighbor_weight: self.neighbor_weight,
                neighbor_length_ratio: self.neighbor_length_ratio,
                neighbor_max_terms: self.neighbor_max_terms,
                session_weight: self.session_weight,
                candidates: self.hybrid_candidates,
                ..HybridParams::default()
            },
            query_cache_capacity: self.query_cache,
            persist_graphs: !self.no_graph_dumps,
            agent_timeout: Duration::from_secs(self.agent_timeout_s.max(1)),
            agent_gone_after: Duration::from_secs(
                self.agent_gone_s
                    .unwrap_or(self.agent_timeout_s.saturating_mul(10))
                    .max(self.agent_timeout_s.max(1)),
            ),
            ..EngineConfig::default()
        }
    }

    fn model_config(&self) -> ModelConfig {
        ModelConfig {
            name: self.model.clone(),
            model_dir: self.model_dir.clone(),
            models_dir: self.models_dir.clone(),
            batch_size: self.batch_size,
            backend: self.backend,
            weights: self.weights,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| EngineConfig::default().data_dir)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the main job). Fetches the model on first run.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "MEMORYD_BIND", default_value = "127.0.0.1:7070")]
        bind: SocketAddr,
        /// Largest request body, in bytes.
        #[arg(long, env = "MEMORYD_MAX_BODY_BYTES", default_value_t = ServerConfig::default().max_body_bytes)]
        max_body_bytes: usize,
        /// Requests handled at once; more are answered 429 at once.
        #[arg(long, env = "MEMORYD_MAX_IN_FLIGHT", default_value_t = ServerConfig::default().max_in_flight)]
        max_in_flight: usize,
        /// Event streams (SSE) open at once; more are answered 429. Streams hold no in-flight permit.
        #[arg(long, env = "MEMORYD_MAX_STREAMS", default_value_t = ServerConfig::default().max_streams)]
        max_streams: usize,
        /// Seconds a connection has to deliver a complete request header (also how long an idle kept-alive connection stays open).
        #[arg(long, env = "MEMORYD_HEADER_READ_TIMEOUT_S", default_value_t = ServerConfig::default().header_read_timeout.as_secs())]
        header_read_timeout_s: u64,
        /// Seconds to wait for the next piece of a request body before failing the request.
        #[arg(long, env = "MEMORYD_BODY_READ_TIMEOUT_S", default_value_t = ServerConfig::default().body_read_timeout.as_secs())]
        body_read_timeout_s: u64,
        /// Connections open at once (keep it below the file-descriptor limit); more wait to be accepted.
        #[arg(long, env = "MEMORYD_MAX_CONNECTIONS", default_value_t = ServerConfig::default().max_connections)]
        max_connections: usize,
        /// Serve a non-loopback address while no API key exists, without authentication
        /// (logged as a warning). Without it memoryd refuses to serve anything but loopback
        /// until a key exists (`memoryd keys create`): anyone who reaches the port could read,
        /// overwrite and delete every namespace. Once a key exists every request needs a token.
        #[arg(long, env = "MEMORYD_INSECURE_NO_AUTH")]
        insecure_no_auth: bool,
        /// Also record context reads (get, list, history) in the audit log.
        #[arg(long, env = "MEMORYD_AUDIT_READS")]
        audit_reads: bool,
        /// Export traces (OTLP over HTTP/protobuf) to this collector, e.g. http://127.0.0.1:4318:
        /// a span per request and per engine operation. Off when unset.
        #[arg(long, env = "MEMORYD_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
        /// A `Host` header /mcp accepts (repeatable), e.g. memory.example.com. Default:
        /// loopback names, plus the --bind address when it is a specific one; any host
        /// when --bind is 0.0.0.0 or [::] (requests need an API key there).
        #[arg(
            long = "mcp-allowed-host",
            env = "MEMORYD_MCP_ALLOWED_HOSTS",
            value_delimiter = ','
        )]
        mcp_allowed_hosts: Vec<String>,
        /// The base URL other agents reach this server at (named in the A2A Agent Card),
        /// e.g. https://memory.example.com [default: http://<the request's Host>].
        #[arg(long, env = "MEMORYD_PUBLIC_URL")]
        public_url: Option<String>,
        /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
        #[arg(long, env = "MEMORYD_SHUTDOWN_GRACE_S", default_value_t = 30)]
        shutdown_grace_s: u64,
    },
    /// Serve MCP (Model Context Protocol) on stdin/stdout for an MCP client (a coding
    /// assistant, an agent framework): on the data directory, or with --server as a proxy
    /// to a running memoryd (several clients, one store). Logs go to stderr.
    Mcp {
        /// A running memoryd to forward to, e.g. http://127.0.0.1:7070 (its /mcp endpoint).
        #[arg(long, env = "MEMORYD_SERVER")]
        server: Option<String>,
        /// API key for --server.
        #[arg(long, env = "MEMORYD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Store messages from a file: JSON Lines of messages, or a LoCoMo file.
    Ingest {
        /// The file.
        file: PathBuf,
        /// Target namespace (for LoCoMo, the prefix: each conversation goes to <NS>-<sample_id>).
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// File format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Messages per write (one model call and one flush each).
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Top-k most similar messages in a namespace.
    Search {
        /// The query text.
        query: String,
        /// Namespace to search.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// Number of hits.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Ranking: hybrid (BM25 and cosine fused, plus neighbouring turns), dense or lexical.
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Most recent messages of a namespace, newest first.
    Recent {
        /// Namespace.
        #[arg(long, env = "MEMORYD_NAMESPACE")]
        namespace: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Counts: messages, namespaces, graphs, disk bytes.
    Stats,
    /// Cross-check the data directory (store trees against each other and against
    /// the indexes rebuilt from them); prints a JSON report, exits 1 on any problem.
    Check,
    /// Embed texts (arguments, or stdin lines when none): one JSON array per line, in input order.
    Embed {
        /// Texts to embed.
        texts: Vec<String>,
    },
    /// Retrieval evaluation on real data.
    Eval {
        #[command(subcommand)]
        command: eval_cli::EvalCommand,
    },
    /// Shared context entries: get (through parents), set, history, list.
    Context {
        #[command(subcommand)]
        command: context_cli::ContextCommand,
    },
    /// The audit log: verify its hash chain (exit 1 at the first broken entry) or export it.
    Audit {
        #[command(subcommand)]
        command: audit_cli::AuditCommand,
    },
    /// API keys: create (the token is printed once), list, revoke.
    Keys {
        #[command(subcommand)]
        command: keys_cli::KeysCommand,
    },
    /// The blackboard: post problems, propose, vote, resolve, show, list.
    Board {
        #[command(subcommand)]
        command: board_cli::BoardCommand,
    },
    /// Print the OpenAPI document of the HTTP API (as committed in docs/openapi.json).
    Openapi,
    /// Model files.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Resolve, download and verify a model's files (default: the configured model).
    Fetch {
        /// Model name from models/manifest.toml.
        name: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One message object per line: {"role","content",["name","timestamp","agent_id","session_id","metadata"]}.
    Jsonl,
    /// LoCoMo's locomo10.json.
    Locomo,
}

/// candle 0.11 asks for its thread count on every matrix multiplication and, unless
/// `RAYON_NUM_THREADS` is set, finds it by parsing `/proc/cpuinfo` (~100 reads per
/// second while embedding). Setting the variable once at start-up to the count
/// candle would pick (physical cores) makes a query embedding ~12% faster (criterion `embed_query`, 12.6 → 10.8
/// ms on the 2-vCPU Xeon). Runs before any other thread exists.
fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = num_cpus::get_physical().max(1);
        // SAFETY: called first thing in `main`, before any thread is spawned, so no
        // other thread can read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

fn main() -> Result<()> {
    pin_thread_count();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The exporter's HTTP client is blocking (its own thread): built outside the runtime.
    let provider = match &cli.command {
        Command::Serve {
            otlp_endpoint: Some(endpoint),
            ..
        } => Some(memoryd::telemetry::otlp_provider(endpoint)?),
        _ => None,
    };
    let telemetry = memoryd::telemetry::init(provider, std::io::stderr().is_terminal())?;
    let result = run_command(cli, &rt);
    telemetry.shutdown();
    result
}

fn run_command(cli: Cli, rt: &tokio::runtime::Runtime) -> Result<()> {
    match cli.command {
        Command::Serve {
            bind,
            max_body_bytes,
            max_in_flight,
            max_streams,
            header_read_timeout_s,
            body_read_timeout_s,
            max_connections,
            insecure_no_auth,
            audit_reads,
            shutdown_grace_s,
            mcp_allowed_hosts,
            public_url,
            otlp_endpoint: _,
        } => {
            let loopback = bind.ip().is_loopback();
            rt.block_on(serve(
                cli.engine,
                audit_reads,
                bind,
                ServerConfig {
                    max_body_bytes,
                    max_in_flight,
                    max_streams,
                    header_read_timeout: Duration::from_secs(header_read_timeout_s.max(1)),
                    body_read_timeout: Duration::from_secs(body_read_timeout_s.max(1)),
                    max_connections,
                    anonymous: loopback || insecure_no_auth,
                    mcp_allowed_hosts: if mcp_allowed_hosts.is_empty() {
                        ServerConfig::mcp_hosts_for(bind)
                    } else {
                        mcp_allowed_hosts
                    },
                    public_url,
                },
                shutdown_grace_s,
            ))
        }
        #[cfg(not(feature = "eval"))]
        Command::Eval { .. } => bail!(
            "this memoryd was built without evaluation; build it with `cargo build --release --features eval`"
        ),
        #[cfg(feature = "eval")]
        Command::Eval { command } => eval_cli::run(&cli.engine, command, rt),
        Command::Openapi => {
            println!("{}", server::openapi_json());
            Ok(())
        }
        Command::Model {
            command: ModelCommand::Fetch { name },
        } => {
            let name = name.unwrap_or(cli.engine.model.clone());
            let resolver = memoryd::embed::model::ModelResolver::new(&cli.engine.models_dir);
            let resolved = resolver.resolve(&name, cli.engine.model_dir.as_deref())?;
            println!(
                "{} ({:?}): {}",
                resolved.id,
                resolved.source,
                resolved.dir.display()
            );
            Ok(())
        }
        Command::Mcp {
            server: Some(url),
            token,
        } => rt.block_on(async {
            let url = if url.trim_end_matches('/').ends_with("/mcp") {
                url
            } else {
                format!("{}/mcp", url.trim_end_matches('/'))
            };
            let proxy = memoryd::mcp::McpProxy::connect(&url, token.as_deref()).await?;
            memoryd::mcp::serve_stdio(proxy).await
        }),
        Command::Mcp { server: None, .. } => {
            let engine = Engine::open(cli.engine.config())
                .with_context(|| format!("opening {}", cli.engine.data_dir().display()))?;
            rt.block_on(memoryd::mcp::serve_stdio(memoryd::mcp::MemoryMcp::new(
                memoryd::mcp::EngineSource::Fixed(engine),
                Some(memoryd::Access::full()),
            )))
        }
        Command::Keys { command } if command.is_remote() => {
            rt.block_on(keys_cli::run_remote(command))
        }
        command => {
            // One-shot commands leave summarization to the server (it resumes
            // from the store); a short-lived process would only start windows.
            let mut config = cli.engine.config();
            config.summarize.enabled = false;
            let engine = Engine::open(config)
                .with_context(|| format!("opening {}", cli.engine.data_dir().display()))?;
            rt.block_on(run(engine, command))
        }
    }
}

async fn serve(
    args: EngineArgs,
    audit_reads: bool,
    bind: SocketAddr,
    server_config: ServerConfig,
    grace_s: u64,
) -> Result<()> {
    let state = AppState::loading();
    let app = server::router(state.clone(), &server_config);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening (503 until the model is loaded)");
    let loading = state.clone();
    let anonymous = server_config.anonymous;
    let loader = tokio::task::spawn_blocking(move || {
        let mut config = args.config();
        config.audit_reads = audit_reads;
        Engine::open(config).with_context(|| format!("opening {}", args.data_dir().display()))
    });
    let server = tokio::spawn(async move {
        server::serve(
            listener,
            app,
            state,
            Duration::from_secs(grace_s),
            &server_config,
        )
        .await
    });
    match loader.await? {
        Ok(engine) => {
            if !bind.ip().is_loopback() && !engine.auth_required() {
                if !anonymous {
                    server.abort();
                    bail!(
                        "refusing to serve {bind}: no API key exists, so anyone who reaches the port could \
                         read and change every namespace. Create one first (`memoryd keys create --name admin \
                         --namespaces '*' --scopes admin` with the server stopped), bind a loopback address \
                         (127.0.0.1, ::1), or pass --insecure-no-auth"
                    );
                }
                tracing::warn!(%bind, "serving a non-loopback address WITHOUT authentication (--insecure-no-auth, no API keys)");
            }
            let info = engine.model_info();
            tracing::info!(model = %info.id, dim = info.dim, "ready");
            loading.set_engine(engine);
        }
        Err(e) => {
            server.abort();
            return Err(e);
        }
    }
    server.await??;
    Ok(())
}

async fn run(engine: Engine, command: Command) -> Result<()> {
    // The CLI opens the data directory itself: it is its owner.
    let me = Access::full();
    match command {
        Command::Ingest {
            file,
            namespace,
            format,
            batch,
        } => ingest(&engine, &file, &namespace, format, batch.max(1)).await,
        Command::Search {
            query,
            namespace,
            k,
            mode,
            json,
        } => {
            let res = engine
                .search(
                    &me,
                    &namespace,
                    SearchRequest::text(query, k).with_mode(mode),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&res)?);
            } else {
                for h in &res.hits {
                    match (&h.message, &h.summary) {
                        (Some(m), _) => println!(
                            "{:.4}  {}  {}: {}",
                            h.score,
                            m.timestamp.format("%Y-%m-%d %H:%M"),
                            printable(m.name.as_deref().unwrap_or(m.role.as_str())),
                            printable(&m.content)
                        ),
                        (None, Some(s)) => {
                            println!("{:.4}  summary  {}", h.score, printable(&s.text))
                        }
                        (None, None) => {}
                    }
                }
                eprintln!("{} hits in {:.2} ms", res.hits.len(), res.took_ms);
            }
            Ok(())
        }
        Command::Recent { namespace, limit } => {
            for m in engine.recent(&me, &namespace, limit).await? {
                println!("{}", serde_json::to_string(&m)?);
            }
            Ok(())
        }
        Command::Stats => {
            // The graph reloads that open started, so their counts are final.
            engine.wait_graph_reloads().await;
            println!("{}", serde_json::to_string_pretty(&engine.stats())?);
            Ok(())
        }
        Command::Audit { command } => audit_cli::run(&engine, command).await,
        Command::Check => {
            // Check the index as the server will serve it: reloaded graphs included.
            engine.wait_graph_reloads().await;
            let report = engine.check(&me).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.is_ok() {
                bail!("{} problem(s) found", report.problems.len());
            }
            Ok(())
        }
        Command::Embed { texts } => {
            let texts = if texts.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<std::io::Result<Vec<_>>>()?
            } else {
                texts
            };
            let mut out = std::io::stdout().lock();
            for chunk in texts.chunks(engine.config().limits.max_embed_inputs) {
                let e = engine.embed(chunk.to_vec()).await?;
                for row in e.rows() {
                    writeln!(out, "{}", serde_json::to_string(row)?)?;
                }
            }
            Ok(())
        }
        Command::Context { command } => context_cli::run(&engine, command).await,
        Command::Board { command } => board_cli::run(&engine, command).await,
        Command::Keys { command } => keys_cli::run(&engine, command).await,
        Command::Serve { .. }
        | Command::Mcp { .. }
        | Command::Model { .. }
        | Command::Openapi
        | Command::Eval { .. } => {
            unreachable!("handled in main")
        }
    }
}

/// Text as a terminal line: control characters (stored verbatim, line breaks
/// included) are escaped, so a stored ESC sequence cannot drive the terminal.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

async fn ingest(
    engine: &Engine,
    file: &PathBuf,
    namespace: &str,
    format: Format,
    batch: usize,
) -> Result<()> {
    let started = std::time::Instant::now();
    let total = match format {
        // Streamed: a million-line file is never held in memory; the bar follows
        // the bytes read.
        Format::Jsonl => ingest_jsonl(engine, file, namespace, batch).await?,
        Format::Locomo => {
            let groups: Vec<(String, Vec<NewMessage>)> = memoryd::locomo::load(file)?
                .into_iter()
                .map(|s| (format!("{namespace}-{}", s.sample_id), s.messages()))
                .collect();
            let total: usize = groups.iter().map(|(_, m)| m.len()).sum();
            let bar = progress(
                total as u64,
                "{bar:40} {pos}/{len} messages  {per_sec}  eta {eta}",
            );
            for (ns, msgs) in groups {
                for chunk in msgs.chunks(batch) {
                    engine
                        .add_batch(&Access::full(), &ns, chunk.to_vec())
                        .await?;
                    bar.inc(chunk.len() as u64);
                }
            }
            bar.finish_and_clear();
            total
        }
    };
    if total == 0 {
        bail!("{} holds no messages", file.display());
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "stored {total} messages in {secs:.1} s ({:.0} messages/s)",
        total as f64 / secs
    );
    Ok(())
}

/// A progress bar on stderr when it is a terminal (hidden otherwise).
fn progress(len: u64, template: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}

/// Stores a JSON Lines file `batch` messages per write, reading as it goes.
/// Returns the messages stored; on an error, says how many were stored before it
/// and the line to resume from (`tail -n +LINE FILE > rest.jsonl`).
async fn ingest_jsonl(
    engine: &Engine,
    file: &PathBuf,
    namespace: &str,
    batch: usize,
) -> Result<usize> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress(len, "{bar:40} {bytes}/{total_bytes}  {msg}  eta {eta}");
    let mut reader = std::io::BufReader::new(f);
    let (mut stored, mut line_no, mut stored_through) = (0usize, 0usize, 0usize);
    let mut pending: Vec<NewMessage> = Vec::with_capacity(batch);
    let mut line = String::new();
    let rate = |stored: usize| stored as f64 / bar.elapsed().as_secs_f64().max(1e-3);
    loop {
        line.clear();
        let n = reader.read_line(&mut line).with_context(|| {
            format!(
                "reading {} after line {line_no} ({stored} messages stored; resume from line {})",
                file.display(),
                stored_through + 1
            )
        })?;
        let eof = n == 0;
        if !eof {
            line_no += 1;
            bar.inc(n as u64);
            if !line.trim().is_empty() {
                let m: NewMessage = serde_json::from_str(&line).with_context(|| {
                    format!(
                        "{}:{line_no}: not a message ({stored} messages stored; resume from line {})",
                        file.display(),
                        stored_through + 1
                    )
                })?;
                pending.push(m);
            }
        }
        if pending.len() >= batch || (eof && !pending.is_empty()) {
            let k = pending.len();
            engine
                .add_batch(&Access::full(), namespace, std::mem::take(&mut pending))
                .await
                .with_context(|| {
                    format!(
                        "{stored} messages stored before this batch; resume from line {}",
                        stored_through + 1
                    )
                })?;
            stored += k;
            stored_through = line_no;
            bar.set_message(format!("{stored} messages  {:.0}/s", rate(stored)));
        }
        if eof {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(stored)
}
